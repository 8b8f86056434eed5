//! NVMe/TCP initiator (host) of the io-engine.
//!
//! Purpose: connect to a remote NVMe-oF controller over TCP (our own
//! target or the Linux kernel's `nvmet-tcp`) and expose its namespaces as
//! [`blockdev::BlockDevice`]s, e.g. as nexus children
//! (`nvmf://host:port/<subnqn>?hostnqn=...`).
//!
//! ```text
//!  Namespace (BlockDevice) --> Controller --(round robin)--> Queue 1..N
//!                                  |   supervisor: reconnect   |  submitter writes header+data itself
//!                                  |   keep-alive on Queue 0   |  connection task: batch read -> CID slab -> waiter
//! ```
//!
//! Module map:
//! - [`options`]: [`ConnectOptions`] and the `nvmf://` URI;
//! - [`controller`]: association setup (ICReq, Connect, CC.EN/CSTS.RDY,
//!   Identify, Number of Queues), keep-alive, retry and reconnect;
//! - [`namespace`]: the `BlockDevice` implementation (MDTS splitting,
//!   Flush, Write Zeroes, Dataset Management);
//! - [`reservation`]: Reservation Register/Acquire/Release/Report on a
//!   [`Namespace`] (fencing of a previous volume target);
//! - `queue`, `slab`, `wire`: one TCP connection, its CID slab, and the
//!   host's use of the `nvmf` codec;
//! - [`split`], [`cmd`]: request splitting and command builders.
//!
//! Invariants:
//! - the wire format comes from the `nvmf` codec crate only;
//! - writes that fit the controller's in-capsule size (IOCCSZ*16-64) are
//!   always sent in-capsule (Linux 6.1 `nvmet-tcp` requires it), larger
//!   ones through R2T/H2CData in MAXH2CDATA pieces;
//! - no unwrap on input or on the I/O path; a misbehaving controller ends
//!   its association (and triggers a reconnect), never the process.
//!
//! Threading model: everything is `Send + Sync` and runs on the tokio
//! runtime; each queue has one connection task (reads, completes, flushes
//! what the socket did not take at once, and runs the command-timeout
//! watchdog), each controller one supervisor task and one keep-alive task.
//! No task polls: idle connections sleep in the reactor.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cmd;
pub mod controller;
pub mod error;
pub mod namespace;
pub mod options;
mod queue;
pub mod reservation;
mod slab;
pub mod split;
mod wire;

pub use controller::{Controller, ControllerInfo};
pub use error::{status_name, HostError};
pub use namespace::Namespace;
pub use options::{ConnectOptions, NvmfUriError};
pub use queue::HostStats;
pub use reservation::{
    AcquireAction, RegisterAction, Registrant, ReleaseAction, ReservationStatus, ReservationType,
};
