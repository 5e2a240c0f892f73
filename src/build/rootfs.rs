//! Root file systems of steps: the parent layers' snapshots as overlay lower dirs, a fresh
//! upper dir per step, path resolution inside a root, and the layer blob written from the
//! upper dir.
//!
//! # Layers are stored uncompressed
//!
//! A step's layer blob is a plain tar (`application/vnd.oci.image.layer.v1.tar`). Measured
//! on rebuilds after a source edit, gzipping the rewritten `COPY . .` layer was most of the
//! time; locally nothing gains from compression (the snapshot dir is what steps use, and
//! the blob is read only by `save`). Layers are compressed when they leave the machine:
//! `rbuild save --format oci-archive` and `--output type=oci` gzip each plain layer into the
//! archive and write a manifest for it (a docker-archive holds plain layers anyway). The
//! image ID (the config digest) is the same in both places, since the config names the diff
//! IDs of the uncompressed tars; the manifest digest in such an archive differs from the
//! local one. Images loaded from archives keep their layers as they came (often gzip).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use crate::snapshot::{self, DiffSource, LayerCompression, MtimePolicy, WriteOptions};
use crate::store::{media, Descriptor, Digest, Store};

use super::BuildError;

/// One layer of an image being built: its blob and its diff ID.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The blob.
    pub desc: Descriptor,
    /// Uncompressed digest.
    pub diff_id: Digest,
}

impl Layer {
    /// The layers of a stored image, bottom first (Docker media types named as OCI ones,
    /// as an image built on them lists them).
    pub fn of_image(rec: &crate::store::ImageRecord) -> Vec<Layer> {
        rec.manifest
            .layers
            .iter()
            .zip(rec.config.rootfs.diff_ids.iter())
            .map(|(d, id)| {
                let mut desc = d.clone();
                if desc.media_type == media::DOCKER_LAYER_GZIP {
                    desc.media_type = media::OCI_LAYER_GZIP.to_string();
                }
                Layer { desc, diff_id: id.clone() }
            })
            .collect()
    }
}

/// Unpacked snapshot dirs of `layers` (bottom first in), top first out (overlay order), a
/// layer that is there twice only once ([`snapshot::overlay::distinct_layers`]).
pub fn lower_dirs(store: &Store, layers: &[Layer]) -> Result<Vec<PathBuf>, BuildError> {
    let mut out = Vec::with_capacity(layers.len());
    for l in layers.iter().rev() {
        out.push(store.ensure_unpacked(&l.desc, &l.diff_id)?);
    }
    Ok(snapshot::overlay::distinct_layers(&out))
}

/// A fresh `upper`, `work` and mount point under `parent`; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(parent: &Path, prefix: &str) -> Result<Self, BuildError> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent).map_err(|e| BuildError::io(parent, e))?;
        for d in ["upper", "work", "mnt", "src", "srcupper", "srcwork", "base", "rootfs", "srcflat"] {
            let p = dir.path().join(d);
            fs::DirBuilder::new().mode(0o755).create(&p).map_err(|e| BuildError::io(&p, e))?;
        }
        Ok(Scratch { dir })
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }
    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Run `f(merged_root, source_root)` in a helper thread with a private mount namespace, where
/// `lower` (top first) + `upper` is mounted as an overlay, and `source` layers (for COPY
/// --from) as a second, throwaway overlay. The mounts vanish with the thread's namespace
/// even if the process is killed.
pub fn with_overlay<T: Send>(
    scratch: &Scratch,
    lower: &[PathBuf],
    source: Option<&[PathBuf]>,
    f: impl FnOnce(&Path, Option<&Path>) -> Result<T, BuildError> + Send,
) -> Result<T, BuildError> {
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<T, BuildError> {
            use nix::mount::{mount, MsFlags};
            use nix::sched::{unshare, CloneFlags};
            let step = |what: &str, e: nix::Error| BuildError::Options(format!("{what}: {e} (building needs root for mounts)"));
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| step("unsharing the mount namespace", e))?;
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .map_err(|e| step("making mounts private", e))?;
            let guard = snapshot::overlay::mount(lower, &scratch.upper(), &scratch.work(), &scratch.mnt())
                .map_err(|e| BuildError::Options(format!("mounting the step's root: {e}")))?;
            let src_guard = match source {
                Some(layers) => Some(
                    snapshot::overlay::mount(
                        layers,
                        &scratch.path().join("srcupper"),
                        &scratch.path().join("srcwork"),
                        &scratch.path().join("src"),
                    )
                    .map_err(|e| BuildError::Options(format!("mounting the COPY --from source: {e}")))?,
                ),
                None => None,
            };
            let r = f(guard.target(), src_guard.as_ref().map(|g| g.target()));
            drop(src_guard);
            guard.unmount().map_err(|e| BuildError::Options(format!("unmounting the step's root: {e}")))?;
            r
        });
        h.join().unwrap_or_else(|_| Err(BuildError::Options("a build helper thread panicked".into())))
    })
}

