//! COPY/ADD source selection with `--parents` and `--exclude` on top of
//! [`ContextIndex::select`].
//!
//! * `--exclude=PATTERN` (repeatable): patterns with `.dockerignore` syntax and matching
//!   (Go's `filepath.Match` plus `**`, a match on a directory covers everything below it,
//!   `!` re-includes), matched against each path **as it lands under the destination**:
//!   for a directory source, relative to that directory; for a file or symlink source, its
//!   name. BuildKit matches only below a directory source, so `COPY --exclude=*.txt hom* /d/`
//!   still copies `home.txt` there (moby/buildkit#5489), contrary to its own reference;
//!   rbuild follows the reference.
//! * `--parents`: the source is a pattern (same syntax) matched against the paths below a
//!   pivot, and each match keeps its path relative to the pivot under the destination. The
//!   pivot is the context root, or what precedes a `/./` in the source (rsync's rule:
//!   `x/./y/*.txt` copies `y/a.txt`). A directory match brings everything below it. The
//!   directories between the pivot and a match are created with their own metadata. A source
//!   without wildcards must exist; one with wildcards may match nothing.
//!
//! Both produce ordinary [`SourceMatch`]es (for `--parents`, one directory match rooted at
//! the pivot whose entries are exactly the selected paths), so hashing for the cache key and
//! placing the files need no special cases: what is not selected is neither hashed nor copied.

use std::collections::BTreeSet;

use crate::dockerfile::dockerignore::{Dockerignore, IgnoreError};

use super::context::{clean_rel, has_wildcard, ContextError, ContextIndex, EntryKind, SourceMatch};

/// How a COPY selects its sources.
#[derive(Debug, Clone, Default)]
pub struct SourceRules {
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns, as written.
    pub exclude: Vec<String>,
}

impl SourceRules {
    /// The matches of `source` under these rules.
    pub fn select(&self, idx: &ContextIndex, source: &str) -> Result<Vec<SourceMatch>, ContextError> {
        let exclude = if self.exclude.is_empty() { None } else { Some(compile_excludes(&self.exclude)?) };
        let matches = if self.parents { vec![with_parents(idx, source)?] } else { idx.select(source)? };
        Ok(match &exclude {
            None => matches,
            Some(ex) => matches.into_iter().filter_map(|m| excluding(idx, m, ex)).collect(),
        })
    }
}

/// The `--exclude` patterns as one matcher; a bad pattern is named with its reason.
pub fn compile_excludes(patterns: &[String]) -> Result<Dockerignore, ContextError> {
    for p in patterns {
        Dockerignore::from_patterns([clean_rel(p)]).map_err(|e| bad_pattern(format!("--exclude={p}"), e))?;
    }
    Dockerignore::from_patterns(patterns.iter().map(|p| clean_rel(p)))
        .map_err(|e| bad_pattern(format!("--exclude={}", patterns.join(" --exclude=")), e))
}

fn bad_pattern(pattern: String, e: IgnoreError) -> ContextError {
    let reason = match e {
        IgnoreError::BadPattern { reason, .. } => reason,
        other => other.to_string(),
    };
    ContextError::BadPattern { pattern, reason }
}

/// `--parents`: one directory match rooted at the pivot.
fn with_parents(idx: &ContextIndex, source: &str) -> Result<SourceMatch, ContextError> {
    let (pivot, pattern) = match source.split_once("/./") {
        Some((p, rest)) => (clean_rel(p), clean_rel(rest)),
        None => (String::new(), clean_rel(source)),
    };
    // The pivot itself is a plain path (symlinks followed, as for any source).
    let base = if pivot.is_empty() {
        String::new()
    } else {
        let m = idx.select(&pivot)?;
        match m.as_slice() {
            [one] if one.kind == EntryKind::Dir => one.root.clone(),
            _ => {
                return Err(ContextError::NotFound { path: format!("{source} (--parents: {pivot} is not one directory)") })
            }
        }
    };
    if !has_wildcard(source) {
        // A plain path must exist (and may lead through symlinks only to check that).
        let full = if pivot.is_empty() { pattern.clone() } else { format!("{pivot}/{pattern}") };
        // The path below the pivot is kept in the destination as written, so a symbolic link
        // on it cannot be followed (the copy would land under another name) nor copied as a
        // link (it would dangle): say so instead of copying nothing.
        let at = match (base.is_empty(), pattern.is_empty()) {
            (true, _) => pattern.clone(),
            (false, true) => base.clone(),
            (false, false) => format!("{base}/{pattern}"),
        };
        if let Some(m) = idx.select(&full)?.first() {
            if m.root != at {
                return Err(ContextError::ParentsSymlink { path: source.to_string(), real: m.root.clone() });
            }
        }
    }
    let include = Dockerignore::from_patterns([pattern.clone()]).map_err(|e| bad_pattern(source.to_string(), e))?;
    let prefix = if base.is_empty() { String::new() } else { format!("{base}/") };
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for e in idx.below(&base) {
        let rel = e.rel.strip_prefix(&prefix).unwrap_or(&e.rel);
        if pattern.is_empty() || include.is_ignored(rel) {
            keep.insert(e.rel.clone());
        }
    }
    let name = base.rsplit('/').next().unwrap_or(&base).to_string();
    Ok(SourceMatch { root: base.clone(), name, kind: EntryKind::Dir, entries: with_ancestors(keep, &base) })
}

