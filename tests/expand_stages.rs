//! ARG/ENV scoping and the stage graph (`plan::stages`), one test per rule.
//!
//! The Dockerfiles are turned into ASTs by `mini_parse` below, a deliberately tiny line
//! splitter for the instructions these tests use (the real parser is tested on its own);
//! words never contain spaces here.

use std::path::PathBuf;

use rbuild::dockerfile::ast::{
    ArgDecl, Args, CacheSharing, CommandLine, Copy, Directives, Dockerfile, From, Instruction,
    KeyValue, KeyValues, Mount, Node, Onbuild, Position, RawNode, Run, Source, Span, Stage, Text,
    Words,
};
use rbuild::plan::stages::{
    plan_stages, resolve_stages, Base, FromRef, Platform, StageError, StageOptions, StagePlan,
    DEFAULT_PATH,
};

fn span(line: usize) -> Span {
    Span {
        start: Position { line, col: 1 },
        end: Position { line, col: 2 },
    }
}

fn node(line: usize, text: &str, instruction: Instruction) -> Node {
    let keyword = text.split_whitespace().next().unwrap_or("").to_string();
    Node {
        raw: RawNode {
            span: span(line),
            original: text.to_string(),
            keyword,
            flags: Vec::new(),
            args: Vec::new(),
            json: false,
            heredocs: Vec::new(),
            onbuild: None,
        },
        instruction,
    }
}

fn pairs(words: &[&str]) -> KeyValues {
    KeyValues {
        pairs: words
            .iter()
            .map(|w| {
                let (k, v) = w.split_once('=').expect("k=v");
                KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                }
            })
            .collect(),
        legacy: false,
    }
}

fn flag(words: &mut Vec<&str>, name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    let pos = words.iter().position(|w| w.starts_with(&prefix))?;
    Some(words.remove(pos)[prefix.len()..].to_string())
}

fn instruction(text: &str) -> Instruction {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let keyword = words.remove(0).to_ascii_uppercase();
    let rest = text.trim_start()[keyword.len()..].trim().to_string();
    let s = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    match keyword.as_str() {
        "ARG" => Instruction::Arg(Args {
            args: words
                .iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: w.to_string(),
                        default: None,
                    },
                })
                .collect(),
        }),
        "ENV" => Instruction::Env(pairs(&words)),
        "LABEL" => Instruction::Label(pairs(&words)),
        "COPY" => {
            let from = flag(&mut words, "from");
            let chown = flag(&mut words, "chown");
            let dest = words.pop().expect("dest").to_string();
            Instruction::Copy(Copy {
                sources: words.iter().map(|w| Source::Path(w.to_string())).collect(),
                dest,
                from,
                chown,
                chmod: None,
                link: false,
                parents: false,
                exclude: Vec::new(),
                json: false,
            })
        }
        "RUN" => {
            let mut mounts = Vec::new();
            while let Some(m) = flag(&mut words, "mount") {
                let get = |k: &str| {
                    m.split(',')
                        .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_string))
                };
                mounts.push(match get("type").as_deref() {
                    Some("cache") => Mount::Cache {
                        target: get("target").unwrap_or_default(),
                        id: get("id"),
                        sharing: CacheSharing::Shared,
                        from: get("from"),
                        source: get("source"),
                        readonly: false,
                        mode: None,
                        uid: None,
                        gid: None,
                    },
                    _ => Mount::Bind {
                        target: get("target").unwrap_or_default(),
                        source: get("source"),
                        from: get("from"),
                        readwrite: false,
                    },
                });
            }
            Instruction::Run(Run {
                command: CommandLine::Shell(words.join(" ")),
                heredocs: Vec::new(),
                mounts,
                network: None,
                security: None,
            })
        }
        "CMD" => Instruction::Cmd(CommandLine::Shell(rest)),
        "EXPOSE" => Instruction::Expose(Words { words: s(&words) }),
        "VOLUME" => Instruction::Volume(Words { words: s(&words) }),
        "USER" => Instruction::User(Text { value: rest }),
        "WORKDIR" => Instruction::Workdir(Text { value: rest }),
        "STOPSIGNAL" => Instruction::Stopsignal(Text { value: rest }),
        "ONBUILD" => Instruction::Onbuild(Onbuild {
            trigger: Box::new(instruction(&rest)),
            original: rest.clone(),
        }),
        other => panic!("mini_parse does not know {other}"),
    }
}

