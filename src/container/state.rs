//! Container state on disk and its lookup.
//!
//! ```text
//! <root>/containers/
//!   .lock              flock held while a container is created or removed (unique names)
//!   .new-<id>/         a container being created; renamed to <id>/ when complete
//!   <id>/
//!     config.json      ContainerConfig: written once at creation
//!     status           ContainerStatus (JSON): created → running → exited, replaced atomically
//!     pid              the container process's host PID (text), while it runs
//!     exitcode         the exit code, written by the sandbox's init when the process ends
//!     log, log.err     the container's stdout and stderr (`logs` prints them apart)
//!     upper/ work/     the overlay's upper and work dirs: the container's own writes
//! ```
//!
//! Every file is written to a temp file, fsynced and renamed, so a reader sees the old or
//! the new content, never a mix. A container is "running" only if its status says so *and*
//! the recorded PID still exists with the recorded start time (`/proc/<pid>/stat` field 22),
//! so a process that died behind rbuild's back, or a PID reused by another process, shows as
//! exited. A detached container's exit is recorded by the sandbox's init (it outlives
//! rbuild) in `exitcode`; `status` keeps saying `running` until someone folds it in, so
//! readers look at `exitcode` first.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command::Volume;
use super::names::{is_full_id, short_id};
use super::ContainerError;

