//! `--explain`: why a step missed the cache, the way cargo explains a dirty unit
//! (`fingerprint/dirty_reason.rs`): the key's inputs of this build are compared, field by
//! field, with those of the last build of the same step in this store.
//!
//! # Step identity
//!
//! A step has two identities, both SHA-256 over the context directory's absolute path, the
//! Dockerfile's path relative to the context and the stage (its name, or `stage-N` when
//! unnamed), then:
//!
//! - **by text**: where the instruction comes from (the stage itself, or the ONBUILD
//!   triggers of its base), its text as written (unexpanded, continuations joined) and how
//!   many steps with the same text came before it in the stage. This one survives inserting
//!   or removing steps above it, and moving it.
//! - **by position**: where the instruction comes from (its index among the stage's
//!   instructions, or among the ONBUILD triggers that run first) and its keyword. This one
//!   survives editing the instruction in place.
//!
//! Neither uses the line number: adding a comment above a step keeps both. A miss is
//! compared with the record of the same text if there is one, else with the record of the
//! same position (same keyword), else it is `no earlier build of this step in this store`.
//! After an insertion, the inserted step may still meet the record of the step that used to
//! be at its index with the same keyword; it is then compared with that, which still says
//! honestly what differs.
//!
//! # What is stored
//!
//! After a step finished (ran or hit), `<root>/explain/<identity>.json` holds its key, its
//! [`KeyTrace`], the build args among the RUN's environment, what its parent was (a named
//! step, or a base image with its manifest digest and `SOURCE_DATE_EPOCH`), and for COPY/ADD
//! from the context every selected path with its type, mode, owner, size, content digest and
//! link target. One file per identity (the same record under both of a step's identities),
//! replaced atomically (temp file, fsync, rename), and not rewritten when the key is
//! unchanged, so a no-op rebuild writes nothing. A failed step records nothing: the next
//! build compares with the last build in which the step succeeded. The records hold ENV and
//! build-arg values, so the files are 0600 and the directory 0700.
//!
//! # What a miss says
//!
//! One reason per changed input, in key order: `command changed`, `build arg V changed:
//! "1" → "2"`, `env X added`, `parent step #4 [2/5] COPY ... was rebuilt`, `base image
//! busybox:local changed: sha256:ab… → sha256:cd…`, `SOURCE_DATE_EPOCH changed: unset →
//! 1700000000`, `file app.py changed (content)`, `file new.py added`, `file run.sh changed
//! (mode 644 → 755)`, ... A step with no stored trace says `no earlier build of this step in
//! this store`. Host owners of context files are not part of a key (COPY writes 0:0 unless
//! `--chown`), so an owner change alone never causes a miss; it is listed with the other
//! changes of a file that did change.
//!
//! Reasons end up in the terminal, in `--metadata-file` JSON and in the `--timings` HTML
//! (CI artifacts), so:
//! - the value of a build arg or ENV whose name looks like a secret ([`looks_secret`], as
//!   BuildKit's `SecretsUsedInArgOrEnv` lint) is never shown, only that it changed;
//! - control characters in anything a user controls (file names, names and values, command
//!   text) are escaped (`\n`), so a file name cannot forge a progress line.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::plan::cachekey::{CacheKey, KeyTrace};
use crate::plan::context::{ContextIndex, EntryKind, SourceMatch};
use crate::progress::{BuildEvent, StepFacts};

use super::run::key_hex;
use super::Ctx;

/// Bumped when [`StoredTrace`] changes incompatibly (an old file then reads as "no earlier
/// build" with a note).
const TRACE_VERSION: u32 = 1;

/// At most this many file changes are listed per step; the rest are counted.
const MAX_FILE_REASONS: usize = 12;

/// Values longer than this are shortened in reasons.
const MAX_VALUE_CHARS: usize = 72;

/// The context files a COPY/ADD selected, kept until the step finishes (the per-file facts
/// are only computed when they have to be written or compared).
pub(crate) struct Selection {
    index: Arc<ContextIndex>,
    matches: Vec<SourceMatch>,
    contents: Vec<(String, [u8; 32])>,
}

impl Selection {
    pub(crate) fn new(index: Arc<ContextIndex>, matches: Vec<SourceMatch>, contents: Vec<(String, [u8; 32])>) -> Self {
        Selection {
            index,
            matches,
            contents,
        }
    }

