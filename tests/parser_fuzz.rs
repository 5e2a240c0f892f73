//! No panic on any input: random token soup and mutations of real Dockerfiles (the
//! BuildKit conformance files when present, plus a built-in corpus) go through `parse`,
//! `parse_raw`, error rendering and `dump`. Bounded: PROPTEST_CASES (default 1000 per
//! property, 2 properties) keeps it to a few seconds in debug builds.

use std::path::Path;

use proptest::prelude::*;
use rbuild::dockerfile;

const CORPUS: &[&str] = &[
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM alpine AS a\nRUN echo `\n  hi\nCOPY --from=a [\"x y\", \"/z\"]\n",
    "ARG V=1\nFROM --platform=$P img:$V as b\nENV a=1 b=\"2 3\" c\\ d=e\nLABEL k v w\nEXPOSE 80/tcp\n",
    "FROM x\nRUN <<EOF\nset -e\necho $HOME\nEOF\nCOPY <<A <<'B' /d/\na\nA\nb\nB\nRUN <<-X cat\n\tx\n\tX\n",
    "FROM x\nRUN --mount=type=cache,target=/c,sharing=locked --network=none --security=insecure make\nHEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]\nONBUILD RUN [\"a\"]\nSHELL [\"sh\", \"-c\"]\n",
    "\u{feff}FROM a\r\nRUN a \\\r\n# c\r\n\r\n  b\r\nUSER u:g\r\nWORKDIR /w\r\nSTOPSIGNAL 9\r\nVOLUME [\"/v\"]\r\nENTRYPOINT [\"/e\"]\r\nCMD c\r\n",
];

const TOKENS: &[&str] = &[
    "FROM", "RUN", "CMD", "COPY", "ADD", "ENV", "LABEL", "ARG", "ONBUILD", "HEALTHCHECK", "SHELL",
    "EXPOSE", "VOLUME", "USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER", "ENTRYPOINT", "NONE", "AS",
    "--from=", "--mount=type=cache,target=/x", "--mount=", "--link", "--chmod=", "--", "--interval=1s",
    " ", "  ", "\t", "\n", "\r\n", "\r", "\\", "`", "\\\n", "`\n", "#", "# escape=`\n", "# escape=\\\n",
    "\"", "'", "[", "]", "{", "}", ",", ":", "=", "$", "${a}", "<<", "<<EOF", "<<-EOF", "<<'E'", "EOF",
    "\nEOF\n", "\u{feff}", "\u{a0}", "é", "♥", "\u{200b}", "\0", "1", "-1", "true", "null", "[\"a\"]",
    "[\"a\", 1]", "[[[[", "\\u00", "a", "b/c", "x=y",
];

fn check(text: &str) {
    let path = Path::new("Dockerfile");
    let lines = text.split('\n').count() + 1;
    match dockerfile::parse(text, path) {
        Ok(df) => {
            let _ = df.dump();
            for n in df.nodes() {
                let sp = n.span();
                assert!(sp.start.line >= 1 && sp.start.line <= sp.end.line, "{sp:?}");
                assert!(sp.end.line <= lines, "{sp:?}");
            }
            let _ = serde_json::to_string(&df).unwrap();
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= lines && e.col >= 1, "{e:?}");
            assert!(!e.message.is_empty());
            let _ = e.to_string();
        }
    }
    if let Ok(raw) = dockerfile::parse_raw(text, path) {
        let _ = raw.dump();
    }
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(TOKENS).prop_map(str::to_string),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..60,
    )
    .prop_map(|v| v.concat())
}

fn corpus() -> &'static [String] {
    static CORPUS_CELL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CORPUS_CELL.get_or_init(load_corpus)
}

fn load_corpus() -> Vec<String> {
    let mut v: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    for base in [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/buildkit/parser/testfiles"),
        Path::new("/work/shared/conformance/buildkit/parser/testfiles").to_path_buf(),
    ] {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path().join("Dockerfile")) {
                    v.push(t);
                }
            }
            break;
        }
    }
    v
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
    DupLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(a, t)| Edit::Insert(a, t)),
        any::<usize>().prop_map(Edit::DupLine),
    ]
}

fn apply(mut s: String, edits: &[Edit]) -> String {
    let boundary = |s: &str, at: usize| {
        let mut i = if s.is_empty() { 0 } else { at % (s.len() + 1) };
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for e in edits {
        match e {
            Edit::Delete(a, n) => {
                let i = boundary(&s, *a);
                let j = boundary(&s, (i + n).min(s.len()));
                s.replace_range(i..j.max(i), "");
            }
            Edit::Insert(a, t) => {
                let i = boundary(&s, *a);
                s.insert_str(i, t);
            }
            Edit::DupLine(a) => {
                let lines: Vec<&str> = s.split_inclusive('\n').collect();
                if !lines.is_empty() {
                    let k = a % lines.len();
                    let mut out = String::new();
                    for (i, l) in lines.iter().enumerate() {
                        out.push_str(l);
                        if i == k {
                            out.push_str(l);
                        }
                    }
                    s = out;
                }
            }
        }
    }
    s
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_token_soup_never_panics(text in soup()) {
        check(&text);
    }

    #[test]
    fn mutated_dockerfiles_never_panic(idx in any::<usize>(), edits in prop::collection::vec(edit(), 1..8)) {
        let corpus = corpus();
        let base = corpus[idx % corpus.len()].clone();
        check(&apply(base, &edits));
    }
}

#[test]
fn pathological_inputs() {
    let deep = format!("FROM a\nCMD {}\"x\"{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(dockerfile::parse(&deep, Path::new("Dockerfile")).is_err());
    let onbuild = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(100_000));
    assert!(dockerfile::parse(&onbuild, Path::new("Dockerfile")).is_err());
    let long = format!("FROM a\nRUN {}\n", "x \\\n".repeat(50_000));
    assert!(dockerfile::parse(&long, Path::new("Dockerfile")).is_ok());
    let heredocs = format!("FROM a\nRUN {}\n", "<<E ".repeat(1000));
    assert!(dockerfile::parse(&heredocs, Path::new("Dockerfile")).is_err());
    for s in ["\\", "`", "\u{feff}", "\r", "\n\\", "# escape=`\n`", "FROM a\nRUN <<", "FROM a\nRUN <<-\n"] {
        check(s);
    }
}
