//! Tables and JSON views of API objects.
//!
//! Tables follow upstream mayastor-client's layout (`NAME STATE CAPACITY
//! USED DISKS`, `POOL NAME THIN SIZE`): fixed minimum column widths, widened
//! for every row when one value is wider. The nexus and rebuild tables
//! follow the newer upstream io-engine-client (no minimum widths, one space
//! between columns). JSON views use snake_case fields,
//! sizes as integers in bytes and lowercase enum names.

use io_engine_api::v1;
use serde::Serialize;

use crate::units::human_size;

mod nexus;
mod rebuild;
mod stats;

pub use nexus::{
    child_reason_name, child_state_name, child_table, nexus_state_name, nexus_table,
    reservation_name, ChildView, NexusView,
};
pub use rebuild::{
    history_table, progress_table, rebuild_state_name, stats_table, RebuildHistoryView,
    RebuildStatsView,
};
pub use stats::{io_stats_table, replica_io_stats_table, IoStatsView};

/// Alignment of a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub min_width: usize,
    pub align: Align,
    /// Separator printed before this column (ignored for the first one).
    pub sep: &'static str,
}

const fn col(header: &'static str, min_width: usize, align: Align, sep: &'static str) -> Column {
    Column {
        header,
        min_width,
        align,
        sep,
    }
}

/// Renders a header line and one line per row; every line ends with `\n`
/// and carries no trailing spaces.
pub fn render_table(columns: &[Column], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|v| v.chars().count())
                .chain([c.header.len(), c.min_width])
                .max()
                .unwrap_or(c.min_width)
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (column, width)) in columns.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str(column.sep);
            }
            let value = row.get(i).map(String::as_str).unwrap_or("");
            let cell = match column.align {
                Align::Left => format!("{value:<width$}"),
                Align::Right => format!("{value:>width$}"),
            };
            line.push_str(&cell);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Lowercase name of a pool state.
pub fn pool_state_name(state: i32) -> &'static str {
    match v1::PoolState::try_from(state) {
        Ok(v1::PoolState::PoolOnline) => "online",
        Ok(v1::PoolState::PoolDegraded) => "degraded",
        Ok(v1::PoolState::PoolFaulted) => "faulted",
        Ok(v1::PoolState::PoolUnknown) | Err(_) => "unknown",
    }
}

/// Lowercase name of a share protocol.
pub fn share_name(share: i32) -> &'static str {
    match v1::ShareProtocol::try_from(share) {
        Ok(v1::ShareProtocol::None) => "none",
        Ok(v1::ShareProtocol::Nvmf) => "nvmf",
        Err(_) => "unknown",
    }
}

const POOL_COLUMNS: [Column; 5] = [
    col("NAME", 20, Align::Left, ""),
    col("STATE", 12, Align::Left, " "),
    col("CAPACITY", 8, Align::Right, " "),
    col("USED", 12, Align::Right, " "),
    col("DISKS", 0, Align::Left, "   "),
];

/// The `pool list` table.
pub fn pool_table(pools: &[v1::Pool]) -> String {
    if pools.is_empty() {
        return "No pools have been created\n".to_string();
    }
    let rows: Vec<Vec<String>> = pools
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                pool_state_name(p.state).to_string(),
                human_size(p.capacity),
                human_size(p.used),
                p.disks.join(","),
            ]
        })
        .collect();
    render_table(&POOL_COLUMNS, &rows)
}

const REPLICA_COLUMNS: [Column; 4] = [
    col("POOL", 20, Align::Left, ""),
    col("NAME", 20, Align::Left, " "),
    col("THIN", 5, Align::Left, " "),
    col("SIZE", 13, Align::Right, " "),
];

const REPLICA_WIDE_COLUMNS: [Column; 6] = [
    REPLICA_COLUMNS[0],
    REPLICA_COLUMNS[1],
    REPLICA_COLUMNS[2],
    REPLICA_COLUMNS[3],
    col("SHARE", 5, Align::Left, " "),
    col("URI", 0, Align::Left, " "),
];

