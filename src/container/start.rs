//! `rbuild run`, part two: start a created container in the sandbox and either stay
//! attached (foreground) or let it go (detached).
//!
//! # Who waits for the process
//!
//! The sandbox's init process (`rbuild __sandbox-init`, the parent of the container's PID 1)
//! waits for the container's process and writes its exit code to `<id>/exitcode`.
//!
//! - Foreground: rbuild keeps the [`Sandbox`] handle, wires stdio through, forwards the
//!   signals it receives (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) to the
//!   container's process, waits, records the exit in `status`, and with `--rm` removes the
//!   state. If rbuild itself dies, init kills the container (the socket to rbuild closes).
//! - Detached (`-d`): stdout and stderr are appended to `<id>/log` and `<id>/log.err`, rbuild calls
//!   [`Sandbox::detach`] and returns; init lives on as the container's monitor (in its own
//!   session, so the terminal going away does not touch it) and writes `exitcode` when the
//!   process ends. No second daemon is needed. `--rm` of a detached container is applied
//!   by the next rbuild container command ([`Containers::collect_garbage`]).
//! - Detached with `-i` or `-t` (`-dit sh`): the process needs a stdin that stays open (a
//!   silent pipe, or a pty whose master someone holds) after rbuild returns, which init
//!   cannot give. rbuild re-executes itself as a small monitor (`rbuild run --monitor ID`,
//!   hidden) in its own session: it starts the sandbox, holds stdin open, copies the pty's
//!   output to the log, waits, records the exit and applies `--rm`
//!   ([`run_detached_with_monitor`], [`monitor_main`]).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::sandbox::{self, BindMount, Network, Rootfs, Sandbox, Spec, Stdio};

use super::{ops, Container, ContainerError, Containers};

/// The sandbox spec of a container.
pub fn spec_for(c: &Container, stdio: Stdio) -> Spec {
    let cfg = &c.config;
    let mut spec = Spec::new(
        Rootfs::Overlay { lower: cfg.lower_dirs.clone(), upper: c.upper_dir(), work: c.work_dir() },
        cfg.argv.clone(),
    );
    spec.env = cfg.env.clone();
    spec.cwd = cfg.workdir.clone().into();
    spec.user = cfg.user.clone();
    spec.hostname = cfg.hostname.clone();
    spec.network = if cfg.network == "none" { Network::None } else { Network::Host };
    spec.mounts = cfg
        .volumes
        .iter()
        .map(|v| BindMount { src: v.host.clone(), dst: v.container.clone(), readonly: v.readonly }.into())
        .collect();
    spec.stdio = stdio;
    spec.status_file = Some(c.exit_file());
    spec
}

/// Create the working directory in the upper dir when no layer has it (Docker creates a
/// missing `-w`/`WORKDIR` directory; the sandbox requires it to exist).
fn ensure_workdir(c: &Container) -> Result<(), ContainerError> {
    let rel = c.config.workdir.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(());
    }
    let exists = c
        .config
        .lower_dirs
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok());
    if exists {
        return Ok(());
    }
    let p = c.upper_dir().join(rel);
    std::fs::create_dir_all(&p).map_err(|e| ContainerError::io(&p, e))
}

fn start(cs: &Containers, c: &mut Container, spec: &Spec, init_exe: &Path) -> Result<Sandbox, ContainerError> {
    let started = ensure_workdir(c).and_then(|()| {
        sandbox::spawn(spec, init_exe).map_err(|e| ContainerError::Start(c.config.image.clone(), e))
    });
    let sb = match started {
        Ok(sb) => sb,
        Err(e) => {
            // the process never ran: leave no state behind
            let _lock = cs.lock();
            let _ = cs.remove(c);
            return Err(e);
        }
    };
    ops::mark_running(c, sb.container_pid() as i32, sb.pid() as i32)?;
    Ok(sb)
}

/// Start a detached container; returns once its process runs. Output goes to its log.
pub fn run_detached(cs: &Containers, c: &mut Container, init_exe: &Path) -> Result<(), ContainerError> {
    let spec = spec_for(c, Stdio::Files { stdout: c.log_path(), stderr: c.err_log_path() });
    let sb = start(cs, c, &spec, init_exe)?;
    match sb.detach() {
        Ok(_) => Ok(()),
        // A process that ends at once (`run -d img true`) can take init with it before the
        // detach request arrives; init has recorded the exit code, and that is a success.
        Err(_) if c.exit_file().exists() => Ok(()),
        Err(e) => Err(ContainerError::Start(c.config.image.clone(), e)),
    }
}

