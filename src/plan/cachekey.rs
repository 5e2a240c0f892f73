//! Cache keys: a versioned, length-prefixed encoding of everything that decides a step's
//! filesystem result, hashed with SHA-256.
//!
//! A step's key is found in the store's cache index → its layer is reused as is. So a key
//! must change whenever the layer could differ, and should not change otherwise.
//!
//! # What goes in, and why
//!
//! | op       | input                              | why |
//! |----------|------------------------------------|-----|
//! | all      | type tag with version (`rbuild.run.v1`) | a new encoding gets a new tag, so old records stop matching instead of matching wrongly |
//! | all      | parent key                         | a layer is a diff against its parent's tree: same diff on another tree is another image |
//! | base     | manifest digest of the FROM image  | the tag text moves; the digest names exactly the layers (`scratch` has its own tag) |
//! | base     | `SOURCE_DATE_EPOCH`, when set       | it is every COPY/ADD/WORKDIR file's mtime and clamps RUN times: another value is another layer, all the way down |
//! | RUN      | argv (shell form: SHELL + command text, exec form: the array; heredoc bodies) | the command decides the result |
//! | RUN      | env passed to the process, sorted by name | a program can read any of it: ENV values and the ARGs in scope (as BuildKit: an ARG changes the keys of the RUNs after it whose env it is in) |
//! | RUN      | user, workdir                      | files created are owned by USER, relative paths resolve in WORKDIR |
//! | RUN      | network mode                       | `--network=none` can fail where host succeeds |
//! | RUN      | mounts (`--mount=...` canonical text, and the key of a `from=` source; tmpfs target and size; secret id, target, env name, mode, owner, required and whether it was given) | what the process can read |
//! | COPY/ADD | sources as written (after expansion), dest (resolved against WORKDIR), `--chown` (resolved ids), `--chmod`, flags (`--link`, `--parents`, `--exclude`, ADD's auto-extract, `--checksum`) | they decide where and how files land |
//! | COPY/ADD | content digest of exactly the selected files: relative path, type, mode, symlink target, content SHA-256 | the files themselves |
//! | COPY/ADD | `--from`: the source stage's final key or the image's manifest digest | the files come from there, not from the context |
//! | WORKDIR  | the absolute path, the user        | it creates the directory when missing |
//!
//! # What stays out, and why
//!
//! - **mtimes**: touching a file without changing it must be a hit; layers clamp mtimes anyway.
//! - **host uid/gid of context files**: COPY writes 0:0 unless `--chown`, which is in the key.
//! - **files outside the selection** and files `.dockerignore` drops: they cannot reach the layer.
//! - **absolute host paths** (context dir, store root): the same project elsewhere is the same build.
//! - **secret values** (`--secret`): as BuildKit, a changed secret does not re-run the RUNs
//!   that mount it (the id and target do); a value must never be recoverable from a key or
//!   its `--explain` trace. Cache mount contents stay out for the same reason as BuildKit's.
//! - **proxy variables** (`HTTP_PROXY`, `http_proxy`, `NO_PROXY`, ... as in Docker): they are passed
//!   to RUN but deliberately left out of its key, as Docker does, so a proxy change does not
//!   invalidate the cache.
//! - **progress / timing / output options, tags**: they change how a build is shown or named,
//!   not what it produces.
//! - **config-only instructions** (LABEL, EXPOSE, CMD, ENTRYPOINT, STOPSIGNAL, HEALTHCHECK,
//!   VOLUME, ONBUILD, MAINTAINER): they are not steps with a key, and they are not the parent of
//!   the next step, so they change no later key. ENV, USER, WORKDIR, SHELL and ARG change a later
//!   step's key only through the values that step captures (env, user, workdir, argv).
//!
//! # Encoding
//!
//! `key = "sha256:" + hex(SHA-256(encoding))`, where `encoding` is the type tag followed by
//! fields in a fixed order, each field:
//!
//! ```text
//! u32be(len(name)) name  u8(kind)  payload
//!   kind 's' (string/bytes): u64be(len) bytes
//!   kind 'l' (list):         u64be(count) { u64be(len) bytes }*
//!   kind 'm' (map):          u64be(count) { u64be(len) k  u64be(len) v }*   (sorted by key)
//!   kind 'n' (absent):       nothing
//! ```
//!
//! Length prefixes make the encoding injective: no two different input sets can produce the
//! same bytes (`["a b"]` vs `["a", "b"]`, or a value ending where the next begins).
//!
//! Every key comes with a [`KeyTrace`]: the fields in human-readable form, for `--explain`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The encoding version; part of every type tag (`rbuild.<op>.v1`).
pub const KEY_VERSION: u32 = 1;

