//! `RUN --mount=type=tmpfs` and `RUN --mount=type=secret` with `--secret`: real builds over
//! busybox:local, real RUNs in the sandbox.

mod build_util;

use std::io::Read;
use std::path::Path;

use build_util::*;
use sha2::Digest as _;

/// A value that appears nowhere but in the secret's source.
const VALUE: &str = "rbuild-test-secret-Zq7vX2mK9pL4";

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Does `needle` appear in the archive, in any of its members, gzip-compressed or not?
fn archive_contains(archive: &Path, needle: &[u8]) -> bool {
    let raw = std::fs::read(archive).unwrap();
    if contains(&raw, needle) {
        return true;
    }
    let mut tar = tar::Archive::new(raw.as_slice());
    for e in tar.entries().unwrap() {
        let mut member = Vec::new();
        e.unwrap().read_to_end(&mut member).unwrap();
        let mut plain = Vec::new();
        if rbuild::snapshot::maybe_decompress(member.as_slice()).unwrap().read_to_end(&mut plain).is_ok()
            && contains(&plain, needle)
        {
            return true;
        }
        if contains(&member, needle) {
            return true;
        }
    }
    false
}

/// Does `needle` appear in any regular file under `dir`?
fn tree_contains(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                let mut content = Vec::new();
                std::fs::File::open(e.path()).unwrap().read_to_end(&mut content).unwrap();
                let mut plain = Vec::new();
                let gz = rbuild::snapshot::maybe_decompress(content.as_slice())
                    .ok()
                    .and_then(|mut r| r.read_to_end(&mut plain).ok())
                    .is_some();
                if contains(&content, needle) || (gz && contains(&plain, needle)) {
                    hits.push(e.path().display().to_string());
                }
            }
        }
    }
    hits
}

/// `rbuild --root ROOT ARGS...`, stdout and stderr together.
fn cli(root: &Path, args: &[&str]) -> String {
    let out = rbuild().arg("--root").arg(root).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn read(dir: &Path, p: &str) -> String {
    std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A tmpfs is empty at each RUN, really a tmpfs, hides what the image has at its target,
/// and nothing written to it (nor its mount point) reaches the layer.
#[test]
fn tmpfs_is_fresh_at_each_run_and_leaves_no_trace() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            r#"FROM busybox:local
RUN mkdir /data && echo keep > /data/kept
RUN --mount=type=tmpfs,target=/scratch test -z "$(ls -A /scratch)" && grep -q " /scratch tmpfs " /proc/mounts && echo one > /scratch/f && cat /scratch/f > /seen1
RUN --mount=type=tmpfs,target=/scratch test -z "$(ls -A /scratch)" && echo empty-again > /seen2
RUN --mount=type=tmpfs,target=/data test ! -e /data/kept && echo new > /data/new && echo hidden > /seen3
USER nobody
RUN --mount=type=tmpfs,target=/tmp/t echo writable-by-anyone > /tmp/t/f && cat /tmp/t/f > /tmp/seen4
"#,
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "tmpfs:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let fs = unpack_image(root.path(), "tmpfs:1");
    let p = fs.path();
    assert_eq!(read(p, "seen1"), "one\n");
    assert_eq!(read(p, "seen2"), "empty-again\n");
    assert_eq!(read(p, "seen3"), "hidden\n");
    assert_eq!(read(p, "tmp/seen4"), "writable-by-anyone\n");
    assert!(!p.join("scratch").exists(), "the tmpfs mount point reached the layer");
    assert!(!p.join("tmp/t").exists(), "the tmpfs mount point reached the layer");
    assert_eq!(read(p, "data/kept"), "keep\n", "the image's files under the target stay");
    assert!(!p.join("data/new").exists(), "a write to the tmpfs reached the layer");
}

/// `size=` limits the tmpfs (BuildKit's units: 64k = 65536 bytes); a bad size is a
/// Dockerfile:LINE:COL error before anything runs.
#[test]
fn tmpfs_size_is_enforced_and_checked_before_the_build() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let df = |count: u32| {
        format!("FROM busybox:local\nRUN --mount=type=tmpfs,target=/t,size=64k dd if=/dev/zero of=/t/big bs=1024 count={count} && echo fits > /fits\n")
    };
    write_files(ctx.path(), &[("Dockerfile", &df(32))]);
    let r = build(root.path(), ctx.path(), &["-t", "size:1"]);
    assert!(r.ok(), "32 KiB fit in 64k: {}", r.stderr);
    write_files(ctx.path(), &[("Dockerfile", &df(128))]);
    let r = build(root.path(), ctx.path(), &["-t", "size:2"]);
    assert!(!r.ok(), "128 KiB must not fit in size=64k");
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);

    for (size, want) in [("lots", "size=lots: invalid size"), ("64x", "size=64x: invalid size")] {
        write_files(
            ctx.path(),
            &[("Dockerfile", &format!("FROM busybox:local\nRUN touch /ran\nRUN --mount=type=tmpfs,target=/t,size={size} true\n"))],
        );
        let r = build(root.path(), ctx.path(), &["-t", "size:3"]);
        assert!(!r.ok());
        assert!(r.stderr.contains(&format!("Dockerfile:3:1: RUN --mount=type=tmpfs,{want}")), "{}", r.stderr);
        assert!(!r.stderr.contains("RUN touch /ran"), "nothing ran before the check:\n{}", r.stderr);
    }
}

