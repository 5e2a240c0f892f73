//! The typed AST for each instruction of the Dockerfile reference, heredocs, directives,
//! continuations, CRLF and BOM.

use std::path::Path;
use std::time::Duration;

use rbuild::dockerfile::ast::*;
use rbuild::dockerfile::{self, Dockerfile};

fn parse(text: &str) -> Dockerfile {
    dockerfile::parse(text, Path::new("Dockerfile")).unwrap_or_else(|e| panic!("{e}"))
}

/// The instructions of the first stage.
fn body(text: &str) -> Vec<Instruction> {
    parse(text).stages.remove(0).instructions.into_iter().map(|n| n.instruction).collect()
}

fn one(text: &str) -> Instruction {
    let mut v = body(&format!("FROM scratch\n{text}\n"));
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

#[test]
fn from_forms() {
    let df = parse("ARG V=1\nFROM --platform=linux/amd64 alpine:$V AS Build\nFROM build\nfrom scratch as final\n");
    assert_eq!(df.global_args.len(), 1);
    assert_eq!(df.stages.len(), 3);
    assert_eq!(
        df.stages[0].from,
        From { image: "alpine:$V".into(), name: Some("build".into()), platform: Some("linux/amd64".into()) }
    );
    assert_eq!(df.stages[1].from.image, "build");
    assert_eq!(df.stages[2].name.as_deref(), Some("final"));
    assert_eq!(df.stages[2].index, 2);
}

#[test]
fn run_forms_and_flags() {
    let i = one("RUN --mount=type=cache,target=/root/.cache,id=pip --mount=type=secret,id=tok,required --network=none --security=insecure pip install x");
    let Instruction::Run(r) = i else { panic!() };
    assert_eq!(r.command, CommandLine::Shell("pip install x".into()));
    assert_eq!(r.network, Some(NetworkMode::None));
    assert_eq!(r.security, Some(Security::Insecure));
    assert_eq!(r.mounts.len(), 2);
    assert!(matches!(&r.mounts[0], Mount::Cache { target, id: Some(id), .. } if target == "/root/.cache" && id == "pip"));
    assert!(matches!(&r.mounts[1], Mount::Secret { id: Some(id), required: true, .. } if id == "tok"));
    let Instruction::Run(r) = one(r#"RUN ["sh", "-c", "echo $HOME"]"#) else { panic!() };
    assert_eq!(r.command, CommandLine::Exec(vec!["sh".into(), "-c".into(), "echo $HOME".into()]));
    let Instruction::Run(r) = one("RUN --mount=type=tmpfs,dst=/t --mount=target=/src,from=build,rw true") else { panic!() };
    assert_eq!(r.mounts[0], Mount::Tmpfs { target: "/t".into(), size: None });
    assert_eq!(
        r.mounts[1],
        Mount::Bind { target: "/src".into(), source: None, from: Some("build".into()), readwrite: true }
    );
    let Instruction::Run(r) = one("RUN --mount=type=ssh echo") else { panic!() };
    assert!(matches!(r.mounts[0], Mount::Ssh { .. }));
}

#[test]
fn invalid_json_falls_back_to_shell() {
    assert_eq!(one("CMD ['a', 'b']"), Instruction::Cmd(CommandLine::Shell("['a', 'b']".into())));
    assert_eq!(one("ENTRYPOINT [\"a\""), Instruction::Entrypoint(CommandLine::Shell("[\"a\"".into())));
    assert_eq!(one("CMD []"), Instruction::Cmd(CommandLine::Exec(vec![])));
}

#[test]
fn env_label_arg_forms() {
    let Instruction::Env(e) = one("ENV a=1 b=\"x y\" c=z\\ w") else { panic!() };
    assert!(!e.legacy);
    let kv: Vec<(&str, &str)> = e.pairs.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    assert_eq!(kv, [("a", "1"), ("b", "\"x y\""), ("c", "z\\ w")]);
    let Instruction::Env(e) = one("ENV PATH /usr/bin:$PATH extra") else { panic!() };
    assert!(e.legacy);
    assert_eq!(e.pairs, [KeyValue { key: "PATH".into(), value: "/usr/bin:$PATH extra".into() }]);
    let Instruction::Label(l) = one("LABEL \"com.example.vendor\"=\"ACME\" version=1.0") else { panic!() };
    assert_eq!(l.pairs[0].key, "\"com.example.vendor\"");
    let Instruction::Arg(a) = one("ARG A B=2 C=\"x y\"") else { panic!() };
    assert_eq!(
        a.args,
        [
            ArgDecl { name: "A".into(), default: None },
            ArgDecl { name: "B".into(), default: Some("2".into()) },
            ArgDecl { name: "C".into(), default: Some("\"x y\"".into()) },
        ]
    );
}

#[test]
fn copy_and_add_flags() {
    let Instruction::Copy(c) = one("COPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b /dst/") else { panic!() };
    assert_eq!(c.sources, [Source::Path("a".into()), Source::Path("b".into())]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", "tmp"]);
    let Instruction::Copy(c) = one("COPY --link=false [\"a b\", \"/c d/\"]") else { panic!() };
    assert!(!c.link && c.json);
    assert_eq!(c.dest, "/c d/");
    let Instruction::Add(a) = one("ADD --keep-git-dir=true --checksum=sha256:abc --unpack=false https://x/y.tar /z") else { panic!() };
    assert!(a.keep_git_dir);
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(a.unpack, Some(false));
}

#[test]
fn simple_instructions() {
    assert_eq!(one("USER app:app"), Instruction::User(Text { value: "app:app".into() }));
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir(Text { value: "/a b".into() }));
    assert_eq!(one("STOPSIGNAL SIGKILL"), Instruction::Stopsignal(Text { value: "SIGKILL".into() }));
    assert_eq!(one("MAINTAINER Jane <j@x>"), Instruction::Maintainer(Text { value: "Jane <j@x>".into() }));
    assert_eq!(one("EXPOSE 80/tcp 443"), Instruction::Expose(Words { words: vec!["80/tcp".into(), "443".into()] }));
    assert_eq!(one("VOLUME [\"/a\", \"/b\"]"), Instruction::Volume(Words { words: vec!["/a".into(), "/b".into()] }));
    assert_eq!(one("VOLUME /a /b"), Instruction::Volume(Words { words: vec!["/a".into(), "/b".into()] }));
    assert_eq!(
        one("SHELL [\"powershell\", \"-command\"]"),
        Instruction::Shell(Words { words: vec!["powershell".into(), "-command".into()] })
    );
}

#[test]
fn onbuild_nested() {
    let Instruction::Onbuild(o) = one("ONBUILD COPY --chown=1 . /app") else { panic!() };
    assert!(matches!(*o.trigger, Instruction::Copy(ref c) if c.chown.as_deref() == Some("1")));
    assert_eq!(o.original, "COPY --chown=1 . /app");
    let df = parse("FROM x\nonbuild run [\"a\"]\n");
    assert_eq!(df.dump(), "(from \"x\")\n(onbuild (run \"a\"))");
}

#[test]
fn healthcheck() {
    assert_eq!(one("HEALTHCHECK NONE"), Instruction::Healthcheck(Healthcheck::None));
    let h = one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1");
    assert_eq!(
        h,
        Instruction::Healthcheck(Healthcheck::Cmd {
            command: CommandLine::Shell("curl -f http://localhost/ || exit 1".into()),
            interval: Some(Duration::from_secs(300)),
            timeout: Some(Duration::from_secs(3)),
            start_period: Some(Duration::from_secs(1)),
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
        })
    );
    let Instruction::Healthcheck(Healthcheck::Cmd { command, .. }) = one("HEALTHCHECK cmd [\"/bin/check\"]") else { panic!() };
    assert_eq!(command, CommandLine::Exec(vec!["/bin/check".into()]));
}

#[test]
fn heredocs() {
    let text = "FROM x\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN <<-'END' cat >/f\n\tline1\n\t\tline2\n\tEND\nCOPY <<A <<\"B\" /dest/\na-body\nA\nb-body $X\nB\nRUN 3<<X cat <&3\nx\nX\n";
    let df = parse(text);
    let ins = &df.stages[0].instructions;
    assert_eq!(ins.len(), 4);
    let Instruction::Run(r) = &ins[0].instruction else { panic!() };
    assert_eq!(r.command, CommandLine::Shell("<<EOF".into()));
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].name, "EOF");
    assert_eq!(r.heredocs[0].content, "echo $HOME\n  indented\n");
    assert!(r.heredocs[0].expand && !r.heredocs[0].chomp);
    assert_eq!((ins[0].span().start.line, ins[0].span().end.line), (2, 5));
    let hs = r.heredocs[0].span;
    assert_eq!((hs.start.line, hs.start.col, hs.end.col), (2, 5, 10));
    let Instruction::Run(r) = &ins[1].instruction else { panic!() };
    assert_eq!(r.heredocs[0].name, "END");
    assert_eq!(r.heredocs[0].content, "line1\nline2\n");
    assert!(!r.heredocs[0].expand && r.heredocs[0].chomp);
    let Instruction::Copy(c) = &ins[2].instruction else { panic!() };
    assert_eq!(c.dest, "/dest/");
    let [Source::Heredoc(a), Source::Heredoc(b)] = c.sources.as_slice() else { panic!("{:?}", c.sources) };
    assert_eq!((a.name.as_str(), a.content.as_str(), a.expand), ("A", "a-body\n", true));
    assert_eq!((b.name.as_str(), b.content.as_str(), b.expand), ("B", "b-body $X\n", false));
    let Instruction::Run(r) = &ins[3].instruction else { panic!() };
    assert_eq!(r.heredocs[0].fd, Some(3));
    // Heredoc markers in exec form or quoted are not heredocs.
    let Instruction::Run(r) = one("RUN echo \"<<EOF\"") else { panic!() };
    assert!(r.heredocs.is_empty());
}