/// Variables that are passed to RUN but never part of its key (Docker's predefined proxy ARGs).
pub const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// True for the names [`PROXY_VARS`] lists.
pub fn is_proxy_var(name: &str) -> bool {
    PROXY_VARS.contains(&name)
}

/// A finished key: `sha256:<hex>` plus what went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// The inputs, readable.
    pub trace: KeyTrace,
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digest)
    }
}

/// What went into a key, field by field, for `--explain` ("which input changed").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTrace {
    /// The type tag (`rbuild.run.v1`).
    pub kind: String,
    /// Fields in encoding order.
    pub fields: Vec<TraceField>,
}

/// One field of a key in readable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceField {
    /// Field name (`parent`, `argv`, `env`, ...).
    pub name: String,
    /// The value(s) as text. Maps render as `k=v`.
    pub values: Vec<String>,
}

impl KeyTrace {
    /// The names of the fields whose values differ between two traces of the same op
    /// (a field present in only one of them counts as changed).
    pub fn changed_fields(&self, other: &KeyTrace) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != other.kind {
            out.push("kind".to_string());
        }
        for f in &self.fields {
            match other.fields.iter().find(|o| o.name == f.name) {
                Some(o) if o.values == f.values => {}
                _ => out.push(f.name.clone()),
            }
        }
        for o in &other.fields {
            if !self.fields.iter().any(|f| f.name == o.name) {
                out.push(o.name.clone());
            }
        }
        out
    }
}

/// Builds one key: a type tag, then fields in a fixed order.
pub struct KeyBuilder {
    hasher: Sha256,
    trace: KeyTrace,
}

impl KeyBuilder {
    /// Start a key for op `op` (`run`, `copy`, ...): the type tag is `rbuild.<op>.v<KEY_VERSION>`.
    pub fn new(op: &str) -> Self {
        let kind = format!("rbuild.{op}.v{KEY_VERSION}");
        let mut hasher = Sha256::new();
        put_bytes(&mut hasher, kind.as_bytes());
        KeyBuilder { hasher, trace: KeyTrace { kind, fields: Vec::new() } }
    }

    fn header(&mut self, name: &str, kind: u8) {
        self.hasher.update((name.len() as u32).to_be_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update([kind]);
    }

    /// A string field.
    pub fn str(mut self, name: &str, value: &str) -> Self {
        self.header(name, b's');
        put_bytes(&mut self.hasher, value.as_bytes());
        self.trace.fields.push(TraceField { name: name.into(), values: vec![value.into()] });
        self
    }

    /// An optional string field (absent differs from empty).
    pub fn opt(mut self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(name, v),
            None => {
                self.header(name, b'n');
                self.trace.fields.push(TraceField { name: name.into(), values: vec![] });
                self
            }
        }
    }

    /// A list field; order matters.
    pub fn list<S: AsRef<str>>(mut self, name: &str, items: &[S]) -> Self {
        self.header(name, b'l');
        self.hasher.update((items.len() as u64).to_be_bytes());
        for i in items {
            put_bytes(&mut self.hasher, i.as_ref().as_bytes());
        }
        self.trace.fields.push(TraceField {
            name: name.into(),
            values: items.iter().map(|i| i.as_ref().to_string()).collect(),
        });
        self
    }

    /// A map field; entries are sorted by key (then value) before encoding, so the order
    /// the caller gives does not matter.
    pub fn map<K: AsRef<str>, V: AsRef<str>>(mut self, name: &str, entries: &[(K, V)]) -> Self {
        let mut sorted: Vec<(&str, &str)> =
            entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        sorted.sort();
        self.header(name, b'm');
        self.hasher.update((sorted.len() as u64).to_be_bytes());
        for (k, v) in &sorted {
            put_bytes(&mut self.hasher, k.as_bytes());
            put_bytes(&mut self.hasher, v.as_bytes());
        }
        self.trace.fields.push(TraceField {
            name: name.into(),
            values: sorted.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        });
        self
    }

    /// Finish: `sha256:<hex>` and the trace.
    pub fn finish(self) -> CacheKey {
        CacheKey { digest: format!("sha256:{}", hex::encode(self.hasher.finalize())), trace: self.trace }
    }
}

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

/// The key of a stage's first step: its base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseInput<'a> {
    /// `FROM scratch`.
    Scratch,
    /// A stored image, named by its manifest digest (never the tag text).
    Image {
        /// `sha256:...` of the manifest.
        manifest_digest: &'a str,
    },
}

