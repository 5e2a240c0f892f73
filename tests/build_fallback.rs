//! Where overlayfs is unavailable (forced here with RBUILD_NO_OVERLAY=1) steps work on
//! copies of the root file system and a tree diff: same files, a warning, caching as usual,
//! and COPY layers byte-identical to the overlay mode's.

mod build_util;

use build_util::*;

#[test]
fn copy_mode_builds_the_same_image_content() {
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox:local\nWORKDIR /app\nCOPY . .\nRUN echo ran > /ran && rm /bin/vi && rm /app/gone.txt\n",
            ),
            ("main.py", "print(1)\n"),
            ("gone.txt", "x\n"),
        ],
    );
    let copy_root = store_with_busybox();
    let r = build_env(copy_root.path(), ctx.path(), &["-t", "fb:1"], &[("RBUILD_NO_OVERLAY", "1")]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stderr.contains("WARNING: overlayfs is unavailable"), "{}", r.stderr);
    let f = unpack_image(copy_root.path(), "fb:1");
    assert_eq!(std::fs::read_to_string(f.path().join("app/main.py")).unwrap(), "print(1)\n");
    assert_eq!(std::fs::read_to_string(f.path().join("ran")).unwrap(), "ran\n");
    assert!(!f.path().join("bin/vi").exists() && !f.path().join("app/gone.txt").exists());
    assert!(f.path().join("bin/ls").exists());
    let again = build_env(copy_root.path(), ctx.path(), &["-t", "fb:1"], &[("RBUILD_NO_OVERLAY", "1")]);
    assert!(again.rebuilt().is_empty(), "{}", again.stderr);

    let overlay_root = store_with_busybox();
    let o = build(overlay_root.path(), ctx.path(), &["-t", "fb:1"]);
    assert!(o.ok(), "{}", o.stderr);
    let a = store(copy_root.path()).resolve("fb:1").unwrap().manifest.layers;
    let b = store(overlay_root.path()).resolve("fb:1").unwrap().manifest.layers;
    // base, WORKDIR, COPY are deterministic; the RUN layer carries the times it ran at.
    assert_eq!(a[..a.len() - 1], b[..b.len() - 1], "WORKDIR and COPY layers match across modes");
}

/// QA: in copy mode every RUN layer also held an `etc/` entry (the sandbox's /etc/hosts and
/// resolv.conf stubs changed the directory's times). With SOURCE_DATE_EPOCH the two modes
/// now give the same image, RUN layers included.
#[test]
fn run_layers_match_across_modes() {
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN touch /x && echo hi > /y && rm /bin/vi\n")]);
    let epoch = [("SOURCE_DATE_EPOCH", "100")];
    let (copy_root, overlay_root) = (store_with_busybox(), store_with_busybox());
    let c = build_env(copy_root.path(), ctx.path(), &["-t", "m:1"], &[epoch[0], ("RBUILD_NO_OVERLAY", "1")]);
    assert!(c.ok(), "{}", c.stderr);
    let o = build_env(overlay_root.path(), ctx.path(), &["-t", "m:1"], &epoch);
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(c.image_id(), o.image_id());
}

/// QA: in copy mode a COPY that rewrote a file with other content of the same size kept the
/// old content (the diff compared size and mtime only, and COPY sets a fixed mtime), and a
/// rewrite with the same content gave another image than overlay mode. Whatever a step
/// touched is now in its layer, as in an overlay upper dir.
#[test]
fn same_size_rewrites_reach_the_layer_in_copy_mode() {
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("d/f", "hi\n"),
            ("e/f", "ho\n"),
            ("f", "ho\n"),
            ("Dockerfile", "FROM busybox:local\nCOPY d/ /a/\nCOPY e/ /a/\nCOPY d/ /b/\nCOPY d/ /b/\nRUN mkdir /c && echo hi > /c/f\nCOPY f /c/f\n"),
        ],
    );
    let epoch = ("SOURCE_DATE_EPOCH", "1700000000");
    let (copy_root, overlay_root) = (store_with_busybox(), store_with_busybox());
    let c = build_env(copy_root.path(), ctx.path(), &["-t", "s:1"], &[epoch, ("RBUILD_NO_OVERLAY", "1")]);
    assert!(c.ok(), "{}", c.stderr);
    let f = unpack_image(copy_root.path(), "s:1");
    assert_eq!(std::fs::read_to_string(f.path().join("a/f")).unwrap(), "ho\n");
    assert_eq!(std::fs::read_to_string(f.path().join("c/f")).unwrap(), "ho\n");
    let o = build_env(overlay_root.path(), ctx.path(), &["-t", "s:1"], &[epoch]);
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(c.image_id(), o.image_id(), "the same image in both modes");
}
