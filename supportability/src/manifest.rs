//! `manifest.json` (what was collected, from where, sizes, and every
//! collector's outcome with its error) and `README.txt` (where to look).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
}

/// One collector's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorRecord {
    /// e.g. `topology`, `store`, `logs/local/io-engine-1`,
    /// `logs/pod/mayastor/io-engine-x/io-engine`, `logs/loki/...`,
    /// `k8s/DaemonSet`.
    pub name: String,
    /// Where it read from (URL, file, endpoint).
    pub source: String,
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// The error (failed) or the reason (skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub files: Vec<FileRecord>,
    pub duration_ms: u64,
}

/// Where the dump read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    pub rest: Option<String>,
    pub store: Option<String>,
    pub local_state_dir: Option<String>,
    pub kubernetes: Option<String>,
    pub loki: Option<String>,
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    /// RFC 3339 UTC.
    pub created: String,
    /// `system`, `volume <id>`, ...
    pub resource: String,
    pub archive_format: String,
    /// Logs are cut to records at or after this time (RFC 3339 UTC).
    pub logs_since: String,
    pub max_log_bytes: u64,
    pub sources: Sources,
    pub collectors: Vec<CollectorRecord>,
    /// Secrets replaced by `<redacted>`, by kind.
    pub redactions: BTreeMap<String, u64>,
    /// True when a collector failed.
    pub partial: bool,
}

impl Manifest {
    pub fn failures(&self) -> impl Iterator<Item = &CollectorRecord> {
        self.collectors.iter().filter(|c| c.outcome == "failed")
    }
}

/// `README.txt` of a bundle.
pub fn readme(manifest: &Manifest) -> String {
    let mut text = format!(
        "Mayastor support bundle ({resource}), created {created} by {tool} {version}.\n\
         \n\
         Where to look:\n\
         - manifest.json            what was collected, from where, sizes, and every\n\
         \u{20}                           collector that failed with its error\n\
         - support_tool_logs.log    the log of the tool that made this bundle\n\
         - topology/<kind>/<id>-topology.json\n\
         \u{20}                           nodes, pools, volumes (spec and state as the REST API\n\
         \u{20}                           returns them), replicas and nexuses ({{\"spec\", \"state\"}});\n\
         \u{20}                           topology/volume/<id>-rebuild-history.json\n\
         - logs/<group>/[<node>-]<name>.log\n\
         \u{20}                           component logs since {since}: mayastor (io-engines),\n\
         \u{20}                           core-agents, rest, etcd, csi, ...; from a local cluster's\n\
         \u{20}                           files, from pods (<pod>-<container>[-previous]) and from\n\
         \u{20}                           Loki (loki-<container>)\n\
         - k8s_resources/           Kubernetes objects as YAML (configurations/, k8s_events.yaml,\n\
         \u{20}                           pods.yaml, ...)\n\
         - etcd_dump                every key of the store under /openebs.io/mayastor/\n\
         \n\
         Secrets (tokens, passwords, private keys) were replaced by <redacted>.\n",
        resource = manifest.resource,
        created = manifest.created,
        tool = manifest.tool,
        version = manifest.version,
        since = manifest.logs_since,
    );
    let failed: Vec<&CollectorRecord> = manifest.failures().collect();
    if failed.is_empty() {
        text.push_str("\nEverything was collected.\n");
    } else {
        text.push_str(&format!(
            "\nPARTIALLY COLLECTED: {} collector(s) failed:\n",
            failed.len()
        ));
        for c in failed {
            text.push_str(&format!(
                "- {}: {}\n",
                c.name,
                c.error.as_deref().unwrap_or("")
            ));
        }
    }
    text
}
