//! The io-engine: the data plane of one storage node.
//!
//! - [`pool`]: pools (one disk each, our own on-disk format from the
//!   `pool-format` crate) and the replicas carved out of them;
//! - [`grpc`]: the engine gRPC API (`engine/api`) served on port 10124;
//! - [`daemon`]: configuration and lifecycle of the `io-engine` process;
//! - [`stats`]: I/O statistics of pools, replicas and nexuses;
//! - [`stress`]: the `pool-stress` workload used by crash drills.
//!
//! Dependency rule: this crate talks to disks only through `blockdev`, and to
//! the outside only through the gRPC contract of `io-engine-api`.

// Deny, not forbid: the one exception is the time-stamp counter read of
// the I/O statistics' clock (`stats/clock.rs`), a single intrinsic.
#![deny(unsafe_code)]

pub mod daemon;
pub mod grpc;
pub mod nexus;
pub mod poll;
pub mod pool;
pub mod registration;
pub mod share;
pub mod stats;
pub mod stress;