/// A secret file at the default and at a custom target, with its mode and owner, read-only;
/// its value is in no layer, no saved archive, no file of the store, and not in history,
/// inspect, the metadata file or the build output.
#[test]
fn secret_files_are_mounted_and_never_stored() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let secret_dir = tempfile::tempdir().unwrap();
    let src = secret_dir.path().join("token");
    std::fs::write(&src, VALUE).unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            r#"FROM busybox:local
RUN --mount=type=secret,id=tok stat -c '%a %u %g' /run/secrets/tok > /default-stat && sha256sum /run/secrets/tok | cut -c1-64 > /default-sum && if (echo x > /run/secrets/tok) 2>/dev/null; then echo writable; else echo read-only; fi > /default-ro
RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=1000,gid=1001 stat -c '%a %u %g' /etc/app/key > /custom-stat && sha256sum /etc/app/key | cut -c1-64 > /custom-sum
USER nobody
RUN --mount=type=secret,id=tok,target=/home/key cat /home/key > /dev/null 2>&1 && echo readable > /tmp/as-nobody || echo denied > /tmp/as-nobody
"#,
        )],
    );
    let meta = ctx.path().join("meta.json");
    let secret_flag = format!("id=tok,src={}", src.display());
    let r = build(
        root.path(),
        ctx.path(),
        &["-t", "sec:1", "--secret", &secret_flag, "--explain", "--metadata-file", meta.to_str().unwrap()],
    );
    assert!(r.ok(), "{}", r.stderr);
    let fs = unpack_image(root.path(), "sec:1");
    let p = fs.path();
    let sum = sha256_hex(VALUE.as_bytes());
    assert_eq!(read(p, "default-stat"), "400 0 0\n");
    assert_eq!(read(p, "default-sum").trim(), sum, "the file holds the secret");
    assert_eq!(read(p, "default-ro"), "read-only\n");
    assert_eq!(read(p, "custom-stat"), "440 1000 1001\n");
    assert_eq!(read(p, "custom-sum").trim(), sum);
    assert_eq!(read(p, "tmp/as-nobody"), "denied\n", "mode 0400 owned by root");
    for gone in ["run", "etc/app", "home"] {
        assert!(!p.join(gone).exists(), "/{gone} (a secret's mount point) reached the layer");
    }

    // Nowhere in the store, the saved image, or what rbuild prints.
    assert_eq!(tree_contains(root.path(), VALUE.as_bytes()), Vec::<String>::new());
    let saved = ctx.path().join("sec.tar");
    cli(root.path(), &["save", "-o", saved.to_str().unwrap(), "sec:1"]);
    assert!(!archive_contains(&saved, VALUE.as_bytes()), "the secret is in the saved image");
    let shown = [
        cli(root.path(), &["history", "--no-trunc", "sec:1"]),
        cli(root.path(), &["inspect", "sec:1"]),
        std::fs::read_to_string(&meta).unwrap(),
        r.stderr.clone(),
        r.stdout.clone(),
    ];
    for s in &shown {
        assert!(!s.contains(VALUE), "the secret is shown:\n{s}");
    }

    // The checks above can fail: a RUN that copies the secret puts it in the archive.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN --mount=type=secret,id=tok cp /run/secrets/tok /leaked\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "leak:1", "--secret", &secret_flag]);
    assert!(r.ok(), "{}", r.stderr);
    let leaked = ctx.path().join("leak.tar");
    cli(root.path(), &["save", "-o", leaked.to_str().unwrap(), "leak:1"]);
    assert!(archive_contains(&leaked, VALUE.as_bytes()), "archive_contains misses a copied secret");
}

