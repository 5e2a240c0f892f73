//! `ADD <http(s) URL> <dest>`: download, verify, and keep the file for the next build.
//!
//! As BuildKit: the file is named after the last segment of the URL's path (`__unnamed__`
//! when there is none), has mode 0600 unless `--chmod` says otherwise, is not extracted
//! (unless `--unpack=true`), and `--checksum=sha256:...` must match its content. Its content
//! digest is part of the step's key, so a changed file re-runs the step.
//!
//! Downloads live in `<root>/downloads/`: `<sha256>` holds a file's content (written to a
//! temp file, fsynced, renamed), `url-<sha256 of the URL>.json` the URL's last `ETag`,
//! `Last-Modified` and content digest. The next build asks with `If-None-Match` /
//! `If-Modified-Since` and, on `304 Not Modified`, reuses the file without reading the body;
//! with `--checksum` and the content already here, it does not ask at all.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::checksum::Checksum;

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Download {
    /// Its content in the store (`<root>/downloads/<sha256>`).
    pub path: PathBuf,
    /// The file name it gets in the image.
    pub name: String,
}

/// What the store remembers of a URL.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UrlRecord {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: String,
}

/// The file name BuildKit gives a download: the last segment of the URL's decoded path
/// (`sp%20ace.txt` → `sp ace.txt`).
pub fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = percent_decode(path).unwrap_or_else(|| path.to_string());
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(n) if !n.is_empty() && n != "." && n != ".." => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// `%XX` escapes decoded; `None` when that is not UTF-8 or would hold a NUL.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|d| !d.contains('\0'))
}

/// Download `url` into `dir` (or reuse what is there), checking `checksum` if given.
/// `cancelled` is polled between chunks.
pub fn fetch(dir: &Path, url: &str, checksum: Option<&Checksum>, cancelled: &dyn Fn() -> bool) -> Result<Download, String> {
    let name = file_name(url);
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some(c) = checksum.filter(|c| c.algo == "sha256") {
        let p = dir.join(&c.hex);
        if p.is_file() {
            return Ok(Download { path: p, name });
        }
    }
    let rec_path = dir.join(format!("url-{}.json", hex::encode(Sha256::digest(url.as_bytes()))));
    let known: Option<UrlRecord> = fs::read(&rec_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<UrlRecord>(&b).ok())
        .filter(|r| r.url == url && dir.join(r.digest.trim_start_matches("sha256:")).is_file());

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(k) = &known {
        if let Some(e) = &k.etag {
            req = req.header("If-None-Match", e);
        }
        if let Some(m) = &k.last_modified {
            req = req.header("If-Modified-Since", m);
        }
    }
    let resp = req.call().map_err(|e| format!("downloading {url}: {e}"))?;
    let status = resp.status().as_u16();
    if status == 304 {
        if let Some(k) = known {
            let path = dir.join(k.digest.trim_start_matches("sha256:"));
            if let Some(c) = checksum {
                c.verify_file(&path, url)?;
            }
            return Ok(Download { path, name });
        }
    }
    if !(200..300).contains(&status) {
        return Err(format!("downloading {url}: the server answered {status} {}", resp.status().canonical_reason().unwrap_or("")));
    }
    let header = |h: &str| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (etag, last_modified) = (header("etag"), header("last-modified"));
    let mut body = resp.into_body().into_reader();
    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut h = Sha256::new();
    let mut check = checksum.filter(|c| c.algo != "sha256").map(Checksum::hasher);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if cancelled() {
            return Err("cancelled".into());
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("downloading {url}: {e}")),
        };
        h.update(&buf[..n]);
        if let Some(c) = &mut check {
            c.update(&buf[..n]);
        }
        tmp.write_all(&buf[..n]).map_err(|e| format!("writing the download of {url}: {e}"))?;
    }
    let sha256 = h.finalize();
    if let Some(c) = checksum {
        c.verify(&check.map_or_else(|| sha256.to_vec(), |h| h.finalize().to_vec()), url)?;
    }
    let hex = hex::encode(sha256);
    tmp.as_file().sync_all().map_err(|e| format!("writing the download of {url}: {e}"))?;
    let path = dir.join(&hex);
    // Never replace a file that is there: it has this content, and a build running beside
    // this one may be reading it.
    match tmp.persist_noclobber(&path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {}", path.display(), e.error)),
    }
    let rec = UrlRecord { url: url.to_string(), etag, last_modified, digest: format!("sha256:{hex}") };
    if rec.etag.is_some() || rec.last_modified.is_some() {
        // Only a hint for the next build: a failure to write it costs a download, nothing else.
        let _ = write_atomic(&rec_path, &serde_json::to_vec(&rec).unwrap_or_default());
    }
    Ok(Download { path, name })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut t = tempfile::NamedTempFile::new_in(dir)?;
    t.write_all(bytes)?;
    t.as_file().sync_all()?;
    t.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_buildkit() {
        assert_eq!(file_name("https://example.com/a/b/tool.tar.gz"), "tool.tar.gz");
        assert_eq!(file_name("https://example.com/a/b/tool?x=1#f"), "tool");
        assert_eq!(file_name("https://example.com/dir/"), "dir");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("http://h:8080/x"), "x");
        assert_eq!(file_name("http://h/sp%20ace.txt"), "sp ace.txt");
        assert_eq!(file_name("http://h/a%2Fb"), "b");
        assert_eq!(file_name("http://h/bad%zz"), "bad%zz");
        assert_eq!(file_name("http://h/nul%00"), "nul%00");
    }
}
