//! The process test kit shared by every multi-process test suite (engine,
//! control plane, local cluster, plugin, dashboard): only a dev-dependency.
//!
//! - [`bin`] finds (and builds once per test process, with the same cargo,
//!   profile and target directory) a binary of any package of the workspace;
//! - [`Proc`] runs one process with its log in a temporary directory and
//!   stops it by PID: SIGKILL ([`Proc::kill9`]), SIGTERM with a deadline
//!   ([`Proc::terminate`]), and SIGKILL when dropped (printing the log's tail
//!   when the test is failing);
//! - [`etcd`] starts a real etcd (Debian's `etcd-server`);
//! - [`LocalCluster`] runs a whole local cluster (`mayastor-local up`,
//!   `down --wipe` when dropped);
//! - [`kube_local`] starts a real Kubernetes API server (and the
//!   machine's one worker node) with `shared/tools/kube-local`;
//! - [`free_port`] and [`free_port_on`] (a free port on a loopback
//!   address), [`wait_port`], [`wait_until`], [`eventually`]: the waits
//!   every scenario needs;
//! - [`log_time`] reads the timestamp our log lines start with.
//!
//! Dependency rule: only `mayastor-common` from the workspace, so any test
//! suite may use it without linking a server's internals; no Kubernetes
//! client (kubectl is run instead).
//!
//! Ports: each test suite uses its own 127.0.x.* prefix and [`free_port`],
//! so suites run in parallel without clashes.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

pub mod etcd;
pub mod helm;
pub mod kube_local;
pub mod local_cluster;
mod process;
mod wait;

pub use local_cluster::LocalCluster;
pub use process::{bin, free_port, free_port_on, print_tail, profile_dir, run_ok, wait_port, Proc};
pub use wait::{eventually, wait_until};

/// The timestamp a log line of ours starts with (RFC 3339 UTC, as the
/// tracing formatter writes it: `2024-05-01T10:00:00.123456Z ...`).
pub fn log_time(line: &str) -> Option<std::time::SystemTime> {
    mayastor_common::time::parse_system_time(line.split_whitespace().next()?)
}