/// `env=VAR`: the secret is the variable VAR of that RUN only (no file unless a target is
/// given), and never in the image config. `--secret id=ID,env=HOSTVAR` and `--secret id=ID`
/// (the variable ID) read the host environment.
#[test]
fn secret_as_environment_variable() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            r#"FROM busybox:local
RUN --mount=type=secret,id=tok,env=TOKEN test ! -e /run/secrets/tok && printf %s "$TOKEN" | sha256sum | cut -c1-64 > /env-sum
RUN --mount=type=secret,id=tok,env=TOKEN,target=/both printf %s "$TOKEN" | cmp -s - /both && echo same > /both-same
RUN echo "[$TOKEN]" > /later
RUN --mount=type=secret,id=MY_TOKEN,env=T2 printf %s "$T2" | sha256sum | cut -c1-64 > /short-sum
"#,
        )],
    );
    let r = build_env(
        root.path(),
        ctx.path(),
        &["-t", "envsec:1", "--secret", "id=tok,env=RBUILD_TEST_HOST_TOKEN", "--secret", "id=MY_TOKEN"],
        &[("RBUILD_TEST_HOST_TOKEN", VALUE), ("MY_TOKEN", "short-form-value")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let fs = unpack_image(root.path(), "envsec:1");
    let p = fs.path();
    assert_eq!(read(p, "env-sum").trim(), sha256_hex(VALUE.as_bytes()));
    assert_eq!(read(p, "both-same"), "same\n");
    assert_eq!(read(p, "later"), "[]\n", "the variable is set for its RUN only");
    assert_eq!(read(p, "short-sum").trim(), sha256_hex(b"short-form-value"));
    assert!(!p.join("both").exists());
    let inspect = cli(root.path(), &["inspect", "envsec:1"]);
    assert!(!inspect.contains(VALUE) && !inspect.contains("TOKEN="), "{inspect}");
    assert_eq!(tree_contains(root.path(), VALUE.as_bytes()), Vec::<String>::new());
}

/// A required secret that no `--secret` gives fails before any step runs, naming the id
/// and the flag; an optional one is simply not mounted.
#[test]
fn missing_secrets_required_and_optional() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN touch /ran\nRUN --mount=type=secret,id=npmrc,required=true true\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "req:1"]);
    assert!(!r.ok());
    assert_ne!(r.out.status.code(), Some(0));
    assert!(
        r.stderr.contains("Dockerfile:3:1: secret \"npmrc\" is required")
            && r.stderr.contains("--secret id=npmrc,src=FILE"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("RUN touch /ran"), "nothing ran before the check:\n{}", r.stderr);

    // A source that cannot be read fails at once too, naming the id and the path.
    let r = build(root.path(), ctx.path(), &["-t", "req:1", "--secret", "id=npmrc,src=/nonexistent/npmrc"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("--secret id=npmrc: /nonexistent/npmrc"), "{}", r.stderr);
    assert!(!r.stderr.contains("RUN touch /ran"), "{}", r.stderr);

    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope && echo absent > /absent\nRUN --mount=type=secret,id=nope,env=NOPE echo \"[$NOPE]\" > /no-env\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "opt:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let fs = unpack_image(root.path(), "opt:1");
    assert_eq!(read(fs.path(), "absent"), "absent\n");
    assert_eq!(read(fs.path(), "no-env"), "[]\n");
}

/// As BuildKit: a changed secret value keeps the RUN cached; a changed id or target
/// re-runs it. `--explain` says why without showing the value.
#[test]
fn secret_value_is_not_in_the_cache_key_but_id_and_target_are() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let secret_dir = tempfile::tempdir().unwrap();
    let src = secret_dir.path().join("s");
    let flag = |id: &str| format!("id={id},src={}", src.display());
    let df = |mount: &str| format!("FROM busybox:local\nRUN --mount=type=secret,{mount} cat /run/secrets/* | wc -c > /len\n");
    write_files(ctx.path(), &[("Dockerfile", &df("id=a"))]);

    std::fs::write(&src, "first").unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "ck:1", "--secret", &flag("a")]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 1, "{}", r.stderr);

    std::fs::write(&src, VALUE).unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "ck:1", "--secret", &flag("a"), "--explain"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.rebuilt().is_empty(), "a new secret value must not bust the cache:\n{}", r.stderr);
    assert_eq!(read(unpack_image(root.path(), "ck:1").path(), "len").trim(), "5", "the cached layer");

    write_files(ctx.path(), &[("Dockerfile", &df("id=b"))]);
    let r = build(root.path(), ctx.path(), &["-t", "ck:1", "--secret", &flag("b"), "--explain"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 1, "a new id re-runs:\n{}", r.stderr);
    assert!(r.stderr.contains("MISS because"), "{}", r.stderr);
    assert!(!r.stderr.contains(VALUE), "{}", r.stderr);
    assert_eq!(read(unpack_image(root.path(), "ck:1").path(), "len").trim(), VALUE.len().to_string());

    write_files(ctx.path(), &[("Dockerfile", &df("id=b,target=/run/secrets/other"))]);
    let r = build(root.path(), ctx.path(), &["-t", "ck:1", "--secret", &flag("b"), "--explain"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 1, "a new target re-runs:\n{}", r.stderr);
    assert!(!r.stderr.contains(VALUE), "{}", r.stderr);
    assert_eq!(tree_contains(root.path(), VALUE.as_bytes()), Vec::<String>::new());
}

/// Relative mount targets are relative to WORKDIR, as in BuildKit (they were taken from `/`).
#[test]
fn relative_mount_targets_follow_workdir() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let secret = ctx.path().join("secret.txt");
    std::fs::write(&secret, "s3cr3t-rel").unwrap();
    write_files(
        ctx.path(),
        &[
            ("f.txt", "from the context\n"),
            (".dockerignore", "secret.txt\n"),
            (
                "Dockerfile",
                "FROM busybox:local\nWORKDIR /app\n\
                 RUN --mount=type=bind,source=f.txt,target=ctx.txt --mount=type=secret,id=s,target=sec/s.txt \
                 --mount=type=tmpfs,target=tmp \
                 cat /app/ctx.txt > /out && wc -c < /app/sec/s.txt >> /out && touch /app/tmp/x && grep -q ' /app/tmp ' /proc/mounts && echo ok >> /out\n",
            ),
        ],
    );
    let flag = format!("id=s,src={}", secret.display());
    let r = build(root.path(), ctx.path(), &["-t", "rel:1", "--secret", &flag]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "rel:1");
    assert_eq!(read(f.path(), "out"), "from the context\n10\nok\n");
    assert!(!f.path().join("app/tmp/x").exists());
}

