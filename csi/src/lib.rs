//! The CSI driver of the project (DESIGN.md section 5): what Kubernetes
//! calls to provision, attach, mount, expand and clean up our volumes.
//!
//! ```text
//!  kubelet / CSI sidecars ──gRPC over a unix socket──▶ csi-controller ──REST──▶ api-rest
//!                                                 └──▶ csi-node ──nvme connect, mkfs, mount
//! ```
//!
//! - [`v1`]: the CSI v1 wire contract, generated from `proto/csi.proto`
//!   (clients and servers of `Identity`, `Controller` and `Node`);
//! - [`identity`]: the Identity service both binaries serve, with a
//!   pluggable readiness check for `Probe`;
//! - [`controller`]: the Controller service of `csi-controller`, which
//!   talks to the cluster only through the REST client crate `openapi`;
//! - [`node`]: the Node service of `csi-node`;
//! - [`context`]: the keys of the StorageClass parameters, volume context
//!   and publish context (one home for controller and node);
//! - [`client`]: a channel to a plugin's unix socket (tests, tools);
//! - [`socket`]: serving a tonic router on a unix socket (stale socket
//!   removed at start, removed again at shutdown); [`uds_authority`]:
//!   the `:authority` older gRPC-Go clients send on a unix socket, made
//!   acceptable to the HTTP/2 server.
//!
//! Dependency rule: a tool crate (DESIGN.md section 1): the REST client
//! crate and the bottom-level crates only, never a server's internals.

#![forbid(unsafe_code)]

pub mod client;
pub mod context;
pub mod controller;
pub mod identity;
pub mod node;
pub mod socket;
pub mod uds_authority;
pub mod volume_guard;

/// Package `csi.v1` of the CSI specification.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("csi.v1");
}

/// Package `ha.v1` of the HA contract (`engine/api/proto/ha.proto`), server
/// side only: csi-node serves `NodePathRpc` to agent-ha-node.
pub mod ha {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ha.v1");
}

/// The CSI driver name (the StorageClass `provisioner`).
pub const PLUGIN_NAME: &str = "io.openebs.csi-mayastor";

/// Topology key of a node: volumes and nodes are placed by Kubernetes node
/// name.
pub const NODE_TOPOLOGY_KEY: &str = "openebs.io/nodename";

/// Version reported by `GetPluginInfo`.
pub const VENDOR_VERSION: &str = env!("CARGO_PKG_VERSION");
