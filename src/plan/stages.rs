//! ARG/ENV scoping and the stage graph: which stages a build needs, what each one starts
//! from, and for every instruction the variables in scope and its Docker-expanded arguments.
//!
//! Two phases, because the second needs the base images' `Env`, which only the builder can
//! look up in the store:
//!
//! 1. [`resolve_stages`] (pure): global ARGs, `FROM` expansion, stage names, dependencies
//!    (`FROM <stage>`, `COPY --from=<stage|index>`, `RUN --mount=from=<stage>`), the target
//!    and the stages reachable from it, unused `--build-arg`s, the proxy environment.
//! 2. [`Stages::scope`]: for each reachable stage, the scope before every instruction and the
//!    instruction with its arguments expanded, given a function returning an image's `Env`.
//!
//! [`plan_stages`] runs both.
//!
//! # The rules (BuildKit's)
//!
//! * **Global ARGs** (before the first `FROM`) form the global scope, together with the
//!   predefined platform ARGs `BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT TARGETPLATFORM
//!   TARGETOS TARGETARCH TARGETVARIANT` (this host's platform, e.g. `linux/amd64`, unless
//!   overridden). Each global ARG takes its `--build-arg` value, else its default expanded
//!   with the global scope so far, else stays unset. `FROM` image names and `--platform`
//!   values are expanded with the global scope, nothing else is.
//! * **Inside a stage** nothing global is visible until re-declared: `ARG NAME` without a value
//!   takes the global's value. A stage ARG's value is its `--build-arg` if given, else its
//!   default (expanded with the stage scope), else the global value, else it is declared but
//!   unset.
//! * **`--build-arg`** only sets declared ARGs; the others are reported in
//!   [`Stages::unused_build_args`] (for a warning), except the predefined proxy and platform
//!   names.
//! * **ENV and ARG share one scope**, in order: a later `ENV X` overrides an earlier `ARG X`
//!   and vice versa (BuildKit; the docs' "ENV overrides ARG" describes the usual order). ARG
//!   values are visible to expansion and to RUN, but never enter the image's `Env`.
//! * **The proxy ARGs** (`HTTP_PROXY HTTPS_PROXY FTP_PROXY NO_PROXY ALL_PROXY`, any case) may be
//!   passed without a declaration: they end up in [`Stages::proxy_env`], for RUN only, never in
//!   history or cache keys. Declaring `ARG HTTP_PROXY` makes it an ordinary ARG.
//! * **A stage built `FROM` another stage** starts with that stage's final scope (its ENV and
//!   ARG values); one built from an image starts with the image's `Env`; `PATH` is always set
//!   (Docker's default when the image has none, and for `scratch`).
//! * **Stage names** (`AS name`) are case-insensitive. `FROM name` refers to a stage only if it
//!   is defined earlier (otherwise it is an image). `COPY --from=` takes a stage name, a stage
//!   index or an image; a stage must be defined before the current one; `--from` is never
//!   expanded (a `$` in it is an error, as in BuildKit).
//! * **What is expanded** (Docker's list): the arguments of ADD COPY ENV EXPOSE LABEL
//!   STOPSIGNAL USER VOLUME WORKDIR (and ENV/LABEL keys, `--chown`, `--chmod`, `--checksum`,
//!   `--exclude`, unquoted heredoc bodies of COPY/ADD, RUN `--mount` paths and ids), ARG
//!   defaults, and FROM. Not expanded: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK text (the shell
//!   does that), MAINTAINER, and ONBUILD triggers (they are expanded when they fire in a
//!   child build). All words of one instruction see the scope from before it:
//!   `ENV A=1 B=$A` gives `B` the old `A`.
//! * **ONBUILD triggers of a base stage** fire first in every stage built `FROM` it (their
//!   `--from`s become that stage's dependencies); triggers stored in a base *image's* config
//!   are the builder's to run.

use std::collections::BTreeSet;
use std::fmt;

use thiserror::Error;

use crate::dockerfile::ast::{
    Add, ArgDecl, Args, Copy, Dockerfile, Instruction, KeyValue, KeyValues, Mount, Node, Source,
    Span, Text, Words,
};
use crate::dockerfile::expand::{expand_heredoc, expand_word, expand_words, ExpandError};

