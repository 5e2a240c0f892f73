//! `RUN --mount`: planned once per RUN (checks, and the text each mount adds to the RUN's
//! key), made real only on a cache miss.
//!
//! | type   | what the process sees | key text holds |
//! |--------|-----------------------|----------------|
//! | bind   | a view of a context path (what `.dockerignore` leaves of it), or of a stage's / image's path; read-only, or with `rw` a private copy whose writes are discarded | target, source, rw, and the content digest of the context path or the stage's key / image digest |
//! | cache  | a persistent directory under `<root>/cache-mounts/` (one per id, and per `from=` source), first filled from `from=`/`source=` when given; `ro` mounts it read-only | target, id, from, source, ro (never the content, as BuildKit) |
//! | tmpfs  | a fresh empty tmpfs, gone after the RUN | target, size |
//! | ssh    | a socket relaying to the `--ssh` agent (default `/run/buildkit/ssh_agent.N`, mode 0600), `SSH_AUTH_SOCK` set to the first | id, target, required, mode, uid, gid, whether the agent was given — never the agent's keys |
//! | secret | a read-only file (default `/run/secrets/ID`, mode 0400, 0:0) and/or an env variable | id, target, env name, required, mode, uid, gid, whether it was given — never the value (as BuildKit: a changed secret does not bust the cache) |
//!
//! No mount leaves anything in the layer: targets the image lacks come from the sandbox's
//! stub layer (see [`crate::sandbox`]), and what is written below a mount stays there.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest as _;

use crate::plan::context::{ContextIndex, EntryKind, SourceMatch};

use crate::dockerfile::ast::{Mount, Run};
use crate::sandbox::{self, BindMount, FileMount, TmpfsMount};

use super::rootfs::{lower_dirs, Layer, Scratch};
use super::stage::StepInfo;
use super::{BuildError, Ctx};

/// Where a secret goes when the mount names no target and no env variable.
const SECRETS_DIR: &str = "/run/secrets";

/// A `RUN --mount` as planned: its key text and how to make its host side.
pub(super) struct PlannedMount {
    /// The canonical text that enters the RUN's key.
    pub key: String,
    target: String,
    kind: MountKind,
}

enum MountKind {
    /// A view of a context path: the selected entries only (`.dockerignore` applies).
    Context { idx: Arc<ContextIndex>, sel: SourceMatch, rw: bool },
    /// A view of a path in a stage's or image's root file system.
    Layers { layers: Vec<Layer>, source: String, rw: bool },
    /// A persistent cache directory under the store root, shared by builds; filled from
    /// `seed` (layers and a path in them) when it is first made; `sub` is the path below
    /// it that is mounted.
    Cache { dir: PathBuf, mode: u32, uid: u32, gid: u32, seed: Option<(Vec<Layer>, String)>, sub: String, ro: bool },
    /// A fresh tmpfs.
    Tmpfs { size: Option<u64> },
    /// A secret given with `--secret`: a file at `target` unless only `env` is asked for,
    /// and the env variable `env`. A secret that was not given (and is optional) is skipped.
    Secret { id: String, file: bool, env: Option<String>, mode: u32, uid: u32, gid: u32 },
    /// A relay to the `--ssh` agent `agent` (none given: an optional mount, skipped).
    Ssh { agent: Option<PathBuf>, mode: u32, uid: u32, gid: u32, first: bool },
}

/// What the planned mounts add to a RUN's sandbox: mounts, and env variables from secrets.
#[derive(Default)]
pub(super) struct Materialized {
    pub mounts: Vec<sandbox::Mount>,
    pub env: Vec<(String, String)>,
    /// The ssh relays; they stop when this is dropped, after the RUN.
    pub relays: Vec<super::ssh::SshRelay>,
}

