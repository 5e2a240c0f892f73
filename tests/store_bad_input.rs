//! Bad archives: each is refused with a one-line error naming the problem, and the store
//! (index.json, blobs, ingest, tmp) is exactly as before.

mod common;

use std::path::Path;

use common::*;
use rbuild::store::Digest;

/// A tar entry written with raw header fields, so that names the tar crate would refuse
/// (`../x`, `/etc/x`) can be made.
struct E<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
        mode: 0o644,
    }
}
fn dir(name: &str) -> E<'_> {
    E {
        name,
        kind: tar::EntryType::Directory,
        link: "",
        data: b"",
        mode: 0o755,
    }
}
fn symlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        name,
        kind: tar::EntryType::Symlink,
        link: target,
        data: b"",
        mode: 0o777,
    }
}
fn hardlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        name,
        kind: tar::EntryType::Link,
        link: target,
        data: b"",
        mode: 0o644,
    }
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

#[derive(Default)]
struct Oci {
    wrong_diff_id: bool,
    drop_layer_blob: bool,
    corrupt_layer_blob: bool,
}

/// An OCI archive holding one image `bad:1` with `layer` as its only layer.
fn oci_archive(layer: &[u8], o: Oci) -> Vec<u8> {
    let layer_d = Digest::of_bytes(layer);
    let diff = if o.wrong_diff_id {
        Digest::of_bytes(b"something else")
    } else {
        layer_d.clone()
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    );
    let config_d = Digest::of_bytes(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_d = Digest::of_bytes(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_d}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"bad:1"}}}}]}}"#,
        manifest.len()
    );
    let mut layer_bytes = layer.to_vec();
    if o.corrupt_layer_blob {
        let i = layer_bytes.len() / 3;
        layer_bytes[i] ^= 0xff;
    }
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let (lb, cb, mb) = (blob(&layer_d), blob(&config_d), blob(&manifest_d));
    let mut entries = vec![
        file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        file("index.json", index.as_bytes()),
        file(&cb, config.as_bytes()),
        file(&mb, manifest.as_bytes()),
    ];
    if !o.drop_layer_blob {
        entries.push(file(&lb, &layer_bytes));
    }
    tar_of(&entries)
}

