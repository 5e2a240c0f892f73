//! Issue 4's acceptance points on the busybox base, with a seed-shaped project:
//! `FROM busybox:local / WORKDIR /app / COPY requirements.txt requirements.txt /
//! RUN <install reading requirements.txt> / COPY . . / CMD [...]`.
//! Each test runs the real `rbuild` binary with `--progress=plain` and reads which steps
//! were cached from its output.

mod build_util;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use build_util::*;

const DOCKERFILE: &str = r#"FROM busybox:local
WORKDIR /app
COPY requirements.txt requirements.txt
RUN mkdir -p /opt/site && for p in $(cat requirements.txt); do echo "$p" > /opt/site/$p.installed; done && echo "installed $(wc -l < requirements.txt) packages"
COPY . .
CMD ["/bin/sh", "/app/bin/run.sh"]
"#;

fn project() -> tempfile::TempDir {
    let ctx = tempfile::Builder::new().prefix("rbuild-bt-ctx-").tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("requirements.txt", "flask\n"),
            ("main.py", "print('hello')\n"),
            ("bin/run.sh", "#!/bin/sh\necho run\n"),
            ("pkg/util.py", "X = 1\n"),
        ],
    );
    std::fs::set_permissions(ctx.path().join("bin/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A context file owned by someone else: COPY must write it as 0:0.
    std::os::unix::fs::chown(ctx.path().join("main.py"), Some(1234), Some(4321)).unwrap();
    ctx
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

/// 1. The first build succeeds; files, modes, owners and config are right.
#[test]
fn first_build_files_modes_owners_config() {
    let root = store_with_busybox();
    let ctx = project();
    let r = build(root.path(), ctx.path(), &["-t", "app:1", "-t", "app:latest"]);
    assert!(r.ok(), "{}", r.stderr);
    let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "[internal] load build context",
            "[1/5] FROM busybox:local",
            "[2/5] WORKDIR /app",
            "[3/5] COPY requirements.txt requirements.txt",
            "[4/5] RUN mkdir -p /opt/site && for p in $(cat requirements.txt); do echo \"$p\" > /opt/site/$p.installed; done && echo \"install ...",
            "[5/5] COPY . .",
        ]
    );
    assert!(r.step("FROM").cached);
    assert!(r.steps[2..].iter().all(|s| s.done && !s.cached), "{}", r.stderr);
    assert!(r.stderr.contains("installed 1 packages"), "RUN output is shown: {}", r.stderr);

    let fs = unpack_image(root.path(), "app:1");
    let f = fs.path();
    assert_eq!(std::fs::read_to_string(f.join("app/requirements.txt")).unwrap(), "flask\n");
    assert_eq!(std::fs::read_to_string(f.join("opt/site/flask.installed")).unwrap(), "flask\n");
    assert_eq!(std::fs::read_to_string(f.join("app/main.py")).unwrap(), "print('hello')\n");
    let m = std::fs::metadata(f.join("app/main.py")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "COPY writes 0:0 without --chown");
    assert_eq!(m.mode() & 0o7777, 0o644);
    let m = std::fs::metadata(f.join("app/bin/run.sh")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "the exec bit is kept");
    let m = std::fs::metadata(f.join("app")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o755);
    assert!(f.join("app/Dockerfile").exists(), "COPY . . copies the Dockerfile too (no .dockerignore)");
    assert!(f.join("bin/busybox").exists(), "base layer is there");

    let store = store(root.path());
    let img = store.resolve("app:1").unwrap();
    assert_eq!(store.resolve("app:latest").unwrap().id, img.id, "both tags name the image");
    assert_eq!(r.image_id(), img.id.to_string());
    let cfg = img.config.config.clone().unwrap();
    assert_eq!(cfg.cmd, Some(vec!["/bin/sh".to_string(), "/app/bin/run.sh".to_string()]));
    assert_eq!(cfg.working_dir.as_deref(), Some("/app"));
    let base = store.resolve("busybox:local").unwrap();
    assert_eq!(img.config.rootfs.diff_ids.len(), base.config.rootfs.diff_ids.len() + 4);
    assert_eq!(img.manifest.layers.len(), img.config.rootfs.diff_ids.len());
    let hist = &img.config.history[base.config.history.len()..];
    let shown: Vec<(String, bool)> =
        hist.iter().map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer)).collect();
    assert_eq!(shown.len(), 5, "{shown:?}");
    assert_eq!(shown[0], ("WORKDIR /app".to_string(), false));
    assert!(shown[1].0.starts_with("COPY file:") && shown[1].0.ends_with(" in /app/requirements.txt"), "{shown:?}");
    assert!(shown[2].0.starts_with("RUN /bin/sh -c mkdir -p /opt/site"), "{shown:?}");
    assert!(shown[3].0.starts_with("COPY dir:") && shown[3].0.ends_with(" in /app/"), "{shown:?}");
    assert_eq!(shown[4], ("CMD [\"/bin/sh\", \"/app/bin/run.sh\"]".to_string(), true));
    assert!(hist.iter().all(|h| h.created.is_some()));
}

