//! The local cluster (`mayastor-local`): new binaries from a directory.
//!
//! It reads the state directory's documented files (`cluster.json` for the
//! store kind and node count) and runs `mayastor-local --state-dir DIR
//! restart NAME --bin-dir BIN --if-changed` for each component; it never
//! links the launcher. Node `node-i` is component `io-engine-i`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;

use super::{ControlPlane, Platform};
use crate::progress::Progress;
use crate::{Result, UpgradeError};

/// The binaries a local cluster runs (the store only with the embedded
/// store).
const ENGINE: &str = "io-engine";
const CORE: &str = "agent-core";
const REST: &str = "api-rest";
const STORE: &str = "mayastor-store";
/// Each node's metrics exporter, restarted with its engine when the new
/// binaries hold one.
const EXPORTER: &str = "metrics-exporter";

/// A local cluster and the directory of the new binaries.
#[derive(Debug, Clone)]
pub struct LocalPlatform {
    launcher: PathBuf,
    state_dir: PathBuf,
    bin_dir: PathBuf,
    embedded_store: bool,
}

impl LocalPlatform {
    /// Checks the state directory and the binaries directory. `launcher`
    /// is the `mayastor-local` executable.
    pub fn new(launcher: PathBuf, state_dir: PathBuf, bin_dir: PathBuf) -> Result<Self> {
        let settings = state_dir.join("cluster.json");
        let text = std::fs::read_to_string(&settings).map_err(|e| {
            UpgradeError::Input(format!(
                "{} is not a local cluster's state directory (cannot read {}: {e})",
                state_dir.display(),
                settings.display()
            ))
        })?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            UpgradeError::Input(format!("{} is unreadable: {e}", settings.display()))
        })?;
        let embedded_store = json.get("store").and_then(|s| s.as_str()) != Some("etcd");
        if !bin_dir.is_dir() {
            return Err(UpgradeError::Input(format!(
                "--bin-dir {} is not a directory",
                bin_dir.display()
            )));
        }
        if !is_executable(&launcher) {
            return Err(UpgradeError::Input(format!(
                "cannot find the mayastor-local launcher at {}",
                launcher.display()
            )));
        }
        Ok(Self {
            launcher,
            state_dir,
            bin_dir,
            embedded_store,
        })
    }

    fn binaries(&self) -> Vec<&'static str> {
        let mut all = vec![ENGINE, CORE, REST];
        if self.embedded_store {
            all.push(STORE);
        }
        if self.has_exporter() {
            all.push(EXPORTER);
        }
        all
    }

    fn has_exporter(&self) -> bool {
        is_executable(&self.bin_dir.join(EXPORTER))
    }

    async fn restart(&self, component: &str) -> Result<()> {
        let out = tokio::process::Command::new(&self.launcher)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["restart", component, "--if-changed", "--bin-dir"])
            .arg(&self.bin_dir)
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .output()
            .await
            .map_err(|e| {
                UpgradeError::Platform(format!("cannot run {}: {e}", self.launcher.display()))
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .trim_start_matches("mayastor-local: error: ");
        Err(UpgradeError::Platform(format!(
            "restarting {component} failed: {line}"
        )))
    }
}

/// The engine component of `node-i`.
fn engine_component(node: &str) -> Result<String> {
    node.strip_prefix("node-")
        .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        .map(|i| format!("io-engine-{i}"))
        .ok_or_else(|| {
            UpgradeError::Platform(format!(
                "node {node} is not a local cluster node (node-<i>)"
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The version a binary prints with `--version` (`name 1.2.3`).
async fn binary_version(path: &Path) -> Result<String> {
    if !is_executable(path) {
        return Err(UpgradeError::Input(format!(
            "{} is missing or not executable (--bin-dir must hold the new binaries)",
            path.display()
        )));
    }
    let out = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| UpgradeError::Input(format!("cannot run {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().last() {
        Some(v) if out.status.success() => Ok(v.to_string()),
        _ => Err(UpgradeError::Input(format!(
            "{} --version printed no version",
            path.display()
        ))),
    }
}

#[async_trait]
impl Platform for LocalPlatform {
    fn describe(&self) -> String {
        format!(
            "local cluster in {}, new binaries from {}",
            self.state_dir.display(),
            self.bin_dir.display()
        )
    }

    async fn target_version(&self) -> Result<String> {
        let mut found: Vec<(&str, String)> = Vec::new();
        for name in self.binaries() {
            found.push((name, binary_version(&self.bin_dir.join(name)).await?));
        }
        let first = found[0].1.clone();
        if found.iter().any(|(_, v)| *v != first) {
            return Err(UpgradeError::Input(format!(
                "the binaries in {} report different versions: {}",
                self.bin_dir.display(),
                found
                    .iter()
                    .map(|(n, v)| format!("{n} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(first)
    }

    fn control_plane(&self) -> Vec<ControlPlane> {
        let mut all = Vec::new();
        if self.embedded_store {
            all.push(ControlPlane::Store);
        }
        all.extend([ControlPlane::Core, ControlPlane::Rest]);
        all
    }

    async fn upgrade_control_plane(&self, component: ControlPlane, _: &Progress) -> Result<()> {
        self.restart(match component {
            ControlPlane::Store => "store",
            ControlPlane::Core => "agent-core",
            ControlPlane::Rest => "api-rest",
            other => {
                return Err(UpgradeError::Platform(format!(
                    "a local cluster runs no {}",
                    other.name()
                )))
            }
        })
        .await
    }

    async fn restart_engine(&self, node: &str, _: &Progress) -> Result<()> {
        let engine = engine_component(node)?;
        self.restart(&engine).await?;
        if self.has_exporter() {
            let i = engine.trim_start_matches("io-engine-");
            self.restart(&format!("metrics-exporter-{i}")).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_map_to_engines() {
        assert_eq!(engine_component("node-3").expect("valid"), "io-engine-3");
        for bad in ["node-", "node-x", "worker-1", "node-1/.."] {
            assert!(engine_component(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_local_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = LocalPlatform::new(
            PathBuf::from("/bin/true"),
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
        )
        .expect_err("no cluster.json");
        assert!(err.to_string().contains("not a local cluster"), "{err}");
    }
}
