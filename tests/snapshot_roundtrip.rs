//! dir → write_layer → unpack_layer gives the same tree; layers are byte-for-byte
//! deterministic.

mod snapshot_util;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use rbuild::snapshot::{
    self, DiffSource, LayerCompression, MtimePolicy, UnpackOptions, WriteOptions,
};
use sha2::{Digest, Sha256};
use snapshot_util::describe;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        None,
        p,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

type Step = Box<dyn Fn(&Path)>;

/// A tree with every kind of entry. `reverse` creates things in another order.
fn make_tree(root: &Path, reverse: bool) {
    let mut steps: Vec<Step> = vec![
        Box::new(|r| {
            fs::create_dir_all(r.join("bin")).unwrap();
            fs::write(r.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
            fs::set_permissions(r.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("tmp")).unwrap();
            fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("etc")).unwrap();
            fs::write(r.join("etc/secret"), b"s3cret").unwrap();
            fs::set_permissions(r.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
            xattr::set(r.join("etc/secret"), "user.note", b"value\0bin").unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("lib")).unwrap();
            symlink("../bin/tool", r.join("lib/rel-link")).unwrap();
            symlink("/etc/passwd", r.join("lib/abs-link")).unwrap();
            symlink("nowhere", r.join("lib/dangling")).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("data/empty")).unwrap();
            let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            fs::write(r.join("data/big.bin"), big).unwrap();
            fs::hard_link(r.join("data/big.bin"), r.join("data/zz-hardlink")).unwrap();
            let long = "x".repeat(120);
            fs::write(r.join("data").join(&long), b"long name").unwrap();
            symlink("y".repeat(150), r.join("data/long-target")).unwrap();
            nix::unistd::mkfifo(
                &r.join("data/fifo"),
                nix::sys::stat::Mode::from_bits_truncate(0o640),
            )
            .unwrap();
        }),
    ];
    if reverse {
        steps.reverse();
    }
    for s in steps {
        s(root);
    }
    if is_root() {
        std::os::unix::fs::lchown(root.join("etc/secret"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("lib/abs-link"), Some(7), Some(8)).unwrap();
        xattr::set(root.join("bin"), "trusted.rbuild-test", b"t").unwrap();
        nix::sys::stat::mknod(
            &root.join("data/null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        fs::set_permissions(root.join("data/null"), fs::Permissions::from_mode(0o666)).unwrap();
        // Not portable: must not travel.
        xattr::set(root.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
    }
    // Fixed times for everything (dirs last, since creating children changes them).
    let mut paths: Vec<_> = walkdir::WalkDir::new(root)
        .contents_first(true)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    paths.retain(|p| p != root);
    for p in &paths {
        set_mtime(p, 1_600_000_000);
    }
}

fn plain(mtime: MtimePolicy) -> WriteOptions {
    WriteOptions {
        mtime,
        compression: LayerCompression::None,
    }
}

#[test]
fn roundtrip_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    make_tree(&src, false);
    let mut blob = Vec::new();
    let opts = WriteOptions {
        mtime: MtimePolicy::Keep,
        compression: LayerCompression::Gzip(1),
    };
    let stats = snapshot::write_layer_with(&src, DiffSource::Plain, &mut blob, &opts).unwrap();
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    let report =
        snapshot::unpack_layer(snapshot::maybe_decompress(&blob[..]).unwrap(), &dst).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.entries, stats.entries);

    let mut want = describe(&src);
    let got = describe(&dst);
    // The overlay xattr is deliberately not carried.
    for l in &mut want {
        *l = l.replace("trusted.overlay.opaque=y", "");
    }
    assert_eq!(want, got);
    assert!(
        got.iter().any(|l| l.starts_with("bin/tool file 4755")),
        "{got:#?}"
    );
    assert!(got.iter().any(|l| l.starts_with("tmp dir 1777")));
    assert!(got.iter().any(|l| l.contains("user.note=value")));
    assert!(got
        .iter()
        .any(|l| l.starts_with("data/zz-hardlink ") && l.ends_with(" data/big.bin")));

    // diff_id is the sha256 of the uncompressed stream; sizes agree.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(
        stats.diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );
    assert_eq!(stats.uncompressed_size, tar.len() as u64);
}

#[test]
fn roundtrip_owners_and_devices_as_root() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    make_tree(&src, false);
    let mut tar = Vec::new();
    snapshot::write_layer_with(&src, DiffSource::Plain, &mut tar, &plain(MtimePolicy::Keep))
        .unwrap();
    snapshot::unpack_layer(&tar[..], &dst).unwrap();
    let got = describe(&dst);
    assert!(
        got.iter()
            .any(|l| l.starts_with("etc/secret file 600 1234:5678")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("lib/abs-link symlink 0 7:8")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|l| l.starts_with("data/null char 666")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("bin dir") && l.contains("trusted.rbuild-test=t")),
        "{got:#?}"
    );
}

#[test]
fn same_tree_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    make_tree(&a, false);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fs::create_dir(&b).unwrap();
    make_tree(&b, true);
    // Different real mtimes now: Fixed makes them irrelevant.
    set_mtime(&b.join("bin/tool"), 5);
    let opts = WriteOptions {
        mtime: MtimePolicy::Fixed(0),
        compression: LayerCompression::Gzip(snapshot::DEFAULT_GZIP_LEVEL),
    };
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    let sa = snapshot::write_layer_with(&a, DiffSource::Plain, &mut oa, &opts).unwrap();
    let sb = snapshot::write_layer_with(&b, DiffSource::Plain, &mut ob, &opts).unwrap();
    assert_eq!(sa, sb);
    assert!(oa == ob, "gzip bytes differ");
    // gzip header: no FNAME flag, mtime 0.
    assert_eq!(oa[3] & 0x08, 0);
    assert_eq!(&oa[4..8], &[0, 0, 0, 0]);

    // Keep: the one changed mtime changes the digest.
    let keep = plain(MtimePolicy::Keep);
    let sa = snapshot::write_layer_with(&a, DiffSource::Plain, std::io::sink(), &keep).unwrap();
    let sb = snapshot::write_layer_with(&b, DiffSource::Plain, std::io::sink(), &keep).unwrap();
    assert_ne!(sa.diff_id, sb.diff_id);
    set_mtime(&b.join("bin/tool"), 1_600_000_000);
    let sb = snapshot::write_layer_with(&b, DiffSource::Plain, std::io::sink(), &keep).unwrap();
    assert_eq!(sa.diff_id, sb.diff_id);
}

