//! Streaming layer unpacking with OCI whiteouts and path-escape protection.
//!
//! # Path safety
//!
//! Every entry name is split into components; an absolute name is refused, `.` is dropped,
//! and the parent components are resolved one by one *inside* `dest`:
//!
//! - a real directory is entered; a missing one is created (mode 0755, owner of the process);
//! - `..` pops one resolved component and is refused when it would leave `dest`;
//! - a symlink with a *relative* target is followed (its target is resolved by the same rules,
//!   so it can never leave `dest`); a symlink with an *absolute* target is refused, because
//!   following it would write to the host (`link -> /etc` then `link/passwd`);
//! - anything else (a file where a directory is needed) is refused.
//!
//! The last component is never followed: whatever is there is replaced (a directory is kept
//! when the entry is a directory too). Hardlink targets are resolved by the same rules and
//! must already exist in `dest`. Symlink targets are stored as they are, whatever they say.
//!
//! # Failure and half-written trees
//!
//! An error stops the unpack at the failing entry and leaves `dest` partly written: a
//! directory that *looks* complete must never be produced from a failed unpack, so callers
//! unpack into a fresh temporary directory and rename it into place only on success
//! ([`unpack_to_new_dir`] does exactly that). Nothing is ever written outside `dest`.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::sys::stat::SFlag;
use tar::EntryType;

use super::error::{Result, SnapshotError};
use super::fsutil::{self, WH_OPAQUE, WH_PREFIX};

/// How whiteouts in the tar are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnpackMode {
    /// `dest` holds the lower layers' content (or nothing): `.wh.name` deletes `name`,
    /// `.wh..wh..opq` deletes what lower layers put in that directory. Use for flattening,
    /// the copy fallback and exporting a rootfs.
    #[default]
    Flatten,
    /// `dest` is a fresh directory that will hold only this layer and serve as an overlayfs
    /// lowerdir: `.wh.name` becomes a 0/0 character device and `.wh..wh..opq` the
    /// `trusted.overlay.opaque=y` xattr. Needs root (mknod, `trusted.*` xattrs).
    OverlayLayer,
}

/// Options of [`unpack_layer_with`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// How whiteouts are applied.
    pub mode: UnpackMode,
    /// Apply the entries' uid/gid (default: when running as root).
    pub same_owner: bool,
    /// Create character/block device nodes (default: when running as root). When false they
    /// are skipped with a warning in the report. Fifos are always created.
    pub devices: bool,
    /// For [`UnpackMode::OverlayLayer`]: the already unpacked lower layers (top first). A
    /// tar that writes `tmp/x` without a `tmp/` entry makes this layer create `tmp`, and in
    /// an overlay the topmost copy of a directory decides its mode and owner; so an implicit
    /// parent copies mode, owner, xattrs and mtime from the first of these layers that has
    /// it as a real directory (instead of 0755, the process' owner, now). Empty: defaults.
    pub parents_from: Vec<PathBuf>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = fsutil::is_root();
        UnpackOptions {
            mode: UnpackMode::Flatten,
            same_owner: root,
            devices: root,
            parents_from: Vec::new(),
        }
    }
}

