//! `prune`: delete blobs and snapshots that nothing references.
//!
//! Roots: every tagged index entry (its manifest, config, layers; the snapshots of its diff
//! IDs) and every cache record (its layer blob and snapshot). Untagged (dangling) index
//! entries are dropped first, like `docker image prune`. `--all` drops the cache records
//! too. Runs under `gc.lock` held exclusively, so it waits for writers holding a [`Lease`]
//! (a build between writing a layer and tagging the image).
//!
//! [`Lease`]: super::Lease

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use nix::fcntl::FlockArg;

use super::archive::STAGING_LEASE;
use super::images::entry_reference;
use super::{Digest, IoContext, Result, Store, StoreError};

/// What prune freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Snapshot directories deleted (by diff ID hex).
    pub snapshots: Vec<String>,
    /// Cache records deleted.
    pub cache_records: usize,
    /// Untagged images dropped from the index.
    pub untagged_images: usize,
    /// Stale staging dirs removed from tmp/ (left by interrupted loads).
    pub staging_dirs: usize,
    /// Pool files no snapshot shares any more (see `filepool.rs`).
    pub pooled_files: usize,
    /// Bytes freed (blobs + snapshot trees + pool files + temp files + staging dirs).
    pub bytes: u64,
}

/// Does a live process hold the lease file of the staging dir `dir`?
fn staging_in_use(dir: &Path) -> bool {
    let Ok(f) = fs::File::open(dir.join(STAGING_LEASE)) else {
        return false;
    };
    match nix::fcntl::Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(_unlocked_on_drop) => false,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => true,
        Err(_) => true,
    }
}

/// Bytes of the files below `p` that no other path links (pooled files are counted when
/// the pool lets them go).
fn tree_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && m.nlink() == 1)
        .map(|m| m.len())
        .sum()
}

/// remove_dir_all, making read-only directories writable if the first attempt fails.
fn remove_tree(p: &Path) -> Result<()> {
    if fs::remove_dir_all(p).is_ok() || !p.exists() {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(p).into_iter().filter_map(|e| e.ok()) {
        if e.file_type().is_dir() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
        }
    }
    fs::remove_dir_all(p).at(p)
}

