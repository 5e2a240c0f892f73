//! `load`, `save` and `import`: image archives in and out of the store.
//!
//! Load stages every regular file of the archive under `<root>/tmp/load-*` (hashing it on
//! the way), then checks everything — JSON documents, every digest and size, every layer's
//! entries and diff ID — before the first blob enters the store. A bad archive leaves the
//! store as it was. Formats, detected by content: docker-archive (`docker save`:
//! `manifest.json`, `repositories`, `<id>/layer.tar` or `blobs/sha256/*`) and OCI archives
//! (a tar of an OCI image layout), each plain or gzip-compressed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::images::{entry_reference, host_arch, pick_platform};
use super::layercheck::{check_layer, clean_path, LayerInfo};
use super::types::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_LAYOUT};
use super::{
    media, ContainerConfig, Descriptor, Digest, History, ImageConfig, ImageRecord, Index,
    IoContext, Manifest, Reference, Result, RootFs, Store, StoreError,
};

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format: manifest.json + repositories + `<diffid>/layer.tar`.
    Docker,
    /// OCI image layout in a tar.
    Oci,
}

/// One image that `load` stored.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Image ID (config digest).
    pub id: Digest,
    /// The manifest stored for it.
    pub manifest: Descriptor,
    /// The tags it got.
    pub tags: Vec<Reference>,
}

/// What `load` did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// The images, in archive order.
    pub images: Vec<LoadedImage>,
    /// Things worth telling the user (names that did not parse, ...).
    pub warnings: Vec<String>,
}

/// A reader yielding the tar inside `r`: gunzipped when it starts with the gzip magic.
pub(crate) fn decompressed<'a, R: BufRead + 'a>(
    mut r: R,
    what: &str,
) -> Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf().map_err(|e| StoreError::BadArchive {
        file: what.to_string(),
        reason: e.to_string(),
    })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(StoreError::Unsupported(format!(
            "{what}: zstd-compressed layers are not supported yet"
        )))
    } else {
        Ok(Box::new(r))
    }
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut head = [0u8; 2];
    let mut f = File::open(path).at(path)?;
    let n = f.read(&mut head).at(path)?;
    Ok(n == 2 && head == [0x1f, 0x8b])
}

