//! Malformed Dockerfiles: each error names the instruction, says what was expected, and
//! points at the right line and column (`Dockerfile:LINE:COL: message` + line + caret).

use std::path::Path;

use rbuild::dockerfile;

/// (input, line, col, message)
const CASES: &[(&str, usize, usize, &str)] = &[
    ("FROM a\nCOPY foo\n", 2, 6, "COPY requires at least two arguments, but got one: expected COPY <src>... <dest>"),
    ("FROM a\nCOPY\n", 2, 5, "COPY requires at least two arguments, but got none: expected COPY <src>... <dest>"),
    ("FROM a\n\tadd\tfoo\n", 2, 6, "ADD requires at least two arguments, but got one: expected ADD <src>... <dest>"),
    ("FROM a\nCOPY --user=me a b\n", 2, 6, "unknown flag --user for COPY: expected one of --from, --chown, --chmod, --link, --parents, --exclude"),
    ("FROM a\nCMD --doit x\n", 2, 5, "unknown flag --doit: CMD takes no flags"),
    ("FROMM alpine\n", 1, 1, "unknown instruction FROMM: did you mean FROM?"),
    ("FROM a\nFOOBAR x\n", 2, 1, "unknown instruction FOOBAR: expected one of FROM, RUN, CMD, LABEL, EXPOSE, ENV, ADD, COPY, ENTRYPOINT, VOLUME, USER, WORKDIR, ARG, ONBUILD, STOPSIGNAL, HEALTHCHECK, SHELL, MAINTAINER"),
    ("RUN echo hi\n", 1, 1, "RUN before the first FROM: expected FROM <image> first (only ARG may come before FROM)"),
    ("\n# only a comment\n", 3, 1, "file with no instructions: expected at least a FROM line"),
    ("", 1, 1, "file with no instructions: expected at least a FROM line"),
    ("FROM a\nENV PATH\n", 2, 5, "ENV must have two arguments: expected ENV PATH=<value> or ENV PATH <value>"),
    ("FROM a\nENV a=1 b\n", 2, 9, "ENV cannot find = in \"b\": expected ENV <key>=<value>..."),
    ("FROM a\nCMD [\"echo\", [\"nested\"]]\n", 2, 5, "CMD exec form must be a JSON array of strings: expected CMD [\"executable\", \"param\"...]"),
    ("FROM a\nRUN [\"a\", 1]\n", 2, 5, "RUN exec form must be a JSON array of strings: expected RUN [\"executable\", \"param\"...]"),
    ("FROM a b\n", 1, 6, "FROM requires either one or three arguments: expected FROM [--platform=<platform>] <image> [AS <name>]"),
    ("FROM a AS 1bad\n", 1, 6, "invalid stage name \"1bad\": expected a letter then letters, digits, '-', '_' or '.'"),
    ("FROM a AS x\nFROM b AS X\n", 2, 6, "duplicate stage name \"x\" (first used on line 1): give each stage its own name"),
    ("FROM a\nRUN --network=bogus true\n", 2, 5, "unsupported network mode \"bogus\" in RUN: expected --network=default, none or host"),
    ("FROM a\nRUN --mount=type=cache true\n", 2, 5, "invalid --mount=\"type=cache\" in RUN: type=cache requires a target: add target=<path>"),
    ("FROM a\nRUN x \\\n  --mount=y\nRUN --mount=type=nfs,target=/x true\n", 4, 5, "invalid --mount=\"type=nfs,target=/x\" in RUN: unknown mount type \"nfs\": expected bind, cache, tmpfs, secret or ssh"),
    ("FROM a\nRUN <<EOF\necho\n", 2, 5, "unterminated heredoc in RUN: expected a line \"EOF\" to end it before the end of the file"),
    ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", 2, 13, "invalid duration \"5\" for --interval of HEALTHCHECK: expected a duration like 30s, 1m30s or 500ms"),
    ("FROM a\nHEALTHCHECK CONNECT x\n", 2, 13, "unknown type \"CONNECT\" in HEALTHCHECK: expected CMD or NONE"),
    ("FROM a\nHEALTHCHECK NONE x\n", 2, 13, "HEALTHCHECK NONE takes no arguments or flags: expected HEALTHCHECK NONE"),
    ("FROM a\nCOPY --link=maybe a b\n", 2, 6, "flag --link of COPY expects true or false, but got \"maybe\""),
    ("FROM a\nCOPY --from a b\n", 2, 6, "flag --from of COPY needs a value: expected --from=<value>"),
    ("FROM a\nCOPY --exclude .env . /app/\n", 2, 6, "flag --exclude of COPY needs a value: expected --exclude=<value>"),
    ("FROM a\nADD --exclude= . /app/\n", 2, 5, "flag --exclude of ADD needs a value: expected --exclude=<value>"),
    ("FROM a\nRUN --mount true\n", 2, 5, "flag --mount of RUN needs a value: expected --mount=<value>"),
    ("FROM a\nCOPY --from=x --from=y a b\n", 2, 15, "duplicate flag --from in COPY: give it once"),
    ("FROM a\nSHELL sh -c\n", 2, 7, "SHELL requires the arguments in JSON form: expected SHELL [\"executable\", \"param\"...]"),
    ("FROM a\nONBUILD FROM b\n", 2, 9, "FROM isn't allowed as an ONBUILD trigger: expected ONBUILD <instruction> with another instruction"),
    ("FROM a\nONBUILD COPY x\n", 2, 14, "COPY requires at least two arguments, but got one: expected COPY <src>... <dest>"),
    ("# escape=x\nFROM a\n", 1, 10, "invalid escape character \"x\" in escape directive: expected ` or \\"),
    ("# escape=`\n# ESCAPE=\\\nFROM a\n", 2, 1, "only one escape parser directive can be used: remove this line or the earlier one"),
    ("FROM a\nEXPOSE\n", 2, 7, "EXPOSE requires at least one argument: expected EXPOSE <port>[/<protocol>]..."),
    ("FROM a\nUSER\n", 2, 5, "USER requires exactly one argument: expected USER <user>[:<group>]"),
    ("FROM a\nARG\n", 2, 4, "ARG requires at least one argument: expected ARG <name>[=<default value>]"),
    ("FROM a\nRUN\n", 2, 4, "RUN requires at least one argument: expected RUN <command> or RUN [\"executable\", \"param\"...]"),
    ("FROM a\nRUN echo \\\n  a &&\\\n  b\nCOPY \\\n  x\n", 6, 3, "COPY requires at least two arguments, but got one: expected COPY <src>... <dest>"),
    ("FROM a\r\nCOPY  only\r\n", 2, 7, "COPY requires at least two arguments, but got one: expected COPY <src>... <dest>"),
];

