//! The build's side of the file pool (`store/filepool.rs`): in one COPY from the context,
//! big files whose content hash is known are hardlinked from the pool instead of copied, or
//! added to it after being copied.
//!
//! While the step's overlay is mounted, a file to be linked is an empty placeholder (so
//! paths resolve, and later sources replace it, exactly as for a copy); the links are made
//! in the upper dir after the overlay is unmounted ([`PoolOps::finish`]). Whatever later
//! replaces a path in the same COPY (a second source, a heredoc, an extracted tar) drops
//! the pending work on it first ([`FilePool::forget_below`], [`FilePool::take_links_below`]).
//!
//! An inode is linked into at most one layer of an image: the parent layers' records name
//! the pool entries they may link (`store/layers.rs`), and those are copied instead, so no
//! two paths of an image are hardlinks a RUN could see.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::plan::context::{ContextIndex, Entry, StatKey};
use crate::store::{PooledFile, Store};

/// The pool's work in one COPY (lives in the step's helper thread).
pub struct FilePool<'a> {
    store: &'a Store,
    /// Context path → content SHA-256, for files of at least `MIN_POOLED_SIZE`.
    hashes: &'a HashMap<String, [u8; 32]>,
    /// The mtime every COPY file gets.
    mtime: u64,
    /// Names of the pool entries linked in this step or possibly linked by a parent layer.
    claimed: RefCell<HashSet<String>>,
    ops: RefCell<PoolOps>,
}

/// What to do to which path (relative to the root) once the overlay is unmounted.
#[derive(Default)]
pub struct PoolOps {
    ops: BTreeMap<PathBuf, PoolOp>,
    mtime: u64,
}

/// Work on a file of the upper dir once the overlay is unmounted.
enum PoolOp {
    /// The path is an empty placeholder: make it a hardlink of `pooled` (or, should that
    /// have gone, a copy of `src`).
    Link { pooled: PathBuf, src: PathBuf, key: PooledFile },
    /// The path is a complete copy of a file with the content `key` names: pool it.
    Add { key: PooledFile },
}

impl<'a> FilePool<'a> {
    /// `hashes`: the selected context files' content hashes; `below`: the pool entries the
    /// parent layers may link.
    pub fn new(store: &'a Store, hashes: &'a HashMap<String, [u8; 32]>, mtime: u64, below: HashSet<String>) -> Self {
        FilePool { store, hashes, mtime, claimed: RefCell::new(below), ops: Default::default() }
    }

    /// The pool key of context entry `e` as this COPY writes it, if it is a pool candidate.
    pub fn key_for(&self, e: &Entry, mode: u32, uid: u32, gid: u32) -> Option<PooledFile> {
        let sha256 = *self.hashes.get(&e.rel)?;
        Some(PooledFile { sha256, size: e.size, mode: mode & 0o7777, uid, gid, mtime: self.mtime })
    }

    /// The pool entry to link for `key`, unless there is none or this image has it already.
    pub fn claim(&self, key: &PooledFile) -> Option<PathBuf> {
        self.store.pool_find(key).filter(|_| self.claimed.borrow_mut().insert(key.file_name()))
    }

    /// `rel` is a placeholder: link `pooled` there once unmounted.
    pub fn link_later(&self, rel: PathBuf, pooled: PathBuf, src: PathBuf, key: PooledFile) {
        self.ops.borrow_mut().ops.insert(rel, PoolOp::Link { pooled, src, key });
    }

    /// `rel` was copied from context entry `e` (`after`: the source's metadata after the
    /// copy): pool it once unmounted, if the copy is certainly the hashed content (the
    /// source's stat unchanged since the scan, and settled then).
    pub fn add_later(&self, rel: PathBuf, key: PooledFile, idx: &ContextIndex, e: &Entry, after: &fs::Metadata) {
        if StatKey::of(after) == e.stat && idx.is_settled(e) {
            self.ops.borrow_mut().ops.insert(rel, PoolOp::Add { key });
        }
    }