struct StagedFile {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

/// The regular files of an archive, copied under the store's tmp dir.
struct Staged {
    _dir: StagingDir,
    files: HashMap<String, StagedFile>,
    /// Symlinks and hard links, resolved lexically inside the archive: name → target.
    links: HashMap<String, String>,
    /// Links whose target leaves the archive: name → the raw target.
    outside: HashMap<String, String>,
    archive: String,
}

/// A staging directory under `<root>/tmp/` with a `.lease` file flock'd for as long as it
/// lives: `prune` removes the ones whose lease nobody holds (left by a killed process).
pub(crate) struct StagingDir {
    // Dropped first: the directory goes, then the lock.
    dir: tempfile::TempDir,
    _lease: nix::fcntl::Flock<File>,
}

/// Name of the lease file in a staging dir.
pub(crate) const STAGING_LEASE: &str = ".lease";

impl StagingDir {
    pub(crate) fn new(store: &Store, prefix: &str) -> Result<StagingDir> {
        let tmp = store.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .at(&tmp)?;
        let path = dir.path().join(STAGING_LEASE);
        let f = File::create(&path).at(&path)?;
        let lease = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::Io {
                path,
                source: io::Error::from(e),
            })?;
        Ok(StagingDir { dir, _lease: lease })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `target` of a link at `name`, resolved lexically against the link's directory (a symlink)
/// or the archive root (a hard link, or an absolute symlink target); `None` when it leaves
/// the archive.
fn resolve_link(name: &str, target: &str, symlink: bool) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if symlink && !target.starts_with('/') {
        if let Some((parent, _)) = name.rsplit_once('/') {
            parts.extend(parent.split('/').filter(|c| !c.is_empty() && *c != "."));
        }
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Staged {
    fn bad(&self, reason: impl Into<String>) -> StoreError {
        StoreError::BadArchive {
            file: self.archive.clone(),
            reason: reason.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&StagedFile> {
        let mut name = clean_path(name.as_bytes()).ok()?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&name) {
                return Some(f);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn need(&self, name: &str, what: &str) -> Result<&StagedFile> {
        if let Some(f) = self.get(name) {
            return Ok(f);
        }
        let clean = clean_path(name.as_bytes()).unwrap_or_else(|_| name.to_string());
        if let Some(t) = self.outside.get(&clean) {
            return Err(self.bad(format!(
                "{what} {name} is a link to {t:?}, which points outside the archive; refusing it"
            )));
        }
        if let Some(t) = self.links.get(&clean) {
            return Err(self.bad(format!(
                "{what} {name} is a link to {t}, which is missing from the archive"
            )));
        }
        Err(self.bad(format!("{what} {name} is missing from the archive")))
    }

    fn blob(&self, d: &Descriptor, what: &str) -> Result<&StagedFile> {
        let f = self
            .get(&format!("blobs/sha256/{}", d.digest.hex()))
            .ok_or_else(|| {
                self.bad(format!(
                    "{what} names blob {} which is missing from the archive",
                    d.digest
                ))
            })?;
        if f.digest != d.digest {
            return Err(self.bad(format!(
                "blob {} has digest {} (corrupt archive)",
                d.digest, f.digest
            )));
        }
        if f.size != d.size {
            return Err(self.bad(format!(
                "blob {} is {} bytes, its descriptor says {}",
                d.digest, f.size, d.size
            )));
        }
        Ok(f)
    }

    fn read(&self, f: &StagedFile) -> Result<Vec<u8>> {
        if f.size > 16 << 20 {
            return Err(self.bad(format!("{} is too large for a JSON document", f.digest)));
        }
        fs::read(&f.path).at(&f.path)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, bytes: &[u8], what: &str) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.bad(format!("{what}: invalid JSON: {e}")))
    }
}

/// An image checked and ready to enter the store.
struct Plan {
    adopt: Vec<(PathBuf, Digest)>,
    json: Vec<(String, Vec<u8>)>,
    manifest: Descriptor,
    id: Digest,
    tags: Vec<Reference>,
    /// (diff ID, uncompressed size) of each layer, known from the check.
    layer_sizes: Vec<(Digest, u64)>,
}

#[derive(Deserialize, Serialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

impl Store {
    /// Load a docker-archive or OCI archive (plain or gzip). Every digest is verified and
    /// every layer checked before anything is stored.
    pub fn load_archive(&self, path: &Path) -> Result<LoadReport> {
        let f = File::open(path).at(path)?;
        self.load_from(f, &path.display().to_string())
    }

    /// [`Store::load_archive`] from a stream (`rbuild load` without `-i` reads stdin);
    /// `name` names it in errors.
    pub fn load_from(&self, input: impl Read, name: &str) -> Result<LoadReport> {
        self.load_from_cancellable(input, name, &|| false)
    }

    /// [`Store::load_from`] that stops (with [`StoreError::Cancelled`], the store unchanged,
    /// the staging dir removed) as soon as `cancelled()` says so. All tags are added in one
    /// update of the index at the very end: all of them or none.
    pub fn load_from_cancellable(
        &self,
        input: impl Read,
        name: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<LoadReport> {
        let _lease = self.lease()?;
        let staged = self.stage(input, name, cancelled)?;
        let stop = || -> Result<()> {
            if cancelled() {
                Err(StoreError::Cancelled(name.to_string()))
            } else {
                Ok(())
            }
        };
        stop()?;
        let mut report = LoadReport::default();
        let plans = if staged.get("manifest.json").is_some() {
            self.plan_docker(&staged, &mut report.warnings, &stop)?
        } else if staged.get("index.json").is_some() {
            self.plan_oci(&staged, &mut report.warnings, &stop)?
        } else {
            return Err(staged.bad("not an image archive: it has neither manifest.json (docker save) nor index.json (OCI)"));
        };
        if plans.is_empty() {
            return Err(staged.bad("the archive holds no images"));
        }
        for p in &plans {
            stop()?;
            for (diff_id, size) in &p.layer_sizes {
                self.record_layer_size(diff_id, *size)?;
            }
            for (file, digest) in &p.adopt {
                if file.exists() {
                    self.adopt_verified_file(file, digest)?;
                }
            }
            for (mt, bytes) in &p.json {
                self.put_blob(mt, bytes)?;
            }
        }
        // Blobs without a tag are prune's to take; the tags are all-or-nothing.
        stop()?;
        let all: Vec<(Descriptor, Vec<Reference>)> = plans
            .iter()
            .map(|p| (p.manifest.clone(), p.tags.clone()))
            .collect();
        self.add_images(&all)?;
        for p in plans {
            report.images.push(LoadedImage {
                id: p.id,
                manifest: p.manifest,
                tags: p.tags,
            });
        }
        Ok(report)
    }

    fn stage(&self, input: impl Read, name: &str, cancelled: &dyn Fn() -> bool) -> Result<Staged> {
        let archive = name.to_string();
        let bad = |reason: String| StoreError::BadArchive {
            file: archive.clone(),
            reason,
        };
        let input = CancelRead {
            inner: input,
            cancelled,
        };
        let reader = decompressed(BufReader::with_capacity(256 << 10, input), &archive)?;
        let dir = StagingDir::new(self, "load-")?;
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let mut outside = HashMap::new();
        let mut ar = tar::Archive::new(Counting {
            inner: reader,
            count: 0,
        });
        let mut last_end = 0u64;
        let not_tar = |e: io::Error| {
            if cancelled() {
                return StoreError::Cancelled(archive.clone());
            }
            bad(format!(
                "not a valid tar archive (truncated or corrupt?): {}",
                super::one_line(&e.to_string())
            ))
        };
        let mut n = 0usize;
        for entry in ar.entries().map_err(not_tar)? {
            if cancelled() {
                return Err(StoreError::Cancelled(archive.clone()));
            }
            let mut entry = entry.map_err(not_tar)?;
            n += 1;
            last_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            let raw = entry.path_bytes().into_owned();
            let name = clean_path(&raw).map_err(|r| {
                bad(format!(
                    "archive entry {:?}: {r}",
                    String::from_utf8_lossy(&raw)
                ))
            })?;
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let dest = dir.path().join(n.to_string());
                let out = File::create(&dest).at(&dest)?;
                let mut w = super::HashingWriter::new(BufWriter::with_capacity(256 << 10, out));
                io::copy(&mut entry, &mut w).map_err(not_tar)?;
                let (digest, size, mut out) = w.into_parts();
                out.flush().at(&dest)?;
                files.insert(
                    name,
                    StagedFile {
                        path: dest,
                        digest,
                        size,
                    },
                );
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target = String::from_utf8_lossy(&target).into_owned();
                // Docker < 25 writes a duplicate layer as `bbb/layer.tar -> ../aaa/layer.tar`.
                match resolve_link(&name, &target, kind.is_symlink()) {
                    Some(t) => {
                        links.insert(name, t);
                    }
                    None => {
                        outside.insert(name, target);
                    }
                }
            }
        }
        if n == 0 {
            return Err(bad("not an image archive: empty, or not a tar file".into()));
        }
        if ar.into_inner().count < last_end + 512 {
            return Err(bad(
                "truncated archive (it ends without the tar end-of-archive marker)".into(),
            ));
        }
        Ok(Staged {
            _dir: dir,
            files,
            links,
            outside,
            archive,
        })
    }

    /// Check a staged layer file; returns its info and whether it is gzip.
    fn check_staged_layer(&self, f: &StagedFile, name: &str) -> Result<(LayerInfo, bool)> {
        let gz = is_gzip(&f.path)?;
        let file = File::open(&f.path).at(&f.path)?;
        let r = decompressed(BufReader::with_capacity(256 << 10, file), name)?;
        Ok((check_layer(r, name)?, gz))
    }

    fn plan_docker(
        &self,
        staged: &Staged,
        warnings: &mut Vec<String>,
        stop: &dyn Fn() -> Result<()>,
    ) -> Result<Vec<Plan>> {
        let mf = staged.need("manifest.json", "file")?;
        let entries: Vec<DockerManifestEntry> = staged.json(&staged.read(mf)?, "manifest.json")?;
        let mut plans = Vec::new();
        for e in entries {
            let cf = staged.need(&e.config, "config")?;
            let config_bytes = staged.read(cf)?;
            let config: ImageConfig = staged.json(&config_bytes, &e.config)?;
            if config.rootfs.diff_ids.len() != e.layers.len() {
                return Err(staged.bad(format!(
                    "{}: the config lists {} layers, manifest.json {}",
                    e.config,
                    config.rootfs.diff_ids.len(),
                    e.layers.len()
                )));
            }
            let mut adopt = vec![(cf.path.clone(), cf.digest.clone())];
            let mut layers = Vec::new();
            let mut layer_sizes = Vec::new();
            for (name, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
                stop()?;
                let lf = staged.need(name, "layer")?;
                let (info, gz) = self.check_staged_layer(lf, name)?;
                if info.diff_id != *diff_id {
                    return Err(StoreError::DigestMismatch {
                        what: format!("layer {name} of {}", staged.archive),
                        expected: diff_id.clone(),
                        actual: info.diff_id,
                    });
                }
                let mt = if gz {
                    media::OCI_LAYER_GZIP
                } else {
                    media::OCI_LAYER_TAR
                };
                layer_sizes.push((info.diff_id.clone(), info.size));
                layers.push(Descriptor::new(mt, lf.digest.clone(), lf.size));
                adopt.push((lf.path.clone(), lf.digest.clone()));
            }
            let config_desc = Descriptor::new(media::OCI_CONFIG, cf.digest.clone(), cf.size);
            let manifest = Manifest::new(config_desc, layers);
            let bytes = serde_json::to_vec(&manifest).map_err(|source| StoreError::Json {
                what: "new manifest".into(),
                source,
            })?;
            let manifest_desc = Descriptor::new(
                media::OCI_MANIFEST,
                Digest::of_bytes(&bytes),
                bytes.len() as u64,
            );
            let mut tags = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                match Reference::parse(&t) {
                    Ok(r) if r.digest().is_none() => tags.push(r),
                    _ => warnings.push(format!("ignoring the name {t:?}: not a valid name:tag")),
                }
            }
            plans.push(Plan {
                adopt,
                json: vec![(media::OCI_MANIFEST.to_string(), bytes)],
                manifest: manifest_desc,
                id: cf.digest.clone(),
                tags,
                layer_sizes,
            });
        }
        Ok(plans)
    }

    fn plan_oci(
        &self,
        staged: &Staged,
        warnings: &mut Vec<String>,
        stop: &dyn Fn() -> Result<()>,
    ) -> Result<Vec<Plan>> {
        let idx_file = staged.need("index.json", "file")?;
        let index: Index = staged.json(&staged.read(idx_file)?, "index.json")?;
        // Entries naming the same manifest become one image with several tags.
        let mut plans: Vec<Plan> = Vec::new();
        for entry in &index.manifests {
            let mut desc = entry.clone();
            let mut depth = 0;
            while media::is_index(&desc.media_type) {
                depth += 1;
                let f = staged.blob(&desc, "index.json")?;
                let nested: Index =
                    staged.json(&staged.read(f)?, &format!("index {}", desc.digest))?;
                desc = pick_platform(&nested.manifests)
                    .ok_or_else(|| {
                        staged.bad(format!("index {} has no image manifest", desc.digest))
                    })?
                    .clone();
                if depth > 4 {
                    return Err(staged.bad("indexes nested too deeply"));
                }
            }
            if !media::is_manifest(&desc.media_type) {
                warnings.push(format!(
                    "skipping {} of type {}",
                    desc.digest, desc.media_type
                ));
                continue;
            }
            let tag = entry_reference(entry);
            if tag.is_none() {
                for key in [ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME] {
                    if let Some(n) = entry.annotations.get(key) {
                        warnings.push(format!("ignoring the name {n:?}: not a valid name:tag"));
                    }
                }
            }
            if let Some(p) = plans.iter_mut().find(|p| p.manifest.digest == desc.digest) {
                p.tags.extend(tag.filter(|t| t.digest().is_none()));
                continue;
            }
            let mf = staged.blob(&desc, "index.json")?;
            let manifest: Manifest =
                staged.json(&staged.read(mf)?, &format!("manifest {}", desc.digest))?;
            let cf = staged.blob(&manifest.config, &format!("manifest {}", desc.digest))?;
            let config: ImageConfig =
                staged.json(&staged.read(cf)?, &format!("config {}", cf.digest))?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(staged.bad(format!(
                    "config {} lists {} layers, manifest {} has {}",
                    cf.digest,
                    config.rootfs.diff_ids.len(),
                    desc.digest,
                    manifest.layers.len()
                )));
            }
            let mut adopt = vec![
                (mf.path.clone(), mf.digest.clone()),
                (cf.path.clone(), cf.digest.clone()),
            ];
            let mut layer_sizes = Vec::new();
            for (l, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                stop()?;
                if l.media_type == media::OCI_LAYER_ZSTD {
                    return Err(StoreError::Unsupported(format!(
                        "{}: layer {} is zstd-compressed, which is not supported yet",
                        staged.archive, l.digest
                    )));
                }
                let lf = staged.blob(l, &format!("manifest {}", desc.digest))?;
                let (info, _) = self.check_staged_layer(lf, l.digest.as_str())?;
                if info.diff_id != *diff_id {
                    return Err(StoreError::DigestMismatch {
                        what: format!("uncompressed layer {} of {}", l.digest, staged.archive),
                        expected: diff_id.clone(),
                        actual: info.diff_id,
                    });
                }
                layer_sizes.push((info.diff_id.clone(), info.size));
                adopt.push((lf.path.clone(), lf.digest.clone()));
            }
            plans.push(Plan {
                layer_sizes,
                adopt,
                json: Vec::new(),
                manifest: Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size),
                id: cf.digest.clone(),
                tags: tag.filter(|t| t.digest().is_none()).into_iter().collect(),
            });
        }
        Ok(plans)
    }

