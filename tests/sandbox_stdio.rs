//! Standard streams (merged pipe, pty, log file), detaching, and reaping — with real
//! namespaces on a busybox rootfs (needs root).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild::sandbox::{self, Rootfs, Signal, Spec, Stdio};

const INIT: &str = env!("CARGO_BIN_EXE_rbuild");

fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(out.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn sh(root: &Path, script: &str, stdio: Stdio) -> Spec {
    let mut s = Spec::new(
        Rootfs::Dir(root.to_path_buf()),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    );
    s.env = vec![("PATH".into(), "/bin".into())];
    s.stdio = stdio;
    s
}

#[test]
fn merged_output_keeps_the_order_of_stdout_and_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    let mut sb = sandbox::spawn(
        &sh(
            tmp.path(),
            "echo one; echo two >&2; echo three; echo four >&2",
            Stdio::Merged,
        ),
        Path::new(INIT),
    )
    .unwrap();
    assert!(sb.take_stderr().is_none());
    let mut out = String::new();
    sb.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(sb.wait().unwrap(), 0);
    assert_eq!(out, "one\ntwo\nthree\nfour\n");
}

#[test]
fn pty_is_the_controlling_terminal_and_can_be_resized() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    let script = "test -t 0 && test -t 1 && echo is-a-tty; stty size; read line; echo got-$line; stty size; \
                  echo ctty-ok > /dev/tty; tty; ls -1 /dev/pts";
    let mut sb = sandbox::spawn(&sh(tmp.path(), script, Stdio::Pty), Path::new(INIT)).unwrap();
    assert!(sb.take_stdout().is_none());
    let mut master = sb.take_pty().unwrap();
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let t = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        // EIO once the last slave descriptor is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    // Wait for the first `stty size`, then resize and let the script go on.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        if seen.contains("24 80") || seen.lines().count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    sb.resize_pty(33, 101).unwrap();
    master.write_all(b"hello\n").unwrap();
    assert_eq!(sb.wait().unwrap(), 0);
    drop(master);
    let out = t.join().unwrap().replace('\r', "");
    assert!(out.contains("is-a-tty\n"), "{out}");
    assert!(out.contains("got-hello\n33 101\n"), "{out}");
    assert!(out.contains("ctty-ok"), "{out}");
    // The pty belongs to the sandbox's own devpts.
    assert!(out.contains("\n/dev/pts/0\n0\nptmx\n"), "{out}");
}

#[test]
fn resize_pty_on_the_handle() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    // As a non-root user: the pty is theirs.
    std::fs::write(
        tmp.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    let mut spec = sh(
        tmp.path(),
        "read x; stty size; echo mine > /dev/tty; stat -c %u /dev/pts/0",
        Stdio::Pty,
    );
    spec.user = Some("nobody".into());
    let mut sb = sandbox::spawn(&spec, Path::new(INIT)).unwrap();
    sb.resize_pty(40, 120).unwrap();
    let mut master = sb.take_pty().unwrap();
    master.write_all(b"go\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(sb.wait().unwrap(), 0);
    assert!(
        String::from_utf8_lossy(&out)
            .replace('\r', "")
            .contains("40 120\nmine\n65534\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let mut other = sandbox::spawn(&sh(tmp.path(), "true", Stdio::Null), Path::new(INIT)).unwrap();
    assert!(other.resize_pty(1, 1).is_err(), "no pty without Stdio::Pty");
    other.wait().unwrap();
}

#[test]
fn detached_sandbox_keeps_running_and_writes_its_status() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    busybox_rootfs(&root);
    let log = tmp.path().join("log");
    let status = tmp.path().join("status");
    let mut spec = sh(
        &root,
        "echo started; echo to-stderr >&2; sleep 1; exit 7",
        Stdio::File(log.clone()),
    );
    spec.status_file = Some(status.clone());
    let sb = sandbox::spawn(&spec, Path::new(INIT)).unwrap();
    let d = sb.detach().unwrap();
    // The handle is gone; the container must still run.
    assert!(Path::new(&format!("/proc/{}", d.container_pid)).exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.exists() {
        assert!(Instant::now() < deadline, "no status file");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "7\n");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "started\nto-stderr\n"
    );
    // Reap the init process (in real use rbuild has exited and init is reparented).
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(d.pid as i32), None).unwrap();
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(d.pid as i32), 7)
    );
    // A detached container is stopped by signalling its PID 1 (the recorded container_pid).
    let mut spec = sh(&root, "sleep 100", Stdio::Null);
    spec.status_file = Some(status.clone());
    let d = sandbox::spawn(&spec, Path::new(INIT))
        .unwrap()
        .detach()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.container_pid as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(d.pid as i32), None).unwrap();
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(d.pid as i32), 137)
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "137\n");
}