/// A tiny Dockerfile → AST converter for these tests.
fn mini_parse(text: &str) -> Dockerfile {
    let mut df = Dockerfile {
        path: PathBuf::from("Dockerfile"),
        directives: Directives::default(),
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = idx + 1;
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words[0].eq_ignore_ascii_case("FROM") {
            words.remove(0);
            let platform = flag(&mut words, "platform");
            let name = match words.as_slice() {
                [_, kw, name] if kw.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
                _ => None,
            };
            let from = From {
                image: words[0].to_string(),
                name: name.clone(),
                platform,
            };
            df.stages.push(Stage {
                index: df.stages.len(),
                name,
                from_node: node(lineno, line, Instruction::From(from.clone())),
                from,
                instructions: Vec::new(),
            });
            continue;
        }
        let n = node(lineno, line, instruction(line));
        match df.stages.last_mut() {
            Some(st) => st.instructions.push(n),
            None => df.global_args.push(n),
        }
    }
    df
}

fn amd64() -> StageOptions {
    let p = Platform {
        os: "linux".into(),
        arch: "amd64".into(),
        variant: String::new(),
    };
    StageOptions {
        build_args: Vec::new(),
        target: None,
        build_platform: p.clone(),
        target_platform: p,
    }
}

fn with_args(args: &[(&str, &str)]) -> StageOptions {
    let mut o = amd64();
    o.build_args = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    o
}

fn no_image_env(_: &str) -> Vec<String> {
    Vec::new()
}

fn plan(text: &str, opts: &StageOptions) -> StagePlan {
    let df = mini_parse(text);
    plan_stages(&df, opts, &no_image_env).unwrap_or_else(|e| panic!("{e}"))
}

