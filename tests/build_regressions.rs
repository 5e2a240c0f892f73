//! Regressions found by QA: one test per defect, named after it.

mod build_util;

use build_util::*;

/// `ENV X=${A:-${A:-...}}` 2000 levels deep aborted the process with a stack overflow.
#[test]
fn deeply_nested_expansion_is_an_error_not_a_crash() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let depth = 2000;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nENV X={word}\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "deep:1"]);
    assert_eq!(r.out.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2:1: ") && r.stderr.contains("nested too deeply"), "{}", r.stderr);
    assert!(r.stderr.len() < 2000, "one short line: {}", r.stderr);

    // A reasonable nesting still works.
    let word = format!("{}x{}", "${A:-".repeat(20), "}".repeat(20));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nENV X={word}\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "deep:2"]);
    assert!(r.ok(), "{}", r.stderr);
}

/// `COPY link.txt /d1/` (link.txt -> real.txt) created /d1/real.txt; Docker names the copy
/// after the source as written: /d1/link.txt, with the target's content.
#[test]
fn copy_symlink_source_keeps_the_link_name() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("real.txt", "real\n"), ("Dockerfile", "FROM busybox:local\nCOPY link.txt /d1/\nCOPY link* /d4/\n")],
    );
    std::os::unix::fs::symlink("real.txt", ctx.path().join("link.txt")).unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "sym:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "sym:1");
    for d in ["d1", "d4"] {
        assert_eq!(std::fs::read_to_string(f.path().join(d).join("link.txt")).unwrap(), "real\n", "{d}");
        assert!(!f.path().join(d).join("real.txt").exists(), "{d}");
    }
}

/// `COPY linkdir/r /x` with linkdir -> realdir failed with "no such file"; a link leaving the
/// context must say so instead of blaming .dockerignore.
#[test]
fn copy_source_through_symlinked_dir() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("realdir/r", "r\n"), ("Dockerfile", "FROM busybox:local\nCOPY linkdir/r /x\n")]);
    std::os::unix::fs::symlink("realdir", ctx.path().join("linkdir")).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", ctx.path().join("rel-link")).unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "symdir:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "symdir:1");
    assert_eq!(std::fs::read_to_string(f.path().join("x")).unwrap(), "r\n");

    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY rel-link /y\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "symdir:2"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("points outside the build context"), "{}", r.stderr);
    assert!(!r.stderr.contains(".dockerignore"), "{}", r.stderr);
}

/// `RUN --mount=type=tmpfs` (then unsupported) was reported only when its step ran, after
/// the steps before it had run.
#[test]
fn unsupported_run_flags_fail_before_anything_runs() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    for (line, flag) in [
        ("RUN --mount=type=ssh,required true", "RUN --mount=type=ssh,id=default,required needs an agent"),
        ("RUN --security=insecure true", "RUN --security=insecure is not supported yet"),
        ("RUN --mount=type=secret,id=x,required true", "secret \"x\" is required"),
        ("RUN --mount=type=tmpfs,target=/t,size=big true", "RUN --mount=type=tmpfs,size=big: invalid size"),
    ] {
        write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nRUN touch /ran\n{line}\n"))]);
        let r = build(root.path(), ctx.path(), &["-t", "ff:1"]);
        assert!(!r.ok());
        assert!(r.stderr.contains(&format!("Dockerfile:3:1: {flag}")), "{}", r.stderr);
        assert!(!r.stderr.contains("RUN touch /ran"), "nothing ran before the check:\n{}", r.stderr);
    }
}

/// `STOPSIGNAL SIGFOO`, `EXPOSE 1/bogus`, `EXPOSE 99999` were accepted; `COPY --from= f /f`
/// said `no such image: `.
#[test]
fn invalid_values_are_rejected_with_location() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "f\n")]);
    for (line, want) in [
        ("STOPSIGNAL SIGFOO", "Dockerfile:2:1: STOPSIGNAL: invalid signal: SIGFOO"),
        ("EXPOSE 80 1/bogus", "Dockerfile:2:1: EXPOSE 1/bogus: invalid proto: bogus"),
        ("EXPOSE 99999", "Dockerfile:2:1: EXPOSE 99999: invalid containerPort: 99999"),
        ("COPY --from= f /f", "Dockerfile:2:1: COPY --from is empty"),
    ] {
        write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\n{line}\n"))]);
        let r = build(root.path(), ctx.path(), &["-t", "iv:1"]);
        assert!(!r.ok(), "{line}");
        assert!(r.stderr.contains(want), "{line}: {}", r.stderr);
    }
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nSTOPSIGNAL 9\nEXPOSE 8000-8010/udp\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "iv:2"]);
    assert!(r.ok(), "{}", r.stderr);
}