impl UnpackOptions {
    /// Defaults with [`UnpackMode::OverlayLayer`].
    pub fn overlay_layer() -> Self {
        UnpackOptions {
            mode: UnpackMode::OverlayLayer,
            ..Self::default()
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Tar entries processed (whiteouts included, PAX/GNU extension headers not).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Whiteouts (`.wh.name` and opaque markers) applied or recorded.
    pub whiteouts: u64,
    /// Things skipped or only partly applied (device nodes without privilege, xattrs the
    /// filesystem refused, unknown entry types), one line each, naming the entry.
    pub warnings: Vec<String>,
}

/// Unpacks a plain (uncompressed) layer tar into `dest` in [`UnpackMode::Flatten`] mode with
/// default options. See [`unpack_layer_with`].
pub fn unpack_layer(tar: impl Read, dest: &Path) -> Result<UnpackReport, SnapshotError> {
    unpack_layer_with(tar, dest, &UnpackOptions::default())
}

/// Unpacks a plain layer tar into the existing directory `dest`, streaming.
///
/// Wrap compressed input in [`maybe_decompress`]. See the module docs for the path rules and
/// what an error leaves behind.
pub fn unpack_layer_with(
    tar: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, SnapshotError> {
    let md = fs::metadata(dest).map_err(|e| SnapshotError::io("open destination", dest, e))?;
    if !md.is_dir() {
        return Err(SnapshotError::io(
            "unpack into",
            dest,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut u = Unpacker {
        root: dest.to_path_buf(),
        opts: opts.clone(),
        written: HashSet::new(),
        dirs: Vec::new(),
        report: UnpackReport::default(),
    };
    let mut archive = tar::Archive::new(Counting {
        inner: BufReader::with_capacity(256 * 1024, tar),
        count: 0,
        eof: false,
    });
    {
        let entries = archive.entries().map_err(SnapshotError::Tar)?;
        for entry in entries {
            let mut entry = entry.map_err(SnapshotError::Tar)?;
            u.entry(&mut entry)?;
        }
    }
    let counting = archive.into_inner();
    // The tar crate stops at a zero block (the end-of-archive marker) or quietly at EOF on a
    // header boundary. Entry data is read through exact-size limits, so hitting EOF at all
    // means the stream ended before its end marker.
    if counting.eof {
        return Err(SnapshotError::Truncated {
            bytes: counting.count,
        });
    }
    u.finish_dirs()?;
    Ok(u.report)
}

/// Unpacks into a new directory `dest` (which must not exist) atomically: the tar goes into a
/// sibling temporary directory that is renamed to `dest` only when everything succeeded, and
/// removed on error. The parent of `dest` must exist.
///
/// Before the rename the filesystem is flushed with one `syncfs(2)` (cheaper than an fsync
/// per file), and the parent directory is fsynced after it, so a directory that exists under
/// its final name after a crash is complete. If `dest` already exists the rename fails with
/// an error and the temporary directory is removed (a caller racing another unpacker may treat
/// an existing `dest` as success).
pub fn unpack_to_new_dir(
    tar: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, SnapshotError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .unwrap_or(OsStr::new("layer"))
        .to_string_lossy();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.unpacking-"))
        .tempdir_in(parent)
        .map_err(|e| SnapshotError::io("create a temporary directory in", parent, e))?;
    let report = unpack_layer_with(tar, tmp.path(), opts)?;
    // tempdir() creates 0700; the layer root should be an ordinary directory.
    fsutil::set_mode(tmp.path(), 0o755)?;
    let dir = fs::File::open(tmp.path()).map_err(|e| SnapshotError::io("open", tmp.path(), e))?;
    nix::unistd::syncfs(dir.as_raw_fd())
        .map_err(|e| SnapshotError::io("sync the filesystem of", tmp.path(), io::Error::from(e)))?;
    drop(dir);
    let tmp_path = tmp.keep();
    if let Err(e) = fs::rename(&tmp_path, dest) {
        let _ = fs::remove_dir_all(&tmp_path);
        return Err(SnapshotError::io("rename the unpacked layer to", dest, e));
    }
    if let Ok(p) = fs::File::open(parent) {
        p.sync_all()
            .map_err(|e| SnapshotError::io("sync directory", parent, e))?;
    }
    Ok(report)
}

/// A reader that counts the bytes it handed out and notices the end of its input.
struct Counting<R> {
    inner: R,
    count: u64,
    eof: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// A decompressed-or-not layer stream; see [`maybe_decompress`].
pub enum Decompressed<R: Read> {
    /// Not compressed: passed through (buffered).
    Plain(BufReader<R>),
    /// Gzip (including multi-member streams).
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Plain(r) => r.read(buf),
            Decompressed::Gzip(r) => r.read(buf),
        }
    }
}

/// Sniffs the first bytes of `reader`: gzip is decompressed, a plain tar passes through,
/// zstd/xz/bzip2 are refused with [`SnapshotError::UnsupportedCompression`].
pub fn maybe_decompress<R: Read>(reader: R) -> Result<Decompressed<R>, SnapshotError> {
    use std::io::BufRead;
    let mut r = BufReader::with_capacity(256 * 1024, reader);
    let head = r.fill_buf().map_err(SnapshotError::Tar)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Decompressed::Gzip(Box::new(MultiGzDecoder::new(r))));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(SnapshotError::UnsupportedCompression("zstd"));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(SnapshotError::UnsupportedCompression("xz"));
    }
    if head.starts_with(b"BZh") {
        return Err(SnapshotError::UnsupportedCompression("bzip2"));
    }
    Ok(Decompressed::Plain(r))
}

struct Unpacker {
    root: PathBuf,
    opts: UnpackOptions,
    /// Relative paths (and all their ancestors) written by this layer: an opaque marker or a
    /// whiteout only removes what *lower* layers put there.
    written: HashSet<PathBuf>,
    /// Directories whose mode and mtime are applied at the end (children change mtimes, and
    /// a read-only mode would block writing the children as non-root).
    dirs: Vec<(PathBuf, u32, i64, i64)>,
    report: UnpackReport,
}

/// Splits an entry name into components; refuses absolute names and NUL bytes.
fn split_name(name: &[u8], shown: &str) -> Result<Vec<OsString>> {
    if name.first() == Some(&b'/') {
        return Err(SnapshotError::unsafe_entry(
            shown,
            "absolute paths are not allowed in a layer",
        ));
    }
    if name.contains(&0) {
        return Err(SnapshotError::unsafe_entry(
            shown,
            "the name contains a NUL byte",
        ));
    }
    Ok(name
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
        .collect())
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl Unpacker {
    /// Resolves directory components inside the root (see module docs). Returns the resolved
    /// relative path, or `None` when a component is missing and `create` is false.
    fn resolve_dir(
        &mut self,
        comps: &[OsString],
        create: bool,
        shown: &str,
    ) -> Result<Option<PathBuf>> {
        let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut stack = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if !stack.pop() {
                    return Err(SnapshotError::unsafe_entry(
                        shown,
                        "its path leaves the destination directory",
                    ));
                }
                continue;
            }
            let rel = stack.join(&c);
            let abs = self.root.join(&rel);
            match fs::symlink_metadata(&abs) {
                Ok(md) if md.is_dir() => stack = rel,
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(SnapshotError::unsafe_entry(
                            shown,
                            "too many levels of symlinks in its path",
                        ));
                    }
                    let target = fs::read_link(&abs)
                        .map_err(|e| SnapshotError::io("read symlink", &abs, e))?;
                    if target.is_absolute() {
                        return Err(SnapshotError::unsafe_entry(
                            shown,
                            format!(
                                "it would be written through the symlink {} -> {}, which points outside the destination",
                                rel.display(),
                                target.display()
                            ),
                        ));
                    }
                    let mut next: VecDeque<OsString> =
                        target.iter().map(OsStr::to_os_string).collect();
                    next.extend(queue);
                    queue = next;
                }
                Ok(_) => {
                    return Err(SnapshotError::unsafe_entry(
                        shown,
                        format!("its parent {} is not a directory", rel.display()),
                    ))
                }
                Err(e) if not_found(&e) => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&abs)
                        .map_err(|e| SnapshotError::io("create directory", &abs, e))?;
                    self.implicit_parent(&rel, &abs)?;
                    stack = rel;
                }
                Err(e) => return Err(SnapshotError::io("inspect", &abs, e)),
            }
        }
        Ok(Some(stack))
    }

    /// Gives a directory the tar did not describe the metadata of the lower layers' copy
    /// (see [`UnpackOptions::parents_from`]).
    fn implicit_parent(&mut self, rel: &Path, abs: &Path) -> Result<()> {
        let Some(src) = self
            .opts
            .parents_from
            .iter()
            .find_map(|l| real_dir_in(l, rel))
        else {
            return Ok(());
        };
        let md = fs::symlink_metadata(&src).map_err(|e| SnapshotError::io("inspect", &src, e))?;
        if self.opts.same_owner {
            fsutil::set_owner(abs, md.uid(), md.gid())?;
        }
        for (name, value) in fsutil::portable_xattrs(&src)? {
            if let Err(e) = fsutil::set_xattr(abs, &name, &value) {
                self.warn(format!(
                    "could not set xattr {name} on {}: {e}",
                    rel.display()
                ));
            }
        }
        self.dirs
            .push((rel.to_path_buf(), md.mode(), md.mtime(), md.mtime_nsec()));
        Ok(())
    }

    fn mark_written(&mut self, rel: &Path) {
        for a in rel.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            // Once an ancestor is present, all of its ancestors are too.
            if !self.written.insert(a.to_path_buf()) {
                break;
            }
        }
    }

    fn warn(&mut self, msg: String) {
        self.report.warnings.push(msg);
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let pax = pax_info(entry)?;
        let name = match pax.sparse.as_ref().and_then(|sp| sp.name.clone()) {
            Some(real) => real,
            None => entry.path_bytes().into_owned(),
        };
        let shown = String::from_utf8_lossy(&name).into_owned();
        let comps = split_name(&name, &shown)?;
        self.report.entries += 1;
        let Some((fname, parent_comps)) = comps.split_last() else {
            // The root itself ("./"): nothing to create; its metadata is the caller's.
            return Ok(());
        };
        if fname == ".." {
            return Err(SnapshotError::unsafe_entry(
                &shown,
                "its path leaves the destination directory",
            ));
        }
        if let Some(wh) = fname.to_str().and_then(|f| f.strip_prefix(WH_PREFIX)) {
            return self.whiteout(parent_comps, wh, &shown);
        }

        let PaxInfo {
            xattrs,
            mtime,
            sparse,
        } = pax;
        let header = entry.header();
        let mode = header.mode().map_err(SnapshotError::Tar)?;
        let uid = id32(header.uid().map_err(SnapshotError::Tar)?, &shown)?;
        let gid = id32(header.gid().map_err(SnapshotError::Tar)?, &shown)?;
        let (secs, nsecs) = match mtime {
            Some(t) => t,
            None => (
                i64::try_from(header.mtime().map_err(SnapshotError::Tar)?).unwrap_or(i64::MAX),
                0,
            ),
        };

        let Some(parent) = self.resolve_dir(parent_comps, true, &shown)? else {
            return Ok(());
        };
        let rel = parent.join(fname);
        let abs = self.root.join(&rel);
        self.mark_written(&rel);

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.replace_non_dir(&abs)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(|e| SnapshotError::io("create", &abs, e))?;
                let n = match &sparse {
                    Some(sp) if kind == EntryType::Regular => {
                        copy_pax_sparse(entry, &mut f, &abs, sp, &shown)?
                    }
                    _ => copy_data(entry, &mut f, &abs)?,
                };
                if kind != EntryType::GNUSparse && sparse.is_none() && n != entry.size() {
                    return Err(SnapshotError::Truncated {
                        bytes: entry.raw_file_position() + n,
                    });
                }
                self.report.bytes += n;
                drop(f);
                self.apply_meta(&abs, &shown, uid, gid, Some(mode), &xattrs)?;
                fsutil::set_mtime(&abs, secs, nsecs)?;
            }
            EntryType::Directory => {
                match fs::symlink_metadata(&abs) {
                    Ok(md) if md.is_dir() => {}
                    _ => {
                        fsutil::remove_any(&abs)?;
                        fs::create_dir(&abs)
                            .map_err(|e| SnapshotError::io("create directory", &abs, e))?;
                    }
                }
                self.apply_meta(&abs, &shown, uid, gid, None, &xattrs)?;
                self.dirs.push((rel, mode, secs, nsecs));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| SnapshotError::unsafe_entry(&shown, "symlink without a target"))?
                    .into_owned();
                fsutil::remove_any(&abs)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &abs)
                    .map_err(|e| SnapshotError::io("create symlink", &abs, e))?;
                self.apply_meta(&abs, &shown, uid, gid, None, &xattrs)?;
                fsutil::set_mtime(&abs, secs, nsecs)?;
            }
            EntryType::Link => {
                let target_name = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        SnapshotError::unsafe_entry(&shown, "hardlink without a target")
                    })?
                    .into_owned();
                self.hardlink(&abs, &target_name, &shown)?;
            }
            EntryType::Char | EntryType::Block => {
                if !self.opts.devices {
                    self.warn(format!(
                        "skipped device node {shown:?}: creating devices needs root"
                    ));
                    return Ok(());
                }
                let major = header
                    .device_major()
                    .map_err(SnapshotError::Tar)?
                    .unwrap_or(0);
                let minor = header
                    .device_minor()
                    .map_err(SnapshotError::Tar)?
                    .unwrap_or(0);
                let sflag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                fsutil::remove_any(&abs)?;
                if let Err(e) = fsutil::make_node(&abs, sflag, mode, fsutil::makedev(major, minor))
                {
                    if e.raw_os_error() == Some(libc::EPERM) {
                        self.warn(format!("skipped device node {shown:?}: {e}"));
                        return Ok(());
                    }
                    return Err(SnapshotError::io("create device node", &abs, e));
                }
                self.apply_meta(&abs, &shown, uid, gid, Some(mode), &xattrs)?;
                fsutil::set_mtime(&abs, secs, nsecs)?;
            }
            EntryType::Fifo => {
                fsutil::remove_any(&abs)?;
                fsutil::make_node(&abs, SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| SnapshotError::io("create fifo", &abs, e))?;
                self.apply_meta(&abs, &shown, uid, gid, Some(mode), &xattrs)?;
                fsutil::set_mtime(&abs, secs, nsecs)?;
            }
            other => {
                self.warn(format!(
                    "skipped entry {shown:?} of unsupported tar type {:?}",
                    other.as_byte() as char
                ));
            }
        }
        Ok(())
    }

    /// Removes what is at `abs` (a file, symlink, or a whole directory) before a non-directory
    /// entry takes its place.
    fn replace_non_dir(&self, abs: &Path) -> Result<()> {
        fsutil::remove_any(abs)
    }

    fn hardlink(&mut self, abs: &Path, target_name: &[u8], shown: &str) -> Result<()> {
        let tcomps = split_name(target_name, shown).map_err(|_| {
            SnapshotError::unsafe_entry(shown, "its hardlink target is an absolute path")
        })?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(SnapshotError::unsafe_entry(
                shown,
                "its hardlink target is the destination root",
            ));
        };
        if tname == ".." {
            return Err(SnapshotError::unsafe_entry(
                shown,
                "its hardlink target leaves the destination directory",
            ));
        }
        let missing = || {
            SnapshotError::unsafe_entry(
                shown,
                format!(
                    "its hardlink target {:?} is not in the destination (targets must come earlier in the layer)",
                    String::from_utf8_lossy(target_name)
                ),
            )
        };
        let tparent = self
            .resolve_dir(tparent, false, shown)?
            .ok_or_else(missing)?;
        let target = self.root.join(tparent.join(tname));
        match fs::symlink_metadata(&target) {
            Ok(md) if md.is_dir() => {
                return Err(SnapshotError::unsafe_entry(
                    shown,
                    "its hardlink target is a directory",
                ))
            }
            Ok(_) => {}
            Err(e) if not_found(&e) => return Err(missing()),
            Err(e) => return Err(SnapshotError::io("inspect", &target, e)),
        }
        if target == abs {
            return Ok(());
        }
        fsutil::remove_any(abs)?;
        fs::hard_link(&target, abs).map_err(|e| SnapshotError::io("create hardlink", abs, e))
    }

    fn apply_meta(
        &mut self,
        abs: &Path,
        shown: &str,
        uid: u32,
        gid: u32,
        mode: Option<u32>,
        xattrs: &[(String, Vec<u8>)],
    ) -> Result<()> {
        if self.opts.same_owner {
            fsutil::set_owner(abs, uid, gid)?;
        }
        // After chown, which clears setuid/setgid bits.
        if let Some(mode) = mode {
            fsutil::set_mode(abs, mode)?;
        }
        for (name, value) in xattrs {
            if !fsutil::xattr_is_portable(name) {
                self.warn(format!("ignored xattr {name} on {shown:?}: overlay and host security xattrs are not unpacked"));
                continue;
            }
            if let Err(e) = fsutil::set_xattr(abs, name, value) {
                self.warn(format!("could not set xattr {name} on {shown:?}: {e}"));
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, parent_comps: &[OsString], wh: &str, shown: &str) -> Result<()> {
        self.report.whiteouts += 1;
        let opaque = format!("{WH_PREFIX}{wh}") == WH_OPAQUE;
        if !opaque && (wh.is_empty() || wh == "." || wh == ".." || wh.starts_with(WH_PREFIX)) {
            if wh.starts_with(WH_PREFIX) {
                // Other `.wh..wh.` names are aufs metadata (e.g. `.wh..wh.plnk`).
                self.warn(format!("skipped aufs metadata entry {shown:?}"));
                return Ok(());
            }
            return Err(SnapshotError::unsafe_entry(
                shown,
                "whiteout of an invalid name",
            ));
        }
        match self.opts.mode {
            UnpackMode::Flatten => {
                let Some(parent) = self.resolve_dir(parent_comps, false, shown)? else {
                    return Ok(());
                };
                if opaque {
                    self.mark_written(&parent);
                    self.clear_lower(&parent)?;
                } else {
                    let rel = parent.join(wh);
                    if !self.written.contains(&rel) {
                        fsutil::remove_any(&self.root.join(rel))?;
                    }
                }
            }
            UnpackMode::OverlayLayer => {
                let Some(parent) = self.resolve_dir(parent_comps, true, shown)? else {
                    return Ok(());
                };
                self.mark_written(&parent);
                let pabs = self.root.join(&parent);
                if opaque {
                    fsutil::set_xattr(&pabs, fsutil::OPAQUE_XATTRS[0], b"y").map_err(|e| {
                        SnapshotError::io(
                            "mark opaque (needs root; or unpack in flatten mode)",
                            &pabs,
                            e,
                        )
                    })?;
                } else {
                    let rel = parent.join(wh);
                    if self.written.contains(&rel) {
                        // This layer wrote `name` itself: a whiteout only hides lower content.
                        return Ok(());
                    }
                    let abs = self.root.join(&rel);
                    fsutil::remove_any(&abs)?;
                    fsutil::make_node(&abs, SFlag::S_IFCHR, 0, 0).map_err(|e| {
                        SnapshotError::io(
                            "create whiteout device (needs root; or unpack in flatten mode)",
                            &abs,
                            e,
                        )
                    })?;
                    self.mark_written(&rel);
                }
            }
        }
        Ok(())
    }

    /// Deletes everything below `rel` that this layer did not write.
    fn clear_lower(&self, rel: &Path) -> Result<()> {
        let abs = self.root.join(rel);
        let rd = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(SnapshotError::io("read directory", &abs, e)),
        };
        for de in rd {
            let de = de.map_err(|e| SnapshotError::io("read directory", &abs, e))?;
            let crel = rel.join(de.file_name());
            if !self.written.contains(&crel) {
                fsutil::remove_any(&self.root.join(&crel))?;
            } else if de.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                self.clear_lower(&crel)?;
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let mut seen = HashSet::new();
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mode, secs, nsecs) in dirs.into_iter().rev() {
            if !seen.insert(rel.clone()) {
                continue;
            }
            let abs = self.root.join(&rel);
            match fs::symlink_metadata(&abs) {
                Ok(md) if md.is_dir() => {}
                _ => continue, // removed or replaced later in the layer
            }
            fsutil::set_mode(&abs, mode)?;
            fsutil::set_mtime(&abs, secs, nsecs)?;
        }
        Ok(())
    }
}