/// Check and plan the `--mount`s of a RUN; relative targets are relative to `workdir` (as
/// in BuildKit).
pub(super) fn plan_mounts(ctx: &Ctx<'_>, r: &Run, workdir: &str, info: &StepInfo) -> Result<Vec<PlannedMount>, BuildError> {
    let mut out = Vec::new();
    let mut n_ssh = 0;
    for m in &r.mounts {
        match m {
            Mount::Bind { target, source, from, readwrite } => {
                let rw = *readwrite;
                let target = abs_target(workdir, target);
                let source = source.clone().unwrap_or_else(|| "/".to_string());
                let rw_key = if rw { ",rw" } else { "" };
                match from {
                    None => {
                        let idx = ctx.context()?;
                        let mut sel = idx.select(&source).map_err(|e| info.err(e.to_string()))?;
                        let d = idx.digest_selection(&sel, &ctx.stat_cache).map_err(|e| info.err(e.to_string()))?;
                        let rel = crate::plan::context::clean_rel(&source);
                        let Some(one) = sel.pop().filter(|_| sel.is_empty()) else {
                            return Err(info.err(format!("--mount source={source} matches more than one path; name one")));
                        };
                        out.push(PlannedMount {
                            key: format!("bind,target={target},source={rel},from=context,content={}{rw_key}", d.digest),
                            target,
                            kind: MountKind::Context { idx, sel: one, rw },
                        });
                    }
                    Some(f) => {
                        let (fkey, layers) = from_layers(ctx, f, info)?;
                        out.push(PlannedMount {
                            key: format!("bind,target={target},source={source},from={fkey}{rw_key}"),
                            target,
                            kind: MountKind::Layers { layers, source, rw },
                        });
                    }
                }
            }
            Mount::Cache { target, id, sharing: _, from, source, readonly, mode, uid, gid } => {
                let target = abs_target(workdir, target);
                let id = id.clone().unwrap_or_else(|| target.clone());
                let sub = crate::plan::context::clean_rel(source.as_deref().unwrap_or(""));
                // With from=, the cache starts as a copy of the from's `source` path and is
                // its own cache (BuildKit keys it by id and the from's ref); without it,
                // `source` is a path inside the cache.
                let (seed, fkey, sub) = match from {
                    None => (None, String::new(), sub),
                    Some(f) => {
                        let (fkey, layers) = from_layers(ctx, f, info)?;
                        (Some((layers, format!("/{sub}"))), fkey, String::new())
                    }
                };
                let ident = match &seed {
                    None => id.clone(),
                    Some((_, path)) => format!("{id}\0{fkey}\0{path}"),
                };
                let name = hex::encode(&sha2::Sha256::digest(ident.as_bytes())[..16]);
                let ro = *readonly;
                out.push(PlannedMount {
                    key: format!(
                        "cache,target={target},id={id}{}{}{}",
                        if fkey.is_empty() { String::new() } else { format!(",from={fkey}") },
                        source.as_deref().map(|s| format!(",source={s}")).unwrap_or_default(),
                        if ro { ",ro" } else { "" },
                    ),
                    target,
                    kind: MountKind::Cache {
                        dir: ctx.store.root().join("cache-mounts").join(name),
                        mode: mode.unwrap_or(0o755),
                        uid: uid.unwrap_or(0),
                        gid: gid.unwrap_or(0),
                        seed,
                        sub,
                        ro,
                    },
                });
            }
            Mount::Tmpfs { target, size } => {
                let size = tmpfs_size(size.as_deref()).map_err(|e| info.err(e))?;
                let target = mount_target("tmpfs", Some(workdir), target).map_err(|e| info.err(e))?;
                let shown = size.map_or_else(|| "default".to_string(), |n| n.to_string());
                out.push(PlannedMount { key: format!("tmpfs,target={target},size={shown}"), target, kind: MountKind::Tmpfs { size } });
            }
            Mount::Secret { id, target, env, required, mode, uid, gid } => {
                let s = SecretMount::resolve(id.as_deref(), target.as_deref(), env.as_deref(), Some(workdir)).map_err(|e| info.err(e))?;
                let given = ctx.opts.secrets.get(&s.id).is_some();
                if *required && !given {
                    return Err(info.err(missing_secret(&s.id)));
                }
                let (mode, uid, gid) = (mode.unwrap_or(0o400), uid.unwrap_or(0), gid.unwrap_or(0));
                out.push(PlannedMount {
                    key: format!(
                        "secret,id={},target={},env={},required={required},mode={mode:o},uid={uid},gid={gid},given={given}",
                        s.id,
                        s.target.as_deref().unwrap_or(""),
                        s.env.as_deref().unwrap_or(""),
                    ),
                    target: s.target.clone().unwrap_or_default(),
                    kind: MountKind::Secret { id: s.id, file: s.target.is_some(), env: s.env, mode, uid, gid },
                });
            }
            Mount::Ssh { id, target, required, mode, uid, gid } => {
                let id = id.as_deref().filter(|i| !i.is_empty()).unwrap_or("default").to_string();
                let agent = ctx.opts.ssh.get(&id).map(Path::to_path_buf);
                if *required && agent.is_none() {
                    return Err(info.err(missing_ssh(&id)));
                }
                let target = match target.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => mount_target("ssh", Some(workdir), t).map_err(|e| info.err(e))?,
                    None => format!("/run/buildkit/ssh_agent.{n_ssh}"),
                };
                let (mode, uid, gid) = (mode.unwrap_or(0o600), uid.unwrap_or(0), gid.unwrap_or(0));
                out.push(PlannedMount {
                    key: format!(
                        "ssh,id={id},target={target},required={required},mode={mode:o},uid={uid},gid={gid},given={}",
                        agent.is_some()
                    ),
                    target,
                    kind: MountKind::Ssh { agent, mode, uid, gid, first: n_ssh == 0 },
                });
                n_ssh += 1;
            }
        }
    }
    Ok(out)
}

