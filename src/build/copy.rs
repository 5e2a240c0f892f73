//! COPY, ADD and WORKDIR: written straight into an overlay of the parent layers (no
//! sandbox), following Docker's destination rules.
//!
//! Destination rules (Docker's):
//! - a relative destination is relative to WORKDIR; missing parent directories are created
//!   (0755, root, or the `--chown` owner);
//! - a destination ending in `/` (or `.`) is a directory; with several sources it must be;
//! - a directory source copies its *contents* into the destination;
//! - a file source goes to `dest/<name>` when the destination is a directory (or already is
//!   one), else to `dest` itself;
//! - files from the context are owned by 0:0 unless `--chown`; files from `--from` keep
//!   their owners unless `--chown`. `--chown=user` without a group uses the uid as gid
//!   (Docker's documented rule); names are looked up in the image's /etc/passwd, /etc/group;
//! - `--chmod` (octal) applies to every copied file and directory;
//! - ADD extracts a local tar (plain or gzip) into the destination directory; `--checksum`
//!   checks a local file's sha256; URLs and git sources are not supported yet.
//!
//! Paths inside the image are resolved like in a chroot (symlinks stay inside the root).
//!
//! Sources (Docker's rules): symlinks in a source path are followed as long as they stay
//! inside the context (a link that climbs out of it is an error); a symlink named as a
//! source is copied as the file or directory it points to, under the *link's* name
//! (`COPY link.txt /d/` gives `/d/link.txt`).
//!
//! # Modification times (a deliberate difference from Docker)
//!
//! Every file and directory a COPY, ADD or WORKDIR layer writes gets one fixed mtime:
//! `SOURCE_DATE_EPOCH` when set, else 0 (1970-01-01). The same content then gives the same
//! layer digest whatever the checkout's or the build machine's times, so a fresh clone
//! rebuilds to the same image and caches can be shared. Docker keeps the source files'
//! mtimes instead; a program that compares mtimes (e.g. `make` against files from a RUN)
//! may see COPYed files as old. RUN layers keep the times the process left (clamped to
//! `SOURCE_DATE_EPOCH` when set). Layers store whole seconds; the tree rbuild keeps on disk
//! for later steps and `rbuild run` gets exactly the layer's times (see
//! `rootfs::apply_mtime_policy`), so it equals what a machine that loads the image sees.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::dockerfile::ast::{Add, Copy, Source};
use crate::plan::cachekey::{self, CopyInput, CopySource};
use crate::plan::context::{has_wildcard, ContextIndex, EntryKind, NoFilter, SourceMatch, StatKey};
use crate::plan::graph::{is_git_source, is_http_source, is_remote_source, stage_by_name};
use crate::plan::sources::SourceRules;
use crate::snapshot::{self, MtimePolicy, UnpackOptions};
use crate::store::{CacheRecord, MIN_POOLED_SIZE};

use super::checksum::Checksum;
use super::explain::Selection;
use super::pool::FilePool;
use super::rootfs::{lower_dirs, mkdir_in_root, resolve_in_root, step_layer, with_root, Layer, RootMode, Scratch};
use super::run::key_hex;
use super::stage::{absolute, StageState, StepInfo};
use super::{BuildError, Ctx};

/// One source of a COPY/ADD after expansion.
#[derive(Debug, Clone)]
pub enum Src {
    /// A path or pattern.
    Path(String),
    /// An inline file.
    Heredoc {
        /// File name.
        name: String,
        /// Content.
        content: String,
    },
}

/// A COPY or ADD after expansion.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub op: &'static str,
    pub sources: Vec<Src>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    pub flags: Vec<String>,
    pub unpack: bool,
    pub checksum: Option<String>,
    /// `--parents` and `--exclude`.
    pub rules: SourceRules,
    /// ADD's `--keep-git-dir`.
    pub keep_git_dir: bool,
}

type Exp<'a> = &'a dyn Fn(&str) -> Result<String, BuildError>;

fn sources(srcs: &[Source], exp: Exp<'_>) -> Result<Vec<Src>, BuildError> {
    srcs.iter()
        .map(|s| match s {
            Source::Path(p) => Ok(Src::Path(exp(p)?)),
            Source::Heredoc(h) => Ok(Src::Heredoc {
                name: h.name.clone(),
                content: if h.expand { exp(&h.content)? } else { h.content.clone() },
            }),
        })
        .collect()
}

