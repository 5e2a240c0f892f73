//! The `__sandbox-init` side: the init process (A) and the payload's setup (B) up to exec.
//! See the module docs of [`crate::sandbox`] for the process tree.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use super::{sys, FileMount, FromInit, InitRequest, Mount, Network, Rootfs, ToInit, DEFAULT_PATH, FD_ENV};

/// Signals init passes on to the payload.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Payload → init report over the close-on-exec pipe (nothing = exec succeeded).
#[derive(Debug, Serialize, Deserialize)]
enum ChildReport {
    Setup(String),
    Exec {
        argv0: String,
        reason: String,
        code: i32,
    },
}

/// Entry point of the hidden `__sandbox-init` subcommand; returns the exit code (the
/// payload's code, 128+signal when it was killed, 125 when the sandbox could not be set up).
pub fn init_main() -> u8 {
    // Start from default dispositions and an empty mask whatever rbuild's spawning thread
    // had (an ignored SIGCHLD would make waitpid fail; an ignored SIGPIPE would leak into
    // the payload through exec).
    if sys::reset_signals().is_err() {
        return 125;
    }
    let Some(sock) = inherited_socket() else {
        return 125;
    };
    let mut conn = Conn {
        sock,
        buf: Vec::new(),
        open: true,
    };
    let req = match conn.read_start() {
        Ok(r) => r,
        Err(msg) => {
            conn.send(&FromInit::Failed { message: msg });
            return 125;
        }
    };
    match supervise(&mut conn, &req) {
        Ok(code) => code,
        Err(msg) => {
            conn.send(&FromInit::Failed { message: msg });
            125
        }
    }
}

fn inherited_socket() -> Option<UnixStream> {
    let raw: i32 = std::env::var(FD_ENV).ok()?.parse().ok()?;
    if raw < 3 {
        return None;
    }
    // Is it an open socket at all? fstat through nix before taking ownership.
    let st = nix::sys::stat::fstat(raw).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    let fd = sys::own_fd(raw);
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(UnixStream::from(fd))
}

/// The control connection to the parent rbuild.
struct Conn {
    sock: UnixStream,
    buf: Vec<u8>,
    open: bool,
}