/// `m` without what `ex` excludes (`None` when nothing is left of a file source).
fn excluding(idx: &ContextIndex, m: SourceMatch, ex: &Dockerignore) -> Option<SourceMatch> {
    if m.kind != EntryKind::Dir {
        return (!ex.is_ignored(&m.name)).then_some(m);
    }
    let prefix = if m.root.is_empty() { String::new() } else { format!("{}/", m.root) };
    let keep: BTreeSet<String> = m
        .entries
        .iter()
        .filter(|rel| !ex.is_ignored(rel.strip_prefix(&prefix).unwrap_or(rel)))
        .filter(|rel| idx.get(rel).is_some())
        .cloned()
        .collect();
    let entries = with_ancestors(keep, &m.root);
    Some(SourceMatch { entries, ..m })
}

/// The selected paths plus every directory between `base` and each of them (so a file
/// re-included below an excluded directory, or matched deep below the pivot, lands with its
/// parents' own metadata), sorted parents first.
fn with_ancestors(mut keep: BTreeSet<String>, base: &str) -> Vec<String> {
    let mut parents = Vec::new();
    for rel in &keep {
        let mut p = rel.as_str();
        while let Some((dir, _)) = p.rsplit_once('/') {
            if dir == base || dir.len() < base.len() {
                break;
            }
            parents.push(dir.to_string());
            p = dir;
        }
    }
    keep.extend(parents);
    // BTreeSet order puts a directory before everything below it ("a" < "a/..." ).
    keep.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::context::NoFilter;
    use std::sync::Arc;

    fn ctx(files: &[&str]) -> (tempfile::TempDir, ContextIndex) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f.as_bytes()).unwrap();
        }
        let idx = ContextIndex::scan(d.path(), Arc::new(NoFilter)).unwrap();
        (d, idx)
    }

    fn entries(r: &SourceRules, idx: &ContextIndex, src: &str) -> Vec<String> {
        r.select(idx, src).unwrap().into_iter().flat_map(|m| m.entries).collect()
    }

    #[test]
    fn exclude_matches_below_a_dir_and_a_file_source_by_name() {
        let (_d, idx) = ctx(&["d/a.txt", "d/b.md", "d/s/c.txt", "home.txt", "home.md"]);
        let r = SourceRules { parents: false, exclude: vec!["*.txt".into()] };
        // Anchored like .dockerignore: `*.txt` is not `s/c.txt`.
        assert_eq!(entries(&r, &idx, "d"), ["d/b.md", "d/s", "d/s/c.txt"]);
        assert_eq!(entries(&r, &idx, "hom*"), ["home.md"]);
        let r = SourceRules { parents: false, exclude: vec!["s".into(), "!s/c.txt".into()] };
        assert_eq!(entries(&r, &idx, "d"), ["d/a.txt", "d/b.md", "d/s", "d/s/c.txt"]);
        let r = SourceRules { parents: false, exclude: vec!["**/*.txt".into()] };
        assert_eq!(entries(&r, &idx, "."), ["d", "d/b.md", "d/s", "home.md"]);
    }

    #[test]
    fn parents_keep_paths_from_the_pivot() {
        let (_d, idx) = ctx(&["x/a.txt", "y/a.txt", "x/y/b.txt", "src/a.txt", "src/x/b.txt", "src/x/y/c.md"]);
        let r = SourceRules { parents: true, exclude: vec![] };
        let m = r.select(&idx, "./x/a.txt").unwrap();
        assert_eq!((m[0].root.as_str(), m[0].entries.clone()), ("", vec!["x".to_string(), "x/a.txt".to_string()]));
        assert_eq!(entries(&r, &idx, "x/./y/*.txt"), ["x/y", "x/y/b.txt"]);
        assert_eq!(r.select(&idx, "x/./y/*.txt").unwrap()[0].root, "x");
        assert_eq!(entries(&r, &idx, "src/**/*.txt"), ["src", "src/a.txt", "src/x", "src/x/b.txt"]);
        // A directory match brings its subtree; a missing plain path is an error; an empty
        // wildcard match is not.
        assert_eq!(entries(&r, &idx, "src/x"), ["src", "src/x", "src/x/b.txt", "src/x/y", "src/x/y/c.md"]);
        assert!(r.select(&idx, "nope/a.txt").is_err());
        assert!(entries(&r, &idx, "nope/*.txt").is_empty());
        let r = SourceRules { parents: true, exclude: vec!["**/*.md".into()] };
        assert_eq!(entries(&r, &idx, "src/x"), ["src", "src/x", "src/x/b.txt", "src/x/y"]);
    }
}
