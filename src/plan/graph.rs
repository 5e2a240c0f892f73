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
        Source::Path(p) => {
            let p = p.to_ascii_lowercase();
            p.starts_with("http://") || p.starts_with("https://") || p.starts_with("git@")
        }
        Source::Heredoc(_) => false,
    }
}
