//! Helpers for the build integration tests: a store with busybox:local, a project dir,
//! running the `rbuild` binary with plain progress and reading which steps were cached.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rbuild::progress::{parse_plain, PlainStep};
use rbuild::store::Store;

/// The busybox:local OCI archive, made by testdata/make-busybox.sh once per test process into
/// a temp dir and moved to one shared path (the script is deterministic, so test processes
/// racing here produce the same bytes; the rename is atomic).
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let shared = std::env::temp_dir().join("rbuild-build-tests-busybox.tar");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("busybox.tar");
        let st = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/make-busybox.sh"))
            .arg(&out)
            .status()
            .expect("run testdata/make-busybox.sh (needs busybox-static)");
        assert!(st.success(), "make-busybox.sh failed");
        std::fs::copy(&out, dir.path().join("staged")).unwrap();
        std::fs::rename(dir.path().join("staged"), &shared)
            .or_else(|_| std::fs::copy(&out, &shared).map(|_| ()))
            .unwrap();
        shared
    })
}

/// A fresh store root with busybox:local loaded.
pub fn store_with_busybox() -> tempfile::TempDir {
    let root = tempfile::Builder::new().prefix("rbuild-bt-root-").tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    store.load_archive(busybox_archive()).unwrap();
    root
}

/// Write `files` (path, content) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
}

/// Result of one `rbuild build` run.
pub struct Run {
    pub out: Output,
    pub stderr: String,
    pub stdout: String,
    pub steps: Vec<PlainStep>,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    /// The step whose name contains `needle`.
    pub fn step(&self, needle: &str) -> &PlainStep {
        self.steps
            .iter()
            .find(|s| s.name.contains(needle))
            .unwrap_or_else(|| panic!("no step {needle:?} in:\n{}", self.stderr))
    }
    pub fn image_id(&self) -> String {
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("Successfully built "))
            .unwrap_or_else(|| panic!("no summary line in:\n{}", self.stderr));
        line.split_whitespace().nth(2).unwrap().to_string()
    }
    /// Names of the steps that were not cached (FROM excluded).
    pub fn rebuilt(&self) -> Vec<String> {
        self.steps.iter().filter(|s| !s.cached && !s.name.contains("[internal]")).map(|s| s.name.clone()).collect()
    }
}

pub fn rbuild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
}

/// `rbuild --root ROOT build --progress=plain ARGS... CONTEXT`.
pub fn build(root: &Path, ctx: &Path, args: &[&str]) -> Run {
    build_env(root, ctx, args, &[])
}

/// [`build`] with extra environment variables.
pub fn build_env(root: &Path, ctx: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = rbuild()
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .arg("--root")
        .arg(root)
        .arg("build")
        .arg("--progress=plain")
        .args(args)
        .arg(ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let steps = parse_plain(&stderr);
    Run { out, stderr, stdout, steps }
}

/// A store opened on `root`.
pub fn store(root: &Path) -> Store {
    Store::open(root).unwrap()
}

/// Flatten the image's layers into a directory (for checking files, modes, owners).
pub fn unpack_image(root: &Path, name: &str) -> tempfile::TempDir {
    let store = store(root);
    let rec = store.resolve(name).unwrap();
    let dir = tempfile::Builder::new().prefix("rbuild-bt-fs-").tempdir().unwrap();
    for l in &rec.manifest.layers {
        let f = store.open_blob(&l.digest).unwrap();
        let rd = rbuild::snapshot::maybe_decompress(f).unwrap();
        rbuild::snapshot::unpack_layer(rd, dir.path()).unwrap();
    }
    dir
}
