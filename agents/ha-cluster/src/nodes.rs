//! The registered node agents: where the node agent of each node is
//! reached, one JSON document per node at
//! `<namespace prefix>/NodeAgentSpec/<node>`, the latest registration
//! winning. A drain's switch-over asks the node agent of the volume's
//! frontend node to replace the path; a failure's switch-over uses the
//! endpoint its report carried.

use serde::{Deserialize, Serialize};
use store::{keys::StoreKeys, SharedStore};

use crate::HaError;

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
        let value = serde_json::to_vec(&rec).map_err(|source| HaError::Decode {
            key: self.key(node),
            source,
        })?;
        self.store
            .put(self.key(node).as_bytes(), value, None)
            .await
            .map_err(HaError::Store)?;
        Ok(())
    }

    /// The endpoint of `node`'s agent, if it registered.
    pub async fn endpoint(&self, node: &str) -> Result<Option<String>, HaError> {
        let key = self.key(node);
        let Some(kv) = self
            .store
            .get(key.as_bytes())
            .await
            .map_err(HaError::Store)?
        else {
            return Ok(None);
        };
        let rec: NodeAgent =
            serde_json::from_slice(&kv.value).map_err(|source| HaError::Decode { key, source })?;
        Ok(Some(rec.endpoint))
    }
}
