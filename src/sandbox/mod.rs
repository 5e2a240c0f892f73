//! Run one process in an isolated rootfs: namespaces, pivot_root/chroot, mounts. Used for
//! `RUN` steps of a build and for `rbuild run` containers.
//!
//! All `unsafe` of the crate lives in this module (in `sys.rs`), each block with a
//! `// SAFETY:` comment.
//!
//! # Process tree
//!
//! ```text
//! rbuild (any thread)                       host namespaces
//!  └─ rbuild __sandbox-init   "init" (A)    host mount ns; new PID, UTS, IPC (+ net) ns
//!      └─ payload             (B)           PID 1 of the new PID ns, private mount ns
//! ```
//!
//! The builder is multi-threaded, so [`spawn`] re-executes the rbuild binary (`init_exe
//! __sandbox-init`, dispatched to [`init_main`]) to get a single-threaded process that may
//! `fork` freely. The parent sends the [`Spec`] as JSON over a socketpair. Init calls
//! `setsid`, unshares the PID/UTS/IPC(/net) namespaces and forks the payload, which becomes
//! PID 1 of the new PID namespace (like Docker: the container's command is PID 1; orphans in
//! the container are reparented to it). The payload unshares a mount namespace, marks every
//! mount private, builds the root on a private tmpfs scratch mount (overlay or bind),
//! mounts `/proc`, a minimal `/dev`, private copies of the host's `/etc/hosts` and
//! `/etc/resolv.conf`, the spec's mounts (bind, tmpfs, file), sets the hostname (and brings `lo` up for
//! [`Network::None`]), `pivot_root`s (falls back to `chroot`), limits root to Docker's
//! default capability set (unless [`Spec::privileged`]), switches user, and `exec`s with
//! exactly the spec's environment. Setup or exec errors come back over a close-on-exec
//! pipe and are turned into [`SandboxError`]s by [`spawn`].
//!
//! Init stays in the host mount namespace, waits for the payload, forwards signals (its own
//! SIGINT/TERM/HUP/QUIT/USR1/USR2/WINCH and [`Sandbox::kill`] requests) to it, removes what it
//! created, and exits with the payload's status (code, or 128+signal). The payload has
//! `PR_SET_PDEATHSIG(SIGKILL)` towards init, and init kills the payload with SIGKILL when the
//! rbuild process goes away (its end of the socketpair closes), unless [`Sandbox::detach`]
//! was called. Killing PID 1 of a PID namespace kills every process in it, and the mount
//! namespace (with the overlay mount) goes away with the last of them: once [`Sandbox::wait`]
//! returns, nothing of the sandbox runs and nothing of it is mounted.
//!
//! # What consumers must know
//!
//! - **Overlay rootfs leaves no mountpoints in the upper dir.** Mountpoints the image lacks
//!   (`/proc`, `/dev`, `/etc/hosts`, `/etc/resolv.conf`, [`Mount`] targets) come from an
//!   extra, lowest lower layer on the private tmpfs, so the upper dir holds only what the
//!   process wrote. A directory copied up because the process wrote below it (e.g. `etc/`)
//!   is an ordinary overlay copy-up. A target reached through an image's symlink
//!   (`/var/run/x` with `/var/run -> /realrun`, followed inside the root) gets its stub at
//!   the resolved path: the overlay is mounted, targets resolved, and if stubs are missing
//!   it is unmounted, the stubs added to the stub layer, and mounted again.
//! - [`Spec::mounts`] are mounted parents first (stable sort by the number of components of
//!   the target, as BuildKit), so a tmpfs at `/x` never hides a secret at `/x/tok`. A child's
//!   mount point missing in its parent mount is created there: in a tmpfs (gone with it), in
//!   a writable bind such as a cache mount (it stays there, as with runc); in a read-only
//!   mount it is a setup error naming both targets.
//!   The overlay is mounted with `redirect_dir=off,metacopy=off,index=off`, so the upper dir
//!   is a plain tree of whole files plus overlay whiteouts (0/0 char devices) and opaque
//!   markers (`trusted.overlay.opaque`): a renamed lower directory is copied, not redirected.
//! - **Dir rootfs**: missing mountpoints are created in the directory (empty root-owned
//!   files and directories) and removed again by init when the payload has ended (a tree
//!   diff taken after [`Sandbox::wait`] does not see them; their parents get their times
//!   back when their entries are as before). Targets through an image's symlink are resolved
//!   as in overlay mode. A Dir rootfs must not be used by
//!   two sandboxes at once (one's cleanup would remove the other's mountpoints).
//! - Security as Docker's defaults: Docker's capability set for root (no mount, no module
//!   loading, ...), `/proc/sys` read-only, `/proc/{kcore,keys,timer_list,sched_debug,...}`
//!   masked. No seccomp filter, no `/sys`, no cgroup limits.
//! - `/etc/hosts` and `/etc/resolv.conf` are private writable copies of the host's (for
//!   [`Network::None`] a minimal hosts file); writes to them never reach the host or a layer.
//!   They are only mounted over regular files or missing paths, not over symlinks.
//! - The environment is exactly [`Spec::env`]: no `PATH` or `TERM` is added, and `HOME`
//!   only with [`Spec::set_home`] (runc's rule: the user's passwd home when the env has
//!   none). `PATH` for the command lookup is the spec's `PATH`, or [`DEFAULT_PATH`].
//! - The working directory must exist (`WORKDIR` creates it); a missing one is a setup error.
//! - A command that cannot be found gives [`SandboxError::Exec`] with code 127, one that
//!   cannot be executed code 126 (Docker's codes).
//! - PR_SET_PDEATHSIG is not used towards rbuild, so the thread that spawned may end; the
//!   socketpair tells init that rbuild is gone (SIGKILL of rbuild or Ctrl-C without a
//!   handler still leaves nothing running). Init runs in its own session, so the terminal's
//!   Ctrl-C reaches only rbuild: forward it with [`Sandbox::kill`] (or signal
//!   [`Sandbox::container_pid`]). A PID 1 gets only the signals it has handlers for,
//!   except SIGKILL (kernel rule), so `kill -9 $$` inside does nothing, as in Docker.
//! - Temporary state: init makes an empty `.rbuild-sandbox-XXXXXX` directory in the
//!   directory of [`Spec::status_file`] if set (a container's state dir, removed with the
//!   container even when init was SIGKILLed), else in rbuild's `std::env::temp_dir()` (the
//!   private tmpfs is mounted on it inside the sandbox only) and removes it at the end.
//! - [`Mount::Tmpfs`] and [`Mount::File`] exist only in the payload's mount namespace: a
//!   file's bytes travel over the socketpair and are written to a tmpfs there (never to a
//!   disk), so nothing of them remains once the sandbox has ended, even after a SIGKILL.
//! - [`Stdio::Pty`] allocates the pty in the sandbox's own devpts (`tty` prints
//!   `/dev/pts/0`, owned by the user, as with runc); the master comes back to rbuild over
//!   the socketpair (SCM_RIGHTS).