/// How the foreground container's stdio is wired.
fn stdio_mode(c: &Container) -> Stdio {
    if c.config.tty {
        Stdio::Pty
    } else if c.config.interactive {
        Stdio::Inherit
    } else {
        Stdio::Piped
    }
}

/// Run a container in the foreground; returns its exit code.
///
/// Without `-i`/`-t`, stdout and stderr are copied to rbuild's and to the logs (`log`, `log.err`). With `-i`
/// (no `-t`), the container shares rbuild's stdio (the log stays empty). With `-t`, a pty:
/// the host terminal is put in raw mode while it runs (with `-i`) and restored after.
pub fn run_attached(cs: &Containers, c: &mut Container, init_exe: &Path) -> Result<i32, ContainerError> {
    let spec = spec_for(c, stdio_mode(c));
    let mut sb = start(cs, c, &spec, init_exe)?;
    let master = sb.take_pty();
    let on_winch: Option<Box<dyn Fn() + Send>> = match &master {
        Some(m) => {
            if let Some(size) = super::tty::stdin_size() {
                super::tty::set_size(m, size);
            }
            let m = m.try_clone().map_err(|e| ContainerError::io("pty", e))?;
            Some(Box::new(move || {
                if let Some(size) = super::tty::stdin_size() {
                    super::tty::set_size(&m, size);
                }
            }))
        }
        None => None,
    };
    // before any thread starts, so every thread inherits the blocked signal mask
    super::signals::forward_to(sb.container_pid() as i32, on_winch);
    let open_log = |p: std::path::PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map(|f| Arc::new(Mutex::new(f)))
            .map_err(|e| ContainerError::io(&p, e))
    };
    let log = open_log(c.log_path())?;
    let err_log = open_log(c.err_log_path())?;
    let mut pumps = Vec::new();
    let mut _raw = None;
    if let Some(master) = master {
        if c.config.interactive {
            _raw = super::tty::RawMode::enable_on_stdin();
            let mut to_pty = master.try_clone().map_err(|e| ContainerError::io("pty", e))?;
            // stdin is read until rbuild exits: this thread is not joined
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_pty);
            });
        } else {
            _raw = super::tty::RawMode::raw_output_on_stdout();
        }
        pumps.push(tee(master, Output::Stdout, log.clone()));
    }
    if let Some(out) = sb.take_stdout() {
        pumps.push(tee(out, Output::Stdout, log.clone()));
    }
    if let Some(err) = sb.take_stderr() {
        pumps.push(tee(err, Output::Stderr, err_log.clone()));
    }
    let code = sb.wait().map_err(|e| ContainerError::Start(c.config.image.clone(), e))?;
    for p in pumps {
        let _ = p.join();
    }
    drop(_raw);
    // `rm -f` (or another rbuild's --rm cleanup) may have removed the state already: then
    // there is nothing to record, and the exit code is still ours to return
    if let Err(e) = ops::mark_exited(c, code) {
        if c.dir.exists() {
            return Err(e);
        }
    }
    if c.config.auto_remove {
        let _lock = cs.lock()?;
        cs.remove(c)?;
    }
    Ok(code)
}

#[derive(Clone, Copy)]
enum Output {
    Stdout,
    Stderr,
}

/// Copy `from` to rbuild's stdout or stderr and to the log until EOF (or EIO: a pty whose
/// other side is closed).
fn tee(mut from: File, to: Output, log: Arc<Mutex<File>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if let Ok(mut l) = log.lock() {
                let _ = l.write_all(chunk);
            }
            let written = match to {
                Output::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(chunk).and_then(|()| o.flush())
                }
                Output::Stderr => std::io::stderr().lock().write_all(chunk),
            };
            // `rbuild run img yes | head -1`: our reader is gone, so stop reading; the
            // process then gets EPIPE, as it would in a shell pipeline
            if matches!(&written, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
                return;
            }
        }
    })
}

impl ContainerError {
    /// The exit code `rbuild run` should end with for this error: Docker's 127 (command
    /// not found) and 126 (not executable) for exec errors, 125 for other failures to
    /// start the container.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ContainerError::Start(_, e) => Some(e.exit_code()),
            ContainerError::Monitor(_, code) => Some(*code),
            _ => None,
        }
    }
}

/// The monitor's one-line report to the `rbuild run -d` that started it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MonitorReport {
    /// `None` = the container's process runs.
    error: Option<String>,
    /// Exit code for `rbuild run` when `error` is set.
    code: i32,
}

