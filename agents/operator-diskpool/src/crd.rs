//! The `DiskPool` custom resource (`openebs.io/v1beta2`, short name `dsp`)
//! as Rust types.
//!
//! The schema's one home is the chart's CRD file
//! (`deploy/helm/mayastor/crds/diskpool.yaml`); these types implement
//! [`kube::Resource`] by hand rather than generating a second schema, and
//! the test `the_chart_crd_matches_the_types` checks names, fields and enum
//! values of the two against each other.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "openebs.io";
/// The one served version.
pub const VERSION: &str = "v1beta2";
/// Kind of the resource.
pub const KIND: &str = "DiskPool";
/// Plural (the resource name in URLs).
pub const PLURAL: &str = "diskpools";
/// The finalizer the operator puts on every DiskPool it manages: the
/// resource is only removed once its pool is gone.
pub const FINALIZER: &str = "openebs.io/diskpool-protection";
/// Label key put on every pool the operator creates.
pub const CREATED_BY_KEY: &str = "openebs.io/created-by";
/// Its value.
pub const CREATED_BY_VALUE: &str = "operator-diskpool";

/// A pool on one disk of one storage node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskPool {
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: DiskPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DiskPoolStatus>,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.to_owned()
}

impl DiskPool {
    /// A new resource (no namespace, no status), as a user would write it.
    pub fn new(name: &str, spec: DiskPoolSpec) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }
}

/// The pool wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskPoolSpec {
    /// The storage node (its Kubernetes node name, the io-engine's node
    /// name) the pool is on.
    pub node: String,
    /// Exactly one disk: a device path or a URI (`aio:///path`, ...).
    pub disks: Vec<String>,
    /// Labels of the pool, used by volume placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PoolTopology>,
}

/// Labels put on the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PoolTopology {
    #[serde(default)]
    pub labelled: BTreeMap<String, String>,
}

/// What the operator last saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiskPoolStatus {
    #[serde(default)]
    pub cr_state: CrState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_status: Option<PoolStatus>,
    /// Capacity of the pool in bytes.
    #[serde(default)]
    pub capacity: u64,
    /// Bytes used on the pool.
    #[serde(default)]
    pub used: u64,
    /// Bytes free on the pool.
    #[serde(default)]
    pub available: u64,
}

/// Where the resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CrState {
    #[default]
    Creating,
    Created,
    Terminating,
}

/// The pool's status in the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolStatus {
    Unknown,
    Online,
    Degraded,
    Faulted,
}

impl From<openapi::models::PoolStatus> for PoolStatus {
    fn from(status: openapi::models::PoolStatus) -> Self {
        use openapi::models::PoolStatus as Rest;
        match status {
            Rest::Unknown => PoolStatus::Unknown,
            Rest::Online => PoolStatus::Online,
            Rest::Degraded => PoolStatus::Degraded,
            Rest::Faulted => PoolStatus::Faulted,
        }
    }
}

impl kube::Resource for DiskPool {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CHART_CRD: &str = include_str!("../../../deploy/helm/mayastor/crds/diskpool.yaml");

    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn the_chart_crd_matches_the_types() {
        let crd: serde_json::Value = serde_yaml::from_str(CHART_CRD).unwrap();
        let spec = &crd["spec"];
        assert_eq!(crd["metadata"]["name"], format!("{PLURAL}.{GROUP}"));
        assert_eq!(spec["group"], GROUP);
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["kind"], KIND);
        assert_eq!(spec["names"]["plural"], PLURAL);
        assert_eq!(spec["names"]["shortNames"], serde_json::json!(["dsp"]));
        let versions = spec["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1);
        let version = &versions[0];
        assert_eq!(version["name"], VERSION);
        assert!(version["subresources"]["status"].is_object());
        let schema = &version["schema"]["openAPIV3Schema"]["properties"];

        // Every field the operator writes or reads is in the schema, and
        // the schema has no field the types lack (a fully populated object
        // serialises every field).
        let full = DiskPool {
            status: Some(DiskPoolStatus {
                cr_state: CrState::Created,
                pool_status: Some(PoolStatus::Online),
                capacity: 1,
                used: 1,
                available: 1,
            }),
            ..DiskPool::new(
                "p",
                DiskPoolSpec {
                    node: "n".into(),
                    disks: vec!["/dev/x".into()],
                    topology: Some(PoolTopology {
                        labelled: [("a".to_owned(), "b".to_owned())].into(),
                    }),
                },
            )
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(keys(&json), keys(schema));
        for part in ["spec", "status"] {
            assert_eq!(
                keys(&json[part]),
                keys(&schema[part]["properties"]),
                "{part}"
            );
        }
        assert_eq!(
            keys(&json["spec"]["topology"]),
            keys(&schema["spec"]["properties"]["topology"]["properties"])
        );
        let required: Vec<&str> = schema["spec"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(required, ["node", "disks"]);
        assert_eq!(schema["spec"]["properties"]["disks"]["maxItems"], 1);

        // Enum values: exactly the variants of the types.
        let status = &schema["status"]["properties"];
        let cr_states: Vec<CrState> =
            serde_json::from_value(status["cr_state"]["enum"].clone()).unwrap();
        assert_eq!(
            cr_states,
            [CrState::Creating, CrState::Created, CrState::Terminating]
        );
        assert_eq!(
            status["cr_state"]["default"],
            serde_json::to_value(CrState::default()).unwrap()
        );
        let pool_states: Vec<PoolStatus> =
            serde_json::from_value(status["pool_status"]["enum"].clone()).unwrap();
        assert_eq!(
            pool_states,
            [
                PoolStatus::Unknown,
                PoolStatus::Online,
                PoolStatus::Degraded,
                PoolStatus::Faulted
            ]
        );
        for figure in ["capacity", "used", "available"] {
            assert_eq!(status[figure]["type"], "integer", "{figure}");
        }
    }

    #[test]
    fn a_user_manifest_parses() {
        let yaml = r#"
apiVersion: openebs.io/v1beta2
kind: DiskPool
metadata:
  name: pool-on-node-1
  namespace: mayastor
spec:
  node: node-1
  disks: ["aio:///var/local/pool.img"]
  topology:
    labelled:
      zone: a
"#;
        let dp: DiskPool = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(dp.spec.node, "node-1");
        assert_eq!(dp.spec.topology.unwrap().labelled["zone"], "a");
        assert!(dp.status.is_none());
        let no_status: DiskPoolStatus = serde_json::from_str("{}").unwrap();
        assert_eq!(no_status.cr_state, CrState::Creating);
    }
}
