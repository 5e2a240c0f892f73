//! Shared helpers for integration tests (owned by the store helper; use from any
//! `tests/*.rs` with `mod common;`).
//!
//! - [`rbuild_bin`]: the binary under test.
//! - [`fresh_root`]: an empty store root in a temp dir.
//! - [`busybox_archive`] / [`busybox_rootfs_tar`]: `testdata/make-busybox.sh` output, made once
//!   per `cargo test` run under `CARGO_TARGET_TMPDIR` and reused.
//! - [`store_with_busybox`]: a fresh store with `busybox:local` loaded (about 50 ms).
//! - [`busybox_rootfs`]: a directory holding the busybox root file system.
//! - [`rbuild`] / [`rbuild_ok`]: run the CLI on a root; [`store_state`]: index.json + blob names,
//!   to assert that a failed command changed nothing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rbuild::store::Store;
use tempfile::TempDir;

/// The `rbuild` binary cargo built for these tests.
pub fn rbuild_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rbuild"))
}

/// An empty temp dir under /tmp to use as `--root`.
pub fn fresh_root() -> TempDir {
    tempfile::Builder::new()
        .prefix("rbuild-test-")
        .tempdir_in("/tmp")
        .expect("create a temp dir under /tmp")
}

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `testdata/make-busybox.sh [extra] OUT` once; the result is cached by name under
/// `CARGO_TARGET_TMPDIR` (written to a temp name, then renamed, so parallel test binaries
/// never see half a file).
fn make_busybox(name: &str, extra: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(name);
    let script = repo_dir().join("testdata/make-busybox.sh");
    let fresh = |p: &Path| {
        let (Ok(a), Ok(b), Ok(c)) = (
            p.metadata(),
            script.metadata(),
            Path::new("/bin/busybox").metadata(),
        ) else {
            return false;
        };
        let t = a.modified().ok();
        t >= b.modified().ok() && t >= c.modified().ok()
    };
    if !fresh(&out) {
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        let st = Command::new("sh")
            .arg(&script)
            .args(extra)
            .arg(&tmp)
            .status()
            .expect("run testdata/make-busybox.sh");
        assert!(
            st.success(),
            "testdata/make-busybox.sh failed (is busybox-static installed?)"
        );
        std::fs::rename(&tmp, &out).expect("rename the busybox archive into place");
    }
    out
}

/// OCI archive of `busybox:local` (made once per test run).
pub fn busybox_archive() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| make_busybox("busybox-local.oci.tar", &[]))
}

/// Root file system tar of the busybox image (what `rbuild import` takes).
pub fn busybox_rootfs_tar() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| make_busybox("busybox-rootfs.tar", &["--rootfs"]))
}

/// A fresh store with `busybox:local` loaded.
pub fn store_with_busybox() -> (TempDir, Store) {
    let root = fresh_root();
    let store = Store::open(root.path()).expect("open a fresh store");
    store
        .load_archive(busybox_archive())
        .expect("load busybox:local");
    (root, store)
}

/// A temp dir with the busybox root file system unpacked in it (`bin/sh`, `etc/passwd`,
/// `tmp` 1777, ...): a rootfs for sandbox tests that do not need a store.
pub fn busybox_rootfs() -> TempDir {
    let dir = fresh_root();
    let f = std::fs::File::open(busybox_rootfs_tar()).expect("open the busybox rootfs tar");
    rbuild::snapshot::unpack_layer(f, dir.path()).expect("unpack the busybox rootfs");
    dir
}

/// Run `rbuild --root ROOT ARGS...`.
pub fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(rbuild_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run rbuild")
}

/// Run `rbuild --root ROOT ARGS...`, assert success, return stdout.
pub fn rbuild_ok(root: &Path, args: &[&str]) -> String {
    let o = rbuild(root, args);
    assert!(
        o.status.success(),
        "rbuild {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `index.json` and the sorted blob names: compare before and after a failing command.
pub fn store_state(root: &Path) -> (String, Vec<String>) {
    let index = std::fs::read_to_string(root.join("oci/index.json")).unwrap_or_default();
    let mut blobs: Vec<String> = std::fs::read_dir(root.join("oci/blobs/sha256"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    blobs.sort();
    (index, blobs)
}

/// Is `prog` on PATH?
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// `shared/conformance/buildkit` (BuildKit's test data): `$CARGO_MANIFEST_DIR/../shared`, else
/// `/work/shared`. Panics when neither exists: a conformance test that silently runs nothing
/// proves nothing.
pub fn conformance_dir() -> PathBuf {
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/buildkit"),
        PathBuf::from("/work/shared/conformance/buildkit"),
    ];
    for c in &candidates {
        if c.is_dir() {
            return c.clone();
        }
    }
    panic!("conformance data not found: looked in {candidates:?}; put the shared/ folder beside the repo");
}
