//! I/O statistics (`GET /volumes/{id}/stats`, `GET /pools/{id}/stats`,
//! `GET /nodes/{node}/pools/{pool}/stats`), as the engines count them.
//!
//! Counters are cumulative since the engine process created or imported
//! the target, replica or pool (a restarted engine starts again at zero,
//! and a volume republished elsewhere gets a new target with new counters):
//! consumers compute rates from two samples, `Δcounter / Δtick_us`, and mean
//! latency as `Δread_latency_us / Δnum_read_ops`. Only successful reads and
//! writes are counted (not flush, write-zeroes or unmap).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Cumulative read and write counters of one target, replica or pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct IoStats {
    pub num_read_ops: u64,
    pub bytes_read: u64,
    pub num_write_ops: u64,
    pub bytes_written: u64,
    /// Sum of the latencies of the counted reads, microseconds.
    pub read_latency_us: u64,
    /// Sum of the latencies of the counted writes, microseconds.
    pub write_latency_us: u64,
    /// When the engine took the sample: microseconds on its monotonic
    /// clock (only differences between samples of one engine mean
    /// anything).
    pub tick_us: u64,
}

/// The counters of one replica of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaIoStats {
    pub uuid: String,
    pub node: String,
    pub pool: String,
    /// `None` when the replica's node could not be asked (offline).
    pub stats: Option<IoStats>,
}

/// `GET /volumes/{id}/stats`: the application's reads and writes, counted
/// by the volume's target (its nexus), and what reached each replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeIoStats {
    pub volume_uuid: String,
    /// The node of the target.
    pub node: String,
    /// The target's nexus (a new one, with counters from zero, each time
    /// the volume is published).
    pub nexus_uuid: String,
    pub stats: IoStats,
    pub replicas: Vec<ReplicaIoStats>,
}

/// `GET /pools/{id}/stats`: every read and write of the pool's replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolIoStats {
    pub id: String,
    pub node: String,
    pub stats: IoStats,
}
