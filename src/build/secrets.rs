//! Build secrets: `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, read once when the
//! build starts and handed to `RUN --mount=type=secret` steps.
//!
//! # Where a secret's value goes (and never goes)
//!
//! The bytes live in this process's memory ([`SecretValue`]) and travel to the sandbox only
//! over its socketpair, where they are written to a tmpfs of the RUN's private mount
//! namespace (see [`crate::sandbox::FileMount`]) or put in its environment (`env=`). They
//! are never written under the store root, never part of a cache key (as BuildKit: a
//! changed value does not bust the cache; the mount's id and target do), and never in the
//! image config, history, `--explain` records or the metadata file. `Debug` of the types
//! here shows ids and lengths only, and no error message quotes a value.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// BuildKit's limit on one secret (`secrets.MaxSecretSize`, 500 KiB).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Errors of `--secret` flags and their sources. They name ids, paths and variables only.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The flag does not parse. Its text is not repeated: a mistyped flag may be the secret
    /// itself (`--secret $TOKEN`).
    #[error("invalid --secret flag: {message} (the flag is not shown, it may hold a secret); use --secret id=ID,src=FILE or --secret id=ID,env=VAR")]
    Flag {
        /// What is wrong (keys only, no values).
        message: String,
    },
    /// The source file cannot be read, or is too big.
    #[error("--secret id={id}: {path}: {message}")]
    File {
        /// The secret's id.
        id: String,
        /// The source file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `--secret id=ID` alone found neither an environment variable nor a file.
    #[error("--secret id={id}: there is no environment variable {id} and no file {id}; give the source: --secret id={id},src=FILE or --secret id={id},env=VAR")]
    NoSource {
        /// The secret's id.
        id: String,
    },
}

/// Where a `--secret` takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE` (or `type=file`).
    File(PathBuf),
    /// `env=VAR` (or `type=env,src=VAR`). An unset variable leaves the secret out.
    Env(String),
    /// Only `id=ID`: the environment variable `ID` when it is set, else the file `ID`
    /// (BuildKit's rule).
    Default,
}

/// One `--secret` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id a `RUN --mount=type=secret,id=` names.
    pub id: String,
    /// Where the value comes from.
    pub source: SecretSource,
}

impl SecretSpec {
    /// Parse buildx's syntax: comma-separated `key=value` with keys `id`, `src`/`source`,
    /// `env`, `type` (`file` or `env`; `type=env,src=VAR` reads `VAR`).
    pub fn parse(flag: &str) -> Result<SecretSpec, SecretError> {
        let bad = |message: String| SecretError::Flag { message };
        let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
        for field in flag.split(',').filter(|f| !f.is_empty()) {
            let Some((k, v)) = field.split_once('=') else {
                return Err(bad("it is not a list of key=value pairs".into()));
            };
            let slot = match k.to_ascii_lowercase().as_str() {
                "id" => &mut id,
                "src" | "source" => &mut src,
                "env" => &mut env,
                "type" => match v {
                    "file" | "env" => &mut typ,
                    _ => return Err(bad("type= must be file or env".into())),
                },
                _ if k.len() <= 16 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    return Err(bad(format!("unexpected key {k:?}: use id=, src=, env= or type=")))
                }
                _ => return Err(bad("unexpected key: use id=, src=, env= or type=".into())),
            };
            *slot = Some(v.to_string());
        }
        let id = id.filter(|i| !i.is_empty()).ok_or_else(|| bad("id= is missing, e.g. id=mytoken,src=token.txt".into()))?;
        let source = match (typ.as_deref(), src, env) {
            (_, Some(_), Some(_)) => return Err(bad("give src= or env=, not both".into())),
            (Some("env"), Some(var), None) | (_, None, Some(var)) => SecretSource::Env(var),
            (_, Some(path), None) => SecretSource::File(PathBuf::from(path)),
            (_, None, None) => SecretSource::Default,
        };
        Ok(SecretSpec { id, source })
    }
}

/// A secret's bytes. `Debug` shows the length only; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wrap bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes>)", self.0.len())
    }
}

/// The secrets of one build, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretValue>,
}