    fn facts(&self) -> BTreeMap<String, FileFacts> {
        let content: HashMap<&str, &[u8; 32]> = self.contents.iter().map(|(r, h)| (r.as_str(), h)).collect();
        let mut out = BTreeMap::new();
        for rel in self.matches.iter().flat_map(|m| m.entries.iter()) {
            let Some(e) = self.index.get(rel) else { continue };
            out.insert(
                rel.clone(),
                FileFacts {
                    kind: match e.kind {
                        EntryKind::File => 'f',
                        EntryKind::Dir => 'd',
                        EntryKind::Symlink => 'l',
                        EntryKind::Other => 'o',
                    },
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    size: e.size,
                    sha256: content.get(rel.as_str()).map(hex::encode),
                    link: e.link_target.clone(),
                },
            );
        }
        out
    }
}

/// One selected context path, as stored (short field names: a big context has many).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileFacts {
    #[serde(rename = "k")]
    kind: char,
    #[serde(rename = "m")]
    mode: u32,
    #[serde(rename = "u")]
    uid: u32,
    #[serde(rename = "g")]
    gid: u32,
    #[serde(rename = "s")]
    size: u64,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// A base image a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BaseFacts {
    /// As written after FROM (`busybox:local`, `scratch`).
    pub image: String,
    /// Its manifest digest (`None` for scratch).
    pub manifest: Option<String>,
    /// `SOURCE_DATE_EPOCH` of the build: a field of the base key (the root of every key
    /// chain), so a change of it alone makes every step miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
}

/// What a step's parent was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ParentFacts {
    /// Display name of the parent step (`[2/5] COPY ...`), empty when unknown.
    name: String,
    /// Set when the parent is a stage's base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<BaseFacts>,
}

/// `<root>/explain/<identity>.json`. `version` and `key` come first so a reader can check
/// the key from the file's first bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTrace {
    version: u32,
    key: String,
    name: String,
    trace: KeyTrace,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    parent: ParentFacts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<BTreeMap<String, FileFacts>>,
}

/// Where a step's instruction comes from: what its identities are made of (module docs).
pub(crate) struct StepSource<'a> {
    /// The stage's display name (`build`, `stage-1`).
    pub stage: &'a str,
    /// The instruction's index among the stage's (`3`) or the ONBUILD triggers
    /// (`onbuild:0`, `onbuild-image:0`).
    pub item: &'a str,
    /// `RUN`, `COPY`, ...
    pub keyword: &'a str,
    /// The instruction as written (unexpanded, continuations joined).
    pub text: &'a str,
}

/// What this build knows about one step so far.
struct Note {
    /// Identity by text, then by position (see the module docs); empty for a FROM.
    idents: Vec<String>,
    stage: String,
    name: String,
    args: Vec<String>,
    key: Option<CacheKey>,
    base: Option<BaseFacts>,
    selection: Option<Selection>,
    bytes_hashed: u64,
    missed: bool,
    /// For a hit whose key differs from the last build of the step (`--explain` only): the
    /// first step up its parent chain whose own inputs changed, and how, so a step that runs
    /// because of it can name the root cause.
    cause: Option<(u32, Vec<String>)>,
}

#[derive(Default)]
struct State {
    notes: HashMap<u32, Note>,
    /// Key digest → the step of this build that produced it first.
    by_key: HashMap<String, u32>,
    /// (stage, origin kind, text) → how many steps with that text began so far.
    seen_text: HashMap<(String, String, String), u32>,
}

/// Collects the keys of one build, explains misses, and records traces for the next build.
pub(crate) struct Explainer {
    dir: PathBuf,
    enabled: bool,
    origin: String,
    state: Mutex<State>,
}

