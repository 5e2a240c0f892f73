//! Isolation proofs of the sandbox on a busybox rootfs, with real namespaces (needs root).
//! Each test asserts what a process inside observes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild::sandbox::{
    self, BindMount, FileMount, Mount, Network, Rootfs, SandboxError, Signal, Spec, Stdio, TmpfsMount,
};

const INIT: &str = env!("CARGO_BIN_EXE_rbuild");

/// A busybox rootfs: /bin/busybox from Debian's busybox-static, one symlink per applet,
/// /etc/passwd with root and nobody, /etc/group, /tmp. No /proc, /dev, /etc/hosts: the
/// sandbox must supply those mountpoints.
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
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::create_dir_all(dir.join("root")).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    busybox_rootfs(&root);
    Fixture { _tmp: tmp, root }
}

fn sh(rootfs: Rootfs, script: &str) -> Spec {
    let mut s = Spec::new(rootfs, vec!["/bin/sh".into(), "-c".into(), script.into()]);
    s.env = vec![("PATH".into(), "/bin".into())];
    s.stdio = Stdio::Piped;
    s
}

/// Run to the end; returns (exit code, stdout, stderr).
fn run(spec: &Spec) -> (i32, String, String) {
    let mut sb = sandbox::spawn(spec, Path::new(INIT)).unwrap_or_else(|e| panic!("spawn: {e}"));
    let mut err = sb.take_stderr().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut out = String::new();
    sb.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    let code = sb.wait().unwrap();
    (code, out, t.join().unwrap())
}

fn run_ok(spec: &Spec) -> String {
    let (code, out, err) = run(spec);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn command_is_pid_1_and_sees_only_its_processes() {
    let f = fixture();
    let out = run_ok(&sh(
        Rootfs::Dir(f.root.clone()),
        "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '",
    ));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"));
    // sh (1), ls, grep, sort, tr: only processes of this pipeline, all small pids.
    let pids: Vec<u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.contains(&1), "{pids:?}");
    assert!(pids.len() <= 6 && pids.iter().all(|p| *p < 10), "{pids:?}");
    let ps = run_ok(&sh(Rootfs::Dir(f.root.clone()), "ps -o pid,comm"));
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert!(rows.len() <= 2, "ps saw more than sh and itself: {ps}");
}

#[test]
fn hostname_env_and_user_are_as_specified() {
    let f = fixture();
    let mut s = sh(
        Rootfs::Dir(f.root.clone()),
        "hostname; env | sort; id -u; id -g",
    );
    s.hostname = "sbx-test".into();
    s.env.push(("FOO".into(), "bar baz".into()));
    s.user = Some("nobody".into());
    let out = run_ok(&s);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sbx-test");
    // busybox sh adds PWD (and SHLVL) itself; everything else must be exactly the spec's.
    let env: Vec<&str> = lines[1..lines.len() - 2]
        .iter()
        .copied()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL="))
        .collect();
    assert_eq!(env, ["FOO=bar baz", "PATH=/bin"]);
    assert_eq!(lines[lines.len() - 2], "65534");
    assert_eq!(lines[lines.len() - 1], "65534");
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "sbx-test"
    );

    let mut s = sh(Rootfs::Dir(f.root.clone()), "id -u; id -g; pwd");
    s.user = Some("1234:65534".into());
    s.cwd = "/tmp".into();
    assert_eq!(run_ok(&s), "1234\n65534\n/tmp\n");

    // Docker's HOME, on request only.
    let mut s = sh(Rootfs::Dir(f.root.clone()), "echo $HOME");
    s.set_home = true;
    assert_eq!(run_ok(&s), "/root\n");
    s.user = Some("nobody".into());
    assert_eq!(run_ok(&s), "/nonexistent\n");
    s.env.push(("HOME".into(), "/given".into()));
    assert_eq!(run_ok(&s), "/given\n");

    let mut s = sh(Rootfs::Dir(f.root.clone()), "true");
    s.user = Some("ghost".into());
    let e = sandbox::spawn(&s, Path::new(INIT)).unwrap_err();
    assert!(e.to_string().contains("unable to find user ghost"), "{e}");
}

