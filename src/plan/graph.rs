//! Small helpers over the stage graph that [`crate::plan::stages`] builds: stage lookup by
//! name or index, this machine's architecture, remote ADD sources.

use crate::dockerfile::ast::Source;
use crate::dockerfile::Dockerfile;

/// This machine's architecture in OCI terms (`amd64`, `arm64`, ...).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Resolve a `--from` value to a stage: by name (case-insensitive; the last stage of that
/// name) or by index. `None` means it names an image.
pub fn stage_by_name(df: &Dockerfile, name: &str) -> Option<usize> {
    if let Some(i) = df.stages.iter().rposition(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name))) {
        return Some(i);
    }
    match name.parse::<usize>() {
        Ok(i) if i < df.stages.len() => Some(i),
        _ => None,
    }
}

/// True for an ADD/COPY source that is a URL (`http://`, `https://`) or a git address.
pub fn is_remote_source(s: &Source) -> bool {
    match s {
        Source::Path(p) => is_http_source(p) || is_git_source(p),
        Source::Heredoc(_) => false,
    }
}

/// An `http://` or `https://` URL that is not a git repository.
pub fn is_http_source(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    (l.starts_with("http://") || l.starts_with("https://")) && !is_git_source(p)
}

/// A git repository (BuildKit's forms): `git@host:path`, `git://...`, `ssh://...`, or an
/// http(s) URL whose path ends in `.git` (optionally followed by `#ref[:subdir]`).
pub fn is_git_source(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    if l.starts_with("git@") || l.starts_with("git://") || l.starts_with("ssh://") {
        return true;
    }
    let url = l.split('#').next().unwrap_or("");
    (l.starts_with("http://") || l.starts_with("https://")) && url.split('?').next().unwrap_or("").trim_end_matches('/').ends_with(".git")
}
