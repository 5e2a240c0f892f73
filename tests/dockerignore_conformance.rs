//! moby/patternmatcher's tables (`shared/conformance/buildkit/dockerignore/`), run as that
//! folder's README describes (section 4), plus the `.dockerignore` examples from Docker's
//! documentation ("Dockerfile reference → .dockerignore file") and the file lookup rules.

use std::path::{Path, PathBuf};

use rbuild::dockerfile::dockerignore::{read_patterns, Dockerignore, IgnoreError};

mod common;

/// The `shared/` folder (see [`common::conformance_dir`]).
fn shared_dir() -> PathBuf {
    common::conformance_dir().join("../..")
}

#[test]
fn patternmatcher_cases() {
    let path = shared_dir().join("conformance/buildkit/dockerignore/patternmatcher-cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("read patternmatcher-cases.jsonl");
    let mut run = 0;
    let mut failures = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: bad JSON: {e}", idx + 1));
        let patterns: Vec<String> = row["patterns"]
            .as_array()
            .expect("patterns")
            .iter()
            .map(|p| p.as_str().expect("pattern string").to_string())
            .collect();
        let file = row["path"].as_str().expect("path");
        let group = row["group"].as_str().expect("group");
        run += 1;
        let got: Result<bool, String> = Dockerignore::from_patterns(&patterns)
            .map(|m| m.is_ignored(file))
            .map_err(|e| e.to_string());
        let ok = match &row["expect"] {
            serde_json::Value::Bool(want) => got == Ok(*want),
            serde_json::Value::String(s) if s == "error" => got.is_err(),
            other => panic!("line {}: bad expect {other}", idx + 1),
        };
        if !ok {
            failures.push(format!(
                "line {} [{group}]: {patterns:?} vs {file:?} → {got:?}, want {}",
                idx + 1,
                row["expect"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {run} patternmatcher rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 138, "rows run");
}

#[test]
fn readall_case() {
    let dir = shared_dir().join("conformance/buildkit/dockerignore");
    let input = std::fs::read_to_string(dir.join("readall-input.dockerignore")).expect("input");
    let expected = std::fs::read_to_string(dir.join("readall-expected.txt")).expect("expected");
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(read_patterns(&input), want);
    // The lone `!` lines survive reading but make the matcher fail.
    let err = Dockerignore::parse(&input).unwrap_err();
    assert!(err.to_string().contains("line 8"), "{err}");
}

fn ignore(text: &str) -> Dockerignore {
    Dockerignore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn check(m: &Dockerignore, ignored: &[&str], kept: &[&str]) {
    for p in ignored {
        assert!(
            m.is_ignored(p),
            "{p:?} should be ignored by {:?}",
            m.patterns()
        );
    }
    for p in kept {
        assert!(
            !m.is_ignored(p),
            "{p:?} should be kept by {:?}",
            m.patterns()
        );
    }
}

/// The documentation's first example, line by line.
#[test]
fn docs_example_comment_and_temp_patterns() {
    let m = ignore("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    assert_eq!(m.patterns(), ["*/temp*", "*/*/temp*", "temp?"]);
    check(
        &m,
        &[
            // */temp*: names starting with temp in an immediate subdirectory of the root.
            "somedir/temporary.txt",
            "somedir/temp",
            "somedir/temp/inside.txt",
            // */*/temp*: two levels below the root.
            "somedir/subdir/temporary.txt",
            // temp?: one-character extension of temp, in the root.
            "tempa",
            "tempb",
        ],
        &[
            "temporary.txt",
            "temp",
            "a/b/c/temp.txt",
            "tempab",
            "somedir/tempa/../x",
            "# comment",
        ],
    );
}

#[test]
fn docs_example_double_star_go() {
    let m = ignore("**/*.go\n");
    check(
        &m,
        &["main.go", "cmd/main.go", "a/b/c/d.go"],
        &["main.go.txt", "go", "a/b/c.gox"],
    );
}

#[test]
fn docs_example_markdown_except_readme() {
    let m = ignore("*.md\n!README.md\n");
    check(&m, &["CHANGES.md", "notes.md"], &["README.md", "main.go"]);
    // Anchored at the root: *.md does not reach into subdirectories.
    check(&m, &[], &["docs/guide.md"]);
}

#[test]
fn docs_example_readme_ordering() {
    // No markdown files except README files other than README-secret.md.
    let m = ignore("*.md\n!README*.md\nREADME-secret.md\n");
    check(
        &m,
        &["CHANGES.md", "README-secret.md"],
        &["README.md", "README-dev.md"],
    );
    // All README files are included: the middle line has no effect because
    // !README*.md matches README-secret.md and comes last.
    let m = ignore("*.md\nREADME-secret.md\n!README*.md\n");
    check(
        &m,
        &["CHANGES.md"],
        &["README.md", "README-secret.md", "README-dev.md"],
    );
}

#[test]
fn parents_and_exceptions() {
    let m = ignore("docs\n!docs/README.md\n");
    check(
        &m,
        &["docs", "docs/a.md", "docs/sub/b.md"],
        &["docs/README.md", "docsx"],
    );
    // Leading slash and ./ are stripped when reading.
    let m = ignore("/build\n./dist/\n");
    check(&m, &["build/x", "dist/y"], &["src/build"]);
    // The context root itself is never ignored.
    assert!(!ignore("*\n**\n").is_ignored("."));
    assert!(!ignore("*\n").is_ignored(""));
}

#[test]
fn bad_patterns_are_errors_naming_the_line() {
    for text in [
        "ok\n[\n",
        "ok\n!\n",
        "ok\nfoo\\\n",
        "ok\n[z-a]\n",
        "ok\n[]a]\n",
    ] {
        let err = Dockerignore::parse(text).unwrap_err();
        assert!(
            matches!(&err, IgnoreError::BadPattern { .. }),
            "{text:?}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("line 2: bad .dockerignore pattern"),
            "{msg}"
        );
        assert!(msg.ends_with("fix or remove the pattern"), "{msg}");
    }
}

#[test]
fn skipping_directories() {
    // Without exceptions any ignored directory can be skipped.
    let m = ignore("node_modules\n*.log\n");
    assert!(m.can_skip_dir("node_modules"));
    assert!(m.can_skip_dir("node_modules/a"));
    assert!(!m.can_skip_dir("src"));

    // An exception below the directory keeps it open; elsewhere it does not matter.
    let m = ignore("vendor\nbuild\n!vendor/keep/me.txt\n");
    assert!(!m.can_skip_dir("vendor"));
    assert!(!m.can_skip_dir("vendor/keep"));
    assert!(m.can_skip_dir("vendor/other"));
    assert!(m.can_skip_dir("build"));
    assert!(!m.is_ignored("vendor/keep/me.txt"));
    assert!(m.is_ignored("vendor/keep/other.txt"));

    // Wildcards in an exception: conservative but right.
    let m = ignore("*\n!*/keep\n");
    assert!(!m.can_skip_dir("a"));
    assert!(m.can_skip_dir("a/b"));
    let m = ignore("*\n!**/keep\n");
    assert!(!m.can_skip_dir("a"));
    assert!(!m.can_skip_dir("a/b/c"));
    // An exception that only matches at the same depth cannot re-include below.
    let m = ignore("*\n!a\nsecret\n!secret.txt\n");
    assert!(m.can_skip_dir("secret"));
}

/// Every skip decision agrees with per-file matching on a small tree.
#[test]
fn skipping_never_changes_the_result() {
    let files = [
        "a/b/c.txt",
        "a/b/keep.txt",
        "a/keep/x",
        "a/x.log",
        "b/keep.txt",
        "b/c/d/e.md",
        "keep.txt",
        "z/README.md",
    ];
    let sets = [
        "*\n!keep.txt\n",
        "a\n!a/b/keep.txt\n",
        "**/*.txt\n!**/keep.txt\n",
        "*/*\n!*/keep*\n",
        "a/**\n!a/keep\n",
        "b\n!b/c/d\n",
        "*\n!z/*.md\n",
    ];
    for text in sets {
        let m = ignore(text);
        for f in files {
            // For every ancestor the walker could skip, the file must indeed be ignored.
            let parts: Vec<&str> = f.split('/').collect();
            for n in 1..parts.len() {
                let dir = parts[..n].join("/");
                if m.can_skip_dir(&dir) {
                    assert!(
                        m.is_ignored(f),
                        "{text:?}: skipping {dir:?} would lose {f:?}"
                    );
                }
            }
        }
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

#[test]
fn read_for_context_prefers_the_dockerfile_specific_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path();
    let dockerfile = ctx.join("build/app.Dockerfile");
    write(&dockerfile, "FROM scratch\n");

    // Neither file: nothing ignored.
    let m = Dockerignore::read_for_context(ctx, &dockerfile).unwrap();
    assert!(m.is_empty());
    assert!(m.source().is_none());

    // Only the context's .dockerignore.
    write(&ctx.join(".dockerignore"), "*.log\n");
    let m = Dockerignore::read_for_context(ctx, &dockerfile).unwrap();
    assert_eq!(m.source(), Some(ctx.join(".dockerignore").as_path()));
    assert!(m.is_ignored("x.log"));

    // The Dockerfile-specific one wins.
    let specific = ctx.join("build/app.Dockerfile.dockerignore");
    write(&specific, "*.tmp\n");
    let m = Dockerignore::read_for_context(ctx, &dockerfile).unwrap();
    assert_eq!(m.source(), Some(specific.as_path()));
    assert!(m.is_ignored("x.tmp"));
    assert!(!m.is_ignored("x.log"));

    // The default Dockerfile gets the context's file...
    let default = ctx.join("Dockerfile");
    write(&default, "FROM scratch\n");
    let m = Dockerignore::read_for_context(ctx, &default).unwrap();
    assert!(m.is_ignored("x.log"));
    // ...unless Dockerfile.dockerignore exists.
    write(&ctx.join("Dockerfile.dockerignore"), "*.bak\n");
    let m = Dockerignore::read_for_context(ctx, &default).unwrap();
    assert!(m.is_ignored("x.bak") && !m.is_ignored("x.log"));

    // A bad pattern names the file and the line.
    write(&specific, "ok\n\n[oops\n");
    let err = Dockerignore::read_for_context(ctx, &dockerfile).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:3: bad .dockerignore pattern \"[oops\"",
            specific.display()
        )),
        "{msg}"
    );
}

#[test]
fn bom_crlf_and_comments() {
    let m = ignore("\u{feff}# c\r\n  *.o  \r\n #not a comment\r\n");
    assert_eq!(m.patterns(), ["*.o", "#not a comment"]);
    assert!(m.is_ignored("main.o"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// No pattern list or path makes the matcher panic.
    #[test]
    fn never_panics(
        patterns in proptest::collection::vec(r"!?[a-c*?/\\\[\]^\-.]{0,8}", 0..4),
        path in r"[a-c/.*]{0,10}",
    ) {
        if let Ok(m) = Dockerignore::from_patterns(&patterns) {
            let _ = m.is_ignored(&path);
            let _ = m.can_skip_dir(&path);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
    /// Skipping a directory never loses a file that per-file matching would keep.
    #[test]
    fn skip_is_sound(
        patterns in proptest::collection::vec(r"!?(a|b|\*|\*\*|k\*|\?)(/(a|b|\*|\*\*|k\*|\?)){0,3}", 1..5),
        file in r"(a|b|k|kx)(/(a|b|k|kx)){1,4}",
    ) {
        let m = Dockerignore::from_patterns(&patterns).expect("valid patterns");
        let parts: Vec<&str> = file.split('/').collect();
        for n in 1..parts.len() {
            let dir = parts[..n].join("/");
            if m.can_skip_dir(&dir) {
                proptest::prop_assert!(m.is_ignored(&file), "{:?}: skipping {} loses {}", patterns, dir, file);
            }
        }
    }
}
