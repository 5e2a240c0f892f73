//! Build cache export and import: a self-describing directory that carries cache records
//! and their layer blobs from one store to another (`--cache-to type=local,dest=DIR`,
//! `--cache-from type=local,src=DIR`), the way BuildKit's local cache exporter does.
//!
//! # Format
//!
//! The directory is a valid OCI image layout holding one artifact, tagged `rbuild-cache`:
//!
//! ```text
//! DIR/oci-layout                {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json                OCI index; the entry with the annotation
//!                               org.opencontainers.image.ref.name = "rbuild-cache" (and
//!                               artifactType application/vnd.rbuild.cache.v1) is the cache;
//!                               other entries are kept as they are
//! DIR/blobs/sha256/<manifest>   OCI manifest: artifactType application/vnd.rbuild.cache.v1,
//!                               config = the cache index below, layers = every layer blob
//!                               the index names (sorted by digest, each once), so OCI tools
//!                               (skopeo, oras) copy the whole cache as one artifact
//! DIR/blobs/sha256/<index>      the cache index, mediaType
//!                               application/vnd.rbuild.cache.index.v1+json:
//!                               {"schemaVersion": 1,
//!                                "records": {"<cache key, hex>": <record>, ...}}
//! DIR/blobs/sha256/<layer>      layer blobs, byte for byte as in the store
//! ```
//!
//! A record is a store cache record ([`CacheRecord`], the JSON of `<root>/cache/<key>`):
//! `layer` (descriptor: mediaType, digest, size), `diff_id`, `created_by`, `created`. What
//! else the builder keeps with a record locally (the key's trace for `--explain`) is not
//! exported: it can be large and shows build-arg values in plain text. A record without
//! `layer` is a step that changed only the config (or the image's `created` time).
//!
//! # Export ([`Store::export_cache`])
//!
//! Updates the directory in place: the records already there are kept (those whose layer
//! blob has gone are dropped), the new ones are added or replace the old ones with the
//! same key. Blobs are written by digest (temp file, fsync, rename; one that exists with the
//! right content is not written again), then the index and manifest blobs, then `index.json`
//! is replaced by rename, and finally the previous index and manifest blobs are removed.
//! An exclusive `flock` on the directory itself serialises concurrent exports without
//! leaving a lock file behind. Nothing in the directory points outside it (no symlinks, no
//! absolute paths), so it can be tarred up, cached by CI and unpacked anywhere.
//!
//! # Import ([`CacheDir::open`], [`CacheDir::import`])
//!
//! The index is read once and checked against its digests; an unreadable one is an error
//! for the whole source (the caller warns and skips it), a malformed record only for that
//! record ([`CacheDir::warnings`]). On a lookup, the record's layer blob is copied into the
//! store while its compressed digest and size, its uncompressed digest (the diff ID) and the
//! safety of its tar entries are checked in one pass; only then is the record written to
//! the store's cache index. Any mismatch is an error for that key: the caller treats it as a
//! miss and runs the step, so a damaged cache dir costs time, never a wrong layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::types::{ANNOTATION_REF_NAME, OCI_LAYOUT};
use super::{
    media, sync_dir, write_atomic, BlobWriter, CacheRecord, Descriptor, Digest, Index, Manifest,
    Store, StoreError,
};

/// `org.opencontainers.image.ref.name` of the cache artifact in `index.json`.
pub const CACHE_REF_NAME: &str = "rbuild-cache";
/// `artifactType` of the cache manifest.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// Media type of the cache index blob (the manifest's config).
pub const CACHE_INDEX_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.index.v1+json";
/// Version of the cache index document.
pub const CACHE_INDEX_VERSION: u32 = 1;

/// `index.json`, manifests and the cache index larger than this are refused.
const MAX_JSON: u64 = 64 << 20;

/// Errors of cache export and import. One line each; the builder turns import errors into
/// warnings.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// The directory holds no usable cache index.
    #[error("cache {dir}: {reason}; ignoring this cache source")]
    Unreadable {
        /// The cache directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// One record cannot be used.
    #[error("cache {dir}: entry {key}: {reason}; treating it as a cache miss")]
    Entry {
        /// The cache directory.
        dir: PathBuf,
        /// The cache key (hex).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Writing the export failed.
    #[error("exporting the cache to {dir}: {reason}")]
    Export {
        /// The cache directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The cache index document.
#[derive(Debug, Serialize, Deserialize)]
struct IndexDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default)]
    records: BTreeMap<String, Value>,
}

