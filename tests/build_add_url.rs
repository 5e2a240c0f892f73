//! `ADD <http URL>`: real builds against a small HTTP server in the test (ETag, 304, 404).

mod build_util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use build_util::*;
use sha2::Digest as _;

/// What the server serves (path → body) and what it saw.
#[derive(Default)]
struct Server {
    files: HashMap<String, Vec<u8>>,
    /// (path, If-None-Match header, status answered) per request.
    log: Vec<(String, Option<String>, u16)>,
}

fn etag(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(sha2::Sha256::digest(body))[..16])
}

/// Serve `state` on a loopback port; returns the base URL.
fn serve(state: Arc<Mutex<Server>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut inm = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("if-none-match") {
                        inm = Some(v.trim().to_string());
                    }
                }
            }
            let mut s = state.lock().unwrap();
            // Exact path first (a file may be named with its query), then without the query
            // (git's dumb HTTP asks `info/refs?service=...`).
            let found = s.files.get(&path).or_else(|| s.files.get(path.split('?').next().unwrap_or(""))).cloned();
            let (status, head, body) = match found.as_ref() {
                None => (404, String::new(), b"not here".to_vec()),
                Some(b) if inm.as_deref() == Some(etag(b).as_str()) => (304, format!("ETag: {}\r\n", etag(b)), Vec::new()),
                Some(b) => (200, format!("ETag: {}\r\n", etag(b)), b.clone()),
            };
            s.log.push((path, inm, status));
            drop(s);
            let reason = match status {
                200 => "OK",
                304 => "Not Modified",
                _ => "Not Found",
            };
            let _ = write!(c, "HTTP/1.1 {status} {reason}\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n", if status == 304 { 0 } else { body.len() });
            if status != 304 {
                let _ = c.write_all(&body);
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn add_url_downloads_names_checks_and_revalidates() {
    let state = Arc::new(Mutex::new(Server::default()));
    let base = serve(Arc::clone(&state));
    let mut tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "inner.txt", &b"in"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    {
        let mut s = state.lock().unwrap();
        s.files.insert("/dl/tool.sh".into(), b"echo tool v1\n".to_vec());
        s.files.insert("/dl/pkg.tar.gz?x=1".into(), tgz.clone());
    }
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM busybox:local\n\
         ADD {base}/dl/tool.sh /usr/local/bin/\n\
         ADD --chmod=755 {base}/dl/tool.sh /bin/tool\n\
         ADD {base}/dl/pkg.tar.gz?x=1 /pkgs/\n\
         RUN sh /bin/tool > /ran\n"
    );
    write_files(ctx.path(), &[("Dockerfile", &df)]);
    let r = build(root.path(), ctx.path(), &["-t", "url:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "url:1");
    let p = f.path();
    assert_eq!(std::fs::read_to_string(p.join("usr/local/bin/tool.sh")).unwrap(), "echo tool v1\n");
    assert_eq!(std::fs::metadata(p.join("usr/local/bin/tool.sh")).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::metadata(p.join("bin/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read(p.join("pkgs/pkg.tar.gz")).unwrap(), tgz, "a URL is not extracted");
    assert_eq!(std::fs::read_to_string(p.join("ran")).unwrap(), "tool v1\n");
    let first = r.image_id();

    // Unchanged on the server: asked again with If-None-Match, 304, every step cached.
    state.lock().unwrap().log.clear();
    let r = build(root.path(), ctx.path(), &["-t", "url:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.rebuilt().is_empty(), "{:?}", r.rebuilt());
    assert_eq!(r.image_id(), first);
    {
        let s = state.lock().unwrap();
        assert!(!s.log.is_empty() && s.log.iter().all(|(_, inm, st)| inm.is_some() && *st == 304), "{:?}", s.log);
    }

    // Changed on the server: downloaded again, the steps using it run again.
    state.lock().unwrap().files.insert("/dl/tool.sh".into(), b"echo tool v2\n".to_vec());
    let r = build(root.path(), ctx.path(), &["-t", "url:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.rebuilt().iter().any(|s| s.contains("tool.sh")), "{:?}", r.rebuilt());
    let f = unpack_image(root.path(), "url:1");
    assert_eq!(std::fs::read_to_string(f.path().join("ran")).unwrap(), "tool v2\n");

    // --checksum: a mismatch fails the step; a match with the file in the store asks nothing.
    let good = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"echo tool v2\n")));
    let bad = format!("sha256:{}", "0".repeat(64));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD --checksum={bad} {base}/dl/tool.sh /t\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:2"]);
    assert!(!r.ok() && r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    state.lock().unwrap().log.clear();
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD --checksum={good} {base}/dl/tool.sh /t\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:2"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(state.lock().unwrap().log.is_empty(), "the checksum names a file the store has: no request");
    // sha512 (go-digest's algorithms, as BuildKit); a name is the URL's decoded last segment.
    state.lock().unwrap().files.insert("/dl/sp%20ace.txt".into(), b"spaced\n".to_vec());
    let sha512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(b"echo tool v2\n")));
    let bad512 = format!("sha512:{}", "0".repeat(128));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD --checksum={sha512} {base}/dl/tool.sh /t\nADD {base}/dl/sp%20ace.txt /d/\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:2"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "url:2");
    assert_eq!(std::fs::read_to_string(f.path().join("d/sp ace.txt")).unwrap(), "spaced\n");
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD --checksum={bad512} {base}/dl/tool.sh /t\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:2"]);
    assert!(!r.ok() && r.stderr.contains("checksum mismatch") && r.stderr.contains("got sha512:"), "{}", r.stderr);

    // `prune --all` forgets the downloads with the build cache.
    assert!(std::fs::read_dir(root.path().join("downloads")).unwrap().count() > 0);
    let out = rbuild().arg("--root").arg(root.path()).args(["prune", "--all"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(root.path().join("downloads")).unwrap().count(), 0);

    // A 404 is a clear error; COPY refuses URLs; a URL mixed with context files is refused.
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD {base}/missing /m\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:3"]);
    assert!(!r.ok() && r.stderr.contains("404"), "{}", r.stderr);
    write_files(ctx.path(), &[("a", "a"), ("Dockerfile", &format!("FROM busybox:local\nCOPY {base}/dl/tool.sh /m\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:4"]);
    assert!(!r.ok() && r.stderr.contains("COPY cannot take a URL"), "{}", r.stderr);
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD a {base}/dl/tool.sh /m/\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "url:5"]);
    assert!(!r.ok() && r.stderr.contains("give each its own ADD"), "{}", r.stderr);
}

/// Builds running side by side that download the same changed URL all succeed: the store's
/// copy is never replaced or linked under a build that is reading it.
#[test]
fn concurrent_builds_share_a_download() {
    let state = Arc::new(Mutex::new(Server::default()));
    let base = serve(Arc::clone(&state));
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nARG N\nADD {base}/dl/f.txt /b\n"))]);
    for round in 0..3 {
        state.lock().unwrap().files.insert("/dl/f.txt".into(), format!("round {round}\n").repeat(50_000).into_bytes());
        let runs: Vec<_> = (0..3)
            .map(|n| {
                let (root, ctx) = (root.path().to_path_buf(), ctx.path().to_path_buf());
                std::thread::spawn(move || build(&root, &ctx, &["--build-arg", &format!("N={n}"), "-t", &format!("par:{n}")]))
            })
            .collect();
        for t in runs {
            let r = t.join().unwrap();
            assert!(r.ok(), "round {round}: {}", r.stderr);
        }
    }
    let f = unpack_image(root.path(), "par:1");
    assert!(std::fs::read_to_string(f.path().join("b")).unwrap().starts_with("round 2\n"));
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Put every file of the bare repository `bare` on the server under `/repo.git/`.
fn publish(state: &Arc<Mutex<Server>>, bare: &std::path::Path) {
    git(bare, &["update-server-info"]);
    let mut s = state.lock().unwrap();
    s.files.retain(|k, _| !k.starts_with("/repo.git/"));
    for e in walkdir::WalkDir::new(bare).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()) {
        let rel = e.path().strip_prefix(bare).unwrap().to_string_lossy().into_owned();
        s.files.insert(format!("/repo.git/{rel}"), std::fs::read(e.path()).unwrap());
    }
}

/// `ADD <git repository>#ref[:subdir]` over git's dumb HTTP protocol: a tag, a subdirectory,
/// `--keep-git-dir`, a branch that moves, `--checksum`, and `prune --all`.
#[test]
fn add_git_checks_out_a_ref() {
    let state = Arc::new(Mutex::new(Server::default()));
    let base = serve(Arc::clone(&state));
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("a.txt"), "v1\n").unwrap();
    std::fs::write(work.join("sub/b.txt"), "b\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    git(&work, &["tag", "-a", "v1a", "-m", "an annotated tag names a tag object, not the commit"]);
    let bare = tmp.path().join("repo.git");
    let out = std::process::Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare).output().unwrap();
    assert!(out.status.success());
    publish(&state, &bare);

    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let df = format!(
        "FROM busybox:local\n\
         ADD {base}/repo.git#v1 /src/\n\
         ADD {base}/repo.git#v1:sub /sub/\n\
         ADD {base}/repo.git#v1a /annotated/\n\
         ADD --keep-git-dir=true {base}/repo.git#main /full/\n"
    );
    write_files(ctx.path(), &[("Dockerfile", &df)]);
    let r = build(root.path(), ctx.path(), &["-t", "git:1"]);
    assert!(r.ok(), "{}", r.stderr);
    let f = unpack_image(root.path(), "git:1");
    let p = f.path();
    assert_eq!(std::fs::read_to_string(p.join("src/a.txt")).unwrap(), "v1\n");
    assert_eq!(std::fs::read_to_string(p.join("src/sub/b.txt")).unwrap(), "b\n");
    assert!(!p.join("src/.git").exists(), "no .git without --keep-git-dir");
    assert_eq!(std::fs::read_to_string(p.join("sub/b.txt")).unwrap(), "b\n");
    assert!(!p.join("sub/a.txt").exists());
    assert!(p.join("full/.git").is_dir());
    assert_eq!(std::fs::read_to_string(p.join("annotated/a.txt")).unwrap(), "v1\n");

    // Same commits: all cached. The branch moves: only its step runs again.
    let r = build(root.path(), ctx.path(), &["-t", "git:1"]);
    assert!(r.ok() && r.rebuilt().is_empty(), "{:?}\n{}", r.rebuilt(), r.stderr);
    std::fs::write(work.join("a.txt"), "v2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    publish(&state, &bare);
    let r = build(root.path(), ctx.path(), &["-t", "git:1"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt().len(), 1, "{:?}", r.rebuilt());
    assert!(r.rebuilt()[0].contains("#main"), "{:?}", r.rebuilt());
    let f = unpack_image(root.path(), "git:1");
    assert_eq!(std::fs::read_to_string(f.path().join("full/a.txt")).unwrap(), "v2\n");
    assert_eq!(std::fs::read_to_string(f.path().join("src/a.txt")).unwrap(), "v1\n");

    // A subdirectory the repository lacks is named as such.
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD {base}/repo.git#v1:nosub /x/\nADD {base}/repo.git#v1:a.txt /y/\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "git:2"]);
    assert!(!r.ok() && r.stderr.contains("nosub is not a directory of the repository at commit"), "{}", r.stderr);
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD {base}/repo.git#v1:a.txt /y/\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "git:2"]);
    assert!(!r.ok() && r.stderr.contains("a.txt is not a directory of the repository"), "{}", r.stderr);

    // --checksum is the commit id.
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nADD --checksum=0000000 {base}/repo.git#v1 /x/\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "git:2"]);
    assert!(!r.ok() && r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert!(std::fs::read_dir(root.path().join("git")).unwrap().count() > 0);
    let out = rbuild().arg("--root").arg(root.path()).args(["prune", "--all"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(root.path().join("git")).unwrap().count(), 0);
}
