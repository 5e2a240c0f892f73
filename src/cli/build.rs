//! `rbuild build` (and the bare `rbuild [OPTIONS] PATH`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::Globals;
use crate::build::{self, BuildOptions, Cancel, Network, Output, OutputFormat};
use crate::progress::{ProgressMode, Renderer};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build context directory
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
    cancel.on_signals().context("installing the signal handler")?;

    let mut opts = BuildOptions::new(&a.context);
    opts.dockerfile = a.file.clone();
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
    opts.build_args = build_args;
    opts.output = a.output.as_deref().map(parse_output).transpose()?;

    let root = g.root_dir();
    let store = Store::open(&root).with_context(|| format!("opening the store at {}", root.display()))?;
    let mode = if a.quiet { ProgressMode::Quiet } else { a.progress };
    let (sink, renderer) = Renderer::start(mode);
    let result = build::build(&store, &opts, &sink, &cancel);
    drop(sink);
    renderer.finish();
    match result {
        Ok(r) => {
            if a.quiet {
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