/// A cache directory opened for import.
#[derive(Debug)]
pub struct CacheDir {
    path: PathBuf,
    records: BTreeMap<String, CacheRecord>,
    warnings: Vec<String>,
}

/// What an export did.
#[derive(Debug, Clone, Default)]
pub struct CacheExportReport {
    /// Records in the directory after the export.
    pub records: usize,
    /// Of which added or replaced by this export.
    pub written: usize,
    /// Layer blobs copied into the directory (the others were there already).
    pub blobs_copied: usize,
    /// Bytes of those blobs.
    pub bytes_copied: u64,
    /// Things worth telling the user (an unreadable old index that was replaced, ...).
    pub warnings: Vec<String>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_layer_media_type(mt: &str) -> bool {
    mt == media::OCI_LAYER_GZIP || mt == media::OCI_LAYER_TAR || mt == media::DOCKER_LAYER_GZIP
}

/// Read a small file, at most `MAX_JSON` bytes.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    if !fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut buf = Vec::new();
    File::open(path)?.take(MAX_JSON + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_JSON {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(buf)
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Read the blob `desc` of the layout at `dir`, checking its size and digest.
fn read_verified(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>, String> {
    if desc.size > MAX_JSON {
        return Err(format!(
            "blob {} is too large ({} bytes)",
            desc.digest, desc.size
        ));
    }
    let bytes = read_small(&blob_path(dir, &desc.digest))
        .map_err(|e| format!("blob {}: {e}", desc.digest))?;
    let actual = Digest::of_bytes(&bytes);
    if actual != desc.digest {
        return Err(format!("blob {} has digest {actual}", desc.digest));
    }
    if bytes.len() as u64 != desc.size {
        return Err(format!(
            "blob {} has {} bytes, expected {}",
            desc.digest,
            bytes.len(),
            desc.size
        ));
    }
    Ok(bytes)
}

/// The cache entry of an `index.json`, if any.
fn cache_entry(index: &Index) -> Option<&Descriptor> {
    index.manifests.iter().find(|d| {
        d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(CACHE_REF_NAME)
    })
}

/// What a layout holds: `index.json`, the cache manifest and the parsed records (raw).
struct Existing {
    index: Index,
    manifest: Option<Descriptor>,
    index_blob: Option<Descriptor>,
    records: BTreeMap<String, Value>,
}

fn read_layout(dir: &Path) -> Result<Existing, String> {
    let index_path = dir.join("index.json");
    let bytes = read_small(&index_path).map_err(|e| format!("cannot read index.json: {e}"))?;
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| format!("index.json is not a valid OCI index: {e}"))?;
    let Some(entry) = cache_entry(&index).cloned() else {
        return Err(format!("index.json has no entry named {CACHE_REF_NAME}"));
    };
    let manifest_bytes = read_verified(dir, &entry).map_err(|e| format!("cache manifest: {e}"))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("cache manifest {}: {e}", entry.digest))?;
    if manifest.config.media_type != CACHE_INDEX_MEDIA_TYPE {
        return Err(format!(
            "cache manifest {} has a config of type {:?}, expected {CACHE_INDEX_MEDIA_TYPE}",
            entry.digest, manifest.config.media_type
        ));
    }
    let doc_bytes =
        read_verified(dir, &manifest.config).map_err(|e| format!("cache index: {e}"))?;
    let doc: IndexDoc = serde_json::from_slice(&doc_bytes)
        .map_err(|e| format!("cache index {}: {e}", manifest.config.digest))?;
    if doc.schema_version != CACHE_INDEX_VERSION {
        return Err(format!(
            "cache index version {} is not supported (this rbuild reads version {CACHE_INDEX_VERSION})",
            doc.schema_version
        ));
    }
    Ok(Existing {
        index,
        manifest: Some(entry),
        index_blob: Some(manifest.config),
        records: doc.records,
    })
}

/// Parse and check one raw record.
fn parse_record(key: &str, raw: Value) -> Result<CacheRecord, String> {
    if !valid_key(key) {
        return Err("the key is not 1-128 lowercase hex digits".into());
    }
    let rec: CacheRecord =
        serde_json::from_value(raw).map_err(|e| format!("invalid record: {e}"))?;
    match (&rec.layer, &rec.diff_id) {
        (Some(l), Some(_)) if !is_layer_media_type(&l.media_type) => Err(format!(
            "layer {} has the unsupported media type {:?}",
            l.digest, l.media_type
        )),
        (Some(_), Some(_)) | (None, None) => Ok(rec),
        _ => Err("a record must have both a layer and a diff_id, or neither".into()),
    }
}

impl CacheDir {
    /// Read the cache index of `dir`. Records that do not parse are left out, each with a
    /// warning in [`CacheDir::warnings`].
    pub fn open(dir: &Path) -> Result<CacheDir, CacheDirError> {
        let unreadable = |reason: String| CacheDirError::Unreadable {
            dir: dir.to_path_buf(),
            reason,
        };
        if !dir.is_dir() {
            let what = if dir.exists() { "not a directory" } else { "no such directory" };
            return Err(unreadable(what.into()));
        }
        let existing = read_layout(dir).map_err(unreadable)?;
        let mut records = BTreeMap::new();
        let mut warnings = Vec::new();
        for (key, raw) in existing.records {
            match parse_record(&key, raw) {
                Ok(r) => {
                    records.insert(key, r);
                }
                Err(reason) => warnings.push(format!(
                    "cache {}: entry {key}: {reason}; ignoring it",
                    dir.display()
                )),
            }
        }
        Ok(CacheDir {
            path: dir.to_path_buf(),
            records,
            warnings,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many usable records it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when it holds no usable record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records that were left out when reading the index, one message each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Does the index have a record for `key` (hex)?
    pub fn contains(&self, key: &str) -> bool {
        self.records.contains_key(key)
    }

    /// Bring the record for `key` into `store`: copy and verify its layer blob (unless the
    /// store has it), check its diff ID, write the record to the store's cache index, and
    /// return it. `Ok(None)` when this directory has no record for `key`. An error means
    /// the record cannot be trusted; nothing was recorded.
    pub fn import(&self, store: &Store, key: &str) -> Result<Option<CacheRecord>, CacheDirError> {
        let Some(rec) = self.records.get(key) else {
            return Ok(None);
        };
        let entry = |reason: String| CacheDirError::Entry {
            dir: self.path.clone(),
            key: key.to_string(),
            reason,
        };
        if let (Some(layer), Some(diff_id)) = (&rec.layer, &rec.diff_id) {
            if store.has_blob(&layer.digest) {
                // The blob is trusted (the store verified it when it came in), but the
                // record's claims about its media type and diff ID are not.
                let mut f = store.open_blob(&layer.digest)?;
                media_type_matches(&mut f, layer).map_err(entry)?;
                let actual = layer_diff_id(f, &layer.digest).map_err(entry)?;
                if actual != *diff_id {
                    return Err(entry(format!(
                        "layer {} has diff ID {actual}, not {diff_id}",
                        layer.digest
                    )));
                }
            } else {
                let path = blob_path(&self.path, &layer.digest);
                // Only a regular file of the promised size is read (not a symlink out of the
                // directory, not a fifo, not something that never ends).
                match fs::symlink_metadata(&path) {
                    Ok(m) if !m.is_file() => {
                        return Err(entry(format!(
                            "layer blob {} is not a regular file",
                            layer.digest
                        )))
                    }
                    Ok(m) if m.len() != layer.size => {
                        return Err(entry(format!(
                            "layer blob {} has {} bytes, expected {}",
                            layer.digest,
                            m.len(),
                            layer.size
                        )))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(entry(format!("layer blob {} is missing", layer.digest)))
                    }
                    Err(e) => return Err(entry(format!("layer blob {}: {e}", layer.digest))),
                }
                let mut f = File::open(&path)
                    .map_err(|e| entry(format!("layer blob {}: {e}", layer.digest)))?;
                media_type_matches(&mut f, layer).map_err(entry)?;
                copy_verified(store, f, layer, diff_id).map_err(|e| match e {
                    CopyError::Bad(reason) => entry(reason),
                    CopyError::Store(e) => CacheDirError::Store(e),
                })?;
            }
        }
        store.cache_put(key, rec)?;
        Ok(Some(rec.clone()))
    }
}

enum CopyError {
    /// The blob is not what the record says.
    Bad(String),
    /// The local store failed.
    Store(StoreError),
}

/// Reads `inner`, hashing and counting, and writes every byte read to `out`.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut BlobWriter,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Does the layer's media type say how its bytes are compressed (gzip or not)? The manifest
/// built from the record names it, and other tools decompress by it. `f` is left at its
/// start.
fn media_type_matches(f: &mut File, layer: &Descriptor) -> Result<(), String> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("layer blob {}: {e}", layer.digest)),
        }
    }
    f.seek(io::SeekFrom::Start(0))
        .map_err(|e| format!("layer blob {}: {e}", layer.digest))?;
    let gzip = n == 2 && head == [0x1f, 0x8b];
    let says_gzip = layer.media_type.ends_with("gzip");
    if gzip == says_gzip {
        Ok(())
    } else {
        Err(format!(
            "blob {} is {} but its media type is {}",
            layer.digest,
            if gzip { "gzip-compressed" } else { "not gzip-compressed" },
            layer.media_type
        ))
    }
}

/// The diff ID of a layer blob (checking its tar entries on the way).
fn layer_diff_id(f: File, digest: &Digest) -> Result<Digest, String> {
    let what = format!("layer {digest}");
    let rd = super::archive::decompressed(BufReader::with_capacity(256 << 10, f), &what)
        .map_err(|e| e.to_string())?;
    super::layercheck::check_layer(rd, &digest.to_string())
        .map(|i| i.diff_id)
        .map_err(|e| e.to_string())
}

/// Copy a layer blob into the store in one pass, checking size, digest, tar entries and
/// diff ID before it is committed.
fn copy_verified(
    store: &Store,
    f: File,
    layer: &Descriptor,
    diff_id: &Digest,
) -> Result<(), CopyError> {
    let mut w = store
        .blob_writer()
        .map_err(CopyError::Store)?
        .media_type(&layer.media_type);
    let what = format!("layer {}", layer.digest);
    let mut tee = Tee {
        inner: f,
        out: &mut w,
        hasher: Sha256::new(),
        len: 0,
    };
    let checked =
        super::archive::decompressed(BufReader::with_capacity(256 << 10, &mut tee), &what)
            .and_then(|rd| super::layercheck::check_layer(rd, &layer.digest.to_string()));
    // Read what the tar reader left (gzip trailer, padding), so digest and size are whole.
    let drained = io::copy(&mut tee, &mut io::sink());
    let Tee { hasher, len, .. } = tee;
    let actual = Digest::from_hasher(hasher);
    if let Err(e) = drained {
        return Err(CopyError::Bad(format!(
            "reading layer blob {}: {e}",
            layer.digest
        )));
    }
    if actual != layer.digest {
        return Err(CopyError::Bad(format!(
            "layer blob {} is corrupt: its digest is {actual}",
            layer.digest
        )));
    }
    if len != layer.size {
        return Err(CopyError::Bad(format!(
            "layer blob {} has {len} bytes, expected {}",
            layer.digest, layer.size
        )));
    }
    let info = checked.map_err(|e| CopyError::Bad(e.to_string()))?;
    if info.diff_id != *diff_id {
        return Err(CopyError::Bad(format!(
            "layer {} has diff ID {}, not {diff_id}",
            layer.digest, info.diff_id
        )));
    }
    w.commit(Some(&layer.digest)).map_err(CopyError::Store)?;
    // Docker's SIZE of images built from this cache layer.
    let _ = store.record_layer_size(diff_id, info.size);
    Ok(())
}

/// Is the file at `path` exactly the blob `desc`?
fn blob_ok(path: &Path, desc: &Descriptor) -> bool {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == desc.size => {}
        _ => return false,
    }
    match File::open(path).and_then(Digest::of_reader) {
        Ok((d, _)) => d == desc.digest,
        Err(_) => false,
    }
}

