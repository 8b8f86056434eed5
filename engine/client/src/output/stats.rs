//! Tables and JSON views of I/O statistics.
//!
//! Tables follow upstream io-engine-client's `stats` listing: one row per
//! entity, columns as wide as their widest value, one space apart, counts
//! right-aligned and exact (bytes, microseconds), so scripts can compute
//! rates from two listings.

use io_engine_api::v1;
use serde::Serialize;

use super::{col, render_table, Align, Column};

/// JSON view of one entity's counters.
#[derive(Debug, Serialize)]
pub struct IoStatsView {
    pub name: String,
    pub uuid: String,
    /// For a replica: its pool's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    pub num_read_ops: u64,
    pub bytes_read: u64,
    pub num_write_ops: u64,
    pub bytes_written: u64,
    pub read_latency_us: u64,
    pub write_latency_us: u64,
    pub tick_us: u64,
}

impl From<&v1::IoStats> for IoStatsView {
    fn from(s: &v1::IoStats) -> Self {
        IoStatsView {
            name: s.name.clone(),
            uuid: s.uuid.clone(),
            pool: None,
            num_read_ops: s.num_read_ops,
            bytes_read: s.bytes_read,
            num_write_ops: s.num_write_ops,
            bytes_written: s.bytes_written,
            read_latency_us: s.read_latency_us,
            write_latency_us: s.write_latency_us,
            tick_us: s.tick_us,
        }
    }
}

impl IoStatsView {
    /// The view of a replica's counters (with its pool).
    pub fn of_replica(r: &v1::ReplicaIoStats) -> Self {
        let mut view = r
            .stats
            .as_ref()
            .map(Self::from)
            .unwrap_or_else(|| Self::from(&v1::IoStats::default()));
        view.pool = Some(r.pool_name.clone());
        view
    }
}

const COUNTER_COLUMNS: [Column; 6] = [
    col("NUM_RD_OPS", 0, Align::Right, " "),
    col("TOTAL_RD", 0, Align::Right, " "),
    col("NUM_WR_OPS", 0, Align::Right, " "),
    col("TOTAL_WR", 0, Align::Right, " "),
    col("RD_LAT_US", 0, Align::Right, " "),
    col("WR_LAT_US", 0, Align::Right, " "),
];

fn counters(s: &v1::IoStats) -> [String; 6] {
    [
        s.num_read_ops.to_string(),
        s.bytes_read.to_string(),
        s.num_write_ops.to_string(),
        s.bytes_written.to_string(),
        s.read_latency_us.to_string(),
        s.write_latency_us.to_string(),
    ]
}

/// The `stats pool` / `stats nexus` table (`empty` when there is no row).
pub fn io_stats_table(stats: &[v1::IoStats], empty: &str) -> String {
    if stats.is_empty() {
        return format!("{empty}\n");
    }
    let mut columns = vec![col("NAME", 0, Align::Left, "")];
    columns.extend(COUNTER_COLUMNS);
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let mut row = vec![s.name.clone()];
            row.extend(counters(s));
            row
        })
        .collect();
    render_table(&columns, &rows)
}

/// The `stats replica` table: the pool, then as [`io_stats_table`].
pub fn replica_io_stats_table(stats: &[v1::ReplicaIoStats]) -> String {
    if stats.is_empty() {
        return "No replicas found\n".to_string();
    }
    let mut columns = vec![
        col("POOL", 0, Align::Left, ""),
        col("NAME", 0, Align::Left, " "),
    ];
    columns.extend(COUNTER_COLUMNS);
    let empty = v1::IoStats::default();
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|r| {
            let s = r.stats.as_ref().unwrap_or(&empty);
            let mut row = vec![r.pool_name.clone(), s.name.clone()];
            row.extend(counters(s));
            row
        })
        .collect();
    render_table(&columns, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> v1::IoStats {
        v1::IoStats {
            name: name.into(),
            uuid: "u".into(),
            num_read_ops: 3,
            bytes_read: 12288,
            num_write_ops: 1024,
            bytes_written: 4194304,
            read_latency_us: 17,
            write_latency_us: 90210,
            tick_us: 5,
        }
    }

    #[test]
    fn pool_table_is_aligned_and_exact() {
        let table = io_stats_table(&[sample("pool-1"), sample("p2")], "No pools found");
        assert_eq!(
            table,
            "NAME   NUM_RD_OPS TOTAL_RD NUM_WR_OPS TOTAL_WR RD_LAT_US WR_LAT_US\n\
             pool-1          3    12288       1024  4194304        17     90210\n\
             p2              3    12288       1024  4194304        17     90210\n"
        );
        assert_eq!(io_stats_table(&[], "No pools found"), "No pools found\n");
    }

    #[test]
    fn replica_table_names_the_pool() {
        let table = replica_io_stats_table(&[v1::ReplicaIoStats {
            stats: Some(sample("r1")),
            pool_name: "pool-1".into(),
            pool_uuid: "pu".into(),
        }]);
        let mut lines = table.lines();
        assert_eq!(
            lines.next(),
            Some("POOL   NAME NUM_RD_OPS TOTAL_RD NUM_WR_OPS TOTAL_WR RD_LAT_US WR_LAT_US")
        );
        assert_eq!(
            lines.next(),
            Some("pool-1 r1            3    12288       1024  4194304        17     90210")
        );
        let json = serde_json::to_value(IoStatsView::of_replica(&v1::ReplicaIoStats {
            stats: Some(sample("r1")),
            pool_name: "pool-1".into(),
            pool_uuid: "pu".into(),
        }))
        .expect("json");
        assert_eq!(json["pool"], "pool-1");
        assert_eq!(json["bytes_written"], 4194304);
    }
}