impl Conn {
    fn read_start(&mut self) -> Result<InitRequest, String> {
        loop {
            if let Some(msg) = self.next_message() {
                return match msg {
                    ToInit::Start(r) => Ok(*r),
                    other => Err(format!("unexpected first message {other:?}")),
                };
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .sock
                .read(&mut chunk)
                .map_err(|e| format!("reading the spec: {e}"))?;
            if n == 0 {
                return Err("the parent closed the connection before sending the spec".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn next_message(&mut self) -> Option<ToInit> {
        loop {
            let nl = self.buf.iter().position(|b| *b == b'\n')?;
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            if let Ok(m) = serde_json::from_slice(&line[..line.len() - 1]) {
                return Some(m);
            }
        }
    }

    fn send_with_fds(&mut self, msg: &FromInit, fds: &[OwnedFd]) {
        if fds.is_empty() {
            return self.send(msg);
        }
        if let Ok(mut line) = serde_json::to_vec(msg) {
            line.push(b'\n');
            let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let _ = super::send_with_fds(&self.sock, &line, &raw);
        }
    }

    fn send(&mut self, msg: &FromInit) {
        if !self.open {
            return;
        }
        if let Ok(mut line) = serde_json::to_vec(msg) {
            line.push(b'\n');
            let _ = super::send_all(&self.sock, &line);
        }
    }
}

/// Init: set up namespaces, fork the payload, relay signals, wait, clean up.
fn supervise(conn: &mut Conn, req: &InitRequest) -> Result<u8, String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let _ = nix::unistd::chdir("/");

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;

    let scratch = tempfile::Builder::new()
        .prefix(".rbuild-sandbox-")
        .tempdir_in(&req.scratch_parent)
        .map_err(|e| {
            format!(
                "creating a scratch dir in {}: {e}",
                req.scratch_parent.display()
            )
        })?
        .keep();
    let (stubs, stub_parents) = match &req.rootfs {
        Rootfs::Dir(dir) => {
            let stubs = missing_mountpoints(dir, req);
            let parents = stub_parents(dir, &stubs);
            (stubs, parents)
        }
        Rootfs::Overlay { .. } => (Vec::new(), Vec::new()),
    };

    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if req.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        let _ = std::fs::remove_dir(&scratch);
        return Err(format!(
            "unshare of the PID/UTS/IPC namespaces: {e} (rbuild needs root)"
        ));
    }

    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // Held open by init; the payload sees it hang up if init died before PR_SET_PDEATHSIG.
    let (alive_r, alive_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // The payload hands the master of the pty it allocates to init over this pair.
    let pty_pair = match req.pty {
        Some(_) => Some(UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?),
        None => None,
    };
    let (pty_init, pty_payload) = match pty_pair {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let child = match sys::fork_single_threaded() {
        Err(e) => {
            let _ = std::fs::remove_dir(&scratch);
            return Err(format!("fork: {e}"));
        }
        Ok(ForkResult::Child) => {
            drop(report_r);
            drop(alive_w);
            drop(pty_init);
            let report = match payload(req, &scratch, &stubs, alive_r, pty_payload) {
                Ok(never) => match never {},
                Err(r) => r,
            };
            let code = match &report {
                ChildReport::Exec { code, .. } => *code,
                ChildReport::Setup(_) => 125,
            };
            if let Ok(bytes) = serde_json::to_vec(&report) {
                let mut f = std::fs::File::from(report_w);
                let _ = f.write_all(&bytes);
            }
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(report_w);
    drop(alive_r);
    drop(pty_payload);
    // Our stdio copies would keep the payload's pipes open after it ended.
    detach_stdio();

    let status = relay(conn, &sigfd, report_r, child, pty_init);

    if let Rootfs::Dir(dir) = &req.rootfs {
        remove_stubs(dir, &stubs, &stub_parents);
    }
    let _ = std::fs::remove_dir(&scratch);
    if let Some(path) = &req.status_file {
        let _ = write_status(path, status);
    }
    Ok(u8::try_from(status).unwrap_or(255))
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

/// Init's event loop; returns the payload's exit status (code or 128+signal).
fn relay(
    conn: &mut Conn,
    sigfd: &SignalFd,
    report_r: OwnedFd,
    child: Pid,
    pty: Option<UnixStream>,
) -> i32 {
    let mut report = std::fs::File::from(report_r);
    let mut report_buf = Vec::new();
    let mut report_open = true;
    let mut detached = false;
    let mut status: Option<i32> = None;
    while status.is_none() || report_open {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if report_open {
            fds.push(PollFd::new(report.as_fd(), PollFlags::POLLIN));
        }
        let sock_idx = fds.len();
        if conn.open {
            fds.push(PollFd::new(conn.sock.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);

        if ready[0] {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if sig == Signal::SIGCHLD {
                    loop {
                        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::Exited(_, c)) => status = Some(c),
                            Ok(WaitStatus::Signaled(_, s, _)) => status = Some(128 + s as i32),
                            Ok(WaitStatus::StillAlive) | Err(_) => break,
                            Ok(_) => continue,
                        }
                        break;
                    }
                } else if status.is_none() {
                    let _ = kill(child, sig);
                }
            }
        }
        if report_open && ready[1] {
            let mut chunk = [0u8; 4096];
            match report.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    report_open = false;
                    // The payload sent the pty master before it exec'd.
                    let fds = match (&pty, report_buf.is_empty()) {
                        (Some(p), true) => {
                            super::recv_with_fds(p).map(|(_, f)| f).unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    let msg = if report_buf.is_empty() {
                        FromInit::Started {
                            pid: child.as_raw(),
                        }
                    } else {
                        match serde_json::from_slice::<ChildReport>(&report_buf) {
                            Ok(ChildReport::Exec {
                                argv0,
                                reason,
                                code,
                            }) => FromInit::ExecFailed {
                                argv0,
                                reason,
                                code,
                            },
                            Ok(ChildReport::Setup(message)) => FromInit::Failed { message },
                            Err(_) => FromInit::Failed {
                                message: "garbled report from the payload".into(),
                            },
                        }
                    };
                    conn.send_with_fds(&msg, &fds);
                }
                Ok(n) => report_buf.extend_from_slice(&chunk[..n]),
            }
        }
        if conn.open && ready.get(sock_idx).copied().unwrap_or(false) {
            let mut chunk = [0u8; 4096];
            match conn.sock.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    conn.open = false;
                    if !detached && status.is_none() {
                        // rbuild went away without detaching: nothing may stay behind.
                        let _ = kill(child, Signal::SIGKILL);
                    }
                }
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    while let Some(msg) = conn.next_message() {
                        match msg {
                            ToInit::Signal(n) => {
                                if let (None, Ok(sig)) = (status, Signal::try_from(n)) {
                                    let _ = kill(child, sig);
                                }
                            }
                            ToInit::Detach => detached = true,
                            ToInit::Start(_) => {}
                        }
                    }
                    if detached {
                        conn.open = false;
                    }
                }
            }
        }
    }
    status.unwrap_or(255)
}

fn write_status(path: &Path, status: i32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(tmp, "{status}")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A mountpoint the payload needs: path relative to the root, and whether it is a dir.
#[derive(Debug, Clone)]
struct Mountpoint {
    rel: PathBuf,
    dir: bool,
}

fn rel(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Every mountpoint the payload needs, at its literal path: the fixed ones, then the
/// [`Mount`] targets.
fn mountpoints(req: &InitRequest) -> Vec<Mountpoint> {
    let mut v = fixed_mountpoints();
    v.extend(mount_targets(req));
    v
}

/// `/proc`, `/dev`, `/sys` and the /etc files (never looked up through symlinks).
fn fixed_mountpoints() -> Vec<Mountpoint> {
    vec![
        Mountpoint {
            rel: "proc".into(),
            dir: true,
        },
        Mountpoint {
            rel: "dev".into(),
            dir: true,
        },
        Mountpoint {
            rel: "sys".into(),
            dir: true,
        },
        Mountpoint {
            rel: "etc/hosts".into(),
            dir: false,
        },
        Mountpoint {
            rel: "etc/resolv.conf".into(),
            dir: false,
        },
    ]
}

/// The [`Mount`] targets at their literal paths.
fn mount_targets(req: &InitRequest) -> impl Iterator<Item = Mountpoint> + '_ {
    req.mounts.iter().map(|m| Mountpoint {
        rel: rel(m.dst()),
        dir: m.is_dir(),
    })
}

/// The mounts in the order they are mounted: by the number of components of the target,
/// stable (so a parent is mounted before its children, and of two mounts on one target the
/// later wins), as BuildKit/containerd sort them. A child's mount point missing in the
/// parent mount is then created inside the parent (see the mount loop of [`payload`]).
fn mount_order(req: &InitRequest) -> Vec<&Mount> {
    let mut v: Vec<&Mount> = req.mounts.iter().collect();
    v.sort_by_key(|m| rel(m.dst()).components().count());
    v
}

/// Paths (relative, parents first) that must be created in a Dir rootfs for the mounts.
/// Mount targets are first resolved as the container sees them ([`resolve_in_root`]: an
/// image's `/var/run -> /run` is followed inside the root), so the stubs are created where
/// the mounts will go. Nothing below a symlink is listed: creating through an image's
/// symlink could write outside the rootfs.
fn missing_mountpoints(root: &Path, req: &InitRequest) -> Vec<Mountpoint> {
    let mut out: Vec<Mountpoint> = Vec::new();
    for mp in fixed_mountpoints() {
        missing_components(root, &mp, &mut out);
    }
    for mp in mount_targets(req) {
        // A target that cannot be resolved (a symlink loop) is refused by the payload.
        let rel = resolve_in_root(root, &mp.rel).unwrap_or(mp.rel);
        missing_components(root, &Mountpoint { rel, dir: mp.dir }, &mut out);
    }
    out
}

/// Append the missing components of `mp` below `root` (parents first) to `out`; stop at
/// a symlink.
fn missing_components(root: &Path, mp: &Mountpoint, out: &mut Vec<Mountpoint>) {
    let comps: Vec<_> = mp.rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        match std::fs::symlink_metadata(root.join(&cur)) {
            Ok(md) if md.file_type().is_symlink() => break,
            Ok(_) => continue,
            Err(_) => {
                if !out.iter().any(|o| o.rel == cur) {
                    out.push(Mountpoint {
                        rel: cur.clone(),
                        dir: !last || mp.dir,
                    });
                }
            }
        }
    }
}

/// An existing directory of a Dir rootfs in which stubs are created: its entries and times
/// before, so that its mtime can be put back once the stubs are gone (else the copy-mode
/// diff would put the directory, e.g. `etc/`, in the layer though nothing of it changed).
struct StubParent {
    rel: PathBuf,
    names: Vec<std::ffi::OsString>,
    atime: nix::sys::time::TimeSpec,
    mtime: nix::sys::time::TimeSpec,
}

fn dir_names(dir: &Path) -> Option<Vec<std::ffi::OsString>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .ok()?;
    v.sort();
    Some(v)
}

/// The existing directories of `root` that get the `stubs` (see [`StubParent`]).
fn stub_parents(root: &Path, stubs: &[Mountpoint]) -> Vec<StubParent> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<StubParent> = Vec::new();
    for s in stubs {
        let parent = s.rel.parent().unwrap_or(Path::new(""));
        if stubs.iter().any(|o| o.rel == parent) || out.iter().any(|p| p.rel == parent) {
            continue;
        }
        let dir = root.join(parent);
        let (Ok(md), Some(names)) = (std::fs::symlink_metadata(&dir), dir_names(&dir)) else {
            continue;
        };
        out.push(StubParent {
            rel: parent.to_path_buf(),
            names,
            atime: nix::sys::time::TimeSpec::new(md.atime(), md.atime_nsec()),
            mtime: nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec()),
        });
    }
    out
}

/// Remove the stubs created in a Dir rootfs, children first, only while still empty; then
/// give their parents back their times where the entries are as before (a directory the
/// command changed keeps its new mtime).
fn remove_stubs(root: &Path, stubs: &[Mountpoint], parents: &[StubParent]) {
    for s in stubs.iter().rev() {
        let p = root.join(&s.rel);
        if s.dir {
            let _ = std::fs::remove_dir(&p);
        } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = std::fs::remove_file(&p);
        }
    }
    for p in parents {
        let dir = root.join(&p.rel);
        if dir_names(&dir).as_ref() == Some(&p.names) {
            let _ = nix::sys::stat::utimensat(
                None,
                &dir,
                &p.atime,
                &p.mtime,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
    }
}

/// Create `stubs` under `root` (no symlink is followed: each was checked missing).
fn create_stubs(root: &Path, stubs: &[Mountpoint]) -> Result<(), String> {
    for s in stubs {
        let p = root.join(&s.rel);
        let r = if s.dir {
            std::fs::DirBuilder::new().mode_0755().create(&p)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&p)
                .map(drop)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("creating mountpoint /{}: {e}", s.rel.display())),
        }
    }
    Ok(())
}

