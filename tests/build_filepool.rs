//! The file pool (`src/store/filepool.rs`): big files a `COPY` took from the context are
//! hardlinked into later COPY layers instead of copied, without changing a single byte of
//! any layer, and without any step being able to change another layer's files through it.

mod build_util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use build_util::*;

/// 1 MiB of bytes that depend on `seed` (well above the pool's 128 KiB threshold).
fn big(seed: u8) -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed).collect()
}

/// Files changed within 100 ms before a build are not pooled (their stat cannot vouch for
/// their content yet, as in git's racy-index rule): wait that out.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(200));
}

fn pool_entries(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("files"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The snapshot dir of the image's top layer.
fn top_snapshot(root: &Path, image: &str) -> PathBuf {
    let store = store(root);
    let rec = store.resolve(image).unwrap();
    store.snapshot_dir(rec.config.rootfs.diff_ids.last().unwrap())
}

/// (path, entry type, size) of every entry of the image's top layer blob.
fn top_layer_entries(root: &Path, image: &str) -> Vec<(String, tar::EntryType, u64)> {
    let store = store(root);
    let rec = store.resolve(image).unwrap();
    let blob = store.open_blob(&rec.manifest.layers.last().unwrap().digest).unwrap();
    let mut ar = tar::Archive::new(rbuild::snapshot::maybe_decompress(blob).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type(), e.header().size().unwrap())
        })
        .collect()
}

#[test]
fn unchanged_big_files_are_linked_and_the_layer_is_byte_identical() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY . /app/\n"), ("small.txt", "v1\n")]);
    fs::write(ctx.path().join("big.bin"), big(1)).unwrap();
    fs::write(ctx.path().join("twin.bin"), big(1)).unwrap();
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "pool:1"]);
    assert!(r.ok(), "{}", r.stderr);
    // big.bin and twin.bin have one key: one entry, the file of the first copy.
    let entries = pool_entries(root.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    let pooled = fs::metadata(&entries[0]).unwrap();
    assert_eq!((pooled.len(), pooled.mode() & 0o7777, pooled.uid(), pooled.mtime()), (1 << 20, 0o644, 0, 0));

    // A source edit: the new layer links the pooled inode instead of copying it.
    write_files(ctx.path(), &[("small.txt", "v2\n")]);
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "pool:2"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 1, "{}", r.stderr);
    let snap = top_snapshot(root.path(), "pool:2");
    assert_ne!(snap, top_snapshot(root.path(), "pool:1"));
    let linked = fs::metadata(snap.join("app/big.bin")).unwrap();
    assert_eq!(linked.ino(), pooled.ino(), "big.bin is the pooled inode");
    let twin = fs::metadata(snap.join("app/twin.bin")).unwrap();
    assert_ne!(twin.ino(), pooled.ino(), "one inode is linked once per layer");
    assert_eq!(fs::read(snap.join("app/twin.bin")).unwrap(), big(1));
    assert_eq!(fs::read(snap.join("app/small.txt")).unwrap(), b"v2\n");

    // The layer stores both as plain files, never as a tar hardlink.
    let layer = top_layer_entries(root.path(), "pool:2");
    for name in ["app/big.bin", "app/twin.bin"] {
        let e = layer.iter().find(|e| e.0 == name).unwrap_or_else(|| panic!("{name} in {layer:?}"));
        assert_eq!((e.1, e.2), (tar::EntryType::Regular, 1 << 20), "{name}");
    }
    // Same layers as a cold build that could not use the pool.
    let fresh = store_with_busybox();
    let cold = build(fresh.path(), ctx.path(), &["-t", "pool:2"]);
    assert!(cold.ok(), "{}", cold.stderr);
    let diff_ids = |root: &Path| store(root).resolve("pool:2").unwrap().config.rootfs.diff_ids;
    assert_eq!(diff_ids(fresh.path()), diff_ids(root.path()));
    assert_eq!(pool_entries(fresh.path()).len(), 1);
}