mod init;
mod sys;
pub mod user;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub use init::init_main;
pub use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// Docker's default `PATH`, used for the command lookup when the spec's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Environment variable through which the parent tells init the number of its socket.
const FD_ENV: &str = "RBUILD_SANDBOX_FD";

/// The root filesystem of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay mount: `lower` top-first (read-only layers), `upper` receives the writes,
    /// `work` is an empty directory on the same filesystem as `upper`.
    Overlay {
        /// Lower directories, top (newest layer) first.
        lower: Vec<PathBuf>,
        /// The writable upper directory; becomes the layer.
        upper: PathBuf,
        /// overlayfs's work directory (same filesystem as `upper`).
        work: PathBuf,
    },
    /// A directory used directly (bind-mounted); writes land in it.
    Dir(PathBuf),
}

/// The network a sandbox sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo` (up).
    None,
}

/// Something mounted inside the sandbox after /proc, /dev and the /etc files. A target the
/// rootfs lacks leaves no trace in it (see "What consumers must know").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// A host path.
    Bind(BindMount),
    /// A fresh, empty tmpfs (mode 1777, nosuid), gone with the sandbox.
    Tmpfs(TmpfsMount),
    /// A file holding given bytes (a build secret): written to a tmpfs of the payload's own
    /// mount namespace and bind-mounted read-only, nosuid, nodev, noexec. It never exists on
    /// a disk, and nothing outside the sandbox can see it.
    File(FileMount),
}

