//! The kernel's NVMe-over-Fabrics controllers of our volumes, read from
//! sysfs (under a configurable root, so tests use a made-up tree):
//!
//! ```text
//! <root>/class/nvme/nvmeC/{subsysnqn,state,address,delete_controller}
//! <root>/class/nvme/nvmeC/nvmeScCnN/ana_state        the path's namespace
//! <root>/module/nvme_core/parameters/multipath      Y | N
//! ```
//!
//! A new path is usable when its controller is `live` and its namespace
//! has joined the multipath device in a serving ANA state: the kernel
//! scans the namespace after the controller goes live, and until then the
//! path cannot take the I/O (deleting the old path before that would
//! leave the device without a path: I/O errors).

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use io_engine_api::names::{HOST_NQN_PREFIX, NQN_PREFIX};
pub use mayastor_common::nvme_sysfs::Controller;
use mayastor_common::nvme_sysfs::{self, read_trim};

/// Whether `nqn` is a volume target of ours.
pub fn is_volume_nqn(nqn: &str) -> bool {
    nqn.strip_prefix(NQN_PREFIX)
        .is_some_and(|id| !nqn.starts_with(HOST_NQN_PREFIX) && uuid::Uuid::parse_str(id).is_ok())
}

/// sysfs under `root`.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn class(&self) -> PathBuf {
        self.root.join("class/nvme")
    }

    /// Whether the kernel's native NVMe multipath is on.
    pub fn multipath(&self) -> bool {
        read_trim(&self.root.join("module/nvme_core/parameters/multipath"))
            .is_some_and(|v| v == "Y" || v == "1")
    }

    /// Every controller of a volume of ours, sorted by name.
    pub fn controllers(&self) -> Vec<Controller> {
        nvme_sysfs::controllers(&self.class(), is_volume_nqn)
    }

    /// The controllers of `nqn` at `address`.
    pub fn at(&self, nqn: &str, address: &str) -> Vec<Controller> {
        self.controllers()
            .into_iter()
            .filter(|c| c.nqn == nqn && c.address == address)
            .collect()
    }

    /// Deletes the controllers of `nqn` at `address` and waits (bounded)
    /// until they are gone; nothing to do when there is none.
    pub async fn delete(&self, nqn: &str, address: &str, limit: Duration) -> Result<(), String> {
        for c in self.at(nqn, address) {
            let f = self.class().join(&c.name).join("delete_controller");
            if let Err(e) = fs::write(&f, "1") {
                // It may have gone between the listing and the write.
                if f.exists() {
                    return Err(format!("cannot delete controller {}: {e}", c.name));
                }
            }
            tracing::info!(controller = %c.name, address, "controller deleted");
        }
        let start = Instant::now();
        loop {
            let left = self.at(nqn, address);
            if left.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "controllers of {nqn} at {address} still there after {limit:?}: {}",
                    left.iter()
                        .map(|c| format!("{} {}", c.name, c.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether controller `name` has a namespace path in a serving ANA
    /// state (optimized or non-optimized; a path without ANA counts once
    /// its namespace is there).
    pub fn has_usable_namespace(&self, name: &str) -> bool {
        let Ok(rd) = fs::read_dir(self.class().join(name)) else {
            return false;
        };
        rd.filter_map(Result::ok).any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let is_path = n
                .strip_prefix("nvme")
                .is_some_and(|r| r.contains('c') && r.contains('n'));
            is_path
                && match read_trim(&e.path().join("ana_state")) {
                    Some(s) => s == "optimized" || s == "non-optimized",
                    None => true,
                }
        })
    }

    /// Waits (bounded) until `nqn` has a live controller at `address`
    /// whose namespace is usable (see the module header); its name.
    pub async fn wait_live(
        &self,
        nqn: &str,
        address: &str,
        limit: Duration,
    ) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let at = self.at(nqn, address);
            if let Some(c) = at
                .iter()
                .find(|c| c.live() && self.has_usable_namespace(&c.name))
            {
                return Ok(c.name.clone());
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "no live controller of {nqn} at {address} with a usable namespace after {limit:?} ({})",
                    if at.is_empty() {
                        "none".to_owned()
                    } else {
                        at.iter()
                            .map(|c| format!("{} {}", c.name, c.state))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;

    pub const VOL: &str = "nqn.2019-05.io.openebs:0b0f8a5c-3c3a-4a2e-9a52-2e7fa7b1c1d2";

    /// A made-up controller under `root`.
    pub fn ctrl(root: &Path, name: &str, nqn: &str, state: &str, addr: &str) {
        let d = root.join("class/nvme").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("subsysnqn"), format!("{nqn}\n")).unwrap();
        fs::write(d.join("state"), format!("{state}\n")).unwrap();
        let (a, p) = addr.split_once(':').unwrap();
        fs::write(
            d.join("address"),
            format!("traddr={a},trsvcid={p},src_addr=10.0.2.15\n"),
        )
        .unwrap();
    }

    #[test]
    fn only_volume_controllers_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        ctrl(dir.path(), "nvme0", VOL, "live", "10.0.2.100:4420");
        ctrl(
            dir.path(),
            "nvme1",
            "nqn.2014-08.org.nvmexpress.discovery",
            "live",
            "10.0.2.100:4420",
        );
        ctrl(
            dir.path(),
            "nvme2",
            "nqn.2019-05.io.openebs:node-name:x",
            "live",
            "1.2.3.4:1",
        );
        fs::create_dir_all(dir.path().join("class/nvme/nvme0n1")).unwrap();
        let s = Sysfs::new(dir.path());
        let all = s.controllers();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].address, "10.0.2.100:4420");
        assert_eq!(all[0].state, "live");
        assert!(!s.multipath());
        fs::create_dir_all(dir.path().join("module/nvme_core/parameters")).unwrap();
        fs::write(
            dir.path().join("module/nvme_core/parameters/multipath"),
            "Y\n",
        )
        .unwrap();
        assert!(s.multipath());
    }

    /// The namespace path of controller `name` in ANA `state`.
    pub fn ns_path(root: &Path, name: &str, state: &str) {
        let n: String = name.chars().filter(char::is_ascii_digit).collect();
        let d = root
            .join("class/nvme")
            .join(name)
            .join(format!("nvme0c{n}n1"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ana_state"), format!("{state}\n")).unwrap();
    }

    #[tokio::test]
    async fn a_new_path_is_usable_once_its_namespace_serves() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sysfs::new(dir.path());
        ctrl(dir.path(), "nvme1", VOL, "live", "10.0.2.100:4422");
        let wait = || s.wait_live(VOL, "10.0.2.100:4422", Duration::from_millis(200));
        let e = wait().await.unwrap_err();
        assert!(e.contains("usable namespace"), "{e}");
        ns_path(dir.path(), "nvme1", "inaccessible");
        assert!(wait().await.is_err(), "an inaccessible path takes no I/O");
        ns_path(dir.path(), "nvme1", "optimized");
        assert_eq!(wait().await.unwrap(), "nvme1");
    }
}
