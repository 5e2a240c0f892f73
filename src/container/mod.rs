//! `rbuild run` containers: state under `<root>/containers/<id>/`, lifecycle, logs.
//!
//! # Lifecycle
//!
//! ```text
//! run:  validate flags → resolve image (store) → argv/env/workdir (command.rs, pure)
//!       → lock containers/, check the name, create <id>/ (state.rs) → unlock
//!       → sandbox::spawn (overlay: image layers + <id>/upper) → status running (pid + start time)
//!       → wait → status exited (code) → --rm: remove <id>/
//! ```
//!
//! Nothing is written to `containers/` before every check that can fail without running
//! the process has passed; when starting the process fails (e.g. the command does not
//! exist: exit code 127), the container's directory is removed again.
//!
//! Modules: [`command`] (Docker's rules: Entrypoint/Cmd, env, HOME, -v, -w, stop signal;
//! pure), [`names`] (IDs, generated names), [`state`] (on-disk state, lookup, lazy `--rm`),
//! [`procfs`] (PID + start time = process identity), [`create`] (checks → state),
//! [`start`] (sandbox, stdio, signals, detach), [`ops`] (stop, rm, logs), [`format`](mod@format) (the
//! `ps` table). The namespaces, mounts and exec are the [`crate::sandbox`] module's: this
//! module only builds its [`crate::sandbox::Spec`].
//!
//! # Who records the exit
//!
//! The sandbox's init process (parent of the container's PID 1) writes `<id>/exitcode`
//! when the process ends, even after rbuild has gone (`-d`). A foreground rbuild also
//! writes `status`. `ps` trusts `exitcode`, then `status`, and checks a `running` status
//! against `/proc/<pid>/stat` (PID + start time), so a container whose process and monitor
//! were killed behind rbuild's back shows `Exited (unknown)` rather than `Up`.

use std::path::{Path, PathBuf};

pub mod command;
pub mod create;
pub mod format;
pub mod names;
pub mod ops;
pub mod procfs;
mod signals;
pub mod start;
pub mod state;
mod tty;

pub use state::{Container, ContainerConfig, ContainerStatus, Containers, Observed, State};

/// Errors of the container module.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has that ID, ID prefix or name.
    #[error("no such container: {0} (see rbuild ps -a)")]
    NotFound(String),
    /// An ID prefix matched several containers.
    #[error("multiple containers match {0:?}: give more characters of the ID, or the name")]
    Ambiguous(String),
    /// `--name` is taken.
    #[error("the container name {0:?} is already in use by container {1}: remove it (rbuild rm {0}) or choose another --name")]
    NameInUse(String, String),
    /// `--name` breaks Docker's naming rule.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at least 2 characters)")]
    InvalidName(String),
    /// Neither the image nor the command line gives a command.
    #[error("no command specified: the image has no Cmd or Entrypoint; give one after the image name (rbuild run IMAGE COMMAND)")]
    NoCommand,
    /// The container runs and the operation needs it stopped.
    #[error("container {0} is running: stop it first (rbuild stop {0}) or use rm -f")]
    Running(String),
    /// A bad `-e` entry.
    #[error("invalid environment variable {0:?}: {1}")]
    InvalidEnv(String, String),
    /// A bad line in an `--env-file`.
    #[error("{}: line {line}: {msg}", path.display())]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A bad `-v`.
    #[error("invalid volume {0:?}: {1}")]
    InvalidVolume(String, String),
    /// A relative `-w`.
    #[error("the working directory {0:?} is invalid: it must be an absolute path")]
    InvalidWorkdir(String),
    /// A signal name or number that does not exist.
    #[error("invalid signal {0:?}: use a name like SIGTERM or a number")]
    InvalidSignal(String),
    /// An image that cannot be run (no layers, config and manifest disagree).
    #[error("cannot run image {0}")]
    BadImage(String),
    /// The sandbox could not start the container's process (exec errors carry Docker's
    /// exit codes, see [`ContainerError::exit_code`]).
    #[error("cannot start the container ({0}): {1}")]
    Start(String, #[source] crate::sandbox::SandboxError),
    /// The monitor of a detached `-i`/`-t` container could not start it.
    #[error("{0}")]
    Monitor(String, i32),
    /// The image store failed (unknown image, missing blob, ...).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A state file that does not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ContainerError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        ContainerError::Io { path: path.as_ref().to_path_buf(), source }
    }
}