#[test]
fn a_run_step_cannot_change_a_pooled_file_for_other_layers() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("big.bin"), big(2)).unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nCOPY big.bin /b\nRUN echo extra >> /b && chmod 600 /b\n",
        )],
    );
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "run:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let image = unpack_image(root.path(), "run:1");
    let mut want = big(2);
    want.extend_from_slice(b"extra\n");
    assert_eq!(fs::read(image.path().join("b")).unwrap(), want);

    // The pool and the COPY layer's snapshot still hold the original, with its metadata.
    let entries = pool_entries(root.path());
    assert_eq!(entries.len(), 1);
    assert_eq!(fs::read(&entries[0]).unwrap(), big(2));
    let md = fs::metadata(&entries[0]).unwrap();
    assert_eq!((md.mode() & 0o7777, md.mtime()), (0o644, 0));

    // A later COPY of the same file links it and gets the original.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN true\nCOPY big.bin /c\n")]);
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "run:2"]);
    assert!(r.ok(), "{}", r.stderr);
    let snap = top_snapshot(root.path(), "run:2");
    assert_eq!(fs::metadata(snap.join("c")).unwrap().ino(), md.ino());
    assert_eq!(fs::read(unpack_image(root.path(), "run:2").path().join("c")).unwrap(), big(2));
}

#[test]
fn mode_owner_and_mtime_are_part_of_the_pool_key() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("big.bin"), big(3)).unwrap();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nCOPY --chmod=600 big.bin /a\nCOPY --chown=5:6 big.bin /b\nCOPY big.bin /c\n")],
    );
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "keys:1"]);
    assert!(r.ok(), "{}", r.stderr);
    settle();
    let r = build_env(root.path(), ctx.path(), &["-t", "keys:2"], &[("SOURCE_DATE_EPOCH", "1000")]);
    assert!(r.ok(), "{}", r.stderr);
    let mut keys: Vec<(u32, u32, u32, i64)> = pool_entries(root.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap())
        .map(|m| (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()))
        .collect();
    keys.sort();
    let mut want = vec![(0o600, 0, 0, 0), (0o644, 5, 6, 0), (0o644, 0, 0, 0)];
    want.extend([(0o600, 0, 0, 1000), (0o644, 5, 6, 1000), (0o644, 0, 0, 1000)]);
    want.sort();
    assert_eq!(keys, want);
    let f = unpack_image(root.path(), "keys:1");
    let m = |p: &str| fs::symlink_metadata(f.path().join(p)).unwrap();
    assert_eq!(m("a").permissions().mode() & 0o7777, 0o600);
    assert_eq!((m("b").uid(), m("b").gid()), (5, 6));
    assert_eq!(fs::read(f.path().join("c")).unwrap(), big(3));
}

#[test]
fn an_edited_big_file_is_copied_anew_and_prune_sweeps_what_nothing_links() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY big.bin /b\n")]);
    fs::write(ctx.path().join("big.bin"), big(4)).unwrap();
    settle();
    assert!(build(root.path(), ctx.path(), &["-t", "edit:1"]).ok());
    fs::write(ctx.path().join("big.bin"), big(5)).unwrap();
    fs::set_permissions(ctx.path().join("big.bin"), fs::Permissions::from_mode(0o755)).unwrap();
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "edit:2"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "edit:2");
    assert_eq!(fs::read(f.path().join("b")).unwrap(), big(5));
    assert_eq!(fs::metadata(f.path().join("b")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(pool_entries(root.path()).len(), 2);

    // While an image or cache record keeps a snapshot, its pool entry stays.
    let store = store(root.path());
    assert_eq!(store.prune(false, &[]).unwrap().pooled_files, 0);
    assert_eq!(pool_entries(root.path()).len(), 2);
    // Once nothing does, prune takes the entries and counts their bytes.
    for t in ["edit:1", "edit:2"] {
        let out = rbuild().arg("--root").arg(root.path()).args(["rmi", t]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let report = store.prune(true, &[]).unwrap();
    assert_eq!(report.pooled_files, 2, "{report:?}");
    assert!(report.bytes >= 2 << 20, "{report:?}");
    assert!(pool_entries(root.path()).is_empty());
}

#[test]
fn a_later_source_for_the_same_path_wins_over_a_pooled_link() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::create_dir_all(ctx.path().join("a")).unwrap();
    fs::create_dir_all(ctx.path().join("b")).unwrap();
    fs::create_dir_all(ctx.path().join("c")).unwrap();
    fs::write(ctx.path().join("a/x.bin"), big(6)).unwrap();
    fs::write(ctx.path().join("b/x.bin"), big(7)).unwrap();
    fs::write(ctx.path().join("c/x.bin"), b"").unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nCOPY a/x.bin /g/\nCOPY a/x.bin b/x.bin /d/\nCOPY a/x.bin c/x.bin /e/\nCOPY a/x.bin <<x.bin /f/\ninline\nx.bin\n",
        )],
    );
    for (i, args) in [&["-t", "over:1"][..], &["--no-cache", "-t", "over:2"]].iter().enumerate() {
        settle();
        let r = build(root.path(), ctx.path(), args);
        assert!(r.ok(), "{}", r.stderr);
        let f = unpack_image(root.path(), args.last().unwrap());
        assert_eq!(fs::read(f.path().join("d/x.bin")).unwrap(), big(7), "build {i}");
        assert_eq!(fs::read(f.path().join("e/x.bin")).unwrap(), b"", "build {i}");
        assert_eq!(fs::read(f.path().join("f/x.bin")).unwrap(), b"inline\n", "build {i}");
    }
    assert_eq!(pool_entries(root.path()).len(), 2);
}

