//! Regressions of `rbuild run` found by QA, one test (or more) per defect.
//!
//! Needs root (namespaces, overlayfs) and Debian's busybox-static (testdata/make-busybox.sh).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

struct Root {
    dir: tempfile::TempDir,
}

/// A failed test must not leave detached containers running.
impl Drop for Root {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["ps", "-a", "-q", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }
}

impl Root {
    fn new() -> Root {
        let (dir, _store) = common::store_with_busybox();
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(RBUILD);
        c.arg("--root").arg(self.path()).args(args).stdin(Stdio::null());
        c
    }

    fn rb(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.rb(args);
        assert_eq!(code, 0, "rbuild {args:?} failed: stdout={out} stderr={err}");
        out
    }

    /// Container dirs (full IDs) under containers/.
    fn containers(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.path().join("containers")) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        v.retain(|n| n != ".lock");
        v.sort();
        v
    }

    /// The JSON status of container `name`.
    fn status(&self, name: &str) -> serde_json::Value {
        let full = self.full_id(name);
        let text = std::fs::read_to_string(self.path().join("containers").join(full).join("status")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn full_id(&self, name: &str) -> String {
        for id in self.containers() {
            let cfg = self.path().join("containers").join(&id).join("config.json");
            if let Ok(text) = std::fs::read_to_string(cfg) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["name"] == name {
                    return id;
                }
            }
        }
        panic!("no container {name}: {:?}", self.containers());
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------ 1: -it without a terminal

#[test]
fn it_with_piped_stdin_is_refused_at_once() {
    let r = Root::new();
    let mut c = r
        .cmd(&["run", "--rm", "-it", "busybox:local", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // rbuild may refuse and exit before the write: a broken pipe here is the fast path.
    let _ = c.stdin.take().unwrap().write_all(b"hi\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("rbuild run -it with piped stdin hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the input device is not a TTY"), "{err}");
    assert!(r.containers().is_empty(), "{:?}", r.containers());
}

#[test]
fn tty_without_interactive_works_with_piped_stdin() {
    let r = Root::new();
    let mut c = r
        .cmd(&["run", "--rm", "-t", "busybox:local", "sh", "-c", "test -t 1 && echo tty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"ignored\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tty\r\n");
    assert!(r.containers().is_empty());
}

#[test]
fn killed_foreground_rm_container_is_shown_or_cleaned() {
    let r = Root::new();
    let mut c = r.cmd(&["run", "--rm", "--name", "victim", "busybox:local", "sleep", "100"]).spawn().unwrap();
    wait_until("the container runs", Duration::from_secs(10), || {
        r.rb(&["ps", "-q"]).1.lines().count() == 1
    });
    c.kill().unwrap();
    c.wait().unwrap();
    // right after the kill and a while later: ps -a lists every container dir there is
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, ps, _) = r.rb(&["ps", "-a", "--no-trunc", "-q"]);
        let listed: Vec<String> = ps.split_whitespace().map(String::from).collect();
        let dirs: Vec<String> = r.containers().into_iter().filter(|d| !d.starts_with('.')).collect();
        assert_eq!(listed, dirs, "ps -a hides container state on disk");
        if dirs.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(r.containers().is_empty(), "the --rm container's state stays: {:?}", r.containers());
}

// ------------------------------------------------------------ 2: rmi of an image in use

#[test]
fn rmi_refuses_the_last_tag_of_an_image_a_container_uses() {
    let r = Root::new();
    r.ok(&["tag", "busybox:local", "img:1"]);
    r.ok(&["run", "--name", "user1", "img:1", "true"]);
    // another name still refers to the image: untagging one of two is fine
    r.ok(&["rmi", "busybox:local"]);
    let (code, _, err) = r.rb(&["rmi", "img:1"]);
    assert_eq!(code, 1, "{err}");
    let short = &r.full_id("user1")[..12];
    assert!(
        err.contains(&format!(
            "conflict: unable to remove repository reference \"img:1\" (must force) - container {short} is using its referenced image"
        )),
        "{err}"
    );
    assert!(r.ok(&["images"]).contains("img"), "the tag must stay");
    // a running container counts as well
    r.ok(&["run", "-d", "--name", "user2", "img:1", "sleep", "100"]);
    r.ok(&["rm", "user1"]);
    assert_eq!(r.rb(&["rmi", "img:1"]).0, 1);
    let out = r.ok(&["rmi", "-f", "img:1"]);
    assert!(out.contains("Untagged: img:1"), "{out}");
    r.ok(&["rm", "-f", "user2"]);
}

// ------------------------------------------------------------ 3: TERM with -t

#[test]
fn tty_sets_term_unless_the_user_did() {
    let r = Root::new();
    assert_eq!(r.ok(&["run", "--rm", "-t", "busybox:local", "sh", "-c", "echo $TERM"]), "xterm\r\n");
    assert_eq!(
        r.ok(&["run", "--rm", "-t", "-e", "TERM=dumb", "busybox:local", "sh", "-c", "echo $TERM"]),
        "dumb\r\n"
    );
    assert_eq!(r.ok(&["run", "--rm", "busybox:local", "sh", "-c", "echo x$TERM"]), "x\n");
}

// ------------------------------------------------------------ 4: hostname in /etc/hosts

#[test]
fn hostname_is_in_etc_hosts() {
    let r = Root::new();
    for net in ["host", "none"] {
        let out = r.ok(&["run", "--rm", "--network", net, "busybox:local", "sh", "-c", "grep -w \"$(hostname)\" /etc/hosts"]);
        assert!(out.starts_with("127.0.1.1"), "{net}: {out:?}");
        let out = r.ok(&["run", "--rm", "--network", net, "--hostname", "web.local", "busybox:local", "cat", "/etc/hosts"]);
        assert!(out.lines().any(|l| l.split_whitespace().skip(1).any(|w| w == "web.local")), "{net}: {out}");
        assert!(out.contains("localhost"), "{net}: {out}");
    }
    assert!(!std::fs::read_to_string("/etc/hosts").unwrap().contains("web.local"), "the host's file is untouched");
}

// ------------------------------------------------------------ 5: exit codes

#[test]
fn run_setup_errors_exit_125_and_exec_errors_126_127() {
    let r = Root::new();
    r.ok(&["import", common::busybox_rootfs_tar().to_str().unwrap(), "nocmd:1"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--rm", "nosuch:image"], 125, "nosuch"),
        (&["run", "--rm", "nocmd:1"], 125, "no command specified"),
        (&["run", "--rm", "--bogus-flag", "busybox:local", "true"], 125, "bogus"),
        (&["run", "--rm", "--network", "bridge", "busybox:local", "true"], 125, "bridge"),
        (&["run", "--rm", "-u", "nosuchuser", "busybox:local", "true"], 125, "nosuchuser"),
        (&["run", "--rm", "-v", "rel:/x", "busybox:local", "true"], 125, "absolute"),
        (&["run", "--rm", "-w", "rel", "busybox:local", "true"], 125, "absolute"),
        (&["run", "--rm", "busybox:local", "nosuchcmd"], 127, "nosuchcmd"),
        (&["run", "--rm", "busybox:local", "/etc/passwd"], 126, "/etc/passwd"),
    ];
    for (args, want, text) in cases {
        let (code, _, err) = r.rb(args);
        assert_eq!(code, *want, "{args:?}: {err}");
        assert!(err.contains(text), "{args:?}: {err}");
        assert_eq!(err.matches("error").count().min(1), 1, "{args:?}: {err}");
    }
    assert!(r.containers().is_empty(), "{:?}", r.containers());
    // errors of other commands stay 1
    assert_eq!(r.rb(&["rm", "nosuch"]).0, 1);
}

// ------------------------------------------------------------ 6: -v host path and symlinks

#[test]
fn volume_host_dir_is_created() {
    let r = Root::new();
    let host = tempfile::tempdir().unwrap();
    let missing = host.path().join("a/b");
    let spec = format!("{}:/data", missing.display());
    r.ok(&["run", "--rm", "-v", &spec, "busybox:local", "sh", "-c", "echo hi > /data/f"]);
    assert_eq!(std::fs::read_to_string(missing.join("f")).unwrap(), "hi\n");
}

#[test]
fn volume_target_symlinks_resolve_inside_the_rootfs() {
    let r = Root::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:local\nRUN mkdir -p /real /var && ln -s /real /var/run && ln -s ../../../../../../../tmp /esc\n",
    )
    .unwrap();
    r.ok(&["build", "-q", "-t", "links:1", ctx.path().to_str().unwrap()]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "m\n").unwrap();
    let h = host.path().display().to_string();
    let out = r.ok(&["run", "--rm", "-v", &format!("{h}:/var/run"), "links:1", "cat", "/real/marker"]);
    assert_eq!(out, "m\n");
    // a symlink pointing above the root lands inside it: /esc/x -> /tmp/x of the container
    let out = r.ok(&["run", "--rm", "-v", &format!("{h}:/esc/x"), "links:1", "cat", "/tmp/x/marker"]);
    assert_eq!(out, "m\n");
    assert!(!Path::new("/tmp/x/marker").exists(), "the mount must not reach the host's /tmp");
}

// ------------------------------------------------------------ 7: logs keep streams apart

#[test]
fn logs_keep_stdout_and_stderr_apart() {
    let r = Root::new();
    let script = "echo out1; echo err1 >&2; echo out2";
    r.ok(&["run", "-d", "--name", "bg", "busybox:local", "sh", "-c", script]);
    wait_until("bg exits", Duration::from_secs(10), || r.rb(&["ps", "-q"]).1.trim().is_empty());
    r.ok(&["run", "--name", "fg", "busybox:local", "sh", "-c", script]);
    for name in ["bg", "fg"] {
        let (code, out, err) = r.rb(&["logs", name]);
        assert_eq!(code, 0);
        assert_eq!(out, "out1\nout2\n", "{name}");
        assert_eq!(err, "err1\n", "{name}");
    }
    // -f still follows until the end
    r.ok(&["run", "-d", "--name", "slow", "busybox:local", "sh", "-c", "echo a; sleep 1; echo b >&2; echo c"]);
    let (code, out, err) = r.rb(&["logs", "-f", "slow"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "a\nc\n", "b\n"));
}

// ------------------------------------------------------------ 8: scratch dir of a killed init

#[test]
fn killed_detached_init_leaves_no_scratch_dir_on_the_host() {
    let r = Root::new();
    let tmp = tempfile::tempdir().unwrap();
    let out = r
        .cmd(&["run", "-d", "--name", "kk", "busybox:local", "sleep", "100"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = r.status("kk");
    let init = status["monitor_pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the container is gone", Duration::from_secs(10), || r.rb(&["ps", "-q"]).1.trim().is_empty());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "scratch left in TMPDIR: {left:?}");
    r.ok(&["rm", "kk"]);
    assert!(r.containers().is_empty(), "{:?}", r.containers());
}
