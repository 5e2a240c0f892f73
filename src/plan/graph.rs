//! The stage graph: what each stage starts from, which stages it reads from, and which stages
//! the target needs.
//!
//! A stage depends on another through `FROM <stage>`, `COPY --from=<stage>` (name or
//! index) and `RUN --mount=from=<stage>`. Only the target (`--target NAME`, default the last
//! stage) and what it transitively depends on is built; the rest is never looked at again.
//! [`StageGraph::order`] lists the needed stages so that every stage comes after its
//! dependencies; stages without a path between them may run in parallel.
//!
//! `FROM` lines are expanded here with the global ARGs (those before the first `FROM`, with
//! `--build-arg` overrides and the predefined platform ARGs), as Docker does.

use std::collections::BTreeMap;

use crate::dockerfile::ast::{Instruction, Mount, Source};
use crate::dockerfile::expand::expand_word;
use crate::dockerfile::Dockerfile;

/// Errors of planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found; name it with `FROM image AS {0}`")]
    NoSuchTarget(String),
    /// The Dockerfile has no `FROM`.
    #[error("{0}: the Dockerfile has no FROM instruction; add one, e.g. `FROM scratch`")]
    NoStages(String),
    /// Stages that read from each other in a circle.
    #[error("circular dependency between stages: {0}")]
    Cycle(String),
    /// A word that does not expand.
    #[error("{path}:{line}: {message}")]
    Expand {
        /// Dockerfile path.
        path: String,
        /// 1-based line.
        line: usize,
        /// What failed.
        message: String,
    },
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `FROM scratch`: empty rootfs.
    Scratch,
    /// An earlier stage (index).
    Stage(usize),
    /// An image reference (expanded), resolved in the store by the builder.
    Image(String),
}

/// One stage as the graph sees it.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// Index in the Dockerfile.
    pub index: usize,
    /// `AS name` (lower-case), if any.
    pub name: Option<String>,
    /// What `FROM` names, expanded.
    pub base: BaseRef,
    /// Stages this one reads from (FROM, COPY --from, RUN --mount from=), no duplicates.
    pub deps: Vec<usize>,
}

impl StagePlan {
    /// The name the progress display uses: `AS` name or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// The needed part of a Dockerfile's stage graph.
#[derive(Debug, Clone)]
pub struct StageGraph {
    /// Every stage of the file (needed or not).
    pub stages: Vec<StagePlan>,
    /// The target stage.
    pub target: usize,
    /// Needed stages, dependencies first.
    pub order: Vec<usize>,
    /// The global ARG values (for FROM lines and for stage ARGs re-declared without default).
    pub global_args: BTreeMap<String, String>,
}

impl StageGraph {
    /// Is stage `i` needed for the target?
    pub fn is_needed(&self, i: usize) -> bool {
        self.order.contains(&i)
    }
}

/// The ARGs Docker predefines for FROM lines (the platform of this machine).
pub fn platform_args() -> BTreeMap<String, String> {
    let arch = oci_arch();
    let mut m = BTreeMap::new();
    for p in ["BUILD", "TARGET"] {
        m.insert(format!("{p}PLATFORM"), format!("linux/{arch}"));
        m.insert(format!("{p}OS"), "linux".to_string());
        m.insert(format!("{p}ARCH"), arch.to_string());
        m.insert(format!("{p}VARIANT"), String::new());
    }
    m
}

/// This machine's architecture in OCI terms (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Resolve a `--from` / `from=` value or a FROM image to a stage: by name (case-insensitive)
/// or by index.
pub fn stage_by_name(df: &Dockerfile, name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(i) = df.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Some(i);
    }
    match name.parse::<usize>() {
        Ok(i) if i < df.stages.len() => Some(i),
        _ => None,
    }
}