#[test]
fn host_files_and_mounts_are_not_visible() {
    let f = fixture();
    let secret = f._tmp.path().join("host-secret");
    std::fs::write(&secret, "x").unwrap();
    let script = format!(
        "test -e {} && echo visible; test -e /rootfs && echo visible; cat /proc/self/mountinfo",
        secret.display()
    );
    let out = run_ok(&sh(Rootfs::Dir(f.root.clone()), &script));
    assert!(!out.contains("visible"), "{out}");
    let root_line = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    // The root is the bind-mounted rootfs dir, not the host's /.
    assert!(
        root_line.split(' ').nth(3).unwrap().ends_with("/rootfs"),
        "{root_line}"
    );
    // Every mount inside is one the sandbox made; none of the host's other mounts.
    let allowed = [
        "/",
        "/proc",
        "/proc/sys",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/acpi",
        "/proc/scsi",
        "/proc/kcore",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/sys",
        "/sys/firmware",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/pts",
        "/dev/shm",
        "/etc/hosts",
        "/etc/resolv.conf",
    ];
    for l in out.lines().filter(|l| l.contains(" - ")) {
        let mp = l.split(' ').nth(4).unwrap();
        assert!(allowed.contains(&mp), "unexpected mount {mp} inside: {out}");
    }
    // Mountpoints created in the Dir rootfs are gone afterwards.
    for p in ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf"] {
        assert!(!f.root.join(p).exists(), "stub {p} left in the rootfs");
    }
}

