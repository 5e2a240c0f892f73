//! `rbuild parse`: human output, --json, --dump, and the rendered error with exit code 1.

use std::process::Command;

fn rbuild(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn parse_prints_stages_json_and_dump() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("Dockerfile");
    std::fs::write(&f, "ARG V=1\nFROM alpine:$V AS build\nRUN echo \\\n  hi\nFROM scratch\nCOPY --from=build /a /a\n").unwrap();
    let f = f.to_str().unwrap();
    let (code, out, err) = rbuild(&["parse", "-f", f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stage 0 \"build\" from alpine:$V:"), "{out}");
    assert!(out.contains("3-4  RUN echo   hi"), "{out}");
    let (code, out, _) = rbuild(&["parse", "-f", f, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stages"][1]["instructions"][0]["instruction"]["kind"], "copy");
    assert_eq!(v["stages"][1]["instructions"][0]["instruction"]["from"], "build");
    let (code, out, _) = rbuild(&["parse", "-f", f, "--dump"]);
    assert_eq!(code, 0);
    assert_eq!(out, "(arg \"V=1\")\n(from \"alpine:$V\" \"AS\" \"build\")\n(run \"echo   hi\")\n(from \"scratch\")\n(copy [\"--from=build\"] \"/a\" \"/a\")\n");
}

#[test]
fn parse_error_is_rendered_with_caret_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("Dockerfile");
    std::fs::write(&f, "FROM a\nCOPY  x\n").unwrap();
    let (code, out, err) = rbuild(&["parse", "-f", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let want = format!(
        "error: {}:2:7: COPY requires at least two arguments, but got one: expected COPY <src>... <dest>\n  2 | COPY  x\n    |       ^\n",
        f.display()
    );
    assert_eq!(err, want);
}
