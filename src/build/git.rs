//! `ADD <git repository> <dir>`: a checkout of a commit, with the `git` command.
//!
//! Forms (BuildKit's): `https://host/path.git[#REF[:SUBDIR]]`, `git@host:path[#...]`,
//! `git://...`, `ssh://...`. `REF` is a branch, a tag or a full commit id (default: the
//! remote's HEAD); `SUBDIR` a directory of the repository to copy instead of its root. The
//! ref is resolved to a commit with `git ls-remote` on every build, so a moved branch re-runs
//! the step; a `--checksum` must be that commit id. The checkout is kept in
//! `<root>/git/<commit>[-keep]` (written beside its name and renamed), without `.git` unless
//! `--keep-git-dir=true`, and the next build with the same commit reuses it without fetching.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What `git clone` takes.
    pub remote: String,
    /// Branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// A directory inside the repository, or empty.
    pub subdir: String,
}

impl GitRef {
    /// Split `remote#ref:subdir`.
    pub fn parse(src: &str) -> GitRef {
        let (remote, frag) = src.split_once('#').unwrap_or((src, ""));
        let (reference, subdir) = frag.split_once(':').unwrap_or((frag, ""));
        GitRef {
            remote: remote.to_string(),
            reference: reference.to_string(),
            subdir: subdir.trim_matches('/').to_string(),
        }
    }
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    c.args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true");
    let out = c.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "ADD from a git repository needs the git command on PATH (apt-get install git)".to_string()
        } else {
            format!("running git: {e}")
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(format!("git {}: {line}", args.first().copied().unwrap_or("")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `r` names now.
pub fn resolve(r: &GitRef) -> Result<String, String> {
    if is_commit_id(&r.reference) {
        return Ok(r.reference.to_ascii_lowercase());
    }
    let want = if r.reference.is_empty() { "HEAD" } else { r.reference.as_str() };
    // `want^{}` too: an annotated tag's line names the tag object, its peeled line the commit.
    let peeled = format!("{want}^{{}}");
    let out = git(&["ls-remote", "--", &r.remote, want, &peeled], None)?;
    // A peeled tag (`refs/tags/v1^{}`) names the commit; then the tag, the branch, HEAD.
    let lines: Vec<(&str, &str)> = out.lines().filter_map(|l| l.split_once('\t')).collect();
    let pick = |name: String| lines.iter().find(|(_, n)| *n == name).map(|(id, _)| id.to_string());
    pick(format!("refs/tags/{want}^{{}}"))
        .or_else(|| pick(format!("refs/tags/{want}")))
        .or_else(|| pick(format!("refs/heads/{want}")))
        .or_else(|| pick(want.to_string()))
        .ok_or_else(|| format!("{}: no branch or tag {want:?}", r.remote))
}

/// The checkout of `commit` (cached under `cache`); returns its directory.
pub fn checkout(cache: &Path, r: &GitRef, commit: &str, keep_git_dir: bool) -> Result<PathBuf, String> {
    let name = if keep_git_dir { format!("{commit}-keep") } else { commit.to_string() };
    let dir = cache.join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let tmp = tempfile::Builder::new().prefix(".clone-").tempdir_in(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let work = tmp.path().join("repo");
    let w = work.to_string_lossy().into_owned();
    // A shallow clone of the named branch or tag where the server allows it; else all of it.
    let shallow = !r.reference.is_empty()
        && !is_commit_id(&r.reference)
        && git(&["clone", "-q", "--depth", "1", "--branch", &r.reference, "--", &r.remote, &w], None).is_ok();
    if !shallow {
        let _ = std::fs::remove_dir_all(&work);
        git(&["clone", "-q", "--no-checkout", "--", &r.remote, &w], None)?;
    }
    git(&["-c", "advice.detachedHead=false", "checkout", "-q", commit], Some(&work))?;
    let head = git(&["rev-parse", "HEAD"], Some(&work))?;
    if head.trim() != commit {
        return Err(format!("{}: checked out {} instead of {commit}", r.remote, head.trim()));
    }
    if !keep_git_dir {
        std::fs::remove_dir_all(work.join(".git")).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    match std::fs::rename(&work, &dir) {
        Ok(()) => Ok(dir),
        // Another build got there first.
        Err(_) if dir.is_dir() => Ok(dir),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_as_buildkit() {
        let r = GitRef::parse("https://github.com/moby/buildkit.git#v0.10.1:docs/");
        assert_eq!((r.remote.as_str(), r.reference.as_str(), r.subdir.as_str()), ("https://github.com/moby/buildkit.git", "v0.10.1", "docs"));
        let r = GitRef::parse("git@github.com:moby/buildkit.git");
        assert_eq!((r.remote.as_str(), r.reference.as_str(), r.subdir.as_str()), ("git@github.com:moby/buildkit.git", "", ""));
    }
}