impl Explainer {
    /// For a build of `dockerfile` in `context`, storing traces under `<root>/explain`;
    /// reasons are computed and sent only when `enabled`.
    pub(crate) fn new(root: &Path, context: &Path, dockerfile: &Path, enabled: bool) -> Self {
        let ctx_abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let df_abs = std::fs::canonicalize(dockerfile).unwrap_or_else(|_| dockerfile.to_path_buf());
        let df_rel = df_abs.strip_prefix(&ctx_abs).map(Path::to_path_buf).unwrap_or(df_abs);
        let origin = format!("{}\0{}", ctx_abs.display(), df_rel.display());
        Explainer {
            dir: root.join("explain"),
            enabled,
            origin,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Identity by position: `item` is the instruction's index (`3`, `onbuild:0`).
    fn identity(&self, stage: &str, item: &str, keyword: &str) -> String {
        hash_parts(&[self.origin.as_str(), stage, item, keyword])
    }

    /// Identity by text: the `nth` step (from 0) of the stage with this text and origin kind.
    /// Five parts, the positional one four: the two never collide.
    fn text_identity(&self, stage: &str, kind: &str, text: &str, nth: u32) -> String {
        hash_parts(&[self.origin.as_str(), stage, kind, text, &nth.to_string()])
    }

    /// A stage's FROM step: its key is the stage's starting key. `base` is set for a base
    /// image (or scratch), `None` for a base stage. Sends the step's facts.
    pub(crate) fn base(&self, ctx: &Ctx<'_>, id: u32, stage: &str, name: &str, key: &str, base: Option<BaseFacts>) {
        {
            let mut st = self.lock();
            st.by_key.entry(key.to_string()).or_insert(id);
            st.notes.insert(
                id,
                Note {
                    idents: Vec::new(),
                    stage: stage.to_string(),
                    name: name.to_string(),
                    args: Vec::new(),
                    key: None,
                    base,
                    selection: None,
                    bytes_hashed: 0,
                    missed: false,
                    cause: None,
                },
            );
        }
        let facts = StepFacts {
            stage: stage.to_string(),
            base: true,
            cache_key: Some(key.to_string()),
            ..Default::default()
        };
        ctx.progress.send(BuildEvent::StepFacts { id, facts });
    }

    /// A step with a key starts: `src` says where its instruction comes from, `args` are
    /// the build args among its environment.
    pub(crate) fn begin(&self, id: u32, src: StepSource<'_>, name: &str, args: Vec<String>) {
        let StepSource { stage, item, keyword, text } = src;
        // `onbuild:3`, `onbuild-image:0` → `onbuild`, `onbuild-image`; a stage's own `3` → `stage`.
        let kind = item.split_once(':').map_or("stage", |(k, _)| k);
        let mut st = self.lock();
        let seen = st
            .seen_text
            .entry((stage.to_string(), kind.to_string(), text.to_string()))
            .or_insert(0);
        let nth = *seen;
        *seen += 1;
        let idents = vec![
            self.text_identity(stage, kind, text, nth),
            self.identity(stage, item, keyword),
        ];
        st.notes.insert(
            id,
            Note {
                idents,
                stage: stage.to_string(),
                name: name.to_string(),
                args,
                key: None,
                base: None,
                selection: None,
                bytes_hashed: 0,
                missed: false,
                cause: None,
            },
        );
    }

    /// The step's key is known (before the cache is asked).
    pub(crate) fn key(&self, id: u32, key: &CacheKey, selection: Option<Selection>, bytes_hashed: u64) {
        let mut st = self.lock();
        st.by_key.entry(key.digest.clone()).or_insert(id);
        if let Some(n) = st.notes.get_mut(&id) {
            n.key = Some(key.clone());
            n.selection = selection;
            n.bytes_hashed = bytes_hashed;
        }
    }

    /// The step missed the cache and is about to run: with `--explain`, say why.
    pub(crate) fn miss(&self, ctx: &Ctx<'_>, id: u32) {
        let reasons = {
            let mut st = self.lock();
            match st.notes.get_mut(&id) {
                Some(n) => n.missed = true,
                None => return,
            }
            if !self.enabled {
                return;
            }
            let st: &State = &st;
            let Some(n) = st.notes.get(&id) else { return };
            if ctx.opts.no_cache {
                vec!["--no-cache was given".to_string()]
            } else {
                let (mut own, parent) = self.reasons(st, n);
                own.extend(parent);
                if own.is_empty() {
                    own.push("its inputs changed".into());
                }
                own
            }
        };
        // Each reason is one line of output, whatever a file or variable is called.
        let reasons = reasons.iter().map(|r| escape_controls(r)).collect();
        ctx.progress.send(BuildEvent::StepExplain { id, reasons });
    }

    /// The step failed: send what is known of it (its stage, and its key and bytes hashed when
    /// it got that far) so reports place it in its stage; nothing is recorded for the next build.
    pub(crate) fn failed(&self, ctx: &Ctx<'_>, id: u32, stage: &str) {
        let facts = {
            let st = self.lock();
            let n = st.notes.get(&id);
            StepFacts {
                stage: stage.to_string(),
                cache_key: n.and_then(|n| n.key.as_ref()).map(|k| k.digest.clone()),
                bytes_hashed: n.map_or(0, |n| n.bytes_hashed),
                ..Default::default()
            }
        };
        ctx.progress.send(BuildEvent::StepFacts { id, facts });
    }

    /// The step finished (ran or hit): record its trace for the next build and send its facts.
    pub(crate) fn finish(&self, ctx: &Ctx<'_>, id: u32) {
        let (stored, paths, facts) = {
            let mut st = self.lock();
            let Some(n) = st.notes.get(&id) else { return };
            let Some(key) = &n.key else { return };
            let paths: Vec<PathBuf> = n
                .idents
                .iter()
                .map(|i| self.dir.join(format!("{i}.json")))
                .filter(|p| !stored_key_is(p, &key.digest))
                .collect();
            let unchanged = paths.is_empty();
            let same_as_last = self.record_path(n).is_some_and(|p| stored_key_is(&p, &key.digest));
            if unchanged || same_as_last {
                // Nothing to explain; the facts still go out.
            } else if !n.missed && self.enabled {
                let (own, _) = self.reasons(&st, n);
                let cause = if own.is_empty() {
                    parent_of(&st, key)
                        .and_then(|(pid, _)| st.notes.get(&pid))
                        .and_then(|p| p.cause.clone())
                } else {
                    Some((id, own))
                };
                if let Some(n) = st.notes.get_mut(&id) {
                    n.cause = cause;
                }
            }
            let Some(n) = st.notes.get(&id) else { return };
            let Some(key) = &n.key else { return };
            let parent = parent_of(&st, key);
            let stored = StoredTrace {
                version: TRACE_VERSION,
                key: key.digest.clone(),
                name: n.name.clone(),
                trace: key.trace.clone(),
                args: n.args.clone(),
                parent: parent.map(|(_, p)| p).unwrap_or_default(),
                files: None,
            };
            let mut facts = StepFacts {
                stage: n.stage.clone(),
                cache_key: Some(key.digest.clone()),
                bytes_hashed: n.bytes_hashed,
                ..Default::default()
            };
            if let Some(rec) = ctx.store.cache_get(key_hex(&key.digest)) {
                if let Some(l) = &rec.layer {
                    facts.layer_digest = Some(l.digest.to_string());
                    facts.layer_size = Some(l.size);
                    facts.layer_uncompressed_size =
                        rec.extra.get(super::report::UNCOMPRESSED_SIZE).and_then(|v| v.as_u64());
                }
            }
            (if unchanged { None } else { Some(stored) }, paths, facts)
        };
        ctx.progress.send(BuildEvent::StepFacts { id, facts });
        let Some(stored) = stored else { return };
        let mut stored = stored;
        // Only now (a changed key) are the per-file facts worth computing.
        stored.files = self
            .lock()
            .notes
            .get(&id)
            .and_then(|n| n.selection.as_ref())
            .map(Selection::facts);
        let r = self
            .private_dir()
            .and_then(|()| serde_json::to_vec(&stored).map_err(|e| e.to_string()))
            .and_then(|bytes| {
                paths
                    .iter()
                    .try_for_each(|p| ctx.store.write_atomic_private(p, &bytes).map_err(|e| e.to_string()))
            });
        if let Err(e) = r {
            ctx.progress.warn(format!(
                "could not record the inputs of step {} for --explain: {e}",
                stored.name
            ));
        }
    }

    /// The record `n` is compared with: by text first, then by position (module docs).
    fn record_path(&self, n: &Note) -> Option<PathBuf> {
        n.idents
            .iter()
            .map(|i| self.dir.join(format!("{i}.json")))
            .find(|p| p.is_file())
    }

    /// `<root>/explain`, created 0700 (also when an older rbuild made it 0755): the records
    /// hold ENV and build-arg values.
    fn private_dir(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("{}: {e}", self.dir.display()))
    }

    /// Why `n`'s key differs from the last build of the step: its own changed inputs, and
    /// (separately, it goes last) what about its parent changed.
    fn reasons(&self, st: &State, n: &Note) -> (Vec<String>, Option<String>) {
        let Some(key) = &n.key else {
            return (vec!["its key was not computed".into()], None);
        };
        let found = self.record_path(n).and_then(|p| std::fs::read(p).ok());
        let old: StoredTrace = match found {
            None => return (vec!["no earlier build of this step in this store".into()], None),
            Some(b) => match serde_json::from_slice::<StoredTrace>(&b) {
                Ok(t) if t.version == TRACE_VERSION => t,
                _ => {
                    let why = "no readable record of an earlier build of this step (made by another rbuild version?)";
                    return (vec![why.into()], None);
                }
            },
        };
        if old.key == key.digest {
            return (
                vec!["same inputs as the last build, but its cache record is gone (pruned?)".into()],
                None,
            );
        }
        let mut out = Vec::new();
        if old.trace.kind != key.trace.kind {
            out.push(format!(
                "the kind of step changed ({} → {})",
                old.trace.kind, key.trace.kind
            ));
            return (out, None);
        }
        let mut parent = None;
        for name in key.trace.changed_fields(&old.trace) {
            let new_v = field(&key.trace, &name);
            let old_v = field(&old.trace, &name);
            match name.as_str() {
                // Last: the step's own changes say more than "an earlier step changed".
                "parent" => parent = Some(parent_reason(st, key, &old.parent)),
                "argv" => out.push(command_reason(old_v, new_v)),
                "heredocs" => out.push("heredoc content changed".into()),
                "env" => env_reasons(old_v, new_v, &n.args, &old.args, &mut out),
                "content" => {
                    let new_files = n.selection.as_ref().map(Selection::facts);
                    file_reasons(old.files.as_ref(), new_files.as_ref(), &mut out)
                }
                "from-key" => out.push(from_reason(st, key, old_v, new_v)),
                "user" => out.push(format!("USER changed: {} → {}", user(old_v), user(new_v))),
                "workdir" => out.push(format!("WORKDIR changed: {} → {}", show(old_v), show(new_v))),
                "network" => out.push(format!("network changed: {} → {}", show(old_v), show(new_v))),
                "sources" => out.push(format!("sources changed: {} → {}", show(old_v), show(new_v))),
                "dest" => out.push(format!("destination changed: {} → {}", show(old_v), show(new_v))),
                "path" => out.push(format!("path changed: {} → {}", show(old_v), show(new_v))),
                other => out.push(format!("{other} changed: {} → {}", show(old_v), show(new_v))),
            }
        }
        (out, parent)
    }
}

/// True when the file at `path` records `key` (read from the first bytes only).
fn stored_key_is(path: &Path, key: &str) -> bool {
    let Ok(f) = std::fs::File::open(path) else { return false };
    let mut head = vec![0u8; 256];
    let mut n = 0;
    let mut f = f;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    let want = format!("{{\"version\":{TRACE_VERSION},\"key\":\"{key}\"");
    head[..n].starts_with(want.as_bytes())
}

fn field<'a>(t: &'a KeyTrace, name: &str) -> &'a [String] {
    t.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.values.as_slice())
        .unwrap_or(&[])
}