#[test]
fn network_none_has_only_lo_up_and_host_network_is_the_hosts() {
    let f = fixture();
    let mut s = sh(
        Rootfs::Dir(f.root.clone()),
        "cat /proc/net/dev; ip link; ls /sys/class/net",
    );
    s.network = Network::None;
    let out = run_ok(&s);
    assert!(
        out.ends_with("\nlo\n"),
        "/sys shows the sandbox's network namespace: {out}"
    );
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .take_while(|l| l.contains(':') && !l.starts_with('1'))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
    assert!(
        out.lines().any(|l| l.contains("lo:") && l.contains("UP")),
        "{out}"
    );

    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host_ifaces: Vec<String> = host_dev
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    let out = run_ok(&sh(Rootfs::Dir(f.root.clone()), "cat /proc/net/dev"));
    let inside: Vec<String> = out
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    let (mut a, mut b) = (host_ifaces, inside);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn exit_codes_propagate() {
    let f = fixture();
    assert_eq!(run(&sh(Rootfs::Dir(f.root.clone()), "exit 3")).0, 3);
    // Killed by a signal: 128+N. (PID 1 of a namespace cannot SIGKILL itself: the kernel
    // ignores signals to it from inside that it has no handler for, so kill it from outside.)
    let mut sb = sandbox::spawn(
        &sh(Rootfs::Dir(f.root.clone()), "kill -9 $$; sleep 100"),
        Path::new(INIT),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        sb.try_wait().unwrap(),
        None,
        "PID 1 must survive its own SIGKILL"
    );
    sb.kill(Signal::SIGKILL).unwrap();
    assert_eq!(sb.wait().unwrap(), 137);
    // A signal PID 1 handles is delivered, from inside and from outside.
    assert_eq!(
        run(&sh(
            Rootfs::Dir(f.root.clone()),
            "trap 'exit 42' TERM; kill -TERM $$; sleep 1; exit 0"
        ))
        .0,
        42
    );
    let mut sb = sandbox::spawn(
        &sh(
            Rootfs::Dir(f.root.clone()),
            "trap 'exit 43' USR1; echo ready; while true; do sleep 0.1; done",
        ),
        Path::new(INIT),
    )
    .unwrap();
    let mut out = sb.take_stdout().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    sb.kill(Signal::SIGUSR1).unwrap();
    assert_eq!(sb.wait().unwrap(), 43);
}

#[test]
fn missing_and_non_executable_commands_give_docker_codes() {
    let f = fixture();
    let mut s = sh(Rootfs::Dir(f.root.clone()), "");
    s.argv = vec!["no-such-cmd".into()];
    match sandbox::spawn(&s, Path::new(INIT)) {
        Err(e @ SandboxError::Exec { .. }) => {
            assert_eq!(e.exit_code(), 127);
            assert_eq!(
                e.to_string(),
                "exec failed: no-such-cmd: executable file not found in $PATH"
            );
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    s.argv = vec!["/bin/nope".into()];
    let e = sandbox::spawn(&s, Path::new(INIT)).unwrap_err();
    assert_eq!(
        (e.exit_code(), e.to_string().as_str()),
        (127, "exec failed: /bin/nope: no such file or directory")
    );
    s.argv = vec!["/etc/passwd".into()];
    let e = sandbox::spawn(&s, Path::new(INIT)).unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
    // Through a shell, the shell's own 127.
    assert_eq!(run(&sh(Rootfs::Dir(f.root.clone()), "no-such-cmd")).0, 127);
    // A missing working directory is a clear setup error.
    let mut s = sh(Rootfs::Dir(f.root.clone()), "true");
    s.cwd = "/nope".into();
    let e = sandbox::spawn(&s, Path::new(INIT)).unwrap_err();
    assert!(e.to_string().contains("working directory /nope"), "{e}");
}

#[test]
fn overlay_writes_land_in_upper_and_lower_is_unchanged() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let top = tmp.path().join("top");
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/motd"), "from top\n").unwrap();
    std::fs::create_dir_all(top.join("data/sub")).unwrap();
    std::fs::write(top.join("data/sub/file"), "payload").unwrap();
    let rootfs = Rootfs::Overlay {
        lower: vec![top.clone(), f.root.clone()],
        upper: upper.clone(),
        work,
    };
    let out = run_ok(&sh(
        rootfs,
        "cat /etc/motd; echo hi > /tmp/new; rm /etc/group; awk '$5 == \"/\"' /proc/self/mountinfo | grep -c ' - overlay '; cat /etc/resolv.conf >/dev/null && echo resolv; mv /data/sub /data/moved",
    ));
    assert_eq!(out, "from top\n1\nresolv\n");
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/new")).unwrap(),
        "hi\n"
    );
    assert!(f.root.join("etc/group").exists());
    assert!(!f.root.join("tmp/new").exists());
    // Only what the process wrote is in upper: tmp/new and the whiteout of etc/group; no
    // mountpoints (proc, dev, etc/hosts, etc/resolv.conf).
    let mut entries: Vec<String> = walkdir::WalkDir::new(&upper)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(&upper)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            "data",
            "data/moved",
            "data/moved/file",
            "data/sub",
            "etc",
            "etc/group",
            "tmp",
            "tmp/new"
        ]
    );
    // A renamed lower dir is copied whole (redirect_dir=off), not a redirect xattr.
    assert_eq!(
        std::fs::read_to_string(upper.join("data/moved/file")).unwrap(),
        "payload"
    );
    assert_eq!(
        std::fs::read_to_string(top.join("data/sub/file")).unwrap(),
        "payload"
    );
    // The mounts are gone with the sandbox: no process on the host still has the overlay.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(mi) = std::fs::read_to_string(entry.path().join("mountinfo")) {
            assert!(
                !mi.contains(upper.to_str().unwrap()),
                "overlay still mounted in {:?}",
                entry.path()
            );
        }
    }
}

