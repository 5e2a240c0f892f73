//! The image commands end to end, through the binary, on a busybox:local store.

#![allow(clippy::print_stderr)] // tests say why they skip
mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn load_busybox(root: &std::path::Path) {
    let out = rbuild_ok(root, &["load", "-i", busybox_archive().to_str().unwrap()]);
    assert_eq!(out, "Loaded image: busybox:local\n");
}

#[test]
fn make_busybox_is_deterministic() {
    let dir = fresh_root();
    let out = dir.path().join("again.tar");
    let st = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/make-busybox.sh"
        ))
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(busybox_archive()).unwrap()
    );
}

#[test]
fn load_images_inspect_history() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let images = rbuild_ok(r, &["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert_eq!(lines.len(), 2, "{images}");
    assert!(
        lines[0].starts_with("REPOSITORY   TAG     IMAGE ID       CREATED"),
        "{images}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..2], ["busybox", "local"]);
    assert_eq!(cols[2].len(), 12);

    let inspect: Value =
        serde_json::from_str(&rbuild_ok(r, &["inspect", "busybox:local"])).unwrap();
    let img = &inspect[0];
    let id = img["Id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id[7..].starts_with(cols[2]));
    assert_eq!(img["RepoTags"][0], "busybox:local");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(img["Config"]["Cmd"][0], "sh");
    let layers = img["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(img["Manifest"]["Layers"][0]["Size"], img["Size"]);
    assert!(img["RepoDigests"][0]
        .as_str()
        .unwrap()
        .starts_with("busybox@sha256:"));

    // The same image by ID prefix, full ID, fully qualified name.
    for name in [&cols[2][..6], id, "docker.io/library/busybox:local"] {
        let v: Value = serde_json::from_str(&rbuild_ok(r, &["inspect", name])).unwrap();
        assert_eq!(v[0]["Id"], id, "{name}");
    }
    // `busybox` means busybox:latest, which does not exist.
    let o = rbuild(r, &["inspect", "busybox"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such image: busybox"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    assert_eq!(rbuild_ok(r, &["images", "-q"]).trim(), cols[2]);
    assert!(rbuild_ok(r, &["images", "--digests"]).contains("DIGEST"));
    assert!(rbuild_ok(r, &["images", "--no-trunc", "-q"]).starts_with("sha256:"));

    let hist = rbuild_ok(r, &["history", "busybox:local"]);
    let hl: Vec<&str> = hist.lines().collect();
    assert!(
        hl[0].starts_with("IMAGE          CREATED       CREATED BY"),
        "{hist}"
    );
    assert!(
        hl[1].starts_with(cols[2])
            && hl[1].contains("testdata/make-busybox.sh")
            && hl[1].contains('…'),
        "{hist}"
    );
    let full = rbuild_ok(r, &["history", "--no-trunc", "busybox:local"]);
    assert!(
        full.contains("multi-call") || full.contains("BusyBox v"),
        "{full}"
    );
    assert_eq!(
        rbuild_ok(r, &["history", "-q", "busybox:local"]).trim(),
        cols[2]
    );
}

#[test]
fn tag_filter_and_rmi() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    rbuild_ok(r, &["tag", "busybox:local", "app"]);
    rbuild_ok(r, &["tag", "busybox:local", "registry:5000/team/app:1"]);
    let images = rbuild_ok(r, &["images"]);
    assert!(
        images
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["app", "latest"])),
        "{images}"
    );
    assert!(images.contains("registry:5000/team/app"), "{images}");
    // Filters: repository, repository:tag, normalised names.
    let f = rbuild_ok(r, &["images", "app"]);
    assert_eq!(f.lines().count(), 2, "{f}");
    let f = rbuild_ok(r, &["images", "docker.io/library/app:latest"]);
    assert_eq!(f.lines().count(), 2, "{f}");
    assert_eq!(rbuild_ok(r, &["images", "app:2"]).lines().count(), 1);
    // index.json carries skopeo/umoci's ref names.
    let index = std::fs::read_to_string(r.join("oci/index.json")).unwrap();
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"app:latest""#),
        "{index}"
    );
    assert!(
        index.contains(r#""io.containerd.image.name":"docker.io/library/app:latest""#),
        "{index}"
    );

    assert_eq!(rbuild_ok(r, &["rmi", "app"]), "Untagged: app:latest\n");
    let o = rbuild(r, &["rmi", "app"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such image"));
    // By ID with two repositories: refused without -f.
    let id = rbuild_ok(r, &["images", "-q"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(!rbuild(r, &["rmi", &id]).status.success());
    let out = rbuild_ok(r, &["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: busybox:local") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(rbuild_ok(r, &["images", "-q"]), "");
    // Blobs stay until prune.
    assert_eq!(store_state(r).1.len(), 3);
    let pruned = rbuild_ok(r, &["prune"]);
    assert!(
        pruned.contains("deleted blob: sha256:")
            && pruned.contains("Total reclaimed space: 2.13MB"),
        "{pruned}"
    );
    assert_eq!(store_state(r).1.len(), 0);

    let o = rbuild(r, &["tag", "busybox:local", "Bad:1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid reference format"));
}

#[test]
fn save_and_load_round_trips_both_formats() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    rbuild_ok(r, &["tag", "busybox:local", "other:2"]);
    let id = rbuild_ok(r, &["images", "-q"])
        .lines()
        .next()
        .unwrap()
        .to_string();
    let out = fresh_root();
    let docker = out.path().join("d.tar");
    let oci = out.path().join("o.tar");
    rbuild_ok(
        r,
        &[
            "save",
            "-o",
            docker.to_str().unwrap(),
            "busybox:local",
            "other:2",
        ],
    );
    rbuild_ok(
        r,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci.to_str().unwrap(),
            "busybox:local",
        ],
    );
    // docker-archive layout as `docker save` writes it.
    let list = Command::new("tar").arg("tf").arg(&docker).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("manifest.json")
            && list.contains("repositories")
            && list.contains("/layer.tar"),
        "{list}"
    );

    for (file, tags) in [
        (&docker, vec!["busybox:local", "other:2"]),
        (&oci, vec!["busybox:local"]),
    ] {
        let r2 = fresh_root();
        let loaded = rbuild_ok(r2.path(), &["load", "-i", file.to_str().unwrap()]);
        for t in &tags {
            assert!(loaded.contains(&format!("Loaded image: {t}")), "{loaded}");
        }
        assert_eq!(
            rbuild_ok(r2.path(), &["images", "-q"]).trim(),
            id,
            "same image ID after a round trip"
        );
    }
    // Gzip-compressed archives load too.
    let gz = out.path().join("d.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", docker.display(), gz.display()))
        .status();
    assert!(st.unwrap().success());
    let r3 = fresh_root();
    rbuild_ok(r3.path(), &["load", "-i", gz.to_str().unwrap()]);
    assert_eq!(rbuild_ok(r3.path(), &["images", "-q"]).trim(), id);
    // From stdin.
    let r4 = fresh_root();
    let o = Command::new(rbuild_bin())
        .arg("--root")
        .arg(r4.path())
        .arg("load")
        .stdin(std::fs::File::open(&oci).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // skopeo reads both archives.
    if have("skopeo") {
        for src in [
            format!("docker-archive:{}", docker.display()),
            format!("oci-archive:{}:busybox:local", oci.display()),
        ] {
            let o = Command::new("skopeo")
                .args(["inspect", &src])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "skopeo inspect {src}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn import_rootfs_tar() {
    let root = fresh_root();
    let r = root.path();
    let id = rbuild_ok(
        r,
        &[
            "import",
            "-m",
            "from a tar",
            busybox_rootfs_tar().to_str().unwrap(),
            "imp:1",
        ],
    );
    assert!(id.starts_with("sha256:"));
    let v: Value = serde_json::from_str(&rbuild_ok(r, &["inspect", "imp:1"])).unwrap();
    assert_eq!(v[0]["Id"].as_str().unwrap(), id.trim());
    assert_eq!(v[0]["Comment"], "from a tar");
    assert_eq!(
        v[0]["Manifest"]["Layers"][0]["MediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The layer's diff ID is the tar's digest.
    let tar_digest = rbuild::store::Digest::of_bytes(&std::fs::read(busybox_rootfs_tar()).unwrap());
    assert_eq!(v[0]["RootFS"]["Layers"][0], tar_digest.as_str());
    let hist = rbuild_ok(r, &["history", "imp:1"]);
    assert!(hist.contains("rbuild import busybox-rootfs.tar"), "{hist}");
    // Without a name: an untagged image, listed as <none>.
    rbuild_ok(r, &["import", busybox_rootfs_tar().to_str().unwrap()]);
    assert!(rbuild_ok(r, &["images"]).contains("<none>"));
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    rbuild_ok(
        r,
        &[
            "import",
            busybox_rootfs_tar().to_str().unwrap(),
            "imported:1",
        ],
    );
    if !have("skopeo") || !have("umoci") {
        eprintln!("skipping: skopeo or umoci not installed");
        return;
    }
    for tag in ["busybox:local", "imported:1"] {
        let o = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}/oci:{tag}", r.display()))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo inspect {tag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Os"], "linux");
        let bundle = fresh_root();
        let b = bundle.path().join("bundle");
        let mut cmd = Command::new("umoci");
        cmd.arg("unpack");
        if !nix::unistd::geteuid().is_root() {
            cmd.arg("--rootless");
        }
        let o = cmd
            .arg("--image")
            .arg(format!("{}/oci:{tag}", r.display()))
            .arg(&b)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "umoci unpack {tag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(b.join("rootfs/bin/busybox").is_file());
        assert!(b.join("rootfs/etc/passwd").is_file());
    }
}

#[test]
fn podman_loads_a_saved_archive() {
    if !have("podman") {
        eprintln!("skipping: podman is not installed");
        return;
    }
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let out = fresh_root();
    let file = out.path().join("d.tar");
    rbuild_ok(r, &["save", "-o", file.to_str().unwrap(), "busybox:local"]);
    let proot = out.path().join("proot");
    let prun = out.path().join("prun");
    let o = Command::new("podman")
        .arg("--root")
        .arg(&proot)
        .arg("--runroot")
        .arg(&prun)
        .args(["--storage-driver", "vfs", "load", "-i"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "podman load: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("busybox:local"), "{text}");
}

#[test]
fn two_processes_tagging_at_once_lose_no_tag() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let script = |prefix: &str| {
        format!(
            "for i in $(seq 1 50); do {bin} --root {root} tag busybox:local {prefix}:$i || exit 1; done",
            bin = rbuild_bin().display(),
            root = r.display()
        )
    };
    let mut a = Command::new("sh")
        .arg("-c")
        .arg(script("left"))
        .spawn()
        .unwrap();
    let mut b = Command::new("sh")
        .arg("-c")
        .arg(script("right"))
        .spawn()
        .unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let images = rbuild_ok(r, &["images"]);
    let rows: std::collections::HashSet<(String, String)> = images
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    for p in ["left", "right"] {
        for i in 1..=50 {
            assert!(
                rows.contains(&(p.to_string(), i.to_string())),
                "{p}:{i} missing:\n{images}"
            );
        }
    }
    assert_eq!(images.lines().count(), 1 + 1 + 100);
    // index.json is still valid JSON with 101 entries.
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("oci/index.json")).unwrap()).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 101);
}

#[test]
fn loads_archives_written_by_skopeo() {
    if !have("skopeo") {
        eprintln!("skipping: skopeo not installed");
        return;
    }
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let id = rbuild_ok(r, &["images", "-q", "--no-trunc"])
        .trim()
        .to_string();
    let out = fresh_root();
    for (dest, file) in [
        ("docker-archive:{}:sk/docker:1", "sk-docker.tar"),
        ("oci-archive:{}:sk/oci:1", "sk-oci.tar"),
    ] {
        let path = out.path().join(file);
        let dest = dest.replace("{}", &path.display().to_string());
        let o = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}/oci:busybox:local", r.display()))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo copy to {dest}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r2 = fresh_root();
        let loaded = rbuild_ok(r2.path(), &["load", "-i", path.to_str().unwrap()]);
        assert!(loaded.starts_with("Loaded image: sk/"), "{loaded}");
        assert_eq!(
            rbuild_ok(r2.path(), &["images", "-q", "--no-trunc"]).trim(),
            id,
            "{dest}"
        );
    }
}

#[test]
fn save_to_stdout_and_refusals() {
    let root = fresh_root();
    let r = root.path();
    load_busybox(r);
    let o = rbuild(r, &["save", "busybox:local"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = r.join("tmp/stdout.tar");
    std::fs::write(&f, &o.stdout).unwrap();
    let r2 = fresh_root();
    assert_eq!(
        rbuild_ok(r2.path(), &["load", "-i", f.to_str().unwrap()]),
        "Loaded image: busybox:local\n"
    );
    let o = rbuild(
        r,
        &["save", "-o", "/nonexistent-dir/x.tar", "busybox:local"],
    );
    assert!(!o.status.success());
    let o = rbuild(r, &["save", "-o", f.to_str().unwrap(), "nope:1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such image: nope:1"), "{err}");
}

#[test]
fn untagged_images_show_as_none_and_prune_all_empties_the_store() {
    let root = fresh_root();
    let r = root.path();
    let id = rbuild_ok(r, &["import", busybox_rootfs_tar().to_str().unwrap()]);
    let images = rbuild_ok(r, &["images"]);
    assert!(
        images
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("<none>       <none>"),
        "{images}"
    );
    assert!(rbuild_ok(r, &["inspect", id.trim()]).contains("\"RepoTags\": []"));
    let out = rbuild_ok(r, &["prune", "--all"]);
    assert!(
        out.contains("dropped untagged images: 1") && out.contains("Total reclaimed space: 1."),
        "{out}"
    );
    assert_eq!(store_state(r).1.len(), 0);
    assert_eq!(rbuild_ok(r, &["images", "-q"]), "");
    let out = rbuild_ok(r, &["prune"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
}