#[test]
fn malformed_inputs_report_line_col_and_message() {
    assert!(CASES.len() >= 15);
    let mut bad = Vec::new();
    for (input, line, col, message) in CASES {
        match dockerfile::parse(input, Path::new("Dockerfile")) {
            Ok(_) => bad.push(format!("{input:?}: parsed without error")),
            Err(e) => {
                let got = (e.line, e.col, e.message.as_str());
                if got != (*line, *col, *message) {
                    bad.push(format!("{input:?}:\n  want {line}:{col}: {message}\n  got  {}:{}: {}", e.line, e.col, e.message));
                }
                let rendered = e.to_string();
                let first = rendered.lines().next().unwrap_or("");
                assert_eq!(first, format!("Dockerfile:{line}:{col}: {message}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn rendering_shows_line_and_caret() {
    let e = dockerfile::parse("FROM a\nCOPY  --chmod=7 x\n", Path::new("sub/Dockerfile.dev")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sub/Dockerfile.dev:2:17: COPY requires at least two arguments, but got one: expected COPY <src>... <dest>\n  2 | COPY  --chmod=7 x\n    |                 ^"
    );
    // The column counts characters, not bytes, and tabs are kept under the caret.
    let e = dockerfile::parse("FROM ä\n\tCOPY ü\n", Path::new("Dockerfile")).unwrap_err();
    assert_eq!(e.col, 7);
    assert!(e.to_string().ends_with("  2 | \tCOPY ü\n    | \t     ^"), "{e}");
}
