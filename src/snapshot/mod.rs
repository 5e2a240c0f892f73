//! Unpacked layer trees, overlay mounts, diffs, and deterministic tar layers with OCI whiteouts.
//!
//! Pure filesystem + tar: this module imports no other rbuild module.
//!
//! - [`unpack_layer`] / [`unpack_layer_with`]: a layer tar → a directory, applying OCI
//!   whiteouts either by deleting ([`UnpackMode::Flatten`]) or by recording overlayfs
//!   whiteouts ([`UnpackMode::OverlayLayer`], for snapshots used as overlay lowerdirs).
//!   [`maybe_decompress`] sniffs gzip. [`unpack_to_new_dir`] is the atomic variant.
//! - [`write_layer`] / [`write_layer_with`]: a directory or an overlay upper dir →
//!   a deterministic (gzipped) tar with OCI whiteouts, returning the diff ID.
//! - [`overlay`]: mount/unmount overlayfs (lowerdirs top first), the support probe.
//! - The copy fallback where overlayfs is unavailable: [`copy_tree`] flattens layer trees
//!   into a plain directory (copy it twice: the original and the RUN's rootfs), and
//!   [`diff_trees`] writes the layer that turns the original into the changed copy.
//!
//! Layer terms: an *OCI whiteout* is a tar entry `dir/.wh.name` (delete `name`) or
//! `dir/.wh..wh..opq` (hide what lower layers have in `dir`); an *overlay whiteout* is a 0/0
//! character device, and an overlay-opaque directory carries `trusted.overlay.opaque=y`.

mod copy;
mod error;
mod fsutil;
pub mod overlay;
mod unpack;
mod write;

pub use copy::{copy_tree, CopyReport};

pub use error::{Result, SnapshotError};
pub use unpack::{
    maybe_decompress, unpack_layer, unpack_layer_with, unpack_to_new_dir, Decompressed, UnpackMode,
    UnpackOptions, UnpackReport,
};
pub use write::{
    diff_trees, diff_trees_since, write_layer, write_layer_with, DiffSource, LayerCompression, LayerStats,
    MtimePolicy, WriteOptions, DEFAULT_GZIP_LEVEL,
};
