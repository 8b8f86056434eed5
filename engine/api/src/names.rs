//! Names and default ports every part of the project agrees on (DESIGN.md
//! section 2): the one home of the NQN builders and the default ports, so
//! that engine, control plane and tools cannot drift apart.
//!
//! Plain functions and constants: no I/O, no dependencies.

use std::fmt::Display;

/// Prefix of every NQN the project makes (replicas, volume targets, hosts).
pub const NQN_PREFIX: &str = "nqn.2019-05.io.openebs:";

/// Prefix of the host NQN of a node (followed by the node name).
pub const HOST_NQN_PREFIX: &str = "nqn.2019-05.io.openebs:node-name:";

/// io-engine gRPC port.
pub const IO_ENGINE_GRPC_PORT: u16 = 10124;
/// NVMe/TCP listener of replicas and volume targets.
pub const NVMF_PORT: u16 = 8420;
/// Core agent gRPC (registration, internal API).
pub const CORE_GRPC_PORT: u16 = 50051;
/// HA cluster agent gRPC.
pub const HA_CLUSTER_GRPC_PORT: u16 = 50052;
/// HA node agent gRPC.
pub const HA_NODE_GRPC_PORT: u16 = 50053;
/// REST API over http.
pub const REST_HTTP_PORT: u16 = 8081;
/// REST API over https.
pub const REST_HTTPS_PORT: u16 = 8080;
/// CSI node plugin gRPC (besides its unix socket).
pub const CSI_NODE_GRPC_PORT: u16 = 10199;
/// Metrics exporter (`GET /metrics`).
pub const METRICS_PORT: u16 = 9502;

/// The NQN of a replica's subsystem: `nqn.2019-05.io.openebs:<replica-uuid>`.
pub fn replica_nqn(replica_uuid: impl Display) -> String {
    format!("{NQN_PREFIX}{replica_uuid}")
}

/// The NQN of a volume target: `nqn.2019-05.io.openebs:<volume-uuid>`. It
/// names the volume, not the nexus, so it stays the same when the target
/// moves to another node.
pub fn volume_nqn(volume: impl Display) -> String {
    format!("{NQN_PREFIX}{volume}")
}

/// The host NQN of node `node`: `nqn.2019-05.io.openebs:node-name:<node>`.
pub fn host_nqn(node: impl Display) -> String {
    format!("{HOST_NQN_PREFIX}{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_upstream() {
        let u = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
        assert_eq!(replica_nqn(u), format!("nqn.2019-05.io.openebs:{u}"));
        assert_eq!(volume_nqn(u), format!("nqn.2019-05.io.openebs:{u}"));
        assert_eq!(
            host_nqn("node-1"),
            "nqn.2019-05.io.openebs:node-name:node-1"
        );
        assert!(host_nqn("n").starts_with(NQN_PREFIX));
    }
}