/// `FROM --platform=linux/arm64` of an amd64 image built silently.
#[test]
fn from_platform_mismatch_warns() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let other = if cfg!(target_arch = "aarch64") { "linux/amd64" } else { "linux/arm64" };
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM --platform={other} busybox:local\nENV A=1\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "plat:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stderr.contains("InvalidBaseImagePlatform") && r.stderr.contains(other), "{}", r.stderr);
}

/// The summary said "(1 steps, 1 cached)"; history rows of config-only instructions had a
/// later time than the RUN rows after them.
#[test]
fn summary_singular_and_history_times_in_order() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "one:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stderr.contains("(1 step, 1 cached)"), "{}", r.stderr);

    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nENV A=1\nLABEL x=y\nRUN sleep 1.1; echo a > /a\nENV B=2\nRUN echo b > /b\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "hist:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let img = store(root.path()).resolve("hist:1").unwrap();
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = img
        .config
        .history
        .iter()
        .map(|h| chrono::DateTime::parse_from_rfc3339(h.created.as_deref().unwrap()).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{:?}", img.config.history);
}

fn rbuild_stdin(root: &std::path::Path, args: &[&str], stdin: &[u8]) -> (std::process::Output, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = rbuild()
        .arg("--root")
        .arg(root)
        .arg("build")
        .arg("--progress=plain")
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut si = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = si.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// `rbuild -f - .`, `rbuild -t x -` (context tar on stdin), `rbuild /nonexistent` and a
/// non-UTF-8 Dockerfile gave misleading errors.
#[test]
fn stdin_dockerfile_stdin_context_and_clear_path_errors() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("a.txt", "a\n"), ("secret.txt", "s\n"), (".dockerignore", "secret.txt\n")]);
    let ctx_s = ctx.path().to_str().unwrap();

    // -f -: the Dockerfile from stdin, the context's .dockerignore applies.
    let (out, err) = rbuild_stdin(root.path(), &["-t", "sin:1", "-f", "-", ctx_s], b"FROM busybox:local\nCOPY . /c/\n");
    assert!(out.status.success(), "{err}");
    let f = unpack_image(root.path(), "sin:1");
    assert_eq!(std::fs::read_to_string(f.path().join("c/a.txt")).unwrap(), "a\n");
    assert!(!f.path().join("c/secret.txt").exists());

    // A context tar on stdin (with its Dockerfile).
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY a.txt /from-tar\n")]);
    let tar = std::process::Command::new("tar").arg("-C").arg(ctx.path()).args(["-cf", "-", "."]).output().unwrap();
    assert!(tar.status.success());
    let (out, err) = rbuild_stdin(root.path(), &["-t", "sin:2", "-"], &tar.stdout);
    assert!(out.status.success(), "{err}");
    let f = unpack_image(root.path(), "sin:2");
    assert_eq!(std::fs::read_to_string(f.path().join("from-tar")).unwrap(), "a\n");
    let left: Vec<_> = std::fs::read_dir(root.path().join("tmp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the unpacked context is removed: {left:?}");

    // A missing context is named as such.
    let r = build(root.path(), std::path::Path::new("/nonexistent"), &["-t", "x:1"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("context path /nonexistent not found"), "{}", r.stderr);

    // A Dockerfile that is not UTF-8.
    std::fs::write(ctx.path().join("Dockerfile"), b"FROM busybox:local\nLABEL a=\xff\n").unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "x:2"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("is not valid UTF-8 at byte 27"), "{}", r.stderr);
    assert!(!r.stderr.contains("-f"), "{}", r.stderr);
}

/// The snapshot kept on disk after a COPY had build-time mtimes while the layer said 0: a
/// later RUN saw other times than a machine that loads the image.
#[test]
fn copy_snapshot_mtimes_match_the_layer() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("f", "f\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /d/f\nRUN stat -c '%Y %y' /d/f /d > /mt\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "mt:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "mt:1");
    let mt = std::fs::read_to_string(f.path().join("mt")).unwrap();
    for line in mt.lines() {
        assert!(line.starts_with("0 1970-01-01 00:00:00.000000000"), "{mt}");
    }
}

