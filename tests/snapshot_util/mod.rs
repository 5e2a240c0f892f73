//! Helpers shared by the snapshot tests: tree descriptions and hand-made (malicious) tars.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// One line per entry below `root` (sorted): path, type, mode, owner, mtime, content/target,
/// portable xattrs, and the first path of its hardlink group.
pub fn describe(root: &Path) -> Vec<String> {
    describe_opts(root, true)
}

pub fn describe_opts(root: &Path, with_dir_mtime: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut groups: HashMap<(u64, u64), String> = HashMap::new();
    walk(root, root, &mut out, &mut groups, with_dir_mtime);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
    groups: &mut HashMap<(u64, u64), String>,
    dmt: bool,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let (kind, extra) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&p).unwrap().display().to_string())
        } else if ft.is_file() {
            ("file", hex::encode(Sha256::digest(fs::read(&p).unwrap())))
        } else if ft.is_char_device() {
            ("char", format!("{}", md.rdev()))
        } else if ft.is_block_device() {
            ("block", format!("{}", md.rdev()))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("other", String::new())
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .map(|l| {
                l.filter_map(|n| n.to_str().map(str::to_owned))
                    .filter(|n| !n.starts_with("security.selinux"))
                    .map(|n| {
                        let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                        format!("{n}={}", String::from_utf8_lossy(&v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let group = if !ft.is_dir() && md.nlink() > 1 {
            groups
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            String::new()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            md.mode() & 0o7777
        };
        let mtime = if ft.is_dir() && !dmt { 0 } else { md.mtime() };
        out.push(format!(
            "{rel} {kind} {mode:o} {}:{} t={mtime} {extra} [{}] {group}",
            md.uid(),
            md.gid(),
            xattrs.join(",")
        ));
        if ft.is_dir() {
            walk(root, &p, out, groups, dmt);
        }
    }
}

/// A tar entry for [`raw_tar`]: any name, any link target, no validation.
pub struct Raw<'a> {
    pub name: &'a [u8],
    pub kind: tar::EntryType,
    pub data: &'a [u8],
    pub link: Option<&'a [u8]>,
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        data,
        link: None,
    }
}
pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Directory,
        data: b"",
        link: None,
    }
}
pub fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Symlink,
        data: b"",
        link: Some(target.as_bytes()),
    }
}
pub fn hardlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Link,
        data: b"",
        link: Some(target.as_bytes()),
    }
}

/// Writes entries with exactly these names (the tar crate's builder would refuse `..` or `/`).
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        if let Some(l) = e.link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(e.data.len() as u64);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Every path below `dir` (to check nothing appeared outside a destination).
pub fn all_paths(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string()
        })
        .collect()
}