    /// `docker import`: make a one-layer image from a root file system tar (plain or gzip).
    /// The layer is stored gzip-compressed; the entries are checked like a loaded layer's.
    pub fn import_rootfs(
        &self,
        path: &Path,
        tag: Option<&Reference>,
        message: Option<&str>,
    ) -> Result<ImageRecord> {
        let name = path.display().to_string();
        let f = File::open(path).at(path)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.clone());
        self.import_from(f, &name, &file_name, tag, message)
    }

    /// [`Store::import_rootfs`] from a stream (`rbuild import - NAME` reads stdin): `name`
    /// names it in errors, `source` in the image's history.
    pub fn import_from(
        &self,
        input: impl Read,
        name: &str,
        source: &str,
        tag: Option<&Reference>,
        message: Option<&str>,
    ) -> Result<ImageRecord> {
        let _lease = self.lease()?;
        let name = name.to_string();
        let file_name = source.to_string();
        let input = decompressed(BufReader::with_capacity(256 << 10, input), &name)?;
        let writer = self.blob_writer()?.media_type(media::OCI_LAYER_GZIP);
        let mut gz = flate2::GzBuilder::new().write(writer, flate2::Compression::default());
        let info = check_layer(
            Tee {
                inner: input,
                out: &mut gz,
            },
            &name,
        )?;
        if info.size <= 1024 {
            return Err(StoreError::BadArchive {
                file: name,
                reason: "not a tar archive (empty)".into(),
            });
        }
        let writer = gz.finish().at(&self.ingest_dir())?;
        let layer = writer.commit(None)?;
        self.record_layer_size(&info.diff_id, info.size)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let config = ImageConfig {
            created: Some(now.clone()),
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
            config: Some(ContainerConfig::default()),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![info.diff_id],
            },
            history: vec![History {
                created: Some(now),
                created_by: Some(format!("rbuild import {file_name}")),
                comment: Some(
                    message
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("Imported from {file_name}")),
                ),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let config_desc = self.put_json_blob(media::OCI_CONFIG, &config)?;
        let manifest = Manifest::new(config_desc, vec![layer]);
        let manifest_desc = self.put_json_blob(media::OCI_MANIFEST, &manifest)?;
        let tags: Vec<Reference> = tag.into_iter().cloned().collect();
        self.add_image(&manifest_desc, &tags)?;
        let mut rec = self.image(&manifest_desc)?;
        rec.tags = tags;
        Ok(rec)
    }

    /// Write `names` (references or IDs) as an archive to `out`, atomically (temp file next
    /// to it, then rename).
    pub fn save_to_path(&self, names: &[String], format: ArchiveFormat, out: &Path) -> Result<()> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".rbuild-save-")
            .tempfile_in(&dir)
            .at(&dir)?;
        {
            let mut w = BufWriter::with_capacity(256 << 10, tmp.as_file_mut());
            self.save(names, format, &mut w)?;
            w.flush().at(out)?;
        }
        tmp.as_file().sync_all().at(out)?;
        // Temp files are 0600; the store is as readable as Docker's (blobs 0644).
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .at(out)?;
        tmp.persist(out).map_err(|e| StoreError::Io {
            path: out.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Write `names` (references or IDs) as a docker-archive (what `docker load` and
    /// `podman load` take) or an OCI archive to `out`.
    pub fn save(&self, names: &[String], format: ArchiveFormat, out: &mut dyn Write) -> Result<()> {
        let mut images: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
        let mut wanted: Vec<(ImageRecord, Option<Reference>)> = Vec::new();
        for n in names {
            // `save REPO` (no tag, no digest) saves every tag of the repository, as Docker does.
            if let Some(repo) = Reference::parse(n)
                .ok()
                .filter(|r| r.tag().is_none() && r.digest().is_none())
            {
                let all: Vec<(ImageRecord, Option<Reference>)> = self
                    .list_images()?
                    .into_iter()
                    .flat_map(|img| {
                        img.tags
                            .iter()
                            .filter(|t| t.domain() == repo.domain() && t.path() == repo.path())
                            .map(|t| (img.clone(), Some(t.clone())))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if !all.is_empty() {
                    wanted.extend(all);
                    continue;
                }
            }
            let img = self.resolve(n)?;
            // Saved by name: that name goes into the archive; by ID: no name, as Docker does.
            let tag = Reference::parse(n)
                .ok()
                .and_then(|r| img.tags.iter().find(|t| t.same_tag(&r)).cloned());
            wanted.push((img, tag));
        }
        for (img, tag) in wanted {
            match images.iter_mut().find(|(i, _)| i.id == img.id) {
                Some((_, tags)) => {
                    if let Some(t) = tag {
                        if !tags.iter().any(|x| x.same_tag(&t)) {
                            tags.push(t);
                        }
                    }
                }
                None => images.push((img, tag.into_iter().collect())),
            }
        }
        let mut tb = tar::Builder::new(out);
        let res = match format {
            ArchiveFormat::Docker => self.write_docker(&mut tb, &images),
            ArchiveFormat::Oci => self.write_oci(&mut tb, &images),
        };
        res?;
        tb.finish().at(Path::new("archive"))?;
        Ok(())
    }

    fn write_docker<W: Write>(
        &self,
        tb: &mut tar::Builder<W>,
        images: &[(ImageRecord, Vec<Reference>)],
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut written = std::collections::HashSet::new();
        for (img, tags) in images {
            let config_name = format!("{}.json", img.id.hex());
            if written.insert(config_name.clone()) {
                let bytes = self.read_blob(&img.id)?;
                append(tb, &config_name, bytes.len() as u64, &bytes[..])?;
            }
            let mut layer_names = Vec::new();
            for (l, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
                let name = format!("{}/layer.tar", diff_id.hex());
                if written.insert(name.clone()) {
                    append_dir(tb, &format!("{}/", diff_id.hex()))?;
                    self.append_uncompressed_layer(tb, &name, l)?;
                }
                layer_names.push(name);
            }
            for t in tags {
                if let (Some(top), Some(tag)) =
                    (img.config.rootfs.diff_ids.last(), t.tag_or_latest())
                {
                    repositories
                        .entry(t.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
            entries.push(DockerManifestEntry {
                config: config_name,
                repo_tags: if tags.is_empty() {
                    None
                } else {
                    Some(tags.iter().map(|t| t.familiar_tagged()).collect())
                },
                layers: layer_names,
            });
        }
        let manifest = to_json(&entries)?;
        append(tb, "manifest.json", manifest.len() as u64, &manifest[..])?;
        if !repositories.is_empty() {
            let repos = to_json(&repositories)?;
            append(tb, "repositories", repos.len() as u64, &repos[..])?;
        }
        Ok(())
    }

    fn append_uncompressed_layer<W: Write>(
        &self,
        tb: &mut tar::Builder<W>,
        name: &str,
        l: &Descriptor,
    ) -> Result<()> {
        let path = self.blob_path(&l.digest);
        if !is_gzip(&path)? {
            let f = self.open_blob(&l.digest)?;
            let size = f.metadata().at(&path)?.len();
            return append(tb, name, size, f);
        }
        let tmp = self.tmp_dir();
        let mut t = tempfile::tempfile_in(&tmp).at(&tmp)?;
        let r = decompressed(
            BufReader::new(self.open_blob(&l.digest)?),
            l.digest.as_str(),
        )?;
        let size = io::copy(&mut BufReader::new(r), &mut BufWriter::new(&mut t)).at(&path)?;
        t.rewind().at(&tmp)?;
        append(tb, name, size, t)
    }

    fn write_oci<W: Write>(
        &self,
        tb: &mut tar::Builder<W>,
        images: &[(ImageRecord, Vec<Reference>)],
    ) -> Result<()> {
        append(
            tb,
            "oci-layout",
            OCI_LAYOUT.len() as u64,
            OCI_LAYOUT.as_bytes(),
        )?;
        append_dir(tb, "blobs/")?;
        append_dir(tb, "blobs/sha256/")?;
        let mut index = Index::default();
        let mut written = std::collections::HashSet::new();
        for (img, tags) in images {
            // Built layers are stored as plain tars; they leave the machine gzipped, under a
            // manifest written for the archive (same config, so the same image ID).
            let mut layers = Vec::new();
            let mut stored_layers = Vec::new();
            let mut changed = false;
            for l in &img.manifest.layers {
                if l.media_type == media::OCI_LAYER_TAR && !is_gzip(&self.blob_path(&l.digest))? {
                    let (file, desc) = self.gzip_layer(l)?;
                    if written.insert(desc.digest.clone()) {
                        append(tb, &format!("blobs/sha256/{}", desc.digest.hex()), desc.size, file)?;
                    }
                    layers.push(desc);
                    changed = true;
                } else {
                    layers.push(l.clone());
                    stored_layers.push(l.digest.clone());
                }
            }
            let mut manifest_desc = img.manifest_desc.clone();
            let mut blobs = vec![img.id.clone()];
            if changed {
                let mut m = img.manifest.clone();
                m.layers = layers.clone();
                let bytes = to_json(&m)?;
                manifest_desc.digest = Digest::of_bytes(&bytes);
                manifest_desc.size = bytes.len() as u64;
                if written.insert(manifest_desc.digest.clone()) {
                    append(tb, &format!("blobs/sha256/{}", manifest_desc.digest.hex()), manifest_desc.size, &bytes[..])?;
                }
            } else {
                blobs.push(img.manifest_desc.digest.clone());
            }
            blobs.extend(stored_layers);
            for d in blobs {
                if written.insert(d.clone()) {
                    let f = self.open_blob(&d)?;
                    let size = f.metadata().at(&self.blob_path(&d))?.len();
                    append(tb, &format!("blobs/sha256/{}", d.hex()), size, f)?;
                }
            }
            if tags.is_empty() {
                index.manifests.push(manifest_desc.clone());
            }
            for t in tags {
                let mut e = manifest_desc.clone();
                e.annotations
                    .insert(ANNOTATION_REF_NAME.into(), t.familiar_tagged());
                e.annotations
                    .insert(ANNOTATION_IMAGE_NAME.into(), t.full_tagged());
                index.manifests.push(e);
            }
        }
        let bytes = serde_json::to_vec(&index).map_err(|source| StoreError::Json {
            what: "index.json".into(),
            source,
        })?;
        append(tb, "index.json", bytes.len() as u64, &bytes[..])
    }
}

impl Store {
    /// Gzip a plain layer blob into an unnamed temp file (deterministic header: no name,
    /// mtime 0); returns the file at its start and the gzip layer's descriptor.
    fn gzip_layer(&self, l: &Descriptor) -> Result<(File, Descriptor)> {
        use sha2::Digest as _;
        struct Hashing<W> {
            inner: W,
            hash: sha2::Sha256,
            size: u64,
        }
        impl<W: Write> Write for Hashing<W> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = self.inner.write(buf)?;
                self.hash.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                self.inner.flush()
            }
        }
        let tmp = self.tmp_dir();
        let mut t = tempfile::tempfile_in(&tmp).at(&tmp)?;
        let path = self.blob_path(&l.digest);
        let (hash, size) = {
            let out = Hashing { inner: BufWriter::new(&mut t), hash: sha2::Sha256::new(), size: 0 };
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, flate2::Compression::new(6));
            io::copy(&mut BufReader::with_capacity(256 << 10, self.open_blob(&l.digest)?), &mut gz).at(&path)?;
            let mut out = gz.finish().at(&path)?;
            out.flush().at(&tmp)?;
            (out.hash.finalize(), out.size)
        };
        t.rewind().at(&tmp)?;
        let digest = Digest::from_hex(&hex::encode(hash)).map_err(|e| StoreError::Unsupported(e.to_string()))?;
        let mut desc = l.clone();
        desc.media_type = media::OCI_LAYER_GZIP.to_string();
        desc.digest = digest;
        desc.size = size;
        Ok((t, desc))
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| StoreError::Json {
        what: "archive metadata".into(),
        source,
    })
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append<W: Write>(
    tb: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, size, 0o644);
    tb.append_data(&mut h, name, data).at(Path::new(name))
}

fn append_dir<W: Write>(tb: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    tb.append_data(&mut h, name, io::empty())
        .at(Path::new(name))
}

/// Fails reads once `cancelled()` says so (Ctrl-C during a load).
struct CancelRead<'a, R> {
    inner: R,
    cancelled: &'a dyn Fn() -> bool,
}

impl<R: Read> Read for CancelRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.cancelled)() {
            return Err(io::Error::other("interrupted"));
        }
        self.inner.read(buf)
    }
}

/// Counts what is read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Copies what is read through it into `out` (the import's gzip encoder).
struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}
