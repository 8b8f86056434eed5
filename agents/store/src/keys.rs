//! The control plane's key layout (as upstream, so existing tooling and
//! habits carry over):
//!
//! ```text
//! /openebs.io/mayastor/apis/v0/clusters/<cluster-uid>/namespaces/<ns>/<Kind>/<id>
//! /openebs.io/mayastor/apis/v0/clusters/<cluster-uid>/namespaces/<ns>/volume/<volume-uuid>/nexus/<nexus-uuid>/info
//! ```
//!
//! `Kind` is one of [`Kind`]; the nexus info value is JSON
//! `{"children":[{"healthy":bool,"uuid":...}],"clean_shutdown":bool}`
//! (written by the io-engine, read by the core agent). IDs are names or
//! UUIDs and never contain `/`.

use std::{fmt, str::FromStr};

/// Root of every key.
pub const ROOT: &str = "/openebs.io/mayastor/apis/v0";

/// The kinds of objects the control plane stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    NodeSpec,
    PoolSpec,
    ReplicaSpec,
    VolumeSpec,
    NexusSpec,
    /// Leader-election locks ([`crate::LeaseLock`]).
    StoreLeaseLock,
    StoreLeaseOwner,
    CoreRegistryConfig,
    /// The record of the current or last guided upgrade (one object,
    /// id `upgrade`).
    UpgradeStatus,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::NodeSpec,
        Kind::PoolSpec,
        Kind::ReplicaSpec,
        Kind::VolumeSpec,
        Kind::NexusSpec,
        Kind::StoreLeaseLock,
        Kind::StoreLeaseOwner,
        Kind::CoreRegistryConfig,
        Kind::UpgradeStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeSpec => "NodeSpec",
            Kind::PoolSpec => "PoolSpec",
            Kind::ReplicaSpec => "ReplicaSpec",
            Kind::VolumeSpec => "VolumeSpec",
            Kind::NexusSpec => "NexusSpec",
            Kind::StoreLeaseLock => "StoreLeaseLock",
            Kind::StoreLeaseOwner => "StoreLeaseOwner",
            Kind::CoreRegistryConfig => "CoreRegistryConfig",
            Kind::UpgradeStatus => "UpgradeStatus",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown store kind {s:?}"))
    }
}

/// Name of the HA cluster agent's leader lease (see
/// [`StoreKeys::ha_cluster_lease`]).
pub const HA_CLUSTER_LEASE: &str = "ha-cluster-agent";

/// Builds the keys of one cluster and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKeys {
    prefix: String,
}

impl StoreKeys {
    pub fn new(cluster_uid: &str, namespace: &str) -> Self {
        StoreKeys {
            prefix: format!("{ROOT}/clusters/{cluster_uid}/namespaces/{namespace}"),
        }
    }

    /// `.../clusters/<cluster-uid>/namespaces/<ns>`: every key of the
    /// cluster starts with it.
    pub fn namespace_prefix(&self) -> &str {
        &self.prefix
    }

    /// `.../<Kind>/`: list or watch every object of a kind.
    pub fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}/{kind}/", self.prefix)
    }

    /// `.../<Kind>/<id>`.
    pub fn key(&self, kind: Kind, id: &str) -> String {
        format!("{}/{kind}/{id}", self.prefix)
    }

    /// The leader-election lock of the HA cluster agent: while it is held,
    /// an HA cluster agent runs, and drains move volume targets through it
    /// (a switch-over that hands the host over to the new target).
    pub fn ha_cluster_lease(&self) -> String {
        self.lease_lock(HA_CLUSTER_LEASE)
    }

    /// The leader-election lock called `name`.
    pub fn lease_lock(&self, name: &str) -> String {
        self.key(Kind::StoreLeaseLock, name)
    }

    /// `.../volume/<volume-uuid>/nexus/<nexus-uuid>/info`.
    pub fn nexus_info(&self, volume_uuid: &str, nexus_uuid: &str) -> String {
        format!(
            "{}/volume/{volume_uuid}/nexus/{nexus_uuid}/info",
            self.prefix
        )
    }

    /// `.../volume/<volume-uuid>/nexus/`: the nexus info of every nexus a
    /// volume has had.
    pub fn volume_nexus_prefix(&self, volume_uuid: &str) -> String {
        format!("{}/volume/{volume_uuid}/nexus/", self.prefix)
    }

    /// The kind and ID of an object key of this namespace.
    pub fn parse<'a>(&self, key: &'a str) -> Option<(Kind, &'a str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        let (kind, id) = rest.split_once('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        Some((kind.parse().ok()?, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_upstream_layout() {
        let keys = StoreKeys::new("c0ffee", "mayastor");
        assert_eq!(
            keys.key(Kind::VolumeSpec, "v1"),
            "/openebs.io/mayastor/apis/v0/clusters/c0ffee/namespaces/mayastor/VolumeSpec/v1"
        );
        assert_eq!(
            keys.lease_lock("core-agent"),
            "/openebs.io/mayastor/apis/v0/clusters/c0ffee/namespaces/mayastor/StoreLeaseLock/core-agent"
        );
        assert_eq!(
            keys.nexus_info("vol", "nex"),
            "/openebs.io/mayastor/apis/v0/clusters/c0ffee/namespaces/mayastor/volume/vol/nexus/nex/info"
        );
        assert!(keys
            .key(Kind::PoolSpec, "p")
            .starts_with(&keys.kind_prefix(Kind::PoolSpec)));
        assert!(keys
            .nexus_info("vol", "nex")
            .starts_with(&keys.volume_nexus_prefix("vol")));
    }

    #[test]
    fn object_keys_parse_back() {
        let keys = StoreKeys::new("c", "ns");
        for kind in Kind::ALL {
            let key = keys.key(kind, "id-1");
            assert_eq!(keys.parse(&key), Some((kind, "id-1")));
        }
        assert_eq!(keys.parse(&keys.nexus_info("v", "n")), None);
        assert_eq!(keys.parse("/other/NodeSpec/x"), None);
        assert_eq!(keys.parse(&keys.kind_prefix(Kind::NodeSpec)), None);
        assert_eq!(
            StoreKeys::new("c", "other").parse(&keys.key(Kind::NodeSpec, "x")),
            None
        );
    }
}
