//! `rbuild build` (and the bare `rbuild [OPTIONS] PATH`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use super::Globals;
use crate::build::report::BuildReport;
use crate::build::{self, BuildOptions, CacheMode, CacheTo, Cancel, Network, Output, OutputFormat};
use crate::progress::{EventLog, ProgressMode, Renderer};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build context directory, or - for a tar (optionally gzip) on stdin
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name and optionally a tag (name:tag); may be given several times
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Dockerfile (default: PATH/Dockerfile; - reads it from stdin)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Build this stage and what it needs (default: the last stage)
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress output: auto, plain, tty, quiet
    #[arg(long, default_value = "auto", value_name = "TYPE")]
    pub progress: ProgressMode,
    /// Default network of RUN steps: host or none
    #[arg(long, default_value = "host", value_name = "MODE")]
    pub network: String,
    /// Also write the image as an archive: type=oci|docker,dest=FILE
    #[arg(short = 'o', long, value_name = "type=oci|docker,dest=FILE")]
    pub output: Option<String>,
    /// Say why each step that missed the cache did (also RBUILD_EXPLAIN=1; empty, 0, false,
    /// no or off leave it off)
    #[arg(long, env = "RBUILD_EXPLAIN", value_parser = parse_switch)]
    pub explain: bool,
    /// Write an HTML report of where the build spent its time (default: rbuild-timings.html)
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "rbuild-timings.html"
    )]
    pub timings: Option<PathBuf>,
    /// Write the image digests and per-step timings and sizes as JSON
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Import build cache from a directory written by --cache-to (may be given several times)
    #[arg(long = "cache-from", value_name = "type=local,src=DIR")]
    pub cache_from: Vec<String>,
    /// Export the build cache to a directory (min: the final image's steps; max: every step)
    #[arg(long = "cache-to", value_name = "type=local,dest=DIR[,mode=min|max]")]
    pub cache_to: Option<String>,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (id=ID alone:
    /// the variable ID, else the file ID); may be given several times
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    pub secrets: Vec<String>,
    /// An ssh-agent for RUN --mount=type=ssh: `default` (the agent at $SSH_AUTH_SOCK) or
    /// ID=SOCKET; may be given several times
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
}

/// An on/off environment variable such as `RBUILD_EXPLAIN`: empty (how CI files often
/// "unset" a variable) is off, as are 0/false/no/off; 1/true/yes/on are on, in any case.
fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err("expected 1, true, yes or on (or empty, 0, false, no or off)".into()),
    }
}

/// `key=value` pairs of a `--cache-*` value; `type=` must come with one of them.
fn cache_fields(flag: &str, s: &str, allowed: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut fields = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("invalid {flag} {s:?}: {part:?} is not key=value")
        };
        if fields.insert(k.to_string(), v.to_string()).is_some() {
            bail!("invalid {flag} {s:?}: {k}= is given twice");
        }
    }
    match fields.get("type").map(String::as_str) {
        Some("local") => {}
        Some(t @ ("registry" | "inline" | "gha" | "s3" | "azblob")) => {
            bail!("{flag} type={t} is not supported yet: use type=local with a directory (and let CI cache that directory)")
        }
        Some(t) => bail!("{flag} type={t} is unknown: use type=local"),
        None => bail!("invalid {flag} {s:?}: type= is missing, e.g. type=local"),
    }
    if let Some(k) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        bail!("invalid {flag} {s:?}: unknown key {k:?} (known: {})", allowed.join(", "));
    }
    Ok(fields)
}

fn parse_cache_from(s: &str) -> anyhow::Result<PathBuf> {
    let f = cache_fields("--cache-from", s, &["type", "src"])?;
    match f.get("src").filter(|d| !d.is_empty()) {
        Some(d) => Ok(PathBuf::from(d)),
        None => bail!("invalid --cache-from {s:?}: src= is missing, e.g. type=local,src=/tmp/cache"),
    }
}

fn parse_cache_to(s: &str) -> anyhow::Result<CacheTo> {
    let f = cache_fields("--cache-to", s, &["type", "dest", "mode"])?;
    let Some(dest) = f.get("dest").filter(|d| !d.is_empty()) else {
        bail!("invalid --cache-to {s:?}: dest= is missing, e.g. type=local,dest=/tmp/cache")
    };
    let mode = match f.get("mode").map(String::as_str) {
        None | Some("min") => CacheMode::Min,
        Some("max") => CacheMode::Max,
        Some(m) => bail!("invalid --cache-to {s:?}: mode={m} is unknown; use mode=min or mode=max"),
    };
    Ok(CacheTo { dest: PathBuf::from(dest), mode })
}