/// How a step gets a writable root file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootMode {
    /// An overlay of the parent layers' snapshots plus a fresh upper dir (the layer).
    Overlay,
    /// Where overlayfs is unavailable: two flattened copies of the parent layers, one
    /// changed by the step, and a tree diff between them (slower, same layer content).
    Copy,
}

/// [`with_overlay`] or, in [`RootMode::Copy`], the same on flattened copies
/// (`scratch/base` stays as it was, `scratch/rootfs` is the step's root).
pub fn with_root<T: Send>(
    mode: RootMode,
    scratch: &Scratch,
    lower: &[PathBuf],
    source: Option<&[PathBuf]>,
    f: impl FnOnce(&Path, Option<&Path>) -> Result<T, BuildError> + Send,
) -> Result<T, BuildError> {
    match mode {
        RootMode::Overlay => with_overlay(scratch, lower, source, f),
        RootMode::Copy => {
            let (base, root) = prepare_copies(scratch, lower)?;
            let _ = base;
            let src = match source {
                Some(layers) => {
                    let d = scratch.path().join("srcflat");
                    snapshot::copy_tree(layers, &d).map_err(|e| BuildError::Options(format!("copying the --from source: {e}")))?;
                    Some(d)
                }
                None => None,
            };
            f(&root, src.as_deref())
        }
    }
}

/// The two flattened copies of the copy mode: (base, rootfs). Then a mark whose ctime is
/// after every entry of rootfs and before anything the step changes (see [`touched_mark`]).
pub fn prepare_copies(scratch: &Scratch, lower: &[PathBuf]) -> Result<(PathBuf, PathBuf), BuildError> {
    let base = scratch.path().join("base");
    let root = scratch.path().join("rootfs");
    for d in [&base, &root] {
        snapshot::copy_tree(lower, d).map_err(|e| BuildError::Options(format!("copying the parent layers: {e}")))?;
    }
    set_touched_mark(scratch).map_err(|e| BuildError::io(scratch.path(), e))?;
    Ok((base, root))
}

/// Write the mark file, then wait until the file system clock (coarse: one tick, a few
/// ms) has moved past its ctime, so that everything the step touches gets a later ctime.
fn set_touched_mark(scratch: &Scratch) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mark = scratch.path().join("touched-mark");
    fs::write(&mark, b"")?;
    let m = fs::metadata(&mark)?;
    let at = (m.ctime(), m.ctime_nsec());
    let probe = scratch.path().join("touched-probe");
    for _ in 0..1000 {
        fs::write(&probe, b"")?;
        let p = fs::metadata(&probe)?;
        if (p.ctime(), p.ctime_nsec()) > at {
            return fs::remove_file(&probe);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(io::Error::other("the file system clock does not move"))
}

/// The ctime of the copy mode's mark: entries of rootfs changed after it were touched by
/// the step.
fn touched_mark(scratch: &Scratch) -> Option<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(scratch.path().join("touched-mark")).ok()?;
    Some((m.ctime(), m.ctime_nsec()))
}

/// The layer a step made, in either mode, and the size of its uncompressed tar. `pooled`
/// names the file-pool entries the upper dir links (COPY; see `store/filepool.rs`).
pub fn step_layer(
    store: &Store,
    mode: RootMode,
    scratch: &Scratch,
    mtime: MtimePolicy,
    pooled: &[String],
) -> Result<(Layer, u64), BuildError> {
    match mode {
        RootMode::Overlay => write_layer_blob(store, &scratch.upper(), DiffSource::OverlayUpper, mtime, pooled),
        RootMode::Copy => {
            let mut w = store.blob_writer_unhashed()?.media_type(media::OCI_LAYER_TAR);
            let opts = WriteOptions { mtime, compression: LayerCompression::None };
            let touched = touched_mark(scratch)
                .ok_or_else(|| BuildError::Options("internal: the copy mode's mark is missing".into()))?;
            let stats = snapshot::diff_trees_since(
                &scratch.path().join("base"),
                &scratch.path().join("rootfs"),
                &mut w,
                &opts,
                Some(touched),
            )
            .map_err(|e| BuildError::Options(format!("writing the layer: {e}")))?;
            let diff_id = Digest::parse(&stats.diff_id)
                .map_err(|e| BuildError::Options(format!("layer writer returned a bad diff id: {e}")))?;
            let desc = w.commit_as(&diff_id)?;
            let _ = store.record_layer_size(&diff_id, stats.uncompressed_size);
            Ok((Layer { desc, diff_id }, stats.uncompressed_size))
        }
    }
}

