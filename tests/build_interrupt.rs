//! Acceptance point 7: a failing RUN, a Ctrl-C mid-build (a real SIGINT to a running
//! `rbuild`), a SIGKILL mid-build, and then a good build on the same store.

mod build_util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use build_util::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Processes whose command line contains every one of `words` (busybox's shell may run
/// `sleep` inside itself, so the shell's own command line counts too).
fn processes_running(words: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == me {
            continue;
        }
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else { continue };
        let c = String::from_utf8_lossy(&c).replace('\0', " ");
        if words.iter().all(|w| c.contains(w)) && !c.contains("cargo") && !c.contains("build_interrupt") {
            out.push(pid);
        }
    }
    out
}

fn wait_gone(argv: &[&str], within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if processes_running(argv).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Start `rbuild build` and return once its RUN has printed `marker`; stderr lines so far.
fn start_until(root: &Path, ctx: &Path, marker: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = rbuild()
        .arg("--root")
        .arg(root)
        .args(["build", "--progress=plain", "-t", "slow:1"])
        .arg(ctx)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t = Instant::now();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("rbuild printed nothing for a minute");
        if line.ends_with(marker) && line.starts_with('#') {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "marker {marker} never came");
    }
    (child, rx)
}

/// Kills the child if the test panics before it ended (no stray builds after a failure).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_with_timeout(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > within {
            let _ = child.kill();
            panic!("rbuild did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leftover_tmp(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-"))
        .collect()
}

fn mounts_under(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&r))
        .map(str::to_string)
        .collect()
}

#[test]
fn failing_run_then_ctrl_c_then_sigkill_then_a_good_build() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();

    // A failing RUN: the step, its exit code and its last lines; nothing enters the cache.
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN echo first-line && echo before-failure && exit 3\n")],
    );
    let r = build(root.path(), ctx.path(), &["-t", "fail:1"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("Dockerfile:2: RUN echo first-line"), "{}", r.stderr);
    assert!(r.stderr.contains("exit code: 3"), "{}", r.stderr);
    assert!(r.stderr.contains("  > before-failure"), "last lines are in the error: {}", r.stderr);
    assert!(r.step("RUN").failed);
    let again = build(root.path(), ctx.path(), &["-t", "fail:1"]);
    assert!(!again.ok());
    assert!(!again.step("RUN").cached, "a failed step is not cached");
    assert!(store(root.path()).resolve("fail:1").is_err());

    // Ctrl-C mid-RUN: the sandbox dies, temp dirs go, the exit is prompt and non-zero.
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN echo sleeping-now && sleep 987 && echo never\n")],
    );
    let (child, rx) = start_until(root.path(), ctx.path(), "sleeping-now");
    let mut child = KillOnDrop(child);
    assert!(!processes_running(&["sleep", "987", "sleeping-now"]).is_empty(), "the RUN is running");
    let t = Instant::now();
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGINT).unwrap();
    let st = wait_with_timeout(&mut child.0, Duration::from_secs(20));
    assert!(!st.success());
    assert!(t.elapsed() < Duration::from_secs(10), "stopped promptly");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("build cancelled")), "{rest:?}");
    assert!(wait_gone(&["sleep", "987", "sleeping-now"], Duration::from_secs(5)), "the sandbox's processes are killed");
    assert!(leftover_tmp(root.path()).is_empty(), "temp dirs removed: {:?}", leftover_tmp(root.path()));
    assert!(mounts_under(root.path()).is_empty(), "nothing left mounted");
    assert!(store(root.path()).resolve("slow:1").is_err());

    // SIGKILL mid-RUN: nothing can clean up in rbuild; the sandbox still dies with it and the
    // next build sweeps the temp dir.
    let (child, _rx) = start_until(root.path(), ctx.path(), "sleeping-now");
    let mut child = KillOnDrop(child);
    kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).unwrap();
    let _ = wait_with_timeout(&mut child.0, Duration::from_secs(10));
    assert!(wait_gone(&["sleep", "987", "sleeping-now"], Duration::from_secs(10)), "the sandbox dies with rbuild");
    assert_eq!(leftover_tmp(root.path()).len(), 1, "SIGKILL leaves its temp dir");

    // A good build on the same store.
    write_files(
        ctx.path(),
        &[("Dockerfile", "FROM busybox:local\nRUN echo good > /good\nCMD [\"cat\", \"/good\"]\n")],
    );
    let ok = build(root.path(), ctx.path(), &["-t", "slow:1"]);
    assert!(ok.ok(), "{}", ok.stderr);
    assert!(leftover_tmp(root.path()).is_empty(), "the stale temp dir was swept");
    let f = unpack_image(root.path(), "slow:1");
    assert_eq!(std::fs::read_to_string(f.path().join("good")).unwrap(), "good\n");
    let again = build(root.path(), ctx.path(), &["-t", "slow:1"]);
    assert!(again.rebuilt().is_empty(), "{}", again.stderr);
    assert_eq!(again.image_id(), ok.image_id());
}