fn parse_chmod(s: &str, info: &StepInfo) -> Result<u32, BuildError> {
    chmod_mode(s).map_err(|e| info.err(e))
}

/// `--chmod=MODE`: octal, at most 7777.
pub(super) fn chmod_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid --chmod={s}: give an octal mode such as 755"))
}

impl CopyRequest {
    /// From a COPY instruction.
    pub fn from_copy(c: &Copy, exp: Exp<'_>, info: &StepInfo) -> Result<Self, BuildError> {
        let rules = SourceRules { parents: c.parents, exclude: c.exclude.iter().map(|p| exp(p)).collect::<Result<_, _>>()? };
        let mut flags = rule_flags(&rules);
        if c.link {
            flags.push("--link".to_string());
        }
        Ok(CopyRequest {
            op: "copy",
            sources: sources(&c.sources, exp)?,
            dest: exp(&c.dest)?,
            from: c.from.as_deref().map(exp).transpose()?,
            chown: c.chown.as_deref().map(exp).transpose()?,
            chmod: c.chmod.as_deref().map(|m| exp(m).and_then(|m| parse_chmod(&m, info))).transpose()?,
            flags,
            unpack: false,
            checksum: None,
            rules,
            keep_git_dir: false,
        })
    }

    /// From an ADD instruction.
    pub fn from_add(a: &Add, exp: Exp<'_>, info: &StepInfo) -> Result<Self, BuildError> {
        // A URL is not extracted unless --unpack=true says so (BuildKit).
        let unpack = a.unpack.unwrap_or(!a.sources.iter().any(is_remote_source));
        let rules = SourceRules { parents: false, exclude: a.exclude.iter().map(|p| exp(p)).collect::<Result<_, _>>()? };
        let mut flags = rule_flags(&rules);
        if a.link {
            flags.push("--link".to_string());
        }
        flags.push(format!("--unpack={unpack}"));
        if a.keep_git_dir {
            flags.push("--keep-git-dir".to_string());
        }
        let checksum = a.checksum.as_deref().map(exp).transpose()?;
        if let Some(c) = &checksum {
            flags.push(format!("--checksum={c}"));
        }
        Ok(CopyRequest {
            op: "add",
            sources: sources(&a.sources, exp)?,
            dest: exp(&a.dest)?,
            from: None,
            chown: a.chown.as_deref().map(exp).transpose()?,
            chmod: a.chmod.as_deref().map(|m| exp(m).and_then(|m| parse_chmod(&m, info))).transpose()?,
            flags,
            unpack,
            checksum,
            rules,
            keep_git_dir: a.keep_git_dir,
        })
    }
}

/// `--parents` and `--exclude` as cache-key flags. The key sorts flags, but the order of
/// exclude patterns matters (a `!` re-includes what an earlier one excluded): one flag.
fn rule_flags(r: &SourceRules) -> Vec<String> {
    let mut flags = Vec::new();
    if !r.exclude.is_empty() {
        flags.push(format!("--exclude={}", serde_json::to_string(&r.exclude).unwrap_or_default()));
    }
    if r.parents {
        flags.push("--parents".to_string());
    }
    flags
}

enum From {
    Context(Arc<ContextIndex>),
    Stage { key: String, layers: Vec<Layer> },
    Image { manifest: String, layers: Vec<Layer> },
}

