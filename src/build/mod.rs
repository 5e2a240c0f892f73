//! The build scheduler: walks the plan's stage graph, asks the cache, runs ops, assembles
//! the image.
//!
//! # Lifecycle of `rbuild -t app:1 .`
//!
//! 1. Read and parse the Dockerfile; [`crate::plan::stages::plan_stages`] picks the stages the
//!    target needs, orders them, and expands every instruction with its ARG/ENV scope.
//! 2. One thread per needed stage. A stage that reads from another (FROM, COPY --from) waits
//!    for it; independent stages run at the same time.
//! 3. Per step (FROM, RUN, COPY, ADD, WORKDIR): compute the key ([`crate::plan::cachekey`]),
//!    look it up ([`crate::store::Store::cache_get`], then the `--cache-from` directories:
//!    `cache_io.rs`). A hit reuses the recorded layer without
//!    touching the file system. A miss runs the op: RUN in the sandbox over an overlay of the
//!    parent layers' snapshots plus a fresh upper dir; COPY/ADD/WORKDIR write into such an
//!    overlay mounted in a private mount namespace of a helper thread. The upper dir becomes a
//!    deterministic layer blob, and only then the cache record is written: nothing partial
//!    ever enters the cache. Config-only instructions change the stage's config.
//! 4. The final stage's config and manifest are stored and tagged; `--cache-to` exports the
//!    records of the build's steps ([`BuildResult::cache_keys`]).
//!
//! # Determinism
//!
//! COPY, ADD and WORKDIR layers are written with every mtime set to `SOURCE_DATE_EPOCH`
//! (or 0 when unset): their content depends only on their key's inputs, so the same inputs
//! give the same layer digest on any machine. RUN layers keep the times the process left
//! (clamped to `SOURCE_DATE_EPOCH` when set). The image's `created` time is recorded under a
//! key of the final step and the config's other content, so a fully cached rebuild reuses it
//! and yields the same image ID.
//!
//! # Cancellation
//!
//! [`Cancel`] is shared with a signal thread ([`Cancel::on_signals`]): SIGINT/SIGTERM kill
//! every running sandbox (SIGKILL to its PID 1, which ends its PID namespace and mounts),
//! the stage threads stop at the next step, temporary directories are removed when their
//! guards drop, and the build returns [`BuildError::Cancelled`]. The store stays valid:
//! blobs are committed atomically and cache records are written last. Leftovers of a build
//! killed with SIGKILL (temp dirs under `<root>/tmp/build-<pid>-*`) are swept by the next build.

mod cache_io;
mod cancel;
mod checksum;
mod copy;
mod explain;
mod git;
mod image;
mod mounts;
mod pool;
mod remote;
mod rootfs;
mod run;
mod stage;
mod validate;

pub mod report;
pub mod secrets;
pub mod ssh;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use cache_io::{CacheKeys, CacheMode, CacheTo};
pub use cancel::Cancel;
pub use secrets::Secrets;
pub use ssh::SshAgents;

use crate::dockerfile::dockerignore::Dockerignore;
use crate::dockerfile::{self, Dockerfile};
use crate::plan::context::{ContextFilter, ContextIndex, StatCache};
use crate::plan::stages::{self, StageOptions, StagePlan};
use crate::progress::{BuildEvent, ProgressSink};
use crate::store::{CacheRecord, Descriptor, Digest, Reference, Store};

/// Network of RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network (default; package installs work).
    #[default]
    Host,
    /// Only a loopback interface.
    None,
}

/// Format of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// OCI archive.
    Oci,
    /// docker-archive (`docker load`).
    Docker,
}

/// `--output type=...,dest=FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Archive format.
    pub format: OutputFormat,
    /// Destination file.
    pub dest: PathBuf,
}

/// The context filter: `.dockerignore`, and the files rbuild itself writes inside the
/// context. A `--timings` report or a `--cache-to` directory in the context would otherwise
/// be part of the next build's context, so `COPY . .` would never be cached (and the
/// reports would end up in the image).
struct OwnOutputsLeftOut {
    rules: Dockerignore,
    /// Context-relative paths (`/`-separated) of the outputs inside the context.
    outputs: Vec<String>,
}

