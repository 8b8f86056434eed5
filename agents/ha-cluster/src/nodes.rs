//! The registered node agents: where the node agent of each node is
//! reached, one JSON document per node at
//! `<namespace prefix>/NodeAgentSpec/<node>`, the latest registration
//! winning. A drain's switch-over asks the node agent of the volume's
//! frontend node to replace the path; a failure's switch-over uses the
//! endpoint its report carried.

use serde::{Deserialize, Serialize};
use store::{keys::StoreKeys, SharedStore};

use crate::{
    record::{get_json, put_json},
    HaError,
};

/// Kind segment of the registrations' keys.
pub const KIND: &str = "NodeAgentSpec";

/// One node agent's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAgent {
    pub node: String,
    /// gRPC endpoint, `IP:PORT`.
    pub endpoint: String,
    pub registered_unix_ms: i64,
}

/// The registrations in the store.
#[derive(Clone)]
pub struct NodeAgents {
    store: SharedStore,
    prefix: String,
}

impl NodeAgents {
    pub fn new(store: SharedStore, keys: &StoreKeys) -> Self {
        Self {
            store,
            prefix: format!("{}/{KIND}/", keys.namespace_prefix()),
        }
    }

    fn key(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    /// Records (or replaces) the endpoint of `node`'s agent.
    pub async fn register(&self, node: &str, endpoint: &str) -> Result<(), HaError> {
        let rec = NodeAgent {
            node: node.to_owned(),
            endpoint: endpoint.to_owned(),
            registered_unix_ms: mayastor_common::time::now_unix_ms(),
        };
        put_json(&self.store, &self.key(node), &rec).await
    }

    /// The endpoint of `node`'s agent, if it registered.
    pub async fn endpoint(&self, node: &str) -> Result<Option<String>, HaError> {
        let rec: Option<NodeAgent> = get_json(&self.store, &self.key(node)).await?;
        Ok(rec.map(|r| r.endpoint))
    }
}