/// `-d` with `-i` or `-t`: stdin must stay open (or be a pty) after rbuild returns, which
/// the sandbox's init cannot give a detached process. So rbuild starts a small monitor,
/// `rbuild --root ROOT run --monitor ID` (a hidden option), in its own session; it starts the
/// sandbox, holds stdin open (a pipe nobody writes to, or the pty master) and copies a pty's
/// output to the log, reports on its stdout whether the process started, and then waits and
/// records the exit (and applies `--rm`). Returns once the process runs.
pub fn run_detached_with_monitor(root: &Path, c: &Container, exe: &Path) -> Result<(), ContainerError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.err_log_path())
        .map_err(|e| ContainerError::io(c.err_log_path(), e))?;
    let mut child = std::process::Command::new(exe)
        .arg("--root")
        .arg(root)
        .args(["run", "--monitor", &c.config.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| ContainerError::io(exe, e))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    match serde_json::from_str::<MonitorReport>(line.trim()) {
        Ok(MonitorReport { error: None, .. }) => Ok(()),
        Ok(MonitorReport { error: Some(message), code }) => Err(ContainerError::Monitor(message, code)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let msg = format!("the container monitor ended without a report (see {})", c.err_log_path().display());
            if let Ok(cs) = Containers::open(root) {
                let _lock = cs.lock();
                let _ = cs.remove(c);
            }
            Err(ContainerError::Monitor(msg, 125))
        }
    }
}

/// The monitor process (see [`run_detached_with_monitor`]); returns the container's exit
/// code. Its stdout is the report pipe until the process has started, then the log.
pub fn monitor_main(cs: &Containers, id: &str, init_exe: &Path) -> Result<i32, ContainerError> {
    use std::os::fd::{AsFd, AsRawFd};
    // own session: the user's terminal closing or Ctrl-C there does not reach us
    let _ = nix::unistd::setsid();
    let mut c = cs.find(id)?;
    let report = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| ContainerError::io("stdout", e))?;
    let mut report = File::from(report);
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(c.log_path())
        .map_err(|e| ContainerError::io(c.log_path(), e))?;
    // stdin: a pipe whose write end we keep (open but silent, as Docker's -d -i)
    let (stdin_r, _stdin_w) = nix::unistd::pipe().map_err(|e| ContainerError::io("pipe", e.into()))?;
    let redirect = |from: i32, to: i32| {
        nix::unistd::dup2(from, to).map(|_| ()).map_err(|e| ContainerError::io("dup2", e.into()))
    };
    let err_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.err_log_path())
        .map_err(|e| ContainerError::io(c.err_log_path(), e))?;
    redirect(stdin_r.as_raw_fd(), 0)?;
    redirect(log.as_raw_fd(), 1)?;
    redirect(err_log.as_raw_fd(), 2)?;
    drop(err_log);
    drop(stdin_r);

    let stdio = if c.config.tty { Stdio::Pty } else { Stdio::Inherit };
    let spec = spec_for(&c, stdio);
    let mut sb = match start(cs, &mut c, &spec, init_exe) {
        Ok(sb) => sb,
        Err(e) => {
            let code = e.exit_code().unwrap_or(125);
            let msg = serde_json::to_string(&MonitorReport { error: Some(e.to_string()), code }).unwrap_or_default();
            let _ = writeln!(report, "{msg}");
            return Err(e);
        }
    };
    let ok = serde_json::to_string(&MonitorReport { error: None, code: 0 }).unwrap_or_default();
    let _ = writeln!(report, "{ok}");
    drop(report);

    // the pty master is kept (never written: stdin stays open) and its output logged
    let master = sb.take_pty();
    let pump = match &master {
        Some(m) => {
            let from = m.try_clone().map_err(|e| ContainerError::io("pty", e))?;
            let log = Arc::new(Mutex::new(log));
            Some(std::thread::spawn(move || copy_to_log(from, &log)))
        }
        None => None,
    };
    let code = sb.wait().map_err(|e| ContainerError::Start(c.config.image.clone(), e))?;
    if let Some(p) = pump {
        let _ = p.join();
    }
    drop(master);
    if let Err(e) = ops::mark_exited(&mut c, code) {
        if c.dir.exists() {
            return Err(e);
        }
    }
    if c.config.auto_remove {
        let _lock = cs.lock()?;
        cs.remove(&c)?;
    }
    Ok(code)
}

fn copy_to_log(mut from: File, log: &Mutex<File>) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Ok(mut l) = log.lock() {
            let _ = l.write_all(&buf[..n]);
        }
    }
}