#[test]
fn orphans_and_zombies_do_not_outlive_the_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    // The grandchild is orphaned (reparented to PID 1) and still running when PID 1 exits.
    let marker = "91827";
    let mut sb = sandbox::spawn(
        &sh(
            tmp.path(),
            &format!("(sleep 5{marker} &) ; sh -c 'exit 0' & sleep 0.2; echo done"),
            Stdio::Merged,
        ),
        Path::new(INIT),
    )
    .unwrap();
    let mut out = String::new();
    sb.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(sb.wait().unwrap(), 0);
    assert_eq!(out, "done\n");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmd).contains(marker),
                "left running: {:?}",
                entry.path()
            );
        }
    }
}

#[test]
fn inherit_passes_rbuilds_streams_and_null_discards() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    let mut sb = sandbox::spawn(
        &sh(tmp.path(), "echo x; exit 5", Stdio::Null),
        Path::new(INIT),
    )
    .unwrap();
    assert!(sb.take_stdout().is_none());
    assert_eq!(sb.wait().unwrap(), 5);
    assert_eq!(sb.wait().unwrap(), 5, "wait is idempotent");
    let mut sb =
        sandbox::spawn(&sh(tmp.path(), "exit 0", Stdio::Inherit), Path::new(INIT)).unwrap();
    assert_eq!(sb.wait().unwrap(), 0);
    sb.kill(Signal::SIGKILL).unwrap();
}

#[test]
fn detaching_a_sandbox_that_already_ended_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    busybox_rootfs(&root);
    let status = tmp.path().join("status");
    let mut spec = sh(&root, "exit 4", Stdio::Null);
    spec.status_file = Some(status.clone());
    let sb = sandbox::spawn(&spec, Path::new(INIT)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.exists() {
        assert!(Instant::now() < deadline, "no status file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100)); // init has exited by now
    let d = sb.detach().unwrap();
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(d.pid as i32), None).unwrap();
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(d.pid as i32), 4)
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap(), "4\n");
}

#[test]
fn a_wrong_init_exe_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    let spec = sh(tmp.path(), "true", Stdio::Null);
    let e = sandbox::spawn(&spec, Path::new("/nonexistent/rbuild")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot start the sandbox init /nonexistent/rbuild"),
        "{e}"
    );
    let e = sandbox::spawn(&spec, Path::new("/bin/true")).unwrap_err();
    assert!(e.to_string().contains("ended without a report"), "{e}");
}

#[test]
fn payload_starts_with_default_signal_dispositions_and_empty_mask() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    // The spawning thread blocks SIGTERM and SIGINT; the test harness ignores SIGPIPE.
    let root = tmp.path().to_path_buf();
    let out = std::thread::spawn(move || {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().unwrap();
        let mut spec = sh(&root, "", Stdio::Piped);
        spec.argv = vec!["/bin/cat".into(), "/proc/self/status".into()];
        let mut sb = sandbox::spawn(&spec, Path::new(INIT)).unwrap();
        let mut out = String::new();
        sb.take_stdout().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(sb.wait().unwrap(), 0);
        out
    })
    .join()
    .unwrap();
    assert!(out.contains("SigBlk:\t0000000000000000\n"), "{out}");
    // Standard signals (the low 31 bits; 32 and 33 belong to glibc).
    let ign = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .unwrap();
    assert_eq!(
        u64::from_str_radix(ign, 16).unwrap() & 0x7fff_ffff,
        0,
        "{out}"
    );
}

/// Host pids of the processes in the PID namespace `ns` (as read from /proc/PID/ns/pid),
/// with their state letter.
fn processes_in_pid_ns(ns: &Path) -> Vec<(u32, char)> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("ns/pid"))
            .ok()
            .as_deref()
            == Some(ns)
        {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let state = status
                .lines()
                .find_map(|l| l.strip_prefix("State:\t"))
                .and_then(|s| s.chars().next())
                .unwrap_or('?');
            v.push((pid, state));
        }
    }
    v
}

#[test]
fn a_zombie_under_a_non_reaping_pid_1_is_reaped_when_the_sandbox_ends() {
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(tmp.path());
    // PID 1 becomes `sleep`, which never reaps: its child turns into a zombie.
    let mut sb = sandbox::spawn(
        &sh(tmp.path(), "sleep 0.1 & exec sleep 1", Stdio::Null),
        Path::new(INIT),
    )
    .unwrap();
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", sb.container_pid())).unwrap();
    assert_ne!(ns, std::fs::read_link("/proc/self/ns/pid").unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_in_pid_ns(&ns).iter().any(|(_, s)| *s == 'Z') {
        assert!(
            Instant::now() < deadline,
            "no zombie appeared: {:?}",
            processes_in_pid_ns(&ns)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sb.wait().unwrap(), 0);
    assert_eq!(
        processes_in_pid_ns(&ns),
        [],
        "processes (or zombies) left in the sandbox's namespace"
    );
}
