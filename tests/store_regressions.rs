//! Regression tests for defects QA found in the image store, one test per bug, named after it.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rbuild::store::Digest;
use serde_json::Value;

fn load_busybox(root: &Path) {
    rbuild_ok(root, &["load", "-i", busybox_archive().to_str().unwrap()]);
}

fn inspect(root: &Path, name: &str) -> Value {
    serde_json::from_str(&rbuild_ok(root, &["inspect", name])).unwrap()
}

/// A tar entry: (name, link target or "", data, kind).
fn tar_bytes(entries: &[(&str, &str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, link, data, kind) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

const REG: tar::EntryType = tar::EntryType::Regular;
const SYM: tar::EntryType = tar::EntryType::Symlink;

/// The config of an image whose layers have these diff IDs.
fn config_json(diff_ids: &[&Digest]) -> String {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
}

/// The docker-archive at `path` with every `layer.tar` gzip-compressed (as a `docker save`
/// of a containerd-backed Docker may hold them).
fn gzip_layers(path: &Path, out: &Path) {
    let data = std::fs::read(path).unwrap();
    let mut ar = tar::Archive::new(&data[..]);
    let mut b = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        if name.ends_with("layer.tar") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).unwrap();
            body = gz.finish().unwrap();
        }
        let mut h = e.header().clone();
        h.set_size(body.len() as u64);
        b.append_data(&mut h, &name, &body[..]).unwrap();
    }
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

/// Save busybox as `copy:1` in a docker-archive with a gzip layer, untag it, load it back:
/// one image ID with two manifests (busybox:local plain tar, copy:1 gzip).
fn one_id_two_manifests(r: &Path) -> String {
    load_busybox(r);
    rbuild_ok(r, &["tag", "busybox:local", "copy:1"]);
    let plain = r.join("copy.tar");
    rbuild_ok(r, &["save", "-o", plain.to_str().unwrap(), "copy:1"]);
    let out = r.join("copy-gz.tar");
    gzip_layers(&plain, &out);
    rbuild_ok(r, &["rmi", "copy:1"]);
    assert_eq!(
        rbuild_ok(r, &["load", "-i", out.to_str().unwrap()]),
        "Loaded image: copy:1\n"
    );
    let index = std::fs::read_to_string(r.join("oci/index.json")).unwrap();
    let idx: Value = serde_json::from_str(&index).unwrap();
    let digests: std::collections::BTreeSet<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests.len(), 2, "two manifests expected: {index}");
    inspect(r, "busybox:local")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn rmi_f_id_removes_every_manifest_of_the_image() {
    let root = fresh_root();
    let r = root.path();
    let id = one_id_two_manifests(r);
    assert_eq!(inspect(r, "copy:1")[0]["Id"], id.as_str());
    // One ID is one image: one line in -q, both tags in RepoTags, two repositories.
    assert_eq!(rbuild_ok(r, &["images", "-q"]).lines().count(), 1);
    let tags = inspect(r, &id)[0]["RepoTags"].clone();
    assert_eq!(
        tags,
        serde_json::json!(["busybox:local", "copy:1"]),
        "{tags}"
    );
    let o = rbuild(r, &["rmi", &id[7..19]]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("referenced in 2 repositories"),
        "{err}"
    );
    let out = rbuild_ok(r, &["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: busybox:local")
            && out.contains("Untagged: copy:1")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(rbuild_ok(r, &["images", "-a"]).lines().count(), 1);
    assert!(!rbuild(r, &["inspect", &id]).status.success());
    let index = std::fs::read_to_string(r.join("oci/index.json")).unwrap();
    assert!(!index.contains("sha256:"), "{index}");
}

#[test]
fn same_image_id_same_size_however_loaded() {
    let root = fresh_root();
    let r = root.path();
    let id = one_id_two_manifests(r);
    // The docker-archive's layer.tar is the uncompressed layer: Docker's SIZE.
    let archive = std::fs::read(r.join("copy.tar")).unwrap();
    let mut ar = tar::Archive::new(&archive[..]);
    let layer_size = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().ends_with("layer.tar"))
        .unwrap()
        .size();
    // A store that only has the OCI (gzip) copy.
    let other = fresh_root();
    load_busybox(other.path());
    for (root, name) in [(r, "busybox:local"), (r, "copy:1"), (other.path(), &*id)] {
        assert_eq!(inspect(root, name)[0]["Size"], layer_size, "{name}");
    }
    let sizes = |root: &Path| -> Vec<String> {
        rbuild_ok(root, &["images"])
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect()
    };
    let a = sizes(r);
    let b = sizes(other.path());
    assert_eq!(a.len(), 2);
    assert!(a.iter().chain(&b).all(|s| *s == b[0]), "{a:?} {b:?}");
}