/// Local layers are plain tars; an OCI archive carries them gzipped under its own manifest,
/// with the same config (image ID).
#[test]
fn local_layers_uncompressed_oci_output_gzipped() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "f\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /f\n")]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("img.tar");
    let r = build(root.path(), ctx.path(), &["-t", "lz:1", "--output", &format!("type=oci,dest={}", dest.display())]);
    assert!(r.ok(), "{}", r.stderr);
    let img = store(root.path()).resolve("lz:1").unwrap();
    let top = img.manifest.layers.last().unwrap();
    assert_eq!(top.media_type, "application/vnd.oci.image.layer.v1.tar");

    let x = out.path().join("x");
    std::fs::create_dir(&x).unwrap();
    tar::Archive::new(std::fs::File::open(&dest).unwrap()).unpack(&x).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let mdig = index["manifests"][0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let mbytes = std::fs::read(x.join("blobs/sha256").join(&mdig)).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&mbytes).unwrap();
    assert_eq!(m["config"]["digest"].as_str().unwrap(), img.id.to_string(), "same image ID");
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let hex = l["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap();
        let blob = std::fs::read(x.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
        assert_eq!(&blob[..2], &[0x1f, 0x8b]);
        use sha2::Digest as _;
        assert_eq!(hex::encode(sha2::Sha256::digest(&blob)), hex);
    }
}