/// COPY or ADD; `Ok(true)` on a cache hit.
pub fn copy_step(ctx: &Ctx<'_>, s: &mut StageState, req: CopyRequest, info: &StepInfo) -> Result<bool, BuildError> {
    let workdir = s.workdir();
    let dir_hint = req.dest.ends_with('/') || req.dest == "." || req.dest.ends_with("/.") || req.dest == "..";
    let dest_abs = absolute(&workdir, &req.dest);
    let paths: Vec<&str> = req
        .sources
        .iter()
        .filter_map(|s| match s {
            Src::Path(p) => Some(p.as_str()),
            Src::Heredoc { .. } => None,
        })
        .collect();
    if req.sources.len() > 1 && !dir_hint {
        return Err(info.err(format!(
            "when using {} with more than one source file, the destination must be a directory and end with a /",
            req.op.to_uppercase()
        )));
    }

    // ADD <url>: the downloads, named as BuildKit names them, stand in for the context;
    // ADD <git repository>: its checkout does.
    let urls = paths.iter().filter(|p| is_http_source(p)).count();
    let gits = paths.iter().filter(|p| is_git_source(p)).count();
    let mut downloaded: Vec<String> = Vec::new();
    let download_index = if urls + gits == 0 {
        None
    } else if urls + gits != paths.len() || req.from.is_some() || (gits > 0 && paths.len() > 1) {
        return Err(info.err("ADD mixes a URL or git repository with other sources: give each its own ADD"));
    } else if gits == 1 {
        let (idx, sub) = git_source(ctx, paths[0], req.checksum.as_deref(), req.keep_git_dir, info)?;
        downloaded = vec![sub];
        Some(Arc::new(idx))
    } else {
        let (idx, names) = download_sources(ctx, &paths, req.checksum.as_deref(), info)?;
        downloaded = names;
        Some(Arc::new(idx))
    };
    // A download's --checksum was checked as it came in (a git source's names its commit).
    let checksum_checked = !downloaded.is_empty();
    let paths: Vec<&str> = if downloaded.is_empty() { paths } else { downloaded.iter().map(String::as_str).collect() };

    let from = match (&req.from, download_index) {
        (None, Some(idx)) => From::Context(idx),
        (None, None) => From::Context(if paths.is_empty() { Arc::new(empty_index(ctx)?) } else { ctx.context()? }),
        (Some(f), _) => match stage_by_name(ctx.df, f) {
            Some(j) => {
                if !ctx.is_needed(j) {
                    return Err(info.err(format!("--from={f} names a stage the build did not plan")));
                }
                let st = ctx.wait_stage(j)?;
                From::Stage { key: st.key.clone(), layers: st.layers.clone() }
            }
            None => {
                let rec = ctx.store.resolve(f).map_err(|e| info.err(format!("--from={f}: {e}")))?;
                From::Image { manifest: rec.manifest_desc.digest.to_string(), layers: Layer::of_image(&rec) }
            }
        },
    };

    // The content digest: exactly the selected context files, plus inline files.
    let mut context_matches: Vec<Vec<SourceMatch>> = Vec::new();
    let mut content = String::new();
    let (mut selection, mut bytes_hashed) = (None, 0);
    // Content hashes of the selected files big enough for the file pool.
    let mut poolable: HashMap<String, [u8; 32]> = HashMap::new();
    if let From::Context(idx) = &from {
        let mut all = Vec::new();
        for p in &paths {
            let m = req.rules.select(idx, p).map_err(|e| info.err(e.to_string()))?;
            all.extend(m.iter().cloned());
            context_matches.push(m);
        }
        let stop = || ctx.cancel.is_cancelled();
        let d = idx.digest_selection_until(&all, &ctx.stat_cache, &stop).map_err(|e| match e {
            crate::plan::context::ContextError::Interrupted => BuildError::Cancelled,
            e => info.err(e.to_string()),
        })?;
        poolable = d
            .contents
            .iter()
            .filter(|(rel, _)| idx.get(rel).is_some_and(|e| e.size >= MIN_POOLED_SIZE))
            .cloned()
            .collect();
        content = d.digest;
        bytes_hashed = d.bytes_read;
        selection = Some(Selection::new(Arc::clone(idx), all, d.contents));
    }
    let mut h = Sha256::new();
    h.update(content.as_bytes());
    for src in &req.sources {
        if let Src::Heredoc { name, content } = src {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((content.len() as u64).to_be_bytes());
            h.update(content.as_bytes());
        }
    }
    let content = format!("sha256:{}", hex::encode(h.finalize()));
    let src_texts: Vec<String> = req
        .sources
        .iter()
        .map(|s| match s {
            Src::Path(p) => p.clone(),
            Src::Heredoc { name, .. } => format!("<<{name}"),
        })
        .collect();
    let dest_key = if dir_hint { format!("{dest_abs}/") } else { dest_abs.clone() };
    let key = cachekey::copy_key(
        &s.key,
        &CopyInput {
            op: req.op,
            from: match &from {
                From::Context(_) => CopySource::Context,
                From::Stage { key, .. } => CopySource::Stage { key },
                From::Image { manifest, .. } => CopySource::Image { manifest_digest: manifest },
            },
            sources: &src_texts,
            dest: &dest_key,
            chown: req.chown.as_deref(),
            chmod: req.chmod.map(|m| format!("{m:o}")).as_deref(),
            flags: &req.flags,
            content: &content,
        },
    );
    if s.reuse_cached(ctx, &key, info, selection, bytes_hashed) {
        return Ok(true);
    }

    let lower = lower_dirs(ctx.store, &s.layers)?;
    let src_lower = match &from {
        From::Stage { layers, .. } | From::Image { layers, .. } => Some(lower_dirs(ctx.store, layers)?),
        From::Context(_) => None,
    };
    let scratch = Scratch::new(&ctx.tmp, "copy-")?;
    let from_ref = &from;
    let req_ref = &req;
    let matches_ref = &context_matches;
    let mode = ctx.root_mode();
    let epoch = ctx.opts.source_date_epoch.unwrap_or(0).max(0) as u64;
    // The pool needs the step's upper dir (overlay mode) and known content hashes (context).
    let use_pool = mode == RootMode::Overlay && !poolable.is_empty() && matches!(from, From::Context(_));
    let poolable_ref = &poolable;
    // Pool entries a parent layer may link already: copied, not linked a second time.
    let below: HashSet<String> =
        if use_pool { s.layers.iter().flat_map(|l| ctx.store.layer_pooled(&l.diff_id)).collect() } else { HashSet::new() };
    let below_ref = &below;
    let pool_ops = with_root(mode, &scratch, &lower, src_lower.as_deref(), |root, src_root| {
        let owner = match &req_ref.chown {
            Some(c) => Some(resolve_chown(root, c).map_err(|e| info.err(e))?),
            None => None,
        };
        let (idx, matches): (Arc<ContextIndex>, Vec<Vec<SourceMatch>>) = match (from_ref, src_root) {
            (From::Context(idx), _) => (Arc::clone(idx), matches_ref.clone()),
            (_, Some(src)) => {
                let idx = ContextIndex::scan(src, Arc::new(NoFilter)).map_err(|e| info.err(e.to_string()))?;
                let mut m = Vec::new();
                for p in &paths {
                    m.push(req_ref.rules.select(&idx, p).map_err(|e| info.err(e.to_string()))?);
                }
                (Arc::new(idx), m)
            }
            (_, None) => return Err(info.err("internal: the --from source is not mounted")),
        };
        let keep_owner = !matches!(from_ref, From::Context(_));
        let multi = req_ref.sources.len() > 1
            || matches.iter().any(|m| m.len() > 1)
            || paths.iter().any(|p| has_wildcard(p)) && matches.iter().map(Vec::len).sum::<usize>() > 1;
        let existing_dir = resolve_in_root(root, &dest_abs, true).map(|p| p.is_dir()).unwrap_or(false);
        let into_dir = dir_hint || multi || existing_dir;
        let pool = use_pool.then(|| FilePool::new(ctx.store, poolable_ref, epoch, below_ref.clone()));
        let placer = Placer {
            root,
            src_base: idx.root(),
            idx: &idx,
            owner,
            keep_owner,
            chmod: req_ref.chmod,
            cancel: ctx.cancel,
            pool: pool.as_ref(),
            mtime: epoch,
            dirs: Default::default(),
        };
        let io = |e: io::Error| {
            if ctx.cancel.is_cancelled() {
                BuildError::Cancelled
            } else {
                info.err(e.to_string())
            }
        };
        for m in matches.iter().flatten() {
            ctx.cancel.check()?;
            match m.kind {
                EntryKind::Dir => {
                    placer.ensure_dest_dir(&dest_abs).map_err(io)?;
                    placer.copy_dir_contents(m, &dest_abs).map_err(io)?;
                }
                EntryKind::File | EntryKind::Symlink => {
                    // Named after the source as written, not a symlink's target (BuildKit).
                    let name = if m.name.is_empty() { m.root.rsplit('/').next().unwrap_or(&m.root) } else { &m.name };
                    let host_src = idx.root().join(&m.root);
                    if req_ref.op == "add" && m.kind == EntryKind::File {
                        if let Some(want) = req_ref.checksum.as_ref().filter(|_| !checksum_checked) {
                            Checksum::parse(want).and_then(|c| c.verify_file(&host_src, &m.root)).map_err(|e| info.err(e))?;
                        }
                        if req_ref.unpack && is_tar(&host_src) {
                            let dir = placer.ensure_dest_dir(&dest_abs).map_err(io)?;
                            // The tar may overwrite anything below: pending links become copies.
                            placer.materialize_below(&dir).map_err(io)?;
                            let f = fs::File::open(&host_src).map_err(io)?;
                            let rd = snapshot::maybe_decompress(f).map_err(|e| info.err(e.to_string()))?;
                            // It may also put symlinks where directories were.
                            placer.forget_dirs();
                            snapshot::unpack_layer_with(rd, &dir, &UnpackOptions::default())
                                .map_err(|e| info.err(format!("extracting {}: {e}", m.root)))?;
                            continue;
                        }
                    }
                    let target = if into_dir {
                        placer.ensure_dest_dir(&dest_abs).map_err(io)?;
                        format!("{}/{name}", dest_abs.trim_end_matches('/'))
                    } else {
                        dest_abs.clone()
                    };
                    let e = idx.get(&m.root).ok_or_else(|| info.err(format!("{}: vanished", m.root)))?;
                    placer.place(e, &target).map_err(io)?;
                }
                EntryKind::Other => {}
            }
        }
        for src in &req_ref.sources {
            if let Src::Heredoc { name, content } = src {
                let target = if into_dir {
                    placer.ensure_dest_dir(&dest_abs).map_err(io)?;
                    format!("{}/{name}", dest_abs.trim_end_matches('/'))
                } else {
                    dest_abs.clone()
                };
                placer.write_inline(&target, content.as_bytes()).map_err(io)?;
            }
        }
        Ok(pool.map(FilePool::into_ops).unwrap_or_default())
    })?;
    ctx.cancel.check()?;
    let pooled = pool_ops.finish(ctx.store, &scratch.upper(), scratch.path()).map_err(|e| {
        if ctx.cancel.is_cancelled() {
            BuildError::Cancelled
        } else {
            info.err(e.to_string())
        }
    })?;
    ctx.cancel.check()?;
    let (layer, tar_size) = step_layer(ctx.store, mode, &scratch, MtimePolicy::Fixed(epoch), &pooled)?;
    // A layer written after a cancel is not recorded: the build stops here.
    ctx.cancel.check()?;
    let what = match (&from, paths.len(), context_matches.first().and_then(|m| m.first())) {
        (From::Context(_), 1, Some(m)) if m.kind == EntryKind::Dir => "dir",
        (From::Context(_), 1, Some(_)) => "file",
        (From::Context(_), _, _) => "multi",
        _ => "",
    };
    let created_by = if what.is_empty() {
        format!("{} --from={} {} {}", req.op.to_uppercase(), req.from.clone().unwrap_or_default(), src_texts.join(" "), dest_key)
    } else {
        format!("{} {what}:{} in {dest_key}", req.op.to_uppercase(), key_hex(&content))
    };
    s.commit_layer(ctx, &key, layer, tar_size, created_by)?;
    Ok(false)
}

