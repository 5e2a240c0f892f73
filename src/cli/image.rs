//! Image commands: images, inspect, history, tag, rmi, load, save, import, prune.
//! Each parses its flags, makes one store call, and prints Docker's table or JSON.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::Globals;
use crate::store::{ArchiveFormat, ImageRecord, Reference, Store};

fn open_store(g: &Globals) -> anyhow::Result<Store> {
    let root = g.root_dir();
    Store::open(&root).with_context(|| {
        format!(
            "cannot open the store at {} (set --root or RBUILD_ROOT)",
            root.display()
        )
    })
}

/// Print to stdout, ignoring a closed pipe (`rbuild images | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, $($arg)*);
    }};
}

fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {msg}");
}

/// Columns separated by three spaces, each as wide as its widest cell (Docker's tabwriter).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as i32) + 1
    };
    let decimals = (3 - int_digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

/// Docker's `units.HumanDuration` + " ago", for an RFC 3339 time.
pub fn human_ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "N/A".to_string();
    };
    let d = chrono::Utc::now().signed_duration_since(t);
    let secs = d.num_seconds();
    if secs < 0 {
        return "Less than a second ago".to_string();
    }
    let mins = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    let s = if secs < 1 {
        "Less than a second".to_string()
    } else if secs == 1 {
        "1 second".to_string()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if mins == 1 {
        "About a minute".to_string()
    } else if mins < 60 {
        format!("{mins} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    };
    format!("{s} ago")
}

/// Docker's `history -H=false` time: RFC 3339 in UTC with whole seconds.
fn rfc3339_secs(created: Option<&str>) -> String {
    match created.map(|c| (c, chrono::DateTime::parse_from_rfc3339(c))) {
        Some((_, Ok(t))) => t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Some((c, Err(_))) => c.to_string(),
        None => String::new(),
    }
}

fn short_id(img: &ImageRecord, no_trunc: bool) -> String {
    if no_trunc {
        img.id.to_string()
    } else {
        img.id.short().to_string()
    }
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag); shell patterns as in Docker (`app:*`, `team/*`)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests (of the manifests)
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Accepted for Docker compatibility (there are no intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Filter: dangling=true|false, reference=PATTERN
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
}

/// Go's `path.Match`: `*` (no `/`), `?`, `[...]` classes (`^` negates), `\` escapes.
pub fn path_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed including ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let mut lo = *p.get(i)?;
            if lo == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            if lo == '\\' {
                i += 1;
                lo = *p.get(i)?;
            }
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&c| c != ']') {
                hi = *p.get(i + 1)?;
                if hi == '\\' {
                    hi = *p.get(i + 2)?;
                    i += 1;
                }
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => {
                let rest = &p[1..];
                for k in 0..=n.len() {
                    if go(rest, &n[k..]) {
                        return true;
                    }
                    if k < n.len() && n[k] == '/' {
                        break;
                    }
                }
                false
            }
            Some('?') => n.first().is_some_and(|&c| c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class(&p[1..], c) {
                    Some((true, used)) => go(&p[1 + used..], &n[1..]),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Docker's reference filter: a pattern matches a tag when it matches its familiar name or
/// familiar `name:tag` (as `path.Match`); a pattern without wildcards is a plain reference.
fn tag_matches(pattern: &str, t: &Reference) -> bool {
    if pattern.contains(['*', '?', '[']) {
        return path_match(pattern, &t.familiar_name())
            || path_match(pattern, &t.familiar_tagged());
    }
    let Ok(f) = Reference::parse(pattern) else {
        return false;
    };
    let explicit_tag = pattern
        .rsplit('/')
        .next()
        .is_some_and(|l| l.split('@').next().unwrap_or(l).contains(':'));
    f.domain() == t.domain() && f.path() == t.path() && (!explicit_tag || f.tag() == t.tag())
}

pub fn images(g: &Globals, a: ImagesArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let mut patterns: Vec<String> = a.reference.iter().cloned().collect();
    let mut dangling: Option<bool> = None;
    for f in &a.filter {
        match f.split_once('=') {
            Some(("dangling", v)) => {
                dangling = Some(match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid filter {f:?}: dangling takes true or false"),
                })
            }
            Some(("reference", v)) => patterns.push(v.to_string()),
            _ => bail!("invalid filter {f:?}; supported: dangling=true|false, reference=PATTERN"),
        }
    }
    // A plain reference that does not parse is an error; a pattern is taken as is.
    let mut digest_filter = None;
    for p in &patterns {
        if !p.contains(['*', '?', '[']) {
            let r = Reference::parse(p)?;
            if let Some(d) = r.digest() {
                digest_filter = Some(d.clone());
            }
        }
    }
    let mut imgs = store.list_images()?;
    imgs.sort_by(|x, y| y.config.created.cmp(&x.config.created));
    let mut rows = Vec::new();
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    rows.push(header.into_iter().map(String::from).collect::<Vec<_>>());
    let mut ids: Vec<String> = Vec::new();
    for img in &imgs {
        if dangling.is_some_and(|d| d != img.tags.is_empty()) {
            continue;
        }
        if digest_filter.as_ref().is_some_and(|d| !img.has_manifest(d)) {
            continue;
        }
        let mut names: Vec<(String, String)> = Vec::new();
        for t in &img.tags {
            if !patterns.iter().all(|p| tag_matches(p, t)) {
                continue;
            }
            names.push((t.familiar_name(), t.tag().unwrap_or("latest").to_string()));
        }
        if img.tags.is_empty() && patterns.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            let id = short_id(img, a.no_trunc);
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(img.manifest_desc.digest.to_string());
            }
            row.extend([
                id,
                human_ago(img.config.created.as_deref()),
                human_size(img.size()),
            ]);
            rows.push(row);
        }
    }
    if a.quiet {
        for id in ids {
            out!("{id}");
        }
    } else {
        let _ = std::io::stdout().lock().write_all(table(&rows).as_bytes());
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Images (name[:tag], name@digest, or ID)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// The `docker inspect`-like JSON object of one image (fields in Docker's order).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectImage<'a> {
    id: &'a crate::store::Digest,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: &'static str,
    comment: String,
    created: String,
    author: String,
    config: crate::store::ContainerConfig,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    size: u64,
    #[serde(rename = "RootFS")]
    root_fs: InspectRootFs<'a>,
    manifest: InspectManifest<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectRootFs<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    layers: &'a [crate::store::Digest],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectManifest<'a> {
    digest: &'a crate::store::Digest,
    media_type: &'a str,
    size: u64,
    layers: Vec<InspectLayer<'a>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectLayer<'a> {
    digest: &'a crate::store::Digest,
    size: u64,
    media_type: &'a str,
}

/// The `docker inspect`-like JSON object of one image.
fn inspect_doc(img: &ImageRecord) -> InspectImage<'_> {
    let mut repo_digests: Vec<String> = Vec::new();
    for t in &img.tags {
        let d = format!("{}@{}", t.familiar_name(), img.manifest_desc.digest);
        if !repo_digests.contains(&d) {
            repo_digests.push(d);
        }
    }
    let c = &img.config;
    InspectImage {
        id: &img.id,
        repo_tags: img.tags.iter().map(|t| t.familiar_tagged()).collect(),
        repo_digests,
        parent: "",
        comment: c
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default(),
        created: c.created.clone().unwrap_or_default(),
        author: c.author.clone().unwrap_or_default(),
        config: c.config.clone().unwrap_or_default(),
        architecture: &c.architecture,
        variant: c.variant.as_deref(),
        os: &c.os,
        size: img.size(),
        root_fs: InspectRootFs {
            kind: &c.rootfs.kind,
            layers: &c.rootfs.diff_ids,
        },
        manifest: InspectManifest {
            digest: &img.manifest_desc.digest,
            media_type: &img.manifest_desc.media_type,
            size: img.manifest_desc.size,
            layers: img
                .manifest
                .layers
                .iter()
                .map(|l| InspectLayer {
                    digest: &l.digest,
                    size: l.size,
                    media_type: &l.media_type,
                })
                .collect(),
        },
    }
}

fn pretty<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}

pub fn inspect(g: &Globals, a: InspectArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    // Like Docker: the JSON of the images found, then an error for each one that is not.
    let mut imgs = Vec::new();
    let mut errors = Vec::new();
    for n in &a.images {
        match store.resolve(n) {
            Ok(img) => imgs.push(img),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let docs: Vec<InspectImage> = imgs.iter().map(inspect_doc).collect();
    out!("{}", pretty(&docs)?);
    if errors.is_empty() {
        Ok(0)
    } else {
        bail!("{}", errors.join("; "))
    }
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The image
    image: String,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
}

pub fn history(g: &Globals, a: HistoryArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let img = store.resolve(&a.image)?;
    // Uncompressed layer sizes, as Docker shows them.
    let mut layers = img.layer_sizes.iter();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for h in &img.config.history {
        let size = if h.empty_layer {
            0
        } else {
            layers.next().copied().unwrap_or(0)
        };
        let created_by = h
            .created_by
            .clone()
            .unwrap_or_default()
            .replace(['\t', '\n'], " ");
        let created_by = if a.no_trunc || created_by.chars().count() <= 45 {
            created_by
        } else {
            format!("{}…", created_by.chars().take(44).collect::<String>())
        };
        let created = if a.human {
            human_ago(h.created.as_deref())
        } else {
            rfc3339_secs(h.created.as_deref())
        };
        let size = if a.human {
            human_size(size)
        } else {
            size.to_string()
        };
        rows.push(vec![
            "<missing>".into(),
            created,
            created_by,
            size,
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = short_id(&img, a.no_trunc);
    }
    if a.quiet {
        for r in rows {
            out!("{}", r[0]);
        }
        return Ok(0);
    }
    rows.insert(
        0,
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let _ = std::io::stdout().lock().write_all(table(&rows).as_bytes());
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// Existing image (name[:tag] or ID)
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// New name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub fn tag(g: &Globals, a: TagArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let target = Reference::parse(&a.target)?;
    if target.digest().is_some() {
        bail!(
            "cannot tag with a digest reference {}; use name:tag",
            a.target
        );
    }
    let img = store.resolve(&a.source)?;
    store.tag(&img.manifest_desc, &target)?;
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images to remove (names untag; an ID removes every tag of that image)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Remove an image by ID even when several names refer to it
    #[arg(short, long)]
    force: bool,
}

pub fn rmi(g: &Globals, a: RmiArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let mut failed = Vec::new();
    for name in &a.images {
        match rmi_one(&store, name, a.force) {
            Ok(lines) => {
                for l in lines {
                    out!("{l}");
                }
            }
            Err(e) => {
                let msg = super::render_error(&e);
                // Say the name once: most errors name it already.
                if msg.contains(name.as_str()) {
                    failed.push(msg)
                } else {
                    failed.push(format!("{name}: {msg}"))
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        bail!("{}", failed.join("; "))
    }
}

fn rmi_one(store: &Store, name: &str, force: bool) -> anyhow::Result<Vec<String>> {
    if !force {
        super::container::refuse_untag_in_use(store, name)?;
    }
    if let Ok(r) = Reference::parse(name) {
        if r.digest().is_none() {
            if let Ok(desc) = store.untag(&r) {
                let mut lines = vec![format!("Untagged: {}", r.familiar_tagged())];
                // The image's last name gone: the image is gone, as Docker says.
                if let Ok(img) = store.image(&desc) {
                    let still = store.list_images()?.iter().any(|i| i.id == img.id);
                    if !still {
                        lines.push(format!("Deleted: {}", img.id));
                    }
                }
                return Ok(lines);
            }
        }
    }
    let img = store.resolve(name)?;
    let repos: std::collections::BTreeSet<String> =
        img.tags.iter().map(|t| t.full_name()).collect();
    if repos.len() > 1 && !force {
        bail!(
            "image {} is referenced in {} repositories; remove the names one by one or use -f",
            img.id.short(),
            repos.len()
        );
    }
    // One ID is one image: every manifest with this config goes.
    let removed = store.remove_image_id(&img.id)?;
    let mut lines: Vec<String> = removed
        .iter()
        .map(|t| format!("Untagged: {}", t.familiar_tagged()))
        .collect();
    lines.push(format!("Deleted: {}", img.id));
    Ok(lines)
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from a tar archive file (plain or gzip), instead of stdin
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(g: &Globals, a: LoadArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    // Ctrl-C / SIGTERM: stop staging, remove the staging dir, add no tag.
    let cancel = crate::build::Cancel::new();
    cancel
        .on_signals()
        .context("installing the signal handler for load")?;
    let stop = || cancel.is_cancelled();
    let report = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
            store.load_from_cancellable(f, &p.display().to_string(), &stop)?
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is a terminal; use -i FILE or pipe an archive in");
            }
            store.load_from_cancellable(stdin.lock(), "stdin", &stop)?
        }
    };
    for w in &report.warnings {
        warn(w);
    }
    if !a.quiet {
        for img in &report.images {
            if img.tags.is_empty() {
                out!("Loaded image ID: {}", img.id);
            }
            for t in &img.tags {
                out!("Loaded image: {}", t.familiar_tagged());
            }
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Images to save (names or IDs)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Write to a file, instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// docker-archive (what `docker load`/`podman load` take) or oci-archive
    #[arg(long, default_value = "docker-archive", value_parser = ["docker-archive", "oci-archive", "docker", "oci"])]
    format: String,
}

pub fn save(g: &Globals, a: SaveArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let format = if a.format.starts_with("oci") {
        ArchiveFormat::Oci
    } else {
        ArchiveFormat::Docker
    };
    match &a.output {
        Some(p) if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') => {
            bail!(
                "-o must name a file, not a directory ({}); e.g. -o {}",
                p.display(),
                p.join("image.tar").display()
            )
        }
        Some(p) => store.save_to_path(&a.images, format, p)?,
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout");
            }
            let mut w = std::io::BufWriter::new(stdout.lock());
            store.save(&a.images, format, &mut w)?;
            w.flush().context("writing the archive to stdout")?;
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Root file system tar (plain or gzip); `-` reads stdin
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
    /// Name for the image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Commit message for the imported image
    #[arg(short, long)]
    message: Option<String>,
}

pub fn import(g: &Globals, a: ImportArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    let r = a.reference.as_deref().map(Reference::parse).transpose()?;
    if r.as_ref().is_some_and(|r| r.digest().is_some()) {
        bail!("cannot import as a digest reference; use name:tag");
    }
    let img = if a.file.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!("requested import from stdin, but stdin is a terminal; pipe a tar in or give a file");
        }
        store.import_from(stdin.lock(), "stdin", "-", r.as_ref(), a.message.as_deref())?
    } else {
        store.import_rootfs(&a.file, r.as_ref(), a.message.as_deref())?
    };
    out!("{}", img.id);
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Also drop the build cache
    #[arg(short, long)]
    all: bool,
    /// Accepted for Docker compatibility (prune never asks)
    #[arg(short, long)]
    force: bool,
}

pub fn prune(g: &Globals, a: PruneArgs) -> anyhow::Result<u8> {
    let store = open_store(g)?;
    // Containers mount image snapshots as overlay lower dirs: keep those.
    let in_use = crate::container::Containers::open(store.root())?.lower_dirs_in_use()?;
    let r = store.prune(a.all, &in_use)?;
    for b in &r.blobs {
        out!("deleted blob: {b}");
    }
    for s in &r.snapshots {
        out!("deleted snapshot: sha256:{s}");
    }
    if r.untagged_images > 0 {
        out!("dropped untagged images: {}", r.untagged_images);
    }
    if r.cache_records > 0 {
        out!("dropped build cache records: {}", r.cache_records);
    }
    if r.staging_dirs > 0 {
        out!("removed stale staging dirs: {}", r.staging_dirs);
    }
    if r.pooled_files > 0 {
        out!("removed pooled files no layer links: {}", r.pooled_files);
    }
    out!("Total reclaimed space: {}", human_size(r.bytes));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(2_129_920), "2.13MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn path_match_like_go() {
        assert!(path_match("app:*", "app:1"));
        assert!(!path_match("app:*", "app"));
        assert!(path_match("team/*", "team/web"));
        assert!(!path_match("team/*", "team/a/b"));
        assert!(path_match("a?c", "abc"));
        assert!(path_match("[a-c]x", "bx"));
        assert!(!path_match("[^a-c]x", "bx"));
        assert!(path_match("\\*", "*"));
    }

    #[test]
    fn table_pads_all_but_the_last_column() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["aaa".into(), "b".into(), "c".into()],
        ]);
        assert_eq!(t, "A     BB   C\naaa   b    c\n");
    }
}