trait DirBuilderExt2 {
    fn mode_0755(&mut self) -> &mut Self;
}
impl DirBuilderExt2 for std::fs::DirBuilder {
    fn mode_0755(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o755)
    }
}

/// `mp` and its parents (parents first), as entries of a stub layer.
fn with_parents(mp: &Mountpoint, out: &mut Vec<Mountpoint>) {
    let comps: Vec<_> = mp.rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        out.push(Mountpoint {
            rel: cur.clone(),
            dir: !last || mp.dir,
        });
    }
}

/// Lower stub layer for an overlay root: every mountpoint at its literal path, parents
/// included.
fn build_stub_layer(stub: &Path, req: &InitRequest) -> Result<(), String> {
    let mut all = Vec::new();
    for mp in mountpoints(req) {
        with_parents(&mp, &mut all);
    }
    std::fs::create_dir(stub).map_err(|e| format!("creating {}: {e}", stub.display()))?;
    create_stubs(stub, &all)
}

/// The stubs (with parents) still missing in the mounted overlay `root` for targets that
/// reach their place through an image's symlink (`/var/run/x` with `/var/run -> /realrun`
/// is `realrun/x`): the literal paths of the stub layer are hidden there by the symlink.
/// Adding these to the stub layer (and mounting again) keeps them out of the upper dir.
fn stubs_behind_symlinks(root: &Path, req: &InitRequest) -> Result<Vec<Mountpoint>, String> {
    let mut out = Vec::new();
    for mp in mount_targets(req) {
        let r = resolve_in_root(root, &mp.rel)?;
        if r == mp.rel {
            continue;
        }
        let resolved = Mountpoint { rel: r, dir: mp.dir };
        let mut missing = Vec::new();
        missing_components(root, &resolved, &mut missing);
        if !missing.is_empty() {
            with_parents(&resolved, &mut out);
        }
    }
    Ok(out)
}

