//! `--explain` (why a step missed the cache) and the `--timings` / `--metadata-file` reports.

mod build_util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use build_util::*;

const DOCKERFILE: &str = r#"FROM busybox:local
ARG VERSION=1
WORKDIR /app
COPY requirements.txt requirements.txt
RUN echo "install $VERSION" && cat requirements.txt > installed.txt
COPY . .
RUN echo done > /done
CMD ["sh"]
"#;

fn project() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("requirements.txt", "flask\n"),
            ("app.py", "print(1)\n"),
            ("lib/util.py", "X = 1\n"),
        ],
    );
    ctx
}

fn explain(root: &Path, ctx: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["--explain", "-t", "app:1"];
    args.extend_from_slice(extra);
    let r = build(root, ctx, &args);
    assert!(r.ok(), "{}", r.stderr);
    r
}

fn reasons<'a>(r: &'a Run, needle: &str) -> &'a [String] {
    &r.step(needle).reasons
}

#[test]
fn first_build_says_no_earlier_build_and_a_noop_rebuild_says_nothing() {
    let root = store_with_busybox();
    let ctx = project();
    let r = explain(root.path(), ctx.path(), &[]);
    for name in [
        "WORKDIR /app",
        "COPY requirements.txt",
        "RUN echo \"install",
        "COPY . .",
        "RUN echo done",
    ] {
        assert_eq!(
            reasons(&r, name),
            ["no earlier build of this step in this store"],
            "{}",
            r.stderr
        );
    }
    let r = explain(root.path(), ctx.path(), &[]);
    assert!(!r.stderr.contains("MISS"), "{}", r.stderr);
    assert!(r.rebuilt().is_empty(), "{}", r.stderr);
}