/// 2. A second build reports every step cached and yields the identical image ID.
/// 3. Editing a source file rebuilds only `COPY . .` (the install RUN is cached).
/// 4. Editing requirements.txt re-runs the install; touching a file without changing it is a hit.
#[test]
fn rebuilds_reuse_exactly_what_did_not_change() {
    let root = store_with_busybox();
    let ctx = project();
    let first = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(first.ok(), "{}", first.stderr);

    // 2.
    let second = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(second.ok(), "{}", second.stderr);
    assert!(second.rebuilt().is_empty(), "every step cached:\n{}", second.stderr);
    assert_eq!(second.steps.iter().filter(|s| s.cached).count(), 5);
    assert_eq!(second.image_id(), first.image_id());
    assert!(second.stderr.contains("(5 steps, 5 cached)"), "{}", second.stderr);
    assert!(!second.stderr.contains("installed 1 packages"), "the RUN did not run");

    // 3.
    write_files(ctx.path(), &[("main.py", "print('changed')\n")]);
    let third = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(third.ok(), "{}", third.stderr);
    assert_eq!(third.rebuilt(), ["[5/5] COPY . ."], "{}", third.stderr);
    assert_ne!(third.image_id(), first.image_id());
    let store = store(root.path());
    let img3 = store.resolve("app:1").unwrap();
    assert_eq!(
        std::fs::read_to_string(unpack_image(root.path(), "app:1").path().join("app/main.py")).unwrap(),
        "print('changed')\n"
    );

    // 4a. touching (new mtime, same bytes) is a hit everywhere.
    let later = SystemTime::now() + Duration::from_secs(120);
    set_mtime(&ctx.path().join("requirements.txt"), later);
    set_mtime(&ctx.path().join("main.py"), later);
    let touched = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(touched.ok(), "{}", touched.stderr);
    assert!(touched.rebuilt().is_empty(), "touch is a hit:\n{}", touched.stderr);
    assert_eq!(touched.image_id(), third.image_id());

    // 4b. editing requirements.txt re-runs the install and what follows.
    write_files(ctx.path(), &[("requirements.txt", "flask\nrequests\n")]);
    let fourth = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(fourth.ok(), "{}", fourth.stderr);
    let rebuilt = fourth.rebuilt();
    assert_eq!(rebuilt.len(), 3, "{}", fourth.stderr);
    assert!(rebuilt[0].starts_with("[3/5] COPY requirements.txt"));
    assert!(rebuilt[1].starts_with("[4/5] RUN "));
    assert!(rebuilt[2].starts_with("[5/5] COPY . ."));
    assert!(fourth.step("WORKDIR").cached);
    assert!(fourth.stderr.contains("installed 2 packages"), "{}", fourth.stderr);
    let f = unpack_image(root.path(), "app:1");
    assert!(f.path().join("opt/site/requests.installed").exists());
    // The layers below the edit are the same blobs as before.
    let img4 = store.resolve("app:1").unwrap();
    let base_n = store.resolve("busybox:local").unwrap().manifest.layers.len();
    assert_eq!(img4.manifest.layers[..base_n + 1], img3.manifest.layers[..base_n + 1]);
}