fn setup_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ChildReport {
    ChildReport::Setup(format!("{what}: {e}"))
}

const OVERLAY_PLAIN_TREE: &str = ",redirect_dir=off,metacopy=off,index=off";

/// Longest option string passed to mount(2) (the kernel copies one page).
const OVERLAY_OPTIONS_MAX: usize = 4000;

/// The options of the rootfs overlay. `redirect_dir=off` and `metacopy=off` keep the upper
/// dir a plain tree of whole files (a renamed lower dir is copied, a chmod copies data), so
/// it can be turned into an OCI layer by walking it, whatever the kernel's defaults are.
fn overlay_options(lower: &[&Path], upper: &Path, work: &Path) -> Result<String, ChildReport> {
    let mut lowers = Vec::new();
    for l in lower {
        lowers.push(overlay_escape(l)?);
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}{OVERLAY_PLAIN_TREE}",
        lowers.join(":"),
        overlay_escape(upper)?,
        overlay_escape(work)?
    ))
}

/// Escape a path for overlayfs's lowerdir/upperdir/workdir options.
fn overlay_escape(p: &Path) -> Result<String, ChildReport> {
    let s = p
        .to_str()
        .ok_or_else(|| ChildReport::Setup(format!("overlay path {} is not UTF-8", p.display())))?;
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    Ok(out)
}

/// Resolve `rel` (relative, no `..` from the caller) inside `root` as the container would
/// see it: symlinks are followed with `root` as `/`, `..` never goes above `root`. Returns
/// the resolved path relative to `root`; its existing components are real directories (or
/// the final file), missing components are kept as they are.
fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    use std::ffi::OsString;
    let mut todo: Vec<OsString> = rel
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == "." || c == "/" || c.is_empty() {
            continue;
        }
        if c == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        match std::fs::symlink_metadata(root.join(&next)) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!(
                        "mount target /{}: too many levels of symbolic links",
                        rel.display()
                    ));
                }
                let target = std::fs::read_link(root.join(&next))
                    .map_err(|e| format!("{}: {e}", next.display()))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                todo.extend(
                    target
                        .components()
                        .rev()
                        .map(|c| c.as_os_str().to_os_string()),
                );
            }
            Ok(_) => cur = next,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cur = next,
            Err(e) => return Err(format!("{}: {e}", next.display())),
        }
    }
    Ok(cur)
}

/// Is any component of `rel` below `root` a symlink (or missing)? Mount targets must be
/// real paths inside the root: the kernel would follow an image's symlink out of it.
fn target_ok(root: &Path, rel: &Path) -> Result<bool, String> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(true)
}

fn bind(src: &Path, dst: &Path, readonly: bool) -> Result<(), ChildReport> {
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        setup_err(
            format!("bind mount {} on {}", src.display(), dst.display()),
            e,
        )
    })?;
    if readonly {
        mount(
            None::<&str>,
            dst,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| setup_err(format!("read-only remount of {}", dst.display()), e))?;
    }
    Ok(())
}

