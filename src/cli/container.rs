//! Container commands: run, ps, stop, rm, logs.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::Globals;
use crate::container::create::{NetworkMode, RunOptions};
use crate::container::format::{ps_lines, PsOptions};
use crate::container::{ops, start, Containers};

#[derive(Debug, clap::Args)]
#[command(override_usage = "rbuild run [OPTIONS] IMAGE [COMMAND] [ARG...]")]
pub struct RunArgs {
    /// Remove the container's state when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open (attach it to the container's process)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Name of the container (default: a generated adjective_surname)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take the host's value)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (absolute)
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid[:gid]) to run as
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT ("" clears it)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Network: host (default) or none (only lo)
    #[arg(long, value_name = "MODE", default_value = "host", value_parser = ["host", "none"])]
    pub network: String,
    /// Bind-mount a host directory: HOST:CONTAINER[:ro]
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Hostname inside the container (default: the short container ID)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Internal: be the monitor of detached container ID (`-d` with `-i`/`-t`)
    #[arg(long, hide = true, value_name = "ID", exclusive = true)]
    pub monitor: Option<String>,
    /// The image, then the command and its args (replacing the image's CMD); options end
    /// at IMAGE, so `run img ls -l` passes -l to ls
    #[arg(value_name = "IMAGE", required_unless_present = "monitor", num_args = 1.., trailing_var_arg = true)]
    pub image_and_command: Vec<String>,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        let mut words = self.image_and_command.iter().cloned();
        RunOptions {
            image: words.next().unwrap_or_default(),
            args: words.collect(),
            name: self.name.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            entrypoint: self.entrypoint.clone(),
            network: if self.network == "none" { NetworkMode::None } else { NetworkMode::Host },
            volumes: self.volume.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            interactive: self.interactive,
            detach: self.detach,
            auto_remove: self.rm,
        }
    }
}

pub fn run(g: &Globals, a: RunArgs) -> anyhow::Result<u8> {
    let root = g.root_dir();
    if let Some(id) = &a.monitor {
        let containers = Containers::open(&root)?;
        let exe = std::env::current_exe().context("cannot find the rbuild executable to start the sandbox")?;
        let code = start::monitor_main(&containers, id, &exe)?;
        return Ok(u8::try_from(code).unwrap_or(255));
    }
    // Docker refuses at once (exit 1): a pty fed from a pipe never sees end of input
    if a.tty && a.interactive && !a.detach && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!("the input device is not a TTY: drop -t (keep -i) to pipe input into the container");
    }
    match run_container(&root, &a) {
        Ok(code) => Ok(code),
        // Docker's exit codes: 127 (not found) and 126 (not executable) for the command,
        // 125 for every error of `run` itself (unknown image, no command, bad -v, ...)
        Err(e) => {
            let code = e.downcast_ref::<crate::container::ContainerError>().and_then(|c| c.exit_code()).unwrap_or(125);
            Err(super::CodedError::wrap(e, u8::try_from(code).unwrap_or(125)))
        }
    }
}

fn run_container(root: &std::path::Path, a: &RunArgs) -> anyhow::Result<u8> {
    let opts = a.options();
    let store = crate::store::Store::open(root)?;
    let containers = open(root)?;
    let exe = std::env::current_exe().context("cannot find the rbuild executable to start the sandbox")?;
    let host_env = |k: &str| std::env::var(k).ok();
    let mut c = crate::container::create::create(&store, &containers, &opts, &host_env)?;
    let code = if opts.detach && (opts.tty || opts.interactive) {
        start::run_detached_with_monitor(root, &c, &exe).map(|()| 0)?
    } else if opts.detach {
        start::run_detached(&containers, &mut c, &exe).map(|()| 0)?
    } else {
        start::run_attached(&containers, &mut c, &exe)?
    };
    if opts.detach {
        writeln!(std::io::stdout(), "{}", c.config.id)?;
    }
    Ok(u8::try_from(code).unwrap_or(255))
}

