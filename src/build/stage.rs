//! One stage, instruction by instruction: ARG/ENV scope, config changes, and the steps that
//! have a key (FROM, RUN, COPY, ADD, WORKDIR).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::dockerfile::ast::{CommandLine, Healthcheck, Instruction, Node};
use crate::plan::cachekey::{self, BaseInput};
use crate::plan::graph::oci_arch;
use crate::plan::stages::{Base, FromRef, Scope};
use crate::progress::BuildEvent;
use crate::store::{CacheRecord, ContainerConfig, Empty, HealthConfig, History, ImageConfig};

use super::explain::BaseFacts;
use super::rootfs::Layer;
use super::{BuildError, Ctx};

/// The state of a stage after some instructions: what the next step starts from.
#[derive(Debug, Clone)]
pub struct StageState {
    /// Key of the last step (`sha256:...`): the parent of the next one.
    pub key: String,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The image config so far (history included; `rootfs` is filled at commit).
    pub config: ImageConfig,
    /// History entries made by this build without a cache record: they get the image's
    /// `created` time at commit.
    pub pending_created: Vec<usize>,
    /// The base's manifest digest (`FROM image`), for COPY --from=image keys.
    pub base_manifest: Option<String>,
    /// Keys (hex) of the steps applied so far, bottom first, base stages included: what
    /// `--cache-to` exports.
    pub keys: Vec<String>,
}

