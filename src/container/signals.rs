//! Forwarding rbuild's signals to a foreground container's process.
//!
//! The signals are blocked in the calling thread (and so in every thread it starts later)
//! and a dedicated thread takes them with `sigwait` and sends them on. No signal handler,
//! no `unsafe`. The container's process is PID 1 of its PID namespace, so the kernel
//! delivers only the signals it handles; like `docker run`, the third SIGINT sends SIGKILL
//! for a process that ignores Ctrl-C.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Start forwarding to `pid`; SIGWINCH calls `on_winch` instead (pty resize). Call before
/// starting other threads.
pub(crate) fn forward_to(pid: i32, on_winch: Option<Box<dyn Fn() + Send>>) {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    if on_winch.is_some() {
        set.add(Signal::SIGWINCH);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        let mut interrupts = 0;
        while let Ok(sig) = set.wait() {
            if sig == Signal::SIGWINCH {
                if let Some(f) = &on_winch {
                    f();
                }
                continue;
            }
            let mut send = sig;
            if sig == Signal::SIGINT {
                interrupts += 1;
                if interrupts >= 3 {
                    send = Signal::SIGKILL;
                }
            }
            // ESRCH: it has exited and the main thread is about to return
            let _ = kill(Pid::from_raw(pid), send);
        }
    });
}
