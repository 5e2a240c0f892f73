//! The build context: which files it holds, their digests, and what a COPY selects.
//!
//! # Lifecycle
//!
//! 1. [`ContextIndex::scan`] walks the context directory once (`lstat` only, no reads), asking
//!    a [`ContextFilter`] (the `.dockerignore` rules) which paths exist for the build. The
//!    `ignore` crate's walker is used for walking only; its own filters (hidden files,
//!    `.gitignore`, ...) are all off: Docker sends hidden and git-ignored files too.
//! 2. [`ContextIndex::select`] resolves one COPY/ADD source (a path or a Go `filepath.Match`
//!    pattern, as Docker) to the entries it copies: a file, a symlink, or a directory's
//!    contents (recursively).
//! 3. [`ContextIndex::digest_selection`] hashes exactly the selected files, in parallel
//!    (rayon), streaming each file through SHA-256, and asks the [`StatCache`] first: a file
//!    whose path, size, mtime, inode and ctime are unchanged since the last build is not read
//!    again (git's index trick, with git's "racily clean" rule: a file changed less than
//!    [`RACY_WINDOW_NS`] before the scan is hashed but not recorded).
//!
//! # What an entry's digest covers
//!
//! SHA-256 over the length-prefixed relative path (slash-separated, from the context root),
//! the type (`f`, `d`, `l`), the permission bits (`mode & 0o7777`), the symlink target, and
//! the content's SHA-256 (files). Not the mtime (touching a file must stay a cache hit), and not
//! the host uid/gid: COPY writes files as 0:0 unless `--chown` says otherwise, and `--chown`
//! is in the step's key, so host ownership cannot reach the layer.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A file whose mtime or ctime is less than this before the scan started is "racily clean":
/// it could change again within the same timestamp tick after we hashed it, and the stat would
/// not show it. Its hash is used for this build but not recorded for the next. Linux stamps
/// files from a coarse clock (one jiffy, at most 10 ms); 100 ms leaves a margin.
pub const RACY_WINDOW_NS: i128 = 100_000_000;

/// Errors of context scanning, selection and hashing.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file could not be read or stat'ed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A COPY source names nothing in the context.
    #[error("{path}: no such file or directory in the build context (is it listed in .dockerignore?)")]
    NotFound {
        /// The source as written.
        path: String,
    },
    /// A wildcard source matched nothing.
    #[error("no source files were specified: {pattern} matches nothing in the build context")]
    NoMatch {
        /// The pattern as written.
        pattern: String,
    },
    /// A `COPY --parents` path that leads through a symbolic link.
    #[error("{path}: COPY --parents keeps the path as written, and it leads through a symbolic link; name the real path ({real})")]
    ParentsSymlink {
        /// The source as written.
        path: String,
        /// Where it leads, relative to the root.
        real: String,
    },
    /// A malformed `[...]` in a pattern.
    #[error("bad pattern {pattern}: {reason}")]
    BadPattern {
        /// The pattern as written (with the flag it came from, if any).
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A symlink chain that never ends.
    #[error("{path}: the symbolic link {link} points outside the build context; copy the file into the context instead")]
    OutsideContext {
        /// The source as written.
        path: String,
        /// The symlink (relative to the context root) whose target leaves the context.
        link: String,
    },
    /// Hashing was stopped (the build was cancelled).
    #[error("interrupted")]
    Interrupted,
    /// A symlink chain that does not end.
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The source path.
        path: String,
    },
}

fn io_err(path: &Path, source: io::Error) -> ContextError {
    ContextError::Io { path: path.to_path_buf(), source }
}

/// Decides which context paths exist for the build (the `.dockerignore` rules).
pub trait ContextFilter: Send + Sync {
    /// Is this path (slash-separated, relative to the context root) left out?
    fn is_excluded(&self, rel: &str) -> bool;
    /// May the walker skip the whole directory `rel`? Only when no exception could bring
    /// back anything below it. The default never skips (always correct, maybe slower).
    fn can_skip_dir(&self, rel: &str) -> bool {
        let _ = rel;
        false
    }
}