/// Copy the store's blob `desc` to `<dir>/blobs/sha256/` (temp, fsync, rename).
fn copy_blob_out(store: &Store, blobs: &Path, desc: &Descriptor) -> Result<u64, String> {
    let mut src = store.open_blob(&desc.digest).map_err(|e| e.to_string())?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(blobs)
        .map_err(|e| format!("{}: {e}", blobs.display()))?;
    let mut hw = super::HashingWriter::new(tmp.as_file_mut());
    io::copy(&mut src, &mut hw).map_err(|e| format!("copying blob {}: {e}", desc.digest))?;
    let (digest, len) = hw.finish();
    if digest != desc.digest {
        return Err(format!(
            "the store's blob {} is corrupt (its digest is {digest}); run `rbuild prune --all` and build again",
            desc.digest
        ));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    let target = blobs.join(desc.digest.hex());
    tmp.persist(&target)
        .map_err(|e| format!("{}: {}", target.display(), e.error))?;
    Ok(len)
}

/// `create_dir_all`, with the directories it creates made 0755 whatever the umask: a CI
/// cache step (often another user) must be able to read the export.
fn create_public_dirs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
    fs::create_dir_all(path)?;
    for d in missing {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Holds an exclusive `flock` on a directory.
struct DirLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

fn lock_dir(dir: &Path) -> Result<DirLock, String> {
    let f = File::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(DirLock)
        .map_err(|(_, e)| format!("locking {}: {e}", dir.display()))
}

impl Store {
    /// Write the cache records of `keys` (hex; keys without a record are skipped) and their
    /// layer blobs into the cache directory `dir`, merging with what is there. See the
    /// module documentation for the format.
    pub fn export_cache(
        &self,
        dir: &Path,
        keys: &[String],
    ) -> Result<CacheExportReport, CacheDirError> {
        let fail = |reason: String| CacheDirError::Export {
            dir: dir.to_path_buf(),
            reason,
        };
        let blobs = dir.join("blobs").join("sha256");
        // The export writes only inside `dir`: a symbolic link where its folders go would
        // send the blobs (written as root) somewhere else.
        for d in [dir.join("blobs"), blobs.clone()] {
            if fs::symlink_metadata(&d).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(fail(format!(
                    "{} is a symbolic link; export to a directory of plain folders (remove it, or choose another dest)",
                    d.display()
                )));
            }
        }
        create_public_dirs(&blobs)
            .map_err(|e| fail(format!("cannot create {}: {e}", blobs.display())))?;
        let _lock = lock_dir(dir).map_err(fail)?;
        // Temp files of an export that was killed: nobody else writes while we hold the lock.
        for d in [dir, blobs.as_path()] {
            sweep_temp_files(d);
        }
        let mut report = CacheExportReport::default();

        // What is there already. A directory that is not ours (or is damaged) is started over,
        // keeping its other index.json entries when they can be read.
        let has_index = dir.join("index.json").exists();
        let mut existing = match read_layout(dir) {
            Ok(e) => e,
            Err(reason) => {
                if has_index {
                    report.warnings.push(format!(
                        "cache {}: {reason}; writing a new cache index",
                        dir.display()
                    ));
                }
                let index = read_small(&dir.join("index.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
                    .unwrap_or_default();
                Existing {
                    index,
                    manifest: None,
                    index_blob: None,
                    records: BTreeMap::new(),
                }
            }
        };

        let mut records: BTreeMap<String, CacheRecord> = BTreeMap::new();
        for (key, raw) in std::mem::take(&mut existing.records) {
            let Ok(rec) = parse_record(&key, raw) else {
                continue;
            };
            // A record whose blob is gone would be a miss for every importer: drop it.
            if let Some(l) = &rec.layer {
                if !blob_path(dir, &l.digest).is_file() {
                    continue;
                }
            }
            records.insert(key, rec);
        }

        let mut checked: BTreeSet<Digest> = BTreeSet::new();
        for key in keys {
            let Some(mut rec) = self.cache_get(key) else {
                continue;
            };
            // The builder's extras (the key's trace for --explain) stay local: they can be
            // large and show build-arg values in plain text; an import needs none of them.
            rec.extra.clear();
            if let Some(l) = &rec.layer {
                if checked.insert(l.digest.clone()) && !blob_ok(&blobs.join(l.digest.hex()), l) {
                    report.bytes_copied += copy_blob_out(self, &blobs, l).map_err(fail)?;
                    report.blobs_copied += 1;
                }
            }
            if records.get(key) != Some(&rec) {
                report.written += 1;
            }
            records.insert(key.clone(), rec);
        }
        if report.blobs_copied > 0 {
            sync_dir(&blobs)?;
        }

        // The index blob, the manifest, then index.json.
        let doc = IndexDoc {
            schema_version: CACHE_INDEX_VERSION,
            records: records
                .iter()
                .map(|(k, r)| Ok((k.clone(), serde_json::to_value(r)?)))
                .collect::<Result<_, serde_json::Error>>()
                .map_err(|e| fail(format!("serializing the cache index: {e}")))?,
        };
        let doc_bytes = serde_json::to_vec(&doc)
            .map_err(|e| fail(format!("serializing the cache index: {e}")))?;
        let doc_desc = Descriptor::new(
            CACHE_INDEX_MEDIA_TYPE,
            Digest::of_bytes(&doc_bytes),
            doc_bytes.len() as u64,
        );
        write_blob(&blobs, &doc_desc, &doc_bytes)?;

        let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        for r in records.values() {
            if let Some(l) = &r.layer {
                layers
                    .entry(l.digest.clone())
                    .or_insert_with(|| Descriptor::new(&l.media_type, l.digest.clone(), l.size));
            }
        }
        let mut manifest = Manifest::new(doc_desc.clone(), layers.into_values().collect());
        manifest.extra.insert(
            "artifactType".into(),
            Value::String(CACHE_ARTIFACT_TYPE.into()),
        );
        let man_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| fail(format!("serializing the cache manifest: {e}")))?;
        let mut man_desc = Descriptor::new(
            media::OCI_MANIFEST,
            Digest::of_bytes(&man_bytes),
            man_bytes.len() as u64,
        );
        write_blob(&blobs, &man_desc, &man_bytes)?;

        man_desc
            .annotations
            .insert(ANNOTATION_REF_NAME.into(), CACHE_REF_NAME.into());
        man_desc.extra.insert(
            "artifactType".into(),
            Value::String(CACHE_ARTIFACT_TYPE.into()),
        );
        let mut index = existing.index.clone();
        index.manifests.retain(|d| {
            d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(CACHE_REF_NAME)
        });
        index.manifests.push(man_desc.clone());
        let layout = dir.join("oci-layout");
        if fs::read(&layout).ok().as_deref() != Some(OCI_LAYOUT.as_bytes()) {
            write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
        }
        let index_bytes =
            serde_json::to_vec(&index).map_err(|e| fail(format!("serializing index.json: {e}")))?;
        write_atomic(&dir.join("index.json"), &index_bytes)?;

        // The previous manifest and index are garbage now (unless identical to the new ones).
        for old in [&existing.manifest, &existing.index_blob]
            .into_iter()
            .flatten()
        {
            if old.digest != man_desc.digest && old.digest != doc_desc.digest {
                let _ = fs::remove_file(blob_path(dir, &old.digest));
            }
        }
        report.records = records.len();
        Ok(report)
    }
}

/// Remove `.tmp-*` files left in `dir` by an interrupted export.
fn sweep_temp_files(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Write a small blob into `blobs` unless it is there already with the right content.
fn write_blob(blobs: &Path, desc: &Descriptor, bytes: &[u8]) -> Result<(), CacheDirError> {
    let path = blobs.join(desc.digest.hex());
    if blob_ok(&path, desc) {
        return Ok(());
    }
    write_atomic(&path, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small gzip layer holding one file; returns (descriptor, diff ID).
    fn put_layer(store: &Store, content: &[u8]) -> (Descriptor, Digest) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "f.txt", content).unwrap();
        let raw = tar.into_inner().unwrap();
        let diff_id = Digest::of_bytes(&raw);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let desc = store
            .put_blob(media::OCI_LAYER_GZIP, &gz.finish().unwrap())
            .unwrap();
        (desc, diff_id)
    }

    fn record(layer: Option<(Descriptor, Digest)>, by: &str) -> CacheRecord {
        CacheRecord {
            layer: layer.as_ref().map(|l| l.0.clone()),
            diff_id: layer.map(|l| l.1),
            created_by: by.into(),
            created: Some("2024-01-01T00:00:00Z".into()),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn export_merge_import_and_a_lying_record() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Store::open(&tmp.path().join("a")).unwrap();
        let dir = tmp.path().join("cache");
        let l1 = put_layer(&a, b"one");
        let l2 = put_layer(&a, b"two");
        a.cache_put("aa", &record(Some(l1.clone()), "RUN one"))
            .unwrap();
        a.cache_put("bb", &record(None, "WORKDIR /")).unwrap();
        a.cache_put("cc", &record(Some(l2.clone()), "RUN two"))
            .unwrap();
        let r = a
            .export_cache(&dir, &["aa".into(), "bb".into(), "ff".into()])
            .unwrap();
        assert_eq!((r.records, r.written, r.blobs_copied), (2, 2, 1));
        let r = a.export_cache(&dir, &["cc".into(), "aa".into()]).unwrap();
        assert_eq!((r.records, r.written, r.blobs_copied), (3, 1, 1));

        let cd = CacheDir::open(&dir).unwrap();
        assert_eq!(cd.len(), 3);
        assert!(cd.warnings().is_empty());
        let b = Store::open(&tmp.path().join("b")).unwrap();
        assert_eq!(cd.import(&b, "dd").unwrap(), None);
        let got = cd.import(&b, "aa").unwrap().unwrap();
        assert_eq!(got, record(Some(l1.clone()), "RUN one"));
        assert!(b.has_blob(&l1.0.digest));
        assert_eq!(b.cache_get("aa"), Some(got));
        assert_eq!(
            cd.import(&b, "bb").unwrap().unwrap().created_by,
            "WORKDIR /"
        );

        // A record pairing a blob the store already has with another layer's diff ID.
        let c = Store::open(&tmp.path().join("c")).unwrap();
        let l1c = put_layer(&c, b"one");
        assert_eq!(l1c.0.digest, l1.0.digest);
        let mut liar = record(Some(l1.clone()), "RUN one");
        liar.diff_id = Some(l2.1.clone());
        a.cache_put("ee", &liar).unwrap();
        a.export_cache(&dir, &["ee".into()]).unwrap();
        let cd = CacheDir::open(&dir).unwrap();
        let e = cd.import(&c, "ee").unwrap_err().to_string();
        assert!(e.contains("diff ID"), "{e}");
        assert_eq!(c.cache_get("ee"), None, "nothing recorded");
        // ... and the same for a store without the blob.
        let d = Store::open(&tmp.path().join("d")).unwrap();
        assert!(cd.import(&d, "ee").is_err());
        assert!(!d.has_blob(&l1.0.digest), "a refused blob is not committed");
    }

    #[test]
    fn records_are_checked_one_by_one() {
        let ok = serde_json::json!({"created_by": "x"});
        assert!(parse_record("ab", ok.clone()).is_ok());
        assert!(parse_record("AB", ok.clone()).is_err());
        assert!(parse_record("../x", ok).is_err());
        let d = Digest::of_bytes(b"");
        let half = serde_json::json!({"diff_id": d, "created_by": "x"});
        assert!(parse_record("ab", half).is_err());
        let odd = serde_json::json!({
            "layer": {"mediaType": "text/plain", "digest": d, "size": 0},
            "diff_id": d,
        });
        assert!(parse_record("ab", odd).unwrap_err().contains("media type"));
    }

    #[test]
    fn a_directory_that_is_not_a_cache_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let e = CacheDir::open(&tmp.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no such directory") && e.contains("ignoring this cache source"),
            "{e}"
        );
        fs::write(
            tmp.path().join("index.json"),
            br#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        let e = CacheDir::open(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("no entry named rbuild-cache"), "{e}");
    }
}