/// A docker-archive (Docker < 25) with the same layer twice: the second is a relative
/// symlink to the first.
fn docker_archive_with_layer_link(link: &str) -> Vec<u8> {
    let layer = tar_bytes(&[("hello", "", b"hello\n", REG)]);
    let d = Digest::of_bytes(&layer);
    let config = config_json(&[&d, &d]);
    let cd = Digest::of_bytes(config.as_bytes());
    let config_name = format!("{}.json", cd.hex());
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["dup:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#
    );
    tar_bytes(&[
        ("aaa/layer.tar", "", &layer, REG),
        ("bbb/layer.tar", link, b"", SYM),
        (&config_name, "", config.as_bytes(), REG),
        ("manifest.json", "", manifest.as_bytes(), REG),
    ])
}

#[test]
fn load_resolves_relative_symlink_layer_in_docker_archive() {
    let root = fresh_root();
    let r = root.path();
    let f = r.join("dup.tar");
    std::fs::write(&f, docker_archive_with_layer_link("../aaa/layer.tar")).unwrap();
    assert_eq!(
        rbuild_ok(r, &["load", "-i", f.to_str().unwrap()]),
        "Loaded image: dup:1\n"
    );
    assert_eq!(
        inspect(r, "dup:1")[0]["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A link that leaves the archive is refused, and says so.
    let before = store_state(r);
    std::fs::write(&f, docker_archive_with_layer_link("../../aaa/layer.tar")).unwrap();
    let o = rbuild(r, &["load", "-i", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("bbb/layer.tar") && err.contains("outside the archive"),
        "{err}"
    );
    assert!(!err.contains("is missing from the archive"), "{err}");
    assert_eq!(store_state(r), before);
}

/// A docker-archive with two images: `small:1`, then `big:1` with a `mb` MB layer of zeros
/// (uncompressed, so that staging takes a while). The big layer's diff ID is not checked
/// by anything before the interrupt.
fn big_archive(path: &Path, mb: u64) {
    let small = tar_bytes(&[("small", "", b"small\n", REG)]);
    let sd = Digest::of_bytes(&small);
    let sconfig = config_json(&[&sd]);
    let scd = Digest::of_bytes(sconfig.as_bytes());
    let size = mb << 20;
    let mut big_head = tar::Header::new_gnu();
    big_head.set_path("zeros").unwrap();
    big_head.set_size(size);
    big_head.set_mode(0o644);
    big_head.set_mtime(0);
    big_head.set_cksum();
    let big_len = 512 + size.div_ceil(512) * 512 + 1024;
    // The layer: header, zeros, end-of-archive; its digest computed by sha256sum.
    let layer_path = path.with_extension("layer");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&layer_path).unwrap());
        f.write_all(big_head.as_bytes()).unwrap();
        std::io::copy(&mut std::io::repeat(0).take(big_len - 512), &mut f).unwrap();
        f.flush().unwrap();
    }
    let sum = Command::new("sha256sum").arg(&layer_path).output().unwrap();
    let hex = String::from_utf8_lossy(&sum.stdout)[..64].to_string();
    let bd = Digest::from_hex(&hex).unwrap();
    let bconfig = config_json(&[&bd]);
    let bcd = Digest::of_bytes(bconfig.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["small:1"],"Layers":["s/layer.tar"]}},{{"Config":"{}.json","RepoTags":["big:1"],"Layers":["b/layer.tar"]}}]"#,
        scd.hex(),
        bcd.hex()
    );
    let mut b = tar::Builder::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let mut add = |name: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("s/layer.tar", small.len() as u64, &mut &small[..]);
    add(
        &format!("{}.json", scd.hex()),
        sconfig.len() as u64,
        &mut sconfig.as_bytes(),
    );
    add(
        &format!("{}.json", bcd.hex()),
        bconfig.len() as u64,
        &mut bconfig.as_bytes(),
    );
    add(
        "manifest.json",
        manifest.len() as u64,
        &mut manifest.as_bytes(),
    );
    add(
        "b/layer.tar",
        big_len,
        &mut std::fs::File::open(&layer_path).unwrap(),
    );
    b.into_inner().unwrap().flush().unwrap();
    std::fs::remove_file(&layer_path).unwrap();
}