/// Docker's predefined proxy ARGs (matched case-insensitively).
pub const PROXY_ARGS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The predefined platform ARGs (global scope only).
pub const PLATFORM_ARGS: [&str; 8] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// `PATH` when the base image sets none (Docker's default for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// True for a predefined proxy ARG name, in any case (`http_proxy`, `HTTP_PROXY`).
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Planning errors. Those tied to an instruction render as `path:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StageError {
    /// Something wrong at an instruction.
    #[error("{path}:{line}:{col}: {message}")]
    At {
        /// The Dockerfile path as given to the parser.
        path: String,
        /// 1-based line of the instruction.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// No `FROM` at all.
    #[error("{path}: the Dockerfile has no build stage; add a FROM line, e.g. `FROM scratch`")]
    NoStages {
        /// The Dockerfile path.
        path: String,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; the named stages are: {known}")]
    UnknownTarget {
        /// The requested target.
        target: String,
        /// The stage names, comma-separated (or `none`).
        known: String,
    },
}

/// An OS/architecture/variant triple (`linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// OCI architecture name: `amd64`, `arm64`, `arm`, ...
    pub arch: String,
    /// `v7` for `arm`; usually empty.
    pub variant: String,
}

impl Platform {
    /// This machine's platform in OCI terms.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", ""),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            other => (other, ""),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: arch.to_string(),
            variant: variant.to_string(),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let arch = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().unwrap_or("");
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_ascii_lowercase(),
            arch: arch.to_ascii_lowercase(),
            variant: variant.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// `--build-arg NAME=VALUE`, in the order given (a later one wins).
    pub build_args: Vec<(String, String)>,
    /// `--target NAME` (case-insensitive); `None` = the last stage.
    pub target: Option<String>,
    /// The platform rbuild runs on (`BUILD*` ARGs).
    pub build_platform: Platform,
    /// The platform built for (`TARGET*` ARGs).
    pub target_platform: Platform,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions {
            build_args: Vec::new(),
            target: None,
            build_platform: Platform::host(),
            target_platform: Platform::host(),
        }
    }
}

impl StageOptions {
    fn build_arg(&self, name: &str) -> Option<&str> {
        self.build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference (expanded, as written after expansion; the store resolves it).
    Image(String),
}

/// Where a `COPY --from` / `RUN --mount=from=` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// A stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// One stage as phase 1 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    /// 0-based position.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The expanded `FROM` target.
    pub base: Base,
    /// The expanded `--platform`, if given.
    pub platform: Option<String>,
    /// Stages this one needs, without duplicates: its base stage and the `--from`s.
    pub deps: Vec<usize>,
    /// For each instruction (same indexes as `Stage::instructions`), where its
    /// `COPY --from` or `RUN --mount=from=` read (in mount order for RUN).
    pub copy_from: Vec<Vec<FromRef>>,
    /// The same for the ONBUILD triggers of the base stage (see [`ScopedStage::triggers`]).
    pub trigger_from: Vec<Vec<FromRef>>,
}

impl StageInfo {
    /// `AS` name or `stage-N`, as progress output shows it.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// Phase 1: the stage graph and the global scope.
#[derive(Debug, Clone)]
pub struct Stages {
    /// The Dockerfile path (for errors).
    pub path: String,
    /// The escape character of the file.
    pub escape: char,
    /// Every stage of the file.
    pub stages: Vec<StageInfo>,
    /// The target stage.
    pub target: usize,
    /// The stages the target needs (itself included), each after its dependencies.
    pub order: Vec<usize>,
    /// The global scope: platform ARGs, then the global ARGs that have a value.
    pub global_args: Vec<(String, String)>,
    /// `--build-arg`s no ARG of the build declares (predefined names excepted), sorted.
    pub unused_build_args: Vec<String>,
    /// Proxy variables from `--build-arg`, sorted by name: for RUN, never for keys or history.
    pub proxy_env: Vec<(String, String)>,
    /// Non-fatal findings (duplicate stage names).
    pub warnings: Vec<String>,
    options: StageOptions,
}

/// The variables in effect at one point of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// What expansion and RUN see: the base's `Env`, then ENV and ARG values in order (a
    /// later definition replaces an earlier one in place). Unique names.
    pub env: Vec<(String, String)>,
    /// The image config's `Env`: the base's `Env` and the ENV instructions (never ARGs).
    pub image_env: Vec<(String, String)>,
    /// ARGs declared so far (those of the parent stage first), with their values; `None`
    /// when declared without a value and not set. Unique names, declaration order.
    pub args: Vec<(String, Option<String>)>,
}

