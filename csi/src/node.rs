//! The CSI node plugin (`csi-node`): stages a volume on this host by
//! connecting the kernel's NVMe/TCP host to the volume's target, publishes
//! it into pods, and reports its usage and health.
//!
//! ```text
//!  kubelet ──gRPC (unix socket; TCP too)──> service ──> nvme    (nvme-cli connect, sysfs)
//!                                                  ├──> filesystem (blkid, mkfs, grow)
//!                                                  ├──> mount   (mountinfo, mount(2))
//!                                                  └──> stats   (statvfs, controller state)
//! ```
//!
//! - [`args`]: the command line and start-up; [`config`]: the node's
//!   settings (name, nvme defaults) and the per-volume connection
//!   parameters read from the publish context.
//! - [`service`]: the Node gRPC service (checks, locks, dispatch);
//!   [`server`]: it and the shared Identity service (Probe: not ready
//!   without `nvme_tcp`) on a unix socket and on TCP.
//! - [`stage`], [`publish`]: the four operations that change the host;
//!   [`volume`]: checked ids, capabilities and device numbers.
//! - [`nvme`]: the kernel NVMe/TCP host through `nvme connect` and sysfs;
//!   [`filesystem`], [`mount`], [`stats`]: what is done with the device;
//!   [`exec`]: the host's tools run with a time limit.
//! - [`path`]: `NodePathRpc`, a further path of a connected volume for
//!   agent-ha-node after a switch-over.
//! - [`error`]: [`NodeError`], mapped to `tonic::Status` in one place;
//!   [`crate::volume_guard`]: one call per volume at a time.
//!
//! Invariants: everything the plugin does is read back from the kernel
//! (sysfs, `/proc/self/mountinfo`), so a restarted plugin knows what is
//! staged and published; a volume's target NQN is
//! `nqn.2019-05.io.openebs:<volume-uuid>` (DESIGN section 2), so unstage
//! needs nothing but the volume id. Calls on one volume run one at a time
//! ([`crate::volume_guard`]); a second concurrent call on it gets ABORTED, as the CSI
//! spec asks. Blocking work (syscalls, tools) runs on tokio's blocking pool
//! or as child processes with a timeout.

pub mod args;
pub mod config;
pub mod error;
pub mod exec;
pub mod filesystem;
pub mod mount;
pub mod nvme;
pub mod path;
pub mod publish;
pub mod server;
pub mod service;
pub mod stage;
pub mod stats;
pub mod volume;

pub use args::Args;
pub use config::{NodeConfig, NvmeDefaults};
pub use error::NodeError;
pub use server::{run, Endpoints};

use crate::v1 as pb;