/// The error of a required ssh mount that no `--ssh` gave.
pub(super) fn missing_ssh(id: &str) -> String {
    format!("RUN --mount=type=ssh,id={id},required needs an agent: pass --ssh {id} (the agent at $SSH_AUTH_SOCK) or --ssh {id}=/path/to/agent.sock")
}

/// The key and layers of a mount's `from=`: a stage of this build, or an image in the store.
fn from_layers(ctx: &Ctx<'_>, f: &str, info: &StepInfo) -> Result<(String, Vec<Layer>), BuildError> {
    match crate::plan::graph::stage_by_name(ctx.df, f) {
        Some(j) if ctx.is_needed(j) => {
            let st = ctx.wait_stage(j)?;
            Ok((st.key.clone(), st.layers.clone()))
        }
        Some(_) => Err(info.err(format!("--mount from={f} names a stage the build did not plan"))),
        None => {
            let rec = ctx.store.resolve(f).map_err(|e| info.err(format!("--mount from={f}: {e}")))?;
            Ok((rec.manifest_desc.digest.to_string(), Layer::of_image(&rec)))
        }
    }
}

fn abs_target(workdir: &str, t: &str) -> String {
    super::stage::absolute(workdir, t)
}

/// The absolute target of a tmpfs or secret mount; `/` is refused (as BuildKit does).
/// Without a `workdir` (the checks before the build, which do not know it), a relative
/// target is returned as written: its step checks it.
pub(super) fn mount_target(kind: &str, workdir: Option<&str>, t: &str) -> Result<String, String> {
    let Some(workdir) = workdir.or_else(|| t.starts_with('/').then_some("/")) else {
        return Ok(t.to_string());
    };
    match abs_target(workdir, t) {
        t if t == "/" => Err(format!("RUN --mount=type={kind}: invalid mount target \"/\"")),
        t => Ok(t),
    }
}

/// The error of a required secret that no `--secret` gave.
pub(super) fn missing_secret(id: &str) -> String {
    format!("secret {id:?} is required (RUN --mount=type=secret,id={id},required=true) but was not given: pass --secret id={id},src=FILE or --secret id={id},env=VAR")
}

/// A secret mount's id, file target and env variable, with BuildKit's defaults.
pub(super) struct SecretMount {
    pub id: String,
    /// Where the file goes; `None` when only `env=` was asked for.
    pub target: Option<String>,
    pub env: Option<String>,
}