/// The `replica list` table.
pub fn replica_table(replicas: &[v1::Replica]) -> String {
    replica_table_with(&REPLICA_COLUMNS, replicas)
}

/// The `replica list -o wide` table: the default one plus SHARE and URI.
pub fn replica_table_wide(replicas: &[v1::Replica]) -> String {
    replica_table_with(&REPLICA_WIDE_COLUMNS, replicas)
}

fn replica_table_with(columns: &[Column], replicas: &[v1::Replica]) -> String {
    if replicas.is_empty() {
        return "No replicas have been created\n".to_string();
    }
    let rows: Vec<Vec<String>> = replicas
        .iter()
        .map(|r| {
            let mut row = vec![
                r.pool_name.clone(),
                r.name.clone(),
                r.thin.to_string(),
                human_size(r.size),
                share_name(r.share).to_string(),
                r.uri.clone(),
            ];
            row.truncate(columns.len());
            row
        })
        .collect();
    render_table(columns, &rows)
}

const HOST_COLUMNS: [Column; 3] = [
    col("VERSION", 10, Align::Left, ""),
    col("NODE", 20, Align::Left, " "),
    col("GRPC ENDPOINT", 0, Align::Left, " "),
];

const BLOCK_DEVICE_COLUMNS: [Column; 5] = [
    col("DEVNAME", 12, Align::Left, ""),
    col("TYPE", 10, Align::Left, " "),
    col("SIZE", 10, Align::Right, " "),
    col("AVAILABLE", 9, Align::Left, "   "),
    col("MODEL", 0, Align::Left, " "),
];

/// The `host info` tables.
pub fn host_table(host: &v1::HostInfo) -> String {
    let mut out = render_table(
        &HOST_COLUMNS,
        &[vec![
            host.version.clone(),
            host.node_name.clone(),
            host.grpc_endpoint.clone(),
        ]],
    );
    out.push('\n');
    if host.block_devices.is_empty() {
        out.push_str("No block devices found\n");
        return out;
    }
    let rows: Vec<Vec<String>> = host
        .block_devices
        .iter()
        .map(|d| {
            vec![
                d.devname.clone(),
                d.devtype.clone(),
                human_size(d.size_bytes),
                d.available.to_string(),
                d.model.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&render_table(&BLOCK_DEVICE_COLUMNS, &rows));
    out
}

/// The `pool check` summary line(s).
pub fn check_text(report: &v1::CheckPoolResponse) -> String {
    if report.problems.is_empty() {
        return format!(
            "pool {} is clean: {} clusters, {} used, {} replicas, generation {}\n",
            report.pool,
            report.clusters_total,
            report.clusters_used,
            report.replicas,
            report.generation
        );
    }
    let mut out = format!(
        "pool {} has {} problem{}:\n",
        report.pool,
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" }
    );
    for problem in &report.problems {
        out.push_str(&format!("  - {problem}\n"));
    }
    out
}

/// JSON view of a pool.
#[derive(Debug, Serialize)]
pub struct PoolView<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    pub disks: &'a [String],
    pub state: &'static str,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub committed_bytes: u64,
    pub cluster_size_bytes: u64,
    pub replica_count: u64,
}

impl<'a> From<&'a v1::Pool> for PoolView<'a> {
    fn from(p: &'a v1::Pool) -> Self {
        Self {
            name: &p.name,
            uuid: &p.uuid,
            disks: &p.disks,
            state: pool_state_name(p.state),
            capacity_bytes: p.capacity,
            used_bytes: p.used,
            committed_bytes: p.committed,
            cluster_size_bytes: p.cluster_size,
            replica_count: p.replica_count,
        }
    }
}

/// JSON view of a replica.
#[derive(Debug, Serialize)]
pub struct ReplicaView<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    pub pool_name: &'a str,
    pub pool_uuid: &'a str,
    pub size_bytes: u64,
    pub thin: bool,
    pub allocated_bytes: u64,
    pub share: &'static str,
    pub uri: &'a str,
    pub allowed_hosts: &'a [String],
}