impl Scope {
    /// The value of `name` for expansion.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every ARG declared so far with the value a RUN sees (the scope's value, so an ENV
    /// declared later wins; empty when unset): what BuildKit records in a RUN's history
    /// line (`|N NAME=value ...`) and what a RUN's cache key captures.
    pub fn arg_values(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .map(|(k, v)| {
                let value = self
                    .get(k)
                    .map(str::to_string)
                    .or_else(|| v.clone())
                    .unwrap_or_default();
                (k.clone(), value)
            })
            .collect()
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name: &str| self.get(name).map(str::to_string)
    }
}

fn set_var<V>(list: &mut Vec<(String, V)>, key: &str, value: V) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => list.push((key.to_string(), value)),
    }
}

/// One instruction with its scope and expanded arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedInstruction {
    /// Index in `Stage::instructions` (of the base stage, for a trigger).
    pub index: usize,
    /// Where it is.
    pub span: Span,
    /// The variables in effect when it runs (before its own effect).
    pub scope: Scope,
    /// The instruction with the fields Docker expands expanded; ARG defaults replaced by
    /// the values the ARGs take. Everything else as parsed.
    pub expanded: Instruction,
}

/// Phase 2 for one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedStage {
    /// Stage index.
    pub index: usize,
    /// The scope at `FROM`.
    pub initial: Scope,
    /// The ONBUILD triggers of the base stage, run first (BuildKit fires a stage's triggers
    /// in the stages built `FROM` it). `index` and `span` point at the ONBUILD in the base
    /// stage. Triggers of base *images* are the builder's: they live in the image config.
    pub triggers: Vec<ScopedInstruction>,
    /// Every instruction after `FROM`, in order.
    pub instructions: Vec<ScopedInstruction>,
    /// The scope after the last instruction (what a stage built `FROM` this one starts with).
    pub final_scope: Scope,
}

/// Both phases: the graph and, for every stage the target needs, its scoped instructions
/// (`None` for stages that are not needed).
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Phase 1.
    pub stages: Stages,
    /// Phase 2, indexed like `stages.stages`.
    pub scoped: Vec<Option<ScopedStage>>,
}

/// Runs [`resolve_stages`] then [`Stages::scope`]. `image_env` returns an image's config
/// `Env` (`NAME=value` strings) for an expanded image reference.
pub fn plan_stages(
    df: &Dockerfile,
    opts: &StageOptions,
    image_env: &dyn Fn(&str) -> Vec<String>,
) -> Result<StagePlan, StageError> {
    let stages = resolve_stages(df, opts)?;
    let scoped = stages.scope(df, image_env)?;
    Ok(StagePlan { stages, scoped })
}

fn error_at(path: &str, span: Span, message: String) -> StageError {
    StageError::At {
        path: path.to_string(),
        line: span.start.line,
        col: span.start.col.max(1),
        message,
    }
}

fn expand_error(path: &str, node: &Node, keyword: &str, e: ExpandError) -> StageError {
    error_at(path, node.span(), format!("{keyword}: {e}"))
}

