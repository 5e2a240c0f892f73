//! Container commands: run, ps, stop, rm, logs.

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub fn run(_g: &Globals, _a: RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!("run is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {}

pub fn ps(_g: &Globals, _a: PsArgs) -> anyhow::Result<u8> {
    anyhow::bail!("ps is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {}

pub fn stop(_g: &Globals, _a: StopArgs) -> anyhow::Result<u8> {
    anyhow::bail!("stop is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {}

pub fn rm(_g: &Globals, _a: RmArgs) -> anyhow::Result<u8> {
    anyhow::bail!("rm is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {}

pub fn logs(_g: &Globals, _a: LogsArgs) -> anyhow::Result<u8> {
    anyhow::bail!("logs is not implemented yet")
}