#[test]
fn file_edits_additions_removals_and_chmod_are_named() {
    let root = store_with_busybox();
    let ctx = project();
    explain(root.path(), ctx.path(), &[]);

    std::fs::write(ctx.path().join("app.py"), "print(2)\n").unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert_eq!(
        reasons(&r, "COPY . ."),
        ["file app.py changed (content)"],
        "{}",
        r.stderr
    );
    assert!(r.step("RUN echo \"install").cached);
    let done = reasons(&r, "RUN echo done");
    assert_eq!(done.len(), 1, "{}", r.stderr);
    let copy_id = r.step("COPY . .").id;
    assert!(
        done[0].starts_with(&format!("parent step #{copy_id} [5/6] COPY . . was rebuilt")),
        "{}",
        r.stderr
    );

    std::fs::write(ctx.path().join("lib/new.py"), "Y = 2\n").unwrap();
    std::fs::remove_file(ctx.path().join("lib/util.py")).unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert_eq!(
        reasons(&r, "COPY . ."),
        ["file lib/new.py added", "file lib/util.py removed"],
        "{}",
        r.stderr
    );

    std::fs::set_permissions(ctx.path().join("app.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert_eq!(
        reasons(&r, "COPY . ."),
        ["file app.py changed (mode 644 → 755)"],
        "{}",
        r.stderr
    );

    // Touching a file changes nothing: no miss, nothing to explain.
    let f = std::fs::File::options()
        .append(true)
        .open(ctx.path().join("app.py"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert!(!r.stderr.contains("MISS"), "{}", r.stderr);
}

#[test]
fn build_arg_and_command_changes_are_named() {
    let root = store_with_busybox();
    let ctx = project();
    explain(root.path(), ctx.path(), &[]);

    let r = explain(root.path(), ctx.path(), &["--build-arg", "VERSION=2"]);
    let run = reasons(&r, "RUN echo \"install");
    assert_eq!(run, ["build arg VERSION changed: \"1\" → \"2\""], "{}", r.stderr);
    // COPY keys do not see ARGs: only the parent changed.
    let copy = reasons(&r, "COPY . .");
    assert_eq!(copy.len(), 1, "{}", r.stderr);
    assert!(copy[0].starts_with("parent step #"), "{}", r.stderr);
    assert!(copy[0].ends_with("was rebuilt"), "{}", r.stderr);

    let df = DOCKERFILE.replace("echo done > /done", "echo finished > /done");
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let r = explain(root.path(), ctx.path(), &["--build-arg", "VERSION=2"]);
    // The Dockerfile is part of `COPY . .` too: that step and the last RUN ran.
    assert_eq!(
        reasons(&r, "COPY . ."),
        ["file Dockerfile changed (content)"],
        "{}",
        r.stderr
    );
    assert_eq!(
        reasons(&r, "RUN echo finished")[0],
        "command changed: \"echo done > /done\" → \"echo finished > /done\"",
        "{}",
        r.stderr
    );
    assert_eq!(r.rebuilt().len(), 2, "{}", r.stderr);
}

#[test]
fn explain_comes_from_the_environment_and_no_cache_says_so() {
    let root = store_with_busybox();
    let ctx = project();
    let out = rbuild()
        .arg("--root")
        .arg(root.path())
        .args(["build", "--progress=plain", "-t", "app:1"])
        .arg(ctx.path())
        .env("RBUILD_EXPLAIN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MISS because: no earlier build of this step in this store"),
        "{stderr}"
    );

    let r = explain(root.path(), ctx.path(), &["--no-cache"]);
    assert_eq!(reasons(&r, "COPY . ."), ["--no-cache was given"], "{}", r.stderr);

    // Without --explain, nothing is said (but traces are still recorded).
    let r = build(root.path(), ctx.path(), &["--no-cache"]);
    assert!(r.ok() && !r.stderr.contains("MISS"), "{}", r.stderr);
}

#[test]
fn metadata_json_has_every_step_with_sane_numbers() {
    let root = store_with_busybox();
    let ctx = project();
    let json = ctx.path().join("meta.json");
    let html = ctx.path().join("report.html");
    write_files(ctx.path(), &[(".dockerignore", "meta.json\nreport.html\n")]);
    // Older than the stat cache's racy window, so the rebuild below need not read them.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let timings = format!("--timings={}", html.display());
    let r = build(
        root.path(),
        ctx.path(),
        &["-t", "app:1", "--metadata-file", json.to_str().unwrap(), &timings],
    );
    assert!(r.ok(), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let image_id = r.image_id();
    assert_eq!(v["containerimage.config.digest"], image_id.as_str());
    assert_eq!(v["image_id"], image_id.as_str());
    let manifest = v["containerimage.digest"].as_str().unwrap();
    assert!(manifest.starts_with("sha256:") && manifest.len() == 71);
    assert_eq!(v["manifest_digest"], manifest);
    let total = v["duration_ms"].as_u64().unwrap();
    let steps = v["steps"].as_array().unwrap();
    // Every step of the progress output is in the report, with its name.
    assert_eq!(steps.len(), r.steps.len(), "{}", r.stderr);
    for p in &r.steps {
        let s = steps
            .iter()
            .find(|s| s["id"] == p.id)
            .unwrap_or_else(|| panic!("step #{} missing", p.id));
        assert_eq!(s["name"], p.name.as_str());
        assert_eq!(s["cached"], p.cached);
        let start = s["start_ms"].as_u64().unwrap();
        let dur = s["duration_ms"].as_u64().unwrap();
        assert!(start + dur <= total + 5, "step {s} ends after the build ({total} ms)");
    }
    assert_eq!(v["steps_total"], 6);
    assert_eq!(v["steps_cached"], 1);
    let by_name = |n: &str| steps.iter().find(|s| s["name"].as_str().unwrap().contains(n)).unwrap();
    let copy = by_name("COPY . .");
    assert_eq!(copy["stage"], "stage-0");
    assert_eq!(copy["kind"], "step");
    // Dockerfile, .dockerignore, requirements.txt, app.py, lib/util.py: all read once.
    let expected: u64 = [
        "Dockerfile",
        ".dockerignore",
        "requirements.txt",
        "app.py",
        "lib/util.py",
    ]
    .iter()
    .map(|f| std::fs::metadata(ctx.path().join(f)).unwrap().len())
    .sum();
    assert_eq!(copy["bytes_hashed"], expected, "{copy}");
    let size = copy["layer_size"].as_u64().unwrap();
    let usize_ = copy["layer_uncompressed_size"].as_u64().unwrap();
    // Local layers are plain tars (compressed only when they leave the machine).
    assert!(size > 0 && usize_ == size && usize_ % 512 == 0, "{copy}");
    assert_eq!(by_name("FROM busybox:local")["kind"], "from");
    assert_eq!(by_name("[internal] load build context")["kind"], "internal");
    // The layer sizes are those of the manifest.
    let store = build_util::store(root.path());
    let rec = store.resolve("app:1").unwrap();
    let with_layers: Vec<u64> = steps.iter().filter_map(|s| s["layer_size"].as_u64()).collect();
    let manifest_sizes: Vec<u64> = rec.manifest.layers.iter().map(|l| l.size).collect();
    assert!(
        manifest_sizes.ends_with(&with_layers),
        "{with_layers:?} vs {manifest_sizes:?}"
    );

    // A cached rebuild: every step cached, the sizes still known (from the cache records).
    let r = build(
        root.path(),
        ctx.path(),
        &["-t", "app:1", "--metadata-file", json.to_str().unwrap()],
    );
    assert!(r.ok(), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["steps_cached"], 6);
    let copy = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "[5/6] COPY . .")
        .unwrap();
    assert_eq!(copy["cached"], true);
    assert_eq!(copy["layer_uncompressed_size"], usize_);
    assert_eq!(copy["bytes_hashed"], 0, "the stat cache knew every file");
}

#[test]
fn html_report_names_every_step_escaped() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS base\nRUN echo '<script>alert(1)</script>' > /x\nFROM base\nWORKDIR /w & co\n",
        )],
    );
    let cwd = tempfile::tempdir().unwrap();
    let out = rbuild()
        .current_dir(cwd.path())
        .arg("--root")
        .arg(root.path())
        .args(["build", "--progress=plain", "--timings"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The default file name, in the current directory (as cargo's --timings).
    let html = std::fs::read_to_string(cwd.path().join("rbuild-timings.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script"), "no script, and the RUN text is escaped");
    assert!(
        html.contains("RUN echo &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; &gt; /x"),
        "{html}"
    );
    assert!(html.contains("WORKDIR /w &amp; co"));
    for p in parse_plain_steps(&stderr) {
        let escaped = rbuild::build::report::esc(&p);
        assert!(html.contains(&escaped), "{p} not in the report");
    }
    assert!(
        html.contains("stage base") && html.contains("stage stage-1"),
        "stages are grouped"
    );
    for external in ["<link", "src=", "@import", "url("] {
        assert!(!html.contains(external), "no external assets: {external}");
    }
}

fn parse_plain_steps(stderr: &str) -> Vec<String> {
    rbuild::progress::parse_plain(stderr)
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[test]
fn a_new_base_image_is_named_with_its_digests() {
    let root = store_with_busybox();
    let ctx = project();
    explain(root.path(), ctx.path(), &[]);
    // Replace busybox:local with another image under the same tag.
    let base = tempfile::tempdir().unwrap();
    write_files(
        base.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN touch /marker\n")],
    );
    let r = build(root.path(), base.path(), &["-t", "busybox:local"]);
    assert!(r.ok(), "{}", r.stderr);
    let r = explain(root.path(), ctx.path(), &[]);
    let w = reasons(&r, "WORKDIR /app");
    assert_eq!(w.len(), 1, "{}", r.stderr);
    assert!(
        w[0].starts_with("base image busybox:local changed: sha256:"),
        "{}",
        r.stderr
    );
    let d: Vec<&str> = w[0].split(' ').filter(|p| p.starts_with("sha256:")).collect();
    assert!(d.len() == 2 && d[0] != d[1], "{}", w[0]);
}

/// Regression (QA): with only SOURCE_DATE_EPOCH changed, the first step said "the parent
/// is now the base image busybox:local (was [1/6] FROM busybox:local)".
#[test]
fn source_date_epoch_change_is_named() {
    let root = store_with_busybox();
    let ctx = project();
    explain(root.path(), ctx.path(), &[]);
    let r = build_env(
        root.path(),
        ctx.path(),
        &["--explain", "-t", "app:1"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(
        reasons(&r, "WORKDIR /app"),
        ["SOURCE_DATE_EPOCH changed: unset → 1700000000"],
        "{}",
        r.stderr
    );
    let workdir = r.step("WORKDIR /app").id;
    let copy = reasons(&r, "COPY requirements.txt");
    assert_eq!(copy.len(), 1, "{}", r.stderr);
    assert!(
        copy[0].starts_with(&format!("parent step #{workdir} ")) && copy[0].ends_with("was rebuilt"),
        "{}",
        r.stderr
    );
    // As a build arg too (it wins over the environment, as in BuildKit).
    let r = explain(root.path(), ctx.path(), &["--build-arg", "SOURCE_DATE_EPOCH=1600000000"]);
    assert_eq!(
        reasons(&r, "WORKDIR /app"),
        ["SOURCE_DATE_EPOCH changed: 1700000000 → 1600000000"],
        "{}",
        r.stderr
    );
    // Unset again: the first build's layers are still cached.
    let r = explain(root.path(), ctx.path(), &[]);
    assert!(r.rebuilt().is_empty(), "{}", r.stderr);
}

/// Regression (QA): after a step was inserted in the middle of a stage, every later step
/// said "no earlier build of this step in this store".
#[test]
fn steps_after_an_insertion_are_matched_to_their_earlier_build() {
    let root = store_with_busybox();
    let ctx = project();
    explain(root.path(), ctx.path(), &[]);
    let df = DOCKERFILE.replace("WORKDIR /app\n", "WORKDIR /app\nRUN echo inserted > /ins\n");
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert_eq!(
        reasons(&r, "RUN echo inserted"),
        ["no earlier build of this step in this store"],
        "{}",
        r.stderr
    );
    let inserted = r.step("RUN echo inserted").id;
    assert_eq!(
        reasons(&r, "COPY requirements.txt"),
        [format!("parent step #{inserted} [3/7] RUN echo inserted > /ins was rebuilt")],
        "{}",
        r.stderr
    );
    // `COPY . .` also sees the edited Dockerfile: its own change, then its parent.
    assert_eq!(
        reasons(&r, "COPY . .")[0],
        "file Dockerfile changed (content)",
        "{}",
        r.stderr
    );
    for name in ["RUN echo \"install", "COPY . .", "RUN echo done"] {
        let why = reasons(&r, name);
        assert!(why.last().unwrap().starts_with("parent step #"), "{name}: {}", r.stderr);
    }

    // Editing a step in place is still compared with what was there.
    let df = DOCKERFILE
        .replace("WORKDIR /app\n", "WORKDIR /app\nRUN echo inserted > /ins\n")
        .replace("echo done > /done", "echo finished > /done");
    std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert_eq!(
        reasons(&r, "RUN echo finished")[0],
        "command changed: \"echo done > /done\" → \"echo finished > /done\"",
        "{}",
        r.stderr
    );
}

/// Regression (QA): `--explain` printed secret-looking build-arg values, and they landed in
/// the `--metadata-file` JSON, the `--timings` HTML and world-readable files of the store.
#[test]
fn secret_looking_values_are_hidden_and_records_are_private() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local\nARG NPM_TOKEN\nARG DB_PASSWORD\nARG VERSION\nRUN echo building\n",
        )],
    );
    let args = |token: &str, pw: &str, v: &str| {
        vec![
            format!("NPM_TOKEN={token}"),
            format!("DB_PASSWORD={pw}"),
            format!("VERSION={v}"),
        ]
    };
    let with = |a: &[String], extra: &[&str]| -> Run {
        let mut v: Vec<&str> = vec!["--explain", "-t", "s"];
        for kv in a {
            v.extend(["--build-arg", kv.as_str()]);
        }
        v.extend_from_slice(extra);
        let r = build(root.path(), ctx.path(), &v);
        assert!(r.ok(), "{}", r.stderr);
        r
    };
    with(&args("npm_AAAAsecret1", "hunter2", "1"), &[]);
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("m.json");
    let timings = format!("--timings={}", out.path().join("t.html").display());
    let r = with(
        &args("npm_BBBBsecret2", "hunter3", "2"),
        &["--metadata-file", json.to_str().unwrap(), &timings],
    );
    let hidden = "(value hidden: it looks like a secret; pass secrets with --secret)";
    assert_eq!(
        reasons(&r, "RUN echo building"),
        [
            format!("build arg DB_PASSWORD changed {hidden}"),
            format!("build arg NPM_TOKEN changed {hidden}"),
            "build arg VERSION changed: \"1\" → \"2\"".to_string(),
        ],
        "{}",
        r.stderr
    );
    let html = std::fs::read_to_string(out.path().join("t.html")).unwrap();
    let meta = std::fs::read_to_string(&json).unwrap();
    for secret in ["npm_AAAAsecret1", "npm_BBBBsecret2", "hunter2", "hunter3"] {
        assert!(!r.stderr.contains(secret), "{secret} in the output");
        assert!(!meta.contains(secret), "{secret} in the metadata file");
        assert!(!html.contains(secret), "{secret} in the timings report");
    }
    assert!(meta.contains("DB_PASSWORD changed (value hidden"), "{meta}");
    // The records keep the values (to compare them), so only their owner may read them.
    let dir = root.path().join("explain");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let m = e.unwrap().metadata().unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        n += 1;
    }
    assert!(n > 0);
}

