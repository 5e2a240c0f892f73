//! Interoperability with GNU tar: our layers extract with `tar`, and `tar`'s archives
//! (GNU and PAX formats, long names, hardlinks, xattrs, old GNU and PAX 1.0 sparse files) unpack with ours.

mod snapshot_util;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rbuild::snapshot::{self, DiffSource, LayerCompression, MtimePolicy, WriteOptions};
use snapshot_util::describe;

fn have_tar() -> bool {
    Command::new("tar")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn sample(root: &Path, with_xattr: bool) {
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::write(root.join("etc/conf"), b"a=1\n").unwrap();
    fs::set_permissions(root.join("etc/conf"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(root.join("etc/deep/er").join("n".repeat(140)), b"long").unwrap();
    fs::hard_link(root.join("etc/conf"), root.join("etc/conf.link")).unwrap();
    symlink("conf", root.join("etc/alias")).unwrap();
    if with_xattr {
        xattr::set(root.join("etc/conf"), "user.origin", b"rbuild").unwrap();
    }
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    // Two data chunks between holes.
    std::os::unix::fs::FileExt::write_all_at(&f, &[1u8; 5000], 1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"tail", (6 << 20) + 3).unwrap();
    drop(f);
    fs::write(root.join("exec"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("exec"), fs::Permissions::from_mode(0o2755)).unwrap();
    let ts = nix::sys::time::TimeSpec::new(1_500_000_000, 0);
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let p = e.unwrap().into_path();
        if p != root {
            nix::sys::stat::utimensat(
                None,
                &p,
                &ts,
                &ts,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
    }
}

#[test]
fn gnu_tar_extracts_our_layers() {
    if !have_tar() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&out).unwrap();
    sample(&src, true);
    let blob = tmp.path().join("layer.tar.gz");
    let opts = WriteOptions {
        mtime: MtimePolicy::Keep,
        compression: LayerCompression::Gzip(1),
    };
    snapshot::write_layer_with(
        &src,
        DiffSource::Plain,
        fs::File::create(&blob).unwrap(),
        &opts,
    )
    .unwrap();
    let st = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--same-permissions",
            "--numeric-owner",
            "-xzf",
        ])
        .arg(&blob)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn we_unpack_gnu_tar_archives() {
    if !have_tar() {
        return;
    }
    for format in ["gnu", "pax-0.0", "pax-0.1", "pax-1.0"] {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
        fs::create_dir(&src).unwrap();
        fs::create_dir(&out).unwrap();
        // --xattrs makes GNU tar write PAX (and PAX sparse 1.0); without it, --format=gnu
        // writes old GNU sparse headers.
        let pax = format.starts_with("pax");
        sample(&src, pax);
        let archive = tmp.path().join("a.tar");
        let mut cmd = Command::new("tar");
        cmd.args(["--sparse", "--numeric-owner"]);
        match format.strip_prefix("pax-") {
            Some(version) => {
                cmd.args(["--format=pax", "--xattrs", "--xattrs-include=*"]);
                cmd.arg(format!("--sparse-version={version}"));
            }
            None => {
                cmd.arg("--format=gnu");
            }
        }
        cmd.arg("-cf").arg(&archive).arg("-C").arg(&src).arg(".");
        assert!(cmd.status().unwrap().success());
        let report = snapshot::unpack_layer(fs::File::open(&archive).unwrap(), &out).unwrap();
        assert!(
            report.warnings.is_empty(),
            "{format}: {:?}",
            report.warnings
        );
        assert_eq!(describe(&src), describe(&out), "format {format}");
    }
}
