//! The copy fallback: flatten unpacked layer directories into one plain tree.

use std::collections::HashMap;
use std::fs::{self, Metadata};

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use super::error::{Result, SnapshotError};
use super::fsutil;

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Entries created in the destination (files, dirs, links, nodes).
    pub entries: u64,
    /// Bytes of regular-file content copied.
    pub bytes: u64,
    /// Things skipped (device nodes without privilege, sockets, refused xattrs).
    pub warnings: Vec<String>,
}

/// Flattens unpacked layer trees into `dest` (an existing, normally empty, directory), with
/// the same meaning an overlay mount of them would have.
///
/// `layers` are listed **top first** (like overlay lowerdirs) and are applied bottom to top.
/// Each layer may be a plain directory or an [`crate::snapshot::UnpackMode::OverlayLayer`]
/// snapshot: 0/0 character devices (and xattr whiteouts) delete the path below them, a
/// directory marked `trusted.overlay.opaque=y` hides what lower layers have in it, and a
/// directory in a higher layer replaces a lower non-directory. Modes, owners (when root),
/// portable xattrs and nanosecond mtimes are kept, hardlinks within a layer stay hardlinks.
/// Used where overlayfs is unavailable, and to make the `lower` tree of [`crate::snapshot::diff_trees`].
pub fn copy_tree(layers: &[PathBuf], dest: &Path) -> Result<CopyReport> {
    let mut c = Copier {
        root: fsutil::is_root(),
        links: HashMap::new(),
        report: CopyReport::default(),
    };
    for layer in layers.iter().rev() {
        c.links.clear();
        c.copy_dir(layer, dest)?;
    }
    Ok(c.report)
}

struct Copier {
    root: bool,
    links: HashMap<(u64, u64), PathBuf>,
    report: CopyReport,
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(|e| SnapshotError::io("inspect", path, e))
}

impl Copier {
    fn copy_dir(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let rd = fs::read_dir(src).map_err(|e| SnapshotError::io("read directory", src, e))?;
        let mut names = Vec::new();
        for de in rd {
            names.push(
                de.map_err(|e| SnapshotError::io("read directory", src, e))?
                    .file_name(),
            );
        }
        names.sort();
        for name in names {
            let (s, d) = (src.join(&name), dst.join(&name));
            let md = lstat(&s)?;
            if fsutil::is_overlay_whiteout(&s, &md) {
                fsutil::remove_any(&d)?;
                continue;
            }
            if md.is_dir() {
                match fs::symlink_metadata(&d) {
                    Ok(dm) if dm.is_dir() => {
                        if fsutil::is_overlay_opaque(&s) {
                            clear_dir(&d)?;
                        }
                    }
                    _ => {
                        fsutil::remove_any(&d)?;
                        fs::create_dir(&d)
                            .map_err(|e| SnapshotError::io("create directory", &d, e))?;
                        self.report.entries += 1;
                    }
                }
                self.copy_dir(&s, &d)?;
                self.meta(&s, &d, &md)?;
                continue;
            }
            fsutil::remove_any(&d)?;
            let ft = md.file_type();
            if ft.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = self.links.get(&key) {
                        fs::hard_link(first, &d)
                            .map_err(|e| SnapshotError::io("create hardlink", &d, e))?;
                        self.report.entries += 1;
                        continue;
                    }
                    self.links.insert(key, d.clone());
                }
                self.report.bytes +=
                    fs::copy(&s, &d).map_err(|e| SnapshotError::io("copy file to", &d, e))?;
            } else if ft.is_symlink() {
                let target =
                    fs::read_link(&s).map_err(|e| SnapshotError::io("read symlink", &s, e))?;
                std::os::unix::fs::symlink(&target, &d)
                    .map_err(|e| SnapshotError::io("create symlink", &d, e))?;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else {
                    SFlag::S_IFIFO
                };
                if let Err(e) = fsutil::make_node(&d, kind, md.mode(), md.rdev()) {
                    if e.raw_os_error() == Some(libc::EPERM) {
                        self.report
                            .warnings
                            .push(format!("skipped device node {}: {e}", s.display()));
                        continue;
                    }
                    return Err(SnapshotError::io("create node", &d, e));
                }
            } else {
                self.report
                    .warnings
                    .push(format!("skipped socket {}", s.display()));
                continue;
            }
            self.report.entries += 1;
            self.meta(&s, &d, &md)?;
        }
        Ok(())
    }

    fn meta(&mut self, s: &Path, d: &Path, md: &Metadata) -> Result<()> {
        if self.root {
            fsutil::set_owner(d, md.uid(), md.gid())?;
        }
        if !md.file_type().is_symlink() {
            fsutil::set_mode(d, md.mode())?;
        }
        for (name, value) in fsutil::portable_xattrs(s)? {
            if let Err(e) = fsutil::set_xattr(d, &name, &value) {
                self.report.warnings.push(format!(
                    "could not set xattr {name} on {}: {e}",
                    d.display()
                ));
            }
        }
        fsutil::set_mtime(d, md.mtime(), md.mtime_nsec())
    }
}

fn clear_dir(dir: &Path) -> Result<()> {
    for de in fs::read_dir(dir).map_err(|e| SnapshotError::io("read directory", dir, e))? {
        let de = de.map_err(|e| SnapshotError::io("read directory", dir, e))?;
        fsutil::remove_any(&de.path())?;
    }
    Ok(())
}
