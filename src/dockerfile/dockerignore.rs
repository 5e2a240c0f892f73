//! `.dockerignore` with Docker's semantics (moby/patternmatcher and its `ignorefile`
//! reader), which are **not** gitignore's.
//!
//! # Reading the file ([`read_patterns`])
//!
//! A UTF-8 BOM is dropped; a line starting with `#` *in column 0* is a comment; each other
//! line is trimmed and skipped when empty; a leading `!` (exception) is split off and the
//! rest trimmed again; the pattern is cleaned as a path (`a//b/./c/..` → `a/b`) and one
//! leading `/` is stripped (patterns are relative to the context root anyway); the `!` is
//! put back. A lone `!` survives reading and is rejected when the matcher is built.
//!
//! # Matching ([`Dockerignore::is_ignored`])
//!
//! * Patterns are anchored at the context root: `foo` means `<context>/foo` only, and
//!   `*.md` matches `README.md` but not `docs/x.md`. There is no "match at any depth"
//!   unless the pattern says `**`.
//! * Syntax is Go's `filepath.Match` plus `**`: `*` is any run of non-`/` chars, `?` one
//!   non-`/` char, `[a-z]`/`[^a-z]` classes with `\` escapes inside, `\x` a literal `x`;
//!   `**` matches any number of segments including none (`**/foo` matches `foo`), and
//!   `dir/**` matches everything *below* `dir` but not `dir` itself.
//! * A path is matched by a pattern when the path itself **or any parent directory**
//!   matches it, so `docs` ignores `docs/a/b.md`.
//! * Patterns apply in order; an ordinary pattern that matches sets "ignored", a `!`
//!   exception that matches clears it: the last match wins.
//! * The context root (`.`) is never ignored.
//! * A bad pattern (`[`, `[]a]`, `[-]`, `[x-]`, `[a-b-c]`, `[z-a]`, a trailing `\`, a
//!   lone `!`) is an error when the matcher is built, never a silent non-match.
//!
//! # Walking a context ([`Dockerignore::can_skip_dir`])
//!
//! A walker may skip an ignored directory without looking inside only when no exception
//! pattern could re-include something below it; `can_skip_dir` answers exactly that
//! (conservatively: a `**` in an exception keeps every ignored directory open).
//!
//! # Which file ([`Dockerignore::read_for_context`])
//!
//! `<dockerfile>.dockerignore` next to the Dockerfile (e.g. `build/app.Dockerfile` →
//! `build/app.Dockerfile.dockerignore`) takes precedence over `<context>/.dockerignore`;
//! with neither, nothing is ignored. Docker still sends the Dockerfile and the ignore file
//! to the builder even when they are ignored: that is the build's business, not this
//! module's.
//!
//! # Deliberate differences from patternmatcher
//!
//! Upstream translates each pattern to a Go regex character by character, which gives odd
//! results for regex syntax inside classes (`[*]`, `[[:alpha:]]`) and for `^` outside them.
//! Here classes follow `filepath.Match` (the documented syntax) and every other char is
//! literal. A class range whose ends are out of order (`[z-a]`) is rejected when loading;
//! upstream accepts it and then fails on every match attempt.

use std::path::{Path, PathBuf};

use regex::Regex;
use thiserror::Error;