/// QA: the checks before the build resolved relative targets against `/` (so with WORKDIR
/// /work/sub, `target=..` was refused as "/"); they are now resolved against the step's
/// WORKDIR when it runs.
#[test]
fn relative_targets_are_checked_against_the_real_workdir() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nWORKDIR /work/sub\nRUN --mount=type=tmpfs,target=../t grep -q ' /work/t ' /proc/mounts && touch /work/t/x\n",
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "relchk:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(!unpack_image(root.path(), "relchk:1").path().join("work/t").exists());
    // `..` from /sub is `/`: refused when the step runs, with its location.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nWORKDIR /sub\nRUN --mount=type=tmpfs,target=.. true\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "relchk:2"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("Dockerfile:3:") && r.stderr.contains("invalid mount target \"/\""), "{}", r.stderr);
}

/// QA: `--build-arg TOKEN=...` next to `--secret id=TOKEN` stores the value through the build
/// arg; say so.
#[test]
fn a_build_arg_named_like_a_secret_is_warned_about() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN --mount=type=secret,id=TOKEN true\n")]);
    let r = build_env(
        root.path(),
        ctx.path(),
        &["-t", "dupsec:1", "--secret", "id=TOKEN,env=RBUILD_T", "--build-arg", "TOKEN=zzz-value"],
        &[("RBUILD_T", "zzz-value")],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stderr.contains("--build-arg TOKEN has the name of a --secret"), "{}", r.stderr);
    assert!(!r.stderr.contains("zzz-value"), "{}", r.stderr);
}