fn dir_bytes(p: &Path) -> u64 {
    walk(p)
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn ctrl_c_during_load_adds_no_tag_and_leaves_no_staging_dir() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let before = store_state(r);
    let work = fresh_root();
    let archive = work.path().join("big.tar");
    big_archive(&archive, 200);

    let mut child = Command::new(rbuild_bin())
        .arg("--root")
        .arg(r)
        .args(["load", "-i"])
        .arg(&archive)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until staging is well under way, then Ctrl-C.
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "load never started staging"
        );
        if dir_bytes(&r.join("tmp")) > 16 << 20 {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("load ended before it could be interrupted");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "load was not interrupted: {err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // No tag added, nothing staged left, the store as it was and usable.
    assert_eq!(store_state(r).0, before.0);
    let left: Vec<_> = std::fs::read_dir(r.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "tmp/ not cleaned up: {left:?}");
    let images = rbuild_ok(r, &["images"]);
    assert!(
        !images.contains("small") && !images.contains("big"),
        "{images}"
    );
    rbuild_ok(r, &["prune"]);
    assert_eq!(store_state(r), before);
    assert_eq!(
        inspect(r, "busybox:local")[0]["RepoTags"][0],
        "busybox:local"
    );
}

#[test]
fn prune_removes_stale_staging_dirs() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    // Left by a killed load: a lease file nobody holds, 1 MB staged.
    let dead = r.join("tmp/load-dead1");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join(".lease"), b"").unwrap();
    std::fs::write(dead.join("1"), vec![0u8; 1_000_000]).unwrap();
    // From before leases existed.
    let old = r.join("tmp/load-old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("1"), vec![0u8; 500_000]).unwrap();
    // A live one: its lease is held.
    let live = r.join("tmp/load-live");
    std::fs::create_dir_all(&live).unwrap();
    let lease = std::fs::File::create(live.join(".lease")).unwrap();
    let _held = nix::fcntl::Flock::lock(lease, nix::fcntl::FlockArg::LockExclusive).unwrap();
    std::fs::write(live.join("1"), b"in use").unwrap();
    // Somebody else's scratch dir without a lease: not ours to take.
    let other = r.join("tmp/build-x");
    std::fs::create_dir_all(&other).unwrap();

    let out = rbuild_ok(r, &["prune"]);
    assert!(!dead.exists() && !old.exists(), "{out}");
    assert!(live.join("1").exists() && other.exists(), "{out}");
    assert!(out.contains("Total reclaimed space: 1.5MB"), "{out}");
    assert!(inspect(r, "busybox:local")[0]["Id"].is_string());
}

#[test]
fn import_dash_reads_stdin() {
    let root = fresh_root();
    let r = root.path();
    let mut child = Command::new(rbuild_bin())
        .arg("--root")
        .arg(r)
        .args(["import", "-", "fromstdin:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let data = std::fs::read(busybox_rootfs_tar()).unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sha256:"));
    assert_eq!(inspect(r, "fromstdin:1")[0]["RepoTags"][0], "fromstdin:1");
}

fn repos(root: &Path, args: &[&str]) -> Vec<String> {
    rbuild_ok(root, args)
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", c[0], c[1])
        })
        .collect()
}