impl Mount {
    /// Absolute path inside the sandbox.
    pub fn dst(&self) -> &Path {
        match self {
            Mount::Bind(b) => &b.dst,
            Mount::Tmpfs(t) => &t.dst,
            Mount::File(f) => &f.dst,
        }
    }

    /// Is the mountpoint a directory (else a file)?
    fn is_dir(&self) -> bool {
        match self {
            Mount::Bind(b) => std::fs::metadata(&b.src).map(|md| md.is_dir()).unwrap_or(true),
            Mount::Tmpfs(_) => true,
            Mount::File(_) => false,
        }
    }
}

impl From<BindMount> for Mount {
    fn from(b: BindMount) -> Self {
        Mount::Bind(b)
    }
}

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path (file or directory).
    pub src: PathBuf,
    /// Absolute path inside the sandbox.
    pub dst: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
}

/// A fresh tmpfs inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Absolute path inside the sandbox.
    pub dst: PathBuf,
    /// Size limit in bytes (the kernel rounds it up to whole pages); `None` is the
    /// kernel's default (half of RAM).
    pub size: Option<u64>,
}

/// A read-only file with given content inside the sandbox. `Debug` shows the content's
/// length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMount {
    /// Absolute path inside the sandbox.
    pub dst: PathBuf,
    /// The bytes.
    pub content: Vec<u8>,
    /// Permission bits (e.g. 0o400).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl std::fmt::Debug for FileMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMount")
            .field("dst", &self.dst)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Where the payload's stdin/stdout/stderr go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Stdio {
    /// rbuild's own stdin, stdout and stderr.
    #[default]
    Inherit,
    /// stdin is /dev/null; stdout and stderr are pipes ([`Sandbox::take_stdout`],
    /// [`Sandbox::take_stderr`]).
    Piped,
    /// stdin is /dev/null; stdout and stderr share one pipe, so their order is kept
    /// ([`Sandbox::take_stdout`]). Meant for build logs.
    Merged,
    /// A new pseudo-terminal is stdin, stdout and stderr and the controlling terminal;
    /// the master side is [`Sandbox::take_pty`]. Its initial size is that of rbuild's own
    /// terminal (24x80 without one); see [`Sandbox::resize_pty`].
    Pty,
    /// stdin is /dev/null; stdout and stderr are appended to this file (created 0640 if
    /// missing). Meant for detached containers.
    File(PathBuf),
    /// stdin is /dev/null; stdout and stderr are appended to these two files (each
    /// created 0640 if missing). For detached containers whose logs keep the streams apart.
    Files {
        /// Receives stdout.
        stdout: PathBuf,
        /// Receives stderr.
        stderr: PathBuf,
    },
    /// stdin, stdout and stderr are /dev/null.
    Null,
}

/// What to run and how to isolate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The command; `argv[0]` is looked up in the env's `PATH` unless it contains a `/`.
    pub argv: Vec<String>,
    /// The complete environment of the process (nothing else is added).
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the sandbox; must exist.
    pub cwd: PathBuf,
    /// `name`, `uid`, `name:group`, `uid:gid`, ... resolved with the rootfs's /etc/passwd
    /// and /etc/group; `None` is root.
    pub user: Option<String>,
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// Host network or a private one with only `lo`.
    pub network: Network,
    /// Mounts, applied in order after /proc, /dev and /etc files.
    pub mounts: Vec<Mount>,
    /// Standard streams.
    pub stdio: Stdio,
    /// When set, init writes the payload's exit status here (decimal, newline; atomically)
    /// when it ends, even after [`Sandbox::detach`]. For `rbuild run -d` state. Its
    /// directory also holds init's scratch dir while the sandbox runs.
    pub status_file: Option<PathBuf>,
    /// Keep every capability of root. Off (Docker's default): the process gets Docker's
    /// default capability set, so it cannot mount, load modules, change the clock, ...
    pub privileged: bool,
    /// When the env has no `HOME`, add `HOME=<the user's passwd home>` (`/` without an
    /// entry), as Docker does. Off by default so the env is exactly [`Spec::env`].
    pub set_home: bool,
}