/// The paths in the top layer of image `name` (the layer of its last step).
fn top_layer_paths(root: &Path, name: &str) -> Vec<String> {
    let store = store(root);
    let rec = store.resolve(name).unwrap();
    let top = rec.manifest.layers.last().unwrap();
    let rd = rbuild::snapshot::maybe_decompress(store.open_blob(&top.digest).unwrap()).unwrap();
    let mut tar = tar::Archive::new(rd);
    let mut paths: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string().trim_end_matches('/').to_string())
        .collect();
    paths.sort();
    paths
}

/// The two rootfs modes of a step: overlay, and copies (`RBUILD_NO_OVERLAY=1`).
const MODES: [&[(&str, &str)]; 2] = [&[], &[("RBUILD_NO_OVERLAY", "1")]];

/// QA: mount targets reached through a symlink of the image (`/var/run -> /realrun`) had
/// their mount points created in the merged root, so the RUN's layer got `realrun/secrets/`,
/// an empty `realrun/secrets/tok` and `realrun/tmp/`. They come from the stub layer now (and
/// are removed again in copy mode): the layer holds only what the command wrote.
#[test]
fn mount_points_through_image_symlinks_leave_no_trace() {
    let secret_dir = tempfile::tempdir().unwrap();
    let src = secret_dir.path().join("tok");
    std::fs::write(&src, VALUE).unwrap();
    let flag = format!("id=tok,src={}", src.display());
    for env in MODES {
        let root = store_with_busybox();
        let ctx = tempfile::tempdir().unwrap();
        write_files(
            ctx.path(),
            &[(
                "Dockerfile",
                "FROM busybox:local\n\
                 RUN mkdir /realrun && ln -s /realrun /var/run && ln -s /opt/creds /esc\n\
                 RUN --mount=type=secret,id=tok,target=/var/run/secrets/tok --mount=type=tmpfs,target=/var/run/tmp \
                 --mount=type=secret,id=tok,target=/esc \
                 sha256sum /var/run/secrets/tok /esc | cut -c1-64 > /sums && grep -q ' /realrun/tmp tmpfs ' /proc/mounts \
                 && touch /var/run/tmp/x\n",
            )],
        );
        let r = build_env(root.path(), ctx.path(), &["-t", "symt:1", "--secret", &flag], env);
        assert!(r.ok(), "{env:?}: {}", r.stderr);
        assert_eq!(top_layer_paths(root.path(), "symt:1"), ["sums"], "{env:?}");
        let fs = unpack_image(root.path(), "symt:1");
        let sum = sha256_hex(VALUE.as_bytes());
        assert_eq!(read(fs.path(), "sums"), format!("{sum}\n{sum}\n"), "{env:?}: the secret through the symlinks");
        assert_eq!(std::fs::read_link(fs.path().join("var/run")).unwrap(), Path::new("/realrun"));
        assert_eq!(std::fs::read_dir(fs.path().join("realrun")).unwrap().count(), 0, "{env:?}");
        assert!(!fs.path().join("opt").exists(), "{env:?}");
    }
}