impl SecretMount {
    /// BuildKit's `dispatchSecret`: the id defaults to the target's base name; without a
    /// target the file goes to `/run/secrets/<base name of id>`, unless `env=` is given and
    /// no target, then there is no file.
    pub fn resolve(id: Option<&str>, target: Option<&str>, env: Option<&str>, workdir: Option<&str>) -> Result<SecretMount, String> {
        let target = target.filter(|t| !t.is_empty());
        let id = match (id.filter(|i| !i.is_empty()), target) {
            (Some(i), _) => i.to_string(),
            (None, Some(t)) => t.rsplit('/').find(|c| !c.is_empty()).unwrap_or_default().to_string(),
            (None, None) => return Err("RUN --mount=type=secret needs id= (or target=)".into()),
        };
        if id.is_empty() {
            return Err("RUN --mount=type=secret needs id= (or a target with a file name)".into());
        }
        let env = env.filter(|e| !e.is_empty()).map(str::to_string);
        if let Some(e) = &env {
            if e.contains('=') || e.contains('\0') {
                return Err(format!("RUN --mount=type=secret,env={e}: not a valid variable name"));
            }
        }
        let target = match (target, &env) {
            (Some(t), _) => Some(mount_target("secret", workdir, t)?),
            (None, Some(_)) => None,
            (None, None) => {
                let base = id.rsplit('/').find(|c| !c.is_empty()).unwrap_or(&id);
                Some(format!("{SECRETS_DIR}/{base}"))
            }
        };
        Ok(SecretMount { id, target, env })
    }
}

/// `size=` of a tmpfs mount, as BuildKit reads it (go-units' `RAMInBytes`): a decimal
/// number, optionally followed by a space and a case-insensitive suffix `b`, `k`, `m`, `g`,
/// `t`, `p` (powers of 1024), with an optional `b` or `ib` after the letter (`64m`, `1.5GiB`,
/// `512kb`). Fractions are cut to whole bytes.
pub(super) fn tmpfs_size(raw: Option<&str>) -> Result<Option<u64>, String> {
    let Some(s) = raw else { return Ok(None) };
    let bad = || format!("RUN --mount=type=tmpfs,size={s}: invalid size; use bytes or a number with a k, m or g suffix, e.g. size=64m");
    let split = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ').ok_or_else(bad)?;
    let (num, sfx) = s.split_at(split + 1);
    let num = num.strip_suffix(' ').unwrap_or(num);
    let value: f64 = num.parse().map_err(|_| bad())?;
    if value.is_sign_negative() {
        return Err(bad());
    }
    let sfx = sfx.to_ascii_lowercase();
    let mul: f64 = match sfx.as_str() {
        "" | "b" => 1.0,
        _ => {
            let mut c = sfx.chars();
            let exp = match c.next() {
                Some('k') => 1,
                Some('m') => 2,
                Some('g') => 3,
                Some('t') => 4,
                Some('p') => 5,
                _ => return Err(bad()),
            };
            if !matches!(c.as_str(), "" | "b" | "ib") {
                return Err(bad());
            }
            1024f64.powi(exp)
        }
    };
    let bytes = value * mul;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Some(bytes as u64))
}