mod interrupt {
    use super::*;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    fn leftover_tmp(root: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(root.join("tmp"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("build-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Start a build; return once a stderr line contains `marker`. Returns the child and
    /// the lines so far plus a receiver of the rest.
    fn start(root: &std::path::Path, ctx: &std::path::Path, marker: &str) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
        let mut child = rbuild()
            .arg("--root")
            .arg(root)
            .args(["build", "--progress=plain", "-t", "int:1"])
            .arg(ctx)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let t = Instant::now();
        loop {
            let line = rx.recv_timeout(Duration::from_secs(120)).expect("rbuild printed nothing");
            if line.contains(marker) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "marker {marker} never came");
        }
        (child, rx)
    }

    fn wait(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > within {
                let _ = child.kill();
                panic!("rbuild did not stop within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C during a large COPY was ignored until the step finished; the message then said
    /// "the store is unchanged" although a finished step was cached.
    #[test]
    fn ctrl_c_during_large_copy_stops_it_and_says_what_was_kept() {
        let root = store_with_busybox();
        let ctx = tempfile::tempdir().unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for i in 0..4 {
            let mut f = std::fs::File::create(ctx.path().join(format!("big{i}"))).unwrap();
            for _ in 0..100 {
                std::io::Write::write_all(&mut f, &chunk).unwrap();
            }
        }
        write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN echo first > /first\nCOPY big* /data/\n")]);
        let (mut child, rx) = start(root.path(), ctx.path(), "COPY big*");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let st = wait(&mut child, Duration::from_secs(60));
        assert!(!st.success());
        std::thread::sleep(Duration::from_millis(100));
        let rest: Vec<String> = rx.try_iter().collect();
        let all = rest.join("\n");
        assert!(all.contains("build cancelled"), "{all}");
        assert!(all.contains("1 finished step was kept in the build cache"), "{all}");
        assert!(!all.contains("store is unchanged"), "{all}");
        assert!(!rest.iter().any(|l| l.starts_with("#3 DONE")), "the COPY did not run to its end: {all}");
        assert!(leftover_tmp(root.path()).is_empty(), "{:?}", leftover_tmp(root.path()));

        // A second signal (the first one used to be ignored here) ended the process
        // silently and left ROOT/tmp/build-* behind.
        let (mut child, rx) = start(root.path(), ctx.path(), "COPY big*");
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGINT).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let _ = kill(pid, Signal::SIGTERM);
        let st = wait(&mut child, Duration::from_secs(60));
        assert!(!st.success());
        std::thread::sleep(Duration::from_millis(100));
        let all: Vec<String> = rx.try_iter().collect();
        assert!(all.iter().any(|l| l.contains("build cancelled")), "{all:?}");
        assert!(leftover_tmp(root.path()).is_empty(), "{:?}", leftover_tmp(root.path()));
    }
}

/// A build with SOURCE_DATE_EPOCH reused the COPY layers of a build without it, so the image's
/// files kept mtime 0 instead of the epoch (the epoch was in no cache key).
#[test]
fn source_date_epoch_is_part_of_every_layer_key() {
    use std::os::unix::fs::MetadataExt;
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "x\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /f\nRUN touch /r\n")]);
    assert!(build(root.path(), ctx.path(), &["-t", "sde:0"]).ok());
    let r = build_env(root.path(), ctx.path(), &["-t", "sde:1000"], &[("SOURCE_DATE_EPOCH", "1000")]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 2, "both layers are rebuilt: {}", r.stderr);
    let f = unpack_image(root.path(), "sde:1000");
    assert_eq!(std::fs::metadata(f.path().join("f")).unwrap().mtime(), 1000);
    assert_eq!(std::fs::metadata(f.path().join("r")).unwrap().mtime(), 1000, "RUN times are clamped");
    // The same epoch again is a hit; no epoch is the first build's layers again.
    let again = build_env(root.path(), ctx.path(), &["-t", "sde:1000"], &[("SOURCE_DATE_EPOCH", "1000")]);
    assert!(again.rebuilt().is_empty(), "{}", again.stderr);
    assert!(build(root.path(), ctx.path(), &["-t", "sde:0"]).rebuilt().is_empty());
    let f = unpack_image(root.path(), "sde:0");
    assert_eq!(std::fs::metadata(f.path().join("f")).unwrap().mtime(), 0);
}

/// QA: an unparsable SOURCE_DATE_EPOCH was silently ignored; BuildKit also takes it as a
/// build arg.
#[test]
fn source_date_epoch_must_be_a_number_and_may_be_a_build_arg() {
    use std::os::unix::fs::MetadataExt;
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "x\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /f\n")]);
    for bad in ["abc", "1e9", "-5", "99999999999999999999"] {
        let r = build_env(root.path(), ctx.path(), &["-t", "sde:bad"], &[("SOURCE_DATE_EPOCH", bad)]);
        assert_eq!(r.out.status.code(), Some(1), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("SOURCE_DATE_EPOCH") && r.stderr.contains("not a number of seconds"), "{}", r.stderr);
    }
    let r = build(root.path(), ctx.path(), &["--build-arg", "SOURCE_DATE_EPOCH=77", "-t", "sde:77"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(!r.stderr.contains("not consumed"), "{}", r.stderr);
    let f = unpack_image(root.path(), "sde:77");
    assert_eq!(std::fs::metadata(f.path().join("f")).unwrap().mtime(), 77);
}

/// QA: an image holding one layer twice (`COPY a /x/`, `RUN rm -rf /x`, `COPY a /x/`) could
/// not be built upon or run: overlayfs refuses a lower dir twice (ELOOP).
#[test]
fn an_image_with_a_layer_twice_builds_and_runs() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("a", "hi\n"), ("Dockerfile", "FROM busybox:local\nCOPY a /x/\nRUN rm -rf /x\nCOPY a /x/\nRUN cat /x/a > /seen\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "dup:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let ids = store(root.path()).resolve("dup:1").unwrap().config.rootfs.diff_ids;
    assert_eq!(ids[1], ids[3], "the two COPY layers are one layer");
    assert_eq!(std::fs::read_to_string(unpack_image(root.path(), "dup:1").path().join("seen")).unwrap(), "hi\n");
    let out = rbuild().arg("--root").arg(root.path()).args(["run", "--rm", "dup:1", "cat", "/x/a", "/seen"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nhi\n");
}

/// QA: `--timings`/`--metadata-file` (and `--cache-to`) written into the build context became
/// part of the next build's context, so `COPY . .` never hit the cache and the reports ended
/// up in the image.
#[test]
fn own_outputs_in_the_context_are_left_out_of_it() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("src.txt", "x\n"), ("Dockerfile", "FROM busybox:local\nCOPY . /app/\n")]);
    let html = ctx.path().join("build.html");
    let json = ctx.path().join("out/build.json");
    std::fs::create_dir_all(json.parent().unwrap()).unwrap();
    let cache = ctx.path().join(".rbuild-cache");
    let args = |tag: &'static str| {
        vec![
            "-t".to_string(),
            tag.to_string(),
            format!("--timings={}", html.display()),
            "--metadata-file".to_string(),
            json.display().to_string(),
            format!("--cache-to=type=local,dest={},mode=max", cache.display()),
        ]
    };
    for (i, tag) in ["own:1", "own:2"].into_iter().enumerate() {
        let a = args(tag);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = build(root.path(), ctx.path(), &a);
        assert!(r.ok(), "{}", r.stderr);
        if i == 1 {
            assert!(r.rebuilt().is_empty(), "the second build is fully cached: {}", r.stderr);
        }
    }
    assert!(html.is_file() && json.is_file() && cache.is_dir());
    let f = unpack_image(root.path(), "own:2");
    assert!(f.path().join("app/src.txt").is_file());
    for p in ["app/build.html", "app/out/build.json", "app/.rbuild-cache"] {
        assert!(!f.path().join(p).exists(), "{p} is in the image");
    }
    assert!(f.path().join("app/out").is_dir(), "only the output itself is left out");
}

