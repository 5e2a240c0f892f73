//! The file pool: large files that COPY layers' snapshots share by hardlink.
//!
//! A `COPY . .` after a one-line source edit writes a new layer whose big files are
//! byte-for-byte the ones of the previous build. Copying them again is most of such a
//! rebuild (a fresh page-cache copy of every byte), so the builder keeps one inode per
//! (content, mode, owner, mtime) in `<root>/files/` and hardlinks it into the new step's
//! upper dir instead of copying. A hardlink shares the inode, so everything a layer stores
//! about a file must be in the key: the content's SHA-256, the permission bits, uid, gid and
//! the (fixed) mtime. Snapshots are never written to (they are overlay lower dirs), so a
//! shared inode never changes under another snapshot.
//!
//! - An entry appears by `link` to a temp name and `rename`, after its data was fsynced: a
//!   crash leaves it whole or absent, never an empty file under a content name.
//! - A lookup checks the entry's size, mode, owner and mtime against the key; anything else
//!   is a miss (the caller copies).
//! - `prune` removes entries no snapshot links any more (link count 1).
//! - Only files of at least [`MIN_POOLED_SIZE`] bytes are pooled: for small files a copy
//!   costs about what the link bookkeeping does.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{sync_dir, IoContext, Result, Store};

/// Files smaller than this are copied, not pooled.
pub const MIN_POOLED_SIZE: u64 = 128 << 10;

/// What a layer stores of a regular file, apart from its path: the pool key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PooledFile {
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// mtime in whole seconds (atime is set to the same).
    pub mtime: u64,
}

impl PooledFile {
    /// Its entry's file name in `<root>/files/` (what layer records list).
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:o}-{}-{}-{}",
            hex::encode(self.sha256),
            self.mode,
            self.uid,
            self.gid,
            self.mtime
        )
    }

    /// Does `md` (of the pool entry) say what the key says?
    fn matches(&self, md: &fs::Metadata) -> bool {
        md.is_file()
            && md.len() == self.size
            && md.mode() & 0o7777 == self.mode
            && md.uid() == self.uid
            && md.gid() == self.gid
            && md.mtime() == self.mtime as i64
            && md.mtime_nsec() == 0
    }
}

impl Store {
    /// `<root>/files`.
    pub(crate) fn pool_dir(&self) -> PathBuf {
        self.root().join("files")
    }

    /// The pool entry for `f`, if there is a sound one.
    pub fn pool_find(&self, f: &PooledFile) -> Option<PathBuf> {
        let p = self.pool_dir().join(f.file_name());
        let md = fs::symlink_metadata(&p).ok()?;
        f.matches(&md).then_some(p)
    }

    /// Add `file` (a finished file of a step's upper dir whose metadata and content are
    /// what `f` says) to the pool, unless an entry exists. Its data is fsynced first.
    pub fn pool_add(&self, file: &Path, f: &PooledFile) -> Result<()> {
        let dir = self.pool_dir();
        let target = dir.join(f.file_name());
        if self.pool_find(f).is_some() {
            return Ok(());
        }
        let md = fs::symlink_metadata(file).at(file)?;
        if !f.matches(&md) {
            return Err(super::StoreError::Unsupported(format!(
                "{} does not have the metadata of its pool key",
                file.display()
            )));
        }
        fs::create_dir_all(&dir).at(&dir)?;
        fs::File::open(file).and_then(|h| h.sync_data()).at(file)?;
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), f.file_name()));
        let _ = fs::remove_file(&tmp);
        fs::hard_link(file, &tmp).at(&tmp)?;
        if let Err(e) = fs::rename(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            return Err(e).at(&target);
        }
        sync_dir(&dir)
    }

    /// Remove pool entries no snapshot shares any more (and temp links a crash left);
    /// returns (entries removed, bytes freed). Call with `gc.lock` held exclusively. Only a
    /// speed-up is at stake, so what cannot be read or removed is left as it is.
    pub(crate) fn pool_sweep(&self) -> (usize, u64) {
        let Ok(rd) = fs::read_dir(self.pool_dir()) else {
            return (0, 0);
        };
        let (mut n, mut bytes) = (0, 0);
        for e in rd.filter_map(|e| e.ok()) {
            let Ok(md) = e.metadata() else { continue };
            let stale_tmp = e.file_name().to_string_lossy().starts_with(".tmp-");
            if (md.nlink() <= 1 || stale_tmp) && fs::remove_file(e.path()).is_ok() {
                n += 1;
                if md.nlink() <= 1 {
                    bytes += md.len();
                }
            }
        }
        (n, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fixture(dir: &Path, data: &[u8], mode: u32, mtime: i64) -> (PathBuf, PooledFile) {
        let p = dir.join("f");
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        let t = nix::sys::time::TimeSpec::new(mtime, 0);
        nix::sys::stat::utimensat(None, &p, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink).unwrap();
        let md = fs::metadata(&p).unwrap();
        let sha = {
            use sha2::Digest as _;
            sha2::Sha256::digest(data).into()
        };
        (p, PooledFile { sha256: sha, size: data.len() as u64, mode, uid: md.uid(), gid: md.gid(), mtime: mtime as u64 })
    }

    #[test]
    fn add_find_and_sweep() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        let (file, key) = fixture(&src, b"pooled bytes", 0o640, 0);
        assert!(store.pool_find(&key).is_none());
        store.pool_add(&file, &key).unwrap();
        let found = store.pool_find(&key).unwrap();
        assert_eq!(fs::read(&found).unwrap(), b"pooled bytes");
        assert_eq!(fs::metadata(&found).unwrap().ino(), fs::metadata(&file).unwrap().ino());
        // Another mode, owner or mtime is another entry.
        assert!(store.pool_find(&PooledFile { mode: 0o644, ..key }).is_none());
        assert!(store.pool_find(&PooledFile { mtime: 5, ..key }).is_none());
        assert!(store.pool_find(&PooledFile { size: 3, ..key }).is_none());
        // A file whose metadata differs from its key is refused.
        assert!(store.pool_add(&file, &PooledFile { uid: key.uid + 1, ..key }).is_err());
        // Still linked from `src`: kept; once only the pool holds it: swept.
        assert_eq!(store.pool_sweep().0, 0);
        fs::remove_file(&file).unwrap();
        assert_eq!(store.pool_sweep(), (1, 12));
        assert!(store.pool_find(&key).is_none());
    }
}
