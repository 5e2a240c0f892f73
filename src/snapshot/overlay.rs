//! overlayfs mounts for RUN steps and the probe that decides between overlay and copy mode.
//!
//! # Options and their limits
//!
//! [`mount`] passes `lowerdir=L1:L2:...,upperdir=U,workdir=W` plus
//! `redirect_dir=off,index=off,metacopy=off`, so that the upper dir is a complete,
//! self-contained diff that [`crate::snapshot::write_layer`] can read (with `redirect_dir` a
//! renamed lower directory would only be a pointer; with `metacopy` a chmod'ed file would have
//! no data). A kernel that does not know one of these options (`EINVAL`) is retried without
//! them: those kernels do not enable the features either.
//!
//! The legacy `mount(2)` data string is limited to one page (4096 bytes here). When the plain
//! paths do not fit, every directory is opened and passed as `/proc/self/fd/N` (about 17
//! bytes a layer), which fits about 230 layers; beyond that, or beyond the kernel's 500 lower
//! layers, mounting fails with an error telling the caller to flatten (see
//! [`crate::snapshot::copy_tree`]). Paths containing `:` `,` or `\` are refused, since the
//! option parser would split them.
//!
//! Zero lower layers (`FROM scratch`) get an empty temporary directory as the single lower
//! dir; it lives as long as the [`MountGuard`].

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags, MsFlags};

use super::error::{Result, SnapshotError};

/// The kernel's limit on lower layers (`OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

const EXTRA_OPTIONS: &str = ",redirect_dir=off,index=off,metacopy=off";

/// A mounted overlay; unmounted when dropped (lazily detached if busy).
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
    _scratch_lower: Option<tempfile::TempDir>,
}

impl MountGuard {
    /// The mount point.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting errors (a busy mount is detached lazily and that is success).
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        unmount_path(&self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount_path(&self.target);
        }
    }
}

fn unmount_path(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(_) => umount2(target, MntFlags::MNT_DETACH).map_err(|e| SnapshotError::Overlay {
            target: target.to_path_buf(),
            message: format!("cannot unmount: {e}"),
        }),
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}

fn check_path(p: &Path, target: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| SnapshotError::Overlay {
        target: target.to_path_buf(),
        message: format!(
            "path {} is not UTF-8; use a store root with a plain path",
            p.display()
        ),
    })?;
    if s.contains([':', ',', '\\']) || s.is_empty() {
        return Err(SnapshotError::Overlay {
            target: target.to_path_buf(),
            message: format!("path {s:?} contains ':' ',' or '\\', which overlay options cannot hold; use a store root without them"),
        });
    }
    Ok(s.to_owned())
}

/// The overlay mount data string for these directories (plain paths, without the extra
/// options), e.g. for a sandbox that mounts in its own namespace. Errors on unusable paths.
pub fn mount_data(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let lowers: Vec<String> = lower
        .iter()
        .map(|l| check_path(l, upper))
        .collect::<Result<_>>()?;
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        check_path(upper, upper)?,
        check_path(work, upper)?
    ))
}

/// `lower` (top first) with each directory only at its topmost place. overlayfs refuses a
/// directory twice (`ELOOP`), and an image may hold one layer twice (`COPY a /x/`, `RUN rm
/// -rf /x`, `COPY a /x/`). Dropping the lower copy changes nothing: at every path the upper
/// copy of the layer is consulted first and says the same (the same entries, whiteouts and
/// opaque dirs), and layers between the two only hide things below themselves.
pub fn distinct_layers(lower: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    lower.iter().filter(|l| seen.insert(l.as_path())).cloned().collect()
}

/// Mounts an overlay of `lower` (top first) + `upper` with the empty scratch dir `work` at
/// `target`. `upper` and `work` must be directories on one filesystem. See the module docs.
/// A directory given twice in `lower` is used once ([`distinct_layers`]).
pub fn mount(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<MountGuard> {
    let lower = distinct_layers(lower);
    let err = |message: String| SnapshotError::Overlay {
        target: target.to_path_buf(),
        message,
    };
    if lower.len() > MAX_LOWER_LAYERS {
        return Err(err(format!(
            "{} lower layers exceed the kernel's limit of {MAX_LOWER_LAYERS}; flatten the image (copy mode)",
            lower.len()
        )));
    }
    let mut scratch = None;
    let mut lower = lower;
    if lower.is_empty() {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-empty-lower-")
            .tempdir()
            .map_err(|e| err(format!("cannot create an empty lower dir: {e}")))?;
        lower.push(dir.path().to_path_buf());
        scratch = Some(dir);
    }

    let limit = page_size() - 1;
    let plain = mount_data(&lower, upper, work)?;
    // Keep the fds open until the mount call returns.
    let mut _fds: Vec<File> = Vec::new();
    let data = if plain.len() + EXTRA_OPTIONS.len() <= limit {
        plain
    } else {
        let mut fd_path = |p: &Path| -> Result<String> {
            let f = File::open(p).map_err(|e| err(format!("cannot open {}: {e}", p.display())))?;
            let s = format!("/proc/self/fd/{}", f.as_raw_fd());
            _fds.push(f);
            Ok(s)
        };
        let lowers: Vec<String> = lower.iter().map(|l| fd_path(l)).collect::<Result<_>>()?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            fd_path(upper)?,
            fd_path(work)?
        );
        if data.len() + EXTRA_OPTIONS.len() > limit {
            return Err(err(format!(
                "{} lower layers do not fit in one overlay mount's options ({} bytes, the limit is {limit}); flatten the image (copy mode)",
                lower.len(),
                data.len()
            )));
        }
        data
    };

    let with_extra = format!("{data}{EXTRA_OPTIONS}");
    let mut res = do_mount(target, &with_extra);
    if res == Err(Errno::EINVAL) {
        res = do_mount(target, &data);
    }
    res.map_err(|e| {
        err(format!(
            "mount failed: {e} (upper and work must be directories on one filesystem that supports overlay upper dirs, work empty, target an existing directory)"
        ))
    })?;
    Ok(MountGuard {
        target: target.to_path_buf(),
        mounted: true,
        _scratch_lower: scratch,
    })
}

fn do_mount(target: &Path, data: &str) -> std::result::Result<(), Errno> {
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    )
}

/// Can overlayfs be mounted here (root, kernel support, an upper-capable filesystem under
/// `tmp`)? Mounts a tiny overlay in a temporary directory under `tmp` and checks it works.
pub fn overlay_supported(tmp: &Path) -> bool {
    let Ok(dir) = tempfile::Builder::new()
        .prefix("rbuild-overlay-probe-")
        .tempdir_in(tmp)
    else {
        return false;
    };
    let d = dir.path();
    let (lower, upper, work, merged) = (d.join("l"), d.join("u"), d.join("w"), d.join("m"));
    for p in [&lower, &upper, &work, &merged] {
        if fs::create_dir(p).is_err() {
            return false;
        }
    }
    if fs::write(lower.join("probe"), b"x").is_err() {
        return false;
    }
    let Ok(guard) = mount(&[lower], &upper, &work, &merged) else {
        return false;
    };
    let ok = fs::read(merged.join("probe"))
        .map(|v| v == b"x")
        .unwrap_or(false)
        && fs::remove_file(merged.join("probe")).is_ok()
        && fs::symlink_metadata(upper.join("probe")).is_ok();
    guard.unmount().is_ok() && ok
}