/// QA: a failed build wrote neither `--timings` nor `--metadata-file`.
#[test]
fn a_failed_build_still_writes_its_reports() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN echo one > /one\nRUN exit 3\n")]);
    let html = out.path().join("t.html");
    let json = out.path().join("m.json");
    let r = build(
        root.path(),
        ctx.path(),
        &["-t", "fail:1", &format!("--timings={}", html.display()), "--metadata-file", json.to_str().unwrap()],
    );
    assert!(!r.ok());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("exit code 3") || v["error"].as_str().unwrap().contains("3"), "{v}");
    assert!(v.get("image_id").is_none(), "{v}");
    let steps = v["steps"].as_array().unwrap();
    let failed: Vec<&str> = steps.iter().filter(|s| s["failed"] == true).map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert!(failed[0].contains("RUN exit 3"), "{failed:?}");
    // The failed step stays in its stage (it was drawn under "internal" before).
    let failed_step = steps.iter().find(|s| s["failed"] == true).unwrap();
    assert_eq!(failed_step["stage"], "stage-0", "{v}");
    assert!(failed_step["cache_key"].as_str().is_some_and(|k| k.starts_with("sha256:")), "{v}");
    assert!(steps.iter().any(|s| s["name"].as_str().unwrap().contains("echo one") && s["failed"] == false));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("FAILED"), "the page says the build failed");
    assert!(!page.contains("<code></code>"), "no empty digest boxes for a failed build");
    assert!(!page.contains(">internal</text>"), "no internal group in the timeline: the build loaded no context");
    assert!(page.contains(">stage stage-0</text>"), "the failed step is drawn in its stage");
}

/// QA follow-up: build args and ENV with secret-looking names are kept in the image history
/// and the build cache; warn like BuildKit's SecretsUsedInArgOrEnv check.
#[test]
fn secret_looking_arg_and_env_names_are_warned_about() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("Dockerfile", "ARG VERSION=1\nFROM busybox:local\nARG NPM_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y\nRUN true\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "sec:1", "--build-arg", "NPM_TOKEN=abc"]);
    assert!(r.ok(), "{}", r.stderr);
    let warns: Vec<&str> = r.stderr.lines().filter(|l| l.contains("looks like a secret")).collect();
    assert_eq!(warns.len(), 2, "{}", r.stderr);
    assert!(warns[0].contains("Dockerfile:3: ARG NPM_TOKEN") && warns[0].contains("--secret id=NPM_TOKEN"), "{warns:?}");
    assert!(warns[1].contains("Dockerfile:4: ENV DB_PASSWORD"), "{warns:?}");
    assert!(!r.stderr.contains("abc"), "the value is not printed");
}

/// QA: a context file changed after the scan was copied as it was then, under a key hashed
/// from other content (a later cached build served the wrong file), and a file swapped for
/// a symlink to a host file put the host file into the image. Both are errors now.
#[test]
fn a_context_file_changed_during_the_build_is_an_error() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("host-secret"), "HOST-SECRET\n").unwrap();
    write_files(ctx.path(), &[("f", "one\n"), ("g", "two\n"), ("Dockerfile", "FROM busybox:local\nRUN sleep 1.5\nCOPY f g /d/\n")]);
    let (c, s) = (ctx.path().to_path_buf(), secret.path().join("host-secret"));
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        std::fs::write(c.join("f"), "changed\n").unwrap();
        std::fs::remove_file(c.join("g")).unwrap();
        std::os::unix::fs::symlink(&s, c.join("g")).unwrap();
    });
    let r = build(root.path(), ctx.path(), &["-t", "race:1", "--no-cache"]);
    t.join().unwrap();
    assert!(!r.ok(), "{}", r.stderr);
    assert!(r.stderr.contains("changed while the build was reading the context"), "{}", r.stderr);
    assert!(store(root.path()).resolve("race:1").is_err(), "no image");
    // Once the files are settled, the build goes through with what they hold now.
    std::fs::remove_file(ctx.path().join("g")).unwrap();
    write_files(ctx.path(), &[("g", "two\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "race:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "race:1");
    assert_eq!(std::fs::read_to_string(f.path().join("d/f")).unwrap(), "changed\n");
}
