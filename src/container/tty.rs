//! Raw mode on the user's terminal while an interactive `-t` container runs.

use std::os::fd::AsFd;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Restores the saved terminal settings when dropped.
pub(crate) struct RawMode {
    saved: Termios,
    on_stdout: bool,
}

impl RawMode {
    /// Put stdin's terminal in raw mode (for `-it`: keys, Ctrl-C included, go to the
    /// container's pty); `None` when stdin is not a terminal.
    pub(crate) fn enable_on_stdin() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved, on_stdout: false })
    }

    /// Turn off output processing on stdout's terminal (for `-t` without `-i`): the
    /// container's pty already turned `\n` into `\r\n`. Ctrl-C keeps signalling rbuild.
    pub(crate) fn raw_output_on_stdout() -> Option<RawMode> {
        let stdout = std::io::stdout();
        let saved = tcgetattr(stdout.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.output_flags.remove(nix::sys::termios::OutputFlags::OPOST);
        tcsetattr(stdout.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved, on_stdout: true })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = if self.on_stdout {
            tcsetattr(std::io::stdout().as_fd(), SetArg::TCSADRAIN, &self.saved)
        } else {
            tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved)
        };
    }
}

/// The size (rows, cols) of the terminal on stdin, asked of `stty` (no ioctl here: all
/// `unsafe` lives in the sandbox module). `None` when stdin is not a terminal.
pub(crate) fn stdin_size() -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    if !nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false) {
        return None;
    }
    let out = std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|w| w.parse::<u16>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(r), Some(c)) if r > 0 && c > 0 => Some((r, c)),
        _ => None,
    }
}

/// Set the size of the pty whose master is `master` (TIOCSWINSZ on the master applies to
/// the pair), through `stty` on it.
pub(crate) fn set_size(master: &std::fs::File, (rows, cols): (u16, u16)) {
    let Ok(m) = master.try_clone() else { return };
    let _ = std::process::Command::new("stty")
        .args(["rows", &rows.to_string(), "cols", &cols.to_string()])
        .stdin(m)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