/// The payload: everything between fork and exec. Returns only on error.
fn payload(
    req: &InitRequest,
    scratch: &Path,
    stubs: &[Mountpoint],
    alive: OwnedFd,
    pty_sock: Option<UnixStream>,
) -> Result<Infallible, ChildReport> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| setup_err("prctl(PR_SET_PDEATHSIG)", e))?;
    // getppid() is 0 here (the parent is outside the new PID namespace), so ask the pipe
    // whether init is still there.
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).map_err(|e| setup_err("poll", e))? != 0 {
        return Err(ChildReport::Setup(
            "the sandbox init died during setup".into(),
        ));
    }
    drop(alive);
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| setup_err("unshare of the mount namespace", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| setup_err("making mounts private", e))?;
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700,size=1m"),
    )
    .map_err(|e| setup_err("mounting the scratch tmpfs", e))?;
    let root = scratch.join("root");
    std::fs::create_dir(&root).map_err(|e| setup_err("creating the root mountpoint", e))?;

    match &req.rootfs {
        Rootfs::Overlay { lower, upper, work } => {
            let stub = scratch.join("stub");
            build_stub_layer(&stub, req).map_err(ChildReport::Setup)?;
            let layers: Vec<&Path> = lower
                .iter()
                .map(PathBuf::as_path)
                .chain(std::iter::once(stub.as_path()))
                .collect();
            let mut data = overlay_options(&layers, upper, work)?;
            // mount(2) takes one page of options. With many layers, name each lower by a
            // short /proc/self/fd/N link to an O_PATH descriptor instead (held until mounted).
            let mut _held = Vec::new();
            if data.len() > OVERLAY_OPTIONS_MAX {
                let mut links = Vec::new();
                for l in &layers {
                    let fd = nix::fcntl::open(
                        *l,
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| setup_err(format!("opening layer {}", l.display()), e))?;
                    links.push(PathBuf::from(format!("/proc/self/fd/{fd}")));
                    _held.push(sys::own_fd(fd));
                }
                let refs: Vec<&Path> = links.iter().map(PathBuf::as_path).collect();
                data = overlay_options(&refs, upper, work)?;
                if data.len() > OVERLAY_OPTIONS_MAX {
                    return Err(ChildReport::Setup(format!(
                        "{} layers do not fit in the overlay mount options; squash some layers",
                        layers.len()
                    )));
                }
            }
            let mount_overlay = |data: &str| {
                mount(
                    Some("overlay"),
                    &root,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data),
                )
            };
            // Kernels before 4.19 do not know metacopy (nor before 4.10 redirect_dir): they
            // also do not default to them, so the plain options are as good there.
            let mount_rootfs = || {
                match mount_overlay(&data) {
                    Err(nix::errno::Errno::EINVAL) => {
                        mount_overlay(data.trim_end_matches(OVERLAY_PLAIN_TREE))
                    }
                    r => r,
                }
                .map_err(|e| {
                    setup_err(
                        format!("mounting the overlay rootfs (upper {})", upper.display()),
                        e,
                    )
                })
            };
            mount_rootfs()?;
            // Where the targets go is known only with the image's layers merged: for targets
            // through an image's symlink, add their stubs to the stub layer and mount again
            // (the stub layer has no symlinks, so the second lookup gives the same paths).
            let extra = stubs_behind_symlinks(&root, req).map_err(ChildReport::Setup)?;
            if !extra.is_empty() {
                umount2(&root, MntFlags::empty())
                    .map_err(|e| setup_err("unmounting the overlay rootfs", e))?;
                create_stubs(&stub, &extra).map_err(ChildReport::Setup)?;
                mount_rootfs()?;
            }
        }
        Rootfs::Dir(dir) => {
            if !dir.is_dir() {
                return Err(ChildReport::Setup(format!(
                    "rootfs {} is not a directory",
                    dir.display()
                )));
            }
            bind(dir, &root, false)?;
            create_stubs(&root, stubs).map_err(ChildReport::Setup)?;
        }
    }

    // /proc (this process is in the new PID namespace, so the mount shows only its own).
    let proc_dir = root.join("proc");
    if !target_ok(&root, Path::new("proc")).map_err(ChildReport::Setup)? {
        return Err(ChildReport::Setup(
            "/proc in the rootfs is a symlink or missing".into(),
        ));
    }
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| setup_err("mounting /proc", e))?;
    // /proc/sys read-only, as Docker does.
    let sys_dir = proc_dir.join("sys");
    bind(&sys_dir, &sys_dir, true)?;
    // Mask what Docker masks: kernel memory, keys, timers; firmware-ish directories.
    if !req.privileged {
        for f in [
            "kcore",
            "keys",
            "timer_list",
            "sched_debug",
            "latency_stats",
        ] {
            let p = proc_dir.join(f);
            if p.is_file() {
                bind(Path::new("/dev/null"), &p, true)?;
            }
        }
        for d in ["acpi", "scsi"] {
            let p = proc_dir.join(d);
            if p.is_dir() {
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| setup_err(format!("masking /proc/{d}"), e))?;
            }
        }
    }

    // /sys read-only, as Docker does (it shows this network namespace's devices).
    if target_ok(&root, Path::new("sys")).map_err(ChildReport::Setup)? {
        let sys_dir = root.join("sys");
        mount(
            Some("sysfs"),
            &sys_dir,
            Some("sysfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| setup_err("mounting /sys", e))?;
        let fw = sys_dir.join("firmware");
        if !req.privileged && fw.is_dir() {
            mount(
                Some("tmpfs"),
                &fw,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| setup_err("masking /sys/firmware", e))?;
        }
    }
    setup_dev(&root)?;
    if let (Some((rows, cols)), Some(sock)) = (req.pty, &pty_sock) {
        let (master, slave) = sys::open_pty_in(&root.join("dev/pts/ptmx"))
            .map_err(|e| setup_err("allocating the pty", e))?;
        sys::set_winsize(master.as_fd(), rows, cols).map_err(|e| setup_err("sizing the pty", e))?;
        for fd in 0..3 {
            nix::unistd::dup2(slave.as_raw_fd(), fd)
                .map_err(|e| setup_err("dup2 of the pty", e))?;
        }
        super::send_with_fds(sock, b"m", &[master.as_raw_fd()])
            .map_err(|e| setup_err("passing the pty to init", e))?;
    }
    setup_etc(&root, scratch, req)?;

    let mut files = FileStore::new(scratch, req);
    // Parents first (see `mount_order`); each entry: the resolved target and its mount.
    let mut mounted: Vec<(PathBuf, &Mount)> = Vec::new();
    for m in mount_order(req) {
        let dst = m.dst();
        let dir = m.is_dir();
        // An image's symlink on the way (/var/run -> /run) is followed inside the root, as
        // Docker does; `..` and absolute targets are clamped to the root, never leaving it.
        // The stubs of the rootfs are at the resolved paths (`stubs_behind_symlinks`,
        // `missing_mountpoints`), so nothing is created in the rootfs here.
        let r = resolve_in_root(&root, &rel(dst)).map_err(ChildReport::Setup)?;
        let mut missing = Vec::new();
        missing_components(&root, &Mountpoint { rel: r.clone(), dir }, &mut missing);
        if !missing.is_empty() {
            // The filesystem that holds the target: the last mount on one of its parents.
            let parent = mounted
                .iter()
                .rev()
                .find(|(p, _)| r.starts_with(p) && r != *p);
            match parent {
                // Inside an earlier tmpfs: the mount point goes with the tmpfs.
                Some((_, Mount::Tmpfs(_))) => {
                    create_stubs(&root, &missing).map_err(ChildReport::Setup)?
                }
                // Inside a writable bind (a cache mount, a rw bind's private copy): created
                // in its directory, where it stays, as runc (and so BuildKit) does.
                Some((_, Mount::Bind(b))) if !b.readonly => {
                    create_stubs(&root, &missing).map_err(ChildReport::Setup)?
                }
                Some((_, p)) => {
                    return Err(ChildReport::Setup(format!(
                        "mount target {}: its mount point is missing in the read-only mount \
                         on {} and cannot be created there",
                        dst.display(),
                        p.dst().display()
                    )))
                }
                // Below /dev (our tmpfs, e.g. BuildKit's /dev/pipes for heredocs) a missing
                // target is created here; it leaves no trace anywhere.
                None if r.starts_with("dev") && r != Path::new("dev") => {
                    create_stubs(&root, &missing).map_err(ChildReport::Setup)?
                }
                None => {}
            }
        }
        if !target_ok(&root, &r).map_err(ChildReport::Setup)? {
            return Err(ChildReport::Setup(format!(
                "mount target {} is a symlink in the image (or could not be created)",
                dst.display()
            )));
        }
        let target = root.join(&r);
        match m {
            Mount::Bind(b) => {
                if !b.src.exists() {
                    return Err(ChildReport::Setup(format!(
                        "mount source {} does not exist",
                        b.src.display()
                    )));
                }
                bind(&b.src, &target, b.readonly)?;
            }
            Mount::Tmpfs(t) => {
                // BuildKit's tmpfs options: nosuid, and the size when one is given.
                let data = t.size.filter(|n| *n > 0).map(|n| format!("size={n}"));
                mount(
                    Some("tmpfs"),
                    &target,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID,
                    data.as_deref(),
                )
                .map_err(|e| setup_err(format!("mounting a tmpfs on {}", dst.display()), e))?;
            }
            Mount::File(f) => {
                let src = files.write(f)?;
                bind(&src, &target, true)?;
                mount(
                    None::<&str>,
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    None::<&str>,
                )
                .map_err(|e| setup_err(format!("read-only remount of {}", dst.display()), e))?;
            }
        }
        mounted.push((r, m));
    }

    nix::unistd::sethostname(&req.hostname).map_err(|e| setup_err("sethostname", e))?;
    if req.network == Network::None {
        sys::loopback_up().map_err(|e| setup_err("bringing lo up", e))?;
    }

    enter_root(&root)?;

    // The user, resolved with the image's files.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = super::user::resolve(req.user.as_deref().unwrap_or("0"), &passwd, &group)
        .map_err(ChildReport::Setup)?;

    match std::fs::metadata(&req.cwd) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(ChildReport::Setup(format!(
                "working directory {} is not a directory",
                req.cwd.display()
            )))
        }
        Err(e) => {
            return Err(ChildReport::Setup(format!(
                "working directory {} in the rootfs: {e} (create it first, e.g. with WORKDIR)",
                req.cwd.display()
            )))
        }
    }

    nix::unistd::setsid().map_err(|e| setup_err("setsid", e))?;
    if req.pty.is_some() {
        sys::set_controlling_tty(std::io::stdin().as_fd())
            .map_err(|e| setup_err("setting the controlling terminal", e))?;
        // The user owns its terminal, as with runc (it may reopen /dev/pts/0 or /dev/tty).
        nix::unistd::fchown(
            0,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        )
        .map_err(|e| setup_err("chown of the pty", e))?;
    }
    if !req.privileged {
        sys::limit_capabilities(sys::DOCKER_DEFAULT_CAPS)
            .map_err(|e| setup_err("dropping capabilities", e))?;
    }
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| setup_err("setgroups", e))?;
    nix::unistd::setgid(Gid::from_raw(user.gid))
        .map_err(|e| setup_err(format!("setgid {}", user.gid), e))?;
    nix::unistd::setuid(Uid::from_raw(user.uid))
        .map_err(|e| setup_err(format!("setuid {}", user.uid), e))?;
    nix::unistd::chdir(&req.cwd).map_err(|e| {
        setup_err(
            format!("chdir to {} as uid {}", req.cwd.display(), user.uid),
            e,
        )
    })?;

    // Docker's umask, whatever rbuild's caller had: file modes in a layer must not depend
    // on the shell rbuild was started from.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    let mut env = req.env.clone();
    if req.set_home && !env.iter().any(|(k, _)| k == "HOME") {
        env.push((
            "HOME".into(),
            user.home.clone().unwrap_or_else(|| "/".into()),
        ));
    }
    exec(&req.argv, &env)
}

