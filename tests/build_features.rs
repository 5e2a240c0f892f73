//! The instructions and flags beyond the seed project: config fields, ARG and cache keys,
//! heredocs, ADD, COPY destination rules, --chown names, reproducibility, CLI flags.

mod build_util;

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use build_util::*;

/// Config assembly: ENV, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL,
/// ONBUILD, ENTRYPOINT's CMD reset; RUN sees ENV, ARG, USER, WORKDIR.
#[test]
fn config_fields_and_run_environment() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            r#"FROM busybox:local
ARG VERSION=1.0
ENV APP_HOME=/srv/app GREETING="hello world"
WORKDIR $APP_HOME
RUN echo "v=$VERSION g=$GREETING pwd=$(pwd) home=$HOME" > /env.txt
USER nobody
RUN id -u > /tmp/uid.txt
USER root
EXPOSE 8080 53/udp
LABEL org.example.version=$VERSION maintainer="me"
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost:8080 || exit 1
SHELL ["/bin/sh", "-ec"]
CMD echo from-cmd
ENTRYPOINT ["/bin/echo"]
ONBUILD RUN echo triggered > /triggered
"#,
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "cfg:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "cfg:1");
    assert_eq!(
        std::fs::read_to_string(f.path().join("env.txt")).unwrap(),
        "v=1.0 g=hello world pwd=/srv/app home=/root\n"
    );
    assert_eq!(std::fs::read_to_string(f.path().join("tmp/uid.txt")).unwrap(), "65534\n");
    let img = store(root.path()).resolve("cfg:1").unwrap();
    let c = img.config.config.unwrap();
    let env = c.env.unwrap();
    assert!(env.contains(&"APP_HOME=/srv/app".to_string()));
    assert!(env.contains(&"GREETING=hello world".to_string()));
    assert!(!env.iter().any(|e| e.starts_with("VERSION=")), "ARGs stay out of the image env");
    assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
    assert_eq!(c.user.as_deref(), Some("root"));
    let ports: Vec<String> = c.exposed_ports.unwrap().keys().cloned().collect();
    assert_eq!(ports, ["53/udp", "8080/tcp"]);
    let labels = c.labels.unwrap();
    assert_eq!(labels.get("org.example.version").map(String::as_str), Some("1.0"));
    assert_eq!(labels.get("maintainer").map(String::as_str), Some("me"));
    assert!(c.volumes.unwrap().contains_key("/data"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    let hc = c.healthcheck.unwrap();
    assert_eq!(hc.test.unwrap(), ["CMD-SHELL", "wget -q localhost:8080 || exit 1"]);
    assert_eq!(hc.interval, Some(5_000_000_000));
    assert_eq!(hc.retries, Some(2));
    assert_eq!(c.shell.unwrap(), ["/bin/sh", "-ec"]);
    assert_eq!(c.entrypoint.unwrap(), ["/bin/echo"]);
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".into(), "-ec".into(), "echo from-cmd".into()]),
        "shell-form CMD uses the SHELL in effect; a CMD set in this stage survives ENTRYPOINT"
    );
    assert_eq!(c.on_build.unwrap(), ["RUN echo triggered > /triggered"]);

    // A child build runs the trigger once and does not inherit it.
    let child = tempfile::tempdir().unwrap();
    write_files(child.path(), &[("Dockerfile", "FROM cfg:1\nENTRYPOINT [\"/bin/cat\"]\n")]);
    let r = build(root.path(), child.path(), &["-t", "child:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(unpack_image(root.path(), "child:1").path().join("triggered").exists());
    let c = store(root.path()).resolve("child:1").unwrap().config.config.unwrap();
    assert_eq!(c.on_build, None);
    assert_eq!(c.cmd, None, "ENTRYPOINT resets the base image's CMD");
}

/// An ARG changes the keys of the RUNs after it whose env it is in; other steps stay cached.
#[test]
fn build_args_change_only_the_runs_that_see_them() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM busybox:local\nRUN echo before > /before\nARG FLAVOR=plain\nCOPY a.txt /a.txt\nRUN echo $FLAVOR > /flavor\nLABEL flavor=$FLAVOR\n"),
            ("a.txt", "a\n"),
        ],
    );
    let a = build(root.path(), ctx.path(), &["-t", "args:1"]);
    assert!(a.ok(), "{}", a.stderr);
    let b = build(root.path(), ctx.path(), &["-t", "args:1", "--build-arg", "FLAVOR=spicy"]);
    assert!(b.ok(), "{}", b.stderr);
    assert_eq!(b.rebuilt(), ["[4/4] RUN echo $FLAVOR > /flavor"], "{}", b.stderr);
    assert_eq!(std::fs::read_to_string(unpack_image(root.path(), "args:1").path().join("flavor")).unwrap(), "spicy\n");
    // Proxy variables are passed but never part of a key.
    let c = build(root.path(), ctx.path(), &["-t", "args:1", "--build-arg", "FLAVOR=spicy", "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128"]);
    assert!(c.rebuilt().is_empty(), "{}", c.stderr);
    // An unused build arg is a warning, not an error.
    let d = build(root.path(), ctx.path(), &["-t", "args:1", "--build-arg", "FLAVOR=spicy", "--build-arg", "NOPE=1"]);
    assert!(d.ok());
    assert!(d.stderr.contains("WARNING: build argument NOPE"), "{}", d.stderr);
    // --no-cache runs everything again.
    let e = build(root.path(), ctx.path(), &["-t", "args:1", "--no-cache"]);
    assert!(e.ok());
    assert_eq!(e.rebuilt().len(), 3, "{}", e.stderr);
}