impl Store {
    /// Delete every blob and snapshot no tag or cache record references (with `all`, drop
    /// the build cache first).
    ///
    /// `in_use` names snapshot dirs that something outside the store (a container's
    /// overlay) still mounts as lower dirs: they are kept whatever references them.
    pub fn prune(&self, all: bool, in_use: &[std::path::PathBuf]) -> Result<PruneReport> {
        let _gc = self.lock_file("gc.lock", FlockArg::LockExclusive)?;
        let mut report = PruneReport::default();
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_snaps: HashSet<String> = HashSet::new();
        for entry in self.read_index()?.manifests {
            if entry_reference(&entry).is_none() {
                continue;
            }
            let name = entry_reference(&entry)
                .map(|r| r.to_string())
                .unwrap_or_else(|| entry.digest.to_string());
            keep_blobs.insert(entry.digest.clone());
            if super::media::is_index(&entry.media_type) {
                let idx: super::Index = self
                    .read_json_blob(&entry.digest)
                    .map_err(|e| damaged(&name, e))?;
                keep_blobs.extend(idx.manifests.iter().map(|d| d.digest.clone()));
            }
            let img = self.image(&entry).map_err(|e| damaged(&name, e))?;
            keep_blobs.insert(img.manifest_desc.digest.clone());
            keep_blobs.insert(img.id.clone());
            keep_blobs.extend(img.manifest.layers.iter().map(|l| l.digest.clone()));
            keep_snaps.extend(
                img.config
                    .rootfs
                    .diff_ids
                    .iter()
                    .map(|d| d.hex().to_string()),
            );
        }
        keep_snaps.extend(
            in_use
                .iter()
                .filter(|p| p.parent() == Some(self.snapshots_dir().as_path()))
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        );
        if !all {
            for (_, rec) in self.cache_records()? {
                keep_blobs.extend(rec.layer.map(|l| l.digest));
                keep_snaps.extend(rec.diff_id.map(|d| d.hex().to_string()));
            }
        }
        if all {
            let dir = self.cache_dir();
            for e in fs::read_dir(&dir).at(&dir)?.filter_map(|e| e.ok()) {
                if fs::remove_file(e.path()).is_ok() {
                    report.cache_records += 1;
                }
            }
            // `--explain`'s memory of earlier builds, the files `ADD <url>` downloaded and
            // the checkouts of `ADD <git repository>` go with the build cache.
            for dir in ["explain", "downloads", "git"] {
                let Ok(rd) = fs::read_dir(self.root().join(dir)) else { continue };
                for e in rd.filter_map(|e| e.ok()) {
                    let p = e.path();
                    if p.is_dir() {
                        let _ = fs::remove_dir_all(&p);
                    } else {
                        report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                        let _ = fs::remove_file(&p);
                    }
                }
            }
        }
        report.untagged_images = self.drop_untagged()?;

        let blobs = self.blobs_dir();
        let mut names: Vec<_> = fs::read_dir(&blobs)
            .at(&blobs)?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name)
                .map(|d| keep_blobs.contains(&d))
                .unwrap_or(false);
            if keep {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).at(&e.path())?;
            report.bytes += size;
            if let Ok(d) = Digest::from_hex(&name) {
                report.blobs.push(d);
            }
        }
        super::sync_dir(&blobs)?;

        let snaps = self.snapshots_dir();
        let mut names: Vec<_> = fs::read_dir(&snaps)
            .at(&snaps)?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep_snaps.contains(&name) {
                continue;
            }
            report.bytes += tree_size(&e.path());
            remove_tree(&e.path())?;
            if !name.starts_with('.') {
                report.snapshots.push(name);
            }
        }
        let (pooled, pooled_bytes) = self.pool_sweep();
        report.pooled_files = pooled;
        report.bytes += pooled_bytes;
        // index.json temp files are only made under the index lock: any left are a crash's.
        {
            let _index = self.lock_file("index.lock", FlockArg::LockExclusive)?;
            let oci = self.oci_dir();
            for e in fs::read_dir(&oci).at(&oci)?.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // Nobody holds a lease, so whatever is in ingest/ is left over from a crash.
        let ingest = self.ingest_dir();
        for e in fs::read_dir(&ingest).at(&ingest)?.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if staging_in_use(&e.path()) {
                    continue;
                }
                report.bytes += tree_size(&e.path());
                let _ = remove_tree(&e.path());
            } else {
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(e.path());
            }
        }
        // Staging dirs of loads (and others that hold a lease file) nobody is using any more:
        // a killed `rbuild load` leaves its `tmp/load-*` behind.
        let tmp = self.tmp_dir();
        for e in fs::read_dir(&tmp).at(&tmp)?.filter_map(|e| e.ok()) {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let has_lease = path.join(STAGING_LEASE).exists();
            // Without a lease file only a load's dir is known to be ours (from before leases
            // existed; a live load holds the gc lease, so none runs now).
            let legacy_load = e.file_name().to_string_lossy().starts_with("load-");
            if (!has_lease && !legacy_load) || staging_in_use(&path) {
                continue;
            }
            report.bytes += tree_size(&path);
            remove_tree(&path)?;
            report.staging_dirs += 1;
        }
        // Size records of layers nothing keeps any more.
        let layers = self.layers_dir();
        if let Ok(rd) = fs::read_dir(&layers) {
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = name
                    .strip_suffix(".json")
                    .is_some_and(|hex| keep_snaps.contains(hex));
                if !keep {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(report)
    }
}

fn damaged(name: &str, e: StoreError) -> StoreError {
    StoreError::Unsupported(format!(
        "image {name} is damaged ({e}); nothing was pruned: remove it with `rbuild rmi {name}` and prune again"
    ))
}