/// Key of a FROM. `source_date_epoch` (when set) decides the times of every layer built on
/// it, so it is a field of the root of every key chain; unset, the field is left out (and
/// the keys are those of a build that never heard of it).
pub fn base_key(base: &BaseInput<'_>, source_date_epoch: Option<i64>) -> CacheKey {
    let k = match base {
        BaseInput::Scratch => KeyBuilder::new("scratch"),
        BaseInput::Image { manifest_digest } => KeyBuilder::new("base").str("manifest", manifest_digest),
    };
    match source_date_epoch {
        Some(t) => k.str("source_date_epoch", &t.to_string()).finish(),
        None => k.finish(),
    }
}

/// What a RUN step's key is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInput {
    /// The full argv (SHELL + command for the shell form).
    pub argv: Vec<String>,
    /// Heredoc bodies handed to the command (name, content), in order.
    pub heredocs: Vec<(String, String)>,
    /// The environment the process sees. Proxy variables are dropped from the key here.
    pub env: Vec<(String, String)>,
    /// USER, as written (name or `uid[:gid]`); `None` = root.
    pub user: Option<String>,
    /// Absolute working directory.
    pub workdir: String,
    /// `host` or `none`.
    pub network: String,
    /// Canonical text of each `--mount`, with the source's key for `from=` mounts.
    pub mounts: Vec<String>,
}

/// Key of a RUN step.
pub fn run_key(parent: &str, r: &RunInput) -> CacheKey {
    let env: Vec<(&str, &str)> = r
        .env
        .iter()
        .filter(|(k, _)| !is_proxy_var(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let heredocs: Vec<String> = r.heredocs.iter().map(|(n, c)| format!("{n}\n{c}")).collect();
    KeyBuilder::new("run")
        .str("parent", parent)
        .list("argv", &r.argv)
        .list("heredocs", &heredocs)
        .map("env", &env)
        .opt("user", r.user.as_deref())
        .str("workdir", &r.workdir)
        .str("network", &r.network)
        .list("mounts", &r.mounts)
        .finish()
}

/// Where COPY/ADD files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource<'a> {
    /// The build context.
    Context,
    /// Another stage: its final key.
    Stage {
        /// The stage's last step key.
        key: &'a str,
    },
    /// A stored image: its manifest digest.
    Image {
        /// `sha256:...` of the manifest.
        manifest_digest: &'a str,
    },
}

/// What a COPY/ADD step's key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInput<'a> {
    /// `copy` or `add`.
    pub op: &'a str,
    /// Where the files come from.
    pub from: CopySource<'a>,
    /// Source paths/patterns as written (after expansion).
    pub sources: &'a [String],
    /// Destination, already resolved against WORKDIR (a trailing `/` kept: it matters).
    pub dest: &'a str,
    /// `uid:gid` after resolving `--chown` names, or `None`.
    pub chown: Option<&'a str>,
    /// `--chmod` as written, or `None`.
    pub chmod: Option<&'a str>,
    /// Other flags in canonical text (`--link`, `--parents`, `--exclude=...`, `--checksum=...`,
    /// `extract`), sorted by the caller or not: they are sorted here.
    pub flags: &'a [String],
    /// Content digest of exactly the selected files (see `plan::context`).
    pub content: &'a str,
}

/// Key of a COPY or ADD step.
pub fn copy_key(parent: &str, c: &CopyInput<'_>) -> CacheKey {
    let (from_kind, from_val) = match c.from {
        CopySource::Context => ("context", ""),
        CopySource::Stage { key } => ("stage", key),
        CopySource::Image { manifest_digest } => ("image", manifest_digest),
    };
    let mut flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
    flags.sort_unstable();
    KeyBuilder::new(c.op)
        .str("parent", parent)
        .str("from", from_kind)
        .str("from-key", from_val)
        .list("sources", c.sources)
        .str("dest", c.dest)
        .opt("chown", c.chown)
        .opt("chmod", c.chmod)
        .list("flags", &flags)
        .str("content", c.content)
        .finish()
}

/// Key of a WORKDIR that may create its directory.
pub fn workdir_key(parent: &str, path: &str, user: Option<&str>) -> CacheKey {
    KeyBuilder::new("workdir").str("parent", parent).str("path", path).opt("user", user).finish()
}