/// What `rbuild run` asked for; written once when the container is created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    /// Unique name (given with `--name` or generated).
    pub name: String,
    /// The image reference as the user typed it (what `ps` shows).
    pub image: String,
    /// The image ID (config digest, `sha256:...`).
    pub image_id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The process to run: entrypoint ++ cmd.
    pub argv: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: String,
    /// `-u` or the image's User; `None` = root.
    pub user: Option<String>,
    /// Hostname inside the container.
    pub hostname: String,
    /// `host` or `none`.
    pub network: String,
    /// `-v` bind mounts.
    pub volumes: Vec<Volume>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-d`.
    pub detach: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// The signal `stop` sends first (the image's StopSignal, default SIGTERM).
    pub stop_signal: String,
    /// The overlay's lower dirs (the image's unpacked layers), top first.
    pub lower_dirs: Vec<PathBuf>,
}

/// The lifecycle state recorded in `status`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created, process not started yet.
    Created,
    /// Process started (and, if `pid` is alive, still running).
    Running,
    /// Process exited; `exit_code` says how.
    Exited,
}

/// The `status` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Recorded state.
    pub state: State,
    /// Host PID of the container's process, while running.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22).
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// PID of the rbuild process that waits for the container (foreground rbuild or the
    /// detached monitor).
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    /// RFC 3339 start time.
    #[serde(default)]
    pub started_at: Option<String>,
    /// RFC 3339 exit time.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Exit code (128 + signal when killed by a signal).
    #[serde(default)]
    pub exit_code: Option<i32>,
}

impl ContainerStatus {
    /// A fresh `created` status.
    pub fn created() -> Self {
        ContainerStatus {
            state: State::Created,
            pid: None,
            pid_start: None,
            monitor_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
        }
    }
}

/// What a container really is now, after checking its PID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Never started.
    Created,
    /// Running as `pid`.
    Running {
        /// Host PID of the container's process.
        pid: i32,
        /// When it started.
        started_at: Option<DateTime<Utc>>,
    },
    /// Exited with `code` (None when the process vanished without anyone recording it).
    Exited {
        /// Exit code.
        code: Option<i32>,
        /// When it exited, if recorded.
        finished_at: Option<DateTime<Utc>>,
    },
}

/// A container as loaded from disk.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: ContainerConfig,
    /// `status`.
    pub status: ContainerStatus,
}

impl Container {
    /// The real state: a `running` status whose process is gone (or whose PID now belongs
    /// to another process) is exited.
    pub fn observe(&self) -> Observed {
        let s = &self.status;
        match s.state {
            State::Created => Observed::Created,
            State::Exited => Observed::Exited {
                code: s.exit_code,
                finished_at: parse_time(s.finished_at.as_deref()),
            },
            State::Running if self.exit_file_code().is_some() => Observed::Exited {
                code: self.exit_file_code(),
                finished_at: std::fs::metadata(self.exit_file())
                    .and_then(|m| m.modified())
                    .ok()
                    .map(DateTime::<Utc>::from),
            },
            State::Running => match (s.pid, s.pid_start) {
                (Some(pid), Some(start)) if super::procfs::is_same_process(pid, start) => {
                    Observed::Running { pid, started_at: parse_time(s.started_at.as_deref()) }
                }
                _ => Observed::Exited { code: None, finished_at: None },
            },
        }
    }

    /// The file the sandbox's init writes the exit code to when the process ends (also
    /// after rbuild has gone, for detached containers).
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exitcode")
    }

    fn exit_file_code(&self) -> Option<i32> {
        fs::read_to_string(self.exit_file()).ok()?.trim().parse().ok()
    }

    /// Whether the container has exited and nobody will write to its state any more: the
    /// exit is recorded, or the process is gone and so is its monitor (killed too). A
    /// process just gone whose monitor is still recording is not final yet.
    pub fn exit_is_final(&self) -> bool {
        match self.observe() {
            Observed::Exited { code: Some(_), .. } => true,
            Observed::Exited { code: None, .. } => self
                .status
                .monitor_pid
                .is_none_or(|m| super::procfs::start_time(m).is_none()),
            _ => false,
        }
    }

    /// Whether the process is running now.
    pub fn is_running(&self) -> bool {
        matches!(self.observe(), Observed::Running { .. })
    }

    /// Short ID.
    pub fn short_id(&self) -> &str {
        short_id(&self.config.id)
    }

    /// The overlay upper dir.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The overlay work dir.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The log of the container's stdout (and of its pty, with `-t`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The log of the container's stderr (missing for containers of older rbuild
    /// versions, which logged both streams to [`Container::log_path`]).
    pub fn err_log_path(&self) -> PathBuf {
        self.dir.join("log.err")
    }

    /// Creation time.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        parse_time(Some(&self.config.created))
    }

    /// Replace the status file atomically (and the pid file with it).
    pub fn set_status(&mut self, status: ContainerStatus) -> Result<(), ContainerError> {
        let pid_path = self.dir.join("pid");
        match (status.state, status.pid) {
            (State::Running, Some(pid)) => write_atomic(&pid_path, format!("{pid}\n").as_bytes())?,
            _ => match fs::remove_file(&pid_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ContainerError::io(&pid_path, e)),
            },
        }
        let json = serde_json::to_vec_pretty(&status).map_err(|e| ContainerError::Json {
            path: self.dir.join("status"),
            source: e,
        })?;
        write_atomic(&self.dir.join("status"), &json)?;
        self.status = status;
        Ok(())
    }

    /// Re-read the status file.
    pub fn reload_status(&mut self) -> Result<(), ContainerError> {
        self.status = read_json(&self.dir.join("status"))?;
        Ok(())
    }
}

/// Parse an RFC 3339 time.
pub fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// Now, as RFC 3339 with nanoseconds.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The `containers/` directory of a store root.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

/// Holds `containers/.lock`; dropped = released.
pub struct ContainersLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Containers {
    /// `<root>/containers`, created if missing.
    pub fn open(root: &Path) -> Result<Self, ContainerError> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir).map_err(|e| ContainerError::io(&dir, e))?;
        Ok(Containers { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the lock that serialises creation and removal (name uniqueness).
    pub fn lock(&self) -> Result<ContainersLock, ContainerError> {
        let path = self.dir.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ContainerError::io(&path, e))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| ContainerError::io(&path, errno.into()))?;
        Ok(ContainersLock { _lock: lock })
    }

    /// Every container, newest first. Half-created (`.new-*`) dirs are skipped; a container
    /// dir whose files cannot be read is skipped too (it cannot be shown or used).
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(|e| ContainerError::io(&self.dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| ContainerError::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_full_id(name) {
                continue;
            }
            if let Ok(c) = self.load_dir(&entry.path()) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(out)
    }

    fn load_dir(&self, dir: &Path) -> Result<Container, ContainerError> {
        let config: ContainerConfig = read_json(&dir.join("config.json"))?;
        let status: ContainerStatus = read_json(&dir.join("status"))?;
        Ok(Container { dir: dir.to_path_buf(), config, status })
    }

    /// Find a container by full ID, name, or unique ID prefix (Docker's order).
    pub fn find(&self, key: &str) -> Result<Container, ContainerError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.config.id == key || c.config.name == key) {
            return Ok(c.clone());
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ContainerError::NotFound(key.to_string()));
        }
        let mut hits = all.into_iter().filter(|c| c.config.id.starts_with(key));
        match (hits.next(), hits.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(key.to_string())),
            (None, _) => Err(ContainerError::NotFound(key.to_string())),
        }
    }

    /// Remove the state of exited `--rm` containers whose exit nobody was left to act on
    /// (detached ones: the sandbox's init records the exit but knows nothing of `--rm`).
    /// Called at the start of every container command.
    pub fn collect_garbage(&self) -> Result<(), ContainerError> {
        let doomed: Vec<Container> = self
            .list()?
            .into_iter()
            .filter(|c| c.config.auto_remove && c.exit_is_final())
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        for c in doomed {
            if c.dir.exists() {
                self.remove(&c)?;
            }
        }
        Ok(())
    }

    /// The snapshot dirs (image layers) that recorded containers use as overlay lower
    /// dirs: a prune must keep them while the containers exist.
    pub fn lower_dirs_in_use(&self) -> Result<Vec<PathBuf>, ContainerError> {
        let mut dirs: Vec<PathBuf> = self.list()?.into_iter().flat_map(|c| c.config.lower_dirs).collect();
        dirs.sort();
        dirs.dedup();
        Ok(dirs)
    }

    /// The container using `name`, if any.
    pub fn by_name(&self, name: &str) -> Result<Option<Container>, ContainerError> {
        Ok(self.list()?.into_iter().find(|c| c.config.name == name))
    }

    /// Create a container's directory with its config, a `created` status, `upper/`,
    /// `work/` and an empty `log`, built under `.new-<id>` and renamed into place. The caller
    /// holds [`Containers::lock`] and has checked the name.
    pub fn create(&self, config: ContainerConfig) -> Result<Container, ContainerError> {
        let tmp = self.dir.join(format!(".new-{}", config.id));
        let fin = self.dir.join(&config.id);
        let result = (|| {
            fs::create_dir(&tmp).map_err(|e| ContainerError::io(&tmp, e))?;
            for d in ["upper", "work"] {
                let p = tmp.join(d);
                fs::create_dir(&p).map_err(|e| ContainerError::io(&p, e))?;
            }
            for name in ["log", "log.err"] {
                let log = tmp.join(name);
                fs::File::create(&log).map_err(|e| ContainerError::io(&log, e))?;
            }
            let json = serde_json::to_vec_pretty(&config)
                .map_err(|e| ContainerError::Json { path: tmp.join("config.json"), source: e })?;
            write_atomic(&tmp.join("config.json"), &json)?;
            let status = serde_json::to_vec_pretty(&ContainerStatus::created())
                .map_err(|e| ContainerError::Json { path: tmp.join("status"), source: e })?;
            write_atomic(&tmp.join("status"), &status)?;
            fs::rename(&tmp, &fin).map_err(|e| ContainerError::io(&fin, e))?;
            fsync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(Container { dir: fin, config, status: ContainerStatus::created() })
    }

    /// Delete a container's state. It is first renamed to a hidden name so a crash midway
    /// leaves nothing `ps` would show.
    pub fn remove(&self, c: &Container) -> Result<(), ContainerError> {
        let gone = self.dir.join(format!(".rm-{}", c.config.id));
        match fs::rename(&c.dir, &gone) {
            Ok(()) => {}
            // removed by someone else meanwhile (rm -f racing a --rm container)
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ContainerError::io(&c.dir, e)),
        }
        fs::remove_dir_all(&gone).map_err(|e| ContainerError::io(&gone, e))?;
        fsync_dir(&self.dir)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ContainerError> {
    let bytes = fs::read(path).map_err(|e| ContainerError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ContainerError::Json { path: path.to_path_buf(), source: e })
}

/// Write `bytes` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ContainerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ContainerError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| ContainerError::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| ContainerError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| ContainerError::io(path, e.error))?;
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<(), ContainerError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ContainerError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, name: &str, created: &str) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            name: name.into(),
            image: "busybox:local".into(),
            image_id: "sha256:00".into(),
            created: created.into(),
            argv: vec!["sh".into()],
            env: vec![],
            workdir: "/".into(),
            user: None,
            hostname: short_id(id).into(),
            network: "host".into(),
            volumes: vec![],
            tty: false,
            interactive: false,
            detach: false,
            auto_remove: false,
            stop_signal: "SIGTERM".into(),
            lower_dirs: vec![],
        }
    }

    #[test]
    fn create_list_find_remove() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let a = format!("abc1{}", "0".repeat(60));
        let b = format!("abc2{}", "1".repeat(60));
        cs.create(config(&a, "alpha", "2026-01-01T00:00:00Z")).unwrap();
        let cb = cs.create(config(&b, "beta", "2026-01-02T00:00:00Z")).unwrap();
        assert!(cb.upper_dir().is_dir() && cb.work_dir().is_dir() && cb.log_path().is_file());

        let names: Vec<_> = cs.list().unwrap().into_iter().map(|c| c.config.name).collect();
        assert_eq!(names, ["beta", "alpha"], "newest first");
        assert_eq!(cs.find("alpha").unwrap().config.id, a);
        assert_eq!(cs.find(&b).unwrap().config.name, "beta");
        assert_eq!(cs.find("abc2").unwrap().config.id, b);
        assert_eq!(cs.find("/beta").unwrap().config.id, b);
        assert!(matches!(cs.find("abc"), Err(ContainerError::Ambiguous(_))));
        assert!(matches!(cs.find("ffff"), Err(ContainerError::NotFound(_))));
        assert!(matches!(cs.find("gamma"), Err(ContainerError::NotFound(_))));
        assert!(cs.by_name("alpha").unwrap().is_some());
        assert!(cs.lower_dirs_in_use().unwrap().is_empty());

        cs.remove(&cb).unwrap();
        assert!(!cb.dir.exists());
        assert_eq!(cs.list().unwrap().len(), 1);
        let left: Vec<_> = fs::read_dir(cs.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "only the remaining container (no temp dirs): {left:?}");
    }

    #[test]
    fn status_transitions_and_dead_pid() {
        let root = tempfile::tempdir().unwrap();
        let cs = Containers::open(root.path()).unwrap();
        let id = "d".repeat(64);
        let mut c = cs.create(config(&id, "x1", &now_rfc3339())).unwrap();
        assert_eq!(c.observe(), Observed::Created);

        // our own PID with its real start time: running
        let me = std::process::id() as i32;
        let start = crate::container::procfs::start_time(me).unwrap();
        let mut s = ContainerStatus::created();
        s.state = State::Running;
        s.pid = Some(me);
        s.pid_start = Some(start);
        c.set_status(s.clone()).unwrap();
        assert!(c.is_running());
        assert_eq!(fs::read_to_string(c.dir.join("pid")).unwrap().trim(), me.to_string());
        let mut again = cs.find("x1").unwrap();
        again.reload_status().unwrap();
        assert!(again.is_running());

        // same PID, other start time: a reused PID, so exited
        s.pid_start = Some(start + 1);
        c.set_status(s.clone()).unwrap();
        assert_eq!(c.observe(), Observed::Exited { code: None, finished_at: None });

        // a PID that does not exist
        s.pid = Some(i32::MAX);
        c.set_status(s).unwrap();
        assert!(!c.is_running());

        let mut done = ContainerStatus::created();
        done.state = State::Exited;
        done.exit_code = Some(3);
        done.finished_at = Some(now_rfc3339());
        c.set_status(done).unwrap();
        assert!(matches!(c.observe(), Observed::Exited { code: Some(3), finished_at: Some(_) }));
        assert!(!c.dir.join("pid").exists());
    }
}