impl Spec {
    /// A spec with defaults: empty env, cwd `/`, root, hostname `rbuild`, host network, no
    /// mounts, inherited stdio, no status file.
    pub fn new(rootfs: Rootfs, argv: Vec<String>) -> Self {
        Spec {
            rootfs,
            argv,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            user: None,
            hostname: "rbuild".to_string(),
            network: Network::Host,
            mounts: Vec::new(),
            stdio: Stdio::Inherit,
            status_file: None,
            privileged: false,
            set_home: false,
        }
    }
}

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec cannot be run as given.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The init process could not be started.
    #[error("cannot start the sandbox init {exe}: {source} (is the rbuild binary still there?)")]
    Start {
        /// The init executable.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Setting up namespaces, mounts, user or working directory failed.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The command could not be executed; `code` is what a shell (and Docker) would exit
    /// with: 127 when not found, 126 when not executable.
    #[error("exec failed: {argv0}: {reason}")]
    Exec {
        /// The command as given.
        argv0: String,
        /// Why, e.g. "executable file not found in $PATH".
        reason: String,
        /// 127 or 126.
        code: i32,
    },
    /// Talking to or waiting for the sandbox failed.
    #[error("sandbox i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    /// The exit code Docker reports for this error (127/126 for exec errors, else 125).
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Exec { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Parent → init messages (one JSON document per line).
#[derive(Debug, Serialize, Deserialize)]
enum ToInit {
    Start(Box<InitRequest>),
    Signal(i32),
    Detach,
}

/// Init → parent messages (one JSON document per line).
#[derive(Debug, Serialize, Deserialize)]
enum FromInit {
    Started {
        pid: i32,
    },
    Failed {
        message: String,
    },
    ExecFailed {
        argv0: String,
        reason: String,
        code: i32,
    },
}

/// The spec as init needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InitRequest {
    rootfs: Rootfs,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    user: Option<String>,
    hostname: String,
    network: Network,
    mounts: Vec<Mount>,
    /// Allocate a pty of this size (rows, cols) in the sandbox.
    pty: Option<(u16, u16)>,
    status_file: Option<PathBuf>,
    privileged: bool,
    set_home: bool,
    scratch_parent: PathBuf,
}

fn validate(spec: &Spec) -> Result<(), SandboxError> {
    let bad = |m: String| Err(SandboxError::InvalidSpec(m));
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return bad("the command is empty".into());
    }
    if spec.argv.iter().any(|a| a.contains('\0')) {
        return bad("the command contains a NUL byte".into());
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return bad(format!("invalid environment variable name {k:?}"));
        }
    }
    if !spec.cwd.is_absolute() {
        return bad(format!(
            "working directory {} is not absolute",
            spec.cwd.display()
        ));
    }
    if spec.hostname.is_empty() || spec.hostname.len() > 64 {
        return bad(format!(
            "hostname {:?} must have 1 to 64 characters",
            spec.hostname
        ));
    }
    for m in &spec.mounts {
        let dst = m.dst();
        if !dst.is_absolute() {
            return bad(format!("mount target {} is not absolute", dst.display()));
        }
        if dst
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return bad(format!("mount target {} contains '..'", dst.display()));
        }
        if let Mount::File(f) = m {
            if f.mode > 0o7777 {
                return bad(format!("mode {:o} of {} is not a permission mode", f.mode, dst.display()));
            }
        }
    }
    if let Rootfs::Overlay { lower, .. } = &spec.rootfs {
        if lower.is_empty() {
            return bad("an overlay rootfs needs at least one lower directory".into());
        }
    }
    Ok(())
}

