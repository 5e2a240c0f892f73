//! `--cache-from` / `--cache-to`: the builder's side of cache export and import. The
//! directory format and its checks live in the store ([`crate::store::CacheDir`]); this file
//! decides which keys go out (min / max) and turns import problems into warnings.
//!
//! - Lookup ([`Imports::lookup`]): a step's key is looked up in the local store first, then in
//!   each `--cache-from` directory in the order given. A hit there copies the layer blob into
//!   the store (checked) and records it in the local cache, so the next build hits locally.
//!   A record that fails its checks is a warning and a miss: the step runs.
//! - Export ([`export`]): `mode=min` writes the records of the final image's steps (the
//!   target stage and the stages it is built `FROM`) and of its `created` time; `mode=max`
//!   those of every step of every stage this build went through, cached or run.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use crate::progress::{BuildEvent, ProgressSink};
use crate::store::{CacheDir, CacheRecord, Store};

use super::BuildError;

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The final image's steps (default, as BuildKit).
    #[default]
    Min,
    /// Every step of every stage built.
    Max,
}

/// `--cache-to type=local,dest=DIR[,mode=min|max]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// The cache directory (created when missing, updated in place).
    pub dest: PathBuf,
    /// Which steps.
    pub mode: CacheMode,
}

/// The cache keys (hex, as the store names them) a build used, for export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheKeys {
    /// The steps of the final image, bottom first, then the key of its `created` time.
    pub target: Vec<String>,
    /// Every step of every stage built (a superset of `target`).
    pub all: Vec<String>,
}

/// The `--cache-from` directories that could be read.
#[derive(Debug, Default)]
pub(crate) struct Imports {
    dirs: Vec<CacheDir>,
    /// (dir index, key) pairs already warned about.
    warned: Mutex<HashSet<(usize, String)>>,
}

impl Imports {
    /// Read the cache indexes; an unreadable source is a warning and is skipped.
    pub fn load(
        sources: &[PathBuf],
        progress: &ProgressSink,
        next_id: impl Fn() -> u32,
    ) -> Imports {
        let mut dirs = Vec::new();
        for src in sources {
            let id = next_id();
            let start = Instant::now();
            progress.send(BuildEvent::StepStarted {
                id,
                name: format!("[internal] importing cache from {}", src.display()),
            });
            match CacheDir::open(src) {
                Ok(d) => {
                    for w in d.warnings() {
                        progress.warn(w.clone());
                    }
                    dirs.push(d);
                }
                Err(e) => progress.warn(e.to_string()),
            }
            progress.send(BuildEvent::StepDone {
                id,
                elapsed: start.elapsed(),
            });
        }
        Imports {
            dirs,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The record for `key` from the first source that has a good one, brought into the
    /// store; `None` on a miss (after a warning for each source whose record was bad).
    pub fn lookup(&self, store: &Store, key: &str, progress: &ProgressSink) -> Option<CacheRecord> {
        for (i, d) in self.dirs.iter().enumerate() {
            if !d.contains(key) {
                continue;
            }
            match d.import(store, key) {
                Ok(Some(rec)) => return Some(rec),
                Ok(None) => {}
                Err(e) => {
                    let first = self
                        .warned
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((i, key.to_string()));
                    if first {
                        progress.warn(e.to_string());
                    }
                }
            }
        }
        None
    }
}

/// Write the records `mode` selects into the cache directory.
pub(crate) fn export(
    store: &Store,
    to: &CacheTo,
    keys: &CacheKeys,
    progress: &ProgressSink,
    id: u32,
) -> Result<(), BuildError> {
    let start = Instant::now();
    progress.send(BuildEvent::StepStarted {
        id,
        name: format!(
            "[internal] exporting cache to {} (mode={})",
            to.dest.display(),
            match to.mode {
                CacheMode::Min => "min",
                CacheMode::Max => "max",
            }
        ),
    });
    let list = match to.mode {
        CacheMode::Min => &keys.target,
        CacheMode::Max => &keys.all,
    };
    match store.export_cache(&to.dest, list) {
        Ok(report) => {
            for w in &report.warnings {
                progress.warn(w.clone());
            }
            progress.send(BuildEvent::StepLog {
                id,
                stream: crate::progress::Stream::Stdout,
                line: format!(
                    "{} records ({} new), {} layer blobs copied ({} bytes)",
                    report.records, report.written, report.blobs_copied, report.bytes_copied
                ),
            });
            progress.send(BuildEvent::StepDone {
                id,
                elapsed: start.elapsed(),
            });
            Ok(())
        }
        Err(e) => {
            progress.send(BuildEvent::StepFailed {
                id,
                elapsed: start.elapsed(),
                error: e.to_string(),
            });
            Err(BuildError::Cache(e))
        }
    }
}

/// Keys in first-seen order without repeats.
pub(crate) fn dedup(keys: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    keys.into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect()
}
