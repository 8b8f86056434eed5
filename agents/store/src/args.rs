//! The store flags every control-plane agent takes (`--store`,
//! `--cluster-uid`, `--namespace`): one definition, flattened into each
//! agent's command line.

use tokio_util::sync::CancellationToken;

use crate::{keys::StoreKeys, EtcdStore, SharedStore};

/// Where an agent's store is, and which cluster's keys it works in.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Store endpoint (etcd, or the embedded store): HOST:PORT.
    #[arg(
        long = "store",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:2379"
    )]
    pub endpoint: String,
    /// Cluster uid in the store keys.
    #[arg(long, default_value = "default")]
    pub cluster_uid: String,
    /// Namespace in the store keys.
    #[arg(long, default_value = "mayastor")]
    pub namespace: String,
}

impl StoreArgs {
    /// The keys of this cluster and namespace.
    pub fn keys(&self) -> StoreKeys {
        StoreKeys::new(&self.cluster_uid, &self.namespace)
    }

    /// [`EtcdStore::connect_until_stopped`] to the endpoint.
    pub async fn connect_until_stopped(&self, stop: &CancellationToken) -> Option<SharedStore> {
        EtcdStore::connect_until_stopped(&self.endpoint, stop).await
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        store: StoreArgs,
    }

    #[test]
    fn flags_and_defaults() {
        let c = Cli::parse_from(["agent"]);
        assert_eq!(c.store.endpoint, "127.0.0.1:2379");
        assert_eq!(c.store.keys(), StoreKeys::new("default", "mayastor"));
        let c = Cli::parse_from([
            "agent",
            "--store",
            "10.0.0.1:2379",
            "--cluster-uid",
            "c1",
            "--namespace",
            "ns",
        ]);
        assert_eq!(c.store.endpoint, "10.0.0.1:2379");
        assert_eq!(c.store.keys(), StoreKeys::new("c1", "ns"));
    }
}