/// The checkout of a git source (see `git.rs`), indexed; returns the index and the source
/// path in it (the subdirectory, or `.`).
fn git_source(ctx: &Ctx<'_>, src: &str, checksum: Option<&str>, keep_git_dir: bool, info: &StepInfo) -> Result<(ContextIndex, String), BuildError> {
    let r = super::git::GitRef::parse(src);
    let commit = super::git::resolve(&r).map_err(|e| info.err(e))?;
    if let Some(c) = checksum {
        super::checksum::check_commit_prefix(c).map_err(|e| info.err(e))?;
        if !commit.starts_with(&c.to_ascii_lowercase()) {
            return Err(info.err(format!("checksum mismatch: {src} is at commit {commit}, --checksum says {c}")));
        }
    }
    ctx.cancel.check()?;
    let dir = super::git::checkout(&ctx.store.root().join("git"), &r, &commit, keep_git_dir).map_err(|e| info.err(e))?;
    let idx = ContextIndex::scan(&dir, Arc::new(NoFilter)).map_err(|e| info.err(e.to_string()))?;
    if !r.subdir.is_empty() {
        use crate::plan::context::ContextError;
        match idx.select(&r.subdir) {
            Ok(m) if m.first().is_some_and(|m| m.kind == EntryKind::Dir) => {}
            Ok(_) | Err(ContextError::NotFound { .. }) => {
                return Err(info.err(format!("{src}: {} is not a directory of the repository at commit {commit}", r.subdir)))
            }
            Err(e) => return Err(info.err(e.to_string())),
        }
    }
    let sub = if r.subdir.is_empty() { ".".to_string() } else { format!("{}/", r.subdir) };
    Ok((idx, sub))
}