fn parent_of(st: &State, key: &CacheKey) -> Option<(u32, ParentFacts)> {
    let parent = field(&key.trace, "parent").first()?;
    let id = *st.by_key.get(parent)?;
    let n = st.notes.get(&id)?;
    Some((
        id,
        ParentFacts {
            name: n.name.clone(),
            base: n.base.clone(),
        },
    ))
}

fn parent_reason(st: &State, key: &CacheKey, old: &ParentFacts) -> String {
    let Some((id, new)) = parent_of(st, key) else {
        return "the parent step changed".into();
    };
    match (&old.base, &new.base) {
        (Some(ob), Some(nb)) if ob != nb => {
            let mut how = Vec::new();
            if ob.image != nb.image {
                how.push(format!(
                    "base image changed: {} ({}) → {} ({})",
                    ob.image,
                    short_digest(ob.manifest.as_deref()),
                    nb.image,
                    short_digest(nb.manifest.as_deref())
                ));
            } else if ob.manifest != nb.manifest {
                how.push(format!(
                    "base image {} changed: {} → {}",
                    nb.image,
                    short_digest(ob.manifest.as_deref()),
                    short_digest(nb.manifest.as_deref())
                ));
            }
            if ob.source_date_epoch != nb.source_date_epoch {
                let show = |t: Option<i64>| t.map_or_else(|| "unset".to_string(), |t| t.to_string());
                how.push(format!(
                    "SOURCE_DATE_EPOCH changed: {} → {}",
                    show(ob.source_date_epoch),
                    show(nb.source_date_epoch)
                ));
            }
            how.join("; ")
        }
        (_, Some(nb)) => format!("the parent is now the base image {} (was {})", nb.image, old.name),
        (_, None) => {
            let n = st.notes.get(&id);
            if n.is_some_and(|n| n.missed) {
                format!("parent step #{id} {} was rebuilt", new.name)
            } else if let Some((cid, why)) = n.and_then(|n| n.cause.as_ref()) {
                let cause = st.notes.get(cid).map(|c| c.name.as_str()).unwrap_or("");
                if *cid == id {
                    format!(
                        "parent step #{id} {} changed ({}); it was found in the cache",
                        new.name,
                        why.join("; ")
                    )
                } else {
                    format!(
                        "parent step #{id} {} came from the cache but an earlier step changed: #{cid} {cause} ({})",
                        new.name,
                        why.join("; ")
                    )
                }
            } else {
                format!(
                    "parent step #{id} {} differs from the last build of this step (it came from the cache)",
                    new.name
                )
            }
        }
    }
}

