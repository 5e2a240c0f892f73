//! Per-layer side records: `<root>/layers/<diff ID hex>.json` holds the uncompressed size of
//! a layer (Docker's SIZE is the sum of these), written where the diff ID is computed or
//! verified (load, import, unpack, and the build's layer writes). Manifests stay
//! content-identical; a layer without a record counts with its blob size.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Descriptor, Digest, Result, Store};

#[derive(Debug, Serialize, Deserialize)]
struct LayerRecord {
    diff_id: Digest,
    size: u64,
}

impl Store {
    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn layer_record_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(format!("{}.json", diff_id.hex()))
    }

    /// Remember the uncompressed size of the layer `diff_id` (idempotent).
    pub fn record_layer_size(&self, diff_id: &Digest, size: u64) -> Result<()> {
        if self.recorded_layer_size(diff_id) == Some(size) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&LayerRecord {
            diff_id: diff_id.clone(),
            size,
        })
        .map_err(|source| super::StoreError::Json {
            what: "layer record".into(),
            source,
        })?;
        let dir = self.layers_dir();
        std::fs::create_dir_all(&dir).map_err(|source| super::StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        self.write_atomic(&self.layer_record_path(diff_id), &bytes)
    }

    /// The recorded uncompressed size of the layer `diff_id`, if any.
    pub fn recorded_layer_size(&self, diff_id: &Digest) -> Option<u64> {
        let bytes = std::fs::read(self.layer_record_path(diff_id)).ok()?;
        let rec: LayerRecord = serde_json::from_slice(&bytes).ok()?;
        (rec.diff_id == *diff_id).then_some(rec.size)
    }

    /// The uncompressed size of a layer: its record, else the blob size (exact for an
    /// uncompressed tar blob).
    pub fn uncompressed_size(&self, layer: &Descriptor, diff_id: Option<&Digest>) -> u64 {
        if let Some(n) = diff_id.and_then(|d| self.recorded_layer_size(d)) {
            return n;
        }
        layer.size
    }
}
