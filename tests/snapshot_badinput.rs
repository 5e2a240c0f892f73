//! Every kind of hostile or broken layer tar: each is a clear error (or a warning for device
//! nodes without privilege) and nothing is written outside the destination.

mod snapshot_util;

use std::fs;
use std::path::{Path, PathBuf};

use rbuild::snapshot::{self, SnapshotError, UnpackMode, UnpackOptions};
use snapshot_util::{all_paths, dir, file, hardlink, raw_tar, symlink, Raw};

/// tmp/{dest/, outside/secret} — returns (tmp, dest, outside).
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(dest.join("sub")).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"keep").unwrap();
    (tmp, dest, outside)
}

/// Unpacks `entries`, expects an error whose message contains `needle`, and checks that the
/// only paths outside `dest` are the ones `setup` made.
fn refuse(entries: &[Raw<'_>], needle: &str) -> SnapshotError {
    let (tmp, dest, outside) = setup();
    let before: Vec<String> = all_paths(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("dest"))
        .collect();
    let tar = raw_tar(entries);
    let err = snapshot::unpack_layer(&tar[..], &dest).expect_err("hostile tar was accepted");
    let msg = err.to_string();
    assert!(
        msg.contains(needle),
        "error {msg:?} does not mention {needle:?}"
    );
    assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
    let after: Vec<String> = all_paths(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("dest"))
        .collect();
    assert_eq!(before, after, "something was written outside dest");
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"keep");
    err
}

#[test]
fn dotdot_entry_is_refused() {
    let e = refuse(&[file("../evil", b"x")], "../evil");
    assert!(matches!(e, SnapshotError::UnsafeEntry { .. }));
    refuse(&[file("sub/../../evil", b"x")], "leaves the destination");
    refuse(
        &[file("sub/../../outside/secret", b"x")],
        "leaves the destination",
    );
}

#[test]
fn dotdot_that_stays_inside_is_fine() {
    let (_tmp, dest, _) = setup();
    let tar = raw_tar(&[file("sub/../inside", b"x")]);
    snapshot::unpack_layer(&tar[..], &dest).unwrap();
    assert_eq!(fs::read(dest.join("inside")).unwrap(), b"x");
}

#[test]
fn absolute_entry_is_refused() {
    let e = refuse(&[file("/tmp/evil-absolute", b"x")], "absolute");
    assert!(e.to_string().contains("/tmp/evil-absolute"));
    assert!(!Path::new("/tmp/evil-absolute").exists());
}

#[test]
fn write_through_symlink_to_outside_is_refused() {
    let (tmp, _, outside) = setup();
    let target = outside.to_str().unwrap().to_owned();
    let entries = [symlink("link", &target), file("link/secret", b"pwned")];
    let e = refuse(&entries, "link");
    assert!(e.to_string().contains("outside the destination"), "{e}");
    // The classic: link -> /etc, then link/passwd.
    refuse(
        &[
            symlink("etc", "/etc"),
            file("etc/passwd", b"root::0:0::/:/bin/sh"),
        ],
        "outside",
    );
    drop(tmp);
}

#[test]
fn relative_symlink_escaping_is_refused() {
    refuse(
        &[symlink("up", "../../.."), file("up/tmp/evil-rel", b"x")],
        "leaves the destination",
    );
    refuse(
        &[
            dir("a"),
            symlink("a/b", "../../outside"),
            file("a/b/secret", b"x"),
        ],
        "leaves the destination",
    );
}