fn from_reason(st: &State, key: &CacheKey, old: &[String], new: &[String]) -> String {
    let source = field(&key.trace, "from").first().map(String::as_str).unwrap_or("");
    if source == "stage" {
        if let Some(id) = new.first().and_then(|k| st.by_key.get(k)) {
            if let Some(n) = st.notes.get(id) {
                let how = if n.missed { "was rebuilt" } else { "changed" };
                return format!("the source stage changed: its last step #{id} {} {how}", n.name);
            }
        }
        return "the source stage changed".into();
    }
    format!(
        "the --from image changed: {} → {}",
        short_digest(old.first().map(String::as_str)),
        short_digest(new.first().map(String::as_str))
    )
}

fn command_reason(old: &[String], new: &[String]) -> String {
    // Shell form: the shell is the same, only the script differs: show the scripts.
    let (o, n) = if old.len() == new.len() && !old.is_empty() && old[..old.len() - 1] == new[..new.len() - 1] {
        (old[old.len() - 1..].to_vec(), new[new.len() - 1..].to_vec())
    } else {
        (old.to_vec(), new.to_vec())
    };
    format!("command changed: {} → {}", show(&o), show(&n))
}

fn env_reasons(old: &[String], new: &[String], new_args: &[String], old_args: &[String], out: &mut Vec<String>) {
    let parse = |v: &[String]| -> BTreeMap<String, String> {
        v.iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    };
    let (o, n) = (parse(old), parse(new));
    let what = |k: &str| {
        if new_args.iter().any(|a| a == k) || old_args.iter().any(|a| a == k) {
            "build arg"
        } else {
            "env"
        }
    };
    for (k, nv) in &n {
        let hide = looks_secret(k);
        let name = escape_controls(k);
        match o.get(k) {
            None if hide => out.push(format!("{} {name} added ({HIDDEN})", what(k))),
            None => out.push(format!("{} {name} added (= {})", what(k), quote(nv))),
            Some(ov) if ov != nv && hide => out.push(format!("{} {name} changed ({HIDDEN})", what(k))),
            Some(ov) if ov != nv => out.push(format!("{} {name} changed: {} → {}", what(k), quote(ov), quote(nv))),
            Some(_) => {}
        }
    }
    for (k, ov) in &o {
        if !n.contains_key(k) {
            let name = escape_controls(k);
            if looks_secret(k) {
                out.push(format!("{} {name} removed ({HIDDEN})", what(k)));
            } else {
                out.push(format!("{} {name} removed (was {})", what(k), quote(ov)));
            }
        }
    }
}

