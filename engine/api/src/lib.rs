//! The io-engine gRPC contract.
//!
//! `proto/io_engine.proto` is the source of truth; this crate only compiles
//! it (clients and servers for `PoolRpc`, `ReplicaRpc`, `HostRpc`,
//! `NexusRpc`, `RebuildRpc`, `StatsRpc` and `RegistrationRpc`) under
//! [`v1`]. It has no logic and no runtime of its own, so both the engine and
//! every consumer (the `io-engine-client` CLI, the control plane) can depend
//! on it without depending on each other.
//!
//! [`names`] is the one home of the NQN builders and default ports.
//!
//! [`etcd`] holds the other wire contract of the project: the subset of the
//! etcd v3 API (`proto/etcd/`) that the control plane's store speaks, both
//! to a real etcd and as the server of its embedded store.

#![forbid(unsafe_code)]

pub mod names;

/// Package `io_engine.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("io_engine.v1");
}

/// Package `ha.v1`: the high-availability agents' contract
/// (`proto/ha.proto`): `HaClusterRpc` (agent-ha-cluster), `HaNodeRpc`
/// (agent-ha-node) and `NodePathRpc` (served by csi-node).
pub mod ha {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ha.v1");
}

/// The subset of the etcd v3 API spoken by the control plane's store
/// (`proto/etcd/`): clients for a real etcd and servers for the embedded
/// store. Message names and field numbers are etcd's own.
pub mod etcd {
    /// Package `etcdserverpb`: the `KV`, `Watch` and `Lease` services.
    pub mod etcdserverpb {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("etcdserverpb");
    }

    /// Package `mvccpb`: `KeyValue` and watch `Event`.
    pub mod mvccpb {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("mvccpb");
    }
}