impl PlannedMount {
    /// Make the host side of the mount (only on a cache miss) and add it to `out`.
    fn materialize(&self, ctx: &Ctx<'_>, scratch: &Scratch, info: &StepInfo, out: &mut Materialized) -> Result<(), BuildError> {
        let dst = PathBuf::from(&self.target);
        let mount = match &self.kind {
            MountKind::Context { idx, sel, rw } => {
                let dir = mount_dir(scratch)?;
                let src = copy_selection(idx, sel, &dir).map_err(|e| info.err(format!("preparing the --mount source: {e}")))?;
                BindMount { src, dst, readonly: !rw }.into()
            }
            MountKind::Layers { layers, source, rw } => {
                // A private copy of the source (only on a cache miss): `rw` writes go there.
                let src = flatten(ctx, scratch, layers, source, info)?;
                BindMount { src, dst, readonly: !rw }.into()
            }
            MountKind::Cache { dir, mode, uid, gid, seed, sub, ro } => {
                if !dir.is_dir() {
                    // Made next to its final name and renamed: a failed seed leaves no
                    // half-filled cache behind.
                    let parent = dir.parent().unwrap_or(dir);
                    fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
                    let tmp = tempfile::Builder::new().prefix(".new-").tempdir_in(parent).map_err(|e| BuildError::io(parent, e))?;
                    if let Some((layers, path)) = seed {
                        let src = flatten(ctx, scratch, layers, path, info)?;
                        if !src.is_dir() {
                            return Err(info.err(format!("--mount=type=cache: source {path} is not a directory in its from=")));
                        }
                        crate::snapshot::copy_tree(&[src], tmp.path())
                            .map_err(|e| info.err(format!("filling the cache mount: {e}")))?;
                    } else {
                        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(*mode)).map_err(|e| BuildError::io(tmp.path(), e))?;
                        std::os::unix::fs::chown(tmp.path(), Some(*uid), Some(*gid)).map_err(|e| BuildError::io(tmp.path(), e))?;
                    }
                    let tmp = tmp.keep();
                    if let Err(e) = fs::rename(&tmp, dir) {
                        let _ = fs::remove_dir_all(&tmp);
                        // Another build made it first: use theirs.
                        if !dir.is_dir() {
                            return Err(BuildError::io(dir, e));
                        }
                    }
                }
                let src = if sub.is_empty() {
                    dir.clone()
                } else {
                    let (p, _) = super::rootfs::mkdir_in_root(dir, sub, (*uid, *gid)).map_err(|e| BuildError::io(dir, e))?;
                    p
                };
                BindMount { src, dst, readonly: *ro }.into()
            }
            MountKind::Tmpfs { size } => sandbox::Mount::Tmpfs(TmpfsMount { dst, size: *size }),
            MountKind::Ssh { agent, mode, uid, gid, first } => {
                // Optional and not given: no mount (as BuildKit).
                let Some(agent) = agent else { return Ok(()) };
                let relay = super::ssh::SshRelay::start_private(agent, *mode, *uid, *gid)
                    .map_err(|e| info.err(format!("--mount=type=ssh: relaying to {}: {e}", agent.display())))?;
                let sock = relay.path().to_path_buf();
                out.relays.push(relay);
                if *first && !out.env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                    out.env.push(("SSH_AUTH_SOCK".to_string(), self.target.clone()));
                }
                BindMount { src: sock, dst, readonly: false }.into()
            }
            MountKind::Secret { id, file, env, mode, uid, gid } => {
                // Checked when planning: a secret that is missing here is optional.
                let Some(value) = ctx.opts.secrets.get(id) else { return Ok(()) };
                if let Some(var) = env {
                    let text = std::str::from_utf8(value.bytes())
                        .ok()
                        .filter(|t| !t.contains('\0'))
                        .ok_or_else(|| info.err(format!("secret {id:?} cannot be the environment variable {var}: it is not text without NUL bytes; mount it as a file")))?;
                    out.env.retain(|(k, _)| k != var);
                    out.env.push((var.clone(), text.to_string()));
                }
                if !file {
                    return Ok(());
                }
                sandbox::Mount::File(FileMount { dst, content: value.bytes().to_vec(), mode: *mode, uid: *uid, gid: *gid })
            }
        };
        out.mounts.push(mount);
        Ok(())
    }
}

/// A fresh directory for a mount's host side, removed with the step's scratch dir.
fn mount_dir(scratch: &Scratch) -> Result<PathBuf, BuildError> {
    Ok(tempfile::Builder::new()
        .prefix("mount-")
        .tempdir_in(scratch.path())
        .map_err(|e| BuildError::io(scratch.path(), e))?
        .keep())
}

/// `source` in the flattened `layers`, as a private copy.
fn flatten(ctx: &Ctx<'_>, scratch: &Scratch, layers: &[Layer], source: &str, info: &StepInfo) -> Result<PathBuf, BuildError> {
    let lower = lower_dirs(ctx.store, layers)?;
    let flat = mount_dir(scratch)?;
    crate::snapshot::copy_tree(&lower, &flat).map_err(|e| info.err(format!("preparing the --mount source: {e}")))?;
    let src = super::rootfs::resolve_in_root(&flat, source, true).map_err(|e| info.err(e.to_string()))?;
    if !src.exists() {
        return Err(info.err(format!("--mount source {source} does not exist in its stage")));
    }
    Ok(src)
}