/// What a reason says instead of the value of a variable that [`looks_secret`].
const HIDDEN: &str = "value hidden: it looks like a secret; pass secrets with --secret";

/// True when a build arg or ENV name looks like it holds a secret, so `--explain` (whose
/// reasons land in CI logs and artifacts) never shows its value. Close to BuildKit's
/// `SecretsUsedInArgOrEnv` lint (`dockerfile2llb/convert.go`, `getSecretsRegex`): a word
/// (between `_`, `-`, `.` or the ends) that is a secret token, unless a word is `public`
/// (`PUBLIC_KEY`). Unlike the lint, the long tokens also count inside a word (`DBPASSWORD`,
/// `GITHUBTOKEN`): hiding a harmless value costs little, showing a secret costs a rotation.
pub(crate) fn looks_secret(name: &str) -> bool {
    const WORDS: &[&str] = &["key", "auth", "oauth", "pass", "pword", "pat", "jwt"];
    const INSIDE: &[&str] = &[
        "token", "password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey",
        "accesskey", "private_key", "access_key",
    ];
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-', '.']).filter(|w| !w.is_empty()).collect();
    if words.contains(&"public") {
        return false;
    }
    words.iter().any(|w| WORDS.contains(w)) || INSIDE.iter().any(|t| lower.contains(t))
}