/// Load `bytes` as an archive into a store that has busybox:local; expect a one-line error
/// containing `want` and an unchanged store.
fn refused(bytes: &[u8], want: &str) {
    let root = fresh_root();
    let r = root.path();
    rbuild_ok(r, &["load", "-i", busybox_archive().to_str().unwrap()]);
    let before = store_state(r);
    let f = r.join("tmp-input.tar");
    std::fs::write(&f, bytes).unwrap();
    let o = rbuild(r, &["load", "-i", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "load should fail ({want})");
    assert!(err.contains(want), "expected {want:?} in: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(
        store_state(r),
        before,
        "the store changed after a failed load"
    );
    for d in ["ingest", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(r.join(d)).unwrap().collect();
        assert!(left.is_empty(), "{d}/ not cleaned up: {left:?}");
    }
    // Import refuses the same layers (when the input is a layer rather than an archive).
    let _ = Path::new(want);
}

fn good_layer() -> Vec<u8> {
    tar_of(&[dir("app/"), file("app/hello", b"hello\n")])
}

#[test]
fn a_good_handmade_archive_loads() {
    let root = fresh_root();
    let f = root.path().join("good.tar");
    std::fs::write(&f, oci_archive(&good_layer(), Oci::default())).unwrap();
    let out = rbuild_ok(root.path(), &["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: bad:1\n");
}

#[test]
fn truncated_archive() {
    let bytes = std::fs::read(busybox_archive()).unwrap();
    refused(&bytes[..bytes.len() / 2], "truncated");
    // Cut at an entry boundary: no end-of-archive marker.
    let whole = oci_archive(&good_layer(), Oci::default());
    refused(&whole[..whole.len() - 1024], "truncated archive");
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    refused(&gz[..gz.len() / 2], "not a valid tar archive");
}

#[test]
fn not_a_tar_file() {
    refused(
        &b"this is not a tar archive\n".repeat(100),
        "not a valid tar archive",
    );
    refused(b"", "not an image archive");
    refused(&tar_of(&[file("hello.txt", b"hi")]), "not an image archive");
}

#[test]
fn blob_whose_digest_does_not_match() {
    refused(
        &oci_archive(
            &good_layer(),
            Oci {
                corrupt_layer_blob: true,
                ..Oci::default()
            },
        ),
        "corrupt archive",
    );
}

#[test]
fn layer_whose_diff_id_does_not_match() {
    refused(
        &oci_archive(
            &good_layer(),
            Oci {
                wrong_diff_id: true,
                ..Oci::default()
            },
        ),
        "digest mismatch",
    );
}

#[test]
fn manifest_naming_a_missing_blob() {
    refused(
        &oci_archive(
            &good_layer(),
            Oci {
                drop_layer_blob: true,
                ..Oci::default()
            },
        ),
        "missing from the archive",
    );
}

#[test]
fn layer_entry_with_dotdot() {
    let layer = tar_of(&[dir("app/"), file("app/../../evil", b"x")]);
    refused(&oci_archive(&layer, Oci::default()), "path leaves the root");
}

#[test]
fn layer_entry_with_absolute_path() {
    let layer = tar_of(&[file("/etc/evil", b"x")]);
    refused(&oci_archive(&layer, Oci::default()), "absolute path");
}

#[test]
fn symlink_outside_then_write_through_it() {
    let layer = tar_of(&[
        symlink("escape", "/etc"),
        file("escape/passwd", b"root::0:0::/:/bin/sh\n"),
    ]);
    refused(
        &oci_archive(&layer, Oci::default()),
        "written through the symlink escape",
    );
    let layer = tar_of(&[
        symlink("up", "../../../.."),
        dir("up/tmp/"),
        file("up/tmp/x", b"x"),
    ]);
    refused(
        &oci_archive(&layer, Oci::default()),
        "written through the symlink up",
    );
}

#[test]
fn hardlink_to_outside() {
    let layer = tar_of(&[hardlink("shadow", "../../../etc/shadow")]);
    refused(&oci_archive(&layer, Oci::default()), "hard link to");
    let layer = tar_of(&[hardlink("shadow", "/etc/shadow")]);
    refused(&oci_archive(&layer, Oci::default()), "hard link to");
}

#[test]
fn import_refuses_unsafe_rootfs_and_junk() {
    let root = fresh_root();
    let r = root.path();
    rbuild_ok(r, &["load", "-i", busybox_archive().to_str().unwrap()]);
    let before = store_state(r);
    for (bytes, want) in [
        (tar_of(&[file("../evil", b"x")]), "path leaves the root"),
        (
            tar_of(&[symlink("l", "/"), file("l/x", b"x")]),
            "written through the symlink",
        ),
        (b"junk".repeat(300), "not a valid tar"),
        (Vec::new(), "empty"),
    ] {
        let f = r.join("in.tar");
        std::fs::write(&f, &bytes).unwrap();
        let o = rbuild(r, &["import", f.to_str().unwrap(), "x:1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{want}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(store_state(r), before);
        assert_eq!(std::fs::read_dir(r.join("ingest")).unwrap().count(), 0);
    }
}

#[test]
fn device_nodes_are_kept_and_created_only_with_privilege() {
    let mut dev = tar::Header::new_gnu();
    dev.set_path("dev/null2").unwrap();
    dev.set_entry_type(tar::EntryType::Char);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_mode(0o666);
    dev.set_uid(0);
    dev.set_gid(0);
    dev.set_mtime(0);
    dev.set_size(0);
    dev.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&dev, &b""[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let root = fresh_root();
    let f = root.path().join("dev.tar");
    std::fs::write(&f, oci_archive(&layer, Oci::default())).unwrap();
    rbuild_ok(root.path(), &["load", "-i", f.to_str().unwrap()]);
    let store = rbuild::store::Store::open(root.path()).unwrap();
    let img = store.resolve("bad:1").unwrap();
    let (dir, warnings) = store
        .ensure_unpacked_report(&img.manifest.layers[0], &img.config.rootfs.diff_ids[0])
        .unwrap();
    let p = dir.join("dev/null2");
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::FileTypeExt;
        assert!(p.symlink_metadata().unwrap().file_type().is_char_device());
    } else {
        assert!(!p.exists());
        assert!(
            warnings.iter().any(|w| w.contains("dev/null2")),
            "{warnings:?}"
        );
    }
}
