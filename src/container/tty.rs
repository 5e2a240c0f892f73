//! Raw mode on the user's terminal while an interactive `-t` container runs.

use std::os::fd::AsFd;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Restores the saved terminal settings when dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Put stdin's terminal in raw mode; `None` when stdin is not a terminal.
    pub(crate) fn enable_on_stdin() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}
