//! Crash-safe content-addressed blob writes and reads.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::{media, sync_dir, Descriptor, Digest, IoContext, Result, Store, StoreError};

/// JSON blobs (manifests, configs, indexes) larger than this are refused when read.
const MAX_JSON_BLOB: u64 = 16 << 20;

/// Writes one blob: bytes go to a temp file in `<root>/ingest/` while being hashed;
/// [`BlobWriter::commit`] fsyncs, checks the digest, renames into `blobs/sha256/` and
/// fsyncs the directory. Dropping a writer without committing deletes the temp file.
pub struct BlobWriter {
    file: BufWriter<NamedTempFile>,
    /// None for [`Store::blob_writer_unhashed`].
    hasher: Option<Sha256>,
    size: u64,
    media_type: String,
    blobs: PathBuf,
}

impl BlobWriter {
    /// Set the media type of the descriptor `commit` returns (default octet-stream).
    pub fn media_type(mut self, media_type: &str) -> Self {
        self.media_type = media_type.to_string();
        self
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Make the blob durable and visible. With `expected`, a different digest is an error
    /// and nothing is stored. A blob that already exists is success.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Descriptor> {
        self.finish(expected, false)
    }

    /// Commit a writer from [`Store::blob_writer_unhashed`] under `digest`, which the caller
    /// computed over exactly the bytes it wrote.
    pub fn commit_as(self, digest: &Digest) -> Result<Descriptor> {
        self.finish(Some(digest), true)
    }

    fn finish(self, expected: Option<&Digest>, trusted: bool) -> Result<Descriptor> {
        let BlobWriter {
            file,
            hasher,
            size,
            media_type,
            blobs,
        } = self;
        let tmp = file.into_inner().map_err(|e| StoreError::Io {
            path: PathBuf::from("ingest"),
            source: e.into_error(),
        })?;
        let digest = match (hasher, expected) {
            (Some(h), _) if !trusted => Digest::from_hasher(h),
            (None, Some(d)) if trusted => d.clone(),
            _ => {
                return Err(StoreError::Unsupported(
                    "internal: a blob writer was committed without a digest".into(),
                ))
            }
        };
        if let Some(exp) = expected.filter(|_| !trusted) {
            if *exp != digest {
                return Err(StoreError::DigestMismatch {
                    what: "blob".into(),
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        let target = blobs.join(digest.hex());
        if !target.exists() {
            tmp.as_file().sync_all().at(tmp.path())?;
            // Temp files are 0600; the store is as readable as Docker's (blobs 0644).
            std::fs::set_permissions(
                tmp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .at(&target)?;
            tmp.persist(&target).map_err(|e| StoreError::Io {
                path: target.clone(),
                source: e.error,
            })?;
            sync_dir(&blobs)?;
        }
        Ok(Descriptor::new(&media_type, digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Store {
    /// Start writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.new_blob_writer(true)
    }

    /// Start writing a blob whose digest the caller computes itself, over exactly the bytes
    /// it writes (a plain layer tar: its diff ID); commit it with [`BlobWriter::commit_as`].
    /// Saves hashing the same bytes twice.
    pub fn blob_writer_unhashed(&self) -> Result<BlobWriter> {
        self.new_blob_writer(false)
    }

    fn new_blob_writer(&self, hashed: bool) -> Result<BlobWriter> {
        let ingest = self.ingest_dir();
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&ingest)
            .at(&ingest)?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(256 << 10, tmp),
            hasher: hashed.then(Sha256::new),
            size: 0,
            media_type: media::OCTET_STREAM.to_string(),
            blobs: self.blobs_dir(),
        })
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Is the blob stored?
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Open a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(digest.clone()),
            _ => StoreError::Io { path, source: e },
        })
    }

    /// Read a small blob (manifest, config, index) into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut buf)
            .at(&self.blob_path(digest))?;
        if buf.len() as u64 > MAX_JSON_BLOB {
            return Err(StoreError::Unsupported(format!(
                "blob {digest} is too large to be a JSON document"
            )));
        }
        Ok(buf)
    }

    /// Read and parse a JSON blob.
    pub fn read_json_blob<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("blob {digest}"),
            source,
        })
    }

    /// Store `bytes` as a blob.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = Digest::of_bytes(bytes);
        if self.has_blob(&digest) {
            return Ok(Descriptor::new(media_type, digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?.media_type(media_type);
        w.write_all(bytes).at(&self.ingest_dir())?;
        w.commit(Some(&digest))
    }

    /// Serialise `value` as compact JSON and store it.
    pub fn put_json_blob<T: Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Json {
            what: format!("new {media_type} blob"),
            source,
        })?;
        self.put_blob(media_type, &bytes)
    }

    /// Store a file already on the store's file system whose digest the caller has verified,
    /// by rename (used by `load`, which stages blobs under `tmp/`).
    pub(crate) fn adopt_verified_file(&self, path: &Path, digest: &Digest) -> Result<()> {
        let target = self.blob_path(digest);
        if target.exists() {
            return Ok(());
        }
        File::open(path).and_then(|f| f.sync_all()).at(path)?;
        fs::rename(path, &target).at(&target)?;
        sync_dir(&self.blobs_dir())
    }
}
