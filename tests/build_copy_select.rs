//! COPY/ADD `--exclude` and `COPY --parents` in real builds: which files land where, with
//! which directory metadata, and what a change to an excluded file does to the cache.

mod build_util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use build_util::*;

fn exists(root: &Path, p: &str) -> bool {
    root.join(p.trim_start_matches('/')).symlink_metadata().is_ok()
}

/// BuildKit's own exclude test shape (frontend/dockerfile/exclude_patterns_test.go), plus the
/// reference's `hom*` example that BuildKit gets wrong (moby/buildkit#5489).
#[test]
fn exclude_filters_what_lands_under_the_destination() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("dir1/file-101.png", "2"),
            ("dir1/file-102.txt", "3"),
            ("dir1/file-103.jpeg", "4"),
            ("dir2/file-201.pdf", "6"),
            ("dir2/file-202.jpeg", "7"),
            ("dir3/file-301.mp3", "9"),
            ("dir3/file-302.mpeg", "10"),
            ("home.txt", "h"),
            ("home.md", "m"),
            ("keep/a/x.log", "x"),
            ("keep/a/y.log", "y"),
            (
                "Dockerfile",
                "FROM busybox:local\n\
                 COPY --exclude=*/*.png --exclude=*/*.jpeg . /1\n\
                 ADD --exclude=*.mp3 dir3/ /3/\n\
                 COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/\n\
                 COPY --exclude=*.txt hom* /5/\n\
                 COPY --exclude=a --exclude=!a/y.log keep /6/\n\
                 COPY --exclude=* dir1 /7/\n",
            ),
        ],
    );
    let r = build(root.path(), ctx.path(), &["-t", "ex:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "ex:1");
    let f = f.path();
    for p in ["/1/dir1/file-101.png", "/1/dir1/file-103.jpeg", "/1/dir2/file-202.jpeg"] {
        assert!(!exists(f, p), "{p} should be excluded");
    }
    for p in ["/1/dir1/file-102.txt", "/1/dir2/file-201.pdf", "/1/dir3/file-301.mp3", "/1/home.txt"] {
        assert!(exists(f, p), "{p} should be there");
    }
    assert!(!exists(f, "/3/file-301.mp3"));
    assert_eq!(std::fs::read_to_string(f.join("3/file-302.mpeg")).unwrap(), "10");
    let four: Vec<String> = std::fs::read_dir(f.join("4")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(four, ["file-302.mpeg"]);
    // A file source is matched by its name (the reference's example; BuildKit copies it).
    assert!(!exists(f, "/5/home.txt"), "--exclude=*.txt applies to a file matched by hom*");
    assert!(exists(f, "/5/home.md"));
    // `!` re-includes below an excluded directory, which comes along with its own metadata.
    assert!(exists(f, "/6/a/y.log") && !exists(f, "/6/a/x.log"));
    assert!(f.join("7").is_dir() && std::fs::read_dir(f.join("7")).unwrap().next().is_none(), "everything excluded: an empty dir");
}

/// An excluded file is neither hashed nor copied: editing it keeps the COPY cached.
#[test]
fn editing_an_excluded_file_keeps_the_step_cached() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("src/app.py", "print(1)\n"),
            ("src/app_test.py", "assert 1\n"),
            ("Dockerfile", "FROM busybox:local\nCOPY --exclude=**/*_test.py src /app/\nRUN ls /app > /listing\n"),
        ],
    );
    let r = build(root.path(), ctx.path(), &["-t", "ex:2"]);
    assert!(r.ok(), "{}", r.stderr);
    let first = r.image_id();
    write_files(ctx.path(), &[("src/app_test.py", "assert 2\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "ex:2"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.rebuilt().is_empty(), "nothing rebuilt: {:?}", r.rebuilt());
    assert_eq!(r.image_id(), first);
    write_files(ctx.path(), &[("src/app.py", "print(2)\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "ex:2"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.rebuilt().iter().any(|s| s.contains("COPY")), "{:?}", r.rebuilt());
    let f = unpack_image(root.path(), "ex:2");
    assert_eq!(std::fs::read_to_string(f.path().join("listing")).unwrap(), "app.py\n");
    // The pattern order matters (`!` re-includes): a different order is a different step.
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nCOPY --exclude=src --exclude=!src/app.py . /b/\nCOPY --exclude=!src/app.py --exclude=src . /c/\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "ex:3"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "ex:3");
    assert!(exists(f.path(), "/b/src/app.py") && !exists(f.path(), "/b/src/app_test.py"));
    assert!(!exists(f.path(), "/c/src"), "the later `src` wins over the earlier exception");
}

/// The reference's --parents examples, the `/./` pivot, `**`, directory metadata of the
/// parents, COPY --from with a pivot, and the errors.
#[test]
fn parents_keep_the_source_paths() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("x/a.txt", "xa"),
            ("y/a.txt", "ya"),
            ("x/y/a.txt", "xya"),
            ("x/y/b.txt", "xyb"),
            ("src/a.txt", "1"),
            ("src/x/b.txt", "2"),
            ("src/x/y/c.txt", "3"),
            ("src/x/y/d.md", "4"),
            (
                "Dockerfile",
                "FROM busybox:local AS build\n\
                 RUN mkdir -p /out/bin/sub && echo tool > /out/bin/sub/tool && echo no > /out/skip\n\
                 FROM busybox:local\n\
                 COPY ./x/a.txt ./y/a.txt /no_parents/\n\
                 COPY --parents ./x/a.txt ./y/a.txt /parents/\n\
                 COPY --parents ./x/./y/*.txt /pivot/\n\
                 COPY --parents ./src/**/*.txt /deep/\n\
                 COPY --parents --exclude=**/*.md src/x /dir/\n\
                 COPY --parents --from=build /out/./bin /fromstage/\n\
                 COPY --parents nothing-here/*.txt /empty/\n",
            ),
        ],
    );
    std::fs::set_permissions(ctx.path().join("x"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "par:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "par:1");
    let f = f.path();
    let read = |p: &str| std::fs::read_to_string(f.join(p.trim_start_matches('/'))).unwrap();
    assert_eq!(read("/no_parents/a.txt"), "ya");
    assert_eq!(read("/parents/x/a.txt"), "xa");
    assert_eq!(read("/parents/y/a.txt"), "ya");
    assert_eq!(std::fs::metadata(f.join("parents/x")).unwrap().permissions().mode() & 0o7777, 0o750, "the parent keeps its mode");
    assert_eq!(read("/pivot/y/a.txt"), "xya");
    assert_eq!(read("/pivot/y/b.txt"), "xyb");
    assert!(!exists(f, "/pivot/x"));
    assert_eq!(read("/deep/src/a.txt"), "1");
    assert_eq!(read("/deep/src/x/b.txt"), "2");
    assert_eq!(read("/deep/src/x/y/c.txt"), "3");
    assert!(!exists(f, "/deep/src/x/y/d.md"));
    assert_eq!(read("/dir/src/x/y/c.txt"), "3");
    assert!(!exists(f, "/dir/src/x/y/d.md") && !exists(f, "/dir/src/a.txt"));
    assert_eq!(read("/fromstage/bin/sub/tool"), "tool\n");
    assert!(!exists(f, "/fromstage/skip") && !exists(f, "/fromstage/out"));
    assert!(!exists(f, "/empty/nothing-here"));

    // A plain path that does not exist is an error, as without --parents.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY --parents ./missing/a.txt /p/\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "par:2"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("missing/a.txt"), "{}", r.stderr);
}

/// A `--parents` path through a symbolic link (in the context or in a stage) is an error that
/// names the real path, not a COPY that silently copies nothing.
#[test]
fn parents_through_a_symlink_is_an_error() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("real/b/f.txt", "1")]);
    std::os::unix::fs::symlink("real", ctx.path().join("lnk")).unwrap();
    for (df, want) in [
        ("COPY --parents lnk/b/f.txt /t/", "name the real path (real/b/f.txt)"),
        ("COPY --parents lnk /t/", "name the real path (real)"),
        (
            "RUN mkdir -p /data/a/b && echo 1 > /data/a/b/f.txt && ln -s a /data/rel\nFROM busybox:local\nCOPY --parents --from=0 /data/./rel/b /t/",
            "name the real path (data/a/b)",
        ),
    ] {
        write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\n{df}\n"))]);
        let r = build(root.path(), ctx.path(), &["-t", "plink:1"]);
        assert!(!r.ok() && r.stderr.contains(want), "{df}: {}", r.stderr);
    }
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY --parents real/b/f.txt /t/\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "plink:2"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(unpack_image(root.path(), "plink:2").path().join("t/real/b/f.txt")).unwrap(), "1");
}