/// Where [`Mount::File`] contents are written: a tmpfs of the payload's own mount namespace
/// (mounted on first use below the scratch dir, mode 0700), so the bytes never reach a disk
/// and vanish with the namespace. Each file is bind-mounted to its target, which keeps it
/// reachable after the scratch dir is detached with the old root.
struct FileStore {
    dir: PathBuf,
    size: u64,
    mounted: bool,
    next: usize,
}

impl FileStore {
    fn new(scratch: &Path, req: &InitRequest) -> Self {
        // Room for every file, page-rounded, plus the directory itself.
        let size = req
            .mounts
            .iter()
            .filter_map(|m| match m {
                Mount::File(f) => Some(f.content.len() as u64 / 4096 + 1),
                _ => None,
            })
            .sum::<u64>()
            * 4096
            + 4096;
        FileStore {
            dir: scratch.join("files"),
            size,
            mounted: false,
            next: 0,
        }
    }

    fn write(&mut self, f: &FileMount) -> Result<PathBuf, ChildReport> {
        use std::os::unix::fs::PermissionsExt;
        if !self.mounted {
            std::fs::create_dir(&self.dir).map_err(|e| setup_err("creating the files dir", e))?;
            mount(
                Some("tmpfs"),
                &self.dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("mode=0700,size={}", self.size).as_str()),
            )
            .map_err(|e| setup_err("mounting the files tmpfs", e))?;
            self.mounted = true;
        }
        self.next += 1;
        let path = self.dir.join(self.next.to_string());
        let what = || format!("writing the file for {}", f.dst.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| setup_err(what(), e))?;
        file.write_all(&f.content).map_err(|e| setup_err(what(), e))?;
        std::os::unix::fs::fchown(&file, Some(f.uid), Some(f.gid))
            .map_err(|e| setup_err(what(), e))?;
        // After the chown, which clears set-id bits.
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| setup_err(what(), e))?;
        Ok(path)
    }
}