impl Secrets {
    /// Parse `--secret` flags and read their sources (files and environment variables),
    /// once, before the build starts. A later flag with the same id wins, as in buildx.
    pub fn from_flags<S: AsRef<str>>(flags: &[S]) -> Result<Secrets, SecretError> {
        let mut out = Secrets::default();
        for f in flags {
            let spec = SecretSpec::parse(f.as_ref())?;
            match read(&spec)? {
                Some(v) => {
                    out.by_id.insert(spec.id, v);
                }
                None => {
                    out.by_id.remove(&spec.id);
                }
            }
        }
        Ok(out)
    }

    /// Add (or replace) a secret.
    pub fn insert(&mut self, id: impl Into<String>, value: SecretValue) {
        self.by_id.insert(id.into(), value);
    }

    /// The secret `id`, if it was given.
    pub fn get(&self, id: &str) -> Option<&SecretValue> {
        self.by_id.get(id)
    }
}

/// The value of one flag's source; `None` for an unset environment variable.
fn read(spec: &SecretSpec) -> Result<Option<SecretValue>, SecretError> {
    let env = |var: &str| std::env::var_os(var).map(|v| SecretValue(std::os::unix::ffi::OsStringExt::into_vec(v)));
    match &spec.source {
        SecretSource::Env(var) => Ok(env(var)),
        SecretSource::File(path) => read_file(&spec.id, path).map(Some),
        SecretSource::Default => match env(&spec.id) {
            Some(v) => Ok(Some(v)),
            None if std::path::Path::new(&spec.id).is_file() => read_file(&spec.id, spec.id.as_ref()).map(Some),
            None => Err(SecretError::NoSource { id: spec.id.clone() }),
        },
    }
}

fn read_file(id: &str, path: &std::path::Path) -> Result<SecretValue, SecretError> {
    use std::io::Read;
    let err = |message: String| SecretError::File { id: id.to_string(), path: path.to_path_buf(), message };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(MAX_SECRET_SIZE + 1).read_to_end(&mut bytes).map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_SIZE {
        return Err(err("too big: a secret may have at most 500 KiB (as in BuildKit)".into()));
    }
    Ok(SecretValue(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let p = |s: &str| SecretSpec::parse(s).map(|s| (s.id, s.source));
        assert_eq!(p("id=a,src=/f").unwrap(), ("a".into(), SecretSource::File("/f".into())));
        assert_eq!(p("id=a,source=f,type=file").unwrap(), ("a".into(), SecretSource::File("f".into())));
        assert_eq!(p("id=a,env=V").unwrap(), ("a".into(), SecretSource::Env("V".into())));
        assert_eq!(p("type=env,id=a,src=V").unwrap(), ("a".into(), SecretSource::Env("V".into())));
        assert_eq!(p("id=a").unwrap(), ("a".into(), SecretSource::Default));
        let e = |s: &str| p(s).unwrap_err().to_string();
        assert!(e("src=/f").contains("id= is missing"));
        assert!(e("id=a,src").contains("key=value"));
        assert!(e("id=a,type=ssh").contains("type= must be file or env"));
        // A flag that is the secret itself is never echoed.
        for flag in ["S3CR3T-VALUE", "id=a,S3CR3T-VALUE", "id=a,S3CR3T-VALUE=x"] {
            let msg = e(flag);
            assert!(!msg.contains("S3CR3T"), "{msg}");
        }
        assert!(e("id=a,bogus=1").contains("unexpected key"));
        assert!(e("id=a,src=f,env=V").contains("not both"));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let mut s = Secrets::default();
        s.insert("tok", SecretValue::new(b"hunter2".to_vec()));
        let d = format!("{s:?}");
        assert!(d.contains("tok") && d.contains("7 bytes") && !d.contains("hunter2"), "{d}");
    }

    #[test]
    fn sources_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "file-value").unwrap();
        let s = Secrets::from_flags(&[format!("id=a,src={}", f.display())]).unwrap();
        assert_eq!(s.get("a").unwrap().bytes(), b"file-value");
        let s = Secrets::from_flags(&["id=b,env=RBUILD_TEST_SURELY_UNSET_VAR"]).unwrap();
        assert!(s.get("b").is_none(), "an unset variable leaves the secret out");
        let e = Secrets::from_flags(&["id=RBUILD_TEST_SURELY_UNSET_VAR"]).unwrap_err().to_string();
        assert!(e.contains("src=FILE"), "{e}");
        std::fs::write(&f, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let e = Secrets::from_flags(&[format!("id=a,src={}", f.display())]).unwrap_err().to_string();
        assert!(e.contains("too big"), "{e}");
    }
}