#[test]
fn continuations_comments_crlf_bom() {
    let text = "\u{feff}# syntax=docker/dockerfile:1\r\nFROM alpine\r\nRUN echo a \\\r\n# a comment\r\n\r\n    b\r\nrun echo c\r\n";
    let df = parse(text);
    assert_eq!(df.directives.syntax.as_ref().unwrap().value, "docker/dockerfile:1");
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].original(), "RUN echo a     b");
    assert_eq!((ins[0].span().start.line, ins[0].span().end.line), (3, 6));
    assert_eq!(ins[1].original(), "run echo c");
    assert_eq!(ins[1].raw.keyword, "run");
}

#[test]
fn backtick_escape() {
    let df = parse("# escape=`\nFROM windows\nRUN dir C:\\ `\n  /w\nCOPY a\\b c:\\d\n");
    assert_eq!(df.directives.escape, '`');
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].original(), "RUN dir C:\\   /w");
    assert_eq!(ins[1].raw.args, ["a\\b", "c:\\d"]);
}

#[test]
fn spans_are_one_based() {
    let df = parse("FROM a\n\n  RUN x \\\n  y\n");
    let n = &df.stages[0].instructions[0];
    assert_eq!(n.span().start, Position { line: 3, col: 3 });
    assert_eq!(n.span().end, Position { line: 4, col: 4 });
}

#[test]
fn json_output_is_serializable() {
    let df = parse("FROM a AS b\nRUN --mount=type=cache,target=/c x\nHEALTHCHECK CMD true\n");
    let v = serde_json::to_value(&df).unwrap();
    assert_eq!(v["stages"][0]["name"], "b");
    assert_eq!(v["stages"][0]["instructions"][0]["instruction"]["kind"], "run");
}
