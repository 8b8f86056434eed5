//! `agent-ha-node`: the node half of high availability.
//!
//! ```text
//!  sysfs /sys/class/nvme/nvmeC/{subsysnqn,state,address}
//!        │ every --interval
//!        ▼
//!  watch: a path of ours `connecting` for --path-failure-threshold
//!        │ batched ReportFailedPaths, resent until acknowledged
//!        ▼
//!  agent-ha-cluster ── republishes the volume ──▶ ReplacePath (server)
//!        replace: csi-node ConnectPath(new) ─▶ wait live ─▶ delete old
//! ```
//!
//! Modules: [`config`] (flags and the address map for hosts that reach
//! the targets through a NAT), [`sysfs`] (the kernel's controllers),
//! [`watch`] (failure detection and reporting), [`replace`] (the
//! ReplacePath service), [`register`] (where the cluster agent reaches
//! this agent, for drains), [`agent`] (startup and the multipath check).
//!
//! Without the kernel's native NVMe multipath
//! (`/sys/module/nvme_core/parameters/multipath` = `Y`) a volume cannot
//! have two paths at once, so the agent logs that HA cannot work on this
//! host, reports nothing and refuses ReplacePath.
//!
//! Threading: one watcher task; ReplacePath calls run in the gRPC
//! server's tasks, one per volume at a time (a per-NQN lock).

#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod register;
pub mod replace;
pub mod sysfs;
pub mod watch;
