//! Per-layer side records: `<root>/layers/<diff ID hex>.json` holds the uncompressed size of
//! a layer (Docker's SIZE is the sum of these), written where the diff ID is computed or
//! verified (load, import, unpack, and the build's layer writes). Manifests stay
//! content-identical; a layer without a record counts with its blob size.
//!
//! A COPY layer's record also names the file-pool entries its snapshot may link
//! (`pooled`, see `filepool.rs`), written *before* the snapshot appears: a later COPY on top
//! of it copies those files instead of linking them again, so no two layers of one image
//! share an inode (a RUN would see them as hardlinks). The list may name more than the
//! snapshot links (a crash, a snapshot unpacked from the blob later), never less.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Descriptor, Digest, Result, Store};

#[derive(Debug, Serialize, Deserialize)]
struct LayerRecord {
    diff_id: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pooled: Vec<String>,
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
        self.record_layer(diff_id, size, &[])
    }

    /// Remember the size of the layer `diff_id` and add `pooled` (file-pool entry names its
    /// snapshot links) to the names recorded for it.
    pub fn record_layer(&self, diff_id: &Digest, size: u64, pooled: &[String]) -> Result<()> {
        let old = self.layer_record(diff_id);
        let mut names: Vec<String> = old.as_ref().map(|r| r.pooled.clone()).unwrap_or_default();
        let known = names.len();
        for p in pooled {
            if !names.contains(p) {
                names.push(p.clone());
            }
        }
        if old.as_ref().is_some_and(|r| r.size == size) && names.len() == known {
            return Ok(());
        }
        names.sort();
        let bytes = serde_json::to_vec(&LayerRecord {
            diff_id: diff_id.clone(),
            size,
            pooled: names,
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
        self.layer_record(diff_id).map(|r| r.size)
    }

    /// The file-pool entries the snapshot of `diff_id` may link (empty without a record).
    pub fn layer_pooled(&self, diff_id: &Digest) -> Vec<String> {
        self.layer_record(diff_id).map(|r| r.pooled).unwrap_or_default()
    }

    fn layer_record(&self, diff_id: &Digest) -> Option<LayerRecord> {
        let bytes = std::fs::read(self.layer_record_path(diff_id)).ok()?;
        let rec: LayerRecord = serde_json::from_slice(&bytes).ok()?;
        (rec.diff_id == *diff_id).then_some(rec)
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