/// Flag values that can only be wrong (`--chmod`, `--checksum`, `--exclude` patterns, a mount
/// target of `/` or nothing, a mount `from=` that names nothing) fail before any step runs,
/// at Dockerfile:LINE:COL, with the reason.
#[test]
fn bad_flag_values_fail_before_anything_runs() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("a.txt", "a")]);
    for (line, want) in [
        ("COPY --chmod=999 a.txt /x/", "invalid --chmod=999"),
        ("ADD --checksum=sha256:abc a.txt /x/", "--checksum=sha256:abc: a sha256 digest is 64 hex digits"),
        ("ADD --checksum=md5:abc a.txt /x/", "--checksum=md5:abc: expected sha256:, sha384: or sha512:"),
        ("ADD --checksum=zz http://127.0.0.1:9/r.git#main /x/", "--checksum=zz: for a git source it is the commit id"),
        ("COPY --exclude=! a.txt /x/", "bad pattern --exclude=!: an exception needs a pattern after the '!'"),
        ("COPY --exclude=[a- a.txt /x/", "bad pattern --exclude=[a-: unterminated character class"),
        ("RUN --mount=type=cache,target= true", "RUN --mount=type=cache: the target is empty"),
        ("RUN --mount=type=bind,target=/ true", "RUN --mount=type=bind: invalid mount target \"/\""),
        ("RUN --mount=type=bind,target=/m,from=nostage true", "RUN --mount from=nostage is neither a stage of this Dockerfile nor an image"),
    ] {
        write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nRUN touch /ran\n{line}\n"))]);
        let r = build(root.path(), ctx.path(), &["-t", "early:1"]);
        assert!(!r.ok(), "{line}");
        assert!(r.stderr.contains(&format!("Dockerfile:3:1: {want}")), "{line}: {}", r.stderr);
        assert!(!r.stderr.contains("RUN touch /ran"), "{line}: a step ran before the check:\n{}", r.stderr);
    }
}