impl<'a> From<&'a v1::Replica> for ReplicaView<'a> {
    fn from(r: &'a v1::Replica) -> Self {
        Self {
            name: &r.name,
            uuid: &r.uuid,
            pool_name: &r.pool_name,
            pool_uuid: &r.pool_uuid,
            size_bytes: r.size,
            thin: r.thin,
            allocated_bytes: r.allocated,
            share: share_name(r.share),
            uri: &r.uri,
            allowed_hosts: &r.allowed_hosts,
        }
    }
}

/// JSON view of a pool check report.
#[derive(Debug, Serialize)]
pub struct CheckView<'a> {
    pub pool: &'a str,
    pub clean: bool,
    pub problems: &'a [String],
    pub clusters_total: u64,
    pub clusters_used: u64,
    pub replicas: u64,
    pub generation: u64,
}

impl<'a> From<&'a v1::CheckPoolResponse> for CheckView<'a> {
    fn from(r: &'a v1::CheckPoolResponse) -> Self {
        Self {
            pool: &r.pool,
            clean: r.problems.is_empty(),
            problems: &r.problems,
            clusters_total: r.clusters_total,
            clusters_used: r.clusters_used,
            replicas: r.replicas,
            generation: r.generation,
        }
    }
}

/// JSON view of a block device.
#[derive(Debug, Serialize)]
pub struct BlockDeviceView<'a> {
    pub devname: &'a str,
    pub devtype: &'a str,
    pub size_bytes: u64,
    pub model: Option<&'a str>,
    pub available: bool,
}

/// JSON view of the host info.
#[derive(Debug, Serialize)]
pub struct HostView<'a> {
    pub version: &'a str,
    pub node_name: &'a str,
    pub grpc_endpoint: &'a str,
    pub block_devices: Vec<BlockDeviceView<'a>>,
}