/// Docker's `rmi` rule: the last name of an image that a container (running or not) was
/// created from is not removed without `-f` (the image would be left dangling under it).
pub(super) fn refuse_untag_in_use(store: &crate::store::Store, name: &str) -> anyhow::Result<()> {
    let Ok(r) = crate::store::Reference::parse(name) else { return Ok(()) };
    if r.digest().is_some() {
        return Ok(());
    }
    // no containers dir: no container (and rmi does not create one)
    if !store.root().join("containers").is_dir() {
        return Ok(());
    }
    let Ok(img) = store.resolve(name) else { return Ok(()) };
    let refs: usize = store.list_images()?.iter().filter(|i| i.id == img.id).map(|i| i.tags.len()).sum();
    if refs > 1 || !img.tags.contains(&r) {
        return Ok(());
    }
    let id = img.id.to_string();
    let Some(c) = open(store.root())?.list()?.into_iter().find(|c| c.config.image_id == id) else {
        return Ok(());
    };
    anyhow::bail!(
        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {} (remove the container first: rbuild rm {}, or use rmi -f)",
        c.short_id(),
        img.id.short(),
        c.config.name
    )
}

/// The containers dir, with finished `--rm` containers cleaned up.
fn open(root: &std::path::Path) -> anyhow::Result<Containers> {
    let containers = Containers::open(root)?;
    containers.collect_garbage()?;
    Ok(containers)
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

pub fn ps(g: &Globals, a: PsArgs) -> anyhow::Result<u8> {
    let containers = open(&g.root_dir())?;
    let list = containers.list()?;
    let opts = PsOptions { all: a.all, quiet: a.quiet, no_trunc: a.no_trunc };
    let mut out = std::io::stdout().lock();
    for line in ps_lines(&list, opts, chrono::Utc::now()) {
        writeln!(out, "{line}")?;
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for the stop signal to work before SIGKILL
    #[arg(short = 't', long = "time", visible_alias = "timeout", default_value_t = 10, value_name = "SECONDS")]
    pub time: u64,
    /// Containers (ID, ID prefix or name)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Apply `f` to each named container, printing the name given on success (as Docker);
/// failures are reported at the end and make the exit code 1.
fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    let mut errors = Vec::new();
    let mut out = std::io::stdout().lock();
    for n in names {
        match f(n) {
            Ok(()) => writeln!(out, "{n}")?,
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(0),
        1 => Err(errors.remove(0)),
        _ => {
            let all: Vec<String> = errors.iter().map(super::render_error).collect();
            anyhow::bail!("{}", all.join("; "))
        }
    }
}

pub fn stop(g: &Globals, a: StopArgs) -> anyhow::Result<u8> {
    let containers = open(&g.root_dir())?;
    each(&a.containers, |n| {
        let mut c = containers.find(n)?;
        ops::stop(&mut c, Duration::from_secs(a.time))?;
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill a running container before removing it
    #[arg(short, long)]
    pub force: bool,
    /// Containers (ID, ID prefix or name)
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn rm(g: &Globals, a: RmArgs) -> anyhow::Result<u8> {
    let containers = open(&g.root_dir())?;
    each(&a.containers, |n| {
        let mut c = containers.find(n)?;
        ops::remove(&containers, &mut c, a.force)?;
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow the output until the container exits
    #[arg(short, long)]
    pub follow: bool,
    /// Container (ID, ID prefix or name)
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub fn logs(g: &Globals, a: LogsArgs) -> anyhow::Result<u8> {
    let containers = open(&g.root_dir())?;
    let c = containers.find(&a.container)?;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    ops::logs(&c, a.follow, &mut out, &mut err)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(s: &str) -> RunOptions {
        T::try_parse_from(std::iter::once("run").chain(s.split(' '))).unwrap().run.options()
    }

    #[test]
    fn options_stop_at_the_image() {
        let o = parse("--rm -it --name web -e A=1 -e B img ls -l --name x");
        assert!(o.auto_remove && o.interactive && o.tty);
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.env, ["A=1", "B"]);
        assert_eq!(o.image, "img");
        assert_eq!(o.args, ["ls", "-l", "--name", "x"]);
        let o = parse("img -l");
        assert_eq!((o.image.as_str(), o.args.as_slice()), ("img", &["-l".to_string()][..]));
    }

    #[test]
    fn docker_flags_parse() {
        let o = parse("-d -w /app -u 1000:1000 --entrypoint /bin/sh --network none -v /a:/b:ro --hostname h --env-file f img");
        assert!(o.detach);
        assert_eq!(o.workdir.as_deref(), Some("/app"));
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.network, NetworkMode::None);
        assert_eq!(o.volumes, ["/a:/b:ro"]);
        assert_eq!(o.hostname.as_deref(), Some("h"));
        assert_eq!(o.env_files, [PathBuf::from("f")]);
        assert!(o.args.is_empty());
        assert!(T::try_parse_from(["run"]).is_err(), "IMAGE is required");
        assert!(T::try_parse_from(["run", "--network", "bridge", "img"]).is_err());
    }
}