/// Build the graph for `target` (None: the last stage).
pub fn plan(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<StageGraph, PlanError> {
    let path = df.path.display().to_string();
    if df.stages.is_empty() {
        return Err(PlanError::NoStages(path));
    }
    let escape = df.directives.escape;
    let mut global: BTreeMap<String, String> = platform_args();
    let mut declared: BTreeMap<String, String> = BTreeMap::new();
    for node in &df.global_args {
        if let Instruction::Arg(a) = &node.instruction {
            for d in &a.args {
                let value = match build_args.get(&d.name) {
                    Some(v) => Some(v.clone()),
                    None => match &d.default {
                        Some(def) => {
                            let look = |k: &str| declared.get(k).cloned().or_else(|| global.get(k).cloned());
                            Some(expand_word(def, &look, escape).map_err(|e| PlanError::Expand {
                                path: path.clone(),
                                line: node.span().start_line(),
                                message: e.to_string(),
                            })?)
                        }
                        None => None,
                    },
                };
                if let Some(v) = value {
                    declared.insert(d.name.clone(), v);
                }
            }
        }
    }
    global.extend(declared);

    let mut stages = Vec::with_capacity(df.stages.len());
    for (i, st) in df.stages.iter().enumerate() {
        let look = |k: &str| global.get(k).cloned();
        let image = expand_word(&st.from.image, &look, escape).map_err(|e| PlanError::Expand {
            path: path.clone(),
            line: st.from_node.span().start_line(),
            message: e.to_string(),
        })?;
        let base = if image.eq_ignore_ascii_case("scratch") {
            BaseRef::Scratch
        } else {
            // FROM may name only an earlier stage; a later one is an image of that name.
            match stage_by_name(df, &image).filter(|&j| j < i && image.parse::<usize>().is_err()) {
                Some(j) => BaseRef::Stage(j),
                None => BaseRef::Image(image),
            }
        };
        let mut deps = Vec::new();
        if let BaseRef::Stage(j) = base {
            deps.push(j);
        }
        for node in &st.instructions {
            let from = match &node.instruction {
                Instruction::Copy(c) => c.from.clone().into_iter().collect::<Vec<_>>(),
                Instruction::Run(r) => r
                    .mounts
                    .iter()
                    .filter_map(|m| match m {
                        Mount::Bind { from, .. } | Mount::Cache { from, .. } => from.clone(),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for f in from {
                let f = expand_word(&f, &look, escape).unwrap_or(f);
                if let Some(j) = stage_by_name(df, &f) {
                    if !deps.contains(&j) {
                        deps.push(j);
                    }
                }
            }
        }
        stages.push(StagePlan { index: i, name: st.name.clone(), base, deps });
    }

    let target = match target {
        None => stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| PlanError::NoSuchTarget(t.to_string()))?
        }
    };

    // Depth-first from the target: post-order is a dependency-first order; a node met again
    // while on the stack is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; stages.len()];
    let mut order = Vec::new();
    fn visit(
        i: usize,
        stages: &[StagePlan],
        mark: &mut [Mark],
        order: &mut Vec<usize>,
        stack: &mut Vec<usize>,
    ) -> Result<(), PlanError> {
        match mark[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let names: Vec<String> = stack
                    .iter()
                    .skip_while(|&&s| s != i)
                    .chain(std::iter::once(&i))
                    .map(|&s| stages[s].display_name())
                    .collect();
                return Err(PlanError::Cycle(names.join(" -> ")));
            }
            Mark::New => {}
        }
        mark[i] = Mark::Active;
        stack.push(i);
        for &d in &stages[i].deps {
            visit(d, stages, mark, order, stack)?;
        }
        stack.pop();
        mark[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    visit(target, &stages, &mut mark, &mut order, &mut Vec::new())?;
    Ok(StageGraph { stages, target, order, global_args: global })
}

/// True for an ADD/COPY source that is a URL (`http://`, `https://`) or a git address.
pub fn is_remote_source(s: &Source) -> bool {
    match s {
        Source::Path(p) => {
            let p = p.to_ascii_lowercase();
            p.starts_with("http://") || p.starts_with("https://") || p.starts_with("git@")
        }
        Source::Heredoc(_) => false,
    }
}