fn setup_dev(root: &Path) -> Result<(), ChildReport> {
    if !target_ok(root, Path::new("dev")).map_err(ChildReport::Setup)? {
        return Err(ChildReport::Setup(
            "/dev in the rootfs is a symlink or missing".into(),
        ));
    }
    let dev = root.join("dev");
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| setup_err("mounting /dev", e))?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = dev.join(name);
        std::fs::File::create(&p).map_err(|e| setup_err(format!("creating /dev/{name}"), e))?;
        bind(&Path::new("/dev").join(name), &p, false)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .map_err(|e| setup_err(format!("creating /dev/{link}"), e))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(|e| setup_err("creating /dev/pts", e))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| setup_err("mounting /dev/pts", e))?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(|e| setup_err("creating /dev/shm", e))?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| setup_err("mounting /dev/shm", e))?;
    Ok(())
}

/// Private copies of the host's /etc/hosts and /etc/resolv.conf, bound over the image's
/// regular files (or the stubs); an image's symlink there is left alone.
fn setup_etc(root: &Path, scratch: &Path, req: &InitRequest) -> Result<(), ChildReport> {
    let hosts = match req.network {
        Network::Host => std::fs::read("/etc/hosts").unwrap_or_default(),
        Network::None => {
            b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_vec()
        }
    };
    let hosts = with_hostname(hosts, &req.hostname);
    let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    for (name, content) in [("hosts", hosts), ("resolv.conf", resolv)] {
        let r = Path::new("etc").join(name);
        if !target_ok(root, &r).map_err(ChildReport::Setup)? {
            continue;
        }
        let target = root.join(&r);
        if !std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let copy = scratch.join(name);
        std::fs::write(&copy, content)
            .map_err(|e| setup_err(format!("writing the sandbox's /etc/{name}"), e))?;
        bind(&copy, &target, false)?;
    }
    Ok(())
}