/// The stage named `name` (case-insensitive) among `stages[..limit]`, the last one when
/// names repeat.
fn find_stage(df: &Dockerfile, name: &str, limit: usize) -> Option<usize> {
    df.stages[..limit.min(df.stages.len())]
        .iter()
        .rposition(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
}

/// Phase 1: global scope, FROM expansion, names, dependencies, target and reachable stages.
pub fn resolve_stages(df: &Dockerfile, opts: &StageOptions) -> Result<Stages, StageError> {
    let path = df.path.display().to_string();
    if df.stages.is_empty() {
        return Err(StageError::NoStages { path });
    }
    let escape = df.directives.escape;

    // The global scope: platform ARGs (a --build-arg may override them), then global ARGs.
    let bp = &opts.build_platform;
    let tp = &opts.target_platform;
    let platform_values = [
        bp.to_string(),
        bp.os.clone(),
        bp.arch.clone(),
        bp.variant.clone(),
        tp.to_string(),
        tp.os.clone(),
        tp.arch.clone(),
        tp.variant.clone(),
    ];
    let mut global: Vec<(String, String)> = Vec::new();
    for (name, value) in PLATFORM_ARGS.iter().zip(platform_values) {
        let value = opts.build_arg(name).map(str::to_string).unwrap_or(value);
        set_var(&mut global, name, value);
    }
    let mut declared: BTreeSet<String> = BTreeSet::new();
    for node in &df.global_args {
        let Instruction::Arg(args) = &node.instruction else {
            continue;
        };
        for decl in &args.args {
            declared.insert(decl.name.clone());
            let value = match (opts.build_arg(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.to_string()),
                (None, Some(default)) => {
                    let look = |k: &str| lookup(&global, k);
                    Some(
                        expand_word(default, &look, escape)
                            .map_err(|e| expand_error(&path, node, "ARG", e))?,
                    )
                }
                (None, None) => None,
            };
            if let Some(v) = value {
                set_var(&mut global, &decl.name, v);
            }
        }
    }

    let mut warnings = Vec::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    for st in &df.stages {
        if let Some(name) = &st.name {
            if !seen_names.insert(name.to_ascii_lowercase()) {
                warnings.push(format!(
                    "{}:{}: duplicate stage name {name:?}; later references use the last stage defined before them",
                    path,
                    st.from_node.span().start.line
                ));
            }
        }
    }

    let mut infos = Vec::with_capacity(df.stages.len());
    for (i, st) in df.stages.iter().enumerate() {
        let look = |k: &str| lookup(&global, k);
        let image = expand_word(&st.from.image, &look, escape)
            .map_err(|e| expand_error(&path, &st.from_node, "FROM", e))?;
        if image.is_empty() {
            return Err(error_at(
                &path,
                st.from_node.span(),
                format!(
                    "base name ({}) should not be blank; give the ARG it uses a value before the first FROM or pass --build-arg",
                    st.from.image
                ),
            ));
        }
        let platform = match &st.from.platform {
            None => None,
            Some(raw) => {
                let p = expand_word(raw, &look, escape)
                    .map_err(|e| expand_error(&path, &st.from_node, "FROM --platform", e))?;
                if p.is_empty() {
                    return Err(error_at(
                        &path,
                        st.from_node.span(),
                        format!("empty platform value from expression {raw}; set the ARG it uses or remove --platform"),
                    ));
                }
                Some(p)
            }
        };
        let base = if image.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else {
            match find_stage(df, &image, i) {
                Some(j) => Base::Stage(j),
                None => Base::Image(image),
            }
        };
        let mut deps = Vec::new();
        if let Base::Stage(j) = base {
            deps.push(j);
        }
        let current = st.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let mut copy_from = Vec::with_capacity(st.instructions.len());
        for node in &st.instructions {
            let refs = instruction_refs(df, &path, node, &node.instruction, i, &current, escape)?;
            add_deps(&mut deps, &refs);
            copy_from.push(refs);
        }
        // ONBUILD triggers of a base stage fire at the start of this stage.
        let mut trigger_from = Vec::new();
        if let Base::Stage(j) = base {
            for (_, node, trigger) in triggers_of(df, j) {
                let refs = instruction_refs(df, &path, node, trigger, i, &current, escape)?;
                add_deps(&mut deps, &refs);
                trigger_from.push(refs);
            }
        }
        infos.push(StageInfo {
            index: i,
            name: st.name.as_ref().map(|n| n.to_ascii_lowercase()),
            base,
            platform,
            deps,
            copy_from,
            trigger_from,
        });
    }

    let target = match &opts.target {
        None => infos.len() - 1,
        Some(t) => find_stage(df, t, df.stages.len()).ok_or_else(|| {
            let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            StageError::UnknownTarget {
                target: t.clone(),
                known: if names.is_empty() {
                    "none (name one with `FROM image AS name`)".to_string()
                } else {
                    names.join(", ")
                },
            }
        })?,
    };
    let order = reachable_order(df, &path, &infos, target)?;

    // ARGs of the needed stages, plus the global ones, consume build args.
    for &i in &order {
        for node in &df.stages[i].instructions {
            if let Instruction::Arg(a) = &node.instruction {
                declared.extend(a.args.iter().map(|d| d.name.clone()));
            }
        }
    }
    let mut unused: Vec<String> = opts
        .build_args
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| {
            !declared.contains(k) && !is_proxy_arg(k) && !PLATFORM_ARGS.contains(&k.as_str())
        })
        .collect();
    unused.sort();
    unused.dedup();

    let mut proxy_env: Vec<(String, String)> = Vec::new();
    for (k, v) in &opts.build_args {
        if is_proxy_arg(k) {
            set_var(&mut proxy_env, k, v.clone());
        }
    }
    proxy_env.sort();

    Ok(Stages {
        path,
        escape,
        stages: infos,
        target,
        order,
        global_args: global,
        unused_build_args: unused,
        proxy_env,
        warnings,
        options: opts.clone(),
    })
}

