//! The state directory of a local cluster.
//!
//! ```text
//! <state-dir>/
//!   cluster.json        settings of the cluster (nodes, pool size, store, ip prefix)
//!   rest-endpoint       the REST URL, one line (while the cluster is up)
//!   lock                held by every launcher command while it runs
//!   pids/<name>.pid     "PID START-TIME" of each running component
//!   logs/<name>.log     stdout and stderr of each component
//!   store/ or etcd/     the store's data
//!   pools/pool-<i>.img  the pool file of node i
//! ```
//!
//! The start time (clock ticks since boot, from `/proc/<pid>/stat`) is kept
//! with each PID so that a PID the kernel has since given to another
//! program is never signalled.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::{cli::StoreKind, process::ProcRecord};

/// Default pool size of a node.
pub const DEFAULT_POOL_SIZE_BYTES: u64 = 512 << 20;
/// Default number of nodes.
pub const DEFAULT_NODES: u32 = 3;
/// Default address prefix.
pub const DEFAULT_IP_PREFIX: &str = "127.0.1";

/// Settings a cluster was created with (`cluster.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub nodes: u32,
    pub pool_size_bytes: u64,
    pub store: StoreKind,
    pub ip_prefix: String,
}

/// An open state directory, locked for the lifetime of the value.
pub struct StateDir {
    root: PathBuf,
    _lock: fs::File,
}

/// `${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-local`.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("mayastor-local"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/mayastor-local")),
        None => bail!("neither XDG_DATA_HOME nor HOME is set: give --state-dir"),
    }
}

impl StateDir {
    /// Opens (creating when `create`) the directory and takes its lock,
    /// waiting for another launcher command to finish.
    pub fn open(root: &Path, create: bool) -> anyhow::Result<Option<StateDir>> {
        if !root.exists() {
            if !create {
                return Ok(None);
            }
            fs::create_dir_all(root)
                .with_context(|| format!("cannot create the state directory {}", root.display()))?;
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot open the state directory {}", root.display()))?;
        if !root.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        let lock_path = root.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "waiting for another mayastor-local command on {}",
                    root.display()
                );
                lock.lock()
                    .with_context(|| format!("cannot lock {}", lock_path.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
            }
        }
        Ok(Some(StateDir { root, _lock: lock }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }

    pub fn pids_dir(&self) -> PathBuf {
        self.root.join("pids")
    }

    pub fn pool_file(&self, node: u32) -> PathBuf {
        self.root.join("pools").join(format!("pool-{node}.img"))
    }

    pub fn store_data(&self, kind: StoreKind) -> PathBuf {
        match kind {
            StoreKind::Embedded => self.root.join("store"),
            StoreKind::Etcd => self.root.join("etcd"),
        }
    }

    pub fn rest_endpoint_file(&self) -> PathBuf {
        self.root.join("rest-endpoint")
    }

    fn settings_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }

    /// The recorded settings, if a cluster was created here.
    pub fn settings(&self) -> anyhow::Result<Option<Settings>> {
        let path = self.settings_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let settings = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged (run `mayastor-local down --wipe` to start afresh)",
                path.display()
            )
        })?;
        Ok(Some(settings))
    }

    pub fn save_settings(&self, settings: &Settings) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(settings).context("cannot encode the settings")?;
        write_atomic(&self.settings_file(), format!("{text}\n").as_bytes())
    }

    /// Creates the sub-directories.
    pub fn prepare(&self, kind: StoreKind) -> anyhow::Result<()> {
        for dir in [
            self.logs_dir(),
            self.pids_dir(),
            self.root.join("pools"),
            self.store_data(kind),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    /// `binaries/<name>`: the binary component `name` was last started
    /// from by `restart --bin-dir` (absent: found beside the launcher).
    fn binary_file(&self, name: &str) -> PathBuf {
        self.root.join("binaries").join(name)
    }

    /// The binary recorded for component `name`, if any.
    pub fn recorded_binary(&self, name: &str) -> Option<PathBuf> {
        let text = fs::read_to_string(self.binary_file(name)).ok()?;
        let path = PathBuf::from(text.trim_end_matches('\n'));
        (!path.as_os_str().is_empty()).then_some(path)
    }

    /// Records the binary component `name` runs from.
    pub fn save_binary(&self, name: &str, path: &Path) -> anyhow::Result<()> {
        let dir = self.root.join("binaries");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomic(
            &self.binary_file(name),
            format!("{}\n", path.display()).as_bytes(),
        )
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.pids_dir().join(format!("{name}.pid"))
    }

    /// The recorded process of component `name`, if any.
    pub fn pid(&self, name: &str) -> Option<ProcRecord> {
        let text = fs::read_to_string(self.pid_file(name)).ok()?;
        ProcRecord::parse(&text)
    }

    pub fn save_pid(&self, name: &str, rec: ProcRecord) -> anyhow::Result<()> {
        write_atomic(&self.pid_file(name), format!("{rec}\n").as_bytes())
    }

    pub fn remove_pid(&self, name: &str) {
        let _ = fs::remove_file(self.pid_file(name));
    }

    /// Every recorded component name (from `pids/`).
    pub fn recorded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.pids_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".pid"))
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// Deletes everything but the lock file.
    pub fn wipe(&self) -> anyhow::Result<()> {
        for entry in fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", self.root.display()))?;
            if entry.file_name() == "lock" {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

/// Writes `data` to a temporary file beside `path` and renames it over.
pub fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