#[test]
fn entries_are_sorted_with_numeric_owners_and_policy_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path(), true);
    let mut tar = Vec::new();
    snapshot::write_layer_with(
        tmp.path(),
        DiffSource::Plain,
        &mut tar,
        &plain(MtimePolicy::Clamp(1_000)),
    )
    .unwrap();
    let mut ar = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert!(h.mtime().unwrap() <= 1_000);
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
    }
    // Parents first, then each directory's children in byte order.
    for (i, n) in names.iter().enumerate() {
        if let Some((parent, _)) = n.trim_end_matches('/').rsplit_once('/') {
            let p = names
                .iter()
                .position(|m| m.trim_end_matches('/') == parent)
                .unwrap();
            assert!(p < i, "{parent} after {n}");
        }
    }
    let top: Vec<&String> = names
        .iter()
        .filter(|n| !n.trim_end_matches('/').contains('/'))
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(top, sorted);
    assert!(names.iter().any(|n| n == "data/zz-hardlink"));
}

#[test]
fn overlay_layer_unpack_matches_flatten_for_plain_layers() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src, false);
    let mut tar = Vec::new();
    snapshot::write_layer_with(&src, DiffSource::Plain, &mut tar, &plain(MtimePolicy::Keep))
        .unwrap();
    let dst = tmp.path().join("snap");
    snapshot::unpack_to_new_dir(&tar[..], &dst, &UnpackOptions::overlay_layer()).unwrap();
    // Re-writing the unpacked tree gives the same layer.
    let again = snapshot::write_layer_with(
        &dst,
        DiffSource::OverlayUpper,
        std::io::sink(),
        &plain(MtimePolicy::Keep),
    )
    .unwrap();
    let orig = snapshot::write_layer_with(
        &src,
        DiffSource::Plain,
        std::io::sink(),
        &plain(MtimePolicy::Keep),
    )
    .unwrap();
    assert_eq!(again.diff_id, orig.diff_id);
}

/// The exact digests of a small fixed tree. If this fails, layer bytes changed (tar layout,
/// gzip level or backend): every cached layer digest changes with it — bump the cache
/// version in the build engine and update these values on purpose.
#[test]
fn golden_layer_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    fs::create_dir_all(r.join("app/bin")).unwrap();
    fs::write(r.join("app/bin/run"), b"#!/bin/sh\nexec echo hello\n").unwrap();
    fs::set_permissions(r.join("app/bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(r.join("app/README"), "rbuild golden layer\n".repeat(50)).unwrap();
    symlink("bin/run", r.join("app/start")).unwrap();
    for p in ["app/bin/run", "app/README", "app/start", "app/bin", "app"] {
        std::os::unix::fs::lchown(r.join(p), Some(0), Some(0)).ok();
    }
    if walkdir::WalkDir::new(r).into_iter().any(|e| {
        use std::os::unix::fs::MetadataExt;
        let md = e.unwrap().path().symlink_metadata().unwrap();
        md.uid() != 0 || md.gid() != 0
    }) {
        return; // owners differ when not root; the digests assume 0:0
    }
    fs::set_permissions(r.join("app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(r.join("app/bin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(r.join("app/README"), fs::Permissions::from_mode(0o644)).unwrap();
    let opts = WriteOptions {
        mtime: MtimePolicy::Fixed(0),
        compression: LayerCompression::Gzip(snapshot::DEFAULT_GZIP_LEVEL),
    };
    let mut blob = Vec::new();
    let st = snapshot::write_layer_with(r, DiffSource::Plain, &mut blob, &opts).unwrap();
    let blob_digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    assert_eq!(
        (
            st.diff_id.as_str(),
            blob_digest.as_str(),
            st.uncompressed_size,
            st.entries
        ),
        (
            "sha256:b675776c0bd68da000f5a43b3603ae3dd678e71c8f4e4d9c868f3805362db550",
            "sha256:c739f592e3f9bdaade03c7ef9b7eb5a1a6b2a80269be3d3dc057349ae8964c79",
            5120,
            5
        )
    );
}

/// A file whose content does not match its size (here: a /proc file bind-mounted into the
/// tree, size 0, content non-empty) is a clear error, not a corrupt tar.
#[test]
fn file_changing_while_archived_is_an_error() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("status");
    fs::write(&f, b"").unwrap();
    // Private mount namespace in a thread of our own, so the bind mount cannot leak.
    let path = f.clone();
    let dir = tmp.path().to_path_buf();
    let msg = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        nix::mount::mount(
            Some("/proc/self/status"),
            &path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let r = snapshot::write_layer_with(
            &dir,
            DiffSource::Plain,
            std::io::sink(),
            &plain(MtimePolicy::Keep),
        );
        let _ = nix::mount::umount(&path);
        r.unwrap_err().to_string()
    })
    .join()
    .unwrap();
    assert!(msg.contains("changed while it was being archived"), "{msg}");
    assert!(msg.contains("status"), "{msg}");
}
