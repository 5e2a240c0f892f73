//! Tags and images: `index.json` entries, resolution of names and IDs.

use std::collections::BTreeMap;

use nix::fcntl::FlockArg;

use super::types::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::{
    media, Descriptor, Digest, ImageConfig, Index, IoContext, Manifest, Reference, Result, Store,
    StoreError,
};

/// One image: a manifest, its config, and the tags that point at it.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// Image ID: the config digest.
    pub id: Digest,
    /// The manifest's descriptor (as stored in index.json, without annotations).
    pub manifest_desc: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// Every tag pointing at this manifest, in index order (empty for a dangling image).
    pub tags: Vec<Reference>,
}

impl ImageRecord {
    /// Sum of the layer blob sizes (what the image occupies in the store).
    pub fn size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

/// The name an index entry carries, if any.
pub(crate) fn entry_reference(d: &Descriptor) -> Option<Reference> {
    if let Some(r) = d
        .annotations
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok())
    {
        return Some(r);
    }
    d.annotations
        .get(ANNOTATION_REF_NAME)
        .and_then(|n| Reference::parse(n).ok())
}

fn bare(desc: &Descriptor) -> Descriptor {
    Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size)
}

impl Store {
    /// Read `index.json` (no lock needed: it is only ever replaced by rename).
    pub fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    /// Read-modify-write `index.json` under the index lock.
    fn update_index<R>(&self, f: impl FnOnce(&mut Index) -> Result<R>) -> Result<R> {
        let _lock = self.lock_file("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        let r = f(&mut index)?;
        let bytes = serde_json::to_vec(&index).map_err(|source| StoreError::Json {
            what: "index.json".into(),
            source,
        })?;
        self.write_atomic(&self.index_path(), &bytes)?;
        Ok(r)
    }

    /// Point the tag `r` at `manifest` (moving it if it pointed elsewhere; the image it left
    /// stays as an untagged entry when nothing else names it, like Docker's dangling images).
    pub fn tag(&self, manifest: &Descriptor, r: &Reference) -> Result<()> {
        self.add_image(manifest, std::slice::from_ref(r))
    }

    /// Record an image with these tags. With no tags, the image is kept as an untagged
    /// entry (so a build without `-t` can be found by ID) unless it is tagged already.
    pub fn add_image(&self, manifest: &Descriptor, tags: &[Reference]) -> Result<()> {
        if !self.has_blob(&manifest.digest) {
            return Err(StoreError::MissingBlob(manifest.digest.clone()));
        }
        for r in tags {
            if r.tag_or_latest().is_none() {
                return Err(StoreError::Unsupported(format!(
                    "cannot tag {r}: a tag name is needed, not a digest (use name:tag)"
                )));
            }
        }
        let entry = bare(manifest);
        self.update_index(|index| {
            for r in tags {
                let mut displaced = None;
                index.manifests.retain(|d| match entry_reference(d) {
                    Some(old) if old.same_tag(r) => {
                        displaced = Some(bare(d));
                        false
                    }
                    _ => true,
                });
                let mut e = entry.clone();
                e.annotations
                    .insert(ANNOTATION_REF_NAME.into(), r.familiar_tagged());
                e.annotations
                    .insert(ANNOTATION_IMAGE_NAME.into(), r.full_tagged());
                index.manifests.push(e);
                if let Some(old) = displaced.filter(|o| o.digest != entry.digest) {
                    if !index.manifests.iter().any(|d| d.digest == old.digest) {
                        index.manifests.push(old);
                    }
                }
            }
            let tagged = index
                .manifests
                .iter()
                .any(|d| d.digest == entry.digest && entry_reference(d).is_some());
            if tagged {
                index
                    .manifests
                    .retain(|d| d.digest != entry.digest || entry_reference(d).is_some());
            } else if !index.manifests.iter().any(|d| d.digest == entry.digest) {
                index.manifests.push(entry.clone());
            }
            Ok(())
        })
    }

    /// Remove the tag `r`; returns the manifest it pointed at. The blobs stay until `prune`.
    pub fn untag(&self, r: &Reference) -> Result<Descriptor> {
        self.update_index(|index| {
            let pos = index
                .manifests
                .iter()
                .position(|d| entry_reference(d).is_some_and(|old| old.same_tag(r)))
                .ok_or_else(|| StoreError::NoSuchImage(r.to_string()))?;
            Ok(bare(&index.manifests.remove(pos)))
        })
    }

    /// Remove every index entry (tags and untagged) of the manifest `digest`; returns the
    /// tags removed.
    pub fn remove_image(&self, manifest_digest: &Digest) -> Result<Vec<Reference>> {
        self.update_index(|index| {
            let mut removed = Vec::new();
            index.manifests.retain(|d| {
                if d.digest == *manifest_digest {
                    removed.extend(entry_reference(d));
                    false
                } else {
                    true
                }
            });
            Ok(removed)
        })
    }

    /// Drop untagged index entries (dangling images); returns how many.
    pub(crate) fn drop_untagged(&self) -> Result<usize> {
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| entry_reference(d).is_some());
            Ok(before - index.manifests.len())
        })
    }

    /// Load the manifest and config behind a manifest (or index) descriptor. An index picks
    /// the manifest for this machine's platform.
    pub fn image(&self, desc: &Descriptor) -> Result<ImageRecord> {
        let mut desc = bare(desc);
        for _ in 0..4 {
            if !media::is_index(&desc.media_type) {
                break;
            }
            let idx: Index = self.read_json_blob(&desc.digest)?;
            desc = bare(pick_platform(&idx.manifests).ok_or_else(|| {
                StoreError::Unsupported(format!(
                    "index {} has no manifest for {}",
                    desc.digest,
                    host_platform()
                ))
            })?);
        }
        let manifest: Manifest = self.read_json_blob(&desc.digest)?;
        let config: ImageConfig = self.read_json_blob(&manifest.config.digest)?;
        Ok(ImageRecord {
            id: manifest.config.digest.clone(),
            manifest_desc: desc,
            manifest,
            config,
            tags: Vec::new(),
        })
    }

    /// Every image in the store, one record per manifest, tags gathered; index order.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let index = self.read_index()?;
        let mut order: Vec<Digest> = Vec::new();
        let mut by_digest: BTreeMap<Digest, (Descriptor, Vec<Reference>)> = BTreeMap::new();
        for d in &index.manifests {
            let e = by_digest.entry(d.digest.clone()).or_insert_with(|| {
                order.push(d.digest.clone());
                (bare(d), Vec::new())
            });
            if let Some(r) = entry_reference(d) {
                e.1.push(r);
            }
        }
        let mut out = Vec::new();
        for dg in order {
            if let Some((desc, tags)) = by_digest.remove(&dg) {
                let mut rec = self.image(&desc)?;
                rec.tags = tags;
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Find an image by reference (`app`, `app:1`, `docker.io/library/app:1`,
    /// `app@sha256:<manifest digest>`), by image ID (`sha256:<hex>`, a hex prefix as
    /// `images` shows it), or by manifest digest.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let images = self.list_images()?;
        if let Ok(r) = Reference::parse(name) {
            if let Some(d) = r.digest() {
                if let Some(img) = images.iter().find(|i| i.manifest_desc.digest == *d) {
                    return Ok(img.clone());
                }
            } else if let Some(img) = images
                .iter()
                .find(|i| i.tags.iter().any(|t| t.same_tag(&r)))
            {
                return Ok(img.clone());
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let mut found: Vec<&ImageRecord> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(&hex))
                .collect();
            if found.is_empty() {
                found = images
                    .iter()
                    .filter(|i| i.manifest_desc.digest.hex().starts_with(&hex))
                    .collect();
            }
            found.dedup_by(|a, b| a.id == b.id);
            match found.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ => return Err(StoreError::AmbiguousId(name.to_string())),
            }
        }
        if let Err(e) = Reference::parse(name) {
            if !name.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return Err(e.into());
            }
        }
        Err(StoreError::NoSuchImage(name.to_string()))
    }
}

/// `linux/amd64` etc. in OCI (Go) spelling.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

/// The manifest for this machine from an index, else the only/first manifest.
pub(crate) fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| media::is_manifest(&d.media_type) || media::is_index(&d.media_type))
        .filter(|d| !d.annotations.contains_key("vnd.docker.reference.type"))
        .collect();
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .or_else(|| candidates.first())
        .copied()
}