/// `s` with every control character (newline, tab, escape, ...) written as Rust's
/// `escape_debug` writes it (`\n`, `\u{1b}`), so it cannot start a line or drive a terminal.
fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn file_reasons(
    old: Option<&BTreeMap<String, FileFacts>>,
    new: Option<&BTreeMap<String, FileFacts>>,
    out: &mut Vec<String>,
) {
    let (Some(old), Some(new)) = (old, new) else {
        out.push("the copied content changed".into());
        return;
    };
    let noun = |f: &FileFacts| match f.kind {
        'd' => "directory",
        'l' => "symlink",
        _ => "file",
    };
    let mut lines = Vec::new();
    for (rel, nf) in new {
        match old.get(rel) {
            None => lines.push(format!("{} {rel} added", noun(nf))),
            Some(of) => {
                let mut how = Vec::new();
                if of.kind != nf.kind {
                    how.push(format!("type {} → {}", noun(of), noun(nf)));
                } else {
                    if of.sha256 != nf.sha256 {
                        how.push("content".to_string());
                    }
                    if of.link != nf.link {
                        how.push(format!(
                            "link target {} → {}",
                            of.link.as_deref().unwrap_or(""),
                            nf.link.as_deref().unwrap_or("")
                        ));
                    }
                }
                if of.mode != nf.mode {
                    how.push(format!("mode {:o} → {:o}", of.mode, nf.mode));
                }
                if !how.is_empty() && (of.uid, of.gid) != (nf.uid, nf.gid) {
                    how.push(format!("owner {}:{} → {}:{}", of.uid, of.gid, nf.uid, nf.gid));
                }
                if !how.is_empty() {
                    lines.push(format!("{} {rel} changed ({})", noun(nf), how.join(", ")));
                }
            }
        }
    }
    for (rel, of) in old {
        if !new.contains_key(rel) {
            lines.push(format!("{} {rel} removed", noun(of)));
        }
    }
    if lines.is_empty() {
        out.push("the copied content changed (inline files or the shape of the selection)".into());
        return;
    }
    let more = lines.len().saturating_sub(MAX_FILE_REASONS);
    out.extend(lines.into_iter().take(MAX_FILE_REASONS));
    if more > 0 {
        out.push(format!("and {more} more changed paths"));
    }
}

fn user(v: &[String]) -> String {
    v.first().cloned().unwrap_or_else(|| "root (unset)".into())
}

fn short_digest(d: Option<&str>) -> String {
    match d {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            format!("sha256:{}", hex.chars().take(12).collect::<String>())
        }
        None => "none".into(),
    }
}

fn quote(v: &str) -> String {
    format!("{:?}", shorten(v))
}