#[test]
fn images_glob_digest_and_dangling_filters() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    for t in ["repo:1", "repo:2", "team/a:1", "team/b:1", "team/x/y:1"] {
        rbuild_ok(r, &["tag", "busybox:local", t]);
    }
    let mut got = repos(r, &["images", "repo:*"]);
    got.sort();
    assert_eq!(got, ["repo:1", "repo:2"]);
    let mut got = repos(r, &["images", "team/*"]);
    got.sort();
    assert_eq!(got, ["team/a:1", "team/b:1"]);
    let mut got = repos(r, &["images", "--filter", "reference=team/*:1"]);
    got.sort();
    assert_eq!(got, ["team/a:1", "team/b:1"]);
    let digest = inspect(r, "repo:1")[0]["Manifest"]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        repos(r, &["images", &format!("repo@{digest}")]),
        ["repo:1", "repo:2"]
    );
    assert_eq!(repos(r, &["images", "-f", "dangling=true"]).len(), 0);
    assert_eq!(repos(r, &["images", "-f", "dangling=false"]).len(), 6);
}

#[test]
fn save_repo_without_tag_saves_all_tags() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    rbuild_ok(r, &["tag", "busybox:local", "busybox:two"]);
    rbuild_ok(r, &["tag", "busybox:local", "other:1"]);
    let out = r.join("all.tar");
    rbuild_ok(r, &["save", "-o", out.to_str().unwrap(), "busybox"]);
    let other = fresh_root();
    let loaded = rbuild_ok(other.path(), &["load", "-i", out.to_str().unwrap()]);
    assert_eq!(
        loaded,
        "Loaded image: busybox:local\nLoaded image: busybox:two\n"
    );
}

#[test]
fn inspect_prints_found_images_then_errors_for_missing() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let o = rbuild(r, &["inspect", "busybox:local", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["RepoTags"][0], "busybox:local");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such image: nosuch"), "{err}");
}

#[test]
fn save_to_directory_says_o_must_name_a_file() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let o = rbuild(r, &["save", "-o", "/tmp/", "busybox:local"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("-o must name a file, not a directory"),
        "{err}"
    );
    assert!(!err.contains("Not a directory"), "{err}");
}

#[test]
fn errors_name_the_image_once() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    for args in [
        &["rmi", "qa-x:1"][..],
        &["inspect", "qa-x:1"],
        &["history", "qa-x:1"],
    ] {
        let o = rbuild(r, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert_eq!(err.matches("qa-x:1").count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn history_h_false_prints_rfc3339_seconds() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    // A config created with fractional seconds and an offset, as other tools write it.
    let f = r.join("t.tar");
    let layer = tar_bytes(&[("x", "", b"x", REG)]);
    let d = Digest::of_bytes(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"2026-12-03T18:31:01.123456789+01:00","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{d}"]}},"history":[{{"created":"2026-12-03T18:31:01.123456789+01:00","created_by":"x"}}]}}"#
    );
    let cd = Digest::of_bytes(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["t:1"],"Layers":["l/layer.tar"]}}]"#,
        cd.hex()
    );
    std::fs::write(
        &f,
        tar_bytes(&[
            ("l/layer.tar", "", &layer, REG),
            (&format!("{}.json", cd.hex()), "", config.as_bytes(), REG),
            ("manifest.json", "", manifest.as_bytes(), REG),
        ]),
    )
    .unwrap();
    rbuild_ok(r, &["load", "-i", f.to_str().unwrap()]);
    let h = rbuild_ok(r, &["history", "-H=false", "t:1"]);
    assert!(h.contains("2026-12-03T17:31:01Z"), "{h}");
    let h = rbuild_ok(r, &["history", "-H=false", "busybox:local"]);
    assert!(h.contains("2024-01-01T00:00:00Z"), "{h}");
}

#[test]
fn rmi_of_last_tag_prints_deleted() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let id = inspect(r, "busybox:local")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    rbuild_ok(r, &["tag", "busybox:local", "two:1"]);
    assert_eq!(rbuild_ok(r, &["rmi", "two:1"]), "Untagged: two:1\n");
    assert_eq!(
        rbuild_ok(r, &["rmi", "busybox:local"]),
        format!("Untagged: busybox:local\nDeleted: {id}\n")
    );
}