fn lookup(list: &[(String, String)], name: &str) -> Option<String> {
    list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn add_deps(deps: &mut Vec<usize>, refs: &[FromRef]) {
    for r in refs {
        if let FromRef::Stage(j) = r {
            if !deps.contains(j) {
                deps.push(*j);
            }
        }
    }
}

/// The ONBUILD triggers of stage `j`, in order: (instruction index, ONBUILD node, trigger).
fn triggers_of(df: &Dockerfile, j: usize) -> Vec<(usize, &Node, &Instruction)> {
    df.stages[j]
        .instructions
        .iter()
        .enumerate()
        .filter_map(|(idx, node)| match &node.instruction {
            Instruction::Onbuild(o) => Some((idx, node, o.trigger.as_ref())),
            _ => None,
        })
        .collect()
}

/// Where an instruction of stage `i` reads from: `COPY --from`, `RUN --mount=from=`.
fn instruction_refs(
    df: &Dockerfile,
    path: &str,
    node: &Node,
    instruction: &Instruction,
    i: usize,
    current: &str,
    escape: char,
) -> Result<Vec<FromRef>, StageError> {
    let mut refs = Vec::new();
    match instruction {
        Instruction::Copy(c) => {
            if let Some(from) = &c.from {
                let unset = |_: &str| None;
                let same = expand_word(from, &unset, escape).ok().as_deref() == Some(from.as_str());
                if !same {
                    return Err(error_at(
                        path,
                        node.span(),
                        format!("COPY --from={from}: variable expansion is not supported for --from; define a stage with `FROM ${{ARG}} AS name` using a global ARG and copy from that stage"),
                    ));
                }
                refs.push(resolve_from(df, path, node, from, i, current, true)?);
            }
        }
        Instruction::Run(r) => {
            for m in &r.mounts {
                if let Mount::Bind {
                    from: Some(from), ..
                }
                | Mount::Cache {
                    from: Some(from), ..
                } = m
                {
                    refs.push(resolve_from(df, path, node, from, i, current, false)?);
                }
            }
        }
        _ => {}
    }
    Ok(refs)
}

/// Resolves a `--from` value of an instruction in stage `current_index`.
fn resolve_from(
    df: &Dockerfile,
    path: &str,
    node: &Node,
    from: &str,
    current_index: usize,
    current_name: &str,
    is_copy: bool,
) -> Result<FromRef, StageError> {
    let what = if is_copy {
        "COPY --from"
    } else {
        "RUN --mount from"
    };
    let stage = if let Ok(index) = from.parse::<usize>() {
        if index >= df.stages.len() {
            return Err(error_at(
                path,
                node.span(),
                format!(
                    "{what}={from}: invalid stage index {index}; the Dockerfile has {} stage(s), numbered from 0",
                    df.stages.len()
                ),
            ));
        }
        Some(index)
    } else {
        find_stage(df, from, df.stages.len())
    };
    match stage {
        None => Ok(FromRef::Image(from.to_string())),
        Some(j) if j == current_index => Err(error_at(
            path,
            node.span(),
            format!("{what}={from}: circular dependency: stage {current_name:?} reads from itself; copy from an earlier stage"),
        )),
        Some(j) if j > current_index => Err(error_at(
            path,
            node.span(),
            format!("{what}={from}: cannot copy from stage {from:?}, it needs to be defined before current stage {current_name:?}; move it above"),
        )),
        Some(j) => Ok(FromRef::Stage(j)),
    }
}

/// Depth-first from the target; post-order lists dependencies first. A stage met again while
/// on the path is a cycle (impossible with the "defined before" rule, kept as a safety net).
fn reachable_order(
    df: &Dockerfile,
    path: &str,
    infos: &[StageInfo],
    target: usize,
) -> Result<Vec<usize>, StageError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; infos.len()];
    let mut order = Vec::new();
    // Explicit stack of (stage, next dep index) to avoid recursion depth limits.
    let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
    mark[target] = Mark::Active;
    while let Some(&mut (i, ref mut next)) = stack.last_mut() {
        if let Some(&d) = infos[i].deps.get(*next) {
            *next += 1;
            match mark[d] {
                Mark::Done => {}
                Mark::New => {
                    mark[d] = Mark::Active;
                    stack.push((d, 0));
                }
                Mark::Active => {
                    let mut names: Vec<String> = stack
                        .iter()
                        .map(|&(s, _)| s)
                        .skip_while(|&s| s != d)
                        .map(|s| infos[s].display_name())
                        .collect();
                    names.push(infos[d].display_name());
                    return Err(error_at(
                        path,
                        df.stages[i].from_node.span(),
                        format!("circular dependency between stages: {}", names.join(" -> ")),
                    ));
                }
            }
        } else {
            mark[i] = Mark::Done;
            order.push(i);
            stack.pop();
        }
    }
    Ok(order)
}

