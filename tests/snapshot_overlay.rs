//! Real overlay mounts: whiteouts and opaque dirs from an upper dir become OCI whiteouts, and
//! those apply correctly in flatten mode, overlay-layer mode and the copy fallback.

mod snapshot_util;

use std::fs;
use std::path::{Path, PathBuf};

use rbuild::snapshot::{
    self, overlay, DiffSource, LayerCompression, MtimePolicy, UnpackOptions, WriteOptions,
};
use snapshot_util::{describe_opts, dir, file, raw_tar};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn plain() -> WriteOptions {
    WriteOptions {
        mtime: MtimePolicy::Keep,
        compression: LayerCompression::None,
    }
}

fn mkdirs(base: &Path, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let p = base.join(n);
            fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

/// lower: a/file a/keep d/x d/sub/y top
fn make_lower(lower: &Path) {
    fs::create_dir_all(lower.join("a")).unwrap();
    fs::create_dir_all(lower.join("d/sub")).unwrap();
    fs::write(lower.join("a/file"), b"old").unwrap();
    fs::write(lower.join("a/keep"), b"keep").unwrap();
    fs::write(lower.join("d/x"), b"x").unwrap();
    fs::write(lower.join("d/sub/y"), b"y").unwrap();
    fs::write(lower.join("top"), b"top").unwrap();
}

/// What a RUN does in the overlay: delete a lower file, replace a lower dir (rm -rf + mkdir
/// makes it opaque), modify and add files.
fn run_step(merged: &Path) {
    fs::remove_file(merged.join("a/file")).unwrap();
    fs::remove_dir_all(merged.join("d")).unwrap();
    fs::create_dir(merged.join("d")).unwrap();
    fs::write(merged.join("d/new"), b"new").unwrap();
    fs::write(merged.join("top"), b"changed").unwrap();
    fs::write(merged.join("added"), b"added").unwrap();
}

#[test]
fn overlay_upper_becomes_oci_whiteouts_and_applies_everywhere() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    assert!(
        overlay::overlay_supported(tmp.path()),
        "overlayfs should work on this machine kind"
    );
    let [lower, upper, work, merged] =
        <[PathBuf; 4]>::try_from(mkdirs(tmp.path(), &["lower", "upper", "work", "merged"]))
            .unwrap();
    make_lower(&lower);

    let guard = overlay::mount(std::slice::from_ref(&lower), &upper, &work, &merged).unwrap();
    run_step(&merged);
    let expected = describe_opts(&merged, false);
    guard.unmount().unwrap();

    let mut tar = Vec::new();
    let stats =
        snapshot::write_layer_with(&upper, DiffSource::OverlayUpper, &mut tar, &plain()).unwrap();
    let names = tar_names(&tar);
    assert!(names.contains(&"a/.wh.file".to_owned()), "{names:?}");
    assert!(names.contains(&"d/.wh..wh..opq".to_owned()), "{names:?}");
    assert_eq!(stats.entries as usize, names.len());
    // No overlay xattrs in the layer.
    let mut ar = tar::Archive::new(&tar[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                assert!(!x.unwrap().key().unwrap().contains("overlay"));
            }
        }
    }

    // Flatten: lower's layer then this one.
    let mut lower_tar = Vec::new();
    snapshot::write_layer_with(&lower, DiffSource::Plain, &mut lower_tar, &plain()).unwrap();
    let flat = tmp.path().join("flat");
    fs::create_dir(&flat).unwrap();
    snapshot::unpack_layer(&lower_tar[..], &flat).unwrap();
    let r = snapshot::unpack_layer(&tar[..], &flat).unwrap();
    assert_eq!(r.whiteouts, 2);
    assert_eq!(describe_opts(&flat, false), expected);

    // OverlayLayer: both layers as snapshots, mounted again.
    let (s1, s2) = (tmp.path().join("snap1"), tmp.path().join("snap2"));
    snapshot::unpack_to_new_dir(&lower_tar[..], &s1, &UnpackOptions::overlay_layer()).unwrap();
    snapshot::unpack_to_new_dir(&tar[..], &s2, &UnpackOptions::overlay_layer()).unwrap();
    let [u2, w2, m2] = <[PathBuf; 3]>::try_from(mkdirs(tmp.path(), &["u2", "w2", "m2"])).unwrap();
    let guard = overlay::mount(&[s2.clone(), s1.clone()], &u2, &w2, &m2).unwrap();
    assert!(!m2.join("a/file").exists());
    assert!(!m2.join("d/x").exists() && !m2.join("d/sub").exists());
    assert_eq!(describe_opts(&m2, false), expected);
    drop(guard); // unmounts
    assert!(!m2.join("a").exists(), "drop did not unmount");

    // Copy fallback: flatten the two snapshots.
    let copied = tmp.path().join("copied");
    fs::create_dir(&copied).unwrap();
    snapshot::copy_tree(&[s2, s1], &copied).unwrap();
    assert_eq!(describe_opts(&copied, false), expected);
}

