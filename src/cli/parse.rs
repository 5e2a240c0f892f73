//! `rbuild parse [-f FILE] [--json]`.

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Dockerfile to parse
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: std::path::PathBuf,
    /// Print JSON for tools
    #[arg(long)]
    pub json: bool,
}

pub fn run(_g: &Globals, _a: ParseArgs) -> anyhow::Result<u8> {
    anyhow::bail!("parse is not implemented yet")
}
