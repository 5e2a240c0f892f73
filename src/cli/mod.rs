//! The command line: clap structs → validated options → one library call per command.
//!
//! Each command group lives in its own file (`parse.rs`, `image.rs`, `build.rs`,
//! `container.rs`); this file only holds the global options and the dispatch.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod build;
mod container;
mod image;
mod parse;

/// Options every command accepts before its name.
#[derive(Debug, Clone, clap::Args)]
pub struct Globals {
    /// Store root (default: /var/lib/rbuild as root, else $XDG_DATA_HOME/rbuild)
    #[arg(long, global = true, env = "RBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

impl Globals {
    /// The store root this invocation works on.
    pub fn root_dir(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("rbuild");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| OsString::from("."));
        PathBuf::from(home).join(".local/share/rbuild")
    }
}

#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about = "Daemonless Dockerfile builds with a content-addressed layer cache")]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (also: `rbuild [OPTIONS] PATH`)
    Build(build::BuildArgs),
    /// Parse a Dockerfile and print its stages
    Parse(parse::ParseArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Show low-level information about an image as JSON
    Inspect(image::InspectArgs),
    /// Show the history (layers and the lines that made them) of an image
    History(image::HistoryArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(image::TagArgs),
    /// Remove one or more image tags
    Rmi(image::RmiArgs),
    /// Load images from a docker-archive or OCI archive
    Load(image::LoadArgs),
    /// Save images to a docker-archive (or OCI archive)
    Save(image::SaveArgs),
    /// Import a root filesystem tarball as an image
    Import(image::ImportArgs),
    /// Remove unreferenced blobs and snapshots
    Prune(image::PruneArgs),
    /// Run a command in a new container
    Run(container::RunArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Stop running containers
    Stop(container::StopArgs),
    /// Remove containers
    Rm(container::RmArgs),
    /// Show a container's output
    Logs(container::LogsArgs),
    /// Internal: the sandbox's init process
    #[command(name = "__sandbox-init", hide = true)]
    SandboxInit,
}

const SUBCOMMANDS: &[&str] = &[
    "build", "parse", "images", "inspect", "history", "tag", "rmi", "load", "save", "import",
    "prune", "run", "ps", "stop", "rm", "logs", "__sandbox-init", "help",
];

/// `rbuild -t app:1 .` means `rbuild build -t app:1 .`: insert `build` where the first
/// word that is neither a global option nor its value is not a subcommand.
fn with_default_subcommand(mut argv: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--root" {
            i += 2;
            continue;
        }
        if a.starts_with("--root=") {
            i += 1;
            continue;
        }
        if matches!(a.as_ref(), "-h" | "--help" | "-V" | "--version") {
            return argv;
        }
        if !SUBCOMMANDS.contains(&a.as_ref()) {
            argv.insert(i, OsString::from("build"));
        }
        return argv;
    }
    argv
}

/// Run the command line; returns the process exit code.
pub fn run(argv: Vec<OsString>) -> anyhow::Result<u8> {
    let argv = with_default_subcommand(argv);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // Docker: bad flags of `run` exit 125, like its other setup errors
        Err(e) if e.use_stderr() && subcommand(&argv) == Some("run") => {
            let _ = e.print();
            return Ok(125);
        }
        Err(e) => e.exit(),
    };
    let g = &cli.globals;
    match cli.command {
        Command::Build(a) => build::run(g, a),
        Command::Parse(a) => parse::run(g, a),
        Command::Images(a) => image::images(g, a),
        Command::Inspect(a) => image::inspect(g, a),
        Command::History(a) => image::history(g, a),
        Command::Tag(a) => image::tag(g, a),
        Command::Rmi(a) => image::rmi(g, a),
        Command::Load(a) => image::load(g, a),
        Command::Save(a) => image::save(g, a),
        Command::Import(a) => image::import(g, a),
        Command::Prune(a) => image::prune(g, a),
        Command::Run(a) => container::run(g, a),
        Command::Ps(a) => container::ps(g, a),
        Command::Stop(a) => container::stop(g, a),
        Command::Rm(a) => container::rm(g, a),
        Command::Logs(a) => container::logs(g, a),
        Command::SandboxInit => Ok(crate::sandbox::init_main()),
    }
}

/// The subcommand word of `argv` (after the global options), if any.
fn subcommand(argv: &[OsString]) -> Option<&str> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_str()?;
        if a == "--root" {
            i += 2;
        } else if a.starts_with("--root=") {
            i += 1;
        } else {
            return Some(a);
        }
    }
    None
}

/// An error that ends rbuild with `code` instead of 1 (e.g. `run`'s Docker codes 125,
/// 126, 127). Displays as the wrapped error's one-line chain.
#[derive(Debug)]
pub struct CodedError {
    code: u8,
    message: String,
}

impl CodedError {
    /// Wrap `err` so that rbuild exits with `code`.
    pub fn wrap(err: anyhow::Error, code: u8) -> anyhow::Error {
        anyhow::Error::new(CodedError { code, message: render_error(&err) })
    }
}

impl std::fmt::Display for CodedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodedError {}

/// The exit code for an error returned by [`run`]: a [`CodedError`]'s, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CodedError>().map_or(1, |e| e.code)
}

/// The error chain on one line: `outer: inner: root cause`. A Dockerfile parse error
/// renders over several lines (message, offending line, caret) and is printed as is.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        with_default_subcommand(s.split(' ').map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn bare_build_form_gets_build_inserted() {
        assert_eq!(argv("rbuild -t app:1 ."), ["rbuild", "build", "-t", "app:1", "."]);
        assert_eq!(argv("rbuild --root /x -t a ."), ["rbuild", "--root", "/x", "build", "-t", "a", "."]);
        assert_eq!(argv("rbuild --root=/x ."), ["rbuild", "--root=/x", "build", "."]);
        assert_eq!(argv("rbuild images"), ["rbuild", "images"]);
        assert_eq!(argv("rbuild --root /x ps -a"), ["rbuild", "--root", "/x", "ps", "-a"]);
        assert_eq!(argv("rbuild --help"), ["rbuild", "--help"]);
    }
}