fn show(v: &[String]) -> String {
    match v {
        [] => "(none)".into(),
        [one] => quote(one),
        many => format!("[{}]", many.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")),
    }
}

fn shorten(v: &str) -> String {
    if v.chars().count() <= MAX_VALUE_CHARS {
        return v.to_string();
    }
    let mut s: String = v.chars().take(MAX_VALUE_CHARS - 1).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: char, mode: u32, sha: &str) -> FileFacts {
        FileFacts {
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 1,
            sha256: Some(sha.into()),
            link: None,
        }
    }

    #[test]
    fn file_changes_are_named() {
        let old: BTreeMap<String, FileFacts> = [
            ("a.py".to_string(), facts('f', 0o644, "1")),
            ("b.py".to_string(), facts('f', 0o644, "2")),
            ("gone".to_string(), facts('f', 0o644, "3")),
        ]
        .into();
        let mut new = old.clone();
        new.remove("gone");
        new.insert("a.py".into(), facts('f', 0o644, "9"));
        new.insert(
            "b.py".into(),
            FileFacts {
                uid: 5,
                ..facts('f', 0o755, "2")
            },
        );
        new.insert("c.py".into(), facts('f', 0o644, "4"));
        let mut out = Vec::new();
        file_reasons(Some(&old), Some(&new), &mut out);
        assert_eq!(
            out,
            vec![
                "file a.py changed (content)",
                "file b.py changed (mode 644 → 755, owner 0:0 → 5:0)",
                "file c.py added",
                "file gone removed",
            ]
        );
    }

    #[test]
    fn owner_alone_is_not_listed() {
        let old: BTreeMap<String, FileFacts> = [("a".to_string(), facts('f', 0o644, "1"))].into();
        let new: BTreeMap<String, FileFacts> = [(
            "a".to_string(),
            FileFacts {
                uid: 7,
                ..facts('f', 0o644, "1")
            },
        )]
        .into();
        let mut out = Vec::new();
        file_reasons(Some(&old), Some(&new), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("the copied content changed"), "{out:?}");
    }

    #[test]
    fn many_file_changes_are_counted() {
        let old = BTreeMap::new();
        let new: BTreeMap<String, FileFacts> = (0..20).map(|i| (format!("f{i:02}"), facts('f', 0o644, "x"))).collect();
        let mut out = Vec::new();
        file_reasons(Some(&old), Some(&new), &mut out);
        assert_eq!(out.len(), MAX_FILE_REASONS + 1);
        assert_eq!(
            out.last().unwrap(),
            &format!("and {} more changed paths", 20 - MAX_FILE_REASONS)
        );
    }

    #[test]
    fn env_changes_name_args_and_values() {
        let old = vec!["A=1".to_string(), "PATH=/bin".to_string(), "X=gone".to_string()];
        let new = vec!["A=2".to_string(), "PATH=/bin".to_string(), "Y=new".to_string()];
        let mut out = Vec::new();
        env_reasons(&old, &new, &["A".to_string()], &[], &mut out);
        assert_eq!(
            out,
            vec![
                "build arg A changed: \"1\" → \"2\"",
                "env Y added (= \"new\")",
                "env X removed (was \"gone\")",
            ]
        );
    }

    #[test]
    fn secret_looking_names() {
        for name in [
            "DB_PASSWORD", "npm_token", "GITHUB_TOKEN", "API_KEY", "apikey", "AWS_SECRET_ACCESS_KEY",
            "AUTH", "basic_auth", "DBPASSWORD", "SSH_PRIVATE_KEY", "MY_PASSWD", "credentials", "PASS",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["VERSION", "PATH", "PWD", "AUTHOR", "MONKEY", "KEYBOARD", "PUBLIC_KEY", "HOME", "PASSENGER"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn secret_values_are_never_shown() {
        let old = vec!["DB_PASSWORD=hunter2".to_string(), "OLD_TOKEN=t1".to_string()];
        let new = vec!["DB_PASSWORD=hunter3".to_string(), "NEW_SECRET=s1".to_string()];
        let mut out = Vec::new();
        env_reasons(&old, &new, &["DB_PASSWORD".to_string()], &[], &mut out);
        assert_eq!(
            out,
            vec![
                format!("build arg DB_PASSWORD changed ({HIDDEN})"),
                format!("env NEW_SECRET added ({HIDDEN})"),
                format!("env OLD_TOKEN removed ({HIDDEN})"),
            ]
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\nb\tc\u{1b}[2J é"), "a\\nb\\tc\\u{1b}[2J é");
        assert_eq!(escape_controls("plain → text"), "plain → text");
    }

    #[test]
    fn shell_commands_show_only_the_script() {
        let sh = |c: &str| vec!["/bin/sh".to_string(), "-c".to_string(), c.to_string()];
        assert_eq!(
            command_reason(&sh("make"), &sh("make all")),
            "command changed: \"make\" → \"make all\""
        );
    }

    #[test]
    fn stored_key_prefix_matches_serialization() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let t = StoredTrace {
            version: TRACE_VERSION,
            key: "sha256:abc".into(),
            name: "x".into(),
            trace: KeyTrace::default(),
            args: vec![],
            parent: ParentFacts::default(),
            files: None,
        };
        std::fs::write(&p, serde_json::to_vec(&t).unwrap()).unwrap();
        assert!(stored_key_is(&p, "sha256:abc"));
        assert!(!stored_key_is(&p, "sha256:abd"));
        assert!(!stored_key_is(&dir.path().join("missing"), "sha256:abc"));
    }
}