/// Key of the assembled image config for a final step key and the config's content
/// (without timestamps). A rebuild that hits every step and produces the same config content
/// finds the `created` time recorded under this key and reuses it, so the image ID is the same.
pub fn image_key(last_step: &str, config_without_times: &str) -> CacheKey {
    KeyBuilder::new("image").str("parent", last_step).str("config", config_without_times).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str], env: &[(&str, &str)]) -> RunInput {
        RunInput {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            workdir: "/".into(),
            network: "host".into(),
            ..Default::default()
        }
    }

    #[test]
    fn key_is_stable_and_formatted() {
        let a = run_key("p", &run(&["/bin/sh", "-c", "true"], &[]));
        let b = run_key("p", &run(&["/bin/sh", "-c", "true"], &[]));
        assert_eq!(a, b);
        assert!(a.digest.starts_with("sha256:"));
        assert_eq!(a.digest.len(), 7 + 64);
        assert_eq!(a.trace.kind, "rbuild.run.v1");
    }

    #[test]
    fn list_boundaries_are_unambiguous() {
        let a = run_key("p", &run(&["a b"], &[]));
        let b = run_key("p", &run(&["a", "b"], &[]));
        let c = run_key("p", &run(&["ab"], &[]));
        assert_ne!(a.digest, b.digest);
        assert_ne!(b.digest, c.digest);
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn env_order_does_not_matter_but_values_do() {
        let a = run_key("p", &run(&["x"], &[("A", "1"), ("B", "2")]));
        let b = run_key("p", &run(&["x"], &[("B", "2"), ("A", "1")]));
        let c = run_key("p", &run(&["x"], &[("A", "1"), ("B", "3")]));
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_eq!(a.trace.changed_fields(&c.trace), vec!["env".to_string()]);
    }

    #[test]
    fn proxy_vars_stay_out_of_run_keys() {
        let a = run_key("p", &run(&["x"], &[("A", "1")]));
        let b = run_key("p", &run(&["x"], &[("A", "1"), ("HTTP_PROXY", "http://p:3128")]));
        assert_eq!(a.digest, b.digest);
    }

    #[test]
    fn parent_changes_key() {
        let a = run_key("p1", &run(&["x"], &[]));
        let b = run_key("p2", &run(&["x"], &[]));
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.trace.changed_fields(&b.trace), vec!["parent".to_string()]);
    }

    #[test]
    fn absent_user_differs_from_empty() {
        let mut a = run(&["x"], &[]);
        let mut b = a.clone();
        a.user = None;
        b.user = Some(String::new());
        assert_ne!(run_key("p", &a).digest, run_key("p", &b).digest);
    }

    #[test]
    fn copy_key_depends_on_content_and_flags_order_free() {
        let srcs = vec!["a".to_string()];
        let f1 = vec!["--link".to_string(), "--exclude=x".to_string()];
        let f2 = vec!["--exclude=x".to_string(), "--link".to_string()];
        let a = CopyInput {
            op: "copy",
            from: CopySource::Context,
            sources: &srcs,
            dest: "/app/",
            chown: None,
            chmod: None,
            flags: &f1,
            content: "c1",
        };
        let b = CopyInput { flags: &f2, ..a.clone() };
        let c = CopyInput { content: "c2", ..a.clone() };
        let add = CopyInput { op: "add", ..a.clone() };
        let chown = CopyInput { chown: Some("1:1"), ..a.clone() };
        assert_eq!(copy_key("p", &a).digest, copy_key("p", &b).digest);
        assert_ne!(copy_key("p", &a).digest, copy_key("p", &c).digest);
        assert_ne!(copy_key("p", &a).digest, copy_key("p", &add).digest);
        assert_ne!(copy_key("p", &a).digest, copy_key("p", &chown).digest);
    }

    #[test]
    fn base_key_uses_digest() {
        let a = base_key(&BaseInput::Image { manifest_digest: "sha256:aa" }, None);
        let b = base_key(&BaseInput::Image { manifest_digest: "sha256:bb" }, None);
        assert_ne!(a.digest, b.digest);
        assert_ne!(base_key(&BaseInput::Scratch, None).digest, a.digest);
        let epoch = base_key(&BaseInput::Image { manifest_digest: "sha256:aa" }, Some(0));
        assert_ne!(epoch.digest, a.digest, "SOURCE_DATE_EPOCH=0 is not the same as unset");
        assert_ne!(epoch.digest, base_key(&BaseInput::Image { manifest_digest: "sha256:aa" }, Some(1)).digest);
    }

    #[test]
    fn known_vector_pins_the_encoding() {
        // Changing the encoding must bump KEY_VERSION; this vector catches accidental changes.
        let k = KeyBuilder::new("test").str("a", "b").list("l", &["x", "y"]).finish();
        let mut h = Sha256::new();
        let tag = b"rbuild.test.v1";
        h.update((tag.len() as u64).to_be_bytes());
        h.update(tag);
        h.update(1u32.to_be_bytes());
        h.update(b"a");
        h.update(b"s");
        h.update(1u64.to_be_bytes());
        h.update(b"b");
        h.update(1u32.to_be_bytes());
        h.update(b"l");
        h.update(b"l");
        h.update(2u64.to_be_bytes());
        h.update(1u64.to_be_bytes());
        h.update(b"x");
        h.update(1u64.to_be_bytes());
        h.update(b"y");
        assert_eq!(k.digest, format!("sha256:{}", hex::encode(h.finalize())));
    }
}
