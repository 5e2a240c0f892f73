//! The one error type of the snapshot module.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while unpacking, writing, diffing, copying or mounting layers.
///
/// Messages are lower-case, one line, and name the file or tar entry involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A filesystem operation failed on a path.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What we tried to do ("create", "read", "set mode of", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The tar stream could not be read (corrupt header, checksum mismatch, short read).
    #[error("corrupt or truncated layer tar: {0}; re-fetch or re-create the layer blob")]
    Tar(#[source] io::Error),
    /// The tar stream ended without its end-of-archive marker.
    #[error("layer tar is truncated (it ends without the end-of-archive marker after {bytes} bytes); re-fetch or re-create the layer blob")]
    Truncated {
        /// Bytes of (uncompressed) tar read before the stream ended.
        bytes: u64,
    },
    /// A tar entry tries to leave the destination or is otherwise unsafe to write.
    #[error("refusing layer entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry name as stored in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A compressed stream of a kind we cannot read.
    #[error("layer is {0}-compressed, which is not supported yet; use a gzip or plain tar layer")]
    UnsupportedCompression(&'static str),
    /// A file changed while it was being archived.
    #[error("{} changed while it was being archived (size was {expected}, read {got}); retry when nothing writes to it", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The size from its metadata.
        expected: u64,
        /// The bytes that could be read.
        got: u64,
    },
    /// Writing the layer stream to its destination failed.
    #[error("cannot write layer stream: {0}")]
    Output(#[source] io::Error),
    /// An overlayfs mount or unmount failed, or its options are unusable.
    #[error("overlay mount on {}: {message}", target.display())]
    Overlay {
        /// The mount point.
        target: PathBuf,
        /// What went wrong and what to do next.
        message: String,
    },
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        SnapshotError::UnsafeEntry {
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the snapshot module.
pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;