/// `hosts` plus a `127.0.1.1 <hostname>` line (as Docker adds the container's hostname),
/// unless a line already names the host.
fn with_hostname(mut hosts: Vec<u8>, hostname: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&hosts);
    let known = text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|n| n == hostname)
    });
    if known {
        return hosts;
    }
    if !hosts.is_empty() && !hosts.ends_with(b"\n") {
        hosts.push(b'\n');
    }
    hosts.extend_from_slice(format!("127.0.1.1\t{hostname}\n").as_bytes());
    hosts
}

/// pivot_root into `root` (pivot_root(".", ".") then detach the old root, no put_old dir
/// needed in the image). When pivot_root is refused (the host root is on ramfs/initramfs),
/// do what runc's no-pivot mode does: move the new root's mount over `/` (so the host tree
/// lies under a mount) and chroot into it.
fn enter_root(root: &Path) -> Result<(), ChildReport> {
    nix::unistd::chdir(root).map_err(|e| setup_err("chdir to the new root", e))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            umount2(".", MntFlags::MNT_DETACH)
                .map_err(|e| setup_err("detaching the old root", e))?;
        }
        Err(_) => {
            // Best effort: where the move is refused too, a plain chroot still isolates the
            // filesystem view for everything but a process that uses CAP_SYS_CHROOT to
            // break out (documented limitation of this fallback).
            let _ = mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>);
            nix::unistd::chroot(".").map_err(|e| setup_err("chroot into the rootfs", e))?;
        }
    }
    nix::unistd::chdir("/").map_err(|e| setup_err("chdir to /", e))?;
    Ok(())
}

fn exec_error(argv0: &str, reason: String, errno: Option<nix::errno::Errno>) -> ChildReport {
    let code = match errno {
        Some(nix::errno::Errno::ENOENT) | Some(nix::errno::Errno::ENOTDIR) | None => 127,
        Some(_) => 126,
    };
    ChildReport::Exec {
        argv0: argv0.to_string(),
        reason,
        code,
    }
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Look up argv[0] in the spec's PATH and exec it with exactly the spec's environment.
fn exec(argv: &[String], env: &[(String, String)]) -> Result<Infallible, ChildReport> {
    let argv0 = &argv[0];
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let prog: PathBuf = if argv0.contains('/') {
        PathBuf::from(argv0)
    } else {
        let found = path_var
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .find_map(|d| {
                let p = Path::new(d).join(argv0);
                is_executable_file(&p).then_some(p)
            });
        match found {
            Some(p) => p,
            None => {
                return Err(exec_error(
                    argv0,
                    "executable file not found in $PATH".into(),
                    None,
                ))
            }
        }
    };
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| exec_error(argv0, "argument contains a NUL byte".into(), None))
    };
    let prog_c = CString::new(prog.as_os_str().as_encoded_bytes())
        .map_err(|_| exec_error(argv0, "path contains a NUL byte".into(), None))?;
    let args = argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;

    sys::reset_signals().map_err(|e| setup_err("resetting signal handlers", e))?;
    sys::cloexec_from(3).map_err(|e| setup_err("close_range", e))?;
    let e = match nix::unistd::execve(&prog_c, &args, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let reason = match e {
        nix::errno::Errno::ENOENT => "no such file or directory".to_string(),
        nix::errno::Errno::EACCES => "permission denied".to_string(),
        nix::errno::Errno::ENOEXEC => "exec format error".to_string(),
        other => other.desc().to_lowercase(),
    };
    Err(exec_error(argv0, reason, Some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_are_escaped() {
        assert_eq!(
            overlay_escape(Path::new("/a:b,c\\d")).unwrap(),
            "/a\\:b\\,c\\\\d"
        );
        let o = overlay_options(
            &[Path::new("/l1"), Path::new("/l2")],
            Path::new("/u"),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,redirect_dir=off,metacopy=off,index=off"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", root.join("esc")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(root, Path::new("var/run")).unwrap(), Path::new("run"));
        assert_eq!(resolve_in_root(root, Path::new("var/run/x")).unwrap(), Path::new("run/x"));
        assert_eq!(resolve_in_root(root, Path::new("esc/y")).unwrap(), Path::new("etc/y"));
        assert_eq!(resolve_in_root(root, Path::new("plain/z")).unwrap(), Path::new("plain/z"));
        assert!(resolve_in_root(root, Path::new("loop")).is_err());
    }

    #[test]
    fn missing_components_stop_at_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/", t.path().join("link")).unwrap();
        let mut out = Vec::new();
        missing_components(
            t.path(),
            &Mountpoint {
                rel: "etc/hosts".into(),
                dir: false,
            },
            &mut out,
        );
        missing_components(
            t.path(),
            &Mountpoint {
                rel: "a/b/c".into(),
                dir: true,
            },
            &mut out,
        );
        missing_components(
            t.path(),
            &Mountpoint {
                rel: "link/x".into(),
                dir: true,
            },
            &mut out,
        );
        let got: Vec<(String, bool)> = out
            .iter()
            .map(|m| (m.rel.display().to_string(), m.dir))
            .collect();
        assert_eq!(
            got,
            [
                ("etc/hosts".into(), false),
                ("a".into(), true),
                ("a/b".into(), true),
                ("a/b/c".into(), true)
            ]
        );
    }
}