#[test]
fn bind_mounts_rw_and_ro() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (rw, ro) = (tmp.path().join("rw"), tmp.path().join("ro"));
    std::fs::create_dir(&rw).unwrap();
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("data"), "keep").unwrap();
    let mut s = sh(
        Rootfs::Dir(f.root.clone()),
        "echo w > /mnt/rw/out && cat /mnt/ro/data && (echo x > /mnt/ro/data) 2>/dev/null || echo readonly",
    );
    s.mounts = vec![
        BindMount {
            src: rw.clone(),
            dst: "/mnt/rw".into(),
            readonly: false,
        }
        .into(),
        BindMount {
            src: ro.clone(),
            dst: "/mnt/ro".into(),
            readonly: true,
        }
        .into(),
    ];
    assert_eq!(run_ok(&s), "keepreadonly\n");
    assert_eq!(std::fs::read_to_string(rw.join("out")).unwrap(), "w\n");
    assert_eq!(std::fs::read_to_string(ro.join("data")).unwrap(), "keep");
    assert!(!f.root.join("mnt").exists(), "mountpoint stub left behind");

    // A file bound below /dev (BuildKit puts RUN heredocs in /dev/pipes), on both roots.
    let script = tmp.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho from-heredoc\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    for rootfs in [
        Rootfs::Dir(f.root.clone()),
        Rootfs::Overlay {
            lower: vec![f.root.clone()],
            upper: upper.clone(),
            work,
        },
    ] {
        let mut s = sh(rootfs, "");
        s.argv = vec!["/dev/pipes/EOF".into()];
        s.mounts = vec![BindMount {
            src: script.clone(),
            dst: "/dev/pipes/EOF".into(),
            readonly: true,
        }
        .into()];
        assert_eq!(run_ok(&s), "from-heredoc\n");
    }
    assert!(!f.root.join("dev").exists());
    assert_eq!(
        std::fs::read_dir(&upper).unwrap().count(),
        0,
        "nothing in upper"
    );
}

/// A tmpfs (fresh, size-limited) and a file with given bytes (read-only, mode and owner as
/// asked), on both kinds of root; their mount points leave nothing behind.
#[test]
fn tmpfs_and_file_mounts() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    for rootfs in [
        Rootfs::Dir(f.root.clone()),
        Rootfs::Overlay {
            lower: vec![f.root.clone()],
            upper: upper.clone(),
            work: work.clone(),
        },
    ] {
        let mut s = sh(
            rootfs,
            "grep -q ' /t tmpfs ' /proc/mounts && ls -A /t | wc -l && \
             (dd if=/dev/zero of=/t/big bs=1024 count=64 2>/dev/null || echo full) && \
             stat -c '%a %u %g' /run/secrets/s && cat /run/secrets/s && echo && \
             ((echo x > /run/secrets/s) 2>/dev/null || echo read-only)",
        );
        s.mounts = vec![
            Mount::Tmpfs(TmpfsMount {
                dst: "/t".into(),
                size: Some(32 * 1024),
            }),
            Mount::File(FileMount {
                dst: "/run/secrets/s".into(),
                content: b"s3cret".to_vec(),
                mode: 0o440,
                uid: 7,
                gid: 8,
            }),
        ];
        assert!(!format!("{s:?}").contains("s3cret"), "Debug shows the content");
        assert_eq!(run_ok(&s), "0\nfull\n440 7 8\ns3cret\nread-only\n");
    }
    assert!(!f.root.join("t").exists() && !f.root.join("run").exists(), "stubs left in the Dir root");
    assert_eq!(std::fs::read_dir(&upper).unwrap().count(), 0, "nothing in upper");
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                v.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    v
}