/// QA: `COPY A B /ab/` where both have a subdir `x/`: merging B's `x/` into A's dropped the
/// pending link of `A/x/f`, leaving the empty placeholder in the layer.
#[test]
fn merging_directories_keeps_pending_links() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::create_dir_all(ctx.path().join("A/x")).unwrap();
    fs::write(ctx.path().join("A/x/f"), big(8)).unwrap();
    write_files(ctx.path(), &[("B/x/g", "small\n"), ("Dockerfile", "FROM busybox:local\nCOPY A/x/f /warm\nCOPY A B /ab/\n")]);
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "merge:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "merge:1");
    assert_eq!(fs::read(f.path().join("ab/x/f")).unwrap(), big(8));
    assert_eq!(fs::read(f.path().join("ab/x/g")).unwrap(), b"small\n");
}

/// QA: `ADD big.bin arch.tar /dst/` emptied big.bin: extracting the tar dropped every pending
/// link below /dst (and the wrong layer was cached).
#[test]
fn add_extracting_a_tar_next_to_a_pooled_file_keeps_it_whole() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("big.bin"), big(9)).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "small.txt", &b"small\n"[..]).unwrap();
    fs::write(ctx.path().join("arch.tar"), tar.into_inner().unwrap()).unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY big.bin /warm/\nADD big.bin arch.tar /dst/\n")]);
    settle();
    let r = build(root.path(), ctx.path(), &["-t", "addtar:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "addtar:1");
    assert_eq!(fs::read(f.path().join("dst/big.bin")).unwrap(), big(9));
    assert_eq!(fs::read(f.path().join("dst/small.txt")).unwrap(), b"small\n");
}

/// QA: `COPY big.bin /a/` and `COPY big.bin /b/` in two layers linked one inode into both,
/// so a RUN saw /a/big.bin and /b/big.bin as hardlinks (tar, cp -a and du change with that).
#[test]
fn one_pooled_inode_appears_once_per_image() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("big.bin"), big(10)).unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nCOPY big.bin /a/\nCOPY big.bin /b/\nRUN true\nCOPY big.bin /c/\nRUN stat -c %i /a/big.bin /b/big.bin /c/big.bin > /inodes\n",
        )],
    );
    for args in [&["-t", "ino:1"][..], &["--no-cache", "-t", "ino:2"]] {
        settle();
        let r = build(root.path(), ctx.path(), args);
        assert!(r.ok(), "{}", r.stderr);
        let f = unpack_image(root.path(), args.last().unwrap());
        let inodes = fs::read_to_string(f.path().join("inodes")).unwrap();
        let mut v: Vec<&str> = inodes.lines().collect();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 3, "three files, three inodes: {inodes}");
    }
    // The second build linked what it could (one inode per image), and its layers are the
    // first build's.
    let diff_ids = |t: &str| store(root.path()).resolve(t).unwrap().config.rootfs.diff_ids;
    assert_eq!(diff_ids("ino:1")[..4], diff_ids("ino:2")[..4]);
}

/// QA: a `files/` that is not a directory made prune fail half way.
#[test]
fn prune_goes_on_when_the_pool_dir_is_broken() {
    let root = store_with_busybox();
    fs::write(root.path().join("files"), b"not a dir").unwrap();
    let out = rbuild().arg("--root").arg(root.path()).args(["prune", "-a", "-f"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