/// 5. A file listed in .dockerignore changes nothing; deleting a file in a RUN hides it.
#[test]
fn dockerignore_and_deletions() {
    let root = store_with_busybox();
    let ctx = project();
    write_files(ctx.path(), &[(".dockerignore", "secret.env\n*.log\n"), ("secret.env", "KEY=1\n"), ("debug.log", "x\n")]);
    let first = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(first.ok(), "{}", first.stderr);
    let f = unpack_image(root.path(), "app:1");
    assert!(!f.path().join("app/secret.env").exists(), "ignored files are not copied");
    assert!(!f.path().join("app/debug.log").exists());
    assert!(f.path().join("app/.dockerignore").exists());

    write_files(ctx.path(), &[("secret.env", "KEY=2\n"), ("debug.log", "y\n"), ("other.log", "z\n")]);
    let second = build(root.path(), ctx.path(), &["-t", "app:1"]);
    assert!(second.ok(), "{}", second.stderr);
    assert!(second.rebuilt().is_empty(), "ignored files change nothing:\n{}", second.stderr);
    assert_eq!(second.image_id(), first.image_id());

    // A RUN that deletes files of lower layers hides them (whiteouts).
    let ctx2 = tempfile::tempdir().unwrap();
    write_files(
        ctx2.path(),
        &[
            ("Dockerfile", "FROM busybox:local\nCOPY junk.txt /junk.txt\nRUN rm /junk.txt /bin/vi && mkdir /d && touch /d/a\nRUN rm -r /d\n"),
            ("junk.txt", "junk\n"),
        ],
    );
    let r = build(root.path(), ctx2.path(), &["-t", "del:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "del:1");
    assert!(!f.path().join("junk.txt").exists());
    assert!(!f.path().join("bin/vi").exists());
    assert!(!f.path().join("d").exists());
    assert!(f.path().join("bin/ls").exists());
}

/// 6. Multi-stage: COPY --from, FROM <stage>, and an unused stage that is never built.
#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                r#"FROM busybox:local AS unused
RUN echo never-built && exit 1

FROM busybox:local AS build
WORKDIR /src
COPY main.py .
RUN mkdir /out && cp main.py /out/app.py && echo built > /out/stamp && chown 1000:1000 /out/stamp

FROM build AS test
RUN test -f /out/app.py

FROM busybox:local
COPY --from=build /out /app
COPY --from=build --chown=55:66 --chmod=600 /out/stamp /stamp2
ENTRYPOINT ["/bin/cat"]
CMD ["/app/app.py"]
"#,
            ),
            ("main.py", "print(1)\n"),
        ],
    );
    let r = build(root.path(), ctx.path(), &["-t", "multi:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(!r.stderr.contains("never-built"), "{}", r.stderr);
    assert!(r.steps.iter().all(|s| !s.name.contains("unused") && !s.name.contains("[test ")), "{}", r.stderr);
    assert!(r.step("[build 4/4] RUN").done);
    let f = unpack_image(root.path(), "multi:1");
    assert_eq!(std::fs::read_to_string(f.path().join("app/app.py")).unwrap(), "print(1)\n");
    let m = std::fs::metadata(f.path().join("app/stamp")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000), "--from keeps owners");
    let m = std::fs::metadata(f.path().join("stamp2")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (55, 66, 0o600));
    assert!(!f.path().join("src").exists(), "the build stage's files stay there");
    let cfg = store(root.path()).resolve("multi:1").unwrap().config.config.unwrap();
    assert_eq!(cfg.entrypoint, Some(vec!["/bin/cat".to_string()]));
    assert_eq!(cfg.cmd, Some(vec!["/app/app.py".to_string()]));

    // --target builds the named stage (and its dependency), nothing after it.
    let t = build(root.path(), ctx.path(), &["--target", "test", "-t", "multi:test"]);
    assert!(t.ok(), "{}", t.stderr);
    assert!(t.step("[build 4/4] RUN").cached);
    assert!(t.step("[test 2/2] RUN").done);
    assert!(!t.stderr.contains("[stage-3"), "{}", t.stderr);
}

/// Independent stages run at the same time: their RUNs overlap in time.
#[test]
fn independent_stages_run_in_parallel() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS a\nRUN date +%s > /start && sleep 3 && date +%s > /end\n\nFROM busybox:local AS b\nRUN date +%s > /start && sleep 3 && date +%s > /end\n\nFROM busybox:local\nCOPY --from=a /start /a-start\nCOPY --from=a /end /a-end\nCOPY --from=b /start /b-start\nCOPY --from=b /end /b-end\n",
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "par:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "par:1");
    let t = |p: &str| -> u64 { std::fs::read_to_string(f.path().join(p)).unwrap().trim().parse().unwrap() };
    let (a0, a1, b0, b1) = (t("a-start"), t("a-end"), t("b-start"), t("b-end"));
    assert!(a0.max(b0) < a1.min(b1), "the two RUNs overlap: a {a0}..{a1}, b {b0}..{b1}");
}