/// Write `dir` as a plain (uncompressed) layer blob; returns the layer and the size of its
/// tar. An overlay upper dir is moved into the store as the layer's snapshot afterwards.
pub fn write_layer_blob(
    store: &Store,
    dir: &Path,
    source: DiffSource,
    mtime: MtimePolicy,
    pooled: &[String],
) -> Result<(Layer, u64), BuildError> {
    // A plain tar's digest is its diff ID, which the layer writer computes: hash once.
    let mut w = store.blob_writer_unhashed()?.media_type(media::OCI_LAYER_TAR);
    let opts = WriteOptions { mtime, compression: LayerCompression::None };
    let stats = snapshot::write_layer_with(dir, source, &mut w, &opts)
        .map_err(|e| BuildError::Options(format!("writing the layer: {e}")))?;
    let diff_id = Digest::parse(&stats.diff_id)
        .map_err(|e| BuildError::Options(format!("layer writer returned a bad diff id: {e}")))?;
    let desc = w.commit_as(&diff_id)?;
    // The record names the pool entries before a snapshot linking them can appear.
    let recorded = store.record_layer(&diff_id, stats.uncompressed_size, pooled).is_ok();
    if source == DiffSource::OverlayUpper && (recorded || pooled.is_empty()) {
        // The upper dir is already in overlay-lowerdir form: keep it as the layer's snapshot
        // so the next step need not unpack the blob again. Only a speed-up: on failure the
        // snapshot is unpacked from the blob when needed. Its times are first set to what
        // the layer says (whole seconds, the policy applied), so later steps and `rbuild
        // run` see the same tree as a machine that loads the saved image.
        if apply_mtime_policy(dir, mtime).is_ok() {
            let _ = store.adopt_snapshot(dir, &diff_id);
        }
    }
    Ok((Layer { desc, diff_id }, stats.uncompressed_size))
}

/// Set every entry's atime and mtime below (and of) `dir` to the time the layer records
/// for it: `policy` applied to its mtime in whole seconds (symlinks themselves, not their
/// targets).
pub fn apply_mtime_policy(dir: &Path, policy: MtimePolicy) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use std::os::unix::fs::MetadataExt;
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.map_err(io::Error::other)?;
        let md = e.metadata().map_err(io::Error::other)?;
        let secs = md.mtime().max(0) as u64;
        let t = match policy {
            MtimePolicy::Keep => secs,
            MtimePolicy::Clamp(c) => secs.min(c),
            MtimePolicy::Fixed(f) => f,
        };
        if t == secs && md.mtime_nsec() == 0 && md.atime() == md.mtime() && md.atime_nsec() == 0 {
            continue;
        }
        let ts = TimeSpec::new(t as i64, 0);
        utimensat(None, e.path(), &ts, &ts, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Resolve the absolute container path `path` inside `root` the way the kernel would inside
/// a chroot: symlinks are followed (absolute ones relative to `root`), `..` stops at `root`.
/// Missing components are appended as they are. With `follow_last` false the last component
/// is not followed when it is a symlink.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = split(path).into_iter().rev().collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let mut candidate = root.to_path_buf();
        for p in &cur {
            candidate.push(p);
        }
        candidate.push(&c);
        let is_last = todo.is_empty();
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::other(format!("{path}: too many levels of symbolic links")));
                }
                let target = fs::read_link(&candidate)?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for part in split(&t).into_iter().rev() {
                    todo.push(part);
                }
            }
            _ => cur.push(c),
        }
    }
    let mut out = root.to_path_buf();
    for p in cur {
        out.push(p);
    }
    Ok(out)
}

fn split(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

/// Create the directory `path` (container path) and its missing parents inside `root`,
/// following symlinks inside the root; new directories get mode 0755 and `owner`. Returns the
/// host path and whether anything was created.
pub fn mkdir_in_root(root: &Path, path: &str, owner: (u32, u32)) -> io::Result<(PathBuf, bool)> {
    let mut created = false;
    let mut so_far = String::new();
    for c in split(path) {
        so_far.push('/');
        so_far.push_str(&c);
        let host = resolve_in_root(root, &so_far, true)?;
        match fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{so_far} exists and is not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(&host)?;
                fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
                std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1))?;
                created = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((resolve_in_root(root, path, true)?, created))
}

/// Remove `tmp/build-<pid>-*` dirs of builds whose process is gone (killed with SIGKILL).
pub fn sweep_stale_tmp(store: &Store) {
    let Ok(rd) = fs::read_dir(store.tmp_dir()) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = stale_pid(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = fs::remove_dir_all(e.path());
    }
}

fn stale_pid(name: &OsStr) -> Option<u32> {
    let s = name.to_str()?;
    let rest = s.strip_prefix("build-")?;
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_in_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("usr/esc")).unwrap();
        assert_eq!(resolve_in_root(r, "/lib/x", true).unwrap(), r.join("usr/lib/x"));
        assert_eq!(resolve_in_root(r, "/usr/esc/passwd", true).unwrap(), r.join("etc/passwd"));
        assert_eq!(resolve_in_root(r, "/lib", false).unwrap(), r.join("lib"));
        assert_eq!(resolve_in_root(r, "/../../x", true).unwrap(), r.join("x"));
        let (p, created) = mkdir_in_root(r, "/lib/a/b", (0, 0)).unwrap();
        assert_eq!(p, r.join("usr/lib/a/b"));
        assert!(created && p.is_dir());
        assert!(!mkdir_in_root(r, "/lib/a/b", (0, 0)).unwrap().1);
    }

    #[test]
    fn stale_names() {
        assert_eq!(stale_pid(OsStr::new("build-123-abc")), Some(123));
        assert_eq!(stale_pid(OsStr::new("other")), None);
    }
}
