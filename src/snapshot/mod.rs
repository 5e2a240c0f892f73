//! Unpacked layer trees, overlay mounts, diffs, and deterministic tar layers with OCI whiteouts.
//!
//! Pure filesystem + tar: this module imports no other rbuild module.
//!
//! - [`unpack_layer`] / [`unpack_layer_with`]: a layer tar → a directory, applying OCI
//!   whiteouts either by deleting ([`UnpackMode::Flatten`]) or by recording overlayfs
//!   whiteouts ([`UnpackMode::OverlayLayer`], for snapshots used as overlay lowerdirs).
//!   [`maybe_decompress`] sniffs gzip. [`unpack_to_new_dir`] is the atomic variant.
//!
//! Layer terms: an *OCI whiteout* is a tar entry `dir/.wh.name` (delete `name`) or
//! `dir/.wh..wh..opq` (hide what lower layers have in `dir`); an *overlay whiteout* is a 0/0
//! character device, and an overlay-opaque directory carries `trusted.overlay.opaque=y`.

mod error;
mod fsutil;
mod unpack;

pub use error::{Result, SnapshotError};
pub use unpack::{
    maybe_decompress, unpack_layer, unpack_layer_with, unpack_to_new_dir, Decompressed, UnpackMode,
    UnpackOptions, UnpackReport,
};