/// Keeps every file.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFilter;

impl ContextFilter for NoFilter {
    fn is_excluded(&self, _rel: &str) -> bool {
        false
    }
}

/// A filter from a closure `rel → excluded`.
pub struct FnFilter<F>(pub F);

impl<F: Fn(&str) -> bool + Send + Sync> ContextFilter for FnFilter<F> {
    fn is_excluded(&self, rel: &str) -> bool {
        (self.0)(rel)
    }
}

/// `.dockerignore` rules decide the context (Docker's semantics, not gitignore's).
impl ContextFilter for crate::dockerfile::dockerignore::Dockerignore {
    fn is_excluded(&self, rel: &str) -> bool {
        self.is_ignored(rel)
    }
    fn can_skip_dir(&self, rel: &str) -> bool {
        crate::dockerfile::dockerignore::Dockerignore::can_skip_dir(self, rel)
    }
}

/// The type of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Socket, fifo, device: not copied (Docker skips them too).
    Other,
}

impl EntryKind {
    fn tag(self) -> &'static [u8] {
        match self {
            EntryKind::File => b"f",
            EntryKind::Dir => b"d",
            EntryKind::Symlink => b"l",
            EntryKind::Other => b"o",
        }
    }
}

/// One path of the context, from `lstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Slash-separated path from the context root ("" is the root itself).
    pub rel: String,
    /// Type.
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Host owner (not part of the digest; see the module docs).
    pub uid: u32,
    /// Host group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Symlink target as stored.
    pub link_target: Option<String>,
    /// What the stat cache compares.
    pub stat: StatKey,
}

/// The stat fields that say "unchanged since last hashed" (as git's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    /// Size.
    pub size: u64,
    /// mtime in ns since the epoch.
    pub mtime_ns: i128,
    /// ctime in ns since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub ino: u64,
    /// Device.
    pub dev: u64,
}