/// Open a log file for appending (created 0640 if missing).
fn open_log(path: &Path) -> Result<File, SandboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| SandboxError::Setup(format!("cannot open log file {}: {e}", path.display())))
}

/// Start `spec.argv` in a new sandbox; returns once the command has been exec'd.
///
/// `init_exe` is the rbuild binary (`std::env::current_exe()`; tests use
/// `env!("CARGO_BIN_EXE_rbuild")`), run as `init_exe __sandbox-init`.
pub fn spawn(spec: &Spec, init_exe: &Path) -> Result<Sandbox, SandboxError> {
    validate(spec)?;
    let (ours, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(init_exe);
    cmd.arg("__sandbox-init")
        .env_clear()
        .env(FD_ENV, theirs.as_raw_fd().to_string());
    sys::keep_fd_in_child(&mut cmd, theirs.as_raw_fd());

    let mut pty_size = None;
    let mut merged_reader = None;
    match &spec.stdio {
        Stdio::Inherit => {
            cmd.stdin(std::process::Stdio::inherit())
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit());
        }
        Stdio::Piped => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        }
        Stdio::Merged => {
            let (r, w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
            let w2 = w.try_clone()?;
            cmd.stdin(std::process::Stdio::null()).stdout(w).stderr(w2);
            merged_reader = Some(File::from(r));
        }
        Stdio::Pty => {
            // The pty is allocated inside the sandbox (its own devpts, so `tty` shows
            // /dev/pts/0) and its master comes back with the start report. It starts with
            // the size of rbuild's own terminal, if it has one; resize_pty later.
            pty_size = Some(
                [std::io::stdin().as_fd(), std::io::stdout().as_fd()]
                    .into_iter()
                    .find_map(sys::get_winsize)
                    .unwrap_or((24, 80)),
            );
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        Stdio::File(path) => {
            let f = open_log(path)?;
            let f2 = f.try_clone()?;
            cmd.stdin(std::process::Stdio::null()).stdout(f).stderr(f2);
        }
        Stdio::Files { stdout, stderr } => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(open_log(stdout)?)
                .stderr(open_log(stderr)?);
        }
        Stdio::Null => {
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
    }

    let mut child = cmd.spawn().map_err(|source| SandboxError::Start {
        exe: init_exe.to_path_buf(),
        source,
    })?;
    // Our copies of the child's ends must go, or reads never see EOF.
    drop(cmd);
    drop(theirs);

    // Host paths absolute: init works from "/" so it pins no directory of rbuild's cwd.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let req = InitRequest {
        rootfs: match &spec.rootfs {
            Rootfs::Dir(d) => Rootfs::Dir(abs(d)),
            Rootfs::Overlay { lower, upper, work } => Rootfs::Overlay {
                lower: lower.iter().map(|l| abs(l)).collect(),
                upper: abs(upper),
                work: abs(work),
            },
        },
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        network: spec.network,
        mounts: spec
            .mounts
            .iter()
            .map(|m| match m {
                Mount::Bind(b) => Mount::Bind(BindMount {
                    src: abs(&b.src),
                    ..b.clone()
                }),
                other => other.clone(),
            })
            .collect(),
        pty: pty_size,
        status_file: spec.status_file.as_deref().map(abs),
        privileged: spec.privileged,
        set_home: spec.set_home,
        // next to the status file (a container's state dir) when there is one: a SIGKILLed
        // init cannot remove it, and the container's removal then takes it along
        scratch_parent: spec
            .status_file
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| abs(&std::env::temp_dir()), abs),
    };
    let reply = send(&ours, &ToInit::Start(Box::new(req))).and_then(|()| recv_line(&ours));
    let mut pty_master = None;
    let reply = reply.map(|(line, fds)| {
        pty_master = fds.into_iter().next().map(File::from);
        line
    });
    // After a report, init cleans up (scratch dir, Dir stubs) and exits by itself.
    let fail = |child: &mut Child, err: SandboxError| {
        let _ = child.wait();
        Err(err)
    };
    let parsed = reply.map(|line| serde_json::from_str::<FromInit>(line.trim_end()));
    match parsed {
        Ok(Ok(FromInit::Started { pid })) => Ok(Sandbox {
            stdout: child
                .stdout
                .take()
                .map(|s| File::from(OwnedFd::from(s)))
                .or(merged_reader),
            stderr: child.stderr.take().map(|s| File::from(OwnedFd::from(s))),
            child,
            control: Some(ours),
            container_pid: pid,
            pty_ctl: match &pty_master {
                Some(m) => Some(m.as_fd().try_clone_to_owned()?),
                None => None,
            },
            pty: pty_master,
            status: None,
            detached: false,
        }),
        Ok(Ok(FromInit::Failed { message })) => fail(&mut child, SandboxError::Setup(message)),
        Ok(Ok(FromInit::ExecFailed {
            argv0,
            reason,
            code,
        })) => fail(
            &mut child,
            SandboxError::Exec {
                argv0,
                reason,
                code,
            },
        ),
        Ok(Err(_)) | Err(_) => {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let status = child.wait();
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            Err(SandboxError::Setup(format!(
                "the sandbox init process ended without a report ({how}); is {} an rbuild binary?",
                init_exe.display()
            )))
        }
    }
}

