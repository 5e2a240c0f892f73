//! Image references with Docker's rules (distribution/reference): `app`, `app:1`,
//! `registry:5000/team/app:1`, `app@sha256:...`.
//!
//! A reference is stored normalised (`app` → domain `docker.io`, path `library/app`) so that
//! `app`, `library/app` and `docker.io/library/app:latest` all find the same image; it is
//! displayed in Docker's familiar form (`app:latest`).

use std::fmt;

use super::digest::Digest;

/// Docker Hub's canonical domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid reference.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Reference {
    /// Parse and normalise a reference.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason| ReferenceError {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("the reference is empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(
                    Digest::parse(d)
                        .map_err(|_| err("the digest is not sha256: with 64 hex digits"))?,
                ),
            ),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err(
                    "a tag is 1-128 of [A-Za-z0-9_.-] and may not start with . or -",
                ));
            }
        }
        if name.is_empty() {
            return Err(err("the repository name is empty"));
        }
        if name.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(err("the registry host is not a valid host[:port]"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(err(
                "a repository name is lower-case letters, digits and separators (. _ __ -) between /",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if domain == DEFAULT_DOMAIN && tag.is_none() && digest.is_none() && is_hex64(name) {
            return Err(err(
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (`docker.io` for Hub names).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path (`library/app` for `app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when neither tag nor digest was given.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// `docker.io/library/app`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `app` (Docker's familiar form of the repository).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(p) if !p.contains('/') => p.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.full_name()
        }
    }

    /// The same repository with `tag` (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same reference with `latest` filled in when there is neither tag nor digest.
    pub fn normalized(&self) -> Reference {
        let mut r = self.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        r
    }

    /// `app:1` — the familiar name with the tag (`latest` filled in); what `images` shows and
    /// what goes into the index's `org.opencontainers.image.ref.name`.
    pub fn familiar_tagged(&self) -> String {
        format!(
            "{}:{}",
            self.familiar_name(),
            self.tag_or_latest().unwrap_or(DEFAULT_TAG)
        )
    }

    /// `docker.io/library/app:1` (fully qualified, `latest` filled in).
    pub fn full_tagged(&self) -> String {
        format!(
            "{}:{}",
            self.full_name(),
            self.tag_or_latest().unwrap_or(DEFAULT_TAG)
        )
    }

    /// Same repository and tag, with `latest` filled in on both sides.
    pub fn same_tag(&self, other: &Reference) -> bool {
        self.domain == other.domain
            && self.path == other.path
            && self.tag_or_latest() == other.tag_or_latest()
    }
}

impl fmt::Display for Reference {
    /// Familiar form: `app`, `app:1`, `reg:5000/team/app@sha256:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar_name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        let r = p("app");
        assert_eq!(r.full_tagged(), "docker.io/library/app:latest");
        assert_eq!(r.to_string(), "app");
        assert_eq!(r.familiar_tagged(), "app:latest");
        assert!(r.same_tag(&p("docker.io/library/app:latest")));
        assert!(r.same_tag(&p("library/app")));
        assert!(r.same_tag(&p("index.docker.io/library/app")));
        assert_eq!(p("team/app:1").full_tagged(), "docker.io/team/app:1");
        assert_eq!(p("team/app:1").to_string(), "team/app:1");
        let r = p("registry:5000/team/app:1");
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("registry:5000", "team/app", Some("1"))
        );
        assert_eq!(r.to_string(), "registry:5000/team/app:1");
        assert_eq!(p("localhost/app").domain(), "localhost");
        assert_eq!(p("a.b/c").domain(), "a.b");
        let d = Digest::of_bytes(b"x");
        let r = p(&format!("app@{d}"));
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.tag_or_latest(), None);
        let r = p(&format!("app:1@{d}"));
        assert_eq!(r.tag(), Some("1"));
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in [
            "",
            "App",
            "app:",
            ":1",
            "app:-x",
            "a//b",
            "a/",
            "-a",
            "a__-b",
            "app@sha256:xyz",
            "app:a/b",
            "reg:port/x",
            "UPPER",
            &"a".repeat(256),
            &"ab".repeat(32),
            &format!("app:{}", "t".repeat(129)),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse("a__b.c-d---e").is_ok());
        assert!(Reference::parse("Reg.io/x").is_ok());
        let e = Reference::parse("App").unwrap_err().to_string();
        assert!(e.contains("must be lowercase"), "{e}");
    }
}