/// Download each URL (or reuse the store's copy) into a fresh directory as `<name>` (mode
/// 0600, as BuildKit) and index it; returns the index and the names in source order.
fn download_sources(ctx: &Ctx<'_>, urls: &[&str], checksum: Option<&str>, info: &StepInfo) -> Result<(ContextIndex, Vec<String>), BuildError> {
    if checksum.is_some() && urls.len() > 1 {
        return Err(info.err("ADD --checksum needs exactly one source"));
    }
    let dir = tempfile::Builder::new().prefix("add-url-").tempdir_in(&ctx.tmp).map_err(|e| BuildError::io(&ctx.tmp, e))?.keep();
    let store_dir = ctx.store.root().join("downloads");
    let checksum = checksum.map(Checksum::parse).transpose().map_err(|e| info.err(e))?;
    let mut names = Vec::new();
    for url in urls {
        let d = super::remote::fetch(&store_dir, url, checksum.as_ref(), &|| ctx.cancel.is_cancelled()).map_err(|e| {
            if ctx.cancel.is_cancelled() {
                BuildError::Cancelled
            } else {
                info.err(e)
            }
        })?;
        let to = dir.join(&d.name);
        let _ = fs::remove_file(&to);
        // A copy, not a hard link: a link (and the chmod below) would change the store
        // file's ctime under a build beside this one that is copying it into its layer.
        fs::copy(&d.path, &to).map_err(|e| BuildError::io(&to, e))?;
        // Every download is 0600 until --chmod says otherwise (BuildKit).
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).map_err(|e| BuildError::io(&to, e))?;
        names.push(d.name);
    }
    let idx = ContextIndex::scan(&dir, Arc::new(NoFilter)).map_err(|e| info.err(e.to_string()))?;
    Ok((idx, names))
}