impl OwnOutputsLeftOut {
    fn new(rules: Dockerignore, context: &Path, outputs: Vec<&Path>) -> Self {
        let ctx = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let outputs = outputs
            .into_iter()
            .filter_map(|p| {
                let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
                // The output may not exist yet: resolve its directory.
                let dir = std::fs::canonicalize(abs.parent()?).ok()?;
                let full = match abs.file_name() {
                    Some(n) => dir.join(n),
                    None => dir,
                };
                let rel = full.strip_prefix(&ctx).ok()?.to_str()?.to_string();
                (!rel.is_empty()).then_some(rel)
            })
            .collect();
        OwnOutputsLeftOut { rules, outputs }
    }

    fn is_output(&self, rel: &str) -> bool {
        self.outputs.iter().any(|o| rel == o || rel.strip_prefix(o.as_str()).is_some_and(|r| r.starts_with('/')))
    }
}

impl ContextFilter for OwnOutputsLeftOut {
    fn is_excluded(&self, rel: &str) -> bool {
        self.is_output(rel) || self.rules.is_excluded(rel)
    }
    fn can_skip_dir(&self, rel: &str) -> bool {
        self.is_output(rel) || self.rules.can_skip_dir(rel)
    }
}

/// BuildKit's `SecretsUsedInArgOrEnv` check: an ARG or ENV whose name looks like a secret.
/// Their values end up in the image config or history and in the build cache.
fn secret_named_args(df: &crate::dockerfile::ast::Dockerfile) -> Vec<String> {
    use crate::dockerfile::ast::Instruction;
    let nodes = df.global_args.iter().chain(df.stages.iter().flat_map(|s| s.instructions.iter()));
    let mut out = Vec::new();
    for n in nodes {
        let names: Vec<&str> = match &n.instruction {
            Instruction::Arg(a) => a.args.iter().map(|d| d.name.as_str()).collect(),
            Instruction::Env(kv) => kv.pairs.iter().map(|p| p.key.as_str()).collect(),
            _ => continue,
        };
        for name in names.into_iter().filter(|n| explain::looks_secret(n)) {
            out.push(format!(
                "{}:{}: {} {name} looks like a secret: its value is kept in the image or its history and in the build cache; \
                 pass it with --secret id={name} and RUN --mount=type=secret,id={name}",
                df.path.display(),
                n.span().start_line(),
                n.instruction.keyword(),
            ));
        }
    }
    out
}

/// Everything a build needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default `<context>/Dockerfile`; `-` reads it from stdin).
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's bytes when they do not come from a file (`-f -`: stdin); then
    /// `dockerfile` is ignored and the context's `.dockerignore` applies.
    pub dockerfile_bytes: Option<Vec<u8>>,
    /// Tags to write (validated before anything runs).
    pub tags: Vec<String>,
    /// `--target` stage name.
    pub target: Option<String>,
    /// `--build-arg K=V` (and `--build-arg K` taken from the environment by the CLI).
    pub build_args: BTreeMap<String, String>,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// Default network of RUN steps.
    pub network: Network,
    /// `--output`.
    pub output: Option<Output>,
    /// The rbuild executable (re-executed as the sandbox's init).
    pub init_exe: PathBuf,
    /// `SOURCE_DATE_EPOCH`: clamps layer times and fixes `created`.
    pub source_date_epoch: Option<i64>,
    /// `--explain`: say why each step that missed the cache did.
    pub explain: bool,
    /// `--cache-from type=local,src=DIR`: cache directories consulted on a local miss.
    pub cache_from: Vec<PathBuf>,
    /// `--cache-to type=local,dest=DIR`: where to export the cache after the build.
    pub cache_to: Option<CacheTo>,
    /// `--secret`: the values for `RUN --mount=type=secret` (never in keys or records).
    pub secrets: Secrets,
    /// `--ssh`: the agents `RUN --mount=type=ssh` may use.
    pub ssh: SshAgents,
    /// Files the caller writes after the build (`--timings`, `--metadata-file`): like the
    /// build's own outputs (`--output`, `--cache-to`) they are left out of the context.
    pub report_files: Vec<PathBuf>,
}