#[test]
fn opaque_marker_keeps_what_the_same_layer_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path();
    fs::create_dir_all(dest.join("d/sub")).unwrap();
    fs::write(dest.join("d/old"), b"lower").unwrap();
    fs::write(dest.join("d/sub/lower"), b"lower").unwrap();
    // This layer writes d/sub/mine before its opaque marker, and d/after after it.
    let tar = raw_tar(&[
        dir("d"),
        file("d/sub/mine", b"mine"),
        file("d/.wh..wh..opq", b""),
        file("d/after", b"after"),
        file(".wh.nothing-here", b""),
    ]);
    snapshot::unpack_layer(&tar[..], dest).unwrap();
    let names = snapshot_util::all_paths(dest);
    assert_eq!(
        names,
        ["", "d", "d/after", "d/sub", "d/sub/mine"],
        "{names:?}"
    );
}

#[test]
fn whiteout_of_a_directory_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path();
    fs::create_dir_all(dest.join("gone/deep")).unwrap();
    fs::write(dest.join("gone/deep/f"), b"f").unwrap();
    snapshot::unpack_layer(&raw_tar(&[file(".wh.gone", b"")])[..], dest).unwrap();
    assert!(!dest.join("gone").exists());
}

#[test]
fn tree_diff_fallback_matches_the_changed_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir(&lower).unwrap();
    make_lower(&lower);
    std::os::unix::fs::symlink("a/keep", lower.join("link")).unwrap();
    fs::create_dir_all(lower.join("deep/er")).unwrap();
    fs::write(lower.join("deep/er/f"), b"v1").unwrap();
    fs::write(lower.join("deep/same"), b"same").unwrap();
    // The copy fallback: original + working copy.
    let (orig, work) = (tmp.path().join("orig"), tmp.path().join("work"));
    fs::create_dir(&orig).unwrap();
    fs::create_dir(&work).unwrap();
    snapshot::copy_tree(std::slice::from_ref(&lower), &orig).unwrap();
    snapshot::copy_tree(std::slice::from_ref(&lower), &work).unwrap();
    assert_eq!(describe_opts(&orig, true), describe_opts(&lower, true));

    run_step(&work);
    // Type changes: a file becomes a directory, a directory a file.
    fs::remove_file(work.join("a/keep")).unwrap();
    fs::create_dir(work.join("a/keep")).unwrap();
    fs::write(work.join("a/keep/inner"), b"inner").unwrap();
    fs::remove_dir_all(work.join("d")).unwrap();
    fs::write(work.join("d"), b"now a file").unwrap();
    fs::remove_file(work.join("link")).unwrap();
    std::os::unix::fs::symlink("a/other", work.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(work.join("a/keep"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(work.join("top"), fs::Permissions::from_mode(0o600)).unwrap();
    // Rewritten in place: the directories' mtimes stay, yet the parents must be in the layer.
    fs::write(work.join("deep/er/f"), b"v2").unwrap();

    let mut tar = Vec::new();
    snapshot::diff_trees(&orig, &work, &mut tar, &plain()).unwrap();
    let names = tar_names(&tar);
    assert!(names.contains(&"a/.wh.file".to_owned()), "{names:?}");
    assert!(names.contains(&"a/keep/inner".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("d/")), "{names:?}");
    assert!(names.contains(&"a/keep".to_owned()) && names.contains(&"link".to_owned()));
    let deep: Vec<&String> = names.iter().filter(|n| n.starts_with("deep")).collect();
    assert_eq!(deep, ["deep", "deep/er", "deep/er/f"], "{names:?}");

    // Unchanged: no entries at all.
    let mut empty = Vec::new();
    let st = snapshot::diff_trees(&orig, &orig, &mut empty, &plain()).unwrap();
    assert_eq!(st.entries, 0);

    // Applying the diff to the original gives the working tree.
    snapshot::unpack_layer(&tar[..], &orig).unwrap();
    assert_eq!(describe_opts(&orig, false), describe_opts(&work, false));
}

#[test]
fn scratch_and_many_lowers_mount() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Zero lower layers (FROM scratch).
    let [u, w, m] = <[PathBuf; 3]>::try_from(mkdirs(tmp.path(), &["u", "w", "m"])).unwrap();
    let g = overlay::mount(&[], &u, &w, &m).unwrap();
    fs::write(m.join("f"), b"1").unwrap();
    g.unmount().unwrap();
    assert_eq!(fs::read(u.join("f")).unwrap(), b"1");

    // 120 lowers with long paths: more than one page of plain paths.
    let long = "l".repeat(60);
    let mut lowers = Vec::new();
    for i in 0..120 {
        let d = tmp.path().join(format!("{long}-{i:03}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join(format!("f{i}")), b"x").unwrap();
        fs::write(d.join("who"), format!("{i}")).unwrap();
        lowers.push(d);
    }
    lowers.reverse(); // top first: layer 119 wins
    let data = overlay::mount_data(&lowers, &u, &w).unwrap();
    assert!(data.len() > 4096);
    let [u2, w2, m2] = <[PathBuf; 3]>::try_from(mkdirs(tmp.path(), &["u2", "w2", "m2"])).unwrap();
    let g = overlay::mount(&lowers, &u2, &w2, &m2).unwrap();
    assert_eq!(fs::read_to_string(m2.join("who")).unwrap(), "119");
    assert!(m2.join("f0").exists() && m2.join("f119").exists());
    drop(g);

    let bad = overlay::mount(&[tmp.path().join("a:b")], &u2, &w2, &m2)
        .unwrap_err()
        .to_string();
    assert!(bad.contains("':'"), "{bad}");
}

/// A whiteout never hides what the same layer wrote, in either mode; one written before the
/// entry (`.wh.x` then `x`) is replaced by it.
#[test]
fn whiteout_and_entry_of_one_name_in_one_layer() {
    if !is_root() {
        return;
    }
    let tar = raw_tar(&[
        file("a", b"mine"),
        file(".wh.a", b""),
        file(".wh.b", b""),
        file("b", b"new"),
    ]);
    for opts in [UnpackOptions::default(), UnpackOptions::overlay_layer()] {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("b"), b"lower").unwrap();
        snapshot::unpack_layer_with(&tar[..], tmp.path(), &opts).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("a")).unwrap(),
            b"mine",
            "{:?}",
            opts.mode
        );
        assert_eq!(
            fs::read(tmp.path().join("b")).unwrap(),
            b"new",
            "{:?}",
            opts.mode
        );
    }
}

/// A layer writing `tmp/x` without a `tmp/` entry must not turn the image's sticky 1777 /tmp
/// into a 0755 one in the overlay.
#[test]
fn implicit_parents_take_the_lower_layers_metadata() {
    if !is_root() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("tmp")).unwrap();
    fs::set_permissions(lower.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::lchown(lower.join("tmp"), Some(3), Some(4)).unwrap();
    let tar = raw_tar(&[file("tmp/x", b"x"), file("other/y", b"y")]);
    let snap = tmp.path().join("snap");
    let opts = UnpackOptions {
        parents_from: vec![lower.clone()],
        ..UnpackOptions::overlay_layer()
    };
    snapshot::unpack_to_new_dir(&tar[..], &snap, &opts).unwrap();
    let md = fs::metadata(snap.join("tmp")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o1777, 3, 4));
    let md = fs::metadata(snap.join("other")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o755);

    // Mounted: /tmp keeps its mode.
    let [u, w, m] = <[PathBuf; 3]>::try_from(mkdirs(tmp.path(), &["u", "w", "m"])).unwrap();
    let g = overlay::mount(&[snap, lower], &u, &w, &m).unwrap();
    assert_eq!(fs::metadata(m.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    drop(g);
}
