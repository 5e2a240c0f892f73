//! Smoke run of `benches/rebuild.sh`: a 20-file + 1 MB project, one run per scenario, rbuild
//! only. The benchmark itself is not run by CI (it is a benchmark, not a test); this checks that
//! the script still drives rbuild end to end and that its table and files keep their shape.
//!
//! Needs what the rbuild build tests need (root, busybox-static for testdata/make-busybox.sh)
//! plus bash. Skips, saying why, only while `rbuild build` is not implemented.

// A test may say on stderr why it skipped.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const SCENARIOS: [&str; 5] = ["cold", "noop", "src-edit", "req-edit", "cache-from"];

fn rbuild() -> &'static str {
    env!("CARGO_BIN_EXE_rbuild")
}

/// `Some(reason)` when this rbuild has no working build command yet.
fn build_missing(tmp: &Path) -> Option<String> {
    let ctx = tmp.join("probe-ctx");
    std::fs::create_dir_all(&ctx).ok()?;
    let out = Command::new(rbuild())
        .arg("--root")
        .arg(tmp.join("probe-root"))
        .arg("build")
        .arg(&ctx)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("not implemented") {
        return Some(err.trim().to_string());
    }
    None
}

fn has_cache_flags() -> bool {
    let out = Command::new(rbuild()).args(["build", "--help"]).output();
    match out {
        Ok(o) => {
            let help = String::from_utf8_lossy(&o.stdout);
            help.contains("--cache-to") && help.contains("--cache-from")
        }
        Err(_) => false,
    }
}

#[test]
fn rebuild_script_smoke_run_has_every_scenario_for_rbuild() {
    let tmp = tempfile::tempdir().expect("temp dir");
    if let Some(why) = build_missing(tmp.path()) {
        eprintln!("skipping the benches/rebuild.sh smoke run: rbuild build is not implemented yet ({why})");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rebuild.sh");
    let prefix = tmp.path().join("results");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--files", "20", "--data-mb", "1", "--runs", "1", "--tools", "rbuild", "--out"])
        .arg(&prefix)
        .env("RBUILD", rbuild())
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run bash benches/rebuild.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rebuild.sh failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // The table: a header naming rbuild, then one row per scenario.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("scenario"))
        .unwrap_or_else(|| panic!("no table header in:\n{stdout}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["scenario", "rbuild"], "header: {header}");
    let mut cell: HashMap<&str, &str> = HashMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 2 && (SCENARIOS.contains(&f[0]) || f[0] == "peak-MB") {
            cell.insert(f[0], f[1]);
        }
    }
    let secs = |s: &str| -> f64 {
        let v = cell.get(s).unwrap_or_else(|| panic!("no {s} row in:\n{stdout}"));
        v.parse::<f64>()
            .unwrap_or_else(|_| panic!("{s}: '{v}' is not a time in seconds:\n{stdout}\n{stderr}"))
    };
    let cold = secs("cold");
    let noop = secs("noop");
    let src = secs("src-edit");
    let req = secs("req-edit");
    // The install RUN sleeps 1 s: it runs in the cold build and after a requirements edit, and
    // is cached in the no-op and source-edit rebuilds.
    assert!(cold >= 1.0, "cold build {cold}s cannot have run the 1 s install step");
    assert!(req >= 1.0, "requirements edit {req}s cannot have re-run the 1 s install step");
    assert!(noop < cold, "no-op rebuild {noop}s is not faster than the cold build {cold}s");
    assert!(src < req, "source-edit rebuild {src}s is not faster than the requirements edit {req}s");
    if has_cache_flags() {
        let c = secs("cache-from");
        assert!(c > 0.0);
    } else {
        assert_eq!(cell.get("cache-from"), Some(&"n/a"), "{stdout}");
    }
    assert!(cell.contains_key("peak-MB"), "no peak-MB row in:\n{stdout}");

    // The machine-readable files.
    let tsv = std::fs::read_to_string(prefix.with_extension("tsv")).expect("results.tsv");
    let mut lines = tsv.lines();
    assert_eq!(lines.next(), Some("tool\tscenario\trun\tseconds\tpeak_rss_kb"));
    for s in ["cold", "noop", "src-edit", "req-edit"] {
        assert!(
            tsv.lines().any(|l| l.starts_with(&format!("rbuild\t{s}\t1\t"))),
            "no rbuild {s} run in results.tsv:\n{tsv}"
        );
    }
    let json = std::fs::read_to_string(prefix.with_extension("json")).expect("results.json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("results.json: {e}\n{json}"));
    assert_eq!(v["tools"]["rbuild"]["status"], "ok", "{json}");
    for s in SCENARIOS {
        assert!(v["tools"]["rbuild"]["scenarios"][s].is_object(), "no {s} in results.json");
    }
    assert_eq!(v["tools"]["rbuild"]["scenarios"]["cold"]["median_s"].as_f64(), Some(cold));
}