fn empty_index(ctx: &Ctx<'_>) -> Result<ContextIndex, BuildError> {
    // Inline (heredoc) sources only: no need to walk the context.
    let d = ctx.tmp.join("empty-context");
    fs::create_dir_all(&d).map_err(|e| BuildError::io(&d, e))?;
    ContextIndex::scan(&d, Arc::new(NoFilter)).map_err(|e| BuildError::Options(e.to_string()))
}

/// WORKDIR: create the directory when missing (a layer only then, as BuildKit).
pub fn workdir_step(ctx: &Ctx<'_>, s: &mut StageState, path: &str, info: &StepInfo) -> Result<bool, BuildError> {
    let key = cachekey::workdir_key(&s.key, path, s.user().as_deref());
    if s.reuse_cached(ctx, &key, info, None, 0) {
        return Ok(true);
    }
    let hex = key_hex(&key.digest);
    let lower = lower_dirs(ctx.store, &s.layers)?;
    let scratch = Scratch::new(&ctx.tmp, "workdir-")?;
    let mode = ctx.root_mode();
    let created = with_root(mode, &scratch, &lower, None, |root, _| {
        mkdir_in_root(root, path, (0, 0)).map(|(_, c)| c).map_err(|e| info.err(e.to_string()))
    })?;
    let created_by = format!("WORKDIR {path}");
    let rec = if created {
        let epoch = ctx.opts.source_date_epoch.unwrap_or(0).max(0) as u64;
        let (layer, tar_size) = step_layer(ctx.store, mode, &scratch, MtimePolicy::Fixed(epoch), &[])?;
        super::stage::layer_record(ctx, &key, layer, tar_size, created_by)
    } else {
        CacheRecord {
            created_by,
            created: Some(super::image::now_rfc3339(ctx.opts.source_date_epoch)),
            extra: super::trace_extra(&key.trace),
            ..Default::default()
        }
    };
    ctx.store.cache_put(hex, &rec)?;
    s.apply_record(&key.digest, &rec);
    Ok(false)
}

struct Placer<'a> {
    root: &'a Path,
    src_base: &'a Path,
    idx: &'a ContextIndex,
    owner: Option<(u32, u32)>,
    keep_owner: bool,
    chmod: Option<u32>,
    cancel: &'a super::Cancel,
    pool: Option<&'a FilePool<'a>>,
    /// The time every copied file gets (the layer's mtime policy, set through the open file
    /// so the layer writer finds it already right).
    mtime: u64,
    /// Container dir → its host path, for the parents this COPY resolved. Nothing changes
    /// where an existing path leads without removing something first, and every removal
    /// (and a tar extraction) empties it.
    dirs: RefCell<HashMap<String, PathBuf>>,
}