/// The selected context entries (what `.dockerignore` leaves) copied under `dir`; returns
/// the path to mount. Copies, not hardlinks: a link would change the context files' ctime,
/// and with it what the stat cache and a later COPY of the same build take for a change.
fn copy_selection(idx: &ContextIndex, sel: &SourceMatch, dir: &Path) -> std::io::Result<PathBuf> {
    let put = |rel: &str, to: &Path| -> std::io::Result<()> {
        let Some(e) = idx.get(rel) else { return Ok(()) };
        let from = idx.root().join(rel);
        match e.kind {
            EntryKind::Dir => {
                if !to.is_dir() {
                    fs::create_dir(to)?;
                }
                fs::set_permissions(to, fs::Permissions::from_mode(e.mode))
            }
            EntryKind::File => {
                fs::copy(&from, to)?;
                fs::set_permissions(to, fs::Permissions::from_mode(e.mode))
            }
            EntryKind::Symlink => std::os::unix::fs::symlink(e.link_target.as_deref().unwrap_or(""), to),
            EntryKind::Other => Ok(()),
        }
    };
    if sel.kind != EntryKind::Dir {
        let to = dir.join("file");
        put(&sel.root, &to)?;
        return Ok(to);
    }
    put(&sel.root, dir)?;
    let prefix = if sel.root.is_empty() { String::new() } else { format!("{}/", sel.root) };
    for rel in &sel.entries {
        let sub = rel.strip_prefix(&prefix).unwrap_or(rel);
        put(rel, &dir.join(sub))?;
    }
    Ok(dir.to_path_buf())
}

/// Make every planned mount real (on a cache miss).
pub(super) fn materialize(
    plans: &[PlannedMount],
    ctx: &Ctx<'_>,
    scratch: &Scratch,
    info: &StepInfo,
) -> Result<Materialized, BuildError> {
    let mut out = Materialized::default();
    for p in plans {
        p.materialize(ctx, scratch, info, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_sizes_as_buildkit() {
        let ok = |s: &str| tmpfs_size(Some(s)).unwrap().unwrap();
        assert_eq!(ok("65536"), 65536);
        assert_eq!(ok("64m"), 64 << 20);
        assert_eq!(ok("64M"), 64 << 20);
        assert_eq!(ok("64mb"), 64 << 20);
        assert_eq!(ok("64MiB"), 64 << 20);
        assert_eq!(ok("1g"), 1 << 30);
        assert_eq!(ok("512k"), 512 << 10);
        assert_eq!(ok("1.5k"), 1536);
        assert_eq!(ok("10b"), 10);
        assert_eq!(ok("2 m"), 2 << 20);
        assert_eq!(ok("1e3"), 1000);
        assert_eq!(tmpfs_size(None).unwrap(), None);
        for bad in ["", "m", "lots", "64x", "64mbb", "64bb", "-1", "nan", "inf", "1..2"] {
            assert!(tmpfs_size(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_defaults_as_buildkit() {
        let r = |i: Option<&str>, t: Option<&str>, e: Option<&str>| {
            SecretMount::resolve(i, t, e, Some("/")).map(|s| (s.id, s.target, s.env))
        };
        assert_eq!(r(Some("tok"), None, None).unwrap(), ("tok".into(), Some("/run/secrets/tok".into()), None));
        assert_eq!(r(None, Some("/etc/x.pem"), None).unwrap(), ("x.pem".into(), Some("/etc/x.pem".into()), None));
        assert_eq!(r(Some("tok"), None, Some("TOKEN")).unwrap(), ("tok".into(), None, Some("TOKEN".into())));
        assert_eq!(
            r(Some("tok"), Some("/t"), Some("TOKEN")).unwrap(),
            ("tok".into(), Some("/t".into()), Some("TOKEN".into()))
        );
        assert!(r(None, None, Some("X")).is_err());
        assert!(r(Some("a"), Some("/"), None).is_err());
        assert!(r(Some("a"), None, Some("A=B")).is_err());
    }
}