fn plan_err(text: &str, opts: &StageOptions) -> StageError {
    let df = mini_parse(text);
    match plan_stages(&df, opts, &no_image_env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// The expanded instruction `n` of stage `s`.
fn expanded(p: &StagePlan, s: usize, n: usize) -> &Instruction {
    &p.scoped[s].as_ref().expect("stage is needed").instructions[n].expanded
}

fn text_of(i: &Instruction) -> &str {
    match i {
        Instruction::User(t) | Instruction::Workdir(t) | Instruction::Stopsignal(t) => &t.value,
        other => panic!("not a text instruction: {other:?}"),
    }
}

fn env_of(i: &Instruction) -> Vec<(String, String)> {
    match i {
        Instruction::Env(kv) | Instruction::Label(kv) => kv
            .pairs
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        other => panic!("not ENV/LABEL: {other:?}"),
    }
}

#[test]
fn global_args_expand_from_lines() {
    let text = "ARG BASE=busybox\nARG TAG=1.36\nFROM ${BASE}:${TAG}\nRUN true\n";
    let p = plan(text, &amd64());
    assert_eq!(p.stages.stages[0].base, Base::Image("busybox:1.36".into()));
    let p = plan(text, &with_args(&[("TAG", "latest")]));
    assert_eq!(
        p.stages.stages[0].base,
        Base::Image("busybox:latest".into())
    );
    // A global default may use earlier globals and the platform ARGs.
    let p = plan("ARG A=x\nARG B=${A}-$TARGETARCH\nFROM img:$B\n", &amd64());
    assert_eq!(p.stages.stages[0].base, Base::Image("img:x-amd64".into()));
}

#[test]
fn global_args_are_not_visible_in_stages_until_redeclared() {
    let text = "ARG V=1\nFROM scratch\nWORKDIR /a$V\nARG V\nWORKDIR /b$V\n";
    let p = plan(text, &amd64());
    assert_eq!(text_of(expanded(&p, 0, 0)), "/a");
    assert_eq!(text_of(expanded(&p, 0, 2)), "/b1");
    // With --build-arg the re-declared ARG takes the build arg.
    let p = plan(text, &with_args(&[("V", "9")]));
    assert_eq!(text_of(expanded(&p, 0, 2)), "/b9");
    // A global ARG without value stays unset, also when re-declared.
    let p = plan("ARG V\nFROM scratch\nARG V\nUSER u$V\n", &amd64());
    assert_eq!(text_of(expanded(&p, 0, 1)), "u");
}

#[test]
fn arg_defaults_and_build_arg_overrides() {
    let text = "FROM scratch\nARG A=one B=${A}-two\nUSER $A:$B\n";
    let p = plan(text, &amd64());
    assert_eq!(text_of(expanded(&p, 0, 1)), "one:one-two");
    // The expanded ARG instruction carries the values taken.
    match expanded(&p, 0, 0) {
        Instruction::Arg(a) => {
            assert_eq!(a.args[0].default.as_deref(), Some("one"));
            assert_eq!(a.args[1].default.as_deref(), Some("one-two"));
        }
        other => panic!("{other:?}"),
    }
    let p = plan(text, &with_args(&[("A", "x")]));
    assert_eq!(text_of(expanded(&p, 0, 1)), "x:x-two");
    // A build arg value is taken literally, not expanded.
    let p = plan(text, &with_args(&[("B", "$A")]));
    assert_eq!(text_of(expanded(&p, 0, 1)), "one:$A");
    // The last of repeated --build-args wins.
    let p = plan(text, &with_args(&[("A", "1"), ("A", "2")]));
    assert_eq!(text_of(expanded(&p, 0, 1)), "2:2-two");
}

#[test]
fn build_args_only_set_declared_args_and_unused_ones_are_reported() {
    let text = "ARG G\nFROM scratch\nARG USED\nUSER $NOTDECLARED$USED\n";
    let opts = with_args(&[
        ("USED", "u"),
        ("NOTDECLARED", "x"),
        ("G", "g"),
        ("HTTP_PROXY", "http://proxy:3128"),
        ("TARGETARCH", "amd64"),
    ]);
    let p = plan(text, &opts);
    assert_eq!(text_of(expanded(&p, 0, 1)), "u");
    assert_eq!(p.stages.unused_build_args, ["NOTDECLARED"]);
    // ARGs of stages the target does not need do not consume build args.
    let text = "FROM scratch AS a\nARG ONLY_A\nFROM scratch AS b\nRUN true\n";
    let mut opts = with_args(&[("ONLY_A", "1")]);
    opts.target = Some("b".into());
    assert_eq!(plan(text, &opts).stages.unused_build_args, ["ONLY_A"]);
}

#[test]
fn env_and_arg_share_one_ordered_scope() {
    // ENV after ARG wins (the documented case).
    let p = plan(
        "FROM scratch\nARG V=arg\nENV V=env\nUSER $V\n",
        &with_args(&[("V", "cli")]),
    );
    assert_eq!(text_of(expanded(&p, 0, 2)), "env");
    // ARG after ENV wins, as in BuildKit; the image Env keeps the ENV value.
    let p = plan("FROM scratch\nENV V=env\nARG V=arg\nUSER $V\n", &amd64());
    let user = &p.scoped[0].as_ref().unwrap().instructions[2];
    assert_eq!(text_of(&user.expanded), "arg");
    assert!(user.scope.image_env.contains(&("V".into(), "env".into())));
    // ARG values never enter the image Env.
    let st = p.scoped[0].as_ref().unwrap();
    assert!(!st.final_scope.image_env.iter().any(|(_, v)| v == "arg"));
    assert_eq!(
        st.final_scope.arg_values(),
        [("V".to_string(), "arg".to_string())]
    );
}

#[test]
fn all_words_of_one_env_see_the_scope_before_it() {
    let p = plan(
        "FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
        &amd64(),
    );
    assert_eq!(
        env_of(expanded(&p, 0, 1)),
        [("abc".into(), "bye".into()), ("def".into(), "hello".into())]
    );
    assert_eq!(env_of(expanded(&p, 0, 2)), [("ghi".into(), "bye".into())]);
}

#[test]
fn base_image_env_and_default_path() {
    let df =
        mini_parse("FROM img\nENV PATH=/opt/bin:$PATH\nWORKDIR $HOME\nFROM scratch\nUSER $PATH\n");
    let image_env = |r: &str| -> Vec<String> {
        assert_eq!(r, "img");
        vec!["PATH=/bin".into(), "HOME=/root".into()]
    };
    let p = plan_stages(&df, &amd64(), &image_env).unwrap();
    // Stage 1 is the target; stage 0 is not needed and not expanded.
    assert!(p.scoped[0].is_none());
    assert_eq!(text_of(expanded(&p, 1, 0)), DEFAULT_PATH);
    let mut opts = amd64();
    opts.target = Some("0".into());
    assert!(matches!(
        plan_stages(&df, &opts, &image_env),
        Err(StageError::UnknownTarget { .. })
    ));
    let df = mini_parse("FROM img AS first\nENV PATH=/opt/bin:$PATH\nWORKDIR $HOME\n");
    let p = plan_stages(&df, &amd64(), &image_env).unwrap();
    assert_eq!(
        env_of(expanded(&p, 0, 0)),
        [("PATH".into(), "/opt/bin:/bin".into())]
    );
    assert_eq!(text_of(expanded(&p, 0, 1)), "/root");
}

#[test]
fn stage_from_stage_inherits_env_and_args() {
    let text =
        "FROM scratch AS base\nARG VERSION=1.2\nENV APP=/app\nFROM base\nWORKDIR $APP/$VERSION\n";
    let p = plan(text, &amd64());
    assert_eq!(p.stages.stages[1].base, Base::Stage(0));
    assert_eq!(p.stages.order, [0, 1]);
    assert_eq!(text_of(expanded(&p, 1, 0)), "/app/1.2");
    let scope = &p.scoped[1].as_ref().unwrap().initial;
    assert_eq!(
        scope.args,
        [("VERSION".to_string(), Some("1.2".to_string()))]
    );
}

#[test]
fn predefined_proxy_args() {
    let text = "FROM scratch\nUSER x$HTTP_PROXY\nARG https_proxy\nUSER y$https_proxy\n";
    let opts = with_args(&[
        ("HTTP_PROXY", "http://p:1"),
        ("https_proxy", "http://p:2"),
        ("no_proxy", "local"),
    ]);
    let p = plan(text, &opts);
    // Usable without declaration: passed to RUN through proxy_env, not expanded into words.
    assert_eq!(text_of(expanded(&p, 0, 0)), "x");
    assert_eq!(
        p.stages.proxy_env,
        [
            ("HTTP_PROXY".to_string(), "http://p:1".to_string()),
            ("https_proxy".to_string(), "http://p:2".to_string()),
            ("no_proxy".to_string(), "local".to_string()),
        ]
    );
    // Declared, it is an ordinary ARG.
    assert_eq!(text_of(expanded(&p, 0, 2)), "yhttp://p:2");
    assert!(p.stages.unused_build_args.is_empty());
}

#[test]
fn platform_args_from_the_host_and_in_from_lines() {
    let mut opts = amd64();
    opts.target_platform = Platform::parse("linux/arm/v7").unwrap();
    let text = "FROM --platform=$BUILDPLATFORM img:$TARGETARCH AS b\nUSER $TARGETPLATFORM\nARG TARGETPLATFORM TARGETVARIANT BUILDOS\nUSER $TARGETPLATFORM-$TARGETVARIANT-$BUILDOS\n";
    let p = plan(text, &opts);
    let st = &p.stages.stages[0];
    assert_eq!(st.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(st.base, Base::Image("img:arm".into()));
    // Not visible in the stage until declared.
    assert_eq!(text_of(expanded(&p, 0, 0)), "");
    assert_eq!(text_of(expanded(&p, 0, 2)), "linux/arm/v7-v7-linux");
    // Host platform is something like linux/amd64.
    let host = Platform::host().to_string();
    assert!(host.starts_with("linux/"), "{host}");
}

#[test]
fn stage_names_are_case_insensitive_and_copy_from_resolves() {
    let text = "FROM scratch AS Builder\nRUN true\nFROM scratch\nCOPY --from=BUILDER /a /b\nCOPY --from=0 /c /d\nCOPY --from=alpine:3 /e /f\n";
    let p = plan(text, &amd64());
    let st = &p.stages.stages[1];
    assert_eq!(p.stages.stages[0].name.as_deref(), Some("builder"));
    assert_eq!(st.deps, [0]);
    assert_eq!(
        st.copy_from,
        [
            vec![FromRef::Stage(0)],
            vec![FromRef::Stage(0)],
            vec![FromRef::Image("alpine:3".into())]
        ]
    );
    assert_eq!(p.stages.order, [0, 1]);
    // --target by name, any case.
    let mut opts = amd64();
    opts.target = Some("BUILDER".into());
    let p = plan(text, &opts);
    assert_eq!((p.stages.target, p.stages.order.clone()), (0, vec![0]));
}

#[test]
fn run_mount_from_is_a_dependency() {
    let text = "FROM scratch AS deps\nRUN true\nFROM scratch\nRUN --mount=type=bind,from=deps,target=/d true\nRUN --mount=type=cache,target=/c,id=$ID true\n";
    let p = plan(text, &amd64());
    assert_eq!(p.stages.stages[1].deps, [0]);
    assert_eq!(p.stages.order, [0, 1]);
}

#[test]
fn only_stages_reachable_from_the_target_are_needed() {
    let text = "FROM scratch AS a\nRUN true\nFROM scratch AS b\nRUN true\nFROM a AS c\nCOPY --from=b /x /y\nFROM scratch AS d\nRUN true\n";
    // Default target: the last stage, which needs nothing else.
    let p = plan(text, &amd64());
    assert_eq!((p.stages.target, p.stages.order.clone()), (3, vec![3]));
    let mut opts = amd64();
    opts.target = Some("c".into());
    let p = plan(text, &opts);
    assert_eq!(p.stages.order, [0, 1, 2]);
    assert!(p.scoped[3].is_none());
    // Errors in stages that are not needed do not fail the build.
    let text = "FROM scratch AS broken\nUSER ${X:?must be set}\nFROM scratch\nRUN true\n";
    let p = plan(text, &amd64());
    assert_eq!(p.stages.order, [1]);
}

#[test]
fn from_refers_only_to_earlier_stages() {
    // `FROM later` is an image name when `later` is defined after it.
    let p = plan(
        "FROM later AS first\nFROM scratch AS later\nCOPY --from=first /a /b\n",
        &amd64(),
    );
    assert_eq!(p.stages.stages[0].base, Base::Image("later".into()));
}

#[test]
fn copy_from_errors_have_locations() {
    let msg = |text: &str| plan_err(text, &amd64()).to_string();
    let m = msg("FROM scratch AS a\nCOPY --from=a /x /y\n");
    assert!(
        m.starts_with("Dockerfile:2:1: COPY --from=a: circular dependency"),
        "{m}"
    );
    let m = msg("FROM scratch AS a\nCOPY --from=b /x /y\nFROM scratch AS b\n");
    assert!(
        m.starts_with("Dockerfile:2:1:") && m.contains("needs to be defined before"),
        "{m}"
    );
    let m = msg("FROM scratch\nCOPY --from=3 /x /y\n");
    assert!(
        m.starts_with("Dockerfile:2:1:") && m.contains("invalid stage index 3"),
        "{m}"
    );
    let m = msg("ARG S=a\nFROM scratch AS a\nFROM scratch\nCOPY --from=$S /x /y\n");
    assert!(
        m.starts_with("Dockerfile:4:1:") && m.contains("not supported for --from"),
        "{m}"
    );
}

#[test]
fn unknown_target_and_empty_files() {
    let mut opts = amd64();
    opts.target = Some("nope".into());
    let e = plan_err("FROM scratch AS a\nFROM scratch AS b\n", &opts);
    assert_eq!(
        e.to_string(),
        "target stage \"nope\" could not be found; the named stages are: a, b"
    );
    let df = mini_parse("ARG A=1\n");
    assert!(matches!(
        resolve_stages(&df, &amd64()),
        Err(StageError::NoStages { .. })
    ));
}

#[test]
fn blank_base_name_and_expansion_errors_are_located() {
    let e = plan_err("ARG IMG\nFROM $IMG\n", &amd64()).to_string();
    assert!(
        e.starts_with("Dockerfile:2:1: base name ($IMG) should not be blank"),
        "{e}"
    );
    let e = plan_err(
        "FROM scratch\nRUN true\nWORKDIR ${DIR:?set DIR}\n",
        &amd64(),
    )
    .to_string();
    assert_eq!(
        e,
        "Dockerfile:3:1: WORKDIR: failed to process \"${DIR:?set DIR}\": DIR: set DIR"
    );
    let e = plan_err("ARG V=${X:?}\nFROM scratch\n", &amd64()).to_string();
    assert!(
        e.starts_with("Dockerfile:1:1: ARG: failed to process"),
        "{e}"
    );
}

#[test]
fn what_is_and_is_not_expanded() {
    let text = "FROM scratch\nARG P=80 D=/data N=app\nEXPOSE $P/tcp 443\nVOLUME $D /logs\nLABEL name=$N $N.v=1\nSTOPSIGNAL SIG$N\nCOPY --chown=$N:$N $D/x /$N/\nRUN echo $N\nCMD echo $N\nONBUILD USER $N\n";
    let p = plan(text, &amd64());
    match expanded(&p, 0, 1) {
        Instruction::Expose(w) => assert_eq!(w.words, ["80/tcp", "443"]),
        other => panic!("{other:?}"),
    }
    match expanded(&p, 0, 2) {
        Instruction::Volume(w) => assert_eq!(w.words, ["/data", "/logs"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env_of(expanded(&p, 0, 3)),
        [("name".into(), "app".into()), ("app.v".into(), "1".into())]
    );
    assert_eq!(text_of(expanded(&p, 0, 4)), "SIGapp");
    match expanded(&p, 0, 5) {
        Instruction::Copy(c) => {
            assert_eq!(c.sources, [Source::Path("/data/x".into())]);
            assert_eq!(c.dest, "/app/");
            assert_eq!(c.chown.as_deref(), Some("app:app"));
        }
        other => panic!("{other:?}"),
    }
    // Shell text and ONBUILD triggers stay as written.
    match expanded(&p, 0, 6) {
        Instruction::Run(r) => assert_eq!(r.command, CommandLine::Shell("echo $N".into())),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        expanded(&p, 0, 7),
        &Instruction::Cmd(CommandLine::Shell("echo $N".into()))
    );
    match expanded(&p, 0, 8) {
        Instruction::Onbuild(o) => assert_eq!(o.original, "USER $N"),
        other => panic!("{other:?}"),
    }
    // Every instruction records the scope it ran in.
    let run = &p.scoped[0].as_ref().unwrap().instructions[6];
    assert_eq!(run.scope.get("N"), Some("app"));
    assert_eq!(run.scope.get("PATH"), Some(DEFAULT_PATH));
}

#[test]
fn empty_volume_is_an_error() {
    let e = plan_err("FROM scratch\nVOLUME $NOPE\n", &amd64()).to_string();
    assert!(
        e.starts_with("Dockerfile:2:1: VOLUME specified can not be an empty string"),
        "{e}"
    );
}

#[test]
fn duplicate_stage_names_warn_and_use_the_latest_before() {
    let text = "FROM scratch AS x\nENV W=1\nFROM scratch AS x\nENV W=2\nFROM x\nUSER $W\n";
    let p = plan(text, &amd64());
    assert_eq!(p.stages.stages[2].base, Base::Stage(1));
    assert_eq!(text_of(expanded(&p, 2, 0)), "2");
    assert_eq!(p.stages.warnings.len(), 1, "{:?}", p.stages.warnings);
}

#[test]
fn onbuild_triggers_of_a_base_stage_fire_in_the_child() {
    let text = "FROM scratch AS base\nONBUILD ENV FROM_TRIGGER=yes\nONBUILD COPY --from=tools /t /t\nFROM scratch AS tools\nRUN true\nFROM base\nUSER $FROM_TRIGGER\n";
    let p = plan(text, &amd64());
    let child = &p.stages.stages[2];
    assert_eq!(child.deps, [0, 1]);
    assert_eq!(child.trigger_from, [vec![], vec![FromRef::Stage(1)]]);
    assert_eq!(p.stages.order, [0, 1, 2]);
    let scoped = p.scoped[2].as_ref().unwrap();
    assert_eq!(scoped.triggers.len(), 2);
    assert_eq!(
        (scoped.triggers[0].index, scoped.triggers[0].span.start.line),
        (0, 2)
    );
    assert_eq!(text_of(expanded(&p, 2, 0)), "yes");
    // The base stage itself does not run its triggers.
    assert!(p.scoped[0].as_ref().unwrap().triggers.is_empty());
    assert_eq!(
        p.scoped[0]
            .as_ref()
            .unwrap()
            .final_scope
            .get("FROM_TRIGGER"),
        None
    );
}

/// The same rules through the real parser, with quotes, JSON forms and a backtick escape.
#[test]
fn real_parser_end_to_end() {
    let text = r#"# escape=`
ARG GO_VERSION=1.22
ARG BASE="busybox:local"
FROM ${BASE} AS build
ARG GO_VERSION
ENV GOPATH="/go path" `
    VERSION=${GO_VERSION:-none}
WORKDIR "$GOPATH/src"
COPY ["a b", "$GOPATH/"]
LABEL "org.example.version"="$VERSION" org.example.escaped=`$VERSION
RUN echo "$GOPATH"

FROM scratch
COPY --from=build /go /go
EXPOSE 8080/tcp "9090"
"#;
    let df = rbuild::dockerfile::parse(text, std::path::Path::new("Dockerfile"))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = plan_stages(&df, &amd64(), &|r| {
        assert_eq!(r, "busybox:local");
        vec!["PATH=/bin".to_string()]
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.stages.stages[0].base, Base::Image("busybox:local".into()));
    assert_eq!(p.stages.order, [0, 1]);
    assert_eq!(
        env_of(expanded(&p, 0, 1)),
        [
            ("GOPATH".into(), "/go path".into()),
            ("VERSION".into(), "1.22".into())
        ]
    );
    assert_eq!(text_of(expanded(&p, 0, 2)), "/go path/src");
    match expanded(&p, 0, 3) {
        Instruction::Copy(c) => {
            assert_eq!(c.sources, [Source::Path("a b".into())]);
            assert_eq!(c.dest, "/go path/");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env_of(expanded(&p, 0, 4)),
        [
            ("org.example.version".into(), "1.22".into()),
            ("org.example.escaped".into(), "$VERSION".into())
        ]
    );
    match expanded(&p, 1, 1) {
        Instruction::Expose(w) => assert_eq!(w.words, ["8080/tcp", "9090"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn arg_values_for_run_history() {
    let p = plan(
        "FROM scratch\nARG A B=2 C\nENV B=env\nRUN true\n",
        &with_args(&[("A", "1")]),
    );
    let run = &p.scoped[0].as_ref().unwrap().instructions[2];
    assert_eq!(
        run.scope.arg_values(),
        [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "env".to_string()),
            ("C".to_string(), String::new())
        ]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Planning never panics: random multi-stage files from a soup of instructions whose words
    /// use variables, stage references and bad substitutions.
    #[test]
    fn planning_never_panics(
        lines in proptest::collection::vec(
            proptest::sample::select(vec![
                "FROM scratch AS a", "FROM a AS b", "FROM $IMG", "FROM ${IMG:-busybox} AS c",
                "FROM b", "ARG IMG=x", "ARG A", "ARG B=${A:-1}", "ENV A=$B C=${A:+y}",
                "COPY --from=a /x /y", "COPY --from=1 /x /y", "COPY --from=c /x /y",
                "COPY --from=9 /x /y", "WORKDIR /w/$A", "USER ${U:?}", "EXPOSE $A 80",
                "VOLUME /v", "LABEL k=$A", "RUN echo $A", "ONBUILD COPY --from=a /x /y",
                "STOPSIGNAL ${S#SIG}", "RUN --mount=from=b,target=/m true",
            ]),
            1..12,
        ),
        target in proptest::option::of(proptest::sample::select(vec!["a", "b", "c", "zz"])),
    ) {
        let text = lines.join("\n");
        if let Ok(df) = rbuild::dockerfile::parse(&text, std::path::Path::new("Dockerfile")) {
            let mut opts = with_args(&[("A", "1"), ("UNUSED", "2")]);
            opts.target = target.map(str::to_string);
            let _ = plan_stages(&df, &opts, &|_| vec!["PATH=/bin".to_string()]);
        }
    }
}