impl Placer<'_> {
    fn owner_for(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.keep_owner => (uid, gid),
            None => (0, 0),
        }
    }

    fn ensure_dest_dir(&self, dest: &str) -> io::Result<PathBuf> {
        mkdir_in_root(self.root, dest, self.owner.unwrap_or((0, 0))).map(|(p, _)| p)
    }

    /// Host path for container path `target`, its parent resolved inside the root (created
    /// if missing), the last component not followed.
    fn host_for(&self, target: &str) -> io::Result<PathBuf> {
        let (parent, name) = match target.trim_end_matches('/').rsplit_once('/') {
            Some((p, n)) => (if p.is_empty() { "/" } else { p }, n),
            None => ("/", target),
        };
        if let Some(dir) = self.dirs.borrow().get(parent) {
            return Ok(dir.join(name));
        }
        let (dir, _) = mkdir_in_root(self.root, parent, self.owner.unwrap_or((0, 0)))?;
        let host = dir.join(name);
        self.dirs.borrow_mut().insert(parent.to_string(), dir);
        Ok(host)
    }

    /// Something may have changed where a resolved parent leads: resolve again.
    fn forget_dirs(&self) {
        self.dirs.borrow_mut().clear();
    }

    fn copy_dir_contents(&self, m: &SourceMatch, dest: &str) -> io::Result<()> {
        let prefix = if m.root.is_empty() { String::new() } else { format!("{}/", m.root) };
        for rel in &m.entries {
            if self.cancel.is_cancelled() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
            }
            let Some(e) = self.idx.get(rel) else { continue };
            let sub = rel.strip_prefix(&prefix).unwrap_or(rel);
            let target = format!("{}/{sub}", dest.trim_end_matches('/'));
            self.place(e, &target)?;
        }
        Ok(())
    }

    /// Remove what is at `host` (a later source replaces it), with the pool's pending work
    /// on it and below.
    fn remove_existing(&self, host: &Path, existing: Option<fs::Metadata>) -> io::Result<()> {
        let Some(m) = existing else { return Ok(()) };
        self.forget_dirs();
        if let (Some(p), Ok(rel)) = (self.pool, host.strip_prefix(self.root)) {
            p.forget_below(rel);
        }
        if m.is_dir() {
            fs::remove_dir_all(host)
        } else {
            fs::remove_file(host)
        }
    }

    /// Turn the pool's pending links below `dir` (host path) into plain copies now, and
    /// drop pending adds there: something else (an extracted tar) may write over them.
    fn materialize_below(&self, dir: &Path) -> io::Result<()> {
        let (Some(p), Ok(rel)) = (self.pool, dir.strip_prefix(self.root)) else { return Ok(()) };
        for (path, src) in p.take_links_below(rel) {
            let mut from = fs::File::open(&src)?;
            let mut to = fs::OpenOptions::new().write(true).truncate(true).open(self.root.join(&path))?;
            io::copy(&mut from, &mut to)?;
        }
        Ok(())
    }

    /// Put entry `e` at container path `target`; an OS error names the target.
    fn place(&self, e: &crate::plan::context::Entry, target: &str) -> io::Result<()> {
        self.place_at(e, target).map_err(|err| match err.raw_os_error() {
            Some(_) => io::Error::new(err.kind(), format!("{target}: {err}")),
            None => err,
        })
    }

    fn place_at(&self, e: &crate::plan::context::Entry, target: &str) -> io::Result<()> {
        let host = self.host_for(target)?;
        let (uid, gid) = self.owner_for(e.uid, e.gid);
        let existing = fs::symlink_metadata(&host).ok();
        let mode = self.chmod.unwrap_or(e.mode);
        match e.kind {
            EntryKind::Dir => {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(m) => {
                        self.remove_existing(&host, Some(m))?;
                        fs::DirBuilder::new().mode(0o700).create(&host)?;
                    }
                    None => fs::DirBuilder::new().mode(0o700).create(&host)?,
                }
                std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(mode))?;
            }
            EntryKind::File => {
                self.remove_existing(&host, existing)?;
                let src = self.src_base.join(&e.rel);
                let pooled = self.pool.and_then(|p| {
                    let key = p.key_for(e, mode, uid, gid)?;
                    let rel = host.strip_prefix(self.root).ok()?.to_path_buf();
                    Some((p, key, rel))
                });
                let to = if let Some((p, key, rel)) = pooled {
                    if let Some(entry) = p.claim(&key) {
                        // An empty placeholder now, the pooled inode once unmounted.
                        let to = fs::File::create(&host)?;
                        p.link_later(rel, entry, src, key);
                        to
                    } else {
                        let (to, after) = copy_file_until(&src, &host, e, self.cancel)?;
                        p.add_later(rel, key, self.idx, e, &after);
                        to
                    }
                } else {
                    copy_file_until(&src, &host, e, self.cancel)?.0
                };
                // Through the open file: no path lookups in the overlay.
                std::os::unix::fs::fchown(&to, Some(uid), Some(gid))?;
                to.set_permissions(fs::Permissions::from_mode(mode))?;
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.mtime);
                to.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))?;
            }
            EntryKind::Symlink => {
                self.remove_existing(&host, existing)?;
                std::os::unix::fs::symlink(e.link_target.as_deref().unwrap_or(""), &host)?;
                std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
            }
            EntryKind::Other => {}
        }
        Ok(())
    }

    fn write_inline(&self, target: &str, content: &[u8]) -> io::Result<()> {
        let host = self.host_for(target)?;
        let existing = fs::symlink_metadata(&host).ok();
        self.remove_existing(&host, existing)?;
        fs::write(&host, content)?;
        let (uid, gid) = self.owner.unwrap_or((0, 0));
        std::os::unix::fs::lchown(&host, Some(uid), Some(gid))?;
        fs::set_permissions(&host, fs::Permissions::from_mode(self.chmod.unwrap_or(0o644)))
    }
}