impl StatKey {
    /// The key of a file's metadata.
    pub fn of(m: &std::fs::Metadata) -> Self {
        StatKey {
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// All paths of a context that the filter keeps, sorted.
#[derive(Debug)]
pub struct ContextIndex {
    root: PathBuf,
    entries: BTreeMap<String, Entry>,
    scanned_ns: i128,
}

/// One thing a COPY source selects: the matched path and the entries it copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The matched path (after following symlinks in the source), relative to the context root.
    pub root: String,
    /// The base name of the source as written (or as matched by a wildcard), before any
    /// symlink is followed: what a file source is called in a destination directory
    /// (BuildKit's rule: `COPY link.txt /d/` gives `/d/link.txt` even when `link.txt` is a
    /// symlink to `real.txt`).
    pub name: String,
    /// Its type: a directory's contents are copied, not the directory itself.
    pub kind: EntryKind,
    /// For a directory: every entry below it (relative to the context root), sorted, parents
    /// first. For a file or symlink: just `root`.
    pub entries: Vec<String>,
}

impl ContextIndex {
    /// Walk `root` and keep what `filter` does not exclude. `lstat` only; nothing is read.
    pub fn scan(root: &Path, filter: Arc<dyn ContextFilter>) -> Result<Self, ContextError> {
        let meta = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
        if !meta.is_dir() {
            return Err(io_err(root, io::Error::new(io::ErrorKind::NotADirectory, "the build context is not a directory")));
        }
        let root = root.to_path_buf();
        let scanned_ns = now_ns();
        let found: Arc<Mutex<Vec<Entry>>> = Arc::new(Mutex::new(Vec::new()));
        let errors: Arc<Mutex<Vec<ContextError>>> = Arc::new(Mutex::new(Vec::new()));
        let skip_root = root.clone();
        let skip_filter = Arc::clone(&filter);
        let walker = ignore::WalkBuilder::new(&root)
            .standard_filters(false)
            .follow_links(false)
            .threads(rayon::current_num_threads().min(4))
            .filter_entry(move |e| {
                // Prune whole directories the ignore rules drop for good.
                if e.file_type().is_some_and(|t| t.is_dir()) {
                    if let Some(rel) = rel_of(&skip_root, e.path()) {
                        if !rel.is_empty() && skip_filter.can_skip_dir(&rel) {
                            return false;
                        }
                    }
                }
                true
            })
            .build_parallel();
        walker.run(|| {
            let found = Arc::clone(&found);
            let errors = Arc::clone(&errors);
            let filter = Arc::clone(&filter);
            let root = root.clone();
            Box::new(move |res| {
                use ignore::WalkState;
                let ent = match res {
                    Ok(e) => e,
                    Err(e) => {
                        let path = match &e {
                            ignore::Error::WithPath { path, .. } => path.clone(),
                            _ => root.clone(),
                        };
                        let ioe = e.into_io_error().unwrap_or_else(|| io::Error::other("walk failed"));
                        lock(&errors).push(io_err(&path, ioe));
                        return WalkState::Continue;
                    }
                };
                let Some(rel) = rel_of(&root, ent.path()) else { return WalkState::Continue };
                if rel.is_empty() {
                    return WalkState::Continue;
                }
                if filter.is_excluded(&rel) {
                    return WalkState::Continue;
                }
                match entry_of(ent.path(), rel) {
                    Ok(e) => lock(&found).push(e),
                    Err(e) => lock(&errors).push(e),
                }
                WalkState::Continue
            })
        });
        if let Some(e) = lock(&errors).drain(..).next() {
            return Err(e);
        }
        let mut entries: BTreeMap<String, Entry> =
            lock(&found).drain(..).map(|e| (e.rel.clone(), e)).collect();
        let mut root_entry = entry_of(&root, String::new())?;
        root_entry.kind = EntryKind::Dir;
        entries.insert(String::new(), root_entry);
        Ok(ContextIndex { root, entries, scanned_ns })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every kept entry (the root is `""`), sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// One entry by relative path.
    pub fn get(&self, rel: &str) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// Number of kept entries, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when only the root is there.
    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Resolve one COPY/ADD source as Docker does: leading `/` and `./` mean the context
    /// root, `..` cannot leave it; a path with `*`, `?` or `[` is a pattern matched per path
    /// component (Go `filepath.Match`); a directory selects its contents; a symlink named as the
    /// source is followed (within the context).
    pub fn select(&self, source: &str) -> Result<Vec<SourceMatch>, ContextError> {
        let clean = clean_rel(source);
        if has_wildcard(&clean) {
            let pat: Vec<&str> = if clean.is_empty() { vec![] } else { clean.split('/').collect() };
            let mut out = Vec::new();
            for (rel, _) in self.entries.iter() {
                if rel.is_empty() {
                    continue;
                }
                let parts: Vec<&str> = rel.split('/').collect();
                if parts.len() != pat.len() {
                    continue;
                }
                let mut ok = true;
                for (p, n) in pat.iter().zip(parts.iter()) {
                    match glob_match(p, n) {
                        Some(true) => {}
                        Some(false) => {
                            ok = false;
                            break;
                        }
                        None => {
                            return Err(ContextError::BadPattern {
                                pattern: source.to_string(),
                                reason: "unterminated character class".into(),
                            })
                        }
                    }
                }
                if ok {
                    out.push(self.match_at(rel, source)?);
                }
            }
            if out.is_empty() {
                return Err(ContextError::NoMatch { pattern: source.to_string() });
            }
            Ok(out)
        } else {
            Ok(vec![self.match_at(&clean, source)?])
        }
    }

    fn match_at(&self, rel: &str, source: &str) -> Result<SourceMatch, ContextError> {
        let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
        let rel = self.resolve(rel, source)?;
        let Some(e) = self.entries.get(&rel) else {
            return Err(ContextError::NotFound { path: source.to_string() });
        };
        match e.kind {
            EntryKind::Dir => {
                let entries = self.below(&rel).map(|e| e.rel.clone()).collect();
                Ok(SourceMatch { root: rel, name, kind: EntryKind::Dir, entries })
            }
            kind => Ok(SourceMatch { root: rel.clone(), name, kind, entries: vec![rel] }),
        }
    }

    /// Follow every symlink in `rel` (a cleaned relative path), each component in turn, as
    /// Docker does for COPY sources: absolute targets start at the context root, and a
    /// relative target that climbs above the root is an error (it points outside the
    /// context). The result names an entry of the index, or is a path that does not exist.
    fn resolve(&self, rel: &str, source: &str) -> Result<String, ContextError> {
        let mut todo: std::collections::VecDeque<String> =
            rel.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    // Only reachable through a symlink target (sources are cleaned).
                    if done.pop().is_none() {
                        return Err(ContextError::OutsideContext { path: source.to_string(), link: done.join("/") });
                    }
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let cur = done.join("/");
            let Some(e) = self.entries.get(&cur) else {
                // Missing: the rest cannot resolve either.
                done.extend(todo.drain(..));
                return Ok(done.join("/"));
            };
            if e.kind != EntryKind::Symlink {
                continue;
            }
            links += 1;
            if links > 40 {
                return Err(ContextError::SymlinkLoop { path: source.to_string() });
            }
            let target = e.link_target.clone().unwrap_or_default();
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            // Check the climb before splicing the target in, to name the link in the error.
            let mut depth = done.len() as i64;
            for t in target.split('/') {
                match t {
                    "" | "." => {}
                    ".." => {
                        depth -= 1;
                        if depth < 0 {
                            return Err(ContextError::OutsideContext { path: source.to_string(), link: cur });
                        }
                    }
                    _ => depth += 1,
                }
            }
            for t in target.split('/').rev() {
                if !t.is_empty() {
                    todo.push_front(t.to_string());
                }
            }
        }
        Ok(done.join("/"))
    }

    /// Entries strictly below directory `dir` ("" = everything), sorted, parents first.
    pub fn below<'a>(&'a self, dir: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let start = prefix.clone();
        self.entries
            .range(start..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(|(_, e)| e)
    }

    /// Was `e` last changed long enough before the scan ([`RACY_WINDOW_NS`]) that an
    /// unchanged stat means unchanged content?
    pub fn is_settled(&self, e: &Entry) -> bool {
        e.stat.mtime_ns.max(e.stat.ctime_ns) + RACY_WINDOW_NS < self.scanned_ns
    }

    /// The content digest of a selection (the `content` input of a COPY key):
    /// SHA-256 over each match's root and, for each selected entry, its relative path and
    /// entry digest. Reads only files the stat cache cannot vouch for, in parallel.
    pub fn digest_selection(
        &self,
        matches: &[SourceMatch],
        cache: &StatCache,
    ) -> Result<SelectionDigest, ContextError> {
        self.digest_selection_until(matches, cache, &|| false)
    }

    /// [`ContextIndex::digest_selection`] that gives up with [`ContextError::Interrupted`]
    /// as soon as `stop()` says so (checked before each file and while reading it).
    pub fn digest_selection_until(
        &self,
        matches: &[SourceMatch],
        cache: &StatCache,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<SelectionDigest, ContextError> {
        let mut files: Vec<&Entry> = matches
            .iter()
            .flat_map(|m| m.entries.iter())
            .filter_map(|r| self.entries.get(r))
            .filter(|e| e.kind == EntryKind::File)
            .collect();
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        let hashed: Vec<(String, [u8; 32], u64)> = files
            .par_iter()
            .map(|e| {
                if let Some(h) = cache.lookup(&e.rel, &e.stat) {
                    return Ok((e.rel.clone(), h, 0));
                }
                if stop() {
                    return Err(ContextError::Interrupted);
                }
                let path = self.root.join(&e.rel);
                let h = hash_file_until(&path, stop)?;
                if self.is_settled(e) {
                    cache.record(&e.rel, e.stat, h);
                }
                Ok((e.rel.clone(), h, e.size))
            })
            .collect::<Result<_, ContextError>>()?;
        let bytes_read = hashed.iter().map(|(_, _, n)| n).sum();
        let contents: Vec<(String, [u8; 32])> = hashed.into_iter().map(|(r, h, _)| (r, h)).collect();
        let content: HashMap<&str, &[u8; 32]> = contents.iter().map(|(r, h)| (r.as_str(), h)).collect();

        let mut h = Sha256::new();
        let mut n_entries = 0u64;
        for m in matches {
            put(&mut h, b"match");
            put(&mut h, m.root.as_bytes());
            put(&mut h, m.name.as_bytes());
            put(&mut h, m.kind.tag());
            for rel in &m.entries {
                let Some(e) = self.entries.get(rel) else { continue };
                put(&mut h, &entry_digest(e, content.get(rel.as_str()).copied()));
                n_entries += 1;
            }
        }
        Ok(SelectionDigest {
            digest: format!("sha256:{}", hex::encode(h.finalize())),
            entries: n_entries,
            bytes_read,
            contents,
        })
    }
}

/// The result of [`ContextIndex::digest_selection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionDigest {
    /// `sha256:<hex>`.
    pub digest: String,
    /// How many entries it covers.
    pub entries: u64,
    /// Bytes actually read (0 when the stat cache had everything).
    pub bytes_read: u64,
    /// The content SHA-256 of each selected regular file, sorted by path (what `--explain`
    /// compares to name the files that changed).
    pub contents: Vec<(String, [u8; 32])>,
}

/// Digest of one entry (see the module docs); `content` is the file's SHA-256.
pub fn entry_digest(e: &Entry, content: Option<&[u8; 32]>) -> [u8; 32] {
    let mut h = Sha256::new();
    put(&mut h, e.rel.as_bytes());
    put(&mut h, e.kind.tag());
    put(&mut h, &e.mode.to_be_bytes());
    put(&mut h, e.link_target.as_deref().unwrap_or("").as_bytes());
    put(&mut h, content.map(|c| &c[..]).unwrap_or(&[]));
    h.finalize().into()
}

fn put(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

/// SHA-256 of a file's content, streamed.
pub fn hash_file(path: &Path) -> Result<[u8; 32], ContextError> {
    hash_file_until(path, &|| false)
}

/// [`hash_file`], checking `stop()` every 4 MiB.
fn hash_file_until(path: &Path, stop: &(dyn Fn() -> bool + Sync)) -> Result<[u8; 32], ContextError> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut since_check = 0usize;
    loop {
        if since_check >= 4 << 20 {
            if stop() {
                return Err(ContextError::Interrupted);
            }
            since_check = 0;
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, e)),
        };
        h.update(&buf[..n]);
        since_check += n;
    }
    Ok(h.finalize().into())
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rel_of(root: &Path, p: &Path) -> Option<String> {
    let r = p.strip_prefix(root).ok()?;
    let s = r.to_str()?;
    Some(s.to_string())
}

fn entry_of(path: &Path, rel: String) -> Result<Entry, ContextError> {
    let m = std::fs::symlink_metadata(path).map_err(|e| io_err(path, e))?;
    let ft = m.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    let link_target = if kind == EntryKind::Symlink {
        let t = std::fs::read_link(path).map_err(|e| io_err(path, e))?;
        Some(t.to_string_lossy().into_owned())
    } else {
        None
    };
    Ok(Entry {
        rel,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        link_target,
        stat: StatKey::of(&m),
    })
}

/// Clean a source path into a context-relative one: no leading `/` or `./`, no `.`, `..`
/// clamped at the root (as BuildKit: a source cannot leave the context), no trailing `/`.
pub fn clean_rel(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// Does a source contain a wildcard (Docker's rule: `*`, `?` or `[`)?
pub fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one path component: `*` (any run), `?` (one char), `[...]`
/// classes with `^` negation and `a-z` ranges, `\` escapes. `None` for a malformed pattern.
pub fn glob_match(pattern: &str, name: &str) -> Option<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate classes up front so a bad pattern is an error even when it cannot match.
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => i += 2,
            '[' => i = class_end(&p, i)?,
            _ => i += 1,
        }
    }
    Some(glob_at(&p, 0, &n, 0))
}