#[test]
fn kill_and_drop_leave_no_process_behind() {
    let f = fixture();
    let marker = "7365";
    // A child process in the background plus a foreground sleep: all must die.
    let s = sh(
        Rootfs::Dir(f.root.clone()),
        &format!("sleep 1{marker}1 & sleep 1{marker}2; echo never"),
    );
    let mut sb = sandbox::spawn(&s, Path::new(INIT)).unwrap();
    let sleeps = || {
        processes_with(marker)
            .into_iter()
            .filter(|p| p.contains(": sleep"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sleeps() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            processes_with(marker)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sb.kill(Signal::SIGKILL).unwrap();
    assert_eq!(sb.wait().unwrap(), 137);
    assert!(
        processes_with(marker).is_empty(),
        "{:?}",
        processes_with(marker)
    );

    // Dropping without wait kills too.
    let s = sh(Rootfs::Dir(f.root.clone()), &format!("sleep 2{marker}1"));
    let sb = sandbox::spawn(&s, Path::new(INIT)).unwrap();
    let pid = sb.container_pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(sb);
    assert!(
        processes_with(marker).is_empty(),
        "{:?}",
        processes_with(marker)
    );
}

#[test]
fn sandbox_dies_when_rbuild_dies() {
    // A helper process spawns a sandbox and is SIGKILLed: the sandbox must go too.
    let f = fixture();
    let marker = "48213";
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_spawn_and_hang",
            "--ignored",
            "--nocapture",
        ])
        .env("SANDBOX_HELPER_ROOT", &f.root)
        .env("SANDBOX_HELPER_MARKER", marker)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_with(&format!("sleep 3{marker}")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the helper never started the sandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    helper.kill().unwrap();
    helper.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !processes_with(&format!("sleep 3{marker}")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            processes_with(marker)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
#[ignore = "helper for sandbox_dies_when_rbuild_dies"]
fn helper_spawn_and_hang() {
    let Ok(root) = std::env::var("SANDBOX_HELPER_ROOT") else {
        return;
    };
    let marker = std::env::var("SANDBOX_HELPER_MARKER").unwrap();
    let mut s = sh(Rootfs::Dir(root.into()), &format!("sleep 3{marker}"));
    s.stdio = Stdio::Null;
    // Spawn from a thread that ends: the sandbox must not depend on the spawning thread.
    let sb = std::thread::spawn(move || sandbox::spawn(&s, Path::new(INIT)).unwrap())
        .join()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(sb);
}

#[test]
fn overlay_with_many_long_layer_paths() {
    // 70 layers with ~120-byte paths: the plain option string would exceed a page.
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let long = "l".repeat(100);
    let mut lower = Vec::new();
    for i in 0..70 {
        let d = tmp.path().join(format!("{long}{i:03}"));
        std::fs::create_dir_all(d.join("layers")).unwrap();
        std::fs::write(d.join(format!("layers/{i}")), "").unwrap();
        std::fs::write(d.join("layers/top"), format!("{i}")).unwrap();
        lower.push(d);
    }
    lower.reverse(); // top first: layer 69 is on top
    lower.push(f.root.clone());
    let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let out = run_ok(&sh(
        Rootfs::Overlay { lower, upper, work },
        "ls /layers | wc -l; cat /layers/top",
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["71", "69"]);
}

#[test]
fn root_gets_dockers_default_capabilities_unless_privileged() {
    let f = fixture();
    let script = "grep -E '^Cap(Bnd|Eff|Inh)' /proc/self/status | tr -d '\\t'; \
                  mount -t tmpfs t /tmp 2>/dev/null && echo mounted || echo no-mount";
    let out = run_ok(&sh(Rootfs::Dir(f.root.clone()), script));
    assert!(out.contains("CapBnd:00000000a80425fb\n"), "{out}");
    assert!(out.contains("CapEff:00000000a80425fb\n"), "{out}");
    assert!(out.contains("CapInh:0000000000000000\n"), "{out}");
    assert!(out.ends_with("no-mount\n"), "{out}");
    let mut s = sh(
        Rootfs::Dir(f.root.clone()),
        "grep CapEff /proc/self/status | tr -d '\\t'",
    );
    s.user = Some("nobody".into());
    assert_eq!(run_ok(&s), "CapEff:0000000000000000\n");
    let mut s = sh(Rootfs::Dir(f.root.clone()), script);
    s.privileged = true;
    assert!(run_ok(&s).ends_with("mounted\n"));
}

#[test]
fn proc_sys_is_read_only_and_timer_list_masked() {
    let f = fixture();
    assert!(!std::fs::read("/proc/timer_list").unwrap().is_empty());
    let out = run_ok(&sh(
        Rootfs::Dir(f.root.clone()),
        "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo writable || echo ro; wc -c < /proc/timer_list",
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["ro", "0"]);
}

#[test]
fn handles_are_send() {
    fn assert_send<T: Send + Sync>() {}
    assert_send::<sandbox::Sandbox>();
    assert_send::<Spec>();
    assert_send::<SandboxError>();
}
