//! The build cache index: cache key (hex) → record, one JSON file per key under
//! `<root>/cache/`, written atomically. A record keeps its layer blob (and snapshot) alive
//! through `prune` until `prune --all`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{write_atomic, Descriptor, Digest, Result, Store, StoreError};

/// What a cached build step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CacheRecord {
    /// The layer blob, or `None` for a step that changed only the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Descriptor>,
    /// The layer's uncompressed digest (the config's `rootfs.diff_ids` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// The history line of the step.
    #[serde(default)]
    pub created_by: String,
    /// When the step first ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Anything else the builder wants to keep with the record (config changes, a trace of
    /// the key's inputs for `--explain`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    /// The record for `key`, if any. A missing, unreadable or corrupt record is a miss.
    pub fn cache_get(&self, key: &str) -> Option<CacheRecord> {
        if !valid_key(key) {
            return None;
        }
        let bytes = std::fs::read(self.cache_dir().join(key)).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        // A record whose layer blob has gone (damaged store) is a miss, not a broken build.
        match &rec.layer {
            Some(l) if !self.has_blob(&l.digest) => None,
            _ => Some(rec),
        }
    }

    /// Store (or replace) the record for `key`, atomically.
    pub fn cache_put(&self, key: &str, record: &CacheRecord) -> Result<()> {
        if !valid_key(key) {
            return Err(StoreError::BadCacheKey(key.to_string()));
        }
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
            what: format!("cache record {key}"),
            source,
        })?;
        write_atomic(&self.cache_dir().join(key), &bytes)
    }

    /// Every cache record with its key (unreadable files are skipped).
    pub fn cache_records(&self) -> Result<Vec<(String, CacheRecord)>> {
        let dir = self.cache_dir();
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })? {
            let Ok(e) = e else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(r) = self.cache_get(&name) {
                out.push((name, r));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
