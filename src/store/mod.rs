//! The content-addressed store: blobs, the OCI image layout, tags, the cache index,
//! unpacked layer snapshots. Knows nothing of Dockerfiles.
//!
//! # Layout
//!
//! ```text
//! <root>/oci/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! <root>/oci/index.json            one entry per tag (org.opencontainers.image.ref.name = "app:1",
//!                                  io.containerd.image.name = "docker.io/library/app:1"); an
//!                                  entry without a name is an untagged ("dangling") image
//! <root>/oci/blobs/sha256/<hex>    manifests, configs, layers
//! <root>/ingest/                   blobs being written (temp → fsync → verify → rename)
//! <root>/cache/<key>               build cache records (JSON, one file per key)
//! <root>/snapshots/<diffid hex>/   one layer's tree, unpacked, overlay-ready
//! <root>/files/<sha>-<mode>-<uid>-<gid>-<mtime>   large COPY files the snapshots share by
//!                                  hardlink (see `filepool.rs`)
//! <root>/containers/               `rbuild run` state
//! <root>/layers/<diffid hex>.json  a layer's uncompressed size (Docker's SIZE)
//! <root>/tmp/                      scratch space on the store's filesystem; `load-*` staging
//!                                  dirs hold an flock'd `.lease` file while in use
//! <root>/index.lock                flock held while index.json is read-modified-written
//! <root>/gc.lock                   shared by writers (leases), exclusive for prune
//! ```
//!
//! # Invariants
//!
//! - A file in `blobs/sha256/` has exactly the digest of its name: it is written to
//!   `ingest/`, fsynced, checked, renamed, and the directory fsynced ([`BlobWriter`]). An
//!   existing blob is never rewritten ("already exists" is success).
//! - `index.json` is replaced by rename while `index.lock` is held exclusively, so
//!   concurrent processes never lose each other's tags and readers never see half a file.
//! - A snapshot directory appears by rename of a fully unpacked temp directory.
//! - Blobs and snapshots are only deleted by [`Store::prune`], which takes `gc.lock`
//!   exclusively; anything that writes blobs before tagging them holds a [`Lease`].
//! - Image ID = config digest. Tags point at manifests. Several manifests with one config
//!   (the same image loaded with gzip and with plain layers) are one image: listing,
//!   inspect and `rmi` by ID treat them together ([`Store::remove_image_id`]).
//! - `load` tags all of an archive's images in one index update at the end, or none.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

mod archive;
mod blob;
mod cache;
mod cache_dir;
pub mod digest;
mod filepool;
mod images;
mod layercheck;
mod layers;
mod prune;
pub mod reference;
mod snapshots;
pub mod types;

pub use archive::{ArchiveFormat, LoadReport, LoadedImage};
pub use blob::BlobWriter;
pub use cache::CacheRecord;
pub use cache_dir::{
    CacheDir, CacheDirError, CacheExportReport, CACHE_ARTIFACT_TYPE, CACHE_INDEX_MEDIA_TYPE,
    CACHE_REF_NAME,
};
pub use filepool::{PooledFile, MIN_POOLED_SIZE};
pub use digest::{Digest, HashingReader, HashingWriter, InvalidDigest};
pub use images::ImageRecord;
pub use prune::PruneReport;
pub use reference::{Reference, ReferenceError};
pub use types::{
    media, ContainerConfig, Descriptor, Empty, HealthConfig, History, ImageConfig, Index, Manifest,
    Platform, RootFs,
};

