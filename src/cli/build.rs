//! `rbuild build` (and the bare `rbuild [OPTIONS] PATH`).

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: std::path::PathBuf,
}

pub fn run(_g: &Globals, _a: BuildArgs) -> anyhow::Result<u8> {
    anyhow::bail!("build is not implemented yet")
}