impl BuildOptions {
    /// What rbuild writes because of this build: reports, `--output`, `--cache-to`.
    pub fn own_outputs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.report_files.iter().map(PathBuf::as_path).collect();
        v.extend(self.output.as_ref().map(|o| o.dest.as_path()));
        v.extend(self.cache_to.as_ref().map(|c| c.dest.as_path()));
        v
    }

    /// Options for a context dir with defaults (init_exe = this executable).
    pub fn new(context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            context: context.into(),
            dockerfile: None,
            dockerfile_bytes: None,
            tags: Vec::new(),
            target: None,
            build_args: BTreeMap::new(),
            no_cache: false,
            network: Network::Host,
            output: None,
            init_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()),
            explain: false,
            cache_from: Vec::new(),
            cache_to: None,
            secrets: Secrets::default(),
            ssh: SshAgents::default(),
            report_files: Vec::new(),
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// Image ID: the config digest.
    pub image_id: Digest,
    /// The manifest.
    pub manifest: Descriptor,
    /// Tags written.
    pub tags: Vec<Reference>,
    /// Steps with a key that ran or hit.
    pub steps: usize,
    /// Of which cache hits.
    pub cached: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The cache keys of the build's steps (what `--cache-to` exports).
    pub cache_keys: CacheKeys,
}

/// Errors of a build. One line each (a failing RUN adds the last lines of its output).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error("{0}")]
    Parse(#[from] crate::dockerfile::ParseError),
    /// Stage planning failed.
    #[error(transparent)]
    Plan(#[from] crate::plan::stages::StageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Exporting the cache failed.
    #[error(transparent)]
    Cache(#[from] crate::store::CacheDirError),
    /// A bad option (tag, build arg, output).
    #[error("{0}")]
    Options(String),
    /// A step failed; `location` is `Dockerfile:LINE`.
    #[error("{location}: {instruction}: {message}")]
    Step {
        /// `path:line`.
        location: String,
        /// The instruction, shortened.
        instruction: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// A RUN exited non-zero.
    #[error("{location}: {instruction}: process {command:?} did not complete successfully: exit code: {code}{tail}")]
    RunFailed {
        /// `path:line`.
        location: String,
        /// The instruction, shortened.
        instruction: String,
        /// The argv as one string.
        command: String,
        /// Exit code (128+N for signal N).
        code: i32,
        /// The last lines of output, each on its own line starting with `  > `.
        tail: String,
    },
    /// Stopped by Ctrl-C / SIGTERM.
    #[error("build cancelled before any step finished; temporary files were removed and nothing was cached or tagged (`rbuild prune` frees layer data the stopped step had written)")]
    Cancelled,
    /// Stopped by Ctrl-C / SIGTERM after some steps had finished (their results stay cached,
    /// so the next build reuses them).
    #[error("build cancelled; temporary files were removed; {0} finished step{s} kept in the build cache", s = if *.0 == 1 { " was" } else { "s were" })]
    CancelledKept(usize),
    /// A stage this one needs failed (reported once, by that stage).
    #[error("stage {0} failed")]
    DependencyFailed(String),
}

impl BuildError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BuildError::Io { path: path.to_path_buf(), source }
    }
}

/// What a cache record keeps besides the layer: the key's inputs (`key_trace`), so a later
/// `--explain` can say which input changed.
pub(crate) fn trace_extra(trace: &crate::plan::cachekey::KeyTrace) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut m = std::collections::BTreeMap::new();
    if let Ok(v) = serde_json::to_value(trace) {
        m.insert("key_trace".to_string(), v);
    }
    m
}