    /// Drop the pending work on `rel` and below (it is being removed or replaced).
    pub fn forget_below(&self, rel: &Path) {
        self.ops.borrow_mut().ops.retain(|p, _| !p.starts_with(rel));
    }

    /// Take the pending work on `rel` and below; returns the links, as (path, source) for
    /// the caller to copy now. Pending adds there are dropped.
    pub fn take_links_below(&self, rel: &Path) -> Vec<(PathBuf, PathBuf)> {
        let mut ops = self.ops.borrow_mut();
        let keys: Vec<PathBuf> = ops.ops.keys().filter(|k| k.starts_with(rel)).cloned().collect();
        keys.into_iter()
            .filter_map(|k| match ops.ops.remove(&k) {
                Some(PoolOp::Link { src, .. }) => Some((k, src)),
                _ => None,
            })
            .collect()
    }

    /// The work left for after the unmount.
    pub fn into_ops(self) -> PoolOps {
        PoolOps { ops: self.ops.into_inner().ops, mtime: self.mtime }
    }
}

impl PoolOps {
    /// Carry out the work on the step's (unmounted) upper dir; `tmp` is a scratch dir on
    /// the same file system. A failing pool add is ignored (the pool is only a speed-up); a
    /// link that cannot be made is replaced by a copy. Returns the names of the pool entries
    /// the upper dir may now link (for the layer's record).
    pub fn finish(self, store: &Store, upper: &Path, tmp: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for (rel, op) in self.ops {
            let dst = upper.join(&rel);
            match op {
                PoolOp::Link { pooled, src, key } => {
                    names.push(key.file_name());
                    let md = fs::symlink_metadata(&dst)?;
                    if !md.is_file() || md.len() != 0 {
                        return Err(io::Error::other(format!("{}: placeholder changed while copying", rel.display())));
                    }
                    let tmp = tmp.join("pool-link");
                    let _ = fs::remove_file(&tmp);
                    match fs::hard_link(&pooled, &tmp) {
                        Ok(()) => fs::rename(&tmp, &dst)?,
                        Err(_) => {
                            let mut from = fs::File::open(&src)?;
                            let mut to = fs::OpenOptions::new().write(true).truncate(true).open(&dst)?;
                            io::copy(&mut from, &mut to)?;
                            set_times(&dst, key.mtime)?;
                        }
                    }
                }
                PoolOp::Add { key } => {
                    names.push(key.file_name());
                    set_times(&dst, self.mtime)?;
                    let _ = store.pool_add(&dst, &key);
                }
            }
        }
        Ok(names)
    }
}

fn set_times(p: &Path, secs: u64) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    let t = nix::sys::time::TimeSpec::new(secs as i64, 0);
    utimensat(None, p, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vanished_pool_entry_falls_back_to_a_copy() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("root")).unwrap();
        let upper = d.path().join("upper");
        fs::create_dir_all(upper.join("app")).unwrap();
        fs::write(upper.join("app/x"), b"").unwrap();
        fs::write(d.path().join("src"), b"abc").unwrap();
        let key = PooledFile { sha256: [7; 32], size: 3, mode: 0o644, uid: 0, gid: 0, mtime: 0 };
        let ops = |pooled: PathBuf| {
            let op = PoolOp::Link { pooled, src: d.path().join("src"), key };
            PoolOps { ops: BTreeMap::from([(PathBuf::from("app/x"), op)]), mtime: 0 }
        };
        ops(d.path().join("gone")).finish(&store, &upper, d.path()).unwrap();
        assert_eq!(fs::read(upper.join("app/x")).unwrap(), b"abc");
        assert_eq!(fs::read_dir(upper.join("app")).unwrap().count(), 1);
        // A placeholder that is no longer empty means someone wrote it: refuse.
        assert!(ops(d.path().join("src")).finish(&store, &upper, d.path()).is_err());
    }
}