/// Heredocs in RUN (script, shebang script, fed to a command) and COPY.
#[test]
fn heredocs() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nENV WHO=world\nRUN <<EOF\necho one > /one\necho two >> /one\nEOF\nRUN <<EOF\n#!/bin/sh\necho shebang > /two\nEOF\nRUN cat > /three <<'EOT'\nliteral $WHO\nEOT\nCOPY <<EOF /etc/greeting\nhello $WHO\nEOF\nCOPY <<A <<B /multi/\nfirst\nA\nsecond\nB\n",
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "here:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "here:1");
    let read = |p: &str| std::fs::read_to_string(f.path().join(p)).unwrap();
    assert_eq!(read("one"), "one\ntwo\n");
    assert_eq!(read("two"), "shebang\n");
    assert_eq!(read("three"), "literal $WHO\n");
    assert_eq!(read("etc/greeting"), "hello world\n");
    assert_eq!(read("multi/A"), "first\n");
    assert_eq!(read("multi/B"), "second\n");
    assert!(!f.path().join(".rbuild-heredoc").exists(), "the script mount leaves nothing behind");
}

/// COPY destination rules, wildcards, --chown by name, ADD with a local tar and --checksum.
#[test]
fn copy_rules_chown_and_add() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("src/a.py", "a\n"),
            ("src/b.py", "b\n"),
            ("src/sub/c.txt", "c\n"),
            ("one.txt", "1\n"),
            ("two.txt", "2\n"),
        ],
    );
    std::os::unix::fs::symlink("one.txt", ctx.path().join("link.txt")).unwrap();
    // A tar to auto-extract.
    let tarpath = ctx.path().join("payload.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&tarpath).unwrap(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o640);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        t.append_data(&mut h, "inner/file.txt", &b"inside"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }
    let sum = format!("sha256:{}", hex::encode(rbuild::plan::context::hash_file(&ctx.path().join("one.txt")).unwrap()));
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox:local\nRUN echo app:x:1500:1600::/home/app:/bin/sh >> /etc/passwd && echo app:x:1600: >> /etc/group\nWORKDIR /w\nCOPY src/ dst\nCOPY src /whole/\nCOPY *.txt txts/\nCOPY one.txt renamed.txt\nCOPY one.txt /existing-dir-not/\nCOPY link.txt /followed.txt\nCOPY --chown=app src/a.py /owned/a.py\nCOPY --chown=app:nogroup src/a.py /owned/b.py\nADD payload.tar.gz /extract/\nADD --checksum={sum} one.txt /checked.txt\n"
            ),
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "copy:1"]);
    // `nogroup` does not exist in busybox: the error names it.
    assert!(!r.ok());
    assert!(r.stderr.contains("unable to find group nogroup"), "{}", r.stderr);
    let df = std::fs::read_to_string(ctx.path().join("Dockerfile")).unwrap().replace("app:nogroup", "app:app");
    write_files(ctx.path(), &[("Dockerfile", &df)]);
    let r = build(root.path(), ctx.path(), &["-t", "copy:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "copy:1");
    let p = f.path();
    assert!(p.join("w/dst/a.py").is_file() && p.join("w/dst/sub/c.txt").is_file(), "dir contents go into dest");
    assert!(p.join("whole/a.py").is_file() && !p.join("whole/src").exists(), "a dir source copies its contents");
    assert!(p.join("w/txts/one.txt").is_file() && p.join("w/txts/two.txt").is_file());
    assert_eq!(std::fs::read_to_string(p.join("w/renamed.txt")).unwrap(), "1\n");
    assert!(p.join("existing-dir-not/one.txt").is_file(), "a trailing slash makes a directory");
    let m = std::fs::symlink_metadata(p.join("followed.txt")).unwrap();
    assert!(m.is_file(), "a symlink named as the source is followed");
    let m = std::fs::metadata(p.join("owned/a.py")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1500, 1500), "--chown=user uses the uid as gid (Docker's rule)");
    let gid = std::fs::read_to_string(p.join("etc/group")).unwrap();
    let app_gid: u32 = gid.lines().find(|l| l.starts_with("app:")).unwrap().split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(std::fs::metadata(p.join("owned/b.py")).unwrap().gid(), app_gid);
    assert_eq!(std::fs::read_to_string(p.join("extract/inner/file.txt")).unwrap(), "inside");
    assert!(!p.join("extract/payload.tar.gz").exists(), "ADD extracts local tars");
    assert_eq!(std::fs::read_to_string(p.join("checked.txt")).unwrap(), "1\n");

    // A wrong checksum fails the step.
    let bad = df.replace(&sum, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    write_files(ctx.path(), &[("Dockerfile", &bad)]);
    let r = build(root.path(), ctx.path(), &["-t", "copy:2"]);
    assert!(!r.ok() && r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    // Several sources need a directory destination.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY one.txt two.txt /notadir\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "copy:4"]);
    assert!(!r.ok() && r.stderr.contains("must be a directory and end with a /"), "{}", r.stderr);
    // A missing source names itself.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY missing.txt /\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "copy:5"]);
    assert!(!r.ok() && r.stderr.contains("Dockerfile:2: COPY missing.txt /: missing.txt: no such file"), "{}", r.stderr);
}

/// Same inputs give the same layers and, with SOURCE_DATE_EPOCH, the same image ID on a
/// different store; `-q` prints the ID; `--output` writes an archive; `--network=none`.
#[test]
fn reproducible_quiet_output_network() {
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM busybox:local\nWORKDIR /app\nCOPY . .\nRUN --network=none tail -n +3 /proc/net/dev | wc -l > /links\n"),
            ("x.txt", "x\n"),
        ],
    );
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let root = store_with_busybox();
            let out = rbuild()
                .arg("--root")
                .arg(root.path())
                .args(["build", "-q", "-t", "repro:1"])
                .arg(ctx.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(out.stderr.is_empty(), "-q prints nothing but the ID");
            let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
            assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
            let f = unpack_image(root.path(), "repro:1");
            assert_eq!(std::fs::read_to_string(f.path().join("links")).unwrap(), "1\n", "only lo with --network=none");
            let cfg = store(root.path()).resolve("repro:1").unwrap().config;
            assert_eq!(cfg.created.as_deref(), Some("2023-11-14T22:13:20Z"));
            id
        })
        .collect();
    // The RUN layer's content is the same but RUN layers keep file times; with the epoch
    // clamp every time is pinned, so the whole image matches.
    assert_eq!(ids[0], ids[1], "same inputs, same image ID on another store");

    let root = store_with_busybox();
    let dest = root.path().join("out.tar");
    let r = build(root.path(), ctx.path(), &["-t", "out:1", "--output", &format!("type=oci,dest={}", dest.display())]);
    assert!(r.ok(), "{}", r.stderr);
    let mut a = tar::Archive::new(std::fs::File::open(&dest).unwrap());
    let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n == "index.json"), "{names:?}");
}