#[test]
fn symlink_inside_is_followed_and_any_target_is_stored() {
    let (_tmp, dest, _) = setup();
    let tar = raw_tar(&[
        dir("usr/lib"),
        symlink("lib", "usr/lib"),
        file("lib/libc.so", b"elf"),
        symlink("abs", "/etc/passwd"),
        symlink("dangling", "../../../nowhere"),
    ]);
    snapshot::unpack_layer(&tar[..], &dest).unwrap();
    assert_eq!(fs::read(dest.join("usr/lib/libc.so")).unwrap(), b"elf");
    assert_eq!(
        fs::read_link(dest.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(dest.join("dangling")).unwrap(),
        Path::new("../../../nowhere")
    );
}

#[test]
fn final_symlink_is_replaced_not_followed() {
    let (_tmp, dest, outside) = setup();
    let target = outside.join("secret");
    let t = target.to_str().unwrap().to_owned();
    let tar = raw_tar(&[symlink("f", &t), file("f", b"new")]);
    snapshot::unpack_layer(&tar[..], &dest).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
    assert!(!fs::symlink_metadata(dest.join("f"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hardlink_to_outside_is_refused() {
    refuse(
        &[hardlink("h", "../outside/secret")],
        "leaves the destination",
    );
    refuse(&[hardlink("h", "/etc/passwd")], "absolute");
    let (_, _, outside) = setup();
    let t = outside.to_str().unwrap().to_owned();
    refuse(
        &[symlink("o", &t), hardlink("h", "o/secret")],
        "outside the destination",
    );
    refuse(&[hardlink("h", "missing")], "not in the destination");
    refuse(&[dir("d"), hardlink("h", "d")], "directory");
}

#[test]
fn hardlink_inside_works() {
    let (_tmp, dest, _) = setup();
    let tar = raw_tar(&[file("a", b"data"), hardlink("sub/b", "a")]);
    snapshot::unpack_layer(&tar[..], &dest).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(dest.join("a")).unwrap().ino(),
        fs::metadata(dest.join("sub/b")).unwrap().ino()
    );
}

fn good_tar() -> Vec<u8> {
    raw_tar(&[
        dir("d"),
        file("d/big", &[7u8; 5000]),
        file("d/small", b"hi"),
    ])
}

#[test]
fn truncated_tar_is_an_error() {
    let tar = good_tar();
    // Layout: d/ header, d/big header + 10 data blocks, d/small header + 1 data block (ends
    // at 7168), two zero blocks. Cut inside data, right after a header, at the end of the
    // last entry (no end marker), inside the first zero block, and inside a header.
    assert_eq!(tar.len(), 8192);
    for cut in [1200, 512 * 13, 7168, 7168 + 100, 6144 + 200] {
        let (_tmp, dest, _) = setup();
        let err = snapshot::unpack_layer(&tar[..cut], &dest).expect_err("truncated tar accepted");
        let msg = err.to_string();
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
    let (_tmp, dest, _) = setup();
    snapshot::unpack_layer(&tar[..], &dest).unwrap();
}

#[test]
fn non_tar_and_empty_inputs_are_errors() {
    let (_tmp, dest, _) = setup();
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let msg = snapshot::unpack_layer(&junk[..], &dest)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("corrupt"), "{msg}");
    let msg = snapshot::unpack_layer(&b""[..], &dest)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn truncated_gzip_is_an_error() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &good_tar()).unwrap();
    let gz = gz.finish().unwrap();
    let (_tmp, dest, _) = setup();
    let r = snapshot::maybe_decompress(&gz[..gz.len() / 2]).unwrap();
    let msg = snapshot::unpack_layer(r, &dest).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") || msg.contains("corrupt"),
        "{msg}"
    );
    // The whole stream is fine.
    let (_tmp, dest, _) = setup();
    snapshot::unpack_layer(snapshot::maybe_decompress(&gz[..]).unwrap(), &dest).unwrap();
    assert_eq!(fs::read(dest.join("d/small")).unwrap(), b"hi");
}

#[test]
fn zstd_is_refused_clearly() {
    let data = [0x28u8, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let Err(e) = snapshot::maybe_decompress(&data[..]) else {
        panic!("zstd accepted")
    };
    assert!(e.to_string().contains("zstd"));
}

fn device_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_mode(0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_mode(0o600);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "dev/fifo", std::io::empty()).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn device_nodes_are_skipped_with_a_warning_when_not_permitted() {
    let (_tmp, dest, _) = setup();
    let opts = UnpackOptions {
        parents_from: Vec::new(),
        mode: UnpackMode::Flatten,
        same_owner: false,
        devices: false,
    };
    let report = snapshot::unpack_layer_with(&device_tar()[..], &dest, &opts).unwrap();
    assert!(!dest.join("dev/null").exists());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("dev/null"));
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(dest.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn device_nodes_are_created_when_privileged() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let (_tmp, dest, _) = setup();
    let report = snapshot::unpack_layer(&device_tar()[..], &dest).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::symlink_metadata(dest.join("dev/null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn failed_unpack_to_new_dir_leaves_nothing() {
    let (tmp, _, _) = setup();
    let target = tmp.path().join("snap");
    let tar = raw_tar(&[file("ok", b"1"), file("../evil", b"x")]);
    snapshot::unpack_to_new_dir(&tar[..], &target, &UnpackOptions::default()).unwrap_err();
    assert!(!target.exists());
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "temp dir left behind: {leftovers:?}");
    let tar = raw_tar(&[file("ok", b"1")]);
    snapshot::unpack_to_new_dir(&tar[..], &target, &UnpackOptions::default()).unwrap();
    assert_eq!(fs::read(target.join("ok")).unwrap(), b"1");
}