fn parse_output(s: &str) -> anyhow::Result<Output> {
    let mut format = None;
    let mut dest = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", "oci")) => format = Some(OutputFormat::Oci),
            Some(("type", "docker")) => format = Some(OutputFormat::Docker),
            Some(("type", t)) => bail!("--output type={t} is not supported: use type=oci or type=docker"),
            Some(("dest", d)) => dest = Some(PathBuf::from(d)),
            _ => bail!("invalid --output {s:?}: expected type=oci|docker,dest=FILE"),
        }
    }
    match (format, dest) {
        (Some(format), Some(dest)) => Ok(Output { format, dest }),
        _ => bail!("invalid --output {s:?}: both type= and dest= are needed, e.g. type=oci,dest=app.tar"),
    }
}

pub fn run(g: &Globals, a: BuildArgs) -> anyhow::Result<u8> {
    let cancel = Cancel::new();
    cancel
        .on_signals_then(|| {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("build cancelled (second signal): temporary files were removed");
            }
        })
        .context("installing the signal handler")?;

    let root = g.root_dir();
    let store = Store::open(&root).with_context(|| format!("opening the store at {}", root.display()))?;
    let ctx_from_stdin = a.context.as_os_str() == "-";
    let df_from_stdin = a.file.as_ref().is_some_and(|f| f.as_os_str() == "-");
    if ctx_from_stdin && df_from_stdin {
        bail!("-f - and a context of - both read stdin: give one of them as a path");
    }
    // A context tar on stdin is unpacked (with the layer unpacker's path checks) into a
    // temp dir named like the build's own, so a killed build's copy is swept too.
    let stdin_ctx = if ctx_from_stdin {
        let tmp = store.tmp_dir();
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("build-{}-stdin-context-", std::process::id()))
            .tempdir_in(&tmp)
            .with_context(|| format!("creating a temp dir in {}", tmp.display()))?;
        let rd = crate::snapshot::maybe_decompress(std::io::stdin().lock())
            .context("reading the build context tar from stdin")?;
        crate::snapshot::unpack_layer(rd, dir.path())
            .context("unpacking the build context tar from stdin (give a tar, optionally gzip-compressed)")?;
        cancel.track_tmp(dir.path().to_path_buf());
        Some(dir)
    } else {
        None
    };
    let context = match &stdin_ctx {
        Some(d) => d.path().to_path_buf(),
        None => a.context.clone(),
    };
    let mut opts = BuildOptions::new(&context);
    if df_from_stdin {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .context("reading the Dockerfile from stdin")?;
        opts.dockerfile_bytes = Some(bytes);
    } else {
        opts.dockerfile = a.file.clone();
    }
    opts.tags = a.tags.clone();
    opts.target = a.target.clone();
    opts.no_cache = a.no_cache;
    opts.network = match a.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        n => bail!("--network={n} is not supported: use host or none"),
    };
    let mut build_args = BTreeMap::new();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(kv) {
                    build_args.insert(kv.clone(), v);
                }
            }
        }
    }
    // BuildKit takes SOURCE_DATE_EPOCH from the environment or, first, a build arg.
    let epoch = build_args.get("SOURCE_DATE_EPOCH").cloned().or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    opts.source_date_epoch = match epoch.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|t| *t >= 0).with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970-01-01 (e.g. `git log -1 --format=%ct`)")
        })?),
    };
    opts.build_args = build_args;
    opts.output = a.output.as_deref().map(parse_output).transpose()?;
    opts.explain = a.explain;
    opts.cache_from = a.cache_from.iter().map(|s| parse_cache_from(s)).collect::<anyhow::Result<_>>()?;
    opts.cache_to = a.cache_to.as_deref().map(parse_cache_to).transpose()?;
    opts.secrets = build::Secrets::from_flags(&a.secrets)?;
    opts.ssh = build::SshAgents::from_flags(&a.ssh).map_err(anyhow::Error::msg)?;
    opts.report_files = a.timings.iter().chain(a.metadata_file.iter()).cloned().collect();
    // Where the build writes when it is done must be writable before it starts.
    let dockerfile = opts.dockerfile.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
    for (flag, p) in a.timings.iter().map(|p| ("--timings", p)).chain(a.metadata_file.iter().map(|p| ("--metadata-file", p))) {
        check_output_file(flag, p, &dockerfile)?;
    }
    if let Some(c) = &opts.cache_to {
        if c.dest.exists() && !c.dest.is_dir() {
            bail!("--cache-to dest={}: not a directory; give a directory (it is created if missing)", c.dest.display());
        }
    }

    let mode = if a.quiet { ProgressMode::Quiet } else { a.progress };
    let (sink, renderer) = Renderer::start(mode);
    let want_report = a.timings.is_some() || a.metadata_file.is_some();
    let (sink, log) = if want_report { sink.recording() } else { (sink, EventLog::default()) };
    let start = Instant::now();
    let result = build::build(&store, &opts, &sink, &cancel);
    drop(sink);
    renderer.finish();
    if want_report {
        // Written for a failed build too: that is when CI wants to see where it stopped.
        let error = result.as_ref().err().map(|e| e.to_string());
        let report = BuildReport::from_events(start, &log.events(), result.as_ref().map_err(|_| error.as_deref().unwrap_or("")));
        let written = a
            .timings
            .as_deref()
            .map_or(Ok(()), |p| report.write_html(p))
            .and_then(|()| a.metadata_file.as_deref().map_or(Ok(()), |p| report.write_json(p)));
        match written {
            Err(e) if result.is_ok() => return Err(e.into()),
            // The build's own error is the one to exit with.
            Err(e) => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("warning: {e}");
                }
            }
            Ok(()) => {}
        }
    }
    match result {
        Ok(r) => {
            if mode == ProgressMode::Quiet {
                #[allow(clippy::print_stdout)]
                {
                    println!("{}", r.image_id);
                }
            }
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// A report file `p` can be written: its folder exists and takes a new file, it is not a
/// directory, and it is not the Dockerfile.
fn check_output_file(flag: &str, p: &Path, dockerfile: &Path) -> anyhow::Result<()> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if p.is_dir() {
        bail!("{flag}={}: is a directory; give a file name", p.display());
    }
    if let (Ok(a), Ok(b)) = (std::fs::metadata(p), std::fs::metadata(dockerfile)) {
        use std::os::unix::fs::MetadataExt;
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            bail!("{flag}={}: that is the Dockerfile; give another file name", p.display());
        }
    }
    if !dir.is_dir() {
        bail!("{flag}={}: there is no directory {}; create it or give another path", p.display(), dir.display());
    }
    let probe = dir.join(format!(".rbuild-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("{flag}={}: cannot write in {}: {e}; give a path in a writable directory", p.display(), dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_accept_empty_and_common_spellings() {
        for off in ["", " ", "0", "false", "No", "OFF"] {
            assert_eq!(parse_switch(off), Ok(false), "{off:?}");
        }
        for on in ["1", "TRUE", "yes", "On"] {
            assert_eq!(parse_switch(on), Ok(true), "{on:?}");
        }
        assert!(parse_switch("maybe").is_err());
    }

    #[test]
    fn cache_flags() {
        assert_eq!(parse_cache_from("type=local,src=/c").unwrap(), PathBuf::from("/c"));
        let t = parse_cache_to("type=local,dest=c,mode=max").unwrap();
        assert_eq!(t, CacheTo { dest: PathBuf::from("c"), mode: CacheMode::Max });
        assert_eq!(parse_cache_to("dest=c,type=local").unwrap().mode, CacheMode::Min);
        let err = |r: anyhow::Result<CacheTo>| r.unwrap_err().to_string();
        assert!(err(parse_cache_to("type=registry,ref=x")).contains("not supported yet"));
        assert!(err(parse_cache_to("type=registry,dest=x")).contains("not supported yet"));
        assert!(err(parse_cache_to("type=floppy,dest=x")).contains("unknown"));
        assert!(err(parse_cache_to("type=local")).contains("dest= is missing"));
        assert!(err(parse_cache_to("dest=x")).contains("type= is missing"));
        assert!(err(parse_cache_to("type=local,dest=x,mode=all")).contains("mode=all is unknown"));
        assert!(err(parse_cache_to("type=local,dest=x,dest=y")).contains("twice"));
        assert!(err(parse_cache_to("type=local,dest=x,src=y")).contains("unknown key"));
        assert!(parse_cache_from("type=local").unwrap_err().to_string().contains("src= is missing"));
        assert!(parse_cache_from("type=local,dest=x").is_err());
    }
}