/// `layer/rel` when every component of it is a real directory (no symlink is followed).
fn real_dir_in(layer: &Path, rel: &Path) -> Option<PathBuf> {
    let mut p = layer.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if !fs::symlink_metadata(&p).ok()?.is_dir() {
            return None;
        }
    }
    Some(p)
}

/// Copies an entry's data, telling read errors (the tar) from write errors (the file).
fn copy_data(r: &mut impl Read, f: &mut fs::File, abs: &Path) -> Result<u64> {
    use std::io::Write;
    let mut buf = vec![0u8; 128 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SnapshotError::Tar(e)),
        };
        f.write_all(&buf[..k])
            .map_err(|e| SnapshotError::io("write", abs, e))?;
        n += k as u64;
    }
}

fn id32(id: u64, shown: &str) -> Result<u32> {
    u32::try_from(id).map_err(|_| {
        SnapshotError::unsafe_entry(shown, format!("owner id {id} does not fit in 32 bits"))
    })
}

/// What an entry's PAX header says beyond what the tar crate applies itself.
struct PaxInfo {
    /// `SCHILY.xattr.<name>` records.
    xattrs: Vec<(String, Vec<u8>)>,
    /// A precise `mtime` (seconds, nanoseconds).
    mtime: Option<(i64, i64)>,
    /// GNU tar's PAX sparse-file records (formats 0.0, 0.1 and 1.0).
    sparse: Option<PaxSparse>,
}