/// Errors of the store. Messages are one line, lower-case, and say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A digest that does not parse.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// Content whose digest is not the one promised.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// Content whose size is not the one promised.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A blob a manifest or index names is not in the store.
    #[error("blob {0} is missing from the store; load or build the image again")]
    MissingBlob(Digest),
    /// No image by that name or ID.
    #[error("no such image: {0} (see `rbuild images`)")]
    NoSuchImage(String),
    /// An ID prefix matching several images.
    #[error("image ID prefix {0} is ambiguous; give more digits")]
    AmbiguousId(String),
    /// A JSON document that does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    /// An archive given to load or import that we refuse.
    #[error("{file}: {reason}")]
    BadArchive { file: String, reason: String },
    /// A layer tar entry that would escape the root or is otherwise unsafe.
    #[error("layer {layer}: entry {entry:?}: {reason}; refusing the layer")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },
    /// Content we do not support (yet).
    #[error("{0}")]
    Unsupported(String),
    /// A cache key that is not hex.
    #[error("invalid cache key {0:?}: expected 1-128 lowercase hex digits")]
    BadCacheKey(String),
    /// The user interrupted the operation (Ctrl-C); nothing was changed.
    #[error("{0}: interrupted; nothing was loaded")]
    Cancelled(String),
    /// Unpacking a layer failed.
    #[error("unpacking layer {layer}: {message}")]
    Unpack { layer: Digest, message: String },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// An open store. Cheap to clone; every method works on the files directly, so several
/// processes may use one root at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Held while blobs are written but not yet referenced by a tag or cache record, so that a
/// concurrent `prune` waits instead of deleting them. Dropping it releases the shared lock.
#[derive(Debug)]
pub struct Lease {
    _lock: Flock<File>,
}

impl Store {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            store.blobs_dir(),
            store.root.join("ingest"),
            store.root.join("cache"),
            store.root.join("snapshots"),
            store.root.join("containers"),
            store.root.join("tmp"),
            store.root.join("layers"),
        ] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        let layout = store.oci_dir().join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, types::OCI_LAYOUT.as_bytes())?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _g = store.lock_file("index.lock", FlockArg::LockExclusive)?;
            if !index.exists() {
                let bytes =
                    serde_json::to_vec(&Index::default()).map_err(|source| StoreError::Json {
                        what: "index.json".into(),
                        source,
                    })?;
                store.write_atomic(&index, &bytes)?;
            }
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/oci`, the OCI image layout (give it to skopeo as `oci:<root>/oci:app:1`).
    pub fn oci_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// `<root>/oci/index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.oci_dir().join("index.json")
    }

    /// `<root>/oci/blobs/sha256`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.oci_dir().join("blobs").join("sha256")
    }

    /// Scratch space on the store's file system (renames into the store are atomic).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<root>/containers`.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Take a lease: `prune` waits until it is dropped. Hold one from writing the first blob
    /// of an image (or cache record) until it is tagged (or recorded).
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease {
            _lock: self.lock_file("gc.lock", FlockArg::LockShared)?,
        })
    }

    pub(crate) fn lock_file(&self, name: &str, how: FlockArg) -> Result<Flock<File>> {
        let path = self.root.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        Flock::lock(f, how).map_err(|(_, e)| StoreError::Io {
            path,
            source: io::Error::from(e),
        })
    }

    /// Write `bytes` to `path` atomically: temp file in the same directory, fsync, rename,
    /// fsync the directory.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(path, bytes)
    }

    /// [`Store::write_atomic`] for a file only its owner may read (mode 0600): records that
    /// hold build-arg and ENV values (`explain/`).
    pub(crate) fn write_atomic_private(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic_mode(path, bytes, 0o600)
    }
}

/// Write `bytes` to `path` atomically (temp in the same directory, fsync, rename, fsync dir).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // The store is as readable as Docker's (blobs 0644).
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's mode; the mode is set before the rename, so the file is
/// never visible with another one.
fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .at(dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.as_file().sync_all().at(path)?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .at(path)?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

/// An error text from a parser (the tar crate quotes raw header bytes) made safe for a
/// one-line message: control characters become spaces, long texts are cut.
pub(crate) fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 160 {
        out = out.chars().take(160).collect::<String>() + "…";
    }
    out
}

/// fsync a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
