//! The bottom of the dependency graph: small helpers with one home, used by
//! every crate of the workspace.
//!
//! Dependency rule: this crate depends on no crate of the workspace, and on
//! nothing heavier than `tracing`, `clap`, `tokio` and `crc32c`. Anything
//! that speaks a wire format, talks to a server or knows a resource of the
//! project belongs elsewhere (NQNs and default ports: `engine/api`; the REST
//! contract: `agents/openapi`).
//!
//! Modules:
//! - [`log`]: the `--log-format` choice and the tracing subscriber set-up;
//! - [`signal`]: SIGTERM/SIGINT as a future or a cancellation token;
//! - [`duration`]: `500ms`, `10s`, `2m`, `1h` on command lines and in text;
//! - [`size`]: byte sizes parsed from and printed for humans;
//! - [`time`]: RFC 3339 timestamps from unix milliseconds, and back;
//! - [`pattern`]: self-checking 4 KiB data blocks (index, generation,
//!   CRC-32C) for writers that verify what they read back;
//! - [`nvme_sysfs`]: the kernel NVMe host's controllers as sysfs shows
//!   them (CSI node plugin, HA node agent).

#![forbid(unsafe_code)]

pub mod duration;
pub mod log;
pub mod nvme_sysfs;
pub mod pattern;
pub mod signal;
pub mod size;
pub mod time;
