//! BuildKit's parser test data (see `shared/conformance/buildkit/README.md`): every
//! positive case must dump byte-identically, every negative case must fail, and the
//! line-number case must give BuildKit's spans. The data is not copied into the repo: it
//! is read from `$CARGO_MANIFEST_DIR/../shared/conformance/buildkit` or
//! `/work/shared/conformance/buildkit`, and the test fails when neither exists.
//!
//! Nothing is skipped: all 33 positive dumps are compared (with `parse_raw`, BuildKit's
//! line level), all 4 negative cases must fail in both `parse_raw` and `parse`, and the
//! line-number case is checked. No positive case uses an unknown keyword, so making unknown
//! instructions a parse error (BuildKit defers that) costs no case. On top, every positive
//! case also goes through the typed `parse`; the cases it rightly rejects are listed in
//! `TYPED_REJECTS` with the reason.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild::dockerfile::{self, Instruction};

mod common;

fn data_dir() -> PathBuf {
    common::conformance_dir()
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Positive cases whose *typed* parse (on top of the line-level dump) is expected to fail,
/// because BuildKit's parser accepts lines that its instruction layer (and ours) rejects.
/// The dump of these cases is still checked byte for byte with `parse_raw`.
const TYPED_REJECTS: &[(&str, &str)] = &[
    ("flags", "uses made-up flags (`COPY --user=me`, `CMD --doit`) to test flag splitting; unknown flags are an error for the typed AST"),
    ("jeztah-invalid-json-json-inside-string", "no FROM line (a lone CMD): the typed layer requires FROM before CMD"),
    ("jeztah-invalid-json-json-inside-string-double", "no FROM line (a lone CMD)"),
    ("jeztah-invalid-json-single-quotes", "no FROM line (a lone CMD)"),
    ("jeztah-invalid-json-unterminated-bracket", "no FROM line (a lone CMD)"),
    ("jeztah-invalid-json-unterminated-string", "no FROM line (a lone CMD)"),
    ("json", "no FROM line (only CMD lines)"),
    ("health", "`HEALTHCHECK` with no arguments, `HEALTHCHECK CMD` with no command and `HEALTHCHECK CONNECT TCP 7000` are rejected by BuildKit's instruction layer too"),
];

#[test]
fn positive_cases_dump_byte_identical() {
    let dir = data_dir().join("parser/testfiles");
    let mut passed = 0;
    let mut typed_ok = 0;
    let mut failures = Vec::new();
    let all = cases(&dir);
    for case in &all {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(case.join("result")).unwrap();
        let path = Path::new("Dockerfile");
        match dockerfile::parse_raw(&text, path) {
            Ok(raw) => {
                let got = raw.dump() + "\n";
                if got == expected {
                    passed += 1;
                } else {
                    failures.push(format!("{name}: dump differs\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: parse_raw failed: {e}")),
        }
        let reject = TYPED_REJECTS.iter().any(|(n, _)| *n == name);
        match dockerfile::parse(&text, path) {
            Ok(df) => {
                if reject {
                    failures.push(format!("{name}: typed parse was expected to fail"));
                } else if df.dump() + "\n" != expected {
                    failures.push(format!("{name}: typed AST dump differs"));
                } else {
                    typed_ok += 1;
                }
            }
            Err(e) if !reject => failures.push(format!("{name}: typed parse failed: {e}")),
            Err(_) => {}
        }
    }
    // The pass count is part of the test's output on purpose (`--nocapture` shows it).
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
        "conformance: {passed}/{} positive dumps identical; {typed_ok} typed parses identical ({} expected typed rejects)",
        all.len(),
        TYPED_REJECTS.len()
        );
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(all.len(), 33, "the README promises 33 positive cases");
}

#[test]
fn negative_cases_fail() {
    let dir = data_dir().join("parser/testfiles-negative");
    let all = cases(&dir);
    assert_eq!(all.len(), 4);
    for case in all {
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let r = dockerfile::parse_raw(&text, Path::new("Dockerfile"));
        assert!(r.is_err(), "{}: parse_raw accepted it", case.display());
        let r = dockerfile::parse(&text, Path::new("Dockerfile"));
        assert!(r.is_err(), "{}: parse accepted it", case.display());
    }
}

#[test]
fn line_numbers() {
    let text = fs::read_to_string(data_dir().join("parser/testfile-line/Dockerfile")).unwrap();
    let df = dockerfile::parse(&text, Path::new("Dockerfile")).unwrap();
    let spans: Vec<(usize, usize)> = df.nodes().map(|n| (n.span().start.line, n.span().end.line)).collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
    assert!(matches!(df.stages[0].instructions[1].instruction, Instruction::Run(_)));
}