fn glob_at(p: &[char], mut pi: usize, n: &[char], mut ni: usize) -> bool {
    // Iterative with one backtrack point per `*` (classic wildcard matching).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    if let Some(end) = class_end(p, pi) {
                        if class_matches(&p[pi + 1..end - 1], n[ni]) {
                            pi = end;
                            ni += 1;
                            continue;
                        }
                    }
                }
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if c != '?' && c != '[' && c != '\\' && ni < n.len() && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return true;
        }
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
}

/// Index just past the `]` closing the class that starts at `p[start] == '['`.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if i < p.len() && p[i] == '^' {
        i += 1;
    }
    let mut first = true;
    while i < p.len() {
        match p[i] {
            ']' if !first => return Some(i + 1),
            '\\' => i += 2,
            _ => i += 1,
        }
        first = false;
    }
    None
}

fn class_matches(body: &[char], c: char) -> bool {
    let (neg, body) = match body.first() {
        Some('^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut i = 0;
    let mut hit = false;
    while i < body.len() {
        let mut lo = body[i];
        if lo == '\\' && i + 1 < body.len() {
            i += 1;
            lo = body[i];
        }
        i += 1;
        let mut hi = lo;
        if i + 1 < body.len() && body[i] == '-' {
            hi = body[i + 1];
            if hi == '\\' && i + 2 < body.len() {
                hi = body[i + 2];
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    hit != neg
}

/// Content hashes of context files from earlier builds, keyed by path and checked against
/// size, mtime, ctime, inode and device. Persisted as one JSON file per context directory,
/// replaced atomically; a missing or unreadable file is an empty cache (it is only a speed-up).
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    loaded: HashMap<String, StatRecord>,
    fresh: Mutex<HashMap<String, StatRecord>>,
    hits: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatRecord {
    stat: StatKey,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct StatFile {
    version: u32,
    written_ns: i128,
    entries: HashMap<String, StatRecord>,
}

const STAT_FILE_VERSION: u32 = 1;

impl StatCache {
    /// A cache that is neither loaded nor saved.
    pub fn in_memory() -> Self {
        StatCache::default()
    }

    /// The cache file for a context dir under `cache_dir`: named by the SHA-256 of the
    /// context's absolute path (the path itself stays out of every cache key).
    pub fn file_for(cache_dir: &Path, context_dir: &Path) -> PathBuf {
        let abs = std::fs::canonicalize(context_dir).unwrap_or_else(|_| context_dir.to_path_buf());
        let h = Sha256::digest(abs.as_os_str().as_encoded_bytes());
        cache_dir.join(format!("{}.json", hex::encode(&h[..16])))
    }

    /// Load `path` (missing or corrupt → empty).
    pub fn load(path: &Path) -> Self {
        let parsed: Option<StatFile> =
            std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let loaded = match parsed {
            Some(f) if f.version == STAT_FILE_VERSION => f.entries,
            _ => HashMap::new(),
        };
        StatCache {
            path: Some(path.to_path_buf()),
            loaded,
            fresh: Mutex::new(HashMap::new()),
            hits: Default::default(),
        }
    }

    /// The recorded hash if the file's stat is unchanged.
    pub fn lookup(&self, rel: &str, stat: &StatKey) -> Option<[u8; 32]> {
        let r = self.loaded.get(rel)?;
        if r.stat != *stat {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&r.sha256, &mut out).ok()?;
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(out)
    }

    /// Remember a freshly computed hash.
    pub fn record(&self, rel: &str, stat: StatKey, sha256: [u8; 32]) {
        lock(&self.fresh).insert(rel.to_string(), StatRecord { stat, sha256: hex::encode(sha256) });
    }

    /// How many lookups the cache answered.
    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Write old records that are still valid for `index` plus fresh ones, atomically
    /// (temp file, fsync, rename). No-op for an in-memory cache.
    pub fn save(&self, index: &ContextIndex) -> Result<(), ContextError> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut entries: HashMap<String, StatRecord> = HashMap::new();
        for e in index.entries() {
            if e.kind != EntryKind::File {
                continue;
            }
            if let Some(r) = self.loaded.get(&e.rel).filter(|r| r.stat == e.stat) {
                entries.insert(e.rel.clone(), r.clone());
            }
        }
        for (k, v) in lock(&self.fresh).iter() {
            entries.insert(k.clone(), v.clone());
        }
        let file = StatFile { version: STAT_FILE_VERSION, written_ns: now_ns(), entries };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| io_err(path, io::Error::other(e)))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io_err(dir, e))?;
        tmp.write_all(&bytes).map_err(|e| io_err(path, e))?;
        tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
        tmp.persist(path).map_err(|e| io_err(path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn go_match_rules() {
        let t = |p: &str, n: &str| glob_match(p, n).unwrap();
        assert!(t("*", "abc"));
        assert!(t("*", ".hidden"));
        assert!(t("a*c", "abbbc"));
        assert!(!t("a*c", "abbbd"));
        assert!(t("?b", "ab"));
        assert!(!t("?", ""));
        assert!(t("[a-c]x", "bx"));
        assert!(!t("[^a-c]x", "bx"));
        assert!(t("[^a-c]x", "dx"));
        assert!(t("\\*", "*"));
        assert!(!t("\\*", "a"));
        assert!(t("*.txt", "req.txt"));
        assert!(!t("*.txt", "req.txt.bak"));
        assert!(t("a*b*c", "axxbyyc"));
        assert_eq!(glob_match("[abc", "a"), None);
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_rel("./a/b/"), "a/b");
        assert_eq!(clean_rel("/a/../../b"), "b");
        assert_eq!(clean_rel("."), "");
        assert_eq!(clean_rel("a//b/./c"), "a/b/c");
    }

    fn ctx() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("src/sub")).unwrap();
        std::fs::write(p.join("requirements.txt"), "flask\n").unwrap();
        std::fs::write(p.join("src/main.py"), "print(1)\n").unwrap();
        std::fs::write(p.join("src/sub/x.py"), "x\n").unwrap();
        std::fs::write(p.join("secret.env"), "KEY=1\n").unwrap();
        std::os::unix::fs::symlink("src/main.py", p.join("link")).unwrap();
        d
    }

    #[test]
    fn select_file_dir_wildcard_symlink() {
        let d = ctx();
        let idx = ContextIndex::scan(d.path(), Arc::new(NoFilter)).unwrap();
        let m = idx.select("requirements.txt").unwrap();
        assert_eq!(m[0].kind, EntryKind::File);
        assert_eq!(m[0].entries, vec!["requirements.txt"]);
        let m = idx.select("./src/").unwrap();
        assert_eq!(m[0].kind, EntryKind::Dir);
        assert_eq!(m[0].entries, vec!["src/main.py", "src/sub", "src/sub/x.py"]);
        let m = idx.select("*.txt").unwrap();
        assert_eq!(m.len(), 1);
        let m = idx.select("src/*.py").unwrap();
        assert_eq!(m[0].root, "src/main.py");
        let m = idx.select("link").unwrap();
        assert_eq!(m[0].root, "src/main.py");
        assert_eq!(m[0].name, "link", "a symlink source keeps its own name in the destination");
        let all = idx.select(".").unwrap();
        assert_eq!(all[0].root, "");
        assert!(all[0].entries.contains(&"secret.env".to_string()));
        assert!(matches!(idx.select("nope"), Err(ContextError::NotFound { .. })));
        assert!(matches!(idx.select("*.nope"), Err(ContextError::NoMatch { .. })));
    }

    #[test]
    fn filter_drops_files_and_their_digest_contribution() {
        let d = ctx();
        let f: Arc<dyn ContextFilter> = Arc::new(FnFilter(|r: &str| r == "secret.env"));
        let idx = ContextIndex::scan(d.path(), Arc::clone(&f)).unwrap();
        assert!(idx.get("secret.env").is_none());
        let c = StatCache::in_memory();
        let d1 = idx.digest_selection(&idx.select(".").unwrap(), &c).unwrap();
        std::fs::write(d.path().join("secret.env"), "KEY=2\n").unwrap();
        let idx = ContextIndex::scan(d.path(), f).unwrap();
        let d2 = idx.digest_selection(&idx.select(".").unwrap(), &c).unwrap();
        assert_eq!(d1.digest, d2.digest);
    }

    #[test]
    fn digest_tracks_content_and_mode_not_mtime() {
        let d = ctx();
        let c = StatCache::in_memory();
        let dig = |d: &Path| {
            let idx = ContextIndex::scan(d, Arc::new(NoFilter)).unwrap();
            idx.digest_selection(&idx.select("src").unwrap(), &c).unwrap().digest
        };
        let a = dig(d.path());
        // touch: same content, new mtime
        let f = File::options().write(true).open(d.path().join("src/main.py")).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(dig(d.path()), a);
        std::fs::set_permissions(d.path().join("src/main.py"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = dig(d.path());
        assert_ne!(b, a);
        std::fs::write(d.path().join("src/main.py"), "print(2)\n").unwrap();
        assert_ne!(dig(d.path()), b);
        // a file outside the selection changes nothing
        let before = dig(d.path());
        std::fs::write(d.path().join("requirements.txt"), "django\n").unwrap();
        assert_eq!(dig(d.path()), before);
    }

    #[test]
    fn stat_cache_skips_reads_and_notices_changes() {
        let d = ctx();
        let cache_dir = tempfile::tempdir().unwrap();
        let file = StatCache::file_for(cache_dir.path(), d.path());
        // Make every file old enough to be out of the racy window.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for f in ["requirements.txt", "src/main.py", "src/sub/x.py", "secret.env"] {
            File::options().write(true).open(d.path().join(f)).unwrap().set_modified(old).unwrap();
        }
        // ctime cannot be set back; wait out the racy window relative to it instead.
        std::thread::sleep(std::time::Duration::from_millis((RACY_WINDOW_NS / 1_000_000) as u64 + 100));
        let idx = ContextIndex::scan(d.path(), Arc::new(NoFilter)).unwrap();
        let c = StatCache::load(&file);
        let sel = idx.select(".").unwrap();
        let first = idx.digest_selection(&sel, &c).unwrap();
        assert!(first.bytes_read > 0);
        c.save(&idx).unwrap();

        let c = StatCache::load(&file);
        let second = idx.digest_selection(&sel, &c).unwrap();
        assert_eq!(second.digest, first.digest);
        assert_eq!(second.bytes_read, 0, "a no-op rebuild must not read files");

        std::fs::write(d.path().join("src/main.py"), "print(3)\n").unwrap();
        let idx = ContextIndex::scan(d.path(), Arc::new(NoFilter)).unwrap();
        let c = StatCache::load(&file);
        let third = idx.digest_selection(&idx.select(".").unwrap(), &c).unwrap();
        assert_ne!(third.digest, first.digest);
        assert_eq!(third.bytes_read, 9);
    }
}