/// Shared by every stage thread of one build.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    pub df: &'a Dockerfile,
    pub graph: &'a StagePlan,
    pub progress: &'a ProgressSink,
    pub cancel: &'a Cancel,
    pub dockerfile_display: String,
    /// This build's scratch dir under `<root>/tmp`.
    pub tmp: PathBuf,
    ids: AtomicU32,
    pub steps: AtomicUsize,
    pub cached: AtomicUsize,
    /// Steps that ran and were recorded in the cache during this build.
    pub fresh: AtomicUsize,
    context: OnceLock<Result<Arc<ContextIndex>, String>>,
    ignore: Arc<dyn ContextFilter>,
    pub stat_cache: StatCache,
    root_mode: OnceLock<rootfs::RootMode>,
    results: Mutex<HashMap<usize, Result<Arc<stage::StageState>, ()>>>,
    done: Condvar,
    errors: Mutex<Vec<BuildError>>,
    pub(crate) explain: explain::Explainer,
    imports: cache_io::Imports,
}

impl Ctx<'_> {
    /// Is stage `i` part of this build?
    pub fn is_needed(&self, i: usize) -> bool {
        self.graph.stages.order.contains(&i)
    }

    /// Overlay, or copies where overlayfs does not work (probed once; `RBUILD_NO_OVERLAY=1`
    /// forces copies).
    pub fn root_mode(&self) -> rootfs::RootMode {
        *self.root_mode.get_or_init(|| {
            let forced = std::env::var_os("RBUILD_NO_OVERLAY").is_some_and(|v| v == "1");
            if forced || !crate::snapshot::overlay::overlay_supported(&self.tmp) {
                self.progress.warn(
                    "overlayfs is unavailable here: each step works on a copy of its root file system (slower)",
                );
                rootfs::RootMode::Copy
            } else {
                rootfs::RootMode::Overlay
            }
        })
    }

    /// The error of a build stopped by the user: says whether finished steps were kept.
    fn cancelled(&self) -> BuildError {
        match self.fresh.load(Ordering::Relaxed) {
            0 => BuildError::Cancelled,
            n => BuildError::CancelledKept(n),
        }
    }

    /// A fresh progress id.
    pub fn next_id(&self) -> u32 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The context index (scanned on first use).
    pub fn context(&self) -> Result<Arc<ContextIndex>, BuildError> {
        let r = self.context.get_or_init(|| {
            let id = self.next_id();
            let start = Instant::now();
            self.progress.send(BuildEvent::StepStarted { id, name: "[internal] load build context".into() });
            let r = ContextIndex::scan(&self.opts.context, Arc::clone(&self.ignore))
                .map(Arc::new)
                .map_err(|e| format!("{e}"));
            match &r {
                Ok(_) => self.progress.send(BuildEvent::StepDone { id, elapsed: start.elapsed() }),
                Err(e) => self.progress.send(BuildEvent::StepFailed {
                    id,
                    elapsed: start.elapsed(),
                    error: e.clone(),
                }),
            }
            r
        });
        r.clone().map_err(|e| BuildError::Options(format!("reading the build context: {e}")))
    }

    /// The cache record of `key` (hex): the local store's, else one imported from a
    /// `--cache-from` directory (copied into the store). `None` is a miss.
    pub fn cache_lookup(&self, key: &str) -> Option<CacheRecord> {
        self.store.cache_get(key).or_else(|| self.imports.lookup(self.store, key, self.progress))
    }

    /// Wait until stage `i` is built.
    pub fn wait_stage(&self, i: usize) -> Result<Arc<stage::StageState>, BuildError> {
        let mut g = self.results.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = g.get(&i) {
                return r.clone().map_err(|()| {
                    BuildError::DependencyFailed(self.graph.stages.stages[i].display_name())
                });
            }
            g = self.done.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn publish(&self, i: usize, r: Result<Arc<stage::StageState>, BuildError>) {
        let stored = match r {
            Ok(s) => Ok(s),
            Err(e) => {
                // The first real failure stops every other stage.
                if !matches!(e, BuildError::DependencyFailed(_) | BuildError::Cancelled) {
                    self.cancel.abort();
                }
                self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                Err(())
            }
        };
        self.results.lock().unwrap_or_else(|p| p.into_inner()).insert(i, stored);
        self.done.notify_all();
    }
}