/// Regression (QA): `RBUILD_EXPLAIN=` (empty) made every build exit 2 with "invalid value ''
/// for '--explain'".
#[test]
fn rbuild_explain_accepts_empty_and_common_spellings() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nRUN echo $RANDOM_X\n")]);
    for (value, on) in [
        ("", false),
        ("0", false),
        ("off", false),
        ("No", false),
        ("FALSE", false),
        ("yes", true),
        ("On", true),
        ("TRUE", true),
        ("1", true),
    ] {
        let r = build_env(root.path(), ctx.path(), &["--no-cache"], &[("RBUILD_EXPLAIN", value)]);
        assert!(r.ok(), "RBUILD_EXPLAIN={value:?}: {}", r.stderr);
        assert_eq!(r.stderr.contains("MISS because"), on, "RBUILD_EXPLAIN={value:?}: {}", r.stderr);
    }
}

/// Regression (QA): a context file name with a newline forged a progress line.
#[test]
fn control_characters_in_file_names_are_escaped() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let evil = "evil\n#9 MISS because: FAKE LINE\u{1b}[2J";
    write_files(ctx.path(), &[("Dockerfile", "FROM busybox:local\nCOPY . /c/\n"), (evil, "1")]);
    explain(root.path(), ctx.path(), &[]);
    std::fs::write(ctx.path().join(evil), "2").unwrap();
    let r = explain(root.path(), ctx.path(), &[]);
    assert!(!r.stderr.lines().any(|l| l.starts_with("#9 MISS")), "{}", r.stderr);
    assert!(!r.stderr.contains('\u{1b}'), "{}", r.stderr);
    assert_eq!(
        reasons(&r, "COPY . /c/"),
        ["file evil\\n#9 MISS because: FAKE LINE\\u{1b}[2J changed (content)"],
        "{}",
        r.stderr
    );
}

