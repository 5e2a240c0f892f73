//! `stop`, `rm` and `logs` on recorded containers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{now_rfc3339, ContainerStatus, Observed, State};
use super::{command, Container, ContainerError, Containers};

const POLL: Duration = Duration::from_millis(50);

/// How long to wait for the waiting rbuild (foreground or monitor) to record the exit
/// after the process is gone, before recording it ourselves.
const RECORD_GRACE: Duration = Duration::from_secs(3);

/// Stop a container as `docker stop` does: its stop signal (the image's STOPSIGNAL,
/// default SIGTERM), then SIGKILL after `timeout`. Returns once the exit is recorded.
/// Stopping a container that is not running is a no-op.
pub fn stop(c: &mut Container, timeout: Duration) -> Result<(), ContainerError> {
    let Observed::Running { pid, .. } = c.observe() else {
        return Ok(());
    };
    let first = command::parse_signal(&c.config.stop_signal).unwrap_or(Signal::SIGTERM);
    let mut last = first;
    send(pid, first);
    if !wait_gone(c, timeout) {
        last = Signal::SIGKILL;
        send(pid, Signal::SIGKILL);
        wait_gone(c, Duration::from_secs(10));
    }
    await_record(c, last)
}

/// Kill a running container with SIGKILL and wait for its exit to be recorded.
pub fn kill_now(c: &mut Container) -> Result<(), ContainerError> {
    let Observed::Running { pid, .. } = c.observe() else {
        return Ok(());
    };
    send(pid, Signal::SIGKILL);
    wait_gone(c, Duration::from_secs(10));
    await_record(c, Signal::SIGKILL)
}

fn send(pid: i32, sig: Signal) {
    // ESRCH: it exited meanwhile, which is what we want anyway
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Wait until the process is gone (or `limit` passes); true when gone.
fn wait_gone(c: &Container, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !c.is_running() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Wait for the waiting rbuild to write the exit status; if none is alive to do it (it
/// was killed too), record the exit as killed by `sig` ourselves.
fn await_record(c: &mut Container, sig: Signal) -> Result<(), ContainerError> {
    let deadline = Instant::now() + RECORD_GRACE;
    loop {
        c.reload_status()?;
        if matches!(c.observe(), Observed::Exited { code: Some(_), .. } | Observed::Created) {
            return Ok(());
        }
        let monitor_alive = c
            .status
            .monitor_pid
            .is_some_and(|m| super::procfs::start_time(m).is_some());
        if !monitor_alive || Instant::now() >= deadline {
            return mark_exited(c, 128 + sig as i32);
        }
        std::thread::sleep(POLL);
    }
}

/// Remove a container's state. A running container is refused unless `force`, which
/// kills it first.
pub fn remove(cs: &Containers, c: &mut Container, force: bool) -> Result<(), ContainerError> {
    if c.is_running() {
        if !force {
            return Err(ContainerError::Running(c.config.name.clone()));
        }
        kill_now(c)?;
    }
    let _lock = cs.lock()?;
    cs.remove(c)
}

/// Copy the container's stdout log to `out` and its stderr log to `err` (as Docker keeps
/// the streams apart); with `follow`, keep copying until the container is no longer
/// running. Each stream keeps its order; between the streams, order is by read.
pub fn logs(c: &Container, follow: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), ContainerError> {
    let path = c.log_path();
    let mut f = std::fs::File::open(&path).map_err(|e| ContainerError::io(&path, e))?;
    let err_path = c.err_log_path();
    // containers of older versions have no stderr log: everything is in `log`
    let mut fe = match std::fs::File::open(&err_path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ContainerError::io(&err_path, e)),
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let running = follow && c.is_running();
        pump(&mut f, &path, out, "stdout", &mut buf)?;
        if let Some(fe) = fe.as_mut() {
            pump(fe, &err_path, err, "stderr", &mut buf)?;
        }
        // the last round read everything written before the process was seen gone
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copy what `from` has now to `to`.
fn pump(from: &mut std::fs::File, from_path: &std::path::Path, to: &mut dyn Write, to_name: &str, buf: &mut [u8]) -> Result<(), ContainerError> {
    loop {
        let n = from.read(buf).map_err(|e| ContainerError::io(from_path, e))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).map_err(|e| ContainerError::io(to_name, e))?;
    }
    to.flush().map_err(|e| ContainerError::io(to_name, e))
}

/// Record that the container's process `pid` runs, waited for by `monitor` (the sandbox's
/// init).
pub fn mark_running(c: &mut Container, pid: i32, monitor: i32) -> Result<(), ContainerError> {
    let mut s = ContainerStatus::created();
    s.state = State::Running;
    s.pid = Some(pid);
    s.pid_start = super::procfs::start_time(pid);
    s.monitor_pid = Some(monitor);
    s.started_at = Some(now_rfc3339());
    c.set_status(s)
}

/// Record the exit code.
pub fn mark_exited(c: &mut Container, code: i32) -> Result<(), ContainerError> {
    let mut s = c.status.clone();
    s.state = State::Exited;
    s.exit_code = Some(code);
    s.finished_at = Some(now_rfc3339());
    s.pid = None;
    s.pid_start = None;
    c.set_status(s)
}