impl StageState {
    pub fn cc(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(ContainerConfig::default)
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .map(|v| {
                v.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn env_set(&mut self, k: &str, v: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
        self.cc().env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    }

    pub fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    pub fn user(&self) -> Option<String> {
        self.config.config.as_ref().and_then(|c| c.user.clone()).filter(|u| !u.is_empty())
    }

    pub fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    /// Add a history entry without a layer (its time comes at commit).
    pub fn history_empty(&mut self, created_by: String) {
        self.pending_created.push(self.config.history.len());
        self.config.history.push(History {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: None,
            empty_layer: true,
        });
    }

    /// Apply a cache record (hit or freshly written) of a step with a key.
    pub fn apply_record(&mut self, key: &str, rec: &CacheRecord) {
        self.key = key.to_string();
        self.keys.push(super::run::key_hex(key).to_string());
        let empty = match (&rec.layer, &rec.diff_id) {
            (Some(desc), Some(diff_id)) => {
                self.layers.push(Layer { desc: desc.clone(), diff_id: diff_id.clone() });
                false
            }
            _ => true,
        };
        self.config.history.push(History {
            created: rec.created.clone(),
            created_by: Some(rec.created_by.clone()),
            author: None,
            comment: None,
            empty_layer: empty,
        });
    }

    /// Record a step that wrote `layer`: its cache record (what `history` shows, when, the
    /// key's inputs and the layer's size for `--explain` and the reports) goes into the
    /// store's cache, then into this stage.
    pub(crate) fn commit_layer(
        &mut self,
        ctx: &Ctx<'_>,
        key: &cachekey::CacheKey,
        layer: Layer,
        tar_size: u64,
        created_by: String,
    ) -> Result<(), BuildError> {
        let rec = layer_record(ctx, key, layer, tar_size, created_by);
        ctx.store.cache_put(super::run::key_hex(&key.digest), &rec)?;
        self.apply_record(&key.digest, &rec);
        Ok(())
    }

    /// The one cache check every step with a key makes: record the key for `--explain`,
    /// look it up (local store, then `--cache-from` sources) unless `--no-cache`, and on a hit
    /// apply the record. On a miss, `--explain` learns why; the caller then runs the step.
    pub(crate) fn reuse_cached(
        &mut self,
        ctx: &Ctx<'_>,
        key: &cachekey::CacheKey,
        info: &StepInfo,
        selection: Option<super::explain::Selection>,
        bytes_hashed: u64,
    ) -> bool {
        ctx.explain.key(info.id, key, selection, bytes_hashed);
        if !ctx.opts.no_cache {
            if let Some(rec) = ctx.cache_lookup(super::run::key_hex(&key.digest)) {
                self.apply_record(&key.digest, &rec);
                return true;
            }
        }
        ctx.explain.miss(ctx, info.id);
        false
    }
}

/// The cache record of a step that wrote `layer`.
pub(crate) fn layer_record(
    ctx: &Ctx<'_>,
    key: &cachekey::CacheKey,
    layer: Layer,
    tar_size: u64,
    created_by: String,
) -> CacheRecord {
    CacheRecord {
        layer: Some(layer.desc),
        diff_id: Some(layer.diff_id),
        created_by,
        created: Some(super::image::now_rfc3339(ctx.opts.source_date_epoch)),
        extra: super::report::with_layer_size(super::trace_extra(&key.trace), tar_size),
    }
}

/// The environment of a RUN: the scope's variables (ENV and ARG values, in BuildKit's
/// order; `PATH` always set) plus the proxy build args (passed, never in keys or history).
pub fn run_env(scope: &Scope, proxy_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = scope.env.clone();
    for (k, v) in proxy_env {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !env.iter().any(|(n, _)| n == "PATH") {
        env.push(("PATH".to_string(), crate::sandbox::DEFAULT_PATH.to_string()));
    }
    env
}

/// What a step shows and where it came from.
pub struct StepInfo {
    pub id: u32,
    pub start: Instant,
    pub location: String,
    pub instruction: String,
}

impl StepInfo {
    pub fn err(&self, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            location: self.location.clone(),
            instruction: self.instruction.clone(),
            message: message.into(),
        }
    }
}

fn short(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut s: String = first.chars().take(120).collect();
    if s.len() < first.len() || text.lines().count() > 1 {
        s.push_str(" ...");
    }
    s
}

fn keyword_text(node: &Node) -> String {
    let orig = node.original().trim();
    let kw = node.instruction.keyword();
    match orig.get(kw.len()..) {
        Some(rest) if orig.len() >= kw.len() && orig[..kw.len()].eq_ignore_ascii_case(kw) => {
            format!("{kw} {}", rest.trim())
        }
        _ => orig.to_string(),
    }
}

/// Build stage `idx`.
pub fn run_stage(ctx: &Ctx<'_>, idx: usize) -> Result<StageState, BuildError> {
    let stage = &ctx.df.stages[idx];
    let plan = &ctx.graph.stages.stages[idx];
    let scoped = ctx.graph.scoped[idx]
        .as_ref()
        .ok_or_else(|| BuildError::Options(format!("internal: stage {idx} was not planned")))?;
    let multi = ctx.df.stages.len() > 1;
    let prefix = if multi { format!("{} ", plan.display_name()) } else { String::new() };
    let from_loc = format!("{}:{}", ctx.dockerfile_display, stage.from_node.span().start_line());

    // The base.
    let from_id = ctx.next_id();
    let (mut s, base_name) = match &plan.base {
        Base::Scratch => {
            let config = ImageConfig {
                architecture: oci_arch().to_string(),
                os: "linux".to_string(),
                ..Default::default()
            };
            let st = StageState {
                key: cachekey::base_key(&BaseInput::Scratch, ctx.opts.source_date_epoch).digest,
                layers: Vec::new(),
                config,
                pending_created: Vec::new(),
                base_manifest: None,
                keys: Vec::new(),
            };
            (st, "scratch".to_string())
        }
        Base::Stage(j) => {
            let base = ctx.wait_stage(*j)?;
            let mut st = (*base).clone();
            st.base_manifest = None;
            (st, ctx.graph.stages.stages[*j].display_name())
        }
        Base::Image(r) => {
            let rec = ctx.store.resolve(r).map_err(|e| BuildError::Step {
                location: from_loc.clone(),
                instruction: format!("FROM {r}"),
                message: format!("{e}; load it first with `rbuild load -i FILE` (rbuild does not pull)"),
            })?;
            let digest = rec.manifest_desc.digest.to_string();
            if let Some(want) = &plan.platform {
                // rbuild does not pull, so it cannot pick another variant: warn like BuildKit.
                let mut parts = want.split('/');
                let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (have_os, have_arch) = (rec.config.os.as_str(), rec.config.architecture.as_str());
                if (!os.is_empty() && os != have_os) || (!arch.is_empty() && arch != have_arch) {
                    ctx.progress.warn(format!(
                        "InvalidBaseImagePlatform: base image {r} has platform {have_os}/{have_arch}, expected {want} for the current build ({from_loc})"
                    ));
                }
            }
            if rec.manifest.layers.len() != rec.config.rootfs.diff_ids.len() {
                return Err(BuildError::Step {
                    location: from_loc,
                    instruction: format!("FROM {r}"),
                    message: "the image's manifest and config disagree on the number of layers".into(),
                });
            }
            let layers = Layer::of_image(&rec);
            let mut config = rec.config.clone();
            config.created = None;
            let st = StageState {
                key: cachekey::base_key(&BaseInput::Image { manifest_digest: &digest }, ctx.opts.source_date_epoch).digest,
                layers,
                config,
                pending_created: Vec::new(),
                base_manifest: Some(digest),
                keys: Vec::new(),
            };
            (st, r.clone())
        }
    };

    // What runs, in order, each with its scope and its expanded instruction:
    // 1. the ONBUILD triggers of a base *image* (from its config; run with the stage's initial
    //    scope, not expanded: a limitation), 2. those of a base *stage* (planned, expanded),
    // 3. the stage's own instructions.
    struct Item<'n> {
        node: std::borrow::Cow<'n, Node>,
        scope: Scope,
        instr: Instruction,
        location: String,
        /// Where the instruction comes from, for `--explain`'s step identity.
        origin: String,
        /// What it reads besides its stage (`COPY --from`, a mount's `from=`), as planned.
        reads: &'n [FromRef],
    }
    let mut items: Vec<Item<'_>> = Vec::new();
    let triggers = s.config.config.as_mut().and_then(|c| c.on_build.take()).unwrap_or_default();
    match &plan.base {
        Base::Image(_) if !triggers.is_empty() => {
            let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
            let parsed = crate::dockerfile::parse(&text, std::path::Path::new("ONBUILD")).map_err(|e| {
                BuildError::Step {
                    location: from_loc.clone(),
                    instruction: format!("FROM {base_name}"),
                    message: format!("the base image's ONBUILD triggers do not parse: {}", e.summary()),
                }
            })?;
            for st0 in parsed.stages.into_iter().take(1) {
                for (k, n) in st0.instructions.into_iter().enumerate() {
                    items.push(Item {
                        origin: format!("onbuild-image:{k}"),
                        instr: n.instruction.clone(),
                        node: std::borrow::Cow::Owned(n),
                        scope: scoped.initial.clone(),
                        location: format!("{from_loc} (ONBUILD of {base_name})"),
                        reads: &[],
                    });
                }
            }
        }
        Base::Stage(j) => {
            for (k, t) in scoped.triggers.iter().enumerate() {
                if let Some(n) = ctx.df.stages[*j].instructions.get(t.index) {
                    items.push(Item {
                        origin: format!("onbuild:{}", t.index),
                        node: std::borrow::Cow::Borrowed(n),
                        scope: t.scope.clone(),
                        instr: t.expanded.clone(),
                        location: format!("{}:{} (ONBUILD)", ctx.dockerfile_display, t.span.start.line),
                        reads: plan.trigger_from.get(k).map_or(&[], Vec::as_slice),
                    });
                }
            }
        }
        _ => {}
    }
    for t in &scoped.instructions {
        if let Some(n) = stage.instructions.get(t.index) {
            items.push(Item {
                origin: t.index.to_string(),
                node: std::borrow::Cow::Borrowed(n),
                scope: t.scope.clone(),
                instr: t.expanded.clone(),
                location: format!("{}:{}", ctx.dockerfile_display, t.span.start.line),
                reads: plan.copy_from.get(t.index).map_or(&[], Vec::as_slice),
            });
        }
    }
    let total = 1 + items
        .iter()
        .filter(|it| {
            matches!(it.instr, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_))
        })
        .count();

    // Like BuildKit, an image without PATH (scratch, imported root file systems) gets
    // Docker's default in its config, so `run` finds commands the way RUN did.
    if !s.env().iter().any(|(k, _)| k == "PATH") {
        s.env_set("PATH", crate::sandbox::DEFAULT_PATH);
    }

    let mut from_name = format!("[{prefix}1/{total}] FROM {base_name}");
    if let Some(n) = &stage.name {
        from_name.push_str(&format!(" AS {n}"));
    }
    ctx.progress.send(BuildEvent::StepStarted { id: from_id, name: from_name.clone() });
    ctx.progress.send(BuildEvent::StepCached { id: from_id });
    let base_facts = match &plan.base {
        Base::Scratch => Some(BaseFacts {
            image: "scratch".into(),
            manifest: None,
            source_date_epoch: ctx.opts.source_date_epoch,
        }),
        Base::Image(_) => Some(BaseFacts {
            image: base_name.clone(),
            manifest: s.base_manifest.clone(),
            source_date_epoch: ctx.opts.source_date_epoch,
        }),
        Base::Stage(_) => None,
    };
    ctx.explain.base(ctx, from_id, &plan.display_name(), &from_name, &s.key, base_facts);
    ctx.steps.fetch_add(1, Ordering::Relaxed);
    ctx.cached.fetch_add(1, Ordering::Relaxed);

    let mut cmd_set = false;
    let mut n = 1;
    for item in &items {
        if ctx.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let node: &Node = &item.node;
        let location = item.location.clone();
        let text = keyword_text(node);
        // The planner expanded every field Docker expands; what is left is used as is.
        let exp = |w: &str| -> Result<String, BuildError> { Ok(w.to_string()) };
        let exps = |w: &str| -> Result<Vec<String>, BuildError> { Ok(vec![w.to_string()]) };
        let keyed = matches!(
            item.instr,
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_)
        );
        if keyed {
            n += 1;
            // A step that reads another stage starts when that stage is built, so its time
            // in the report is its own, not the other stage's.
            for r in item.reads {
                if let FromRef::Stage(j) = r {
                    let _ = ctx.wait_stage(*j);
                }
            }
            let info = StepInfo { id: ctx.next_id(), start: Instant::now(), location: location.clone(), instruction: short(&text) };
            let name = format!("[{prefix}{n}/{total}] {}", short(&text));
            ctx.progress.send(BuildEvent::StepStarted { id: info.id, name: name.clone() });
            let args = item.scope.args.iter().map(|(k, _)| k.clone());
            let args = args.filter(|k| !item.scope.image_env.iter().any(|(e, _)| e == k)).collect();
            let src = super::explain::StepSource {
                stage: &plan.display_name(),
                item: &item.origin,
                keyword: item.instr.keyword(),
                text: &text,
            };
            ctx.explain.begin(info.id, src, &name, args);
            ctx.steps.fetch_add(1, Ordering::Relaxed);
            let r = match &item.instr {
                Instruction::Run(r) => {
                    let env = run_env(&item.scope, &ctx.graph.stages.proxy_env);
                    super::run::run_step(ctx, &mut s, env, r, &info)
                }
                Instruction::Copy(c) => super::copy::CopyRequest::from_copy(c, &exp, &info)
                    .and_then(|req| super::copy::copy_step(ctx, &mut s, req, &info)),
                Instruction::Add(a) => super::copy::CopyRequest::from_add(a, &exp, &info)
                    .and_then(|req| super::copy::copy_step(ctx, &mut s, req, &info)),
                Instruction::Workdir(w) => exp(&w.value).and_then(|v| {
                    let path = absolute(&s.workdir(), &v);
                    s.cc().working_dir = Some(path.clone());
                    super::copy::workdir_step(ctx, &mut s, &path, &info)
                }),
                _ => Ok(false),
            };
            match r {
                Ok(true) => {
                    ctx.cached.fetch_add(1, Ordering::Relaxed);
                    ctx.progress.send(BuildEvent::StepCached { id: info.id });
                }
                Ok(false) => {
                    ctx.fresh.fetch_add(1, Ordering::Relaxed);
                    ctx.progress.send(BuildEvent::StepDone { id: info.id, elapsed: info.start.elapsed() })
                }
                Err(e) => {
                    let msg = match &e {
                        BuildError::Cancelled | BuildError::CancelledKept(_) => "cancelled".to_string(),
                        e => e.to_string().lines().next().unwrap_or("").to_string(),
                    };
                    ctx.explain.failed(ctx, info.id, &plan.display_name());
                    ctx.progress.send(BuildEvent::StepFailed { id: info.id, elapsed: info.start.elapsed(), error: msg });
                    return Err(e);
                }
            }
            ctx.explain.finish(ctx, info.id);
            continue;
        }
        match &item.instr {
            Instruction::Arg(_) => {}
            Instruction::Env(kv) => {
                // Every value sees the env from before this instruction (Docker's rule).
                let mut pairs = Vec::new();
                for p in &kv.pairs {
                    pairs.push((exp(&p.key)?, exp(&p.value)?));
                }
                for (k, v) in &pairs {
                    s.env_set(k, v);
                }
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.history_empty(format!("ENV {}", shown.join(" ")));
            }
            Instruction::Label(kv) => {
                let mut labels = s.cc().labels.take().unwrap_or_default();
                let mut shown = Vec::new();
                for p in &kv.pairs {
                    let (k, v) = (exp(&p.key)?, exp(&p.value)?);
                    shown.push(format!("{k}={v}"));
                    labels.insert(k, v);
                }
                s.cc().labels = Some(labels);
                s.history_empty(format!("LABEL {}", shown.join(" ")));
            }
            Instruction::Maintainer(t) => {
                s.config.author = Some(exp(&t.value)?);
                s.history_empty(text.clone());
            }
            Instruction::Expose(w) => {
                let mut ports = s.cc().exposed_ports.take().unwrap_or_default();
                for word in &w.words {
                    for p in exps(word)? {
                        let p = if p.contains('/') { p.to_ascii_lowercase() } else { format!("{p}/tcp") };
                        ports.insert(p, Empty {});
                    }
                }
                let shown: Vec<String> = ports.keys().cloned().collect();
                s.cc().exposed_ports = Some(ports);
                s.history_empty(format!("EXPOSE {}", shown.join(" ")));
            }
            Instruction::Volume(w) => {
                let mut vols = s.cc().volumes.take().unwrap_or_default();
                for word in &w.words {
                    for v in exps(word)? {
                        vols.insert(v, Empty {});
                    }
                }
                s.cc().volumes = Some(vols);
                s.history_empty(text.clone());
            }
            Instruction::User(t) => {
                let u = exp(&t.value)?;
                s.cc().user = Some(u.clone());
                s.history_empty(format!("USER {u}"));
            }
            Instruction::Cmd(c) => {
                let v = command_vec(c, &s.shell());
                s.cc().cmd = Some(v);
                cmd_set = true;
                s.history_empty(text.clone());
            }
            Instruction::Entrypoint(c) => {
                let v = command_vec(c, &s.shell());
                s.cc().entrypoint = Some(v);
                if !cmd_set {
                    s.cc().cmd = None;
                }
                s.history_empty(text.clone());
            }
            Instruction::Shell(w) => {
                s.cc().shell = Some(w.words.clone());
                s.history_empty(text.clone());
            }
            Instruction::Stopsignal(t) => {
                s.cc().stop_signal = Some(exp(&t.value)?);
                s.history_empty(text.clone());
            }
            Instruction::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() },
                    Healthcheck::Cmd { command, interval, timeout, start_period, start_interval, retries } => {
                        let test = match command {
                            CommandLine::Shell(sh) => vec!["CMD-SHELL".to_string(), sh.clone()],
                            CommandLine::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                        };
                        let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64);
                        HealthConfig {
                            test: Some(test),
                            interval: ns(interval),
                            timeout: ns(timeout),
                            start_period: ns(start_period),
                            start_interval: ns(start_interval),
                            retries: retries.map(i64::from),
                            ..Default::default()
                        }
                    }
                };
                s.cc().healthcheck = Some(hc);
                s.history_empty(text.clone());
            }
            Instruction::Onbuild(o) => {
                let mut v = s.cc().on_build.take().unwrap_or_default();
                v.push(o.original.clone());
                s.cc().on_build = Some(v);
                s.history_empty(text.clone());
            }
            Instruction::From(_) => {}
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_) => {}
        }
    }
    Ok(s)
}

/// CMD/ENTRYPOINT as stored: exec form as is, shell form wrapped in SHELL.
fn command_vec(c: &CommandLine, shell: &[String]) -> Vec<String> {
    match c {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(sh) => {
            let mut v = shell.to_vec();
            v.push(sh.clone());
            v
        }
    }
}

/// `rel` against `base` (WORKDIR rule), cleaned, absolute.
pub fn absolute(base: &str, rel: &str) -> String {
    let joined = if rel.starts_with('/') { rel.to_string() } else { format!("{base}/{rel}") };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Docker's layer media types are stored in our OCI manifests with their OCI names.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths() {
        assert_eq!(absolute("/", "app"), "/app");
        assert_eq!(absolute("/app", "src/../lib"), "/app/lib");
        assert_eq!(absolute("/app", "/x/"), "/x");
        assert_eq!(absolute("/a", ".."), "/");
    }
}
