//! BuildKit's shell-lexer tables (`shared/conformance/buildkit/shell/`), run exactly as the
//! README of that folder describes (sections 5 and 6), plus table tests of the pattern
//! operators and the other `lex_test.go` behaviours that exist upstream only as Go code.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rbuild::dockerfile::expand::{
    expand, expand_word, expand_words, referenced_vars, ExpandErrorKind,
};

mod common;

/// The `shared/` folder (see [`common::conformance_dir`]).
fn shared_dir() -> PathBuf {
    common::conformance_dir().join("../..")
}

fn env_from(pairs: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn buildkit_env_var_test() {
    let path = shared_dir().join("conformance/buildkit/shell/envVarTest");
    let text = std::fs::read_to_string(&path).expect("read envVarTest");
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lookup = env_from(&env);
    let (mut run, mut skipped_windows, mut errors_expected) = (0, 0, 0);
    let mut failures = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            3,
            "line {lineno}: expected 3 fields in {line:?}"
        );
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "A" | "U" => {}
            "W" => {
                // Windows-only rows: env names are case-insensitive there. Not our platform.
                skipped_windows += 1;
                continue;
            }
            other => panic!("line {lineno}: bad platform tag {other:?}"),
        }
        run += 1;
        let got = expand_word(input, &lookup, '\\');
        let ok = if expected == "error" {
            errors_expected += 1;
            got.is_err()
        } else {
            got.as_deref() == Ok(expected)
        };
        if !ok {
            failures.push(format!(
                "line {lineno}: {input:?} → {got:?}, want {expected:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {run} envVarTest rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The README's counts: 230 rows = 226 all-platform + 2 Unix + 2 Windows; 36 errors.
    assert_eq!(run, 228, "rows run");
    assert_eq!(skipped_windows, 2, "Windows-only rows skipped");
    assert_eq!(errors_expected, 36, "error rows");
}

#[test]
fn buildkit_words_test() {
    let path = shared_dir().join("conformance/buildkit/shell/wordsTest");
    let text = std::fs::read_to_string(&path).expect("read wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut run, mut env_lines) = (0, 0);
    let mut failures = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            env_lines += 1;
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(
            parts.len(),
            2,
            "line {lineno}: expected exactly one | in {line:?}"
        );
        let input = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        run += 1;
        let lookup = env_from(&env);
        let got = match expand_words(input, &lookup, '\\') {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {lineno}: {input:?} → {got:?}, want {expected:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {run} wordsTest rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 24, "rows run");
    assert_eq!(env_lines, 4, "ENV lines");
}

/// One row of BuildKit's `TestProcessWithMatches`: input, env, expected (None = error),
/// matched names, unmatched names.
type MatchRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    &'static [&'static str],
    &'static [&'static str],
);

const MATCH_ROWS: &[MatchRow] = &[
    ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
    (
        "x ${UNUSED}",
        &[("DUMMY", "dummy")],
        Some("x "),
        &[],
        &["UNUSED"],
    ),
    ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
    (
        "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx  ccc"),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx bbb ccc"),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:-}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
    (
        "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa bbb "),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa  "),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO?aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    (
        "${BAR?bbb}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some(""),
        &["BAR"],
        &[],
    ),
    ("${BAZ?ccc}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    (
        "${FOO:?aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    (
        "${BAR:?bbb}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    (
        "${BAZ:?ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    ("${BAZ:?}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    ("${FOO=aaa}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    (
        "${FOO=:aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    ("${FOO=}", &[], None, &[], &[]),
    // Regex metacharacters are literal in patterns; `}` must be escaped.
    (
        "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
        &[("FOO", "()[]{}^$.*?|\\x")],
        Some("x"),
        &["FOO"],
        &[],
    ),
    (
        "${FOO%%\\**}",
        &[("FOO", "xx**")],
        Some("xx"),
        &["FOO"],
        &[],
    ),
    ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
    ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "x")],
        Some("xyy"),
        &["FOO", "BAR"],
        &[],
    ),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
    ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
    (
        "${ABC:-.}${FOO%x}${ABC:-.}",
        &[("FOO", "xxyy")],
        Some(".xxyy."),
        &["FOO"],
        &["ABC"],
    ),
    (
        "${FOO%%\\**\\*}",
        &[("FOO", "a***yy*")],
        Some("a"),
        &["FOO"],
        &[],
    ),
    ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO%%$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    // Wildcards in `/` patterns.
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
        Some("/foo.*/*.txt - /foo..*.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    // `/` inside patterns that come from a variable.
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
        Some("/tmp/bar.txt - /bar.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ],
        Some("/foo/b/c.txt - /foo/c.txt"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ],
        Some("https://google.de"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    // Escaped separators: the escape stays in the replacement, as in BuildKit.
    (
        "${FOO//\\//\\/}",
        &[("FOO", "/tmp/foo.txt")],
        Some("\\/tmp\\/foo.txt"),
        &["FOO"],
        &[],
    ),
    // Partial inputs: not guaranteed upstream, but must not crash.
    (
        "${FOO/$BAR/ww}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("wwxxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO///}", &[], Some(""), &[], &["FOO"]),
];

#[test]
fn buildkit_process_with_matches_table() {
    for (input, pairs, expected, matched, unmatched) in MATCH_ROWS {
        let env = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let got = expand(input, &env, '\\');
        match expected {
            None => assert!(
                got.is_err(),
                "{input:?} with {pairs:?}: want an error, got {got:?}"
            ),
            Some(want) => {
                let got = got.unwrap_or_else(|e| panic!("{input:?} with {pairs:?}: {e}"));
                assert_eq!(got.value, *want, "{input:?} with {pairs:?}");
                let m: BTreeSet<String> = matched.iter().map(|s| s.to_string()).collect();
                let u: BTreeSet<String> = unmatched.iter().map(|s| s.to_string()).collect();
                assert_eq!(got.matched, m, "matched names of {input:?}");
                assert_eq!(got.unmatched, u, "unmatched names of {input:?}");
            }
        }
    }
}

/// Pattern operators, one row each: (word, value of V, expected).
#[test]
fn pattern_operators() {
    let rows: &[(&str, &str, &str)] = &[
        // # shortest prefix, ## longest prefix
        ("${V#*/}", "a/b/c", "b/c"),
        ("${V##*/}", "a/b/c", "c"),
        ("${V#a}", "aab", "ab"),
        ("${V##a*}", "aab", ""),
        ("${V#x}", "aab", "aab"),
        ("${V#?}", "한국어", "국어"),
        // % shortest suffix, %% longest suffix
        ("${V%/*}", "a/b/c", "a/b"),
        ("${V%%/*}", "a/b/c", "a"),
        ("${V%.tar.gz}", "app.tar.gz", "app"),
        ("${V%.*}", "app.tar.gz", "app.tar"),
        ("${V%%.*}", "app.tar.gz", "app"),
        ("${V%x}", "abc", "abc"),
        ("${V%?}", "한국어", "한국"),
        // / first (longest) match, // every match
        ("${V/o/0}", "foo boo", "f0o boo"),
        ("${V//o/0}", "foo boo", "f00 b00"),
        ("${V/o*/X}", "foo boo", "fX"),
        ("${V//?o/X}", "foo boo", "Xo Xo"),
        ("${V/x/y}", "abc", "abc"),
        ("${V/a/}", "banana", "bnana"),
        ("${V//a/}", "banana", "bnn"),
        // metacharacters are literal
        ("${V//./-}", "1.2.3", "1-2-3"),
        ("${V#(}", "(x)", "x)"),
        ("${V%\\*}", "a**", "a*"),
        ("${V%%\\**}", "a**", "a"),
        // unset variable: empty in, empty out
        ("${U#*}", "", ""),
        ("${U/a/b}", "", ""),
    ];
    for (word, value, want) in rows {
        let v = value.to_string();
        let env = move |name: &str| (name == "V").then(|| v.clone());
        let got = expand_word(word, &env, '\\');
        assert_eq!(got.as_deref(), Ok(*want), "{word:?} with V={value:?}");
    }
}

#[test]
fn invalid_patterns_are_errors() {
    let env = |_: &str| Some("abc".to_string());
    for word in ["${V#\\x}", "${V%%a\\b}", "${V/\\q/x}"] {
        let err = expand_word(word, &env, '\\').unwrap_err();
        assert!(
            matches!(err.kind, ExpandErrorKind::InvalidPattern { .. }),
            "{word:?}: {err}"
        );
    }
}

#[test]
fn mandatory_variables_carry_the_message() {
    let set = |n: &str| match n {
        "VAR" => Some("plain".to_string()),
        "ARG" => Some("x".to_string()),
        _ => None,
    };
    let empty = |n: &str| match n {
        "VAR" => Some(String::new()),
        "ARG" => Some("x".to_string()),
        _ => None,
    };
    let unset = |n: &str| (n == "ARG").then(|| "x".to_string());
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";

    assert_eq!(expand_word(no_empty, &set, '\\').unwrap(), "plain");
    let e = expand_word(no_empty, &empty, '\\').unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
    );
    let e = expand_word(no_empty, &unset, '\\').unwrap_err();
    assert!(e.to_string().contains("VAR: message herex"), "{e}");

    assert_eq!(expand_word(no_unset, &set, '\\').unwrap(), "plain");
    assert_eq!(expand_word(no_unset, &empty, '\\').unwrap(), "");
    let e = expand_word(no_unset, &unset, '\\').unwrap_err();
    assert!(e.to_string().contains("VAR: message herex"), "{e}");
}

#[test]
fn platform_release_name() {
    let env = |n: &str| {
        match n {
            "VERSION" => Some("v1.2.3"),
            "TARGETOS" => Some("linux"),
            "TARGETARCH" => Some("arm"),
            "TARGETVARIANT" => Some("v7"),
            _ => None,
        }
        .map(str::to_string)
    };
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    assert_eq!(
        expand_word(release, &env, '\\').unwrap(),
        "something-v1.2.3.linux-arm-v7.tar.gz"
    );
    let no_variant = |n: &str| if n == "TARGETVARIANT" { None } else { env(n) };
    assert_eq!(
        expand_word(release, &no_variant, '\\').unwrap(),
        "something-v1.2.3.linux-arm.tar.gz"
    );
}

#[test]
fn referenced_vars_lists_every_name() {
    let names = |w: &str| -> Vec<String> {
        referenced_vars(w, '\\')
            .unwrap_or_else(|e| panic!("{w}: {e}"))
            .into_iter()
            .collect()
    };
    assert_eq!(names("plain"), Vec::<String>::new());
    assert_eq!(names("$A ${B} \"$C\" '$D' \\$E"), ["A", "B", "C"]);
    assert_eq!(names("${A:-${B:+$C}}"), ["A", "B", "C"]);
    // `?` does not fail when only collecting names; patterns and replacements count.
    assert_eq!(
        names("${A:?must be set}${B#$P}${C/$Q/$R}"),
        ["A", "B", "C", "P", "Q", "R"]
    );
    // Positional and special parameters are never set: not references.
    assert_eq!(names("$1 $@ ${#} $$ $0 $_x"), ["_x"]);
    assert_eq!(names("$한국어"), ["한국어"]);
    assert!(referenced_vars("'unterminated", '\\').is_err());
    assert!(referenced_vars("${}", '\\').is_err());
}

#[test]
fn word_splitting_for_expose() {
    let env = |n: &str| match n {
        "PORTS" => Some("80/tcp  443/tcp".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(
        expand_words("$PORTS 8080", &env, '\\').unwrap(),
        ["80/tcp", "443/tcp", "8080"]
    );
    assert_eq!(
        expand_words("\"$PORTS\"", &env, '\\').unwrap(),
        ["80/tcp  443/tcp"]
    );
    assert_eq!(
        expand_words("$EMPTY", &env, '\\').unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        expand_words("\"\"", &env, '\\').unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(expand_words("a\\ b c", &env, '\\').unwrap(), ["a b", "c"]);
}

#[test]
fn error_messages_name_the_problem() {
    let env = |_: &str| None;
    let cases = [
        ("he${PWD", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${X:=1}", "unsupported modifier (:=) in substitution"),
        (
            "'abc",
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "\"abc",
            "unexpected end of statement while looking for matching double-quote",
        ),
        ("${X/abc}", "syntax error: missing '/' in ${}"),
    ];
    for (word, want) in cases {
        let err = expand_word(word, &env, '\\').unwrap_err();
        assert_eq!(err.kind.to_string(), want, "{word:?}");
        assert_eq!(err.word, word);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// No input makes the expander panic, whatever the escape char; a word without any
    /// special char expands to itself.
    #[test]
    fn never_panics(word in r#"[a-z$\\{}:?#%/+\-'"` *]{0,24}"#, backtick in proptest::bool::ANY) {
        let env = |n: &str| n.len().is_multiple_of(2).then(|| format!("v{n}"));
        let escape = if backtick { '`' } else { '\\' };
        let _ = expand(&word, &env, escape);
        let _ = referenced_vars(&word, escape);
    }

    #[test]
    fn plain_words_are_unchanged(word in "[a-zA-Z0-9_./-]{0,24}") {
        let env = |_: &str| Some("X".to_string());
        proptest::prop_assert_eq!(expand_word(&word, &env, '\\').unwrap(), word);
    }
}

#[test]
fn heredoc_bodies_keep_quotes() {
    use rbuild::dockerfile::expand::expand_heredoc;
    let env = |n: &str| (n == "X").then(|| "x y".to_string());
    assert_eq!(
        expand_heredoc("echo \"$X\" '$X' \\$X ${X:-z}\n", &env).unwrap(),
        "echo \"x y\" 'x y' $X x y\n"
    );
}
