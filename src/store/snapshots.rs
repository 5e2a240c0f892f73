//! Unpacked layer trees, one directory per diff ID, used as overlay lower dirs.
//!
//! `<root>/snapshots/<diffid hex>/` holds exactly one layer's tree as overlayfs wants a
//! lower dir: files of that layer only, OCI whiteouts turned into overlay whiteouts
//! (`.wh.x` → char device 0/0 `x`; `.wh..wh..opq` → `trusted.overlay.opaque=y` on the dir).
//! Stack them top first as `lowerdir=` to get the image's root.
//!
//! Unpacking goes into `snapshots/.tmp-*` and is renamed into place when complete, so a
//! snapshot directory is either absent or whole. While unpacking, the uncompressed stream is
//! hashed and must equal the diff ID.

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::snapshot;

use super::{Descriptor, Digest, HashingReader, ImageRecord, IoContext, Result, Store, StoreError};

impl Store {
    /// Where the unpacked tree of the layer with this diff ID lives (whether or not it does).
    pub fn snapshot_dir(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(diff_id.hex())
    }

    /// Unpack the layer blob `layer` (gzip or plain tar) into its snapshot directory unless
    /// it is there already; returns the directory. `diff_id` is the layer's uncompressed
    /// digest from the image config; the content must match it.
    pub fn ensure_unpacked(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf> {
        Ok(self.ensure_unpacked_report(layer, diff_id)?.0)
    }

    /// [`Store::ensure_unpacked`], also returning the unpack's warnings (device nodes
    /// skipped without privilege, xattrs refused, ...); empty when the snapshot existed.
    pub fn ensure_unpacked_report(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(PathBuf, Vec<String>)> {
        let dest = self.snapshot_dir(diff_id);
        if dest.is_dir() {
            return Ok((dest, Vec::new()));
        }
        // prune must not take our half-unpacked temp dir (or the blob) away.
        let _lease = self.lease()?;
        let blob = BufReader::with_capacity(256 << 10, self.open_blob(&layer.digest)?);
        let reader = super::archive::decompressed(blob, &layer.digest.to_string())?;
        let snaps = self.snapshots_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&snaps)
            .at(&snaps)?;
        let tree = tmp.path().join("tree");
        fs::create_dir(&tree).at(&tree)?;
        fs::set_permissions(&tree, fs::Permissions::from_mode(0o755)).at(&tree)?;
        let mut hashing = HashingReader::new(reader);
        let report = snapshot::unpack_layer_with(
            &mut hashing,
            &tree,
            &snapshot::UnpackOptions::overlay_layer(),
        )
        .map_err(|e| StoreError::Unpack {
            layer: layer.digest.clone(),
            message: e.to_string(),
        })?;
        let (actual, _) = hashing
            .drain_and_finish()
            .at(&self.blob_path(&layer.digest))?;
        if actual != *diff_id {
            return Err(StoreError::DigestMismatch {
                what: format!("uncompressed layer {}", layer.digest),
                expected: diff_id.clone(),
                actual,
            });
        }
        match fs::rename(&tree, &dest) {
            Ok(()) => {}
            // Someone else finished first: theirs is as good as ours.
            Err(_) if dest.is_dir() => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: dest,
                    source: e,
                })
            }
        }
        super::sync_dir(&snaps)?;
        Ok((dest, report.warnings))
    }

    /// Unpack every layer of `img` (bottom first) and return the snapshot directories in
    /// that order; reverse them for overlayfs's `lowerdir=` (top first).
    pub fn ensure_image_unpacked(&self, img: &ImageRecord) -> Result<Vec<PathBuf>> {
        let diff_ids = &img.config.rootfs.diff_ids;
        if diff_ids.len() != img.manifest.layers.len() {
            return Err(StoreError::Unsupported(format!(
                "image {} is inconsistent: {} layers in the manifest, {} diff IDs in the config",
                img.id,
                img.manifest.layers.len(),
                diff_ids.len()
            )));
        }
        img.manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| self.ensure_unpacked(l, d))
            .collect()
    }

    /// Make `dir` the snapshot of `diff_id` by renaming it into place (it must be on the
    /// store's file system, e.g. under [`Store::tmp_dir`], and be in overlay-lowerdir form:
    /// an overlay upper dir after a RUN is). If the snapshot exists already, `dir` is
    /// removed. Saves re-unpacking a layer the builder just wrote.
    pub fn adopt_snapshot(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf> {
        let dest = self.snapshot_dir(diff_id);
        if !dest.is_dir() {
            match fs::rename(dir, &dest) {
                Ok(()) => {
                    super::sync_dir(&self.snapshots_dir())?;
                    return Ok(dest);
                }
                Err(_) if dest.is_dir() => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        path: dest,
                        source: e,
                    })
                }
            }
        }
        fs::remove_dir_all(dir).at(dir)?;
        Ok(dest)
    }
}