/// A file copy that checks every 8 MiB whether the build was cancelled; returns the
/// written file and the source's metadata after the copy. The source is the scanned entry
/// `e`: it must still be that file (not replaced, not a symlink now, not written to) before
/// and after the copy, or the copy is an error — the step's key holds the content hashed
/// for that stat, and a layer with other content must not be stored under it. `io::copy` between two files lets
/// the kernel copy (`copy_file_range`/`sendfile`): no buffer in this process. A file the
/// scan saw small (`size`) is read and written in one go instead: for a few KiB, io::copy's
/// probing (two fstat, a copy_file_range that fails across the overlay, a sendfile, and
/// again to find the end) costs more than the copy.
fn copy_file_until(src: &Path, dst: &Path, e: &crate::plan::context::Entry, cancel: &super::Cancel) -> io::Result<(fs::File, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let changed = || {
        io::Error::other(format!(
            "{}: changed while the build was reading the context; run the build again once it is written",
            if e.rel.is_empty() { "." } else { &e.rel }
        ))
    };
    let mut from = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(src) {
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => return Err(changed()),
        r => r?,
    };
    if StatKey::of(&from.metadata()?) != e.stat {
        return Err(changed());
    }
    let mut to = fs::File::create(dst)?;
    let size = e.size;
    if size <= SMALL_FILE {
        let mut buf = [0u8; SMALL_FILE as usize + 1];
        let mut n = 0;
        while n < buf.len() {
            match from.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        to.write_all(&buf[..n])?;
        let after = from.metadata()?;
        if n as u64 != size || StatKey::of(&after) != e.stat {
            return Err(changed());
        }
        return Ok((to, after));
    }
    loop {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        if io::copy(&mut (&from).take(8 << 20), &mut to)? == 0 {
            break;
        }
    }
    let after = from.metadata()?;
    if StatKey::of(&after) != e.stat {
        return Err(changed());
    }
    Ok((to, after))
}

/// Files up to this size are copied through a buffer on the stack.
const SMALL_FILE: u64 = 16 * 1024;


/// Is this file a tar archive (plain or gzip)? Docker's ADD auto-extraction rule for local files.
fn is_tar(path: &Path) -> bool {
    let Ok(f) = fs::File::open(path) else { return false };
    let Ok(mut rd) = snapshot::maybe_decompress(f) else { return false };
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match rd.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// `--chown=user[:group]`: names via the image's /etc/passwd and /etc/group; without a
/// group the gid is the uid (Docker's documented rule).
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |p: &str| -> String {
        resolve_in_root(root, p, true).ok().and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default()
    };
    let lookup = |file: &str, text: &str, name: &str| -> Result<u32, String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() > 2)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| format!("unable to find {file} {name}: no matching entries in the image's {file} file"))
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup("user", &read("/etc/passwd"), u)?,
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("group", &read("/etc/group"), g)?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_rules() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n").unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_chown(d.path(), "app").unwrap(), (1000, 1000));
        assert_eq!(resolve_chown(d.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(d.path(), "12:34").unwrap(), (12, 34));
        assert_eq!(resolve_chown(d.path(), "55").unwrap(), (55, 55));
        assert!(resolve_chown(d.path(), "nobody").is_err());
        assert!(resolve_chown(d.path(), "app:nogroup").is_err());
    }
}
