//! Stopping a build: Ctrl-C / SIGTERM from the user, or the first failing stage.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

/// Shared stop switch of one build. Running sandboxes register their PID 1 so that a stop
/// can kill them at once (SIGKILL to a PID namespace's init ends everything in it).
#[derive(Debug, Default)]
pub struct Cancel {
    cancelled: AtomicBool,
    aborted: AtomicBool,
    pids: Mutex<Vec<u32>>,
    /// Temp dirs of the running build, removed before a second signal ends the process.
    tmp_dirs: Mutex<Vec<PathBuf>>,
}

impl Cancel {
    /// A switch that is off.
    pub fn new() -> Arc<Self> {
        Arc::new(Cancel::default())
    }

    /// Has the build been told to stop (by the user or by a failure)?
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Was the stop caused by a failing step rather than by the user?
    pub fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Stop: kill every registered sandbox.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let pids = self.pids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Stop because a step failed.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        self.cancel();
    }

    /// Remember a running sandbox (killed at once if the build is already stopping).
    pub(crate) fn register(&self, pid: u32) {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        if self.is_cancelled() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// `Err(Cancelled)` once the build was told to stop: for long loops (copying, hashing).
    pub(crate) fn check(&self) -> Result<(), super::BuildError> {
        if self.is_cancelled() {
            Err(super::BuildError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Remember a temp dir to remove if a second signal ends the process at once.
    pub fn track_tmp(&self, dir: PathBuf) {
        self.tmp_dirs.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
    }

    /// Forget a temp dir (removed by its owner).
    pub fn untrack_tmp(&self, dir: &std::path::Path) {
        self.tmp_dirs.lock().unwrap_or_else(|p| p.into_inner()).retain(|d| d != dir);
    }

    /// Forget a sandbox that ended.
    pub(crate) fn unregister(&self, pid: u32) {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).retain(|&p| p != pid);
    }

    /// Turn SIGINT, SIGTERM and SIGHUP into [`Cancel::cancel`]: block them in the calling
    /// thread (threads started later inherit the mask; the sandbox's init and payload reset
    /// theirs) and wait for them in a thread of their own. A second signal ends the process
    /// at once with 128+N, after removing the tracked temp dirs. Call this before starting
    /// other threads.
    pub fn on_signals(self: &Arc<Self>) -> std::io::Result<()> {
        self.on_signals_then(|| {})
    }

    /// [`Cancel::on_signals`], calling `before_exit` (e.g. to say "build cancelled") just
    /// before a second signal ends the process.
    pub fn on_signals_then(self: &Arc<Self>, before_exit: impl Fn() + Send + 'static) -> std::io::Result<()> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGHUP);
        set.thread_block().map_err(std::io::Error::from)?;
        let me = Arc::clone(self);
        std::thread::Builder::new().name("rbuild-signals".into()).spawn(move || {
            let mut seen = false;
            while let Ok(sig) = set.wait() {
                if seen {
                    me.cancel();
                    let dirs = me.tmp_dirs.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    for d in dirs {
                        let _ = std::fs::remove_dir_all(d);
                    }
                    before_exit();
                    std::process::exit(128 + sig as i32);
                }
                seen = true;
                me.cancel();
            }
        })?;
        Ok(())
    }
}