impl Stages {
    /// Phase 2: the scoped, expanded instructions of every needed stage (`None` for the
    /// others). `image_env` gives an image's config `Env` (`NAME=value`) for a base image
    /// reference as expanded in [`StageInfo::base`].
    pub fn scope(
        &self,
        df: &Dockerfile,
        image_env: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<Vec<Option<ScopedStage>>, StageError> {
        let mut out: Vec<Option<ScopedStage>> = vec![None; self.stages.len()];
        let mut needed: Vec<usize> = self.order.clone();
        // Every dependency has a lower index, so index order is a dependency order.
        needed.sort_unstable();
        for i in needed {
            let initial = match &self.stages[i].base {
                Base::Scratch => base_scope(Vec::new()),
                Base::Image(r) => base_scope(image_env(r)),
                Base::Stage(j) => match &out[*j] {
                    Some(parent) => parent.final_scope.clone(),
                    None => base_scope(Vec::new()),
                },
            };
            out[i] = Some(self.scope_stage(df, i, initial)?);
        }
        Ok(out)
    }

    fn scope_stage(
        &self,
        df: &Dockerfile,
        i: usize,
        initial: Scope,
    ) -> Result<ScopedStage, StageError> {
        let st = &df.stages[i];
        let mut scope = initial.clone();
        let mut triggers = Vec::new();
        if let Base::Stage(j) = self.stages[i].base {
            for (idx, node, trigger) in triggers_of(df, j) {
                let before = scope.clone();
                let expanded = self.apply(node, trigger, &mut scope)?;
                triggers.push(ScopedInstruction {
                    index: idx,
                    span: node.span(),
                    scope: before,
                    expanded,
                });
            }
        }
        let mut instructions = Vec::with_capacity(st.instructions.len());
        for (idx, node) in st.instructions.iter().enumerate() {
            let before = scope.clone();
            let expanded = self.apply(node, &node.instruction, &mut scope)?;
            instructions.push(ScopedInstruction {
                index: idx,
                span: node.span(),
                scope: before,
                expanded,
            });
        }
        Ok(ScopedStage {
            index: i,
            initial,
            triggers,
            instructions,
            final_scope: scope,
        })
    }

    /// Expands one instruction in `scope` and applies its effect (ENV, ARG) to it.
    fn apply(
        &self,
        node: &Node,
        instruction: &Instruction,
        scope: &mut Scope,
    ) -> Result<Instruction, StageError> {
        if let Instruction::Arg(args) = instruction {
            let mut resolved = Vec::with_capacity(args.args.len());
            for decl in &args.args {
                let value = self.arg_value(decl, scope, &self.path, node)?;
                if let Some(v) = &value {
                    set_var(&mut scope.env, &decl.name, v.clone());
                }
                set_var(&mut scope.args, &decl.name, value.clone());
                resolved.push(ArgDecl {
                    name: decl.name.clone(),
                    default: value,
                });
            }
            return Ok(Instruction::Arg(Args { args: resolved }));
        }
        let keyword = instruction.keyword();
        let expanded = {
            let look = scope.lookup();
            expand_instruction(instruction, &look, self.escape).map_err(|e| match e {
                InstrError::Expand(e) => expand_error(&self.path, node, keyword, e),
                InstrError::Other(m) => error_at(&self.path, node.span(), m),
            })?
        };
        if let Instruction::Env(kv) = &expanded {
            for KeyValue { key, value } in &kv.pairs {
                set_var(&mut scope.env, key, value.clone());
                set_var(&mut scope.image_env, key, value.clone());
            }
        }
        Ok(expanded)
    }

    /// The value a stage ARG takes: `--build-arg`, else its default expanded with the stage
    /// scope, else the global value, else none.
    fn arg_value(
        &self,
        decl: &ArgDecl,
        scope: &Scope,
        path: &str,
        node: &Node,
    ) -> Result<Option<String>, StageError> {
        if let Some(v) = self.options.build_arg(&decl.name) {
            return Ok(Some(v.to_string()));
        }
        if let Some(default) = &decl.default {
            let look = scope.lookup();
            return expand_word(default, &look, self.escape)
                .map(Some)
                .map_err(|e| expand_error(path, node, "ARG", e));
        }
        Ok(lookup(&self.global_args, &decl.name))
    }
}

/// The scope a stage starts with from a base `Env` list: `PATH` added when missing.
fn base_scope(env: Vec<String>) -> Scope {
    let mut vars: Vec<(String, String)> = Vec::new();
    for entry in env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set_var(&mut vars, k, v.to_string());
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        vars.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    Scope {
        env: vars.clone(),
        image_env: vars,
        args: Vec::new(),
    }
}

enum InstrError {
    Expand(ExpandError),
    Other(String),
}

impl From<ExpandError> for InstrError {
    fn from(e: ExpandError) -> Self {
        InstrError::Expand(e)
    }
}

fn opt_word(
    w: &Option<String>,
    look: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Option<String>, ExpandError> {
    w.as_ref().map(|s| expand_word(s, look, escape)).transpose()
}

fn expand_sources(
    sources: &[Source],
    look: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<Source>, ExpandError> {
    sources
        .iter()
        .map(|s| match s {
            Source::Path(p) => expand_word(p, look, escape).map(Source::Path),
            Source::Heredoc(h) if h.expand => {
                let mut h = h.clone();
                h.content = expand_heredoc(&h.content, look)?;
                Ok(Source::Heredoc(h))
            }
            Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
        })
        .collect()
}

fn expand_pairs(
    kv: &KeyValues,
    look: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<KeyValues, ExpandError> {
    let pairs = kv
        .pairs
        .iter()
        .map(|p| {
            Ok(KeyValue {
                key: expand_word(&p.key, look, escape)?,
                value: expand_word(&p.value, look, escape)?,
            })
        })
        .collect::<Result<_, ExpandError>>()?;
    Ok(KeyValues {
        pairs,
        legacy: kv.legacy,
    })
}

fn expand_mount(
    m: &Mount,
    look: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Mount, ExpandError> {
    let w = |s: &String| expand_word(s, look, escape);
    let o = |s: &Option<String>| opt_word(s, look, escape);
    Ok(match m {
        Mount::Bind {
            target,
            source,
            from,
            readwrite,
        } => Mount::Bind {
            target: w(target)?,
            source: o(source)?,
            from: from.clone(),
            readwrite: *readwrite,
        },
        Mount::Cache {
            target,
            id,
            sharing,
            from,
            source,
            readonly,
            mode,
            uid,
            gid,
        } => Mount::Cache {
            target: w(target)?,
            id: o(id)?,
            sharing: *sharing,
            from: from.clone(),
            source: o(source)?,
            readonly: *readonly,
            mode: *mode,
            uid: *uid,
            gid: *gid,
        },
        Mount::Tmpfs { target, size } => Mount::Tmpfs {
            target: w(target)?,
            size: o(size)?,
        },
        Mount::Secret {
            id,
            target,
            env,
            required,
            mode,
            uid,
            gid,
        } => Mount::Secret {
            id: o(id)?,
            target: o(target)?,
            env: o(env)?,
            required: *required,
            mode: *mode,
            uid: *uid,
            gid: *gid,
        },
        Mount::Ssh {
            id,
            target,
            required,
            mode,
            uid,
            gid,
        } => Mount::Ssh {
            id: o(id)?,
            target: o(target)?,
            required: *required,
            mode: *mode,
            uid: *uid,
            gid: *gid,
        },
    })
}

/// Expands what Docker expands in one instruction (ARG is handled by the caller).
fn expand_instruction(
    instr: &Instruction,
    look: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Instruction, InstrError> {
    let word = |s: &str| expand_word(s, look, escape);
    Ok(match instr {
        Instruction::Env(kv) => Instruction::Env(expand_pairs(kv, look, escape)?),
        Instruction::Label(kv) => Instruction::Label(expand_pairs(kv, look, escape)?),
        Instruction::Expose(w) => {
            let mut words = Vec::new();
            for raw in &w.words {
                words.extend(expand_words(raw, look, escape)?);
            }
            Instruction::Expose(Words { words })
        }
        Instruction::Volume(w) => {
            let words = w
                .words
                .iter()
                .map(|s| word(s))
                .collect::<Result<Vec<_>, _>>()?;
            if words.iter().any(String::is_empty) {
                return Err(InstrError::Other(
                    "VOLUME specified can not be an empty string; give each volume a path"
                        .to_string(),
                ));
            }
            Instruction::Volume(Words { words })
        }
        Instruction::User(t) => Instruction::User(Text {
            value: word(&t.value)?,
        }),
        Instruction::Workdir(t) => Instruction::Workdir(Text {
            value: word(&t.value)?,
        }),
        Instruction::Stopsignal(t) => Instruction::Stopsignal(Text {
            value: word(&t.value)?,
        }),
        Instruction::Copy(c) => Instruction::Copy(Copy {
            sources: expand_sources(&c.sources, look, escape)?,
            dest: word(&c.dest)?,
            from: c.from.clone(),
            chown: opt_word(&c.chown, look, escape)?,
            chmod: opt_word(&c.chmod, look, escape)?,
            link: c.link,
            parents: c.parents,
            exclude: c
                .exclude
                .iter()
                .map(|s| word(s))
                .collect::<Result<_, _>>()?,
            json: c.json,
        }),
        Instruction::Add(a) => Instruction::Add(Add {
            sources: expand_sources(&a.sources, look, escape)?,
            dest: word(&a.dest)?,
            chown: opt_word(&a.chown, look, escape)?,
            chmod: opt_word(&a.chmod, look, escape)?,
            link: a.link,
            keep_git_dir: a.keep_git_dir,
            checksum: opt_word(&a.checksum, look, escape)?,
            exclude: a
                .exclude
                .iter()
                .map(|s| word(s))
                .collect::<Result<_, _>>()?,
            unpack: a.unpack,
            json: a.json,
        }),
        Instruction::Run(r) => {
            let mut r = r.clone();
            r.mounts = r
                .mounts
                .iter()
                .map(|m| expand_mount(m, look, escape))
                .collect::<Result<_, _>>()?;
            Instruction::Run(r)
        }
        // Not expanded: shell text, MAINTAINER, ONBUILD triggers (expanded when they fire),
        // FROM (phase 1), ARG (the caller).
        other => other.clone(),
    })
}
