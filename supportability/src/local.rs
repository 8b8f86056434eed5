//! A local cluster (`mayastor-local`) as a source of the bundle: its state
//! directory holds each component's log (`logs/<name>.log`) and its
//! settings (`cluster.json`, from which the store's address follows).
//!
//! The plugin finds the state directory as it finds the REST endpoint (the
//! directory holding the `rest-endpoint` file); see
//! `kubectl-mayastor/src/discovery.rs`.

use std::path::{Path, PathBuf};

/// Host number of the store on the cluster's address prefix, and its port
/// (`deploy/local/src/layout.rs`: the store listens on `A.B.C.250:2379`).
const STORE_HOST: u8 = 250;
const STORE_PORT: u16 = 2379;

/// One log file of a local cluster and where it goes in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLog {
    pub path: PathBuf,
    /// Component name (`io-engine-2`, `agent-core`, ...).
    pub component: String,
    /// The node it serves, for engines (`node-2`).
    pub node: Option<String>,
    /// Path inside the bundle.
    pub archive_path: String,
}

/// The state directory of a local cluster.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub state_dir: PathBuf,
}

impl LocalCluster {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
        }
    }

    /// The store's `host:port`, from `cluster.json`'s address prefix.
    pub fn store_endpoint(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.state_dir.join("cluster.json")).ok()?;
        let settings: serde_json::Value = serde_json::from_str(&text).ok()?;
        let prefix = settings.get("ip_prefix")?.as_str()?;
        Some(format!("{prefix}.{STORE_HOST}:{STORE_PORT}"))
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// Every component log, sorted by bundle path.
    pub fn logs(&self) -> std::io::Result<Vec<LocalLog>> {
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(self.logs_dir())? {
            let entry = entry?;
            let path = entry.path();
            let Some(component) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
                .map(str::to_string)
            else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            logs.push(classify(&path, &component));
        }
        logs.sort_by(|a, b| a.archive_path.cmp(&b.archive_path));
        Ok(logs)
    }
}

/// The component group and bundle path of a component's log.
fn classify(path: &Path, component: &str) -> LocalLog {
    // The components of node i: its engine and its metrics exporter.
    let per_node = ["io-engine", "metrics-exporter"]
        .into_iter()
        .find_map(|base| {
            component
                .strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('-'))
                .filter(|i| i.parse::<u32>().is_ok())
                .map(|i| (base, i))
        });
    let (group, node, name) = match per_node {
        Some((base, i)) => ("mayastor", Some(format!("node-{i}")), base.to_string()),
        None => (crate::log_group(component), None, component.to_string()),
    };
    let file = match &node {
        Some(node) => format!("{node}-{name}.log"),
        None => format!("{name}.log"),
    };
    LocalLog {
        path: path.to_path_buf(),
        component: component.to_string(),
        node,
        archive_path: format!("logs/{group}/{file}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_map_to_bundle_paths() {
        let p = Path::new("/x");
        assert_eq!(
            classify(p, "io-engine-2").archive_path,
            "logs/mayastor/node-2-io-engine.log"
        );
        assert_eq!(classify(p, "io-engine-2").node.as_deref(), Some("node-2"));
        assert_eq!(
            classify(p, "metrics-exporter-2").archive_path,
            "logs/mayastor/node-2-metrics-exporter.log"
        );
        assert_eq!(
            classify(p, "metrics-exporter-2").node.as_deref(),
            Some("node-2")
        );
        assert_eq!(
            classify(p, "agent-core").archive_path,
            "logs/core-agents/agent-core.log"
        );
        assert_eq!(
            classify(p, "api-rest").archive_path,
            "logs/rest/api-rest.log"
        );
        assert_eq!(classify(p, "store").archive_path, "logs/etcd/store.log");
        assert_eq!(classify(p, "thing").archive_path, "logs/other/thing.log");
    }

    #[test]
    fn store_endpoint_from_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = LocalCluster::new(dir.path());
        assert_eq!(cluster.store_endpoint(), None);
        std::fs::write(
            dir.path().join("cluster.json"),
            r#"{"nodes":3,"pool_size_bytes":1,"store":"embedded","ip_prefix":"127.0.61"}"#,
        )
        .expect("write");
        assert_eq!(
            cluster.store_endpoint().as_deref(),
            Some("127.0.61.250:2379")
        );
    }
}