/// Errors from reading or compiling `.dockerignore` patterns.
#[derive(Debug, Error)]
pub enum IgnoreError {
    /// A pattern that is not valid `filepath.Match` syntax, or a lone `!`.
    #[error("{at}bad .dockerignore pattern {pattern:?}: {reason}; fix or remove the pattern")]
    BadPattern {
        /// `"<file>:<line>: "` when known, else empty.
        at: String,
        /// The pattern as given to the matcher.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The ignore file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A compiled `.dockerignore`: ordered patterns, last match wins.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
    source: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern without its `!`.
    text: String,
    exception: bool,
    kind: MatchKind,
    /// Per-segment view (split at unescaped `/`), for [`Dockerignore::can_skip_dir`].
    segments: Vec<Segment>,
    /// The pattern contains `**`.
    globstar: bool,
    /// Some class in the pattern can match `/` (so segment counting is unreliable).
    class_matches_slash: bool,
}

/// How a pattern is matched, exactly as patternmatcher decides it.
#[derive(Debug, Clone)]
enum MatchKind {
    /// Only literal chars: string equality.
    Exact,
    /// `lit/**` (literal, then a trailing `**`): a string prefix test with the `**` removed.
    Prefix(String),
    /// Starts with `**`, then only literals: a suffix test (`**/foo` also matches `foo`).
    Suffix(String),
    /// Everything else.
    Regex(Regex),
}

/// One `/`-separated segment of a pattern without `**`, as an anchored regex.
#[derive(Debug, Clone)]
struct Segment(Regex);

/// Reads `.dockerignore` text into patterns, exactly like moby's `ignorefile.ReadAll`.
pub fn read_patterns(text: &str) -> Vec<String> {
    read_patterns_with_lines(text)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// [`read_patterns`], keeping each pattern's 1-based line number.
fn read_patterns_with_lines(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (idx, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        if invert {
            cleaned.insert(0, '!');
        }
        out.push((idx + 1, cleaned));
    }
    out
}

/// Lexical path cleaning like Go's `filepath.Clean` (slash-separated): collapses `//`,
/// removes `.`, resolves `..` against earlier segments, drops a trailing `/`; `""` → `.`.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

impl Dockerignore {
    /// A matcher that ignores nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses `.dockerignore` text ([`read_patterns`]) and compiles it.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        Self::compile(read_patterns_with_lines(text), None)
    }

    /// Compiles patterns that are already read (one per former line; a leading `!` marks
    /// an exception). Each is trimmed and path-cleaned; empty ones are skipped.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::compile(
            patterns
                .into_iter()
                .map(|p| (0, p.as_ref().to_string()))
                .collect(),
            None,
        )
    }

    /// Loads the ignore file that applies to a build: `<dockerfile>.dockerignore` next to
    /// the Dockerfile when it exists, else `<context_dir>/.dockerignore`, else nothing.
    pub fn read_for_context(
        context_dir: &Path,
        dockerfile_path: &Path,
    ) -> Result<Self, IgnoreError> {
        let mut candidates = Vec::with_capacity(2);
        if let Some(name) = dockerfile_path.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            candidates.push(dockerfile_path.with_file_name(specific));
        }
        candidates.push(context_dir.join(".dockerignore"));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    return Self::compile(read_patterns_with_lines(&text), Some(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => continue,
                Err(source) => return Err(IgnoreError::Read { path, source }),
            }
        }
        Ok(Self::empty())
    }

    fn compile(lines: Vec<(usize, String)>, source: Option<PathBuf>) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::with_capacity(lines.len());
        for (line, raw) in lines {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean_path(trimmed);
            let bad = |reason: String| {
                let at = match (&source, line) {
                    (Some(p), l) if l > 0 => format!("{}:{l}: ", p.display()),
                    (Some(p), _) => format!("{}: ", p.display()),
                    (None, l) if l > 0 => format!("line {l}: "),
                    (None, _) => String::new(),
                };
                IgnoreError::BadPattern {
                    at,
                    pattern: raw.clone(),
                    reason,
                }
            };
            let (exception, text) = match cleaned.strip_prefix('!') {
                Some("") => {
                    return Err(bad("an exception needs a pattern after the '!'".to_string()))
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned.clone()),
            };
            patterns.push(Pattern::compile(text, exception).map_err(bad)?);
        }
        Ok(Dockerignore { patterns, source })
    }

    /// The file the patterns came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The compiled patterns in order, exceptions with their `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exception {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    /// True when there are no patterns (nothing is ignored).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is excluded from
    /// the context: the last pattern matching it or one of its parents decides.
    pub fn is_ignored(&self, rel_path: &str) -> bool {
        let file = clean_path(rel_path);
        if file == "." || self.patterns.is_empty() {
            return false;
        }
        let parents = parent_prefixes(&file);
        let mut ignored = false;
        for p in &self.patterns {
            // An ordinary pattern cannot change an ignored path, nor an exception a kept one.
            if p.exception != ignored {
                continue;
            }
            if p.matches(&file) || parents.iter().any(|d| p.matches(d)) {
                ignored = !p.exception;
            }
        }
        ignored
    }

    /// Whether a walker may skip the directory `rel_dir` entirely: it is ignored and no
    /// exception pattern could match anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.is_ignored(rel_dir) {
            return false;
        }
        let dir = clean_path(rel_dir);
        let dir_segments: Vec<&str> = dir.split('/').collect();
        !self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| p.could_match_below(&dir_segments))
    }
}