/// Build the image. Events go to `progress`; `cancel` stops it.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    progress: &ProgressSink,
    cancel: &Cancel,
) -> Result<BuildResult, BuildError> {
    let start = Instant::now();
    let tags: Vec<Reference> = opts
        .tags
        .iter()
        .map(|t| {
            Reference::parse(t).map_err(|e| BuildError::Options(format!("invalid tag {t:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    match std::fs::metadata(&opts.context) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(BuildError::Options(format!(
                "the build context {} is not a directory",
                opts.context.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BuildError::Options(format!(
                "context path {} not found; give the directory to build (or - for a tar on stdin)",
                opts.context.display()
            )))
        }
        Err(e) => return Err(BuildError::io(&opts.context, e)),
    }
    let from_stdin = opts.dockerfile_bytes.is_some() || opts.dockerfile.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let dockerfile_path = match (&opts.dockerfile, from_stdin) {
        (Some(p), false) => p.clone(),
        _ => opts.context.join("Dockerfile"),
    };
    let bytes = match &opts.dockerfile_bytes {
        Some(b) => b.clone(),
        None if from_stdin => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                .map_err(|e| BuildError::Options(format!("cannot read the Dockerfile from stdin: {e}")))?;
            b
        }
        None => std::fs::read(&dockerfile_path).map_err(|e| {
            BuildError::Options(format!(
                "cannot read the Dockerfile {}: {e}; pass its path with -f",
                dockerfile_path.display()
            ))
        })?,
    };
    let shown = if from_stdin { "the Dockerfile from stdin".to_string() } else { format!("the Dockerfile {}", dockerfile_path.display()) };
    let text = String::from_utf8(bytes).map_err(|e| {
        BuildError::Options(format!(
            "{shown} is not valid UTF-8 at byte {}; save it as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let display = if opts.dockerfile.is_none() || from_stdin {
        PathBuf::from("Dockerfile")
    } else {
        dockerfile_path.clone()
    };
    let df = dockerfile::parse(&text, &display)?;
    let stage_opts = StageOptions {
        build_args: opts.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        target: opts.target.clone(),
        ..Default::default()
    };
    let image_env = |r: &str| -> Vec<String> {
        store.resolve(r).ok().and_then(|rec| rec.config.config.and_then(|c| c.env)).unwrap_or_default()
    };
    let graph = stages::plan_stages(&df, &stage_opts, &image_env)?;
    for w in &graph.stages.warnings {
        progress.warn(w.clone());
    }
    for a in graph.stages.unused_build_args.iter().filter(|a| *a != "SOURCE_DATE_EPOCH") {
        progress.warn(format!("build argument {a} is not consumed by any ARG of the build"));
    }
    for w in secret_named_args(&df) {
        progress.warn(w);
    }
    for k in opts.build_args.keys().filter(|k| opts.secrets.get(k).is_some()) {
        progress.warn(format!(
            "--build-arg {k} has the name of a --secret: a build arg's value is kept in the build cache and may reach the image; pass it only as --secret"
        ));
    }
    let ignore = Dockerignore::read_for_context(&opts.context, &dockerfile_path)
        .map_err(|e| BuildError::Options(format!("reading .dockerignore: {e}")))?;
    let ignore = OwnOutputsLeftOut::new(ignore, &opts.context, opts.own_outputs());

    rootfs::sweep_stale_tmp(store);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("build-{}-", std::process::id()))
        .tempdir_in(store.tmp_dir())
        .map_err(|e| BuildError::io(&store.tmp_dir(), e))?;
    cancel.track_tmp(tmp.path().to_path_buf());
    let _lease = store.lease()?;
    let stat_file = StatCache::file_for(&store.root().join("context-cache"), &opts.context);

    let ids = AtomicU32::new(0);
    let imports = if opts.no_cache {
        cache_io::Imports::default()
    } else {
        cache_io::Imports::load(&opts.cache_from, progress, || ids.fetch_add(1, Ordering::Relaxed) + 1)
    };
    let ctx = Ctx {
        store,
        opts,
        df: &df,
        graph: &graph,
        progress,
        cancel,
        dockerfile_display: display.display().to_string(),
        tmp: tmp.path().to_path_buf(),
        ids,
        steps: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        fresh: AtomicUsize::new(0),
        context: OnceLock::new(),
        ignore: Arc::new(ignore),
        stat_cache: StatCache::load(&stat_file),
        root_mode: OnceLock::new(),
        results: Mutex::new(HashMap::new()),
        done: Condvar::new(),
        errors: Mutex::new(Vec::new()),
        explain: explain::Explainer::new(store.root(), &opts.context, &dockerfile_path, opts.explain),
        imports,
    };

    // Fail fast: an unsupported flag or a bad value anywhere stops the build before any
    // step runs.
    validate::validate(&ctx)?;

    // Scan the context up front when a needed stage copies from it, so its progress line
    // comes first and stages do not wait for each other's first COPY.
    let needs_context = graph.stages.order.iter().any(|&i| {
        df.stages[i].instructions.iter().any(|n| match &n.instruction {
            dockerfile::Instruction::Copy(c) => c.from.is_none(),
            dockerfile::Instruction::Add(_) => true,
            _ => false,
        })
    });
    if needs_context {
        ctx.context()?;
    }

    std::thread::scope(|s| {
        for &i in &graph.stages.order {
            let ctx = &ctx;
            let spawned = std::thread::Builder::new()
                .name(format!("rbuild-stage-{i}"))
                .spawn_scoped(s, move || {
                    let r = stage::run_stage(ctx, i);
                    ctx.publish(i, r.map(Arc::new));
                });
            if let Err(e) = spawned {
                ctx.publish(i, Err(BuildError::io(Path::new("thread"), e)));
            }
        }
    });

    let final_state = match ctx.wait_stage(graph.stages.target) {
        Ok(s) => s,
        Err(e) => {
            let mut errs = std::mem::take(&mut *ctx.errors.lock().unwrap_or_else(|p| p.into_inner()));
            if cancel.is_cancelled() && !cancel.is_aborted() {
                return Err(ctx.cancelled());
            }
            let first = errs
                .iter()
                .position(|e| !matches!(e, BuildError::DependencyFailed(_) | BuildError::Cancelled));
            return Err(match first {
                Some(i) => errs.swap_remove(i),
                None => errs.pop().unwrap_or(e),
            });
        }
    };
    if cancel.is_cancelled() {
        return Err(ctx.cancelled());
    }

    let (manifest, image_id, created_key) = image::commit_image(&ctx, &final_state, &tags)?;
    let cache_keys = {
        let results = ctx.results.lock().unwrap_or_else(|p| p.into_inner());
        let all = graph.stages.order.iter().filter_map(|i| results.get(i)?.as_ref().ok());
        let all: Vec<String> = all.flat_map(|s| s.keys.iter().cloned()).chain(created_key.clone()).collect();
        CacheKeys {
            target: cache_io::dedup(final_state.keys.iter().cloned().chain(created_key)),
            all: cache_io::dedup(all),
        }
    };
    if let Some(idx) = ctx.context.get().and_then(|r| r.as_ref().ok()) {
        // Only a speed-up: a failure to save it costs the next build some reading.
        if let Err(e) = ctx.stat_cache.save(idx) {
            progress.warn(format!("could not save the context stat cache: {e}"));
        }
    }
    if let Some(out) = &opts.output {
        image::write_output(&ctx, &image_id, out)?;
    }
    if let Some(to) = &opts.cache_to {
        cache_io::export(store, to, &cache_keys, progress, ctx.next_id())?;
    }
    let steps = ctx.steps.load(Ordering::Relaxed);
    let cached = ctx.cached.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    progress.send(BuildEvent::Finished {
        image_id: image_id.to_string(),
        tags: opts.tags.clone(),
        elapsed,
        steps,
        cached,
    });
    cancel.untrack_tmp(tmp.path());
    drop(tmp);
    Ok(BuildResult { image_id, manifest, tags, steps, cached, elapsed, cache_keys })
}