impl<'a> From<&'a v1::HostInfo> for HostView<'a> {
    fn from(h: &'a v1::HostInfo) -> Self {
        Self {
            version: &h.version,
            node_name: &h.node_name,
            grpc_endpoint: &h.grpc_endpoint,
            block_devices: h
                .block_devices
                .iter()
                .map(|d| BlockDeviceView {
                    devname: &d.devname,
                    devtype: &d.devtype,
                    size_bytes: d.size_bytes,
                    model: d.model.as_deref(),
                    available: d.available,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn pool(name: &str, disk: &str) -> v1::Pool {
        v1::Pool {
            name: name.into(),
            uuid: "u".into(),
            disks: vec![disk.into()],
            state: v1::PoolState::PoolOnline.into(),
            capacity: 96 * MIB,
            used: 0,
            committed: 0,
            cluster_size: 4 * MIB,
            replica_count: 0,
        }
    }

    fn replica(pool: &str, name: &str, thin: bool, size: u64) -> v1::Replica {
        v1::Replica {
            name: name.into(),
            pool_name: pool.into(),
            thin,
            size,
            ..Default::default()
        }
    }

    #[test]
    fn pool_table_matches_upstream() {
        assert_eq!(
            pool_table(&[pool("tpool", "aio:///tmp/disk.img")]),
            "NAME                 STATE        CAPACITY         USED   DISKS\n\
             tpool                online       96.0 MiB          0 B   aio:///tmp/disk.img\n"
        );
        assert_eq!(pool_table(&[]), "No pools have been created\n");
    }

    #[test]
    fn replica_table_matches_upstream() {
        let replicas = [
            replica("tpool", "replica1", false, 10 * MIB),
            replica("tpool", "replica2", true, 1000 * MIB),
        ];
        assert_eq!(
            replica_table(&replicas),
            "POOL                 NAME                 THIN           SIZE\n\
             tpool                replica1             false      10.0 MiB\n\
             tpool                replica2             true        1.0 GiB\n"
        );
        assert_eq!(replica_table(&[]), "No replicas have been created\n");
    }

    #[test]
    fn wide_replica_table_adds_share_and_uri() {
        let u = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
        let shared = v1::Replica {
            share: v1::ShareProtocol::Nvmf.into(),
            uri: format!("nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:{u}?uuid={u}"),
            ..replica("tpool", "replica1", false, 10 * MIB)
        };
        let local = v1::Replica {
            uri: format!("bdev:///{u}?uuid={u}"),
            ..replica("tpool", "replica2", true, 1000 * MIB)
        };
        assert_eq!(
            replica_table_wide(&[shared.clone(), local.clone()]),
            format!(
                "POOL                 NAME                 THIN           SIZE SHARE URI\n\
                 tpool                replica1             false      10.0 MiB nvmf  nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:{u}?uuid={u}\n\
                 tpool                replica2             true        1.0 GiB none  bdev:///{u}?uuid={u}\n"
            )
        );
        // The default table is unchanged by the share.
        assert_eq!(
            replica_table(&[shared, local]),
            "POOL                 NAME                 THIN           SIZE\n\
             tpool                replica1             false      10.0 MiB\n\
             tpool                replica2             true        1.0 GiB\n"
        );
        assert_eq!(replica_table_wide(&[]), "No replicas have been created\n");
    }

    #[test]
    fn wide_values_widen_the_column_for_every_row() {
        let long = "a-very-long-pool-name-indeed";
        let table = pool_table(&[pool(long, "aio:///d1"), pool("p", "aio:///d2")]);
        let lines: Vec<&str> = table.lines().collect();
        let state_at = lines[0].find("STATE").unwrap();
        assert_eq!(state_at, long.len() + 1);
        assert_eq!(lines[1].find("online"), Some(state_at));
        assert_eq!(lines[2].find("online"), Some(state_at));
        let disks_at = lines[0].find("DISKS").unwrap();
        assert_eq!(lines[2].find("aio:///d2"), Some(disks_at));

        let table = replica_table(&[replica("p", "r", false, u64::MAX)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{table}");
        assert!(lines[1].ends_with("16.0 EiB"));
    }

    #[test]
    fn check_texts() {
        let mut report = v1::CheckPoolResponse {
            pool: "tpool".into(),
            problems: vec![],
            clusters_total: 24,
            clusters_used: 3,
            replicas: 1,
            generation: 7,
        };
        assert_eq!(
            check_text(&report),
            "pool tpool is clean: 24 clusters, 3 used, 1 replicas, generation 7\n"
        );
        report.problems = vec!["cluster 3 is used twice".into()];
        assert_eq!(
            check_text(&report),
            "pool tpool has 1 problem:\n  - cluster 3 is used twice\n"
        );
    }

    #[test]
    fn json_views_use_bytes_and_lowercase() {
        let p = pool("tpool", "aio:///d");
        let json = serde_json::to_value(PoolView::from(&p)).unwrap();
        assert_eq!(json["state"], "online");
        assert_eq!(json["capacity_bytes"], 96 * MIB);
        let r = v1::Replica {
            uuid: "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f".into(),
            ..replica("tpool", "r1", true, MIB)
        };
        let json = serde_json::to_value(ReplicaView::from(&r)).unwrap();
        assert_eq!(json["uuid"], "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f");
        assert_eq!(json["name"], "r1");
        assert_eq!(json["pool_name"], "tpool");
        assert_eq!(json["share"], "none");
        assert_eq!(json["size_bytes"], MIB);
        assert_eq!(json["thin"], true);
    }

    #[test]
    fn host_tables() {
        let host = v1::HostInfo {
            version: "0.1.0".into(),
            node_name: "node-1".into(),
            grpc_endpoint: "127.0.0.1:10124".into(),
            block_devices: vec![v1::BlockDevice {
                devname: "sda".into(),
                devtype: "disk".into(),
                size_bytes: 1 << 30,
                model: Some("QEMU HARDDISK".into()),
                available: true,
            }],
        };
        assert_eq!(
            host_table(&host),
            "VERSION    NODE                 GRPC ENDPOINT\n\
             0.1.0      node-1               127.0.0.1:10124\n\
             \n\
             DEVNAME      TYPE             SIZE   AVAILABLE MODEL\n\
             sda          disk          1.0 GiB   true      QEMU HARDDISK\n"
        );
    }
}