/// The parent directories of a clean path, shortest first, as Go's
/// `strings.Split(filepath.Dir(file), "/")` prefixes: `a/b/c` → `a`, `a/b`.
fn parent_prefixes(file: &str) -> Vec<&str> {
    let parent = match file.rfind('/') {
        None => return Vec::new(),
        Some(0) => "/",
        Some(i) => &file[..i],
    };
    let mut out: Vec<&str> = parent
        .match_indices('/')
        .map(|(i, _)| &parent[..i])
        .collect();
    out.push(parent);
    out
}

/// A parsed `[...]` class.
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn render(&self) -> String {
        let mut s = String::from("[");
        if self.negated {
            s.push('^');
        }
        for &(lo, hi) in &self.ranges {
            if lo == hi {
                s.push_str(&format!("\\x{{{:x}}}", lo as u32));
            } else {
                s.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", lo as u32, hi as u32));
            }
        }
        s.push(']');
        s
    }

    fn matches_slash(&self) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= '/' && '/' <= hi) != self.negated
    }
}

/// Parses a class body after its `[` at `chars[*pos]`, with `filepath.Match`'s rules.
fn parse_class(chars: &[char], pos: &mut usize) -> Result<Class, String> {
    let mut negated = false;
    if chars.get(*pos) == Some(&'^') {
        negated = true;
        *pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(*pos) == Some(&']') && !ranges.is_empty() {
            *pos += 1;
            return Ok(Class { negated, ranges });
        }
        let lo = class_char(chars, pos)?;
        let mut hi = lo;
        if chars.get(*pos) == Some(&'-') {
            *pos += 1;
            hi = class_char(chars, pos)?;
        }
        if lo > hi {
            return Err(format!("character class range {lo}-{hi} is out of order"));
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) class member; like Go's `getEsc`.
fn class_char(chars: &[char], pos: &mut usize) -> Result<char, String> {
    match chars.get(*pos) {
        None => return Err("unterminated character class (missing ']')".to_string()),
        Some('-') => {
            return Err(
                "'-' must be escaped or come between two chars in a character class".to_string(),
            )
        }
        Some(']') => {
            return Err("empty character class (escape a literal ']' as '\\]')".to_string())
        }
        Some('\\') => *pos += 1,
        Some(_) => {}
    }
    let Some(&c) = chars.get(*pos) else {
        return Err("unterminated character class (missing ']')".to_string());
    };
    *pos += 1;
    if *pos >= chars.len() {
        return Err("unterminated character class (missing ']')".to_string());
    }
    Ok(c)
}

fn escape_char(c: char) -> String {
    let mut buf = [0u8; 4];
    regex::escape(c.encode_utf8(&mut buf))
}

impl Pattern {
    /// Compiles a cleaned pattern (without `!`), deciding its match kind as
    /// patternmatcher does.
    fn compile(text: String, exception: bool) -> Result<Pattern, String> {
        #[derive(PartialEq)]
        enum Kind {
            Exact,
            Prefix,
            Suffix,
            Regex,
        }
        let chars: Vec<char> = text.chars().collect();
        let mut re = String::from("^");
        let mut kind = Kind::Exact;
        let mut pos = 0;
        let mut first = true;
        let mut globstar = false;
        let mut class_matches_slash = false;
        // Segment regexes, built alongside; meaningless (and unused) when `globstar`.
        let mut segments = Vec::new();
        let mut seg = String::from("^");
        while pos < chars.len() {
            let ch = chars[pos];
            pos += 1;
            match ch {
                '*' if chars.get(pos) == Some(&'*') => {
                    pos += 1;
                    globstar = true;
                    // `**/` is `**`: eat the slash.
                    if chars.get(pos) == Some(&'/') {
                        pos += 1;
                    }
                    if pos == chars.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            re.push_str(".*");
                            kind = Kind::Regex;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        kind = Kind::Regex;
                    }
                    if first {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    re.push_str("[^/]*");
                    seg.push_str("[^/]*");
                    kind = Kind::Regex;
                }
                '?' => {
                    re.push_str("[^/]");
                    seg.push_str("[^/]");
                    kind = Kind::Regex;
                }
                '\\' => {
                    let Some(&c) = chars.get(pos) else {
                        return Err("a trailing '\\' escapes nothing".to_string());
                    };
                    pos += 1;
                    let lit = escape_char(c);
                    re.push_str(&lit);
                    seg.push_str(&lit);
                    kind = Kind::Regex;
                }
                '[' => {
                    let class = parse_class(&chars, &mut pos)?;
                    class_matches_slash |= class.matches_slash();
                    let r = class.render();
                    re.push_str(&r);
                    seg.push_str(&r);
                    kind = Kind::Regex;
                }
                '/' => {
                    re.push('/');
                    seg.push('$');
                    segments.push(std::mem::replace(&mut seg, String::from("^")));
                }
                c => {
                    let lit = escape_char(c);
                    re.push_str(&lit);
                    seg.push_str(&lit);
                }
            }
            first = false;
        }
        seg.push('$');
        segments.push(seg);

        let compile_re = |s: &str| Regex::new(s).map_err(|e| format!("cannot compile: {e}"));
        let kind = match kind {
            Kind::Exact => MatchKind::Exact,
            Kind::Prefix => MatchKind::Prefix(text[..text.len() - 2].to_string()),
            Kind::Suffix => MatchKind::Suffix(text[2..].to_string()),
            Kind::Regex => {
                re.push('$');
                MatchKind::Regex(compile_re(&re)?)
            }
        };
        let segments = if globstar {
            Vec::new()
        } else {
            segments
                .iter()
                .map(|s| compile_re(s).map(Segment))
                .collect::<Result<_, _>>()?
        };
        Ok(Pattern {
            text,
            exception,
            kind,
            segments,
            globstar,
            class_matches_slash,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }

    /// Could this pattern match some path strictly below the directory `dir`? `false`
    /// only when certain.
    fn could_match_below(&self, dir: &[&str]) -> bool {
        if self.globstar || self.class_matches_slash {
            return true;
        }
        // Without `**`, a pattern matches only paths with as many segments as it has.
        if self.segments.len() <= dir.len() {
            return false;
        }
        self.segments
            .iter()
            .zip(dir)
            .all(|(Segment(re), d)| re.is_match(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("**/", "**"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn parent_prefixes_shortest_first() {
        assert_eq!(parent_prefixes("a/b/c"), ["a", "a/b"]);
        assert_eq!(parent_prefixes("a"), Vec::<&str>::new());
        // Go: Split(Dir("/a"), "/") is ["", ""], whose prefixes join to "" and "/".
        assert_eq!(parent_prefixes("/a"), ["", "/"]);
    }

    #[test]
    fn match_kinds_follow_patternmatcher() {
        let kind = |p: &str| match Pattern::compile(p.to_string(), false).unwrap().kind {
            MatchKind::Exact => "exact",
            MatchKind::Prefix(_) => "prefix",
            MatchKind::Suffix(_) => "suffix",
            MatchKind::Regex(_) => "regex",
        };
        assert_eq!(kind("a.b"), "exact");
        assert_eq!(kind("abc/**"), "prefix");
        assert_eq!(kind("**/foo"), "suffix");
        assert_eq!(kind("**"), "suffix");
        assert_eq!(kind("**/*.go"), "regex");
        assert_eq!(kind("a\\*b"), "regex");
    }
}
