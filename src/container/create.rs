//! `rbuild run`, part one: check every input, resolve the image, and record the container.
//! Nothing is written under `containers/` until all checks have passed.

use std::path::PathBuf;

use crate::store::Store;

use super::command::{self, Volume};
use super::names::{generate_name, new_id, short_id, validate_name};
use super::state::{now_rfc3339, ContainerConfig};
use super::{Container, ContainerError, Containers};

/// Network mode of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Share the host's network namespace (the default, as for builds).
    #[default]
    Host,
    /// A new network namespace with only `lo`.
    None,
}

impl NetworkMode {
    /// `host` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        }
    }
}

/// What `rbuild run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Image reference or ID.
    pub image: String,
    /// Command and args after the image (replace the image's Cmd).
    pub args: Vec<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `-e` entries (`K=V` or `K`).
    pub env: Vec<String>,
    /// `--env-file` paths.
    pub env_files: Vec<PathBuf>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `--network`.
    pub network: NetworkMode,
    /// `-v` specs.
    pub volumes: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-d`.
    pub detach: bool,
    /// `--rm`.
    pub auto_remove: bool,
}

/// Check the options, resolve the image and unpack its layers, then record a new container
/// (state `created`). `host_env` answers `-e KEY` lookups.
pub fn create(
    store: &Store,
    containers: &Containers,
    opts: &RunOptions,
    host_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Container, ContainerError> {
    // Docker accepts and drops a leading slash
    let wanted_name = opts.name.as_deref().map(|n| n.strip_prefix('/').unwrap_or(n).to_string());
    if let Some(n) = &wanted_name {
        validate_name(n)?;
    }
    let volumes = opts
        .volumes
        .iter()
        .map(|v| {
            let mut vol: Volume = command::parse_volume(v)?;
            // Docker creates a missing host path as a directory
            if std::fs::symlink_metadata(&vol.host).is_err() {
                std::fs::create_dir_all(&vol.host).map_err(|e| {
                    ContainerError::InvalidVolume(v.clone(), format!("creating host directory {}: {e}", vol.host.display()))
                })?;
            }
            vol.host = std::fs::canonicalize(&vol.host).map_err(|e| {
                ContainerError::InvalidVolume(v.clone(), format!("host path {}: {e}", vol.host.display()))
            })?;
            Ok(vol)
        })
        .collect::<Result<Vec<_>, ContainerError>>()?;
    let mut user_env = Vec::new();
    for f in &opts.env_files {
        let text = std::fs::read_to_string(f).map_err(|e| ContainerError::io(f, e))?;
        user_env.extend(command::parse_env_file(&text, f)?);
    }
    user_env.extend(opts.env.iter().cloned());

    let image = store.resolve(&opts.image)?;
    let defaults = image.config.config.clone().unwrap_or_default();
    let argv = command::resolve_argv(
        defaults.entrypoint.as_deref().unwrap_or_default(),
        defaults.cmd.as_deref().unwrap_or_default(),
        opts.entrypoint.as_deref(),
        &opts.args,
    )?;
    let workdir = command::resolve_workdir(opts.workdir.as_deref(), defaults.working_dir.as_deref())?;
    let user = opts.user.clone().or(defaults.user.clone()).filter(|u| !u.is_empty());
    // an unknown StopSignal is not worth refusing to run for: `stop` falls back to SIGTERM
    let stop_signal = defaults.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into());

    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(ContainerError::BadImage(format!(
            "{}: the config lists {} layers but the manifest {}; load or build it again",
            opts.image,
            diff_ids.len(),
            image.manifest.layers.len()
        )));
    }
    if diff_ids.is_empty() {
        return Err(ContainerError::BadImage(format!(
            "{}: the image has no layers, so there is no file system to run a command in",
            opts.image
        )));
    }
    let mut lower_dirs = Vec::new();
    for (layer, diff_id) in image.manifest.layers.iter().zip(diff_ids) {
        lower_dirs.push(store.ensure_unpacked(layer, diff_id)?);
    }
    lower_dirs.reverse();
    let lower_dirs = crate::snapshot::overlay::distinct_layers(&lower_dirs);
    let home = command::home_dir(user.as_deref(), read_passwd(&lower_dirs).as_deref());

    let id = new_id()?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| short_id(&id).to_string());
    let mut env = command::merge_env(
        defaults.env.as_deref().unwrap_or_default(),
        &user_env,
        host_env,
        &hostname,
        &home,
    )?;
    // Docker: `-t` sets TERM=xterm unless the image or the user set TERM
    if opts.tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }

    let _lock = containers.lock()?;
    let all = containers.list()?;
    let name = match &wanted_name {
        Some(n) => {
            if let Some(other) = all.iter().find(|c| &c.config.name == n) {
                return Err(ContainerError::NameInUse(n.clone(), other.short_id().to_string()));
            }
            n.clone()
        }
        None => generate_name(&id, &|n| all.iter().any(|c| c.config.name == n)),
    };
    containers.create(ContainerConfig {
        id,
        name,
        image: opts.image.clone(),
        image_id: image.id.to_string(),
        created: now_rfc3339(),
        argv,
        env,
        workdir,
        user,
        hostname,
        network: opts.network.as_str().into(),
        volumes,
        tty: opts.tty,
        interactive: opts.interactive,
        detach: opts.detach,
        auto_remove: opts.auto_remove,
        stop_signal,
        lower_dirs,
    })
}

/// The image's `/etc/passwd`: from the topmost layer that has the path (a whiteout or
/// anything but a regular file there means the image has none).
fn read_passwd(lower_dirs: &[PathBuf]) -> Option<String> {
    for l in lower_dirs {
        // never follow a layer's `etc` symlink: it would point into the host
        match std::fs::symlink_metadata(l.join("etc")) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return None,
            Err(_) => continue,
        }
        let p = l.join("etc/passwd");
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return std::fs::read_to_string(&p).ok(),
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}
