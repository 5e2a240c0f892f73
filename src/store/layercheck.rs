//! Safety checks on layer tar entries before a layer is accepted into the store, and the
//! uncompressed digest (diff ID) computed on the way.
//!
//! Refused: absolute paths, `..` components, an entry written through a symlink that the
//! same layer created (`evil -> /etc`, then `evil/passwd`), hard links that are absolute,
//! leave the root, or go through such a symlink. Device nodes and fifos are accepted (the
//! unpacker skips them with a warning where it may not create them).

use std::collections::HashSet;
use std::io::Read;

use super::{Digest, HashingReader, StoreError};

/// What a layer check learned.
#[derive(Debug, Clone)]
pub(crate) struct LayerInfo {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
}

/// Normalised relative path of an entry, or the reason it is unsafe.
pub(crate) fn clean_path(raw: &[u8]) -> Result<String, &'static str> {
    let s = std::str::from_utf8(raw).map_err(|_| "path is not UTF-8")?;
    if s.starts_with('/') {
        return Err("absolute path");
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("path leaves the root (..)"),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn through_symlink<'a>(path: &'a str, symlinks: &HashSet<String>) -> Option<&'a str> {
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i;
        let prefix = &path[..end];
        if symlinks.contains(prefix) {
            return Some(prefix);
        }
        end += 1;
    }
    None
}

/// Read a whole (uncompressed) layer tar, checking every entry; returns its digest.
pub(crate) fn check_layer(r: impl Read, layer: &str) -> Result<LayerInfo, StoreError> {
    let mut hashing = HashingReader::new(r);
    let mut last_end = 0u64;
    {
        let mut ar = tar::Archive::new(&mut hashing);
        let bad_tar = |e: std::io::Error| StoreError::BadArchive {
            file: format!("layer {layer}"),
            reason: format!(
                "not a valid tar stream (truncated or corrupt?): {}",
                super::one_line(&e.to_string())
            ),
        };
        let mut symlinks: HashSet<String> = HashSet::new();
        for entry in ar.entries().map_err(bad_tar)? {
            let entry = entry.map_err(bad_tar)?;
            last_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
            let raw = entry.path_bytes();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let unsafe_entry = |reason: String| StoreError::UnsafeEntry {
                layer: layer.to_string(),
                entry: shown.clone(),
                reason,
            };
            let path = clean_path(&raw).map_err(|r| unsafe_entry(r.to_string()))?;
            if let Some(link) = through_symlink(&path, &symlinks) {
                return Err(unsafe_entry(format!(
                    "written through the symlink {link} of the same layer"
                )));
            }
            let kind = entry.header().entry_type();
            if kind.is_hard_link() {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = clean_path(&target).map_err(|r| {
                    unsafe_entry(format!(
                        "hard link to {}: {r}",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                if through_symlink(&target, &symlinks).is_some() {
                    return Err(unsafe_entry(format!(
                        "hard link to {target} goes through a symlink"
                    )));
                }
            }
            if kind.is_symlink() {
                symlinks.insert(path);
            } else {
                symlinks.remove(&path);
            }
        }
    }
    // The tar crate takes a clean EOF at a header boundary for the end; a real archive
    // ends with a zero block, so a stream without one was cut short.
    if hashing.bytes_read() == 0 {
        return Err(StoreError::BadArchive {
            file: format!("layer {layer}"),
            reason: "empty, not a tar archive".into(),
        });
    }
    if hashing.bytes_read() < last_end + 512 {
        return Err(StoreError::BadArchive {
            file: format!("layer {layer}"),
            reason: "truncated tar stream (no end-of-archive marker)".into(),
        });
    }
    let (diff_id, size) = hashing
        .drain_and_finish()
        .map_err(|e| StoreError::BadArchive {
            file: format!("layer {layer}"),
            reason: format!("read error: {}", super::one_line(&e.to_string())),
        })?;
    Ok(LayerInfo { diff_id, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_and_refuses_paths() {
        assert_eq!(clean_path(b"./a//b/").unwrap(), "a/b");
        assert_eq!(clean_path(b"./").unwrap(), "");
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../x").is_err());
        let s: HashSet<String> = ["a/l".to_string()].into();
        assert_eq!(through_symlink("a/l/x", &s), Some("a/l"));
        assert_eq!(through_symlink("a/l", &s), None);
        assert_eq!(through_symlink("a/lx/y", &s), None);
    }
}