/// RUN --mount: bind from a stage and from the context (read-only, in the key by content),
/// and a cache directory that persists across builds but never enters a layer.
#[test]
fn run_mounts() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox:local AS tools\nRUN mkdir /tools && echo tool > /tools/t.txt\n\nFROM busybox:local\nRUN --mount=type=bind,from=tools,source=/tools,target=/mnt/tools cat /mnt/tools/t.txt > /got-tool\nRUN --mount=type=bind,source=data,target=/data cat /data/d.txt > /got-data\nRUN --mount=type=cache,target=/var/cache/x echo run >> /var/cache/x/log && wc -l < /var/cache/x/log > /cache-count\n",
            ),
            ("data/d.txt", "data-1\n"),
        ],
    );
    let r = build(root.path(), ctx.path(), &["-t", "mnt:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "mnt:1");
    let read = |p: &str| std::fs::read_to_string(f.path().join(p)).unwrap();
    assert_eq!(read("got-tool"), "tool\n");
    assert_eq!(read("got-data"), "data-1\n");
    assert_eq!(read("cache-count").trim(), "1");
    assert!(!f.path().join("mnt/tools/t.txt").exists() && !f.path().join("data/d.txt").exists());
    assert!(!f.path().join("var/cache/x/log").exists(), "cache mounts stay out of layers");

    write_files(ctx.path(), &[("data/d.txt", "data-2\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "mnt:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt(), ["[stage-1 3/4] RUN --mount=type=bind,source=data,target=/data cat /data/d.txt > /got-data", "[stage-1 4/4] RUN --mount=type=cache,target=/var/cache/x echo run >> /var/cache/x/log && wc -l < /var/cache/x/log > /cache-count"]);
    let f = unpack_image(root.path(), "mnt:1");
    assert_eq!(std::fs::read_to_string(f.path().join("got-data")).unwrap(), "data-2\n");
    assert_eq!(std::fs::read_to_string(f.path().join("cache-count")).unwrap().trim(), "2", "the cache dir persisted");
}

/// ONBUILD triggers of a base *stage* fire in the stage built from it; cache records keep
/// the key's inputs for `--explain`.
#[test]
fn stage_onbuild_triggers_and_key_traces() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local AS base\nONBUILD RUN echo fired > /fired\n\nFROM base\nRUN cat /fired > /seen\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "ob:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "ob:1");
    assert_eq!(std::fs::read_to_string(f.path().join("seen")).unwrap(), "fired\n");
    let recs = store(root.path()).cache_records().unwrap();
    let run = recs
        .iter()
        .find(|(_, r)| r.created_by.contains("cat /fired"))
        .expect("a record for the RUN");
    let trace = &run.1.extra["key_trace"];
    assert_eq!(trace["kind"], "rbuild.run.v1");
    assert!(trace["fields"].as_array().unwrap().iter().any(|f| f["name"] == "argv"));
}

/// `-f FILE` outside the context and `-f -` (stdin); `Dockerfile.dockerignore` next to a
/// custom Dockerfile wins over the context's .dockerignore.
#[test]
fn dockerfile_flags() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("a.txt", "a\n"), ("b.txt", "b\n"), (".dockerignore", "a.txt\n")]);
    write_files(
        other.path(),
        &[("build.Dockerfile", "FROM busybox:local\nCOPY . /c/\n"), ("build.Dockerfile.dockerignore", "b.txt\n")],
    );
    let f = other.path().join("build.Dockerfile");
    let r = build(root.path(), ctx.path(), &["-t", "ff:1", "-f", f.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    let fs = unpack_image(root.path(), "ff:1");
    assert!(fs.path().join("c/a.txt").exists() && !fs.path().join("c/b.txt").exists());

    let mut child = rbuild()
        .arg("--root")
        .arg(root.path())
        .args(["build", "--progress=plain", "-t", "stdin:1", "-f", "-"])
        .arg(ctx.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"FROM busybox:local\nCOPY . /d/\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fs = unpack_image(root.path(), "stdin:1");
    assert!(!fs.path().join("d/a.txt").exists() && fs.path().join("d/b.txt").exists());
}