fn send(sock: &UnixStream, msg: &ToInit) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    send_all(sock, &line)
}

/// Read one newline-terminated message and the descriptors sent with it (SCM_RIGHTS).
fn recv_line(sock: &UnixStream) -> std::io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    while !buf.contains(&b'\n') {
        let (chunk, got) = recv_with_fds(sock)?;
        fds.extend(got);
        if chunk.is_empty() {
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((String::from_utf8_lossy(&buf).into_owned(), fds))
}

/// One recvmsg(2): the bytes read (empty at EOF) and the descriptors that came with them,
/// close-on-exec.
fn recv_with_fds(sock: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::RawFd;
    let mut chunk = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut chunk)];
    let (n, raw) = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut raw = Vec::new();
                for c in msg.cmsgs().map_err(std::io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(v) = c {
                        raw.extend(v);
                    }
                }
                break (msg.bytes, raw);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let fds = raw.into_iter().map(sys::own_fd).collect();
    Ok((chunk[..n].to_vec(), fds))
}

/// Send `bytes` with descriptors attached (SCM_RIGHTS), MSG_NOSIGNAL.
fn send_with_fds(
    sock: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    send_all(sock, &bytes[n..])
}

/// Write all of `bytes` with MSG_NOSIGNAL: a peer that is gone gives EPIPE, never SIGPIPE,
/// whatever the program did with SIGPIPE.
fn send_all(sock: &UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        use nix::sys::socket::{send as send_to, MsgFlags};
        match send_to(sock.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A running sandbox. Dropping it without [`Sandbox::wait`] or [`Sandbox::detach`] kills
/// and reaps it.
#[derive(Debug)]
pub struct Sandbox {
    child: Child,
    control: Option<UnixStream>,
    container_pid: i32,
    stdout: Option<File>,
    stderr: Option<File>,
    pty: Option<File>,
    /// A second descriptor of the pty master, for resize_pty after take_pty.
    pty_ctl: Option<OwnedFd>,
    status: Option<i32>,
    detached: bool,
}

/// What remains of a detached sandbox: process ids to record (and signal) later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detached {
    /// Host pid of the init process; it exits with the container's status.
    pub pid: u32,
    /// Host pid of the container's PID 1. SIGKILL to it ends the whole container.
    pub container_pid: u32,
}

impl Sandbox {
    /// Host pid of the sandbox's init process (rbuild's direct child).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Host pid of the container's process, PID 1 inside its PID namespace.
    pub fn container_pid(&self) -> u32 {
        self.container_pid as u32
    }

    /// The read end of stdout ([`Stdio::Piped`]) or of the merged output ([`Stdio::Merged`]).
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    /// The read end of stderr ([`Stdio::Piped`]).
    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }

    /// The pty master ([`Stdio::Pty`]): read the output, write the input.
    pub fn take_pty(&mut self) -> Option<File> {
        self.pty.take()
    }

    /// Set the pty's window size (forward SIGWINCH of the user's terminal with this); works
    /// after [`Sandbox::take_pty`] too.
    pub fn resize_pty(&self, rows: u16, cols: u16) -> Result<(), SandboxError> {
        match &self.pty_ctl {
            Some(m) => Ok(sys::set_winsize(m.as_fd(), rows, cols)?),
            None => Err(SandboxError::InvalidSpec(
                "the sandbox has no pty (Stdio::Pty)".into(),
            )),
        }
    }

    /// Send `sig` to the container's PID 1. SIGKILL ends every process of the sandbox;
    /// other signals reach PID 1 only if it handles them (kernel rule for namespace inits).
    /// A sandbox that already ended is not an error.
    pub fn kill(&mut self, sig: Signal) -> Result<(), SandboxError> {
        if self.status.is_some() {
            return Ok(());
        }
        if let Some(sock) = &self.control {
            match send(sock, &ToInit::Signal(sig as i32)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(_) => {}
            }
        }
        // No control channel: init forwards signals it receives itself; SIGKILL to init
        // kills the payload through PR_SET_PDEATHSIG.
        match self.child.try_wait()? {
            Some(_) => Ok(()),
            None => {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
                    .map_err(std::io::Error::from)?;
                Ok(())
            }
        }
    }

    /// Wait for the sandbox to end; returns the exit code, 128+N when killed by signal N.
    /// When this returns, no process of the sandbox is left and its mounts are gone.
    pub fn wait(&mut self) -> Result<i32, SandboxError> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let st = self.child.wait()?;
        let code = exit_code(st);
        self.status = Some(code);
        self.control = None;
        Ok(code)
    }

    /// Like [`Sandbox::wait`] without blocking: `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<i32>, SandboxError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        match self.child.try_wait()? {
            Some(st) => {
                let code = exit_code(st);
                self.status = Some(code);
                self.control = None;
                Ok(Some(code))
            }
            None => Ok(None),
        }
    }

    /// Let the sandbox outlive this handle (and rbuild): init stops watching rbuild and keeps
    /// waiting for the payload, writing [`Spec::status_file`] when it ends. The caller should
    /// have used [`Stdio::File`] or [`Stdio::Null`] so no pipe ties it to rbuild.
    ///
    /// A payload that already ended (`run -d img true`) is not an error: init has written
    /// the status file and exited. The init process stays rbuild's child until rbuild exits
    /// (a long-lived caller should reap it with waitpid on [`Detached::pid`]).
    pub fn detach(mut self) -> Result<Detached, SandboxError> {
        if let Some(sock) = &self.control {
            match send(sock, &ToInit::Detach) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.detached = true;
        Ok(Detached {
            pid: self.child.id(),
            container_pid: self.container_pid as u32,
        })
    }
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 255,
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.detached || self.status.is_some() {
            return;
        }
        let _ = self.kill(Signal::SIGKILL);
        let _ = self.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_specs_are_refused_before_anything_runs() {
        let ok = Spec::new(Rootfs::Dir("/nonexistent".into()), vec!["true".into()]);
        assert!(validate(&ok).is_ok());
        let mut s = ok.clone();
        s.argv.clear();
        assert!(validate(&s).is_err());
        let mut s = ok.clone();
        s.cwd = "rel".into();
        assert!(validate(&s).is_err());
        let mut s = ok.clone();
        s.env.push(("A=B".into(), "c".into()));
        assert!(validate(&s).is_err());
        let mut s = ok.clone();
        s.mounts.push(
            BindMount {
                src: "/tmp".into(),
                dst: "/a/../../etc".into(),
                readonly: false,
            }
            .into(),
        );
        assert!(validate(&s).is_err());
        let mut s = ok;
        s.rootfs = Rootfs::Overlay {
            lower: vec![],
            upper: "/u".into(),
            work: "/w".into(),
        };
        assert!(validate(&s).is_err());
    }
}