/// QA: mounts are mounted parents first, whatever their order in the RUN (as BuildKit):
/// a secret at /x/tok listed before a tmpfs at /x was hidden by it (the RUN ran without
/// the secret), the other order failed. A mount point missing in a read-only mount cannot
/// be created: the error names both mounts.
#[test]
fn nested_mounts_are_mounted_parents_first() {
    let secret_dir = tempfile::tempdir().unwrap();
    let src = secret_dir.path().join("tok");
    std::fs::write(&src, VALUE).unwrap();
    let flag = format!("id=tok,src={}", src.display());
    let sum = sha256_hex(VALUE.as_bytes());
    for env in MODES {
        let root = store_with_busybox();
        let ctx = tempfile::tempdir().unwrap();
        write_files(
            ctx.path(),
            &[(
                "Dockerfile",
                "FROM busybox:local\n\
                 RUN --mount=type=secret,id=tok,target=/x/tok,required=true --mount=type=tmpfs,target=/x \
                 sha256sum /x/tok | cut -c1-64 > /a && touch /x/written\n\
                 RUN --mount=type=tmpfs,target=/x --mount=type=secret,id=tok,target=/x/tok sha256sum /x/tok | cut -c1-64 > /b\n",
            )],
        );
        let r = build_env(root.path(), ctx.path(), &["-t", "nest:1", "--secret", &flag], env);
        assert!(r.ok(), "{env:?}: {}", r.stderr);
        assert_eq!(top_layer_paths(root.path(), "nest:1"), ["b"], "{env:?}");
        let fs = unpack_image(root.path(), "nest:1");
        assert_eq!(read(fs.path(), "a").trim(), sum, "{env:?}: secret listed first");
        assert_eq!(read(fs.path(), "b").trim(), sum, "{env:?}: tmpfs listed first");
        assert!(!fs.path().join("x").exists(), "{env:?}");

        // The context bind is read-only and has no `tok`.
        write_files(
            ctx.path(),
            &[("Dockerfile", "FROM busybox:local\nRUN --mount=type=secret,id=tok,target=/ctx/tok --mount=type=bind,target=/ctx true\n")],
        );
        let r = build_env(root.path(), ctx.path(), &["-t", "nest:2", "--secret", &flag], env);
        assert!(!r.ok(), "{env:?}");
        assert!(
            r.stderr.contains("mount target /ctx/tok: its mount point is missing in the read-only mount on /ctx"),
            "{env:?}: {}",
            r.stderr
        );
    }
}

