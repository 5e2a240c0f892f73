//! The store's library API as the builder uses it: blobs, JSON documents, tags, the cache
//! index, snapshots, prune.
#![allow(clippy::print_stderr)] // tests say why they skip

mod common;

use std::io::Write;

use common::*;
use rbuild::store::{
    media, CacheRecord, Descriptor, Digest, History, ImageConfig, Manifest, Reference, RootFs,
    Store,
};

fn blob_count(store: &Store) -> usize {
    std::fs::read_dir(store.blobs_dir()).unwrap().count()
}

fn ingest_empty(store: &Store) -> bool {
    std::fs::read_dir(store.root().join("ingest"))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn open_creates_a_valid_oci_layout() {
    let root = fresh_root();
    let store = Store::open(root.path()).unwrap();
    for d in [
        "oci/blobs/sha256",
        "ingest",
        "cache",
        "snapshots",
        "containers",
        "tmp",
    ] {
        assert!(root.path().join(d).is_dir(), "{d}");
    }
    assert_eq!(
        std::fs::read_to_string(root.path().join("oci/oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.index_path()).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 0);
    // Opening again changes nothing.
    Store::open(root.path()).unwrap();
    assert_eq!(store.list_images().unwrap().len(), 0);
}

#[test]
fn blob_writer_verifies_and_is_idempotent() {
    let root = fresh_root();
    let store = Store::open(root.path()).unwrap();
    let data = b"some layer bytes".repeat(1000);
    let want = Digest::of_bytes(&data);

    let mut w = store.blob_writer().unwrap();
    w.write_all(&data).unwrap();
    let err = w
        .commit(Some(&Digest::of_bytes(b"other")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    assert_eq!(blob_count(&store), 0);
    assert!(ingest_empty(&store));

    for _ in 0..2 {
        let mut w = store
            .blob_writer()
            .unwrap()
            .media_type(media::OCI_LAYER_TAR);
        w.write_all(&data).unwrap();
        let d = w.commit(Some(&want)).unwrap();
        assert_eq!(
            (d.digest.clone(), d.size, d.media_type.as_str()),
            (want.clone(), data.len() as u64, media::OCI_LAYER_TAR)
        );
    }
    assert_eq!(blob_count(&store), 1);
    assert!(ingest_empty(&store));
    assert_eq!(std::fs::read(store.blob_path(&want)).unwrap(), data);

    // A writer dropped without commit leaves nothing behind.
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert!(ingest_empty(&store));
    assert!(store
        .open_blob(&Digest::of_bytes(b"abandoned"))
        .unwrap_err()
        .to_string()
        .contains("missing"));
}

/// Build an image by hand the way the builder does: layer blob, config, manifest, tag.
fn make_image(store: &Store, base: &str, files: &[(&str, &[u8])], tag: &str) -> Descriptor {
    let base = store.resolve(base).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(if name.starts_with("dev:") {
            tar::EntryType::Char
        } else {
            tar::EntryType::Regular
        });
        b.append_data(&mut h, name.trim_start_matches("dev:"), *data)
            .unwrap();
    }
    let tar_bytes = b.into_inner().unwrap();
    let diff_id = Digest::of_bytes(&tar_bytes);
    let mut gz = flate2::write::GzEncoder::new(
        store
            .blob_writer()
            .unwrap()
            .media_type(media::OCI_LAYER_GZIP),
        flate2::Compression::fast(),
    );
    gz.write_all(&tar_bytes).unwrap();
    let layer = gz.finish().unwrap().commit(None).unwrap();
    let mut config = base.config.clone();
    config.rootfs.diff_ids.push(diff_id);
    config.history.push(History {
        created_by: Some(format!("test layer for {tag}")),
        ..History::default()
    });
    let c = config.config.get_or_insert_with(Default::default);
    c.healthcheck = Some(rbuild::store::HealthConfig {
        test: Some(vec!["CMD".into(), "true".into()]),
        ..Default::default()
    });
    c.shell = Some(vec!["/bin/sh".into(), "-ec".into()]);
    c.on_build = Some(vec!["RUN echo child".into()]);
    let config_desc = store.put_json_blob(media::OCI_CONFIG, &config).unwrap();
    let mut layers = base.manifest.layers.clone();
    layers.push(layer);
    let manifest = store
        .put_json_blob(media::OCI_MANIFEST, &Manifest::new(config_desc, layers))
        .unwrap();
    store
        .tag(&manifest, &Reference::parse(tag).unwrap())
        .unwrap();
    manifest
}

#[test]
fn images_built_through_the_api_keep_docker_fields_and_unpack_overlay_ready() {
    let (root, store) = store_with_busybox();
    make_image(
        &store,
        "busybox:local",
        &[
            ("bin/.wh.ls", b""),
            ("etc/.wh..wh..opq", b""),
            ("etc/hostname", b"x\n"),
        ],
        "app:1",
    );
    let img = store.resolve("app:1").unwrap();
    assert_eq!(img.tags, vec![Reference::parse("app:1").unwrap()]);
    let cfg = img.config.config.clone().unwrap();
    assert_eq!(cfg.shell.unwrap()[1], "-ec");
    assert_eq!(cfg.on_build.unwrap()[0], "RUN echo child");
    assert_eq!(cfg.healthcheck.unwrap().test.unwrap()[0], "CMD");
    assert_eq!(img.config.config.clone().unwrap().cmd.unwrap(), ["sh"]);
    // The raw config JSON has Docker's spelling.
    let raw = String::from_utf8(store.read_blob(&img.id).unwrap()).unwrap();
    for key in [
        r#""Healthcheck":{"Test":["CMD","true"]}"#,
        r#""Shell":["/bin/sh","-ec"]"#,
        r#""OnBuild":["RUN echo child"]"#,
    ] {
        assert!(raw.contains(key), "{key} in {raw}");
    }

    let mut dirs = Vec::new();
    for (l, d) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
        let dir = store.ensure_unpacked(l, d).unwrap();
        assert_eq!(dir, store.snapshot_dir(d));
        assert_eq!(
            store.ensure_unpacked(l, d).unwrap(),
            dir,
            "second call reuses the snapshot"
        );
        dirs.push(dir);
    }
    assert_eq!(store.ensure_image_unpacked(&img).unwrap(), dirs);
    assert!(dirs[0].join("bin/busybox").is_file());
    assert!(dirs[0].join("bin/ls").symlink_metadata().is_ok());
    // Layer 2 holds only its own files; its whiteouts are overlay whiteouts.
    assert!(!dirs[1].join("bin/busybox").exists());
    assert!(dirs[1].join("etc/hostname").is_file());
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let wh = dirs[1].join("bin/ls").symlink_metadata().unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "bin/ls is a 0/0 whiteout"
        );
        let opq = xattr_get(&dirs[1].join("etc"), "trusted.overlay.opaque");
        assert_eq!(opq.as_deref(), Some(&b"y"[..]));
        overlay_shows_the_image(&dirs, root.path());
    }

    // A wrong diff ID is refused and leaves no snapshot.
    let wrong = Digest::of_bytes(b"wrong");
    let e = store
        .ensure_unpacked(&img.manifest.layers[1], &wrong)
        .unwrap_err()
        .to_string();
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(!store.snapshot_dir(&wrong).exists());
    let leftovers: Vec<_> = std::fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn xattr_get(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(p, name).ok().flatten()
}

/// Mount the snapshots as overlay lower dirs (top first) and check the merged view.
fn overlay_shows_the_image(dirs: &[std::path::PathBuf], root: &std::path::Path) {
    use nix::mount::{mount, umount, MsFlags};
    let merged = root.join("tmp/merged");
    std::fs::create_dir_all(&merged).unwrap();
    let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    let opts = format!("lowerdir={}", lower.join(":"));
    if mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .is_err()
    {
        eprintln!("overlayfs not available; skipping the merged-view check");
        return;
    }
    let check = || {
        assert!(merged.join("bin/busybox").is_file());
        assert!(merged.join("bin/cat").symlink_metadata().is_ok());
        assert!(
            merged.join("bin/ls").symlink_metadata().is_err(),
            "whited out"
        );
        assert!(merged.join("etc/hostname").is_file());
        assert!(
            !merged.join("etc/passwd").exists(),
            "opaque etc hides the base's files"
        );
    };
    let r = std::panic::catch_unwind(check);
    umount(&merged).unwrap();
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn cache_records_round_trip_and_keep_blobs_through_prune() {
    let (root, store) = store_with_busybox();
    assert!(store.cache_get("00ff").is_none());
    assert!(store.cache_put("../evil", &CacheRecord::default()).is_err());
    assert!(store.cache_put("ABC", &CacheRecord::default()).is_err());

    let m = make_image(&store, "busybox:local", &[("hello", b"hi")], "tmp:1");
    let img = store.image(&m).unwrap();
    let rec = CacheRecord {
        layer: Some(img.manifest.layers[1].clone()),
        diff_id: Some(img.config.rootfs.diff_ids[1].clone()),
        created_by: "RUN echo hi".into(),
        ..CacheRecord::default()
    };
    let key = "0123456789abcdef".repeat(4);
    store.cache_put(&key, &rec).unwrap();
    assert_eq!(store.cache_get(&key), Some(rec.clone()));
    store
        .ensure_unpacked(&img.manifest.layers[1], &img.config.rootfs.diff_ids[1])
        .unwrap();

    // Untagged: manifest and config go, the cached layer and its snapshot stay.
    store.untag(&Reference::parse("tmp:1").unwrap()).unwrap();
    let report = store.prune(false, &[]).unwrap();
    assert_eq!(report.blobs.len(), 2, "{report:?}");
    assert!(store.has_blob(&img.manifest.layers[1].digest));
    assert!(store.snapshot_dir(&img.config.rootfs.diff_ids[1]).is_dir());
    assert!(store.resolve("busybox:local").is_ok());
    assert_eq!(store.cache_get(&key), Some(rec));

    // --all drops the cache, then the layer and its snapshot go too.
    let report = store.prune(true, &[]).unwrap();
    assert_eq!(report.cache_records, 1);
    assert_eq!(report.blobs, vec![img.manifest.layers[1].digest.clone()]);
    assert_eq!(
        report.snapshots,
        vec![img.config.rootfs.diff_ids[1].hex().to_string()]
    );
    assert!(store.cache_get(&key).is_none());
    assert!(store.resolve("busybox:local").is_ok());
    let bb = store.resolve("busybox:local").unwrap();
    for d in [
        &bb.id,
        &bb.manifest_desc.digest,
        &bb.manifest.layers[0].digest,
    ] {
        assert!(store.has_blob(d));
    }
    drop(root);
}

#[test]
fn moving_a_tag_leaves_an_untagged_image_until_prune() {
    let (_root, store) = store_with_busybox();
    let a = make_image(&store, "busybox:local", &[("a", b"a")], "app:1");
    let b = make_image(&store, "busybox:local", &[("b", b"b")], "app:1");
    let images = store.list_images().unwrap();
    assert_eq!(images.len(), 3);
    let old = images
        .iter()
        .find(|i| i.manifest_desc.digest == a.digest)
        .unwrap();
    assert!(old.tags.is_empty(), "the old image is now dangling");
    assert_eq!(
        store.resolve("app:1").unwrap().manifest_desc.digest,
        b.digest
    );
    // Reachable by ID while it dangles.
    assert_eq!(
        store.resolve(old.id.as_str()).unwrap().manifest_desc.digest,
        a.digest
    );
    // Tagging an untagged image removes its untagged entry.
    store.add_image(&a, &[]).unwrap();
    store
        .tag(&a, &Reference::parse("app:old").unwrap())
        .unwrap();
    let index = store.read_index().unwrap();
    assert_eq!(
        index
            .manifests
            .iter()
            .filter(|d| d.digest == a.digest)
            .count(),
        1
    );
    store.untag(&Reference::parse("app:old").unwrap()).unwrap();
    let report = store.prune(false, &[]).unwrap();
    assert_eq!(
        report.untagged_images, 0,
        "untag removes the entry outright"
    );
    assert!(!store.has_blob(&a.digest));
    assert!(store.has_blob(&b.digest));
}

#[test]
fn config_types_write_what_the_builder_needs() {
    let (_root, store) = store_with_busybox();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs::default(),
        history: vec![History {
            created_by: Some("ENV A=1".into()),
            empty_layer: true,
            ..History::default()
        }],
        ..ImageConfig::default()
    };
    let d = store.put_json_blob(media::OCI_CONFIG, &config).unwrap();
    let raw = String::from_utf8(store.read_blob(&d.digest).unwrap()).unwrap();
    assert!(
        raw.contains(r#""empty_layer":true"#) && raw.contains(r#""diff_ids":[]"#),
        "{raw}"
    );
    let back: ImageConfig = store.read_json_blob(&d.digest).unwrap();
    assert_eq!(back, config);
}

#[test]
fn adopt_snapshot_renames_once() {
    let root = fresh_root();
    let store = Store::open(root.path()).unwrap();
    let id = Digest::of_bytes(b"pretend layer");
    for round in 0..2 {
        let dir = store.tmp_dir().join(format!("upper{round}"));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/round"), format!("{round}")).unwrap();
        let snap = store.adopt_snapshot(&dir, &id).unwrap();
        assert_eq!(snap, store.snapshot_dir(&id));
        assert!(!dir.exists());
        assert_eq!(
            std::fs::read_to_string(snap.join("etc/round")).unwrap(),
            "0",
            "the first one stays"
        );
    }
}

#[test]
fn leftovers_of_a_crash_do_not_break_the_store_and_prune_clears_them() {
    let (root, store) = store_with_busybox();
    let r = root.path();
    // What a killed writer leaves: a partial ingest file, a half-unpacked snapshot, a stray
    // index temp file.
    std::fs::write(r.join("ingest/blob-crashed"), b"partial").unwrap();
    std::fs::create_dir_all(r.join("snapshots/.tmp-crashed/tree/bin")).unwrap();
    std::fs::write(r.join("oci/.tmp-index"), b"{").unwrap();
    let img = store.resolve("busybox:local").unwrap();
    assert_eq!(store.list_images().unwrap().len(), 1);
    store.ensure_image_unpacked(&img).unwrap();
    let report = store.prune(false, &[]).unwrap();
    assert!(
        report.blobs.is_empty() && report.snapshots.is_empty(),
        "{report:?}"
    );
    assert!(std::fs::read_dir(r.join("ingest"))
        .unwrap()
        .next()
        .is_none());
    assert!(!r.join("snapshots/.tmp-crashed").exists());
    assert!(!r.join("oci/.tmp-index").exists());
    assert!(store.snapshot_dir(&img.config.rootfs.diff_ids[0]).is_dir());
}

#[test]
fn common_busybox_rootfs_has_the_basics() {
    use std::os::unix::fs::PermissionsExt;
    let dir = busybox_rootfs();
    let p = dir.path();
    assert!(p.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(p.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    assert!(std::fs::read_to_string(p.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    assert!(std::fs::read_to_string(p.join("etc/group"))
        .unwrap()
        .contains("nobody:x:65534:"));
    assert_eq!(
        p.join("tmp").metadata().unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    let out = std::process::Command::new(p.join("bin/busybox"))
        .arg("true")
        .status()
        .unwrap();
    assert!(out.success());
}