#[derive(Default)]
struct PaxSparse {
    /// `GNU.sparse.name`: the real name (the header holds `GNUSparseFile.<pid>/<name>`).
    name: Option<Vec<u8>>,
    /// `GNU.sparse.realsize` (1.0) or `GNU.sparse.size` (0.x): the expanded size.
    real_size: Option<u64>,
    /// `GNU.sparse.major` is 1: the map is at the start of the data.
    map_in_data: bool,
    /// 0.1's `GNU.sparse.map` or 0.0's repeated `GNU.sparse.offset`/`numbytes`: offset, size,
    /// offset, size, ...
    map: Vec<u64>,
}

/// The entry's PAX records we handle.
fn pax_info<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<PaxInfo> {
    let mut info = PaxInfo {
        xattrs: Vec::new(),
        mtime: None,
        sparse: None,
    };
    let Some(exts) = entry.pax_extensions().map_err(SnapshotError::Tar)? else {
        return Ok(info);
    };
    let bad = |what: &str| {
        SnapshotError::Tar(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid PAX record {what}"),
        ))
    };
    for ext in exts {
        let ext = ext.map_err(SnapshotError::Tar)?;
        let Ok(key) = ext.key() else { continue };
        let num = || {
            ext.value()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| bad(key))
        };
        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
            info.xattrs
                .push((name.to_owned(), ext.value_bytes().to_vec()));
        } else if key == "mtime" {
            info.mtime = ext.value().ok().and_then(parse_pax_time);
        } else if let Some(sk) = key.strip_prefix("GNU.sparse.") {
            let sp = info.sparse.get_or_insert_with(PaxSparse::default);
            match sk {
                "name" => sp.name = Some(ext.value_bytes().to_vec()),
                "realsize" | "size" => sp.real_size = Some(num()?),
                "major" => sp.map_in_data = num()? == 1,
                "offset" | "numbytes" => sp.map.push(num()?),
                "map" => {
                    for v in ext
                        .value()
                        .map_err(|_| bad(key))?
                        .split(',')
                        .filter(|v| !v.is_empty())
                    {
                        sp.map.push(v.trim().parse().map_err(|_| bad(key))?);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(info)
}

/// Writes a GNU PAX sparse file: data chunks at their offsets, then the real size.
fn copy_pax_sparse<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    f: &mut fs::File,
    abs: &Path,
    sp: &PaxSparse,
    shown: &str,
) -> Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let bad = |why: &str| {
        SnapshotError::Tar(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sparse file {shown:?}: {why}"),
        ))
    };
    let mut consumed = 0u64;
    let map: Vec<u64> = if sp.map_in_data {
        // Decimal numbers, one a line: count, then offset/size pairs; padded to 512 bytes.
        let mut read_num = |consumed: &mut u64| -> Result<u64> {
            let mut digits = Vec::new();
            loop {
                let mut b = [0u8; 1];
                entry.read_exact(&mut b).map_err(SnapshotError::Tar)?;
                *consumed += 1;
                if b[0] == b'\n' {
                    break;
                }
                if !b[0].is_ascii_digit() || digits.len() > 20 {
                    return Err(bad("corrupt sparse map"));
                }
                digits.push(b[0]);
            }
            std::str::from_utf8(&digits)
                .ok()
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| bad("corrupt sparse map"))
        };
        let count = read_num(&mut consumed)?;
        if count > 1 << 20 {
            return Err(bad("too many sparse chunks"));
        }
        let mut map = Vec::new();
        for _ in 0..count * 2 {
            map.push(read_num(&mut consumed)?);
        }
        let pad = consumed.div_ceil(512) * 512 - consumed;
        io::copy(&mut entry.by_ref().take(pad), &mut io::sink()).map_err(SnapshotError::Tar)?;
        consumed += pad;
        map
    } else {
        sp.map.clone()
    };
    if !map.len().is_multiple_of(2) {
        return Err(bad("odd sparse map"));
    }
    let mut data = 0u64;
    for pair in map.chunks(2) {
        let (offset, size) = (pair[0], pair[1]);
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| SnapshotError::io("seek in", abs, e))?;
        let n = copy_data(&mut entry.by_ref().take(size), f, abs)?;
        if n != size {
            return Err(SnapshotError::Truncated {
                bytes: entry.raw_file_position() + consumed + data + n,
            });
        }
        data += n;
    }
    if consumed + data != entry.size() {
        return Err(bad("sparse map does not match the entry size"));
    }
    if let Some(real) = sp.real_size {
        f.set_len(real)
            .map_err(|e| SnapshotError::io("set the size of", abs, e))?;
    }
    let _ = f.flush();
    Ok(data)
}

/// Parses a PAX time like `1700000000.123456789` (or negative) into seconds and nanoseconds.
fn parse_pax_time(s: &str) -> Option<(i64, i64)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    if s.starts_with('-') && nanos > 0 {
        Some((secs - 1, 1_000_000_000 - nanos))
    } else {
        Some((secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn names_split() {
        assert!(split_name(b"/etc/passwd", "x").is_err());
        assert_eq!(split_name(b"./a//b/./c/", "x").unwrap().len(), 3);
    }
}