/// `type=bind` from the context shows what `.dockerignore` leaves (it showed ignored files,
/// which were not even in the step's key); `rw` lets the RUN write to a private copy whose
/// writes vanish: not in the context, not in the layer.
#[test]
fn bind_mounts_respect_dockerignore_and_rw_writes_are_discarded() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            (".dockerignore", ".env\nlogs\n"),
            (".env", "TOKEN=zzz\n"),
            ("logs/x.log", "x\n"),
            ("src/main.c", "int main;\n"),
            (
                "Dockerfile",
                "FROM busybox:local\n\
                 RUN --mount=type=bind,target=/ctx ls -A /ctx > /listing\n\
                 RUN --mount=type=bind,target=/w,rw echo changed > /w/src/main.c && echo new > /w/new && cat /w/src/main.c > /seen && ls -A /w > /wlisting\n\
                 RUN --mount=type=bind,source=src/main.c,target=/one.c cat /one.c > /one\n",
            ),
        ],
    );
    let r = build(root.path(), ctx.path(), &["-t", "bind:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "bind:1");
    let read = |p: &str| std::fs::read_to_string(f.path().join(p)).unwrap();
    assert_eq!(read("listing"), ".dockerignore\nDockerfile\nsrc\n", "ignored files are not mounted");
    assert_eq!(read("seen"), "changed\n", "the RUN sees its own writes");
    assert_eq!(read("wlisting"), ".dockerignore\nDockerfile\nnew\nsrc\n");
    assert_eq!(read("one"), "int main;\n");
    assert_eq!(std::fs::read_to_string(ctx.path().join("src/main.c")).unwrap(), "int main;\n", "the context is untouched");
    assert!(!ctx.path().join("new").exists());
    assert!(!f.path().join("w").exists() || std::fs::read_dir(f.path().join("w")).unwrap().next().is_none(), "nothing of the mount in the image");
    // The read-only mount is read-only.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN --mount=type=bind,target=/ctx touch /ctx/x\n")]);
    let r = build(root.path(), ctx.path(), &["-t", "bind:2"]);
    assert!(!r.ok(), "{}", r.stderr);
    assert!(!ctx.path().join("x").exists());
}

/// `type=cache` with `ro`, `source=` (a path inside the cache) and `from=`/`source=` (the
/// cache starts as a copy of a stage's directory, and is its own cache).
#[test]
fn cache_mount_ro_source_and_from() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS seed\n\
             RUN mkdir -p /deps && echo pinned > /deps/lock\n\
             FROM busybox:local\n\
             RUN --mount=type=cache,id=c1,target=/c echo one > /c/f\n\
             RUN --mount=type=cache,id=c1,target=/c,ro cat /c/f > /ro-saw && (touch /c/g 2>/dev/null && echo wrote || echo refused) > /ro-write\n\
             RUN --mount=type=cache,id=c1,target=/s,source=sub echo in-sub > /s/x\n\
             RUN --mount=type=cache,id=c1,target=/c ls /c/sub > /sub-listing\n\
             RUN --mount=type=cache,id=c2,from=seed,source=/deps,target=/d cat /d/lock > /seeded && echo more > /d/extra\n\
             RUN --mount=type=cache,id=c2,from=seed,source=/deps,target=/d ls /d > /seeded-listing\n",
        )],
    );
    let r = build(root.path(), ctx.path(), &["-t", "cache:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "cache:1");
    let read = |p: &str| std::fs::read_to_string(f.path().join(p)).unwrap();
    assert_eq!(read("ro-saw"), "one\n");
    assert_eq!(read("ro-write"), "refused\n");
    assert_eq!(read("sub-listing"), "x\n");
    assert_eq!(read("seeded"), "pinned\n");
    assert_eq!(read("seeded-listing"), "extra\nlock\n", "the seeded cache persists between RUNs");
    assert!(!f.path().join("d").join("lock").exists(), "the cache is not in the layer");
}

/// `RUN --mount=type=ssh` with `--ssh`: a socket (BuildKit's default target, mode 0600)
/// relaying to the agent, `SSH_AUTH_SOCK` pointing at it, nothing of it in the layer; an
/// optional mount without an agent is skipped, a required one fails before anything runs,
/// and a key file given to `--ssh` is refused with what to do.
#[test]
fn ssh_mounts_relay_an_agent() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = agent_dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\n\
             RUN --mount=type=ssh echo \"$SSH_AUTH_SOCK\" > /sock && stat -c '%a %u %F' \"$SSH_AUTH_SOCK\" > /st\n\
             RUN --mount=type=ssh,id=work,target=/tmp/a.sock,mode=0660,uid=65534,required stat -c '%a %u %F' /tmp/a.sock > /st2\n\
             RUN --mount=type=ssh,id=absent echo \"[$SSH_AUTH_SOCK]\" > /absent && (test -e /run/buildkit/ssh_agent.0 && echo there || echo none) >> /absent\n",
        )],
    );
    let r = build_env(
        root.path(),
        ctx.path(),
        &["-t", "ssh:1", "--ssh", "default", "--ssh", &format!("work={}", agent.display())],
        &[("SSH_AUTH_SOCK", agent.to_str().unwrap())],
    );
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "ssh:1");
    let read = |p: &str| std::fs::read_to_string(f.path().join(p)).unwrap();
    assert_eq!(read("sock"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read("st"), "600 0 socket\n");
    assert_eq!(read("st2"), "660 65534 socket\n");
    assert_eq!(read("absent"), "[]\nnone\n", "an optional mount without an agent is skipped");
    assert!(!f.path().join("run/buildkit").exists(), "no trace of the mount point in the image");
    assert!(!f.path().join("tmp/a.sock").exists());

    // End to end: a static client (busybox has no unix-socket client) talks through the
    // relay to an agent here, as an unprivileged user the socket is given to.
    let client_c = agent_dir.path().join("uc.c");
    std::fs::write(
        &client_c,
        "#include <sys/socket.h>\n#include <sys/un.h>\n#include <unistd.h>\n#include <string.h>\n#include <stdlib.h>\n\
         int main(){struct sockaddr_un a;memset(&a,0,sizeof a);a.sun_family=AF_UNIX;strcpy(a.sun_path,getenv(\"SSH_AUTH_SOCK\"));\
         int s=socket(AF_UNIX,SOCK_STREAM,0);if(connect(s,(void*)&a,sizeof a))return 2;write(s,\"hello\",5);\
         char b[64];int n=read(s,b,64);if(n<=0)return 3;write(1,b,n);return 0;}\n",
    )
    .unwrap();
    let out = std::process::Command::new("cc").args(["-static", "-O2", "-o"]).arg(ctx.path().join("uc")).arg(&client_c).output().unwrap();
    assert!(out.status.success(), "cc -static: {}", String::from_utf8_lossy(&out.stderr));
    let listener = std::os::unix::net::UnixListener::bind(agent_dir.path().join("live.sock")).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        c.write_all(&[&b"agent saw "[..], &b[..]].concat()).unwrap();
    });
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nCOPY uc /uc\nUSER nobody\nRUN --mount=type=ssh,uid=65534 /uc > /tmp/got\n")],
    );
    let live = agent_dir.path().join("live.sock");
    let r = build(root.path(), ctx.path(), &["-t", "ssh:4", "--ssh", &format!("default={}", live.display())]);
    assert!(r.ok(), "{}", r.stderr);
    server.join().unwrap();
    let f = unpack_image(root.path(), "ssh:4");
    assert_eq!(std::fs::read_to_string(f.path().join("tmp/got")).unwrap(), "agent saw hello");

    // Required without an agent: fails before anything runs, naming the flag.
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN touch /ran\nRUN --mount=type=ssh,required true\n")]);
    let r = build_env(root.path(), ctx.path(), &["-t", "ssh:2"], &[("SSH_AUTH_SOCK", "")]);
    assert!(!r.ok());
    assert!(r.stderr.contains("Dockerfile:3:1:") && r.stderr.contains("--ssh default"), "{}", r.stderr);
    assert!(!r.stderr.contains("RUN touch /ran"), "{}", r.stderr);
    // A key file is not an agent.
    let key = agent_dir.path().join("id_ed25519");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let r = build(root.path(), ctx.path(), &["-t", "ssh:3", "--ssh", &format!("default={}", key.display())]);
    assert!(!r.ok() && r.stderr.contains("a key file, not an agent socket"), "{}", r.stderr);
    assert!(!r.stderr.contains("BEGIN OPENSSH"), "{}", r.stderr);
}
