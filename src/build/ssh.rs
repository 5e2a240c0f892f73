//! `--ssh ID[=SOCKET]` and `RUN --mount=type=ssh`: an ssh-agent the RUN can use, never its keys.
//!
//! `--ssh default` forwards the agent at `$SSH_AUTH_SOCK`; `--ssh ID=/path/agent.sock` another
//! one. For each `type=ssh` mount of a RUN that misses the cache, rbuild listens on a fresh
//! socket in the step's scratch dir (mode 0600 unless `mode=`, owned by `uid=`/`gid=`) and
//! relays every connection to the agent; the socket is bind-mounted at the target (BuildKit's
//! default `/run/buildkit/ssh_agent.N`) and `SSH_AUTH_SOCK` points at the first one (unless
//! the RUN's env sets it). The relay stops when the RUN ends. The agent's keys never leave it:
//! nothing of them is in a key, a layer or the store. Key files (`--ssh default=~/.ssh/id_ed25519`,
//! which BuildKit loads into an agent of its own) are refused with what to do instead.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The agents given with `--ssh`, by id.
#[derive(Debug, Clone, Default)]
pub struct SshAgents {
    by_id: BTreeMap<String, PathBuf>,
}

impl SshAgents {
    /// Parse `--ssh` flags: `ID` (the agent at `$SSH_AUTH_SOCK`) or `ID=SOCKET`.
    pub fn from_flags<S: AsRef<str>>(flags: &[S]) -> Result<SshAgents, String> {
        let mut out = SshAgents::default();
        for f in flags {
            let f = f.as_ref();
            let (id, path) = match f.split_once('=') {
                Some((id, p)) => (id, PathBuf::from(p)),
                None => match std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty()) {
                    Some(p) => (f, PathBuf::from(p)),
                    None => {
                        return Err(format!(
                            "--ssh {f}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or pass --ssh {f}=/path/to/agent.sock"
                        ))
                    }
                },
            };
            if id.is_empty() || id.contains(',') {
                return Err(format!("--ssh {f}: expected ID or ID=SOCKET, e.g. --ssh default"));
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.file_type().is_socket() => {}
                Ok(m) if m.is_file() => {
                    return Err(format!(
                        "--ssh {id}={}: a key file, not an agent socket; rbuild forwards agents only: `ssh-add {}` to a running ssh-agent and pass --ssh {id} (or --ssh {id}=$SSH_AUTH_SOCK)",
                        path.display(),
                        path.display()
                    ))
                }
                Ok(_) => return Err(format!("--ssh {id}={}: not a socket", path.display())),
                Err(e) => return Err(format!("--ssh {id}={}: {e}", path.display())),
            }
            out.by_id.insert(id.to_string(), path);
        }
        Ok(out)
    }

    /// The agent socket given for `id`.
    pub fn get(&self, id: &str) -> Option<&Path> {
        self.by_id.get(id).map(PathBuf::as_path)
    }
}

/// A socket relaying to an agent; stops (and its listener goes) when dropped.
pub struct SshRelay {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The private directory (0700) holding the socket, when the relay made it.
    _dir: Option<tempfile::TempDir>,
}

impl SshRelay {
    /// Listen on a socket in a fresh private directory under the system temp dir (socket
    /// paths are limited to 107 bytes, which a deep store root can exceed).
    pub fn start_private(agent: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<SshRelay> {
        let dir = tempfile::Builder::new().prefix("rbuild-ssh-").tempdir()?;
        let mut r = SshRelay::start(&dir.path().join("agent.sock"), agent, mode, uid, gid)?;
        r._dir = Some(dir);
        Ok(r)
    }

    /// The socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Listen at `path` (mode `mode`, owner `uid`:`gid`) and relay each connection to `agent`.
    pub fn start(path: &Path, agent: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<SshRelay> {
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, agent) = (Arc::clone(&stop), agent.to_path_buf());
        let thread = std::thread::Builder::new().name("ssh-relay".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(upstream) = UnixStream::connect(&agent) else { continue };
                relay(client, upstream);
            }
        })?;
        Ok(SshRelay { path: path.to_path_buf(), stop, thread: Some(thread), _dir: None })
    }
}

impl Drop for SshRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copy both ways between `a` and `b` until either side closes.
fn relay(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let pump = |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let _ = std::thread::Builder::new().name("ssh-relay-up".into()).spawn(pump(a, b));
    let _ = std::thread::Builder::new().name("ssh-relay-down".into()).spawn(pump(b2, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn relays_both_ways_and_stops() {
        let d = tempfile::tempdir().unwrap();
        let agent_path = d.path().join("agent.sock");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&[b"re:", &buf[..]].concat()).unwrap();
        });
        let relay_path = d.path().join("relay.sock");
        let relay = SshRelay::start(&relay_path, &agent_path, 0o600, 0, 0).unwrap();
        let mode = std::fs::metadata(&relay_path).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
        let mut c = UnixStream::connect(&relay_path).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 8];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"re:hello");
        server.join().unwrap();
        drop(relay);
        assert!(!relay_path.exists(), "the socket goes with the relay");
    }

    #[test]
    fn flags_need_a_socket() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("id_ed25519");
        std::fs::write(&key, "KEY").unwrap();
        let e = SshAgents::from_flags(&[format!("default={}", key.display())]).unwrap_err();
        assert!(e.contains("a key file") && !e.contains("KEY\""), "{e}");
        assert!(SshAgents::from_flags(&["x=/nonexistent"]).is_err());
        let sock = d.path().join("a.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        let a = SshAgents::from_flags(&[format!("work={}", sock.display())]).unwrap();
        assert_eq!(a.get("work"), Some(sock.as_path()));
    }
}
