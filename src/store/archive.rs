//! load / save / import of image archives.

use std::io::{BufRead, Read};

use super::{Result, StoreError};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format: manifest.json + repositories.
    Docker,
    /// OCI image layout in a tar.
    Oci,
}

/// What load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {}

/// A reader yielding the tar inside `r`: gunzipped when it starts with the gzip magic.
pub(crate) fn decompressed<'a, R: BufRead + 'a>(mut r: R, what: &str) -> Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf().map_err(|e| StoreError::BadArchive { file: what.to_string(), reason: e.to_string() })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(StoreError::Unsupported(format!("{what}: zstd-compressed layers are not supported yet")))
    } else {
        Ok(Box::new(r))
    }
}