/// `prune --all` drops `--explain`'s records with the build cache (nothing cleaned them).
#[test]
fn prune_all_forgets_explain_history() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "1\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /f\n")]);
    assert!(build(root.path(), ctx.path(), &["--explain", "-t", "p:1"]).ok());
    let count = || std::fs::read_dir(root.path().join("explain")).map(|d| d.count()).unwrap_or(0);
    assert!(count() > 0);
    let out = rbuild().arg("--root").arg(root.path()).args(["prune"]).output().unwrap();
    assert!(out.status.success());
    assert!(count() > 0, "plain prune keeps them");
    let out = rbuild().arg("--root").arg(root.path()).args(["prune", "--all"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(count(), 0);
}

/// A `COPY --from` starts when its source stage is built: the report gives it its own
/// time, not the time it waited for the other stage (QA: a 1 s RUN showed as the COPY's).
#[test]
fn a_copy_from_a_stage_is_timed_from_when_that_stage_is_done() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[(
            "Dockerfile",
            "FROM busybox:local AS builder\nRUN sleep 1 && echo second > /out.txt\n\
             FROM busybox:local\nCOPY --from=builder /out.txt /out.txt\n",
        )],
    );
    let json = ctx.path().join("meta.json");
    let r = build(root.path(), ctx.path(), &["-t", "t:1", "--metadata-file", json.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    let by_name = |n: &str| steps.iter().find(|s| s["name"].as_str().unwrap().contains(n)).unwrap();
    let (run, copy) = (by_name("RUN sleep 1"), by_name("COPY --from=builder"));
    let ms = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap();
    assert!(ms(run, "duration_ms") >= 1000, "{run}");
    assert!(ms(copy, "start_ms") >= ms(run, "start_ms") + ms(run, "duration_ms"), "the COPY started before its source: {copy} {run}");
    assert!(ms(copy, "duration_ms") < 900, "the COPY's time holds the wait: {copy}");
}
