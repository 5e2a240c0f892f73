//! Small filesystem helpers shared by unpack, copy and write: metadata, xattrs, whiteouts.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::error::{Result, SnapshotError};

/// The overlayfs opaque-directory markers (kernel `trusted.` namespace, and `user.` for
/// `userxattr` mounts).
pub(crate) const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// The overlayfs xattr-whiteout markers (zero-size files, kernel 6.7+).
pub(crate) const WHITEOUT_XATTRS: [&str; 2] = ["trusted.overlay.whiteout", "user.overlay.whiteout"];
/// The OCI whiteout prefix and opaque marker.
pub(crate) const WH_PREFIX: &str = ".wh.";
pub(crate) const WH_OPAQUE: &str = ".wh..wh..opq";

/// Is this process privileged enough to chown and mknod (effective uid 0)?
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Xattrs that never go into a layer or onto an unpacked file: overlayfs' own bookkeeping,
/// and host-specific security labels/signatures that another machine cannot reproduce.
/// `security.capability`, ACLs and `user.*` are kept.
pub(crate) fn xattr_is_portable(name: &str) -> bool {
    !(name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name == "security.selinux"
        || name == "security.ima"
        || name == "security.evm")
}

/// Portable xattrs of `path` (not following a final symlink), sorted by name.
/// Non-UTF-8 names cannot be stored in PAX records and are skipped.
pub(crate) fn portable_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::io("list xattrs of", path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        if !xattr_is_portable(&name) {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push((name, v)),
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(SnapshotError::io("read xattrs of", path, e)),
        }
    }
    out.sort();
    Ok(out)
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENODATA))
}

/// Reads one xattr; missing or unsupported is `None`.
pub(crate) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::get(path, name).ok().flatten()
}

/// Is `path` (with metadata `md`) an overlayfs whiteout: a 0/0 char device, or a zero-size
/// regular file carrying an overlay whiteout xattr?
pub(crate) fn is_overlay_whiteout(path: &Path, md: &fs::Metadata) -> bool {
    let ft = md.file_type();
    if ft.is_char_device() {
        return md.rdev() == 0;
    }
    ft.is_file() && md.len() == 0 && WHITEOUT_XATTRS.iter().any(|n| get_xattr(path, n).is_some())
}

/// Is the directory `path` overlay-opaque (`trusted.overlay.opaque=y` or the `user.` twin)?
/// The value `x` (kernel 6.7+, "has xattr whiteouts") is not opaque.
pub(crate) fn is_overlay_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|n| get_xattr(path, n).as_deref() == Some(b"y"))
}

/// Removes whatever is at `path` (not following a final symlink); a missing path is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {
            fs::remove_dir_all(path).map_err(|e| SnapshotError::io("remove", path, e))
        }
        Ok(_) => fs::remove_file(path).map_err(|e| SnapshotError::io("remove", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::io("inspect", path, e)),
    }
}

/// Sets atime and mtime of `path` (not following a final symlink).
pub(crate) fn set_mtime(path: &Path, secs: i64, nsecs: i64) -> Result<()> {
    let ts = TimeSpec::new(secs, nsecs);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| SnapshotError::io("set mtime of", path, io::Error::from(e)))
}

/// Sets the permission bits (incl. setuid/setgid/sticky) of a non-symlink.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| SnapshotError::io("set mode of", path, e))
}

/// Changes the owner of `path` (not following a final symlink).
pub(crate) fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| SnapshotError::io("change owner of", path, e))
}

/// Sets one xattr (not following a final symlink).
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    xattr::set(path, name, value)
}

/// Creates a device node or fifo.
pub(crate) fn make_node(
    path: &Path,
    kind: nix::sys::stat::SFlag,
    mode: u32,
    dev: u64,
) -> io::Result<()> {
    let perm = nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777);
    nix::sys::stat::mknod(path, kind, perm, dev).map_err(io::Error::from)
}

/// The (major, minor) device number as a `dev_t`.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    nix::sys::stat::makedev(u64::from(major), u64::from(minor))
}
