//! The crate's only `unsafe`: thin wrappers over the system calls the sandbox needs that have
//! no safe binding in `nix`/`std`. Each block says why it is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{fork, ForkResult};

/// Let the child keep `fd` across its `exec` (the parent's copy stays close-on-exec, so
/// other children spawned concurrently by other threads never inherit it).
pub(crate) fn keep_fd_in_child(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs in the forked child between fork and exec, where only
    // async-signal-safe functions may be called; fcntl(2) is async-signal-safe and the
    // closure neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// fork(2) in the single-threaded init process.
pub(crate) fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: only called from `init_main`, i.e. in a freshly exec'd `rbuild __sandbox-init`
    // that has started no threads, so the child inherits no lock held by another thread and
    // may keep using the allocator and std.
    unsafe { fork() }
}

/// Reset every catchable signal to its default action and unblock all signals, so the
/// payload starts like a freshly exec'd process (Rust's runtime ignores SIGPIPE, and the init
/// process blocks the signals it reads from a signalfd; both would leak through exec).
pub(crate) fn reset_signals() -> nix::Result<()> {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code, so no signal-handler safety
        // requirement applies; the process is single-threaded.
        unsafe { sigaction(sig, &dfl) }?;
    }
    // Real-time signals (glibc reserves 32 and 33 for itself and refuses them).
    for signo in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: signal(2) with SIG_DFL installs no handler code; errors are ignored.
        unsafe { libc::signal(signo, libc::SIG_DFL) };
    }
    SigSet::empty().thread_set_mask()
}

/// Mark every descriptor from `first` upwards close-on-exec (close_range(2),
/// CLOSE_RANGE_CLOEXEC, Linux 5.11; older kernels: each entry of /proc/self/fd), so nothing
/// the parent leaked reaches the payload.
pub(crate) fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; it takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        // EBADF: the read_dir descriptor itself, closed by now.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

/// Make `fd` (a terminal) the controlling terminal of the calling session leader
/// (TIOCSCTTY, see tty_ioctl(4)).
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal), no pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set a terminal's window size (TIOCSWINSZ).
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `struct winsize`; `ws` is a valid one that outlives the call.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal's window size (TIOCGWINSZ) as (rows, cols); `None` when `fd` is no terminal.
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `struct winsize` into `ws`, which we own and which outlives
    // the call.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut ws as *mut libc::winsize,
        )
    };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Bring the loopback interface of the current network namespace up
/// (SIOCGIFFLAGS/SIOCSIFFLAGS on "lo", see netdevice(7)).
pub(crate) fn loopback_up() -> io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data (arrays, integers, a union of them); all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifr_flags of the `ifreq` we own.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            &mut ifr as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the `ifreq` we own.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &ifr as *const libc::ifreq,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Take ownership of a descriptor nothing else owns: the socket the parent passed by
/// number (checked open and a socket by the caller), one `open(2)`/`ioctl(2)` just
/// returned, or one just received with SCM_RIGHTS.
pub(crate) fn own_fd(raw: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass either the descriptor the parent created for this process alone
    // (close-on-exec cleared only in this child, number passed in the environment; nothing
    // else in this freshly exec'd process refers to it) or a descriptor the kernel just
    // created for this call (open, TIOCGPTPEER, SCM_RIGHTS reception) and that is not
    // stored anywhere else, so ownership is unique.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) }
}

/// Docker's default capability set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
pub(crate) const DOCKER_DEFAULT_CAPS: u64 = 0xa804_25fb;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Limit the capabilities an exec'd root process gets to `keep`: drop the others from the
/// bounding set (PR_CAPBSET_DROP), the inheritable set (capset) and clear the ambient set.
/// After exec, root's permitted set is then `keep` (capabilities(7), "Transformation of
/// capabilities during execve()"). Must run while CAP_SETPCAP is effective (before setuid).
pub(crate) fn limit_capabilities(keep: u64) -> io::Result<()> {
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
            return Err(e);
        }
    }
    // SAFETY: integer arguments only. EINVAL on kernels without ambient capabilities is fine.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };

    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData (version 3 layout) into `data` and may update the
    // header's version; both are owned, correctly laid out (#[repr(C)]) and outlive the call.
    if unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    data[0].inheritable &= keep as u32;
    data[1].inheritable &= (keep >> 32) as u32;
    // SAFETY: capset reads the header and two CapData we own; same layout as above.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open a new pty pair in the devpts instance whose `ptmx` node is `ptmx` (the sandbox's
/// own `/dev/pts/ptmx`, so the slave is `/dev/pts/N` inside): open the master, unlock it
/// (TIOCSPTLCK) and open the slave through the master (TIOCGPTPEER, Linux 4.13), with no
/// path lookup that could resolve to another instance. Returns (master, slave).
pub(crate) fn open_pty_in(
    ptmx: &std::path::Path,
) -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let raw = open(
        ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let master = own_fd(raw);
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through the pointer; `unlock` outlives the call.
    if unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &unlock as *const libc::c_int,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new descriptor.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((master, own_fd(slave)))
}
