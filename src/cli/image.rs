//! Image commands: images, inspect, history, tag, rmi, load, save, import, prune.

use super::Globals;

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {}

pub fn images(_g: &Globals, _a: ImagesArgs) -> anyhow::Result<u8> {
    anyhow::bail!("images is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {}

pub fn inspect(_g: &Globals, _a: InspectArgs) -> anyhow::Result<u8> {
    anyhow::bail!("inspect is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {}

pub fn history(_g: &Globals, _a: HistoryArgs) -> anyhow::Result<u8> {
    anyhow::bail!("history is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct TagArgs {}

pub fn tag(_g: &Globals, _a: TagArgs) -> anyhow::Result<u8> {
    anyhow::bail!("tag is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {}

pub fn rmi(_g: &Globals, _a: RmiArgs) -> anyhow::Result<u8> {
    anyhow::bail!("rmi is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

pub fn load(_g: &Globals, _a: LoadArgs) -> anyhow::Result<u8> {
    anyhow::bail!("load is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {}

pub fn save(_g: &Globals, _a: SaveArgs) -> anyhow::Result<u8> {
    anyhow::bail!("save is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

pub fn import(_g: &Globals, _a: ImportArgs) -> anyhow::Result<u8> {
    anyhow::bail!("import is not implemented yet")
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {}

pub fn prune(_g: &Globals, _a: PruneArgs) -> anyhow::Result<u8> {
    anyhow::bail!("prune is not implemented yet")
}
