//! The metric families of the exporter and the rendering of one
//! [`Snapshot`] of the engine as Prometheus text (format 0.0.4).
//!
//! Names and labels are upstream Mayastor's exporter's, so dashboards and
//! alerts written for it carry over:
//!
//! | family | labels |
//! |---|---|
//! | `diskpool_total_size_bytes`, `diskpool_used_size_bytes`, `diskpool_committed_size_bytes`, `diskpool_status` | `node`, `name` |
//! | `diskpool_{bytes_read,num_read_ops,bytes_written,num_write_ops,read_latency_us,write_latency_us}` | `node`, `name` |
//! | `volume_{...same six...}` | `pv_name` |
//! | `replica_{...same six...}` | `node`, `name`, `pool_id`, `pv_name` |
//! | `io_engine_up` | `node` |
//!
//! Every family is a gauge, as upstream's: the I/O figures are cumulative
//! (they only grow, and start again from zero when the engine restarts), so
//! `rate()` and `increase()` apply; a Prometheus counter would need the
//! `_total` suffix and so other names. Each page is rendered from a fresh
//! registry: a pool or volume that is gone has no series any more.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// `diskpool_status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStatus {
    Unknown = 0,
    Online = 1,
    Degraded = 2,
    Faulted = 3,
}

/// Capacity and state of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFigures {
    pub name: String,
    pub status: PoolStatus,
    /// Bytes available for replica data.
    pub total_size_bytes: u64,
    /// Bytes of clusters allocated to replicas.
    pub used_size_bytes: u64,
    /// Sum of the sizes of the pool's replicas (thin ones in full).
    pub committed_size_bytes: u64,
}

/// Cumulative I/O statistics of a pool, volume target or replica since the
/// engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct IoCounters {
    pub bytes_read: u64,
    pub num_read_ops: u64,
    pub bytes_written: u64,
    pub num_write_ops: u64,
    /// Sum of the latencies of every read, microseconds.
    pub read_latency_us: u64,
    /// Sum of the latencies of every write, microseconds.
    pub write_latency_us: u64,
}

/// I/O statistics of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaIo {
    /// Replica uuid.
    pub name: String,
    /// Uuid of its pool.
    pub pool_id: String,
    /// Volume the replica belongs to, when the engine knows it ("" else).
    pub pv_name: String,
    pub io: IoCounters,
}

/// What the engine answered to one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub pools: Vec<PoolFigures>,
    /// Pool name and its I/O statistics.
    pub pool_io: Vec<(String, IoCounters)>,
    /// Volume uuid (`pv_name`) and the I/O statistics of its target here.
    pub volume_io: Vec<(String, IoCounters)>,
    pub replica_io: Vec<ReplicaIo>,
}

/// Family name prefixes of the three kinds of I/O statistics.
pub const POOL_PREFIX: &str = "diskpool";
pub const VOLUME_PREFIX: &str = "volume";
pub const REPLICA_PREFIX: &str = "replica";

/// One I/O statistic: name suffix, help text, value.
type IoField = (&'static str, &'static str, fn(&IoCounters) -> u64);

/// The six I/O statistics.
const IO_FIELDS: [IoField; 6] = [
    ("bytes_read", "Total bytes read", |c| c.bytes_read),
    ("num_read_ops", "Number of read operations", |c| {
        c.num_read_ops
    }),
    ("bytes_written", "Total bytes written", |c| c.bytes_written),
    ("num_write_ops", "Number of write operations", |c| {
        c.num_write_ops
    }),
    (
        "read_latency_us",
        "Sum of the latencies of all reads, in microseconds",
        |c| c.read_latency_us,
    ),
    (
        "write_latency_us",
        "Sum of the latencies of all writes, in microseconds",
        |c| c.write_latency_us,
    ),
];

/// Every family name the exporter can serve (for documentation and tests).
pub fn family_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "diskpool_total_size_bytes",
        "diskpool_used_size_bytes",
        "diskpool_committed_size_bytes",
        "diskpool_status",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for prefix in [POOL_PREFIX, VOLUME_PREFIX, REPLICA_PREFIX] {
        names.extend(IO_FIELDS.iter().map(|(f, _, _)| format!("{prefix}_{f}")));
    }
    names.push("io_engine_up".to_owned());
    names
}

/// Content type of the page.
pub fn content_type() -> String {
    TextEncoder::new().format_type().to_owned()
}

/// A registry being filled for one page.
struct Page {
    registry: Registry,
}

impl Page {
    fn family(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let family = IntGaugeVec::new(Opts::new(name, help), labels)
            .expect("invariant: family names and labels are valid constants");
        self.registry
            .register(Box::new(family.clone()))
            .expect("invariant: each family is registered once per page");
        family
    }

    fn io_families(&self, prefix: &str, what: &str, labels: &[&str]) -> Vec<IntGaugeVec> {
        IO_FIELDS
            .iter()
            .map(|(field, help, _)| {
                self.family(
                    &format!("{prefix}_{field}"),
                    &format!("{help} {what}"),
                    labels,
                )
            })
            .collect()
    }

    fn render(self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("invariant: the text encoder writes gauges to memory");
        String::from_utf8(out).expect("invariant: the text encoder writes UTF-8")
    }
}

fn set_io(families: &[IntGaugeVec], labels: &[&str], io: &IoCounters) {
    for (family, (_, _, value)) in families.iter().zip(IO_FIELDS.iter()) {
        family.with_label_values(labels).set(clamp(value(io)));
    }
}

/// Gauges are i64: a figure beyond i64::MAX (never in practice) is capped
/// rather than wrapped to a negative number.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The page for node `node`: the snapshot's families when the engine
/// answered (`Some`), only `io_engine_up 0` when it did not (`None`).
pub fn render(node: &str, snapshot: Option<&Snapshot>) -> String {
    let page = Page {
        registry: Registry::new(),
    };
    let up = page.family(
        "io_engine_up",
        "Whether the io-engine answered this scrape (1) or not (0)",
        &["node"],
    );
    up.with_label_values(&[node])
        .set(i64::from(snapshot.is_some()));
    let Some(snapshot) = snapshot else {
        return page.render();
    };

    let pool_labels = ["node", "name"];
    if !snapshot.pools.is_empty() {
        let total = page.family(
            "diskpool_total_size_bytes",
            "Total size of the pool in bytes",
            &pool_labels,
        );
        let used = page.family(
            "diskpool_used_size_bytes",
            "Used size of the pool in bytes",
            &pool_labels,
        );
        let committed = page.family(
            "diskpool_committed_size_bytes",
            "Committed size of the pool in bytes (sum of its replicas' sizes)",
            &pool_labels,
        );
        let status = page.family(
            "diskpool_status",
            "Status of the pool (0 Unknown, 1 Online, 2 Degraded, 3 Faulted)",
            &pool_labels,
        );
        for p in &snapshot.pools {
            let labels = [node, p.name.as_str()];
            total
                .with_label_values(&labels)
                .set(clamp(p.total_size_bytes));
            used.with_label_values(&labels)
                .set(clamp(p.used_size_bytes));
            committed
                .with_label_values(&labels)
                .set(clamp(p.committed_size_bytes));
            status.with_label_values(&labels).set(p.status as i64);
        }
    }
    if !snapshot.pool_io.is_empty() {
        let families = page.io_families(POOL_PREFIX, "on the pool", &pool_labels);
        for (name, io) in &snapshot.pool_io {
            set_io(&families, &[node, name], io);
        }
    }
    if !snapshot.volume_io.is_empty() {
        let families = page.io_families(VOLUME_PREFIX, "through the volume target", &["pv_name"]);
        for (pv_name, io) in &snapshot.volume_io {
            set_io(&families, &[pv_name], io);
        }
    }
    if !snapshot.replica_io.is_empty() {
        let families = page.io_families(
            REPLICA_PREFIX,
            "on the replica",
            &["node", "name", "pool_id", "pv_name"],
        );
        for r in &snapshot.replica_io {
            set_io(&families, &[node, &r.name, &r.pool_id, &r.pv_name], &r.io);
        }
    }
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            pools: vec![PoolFigures {
                name: "pool-1".into(),
                status: PoolStatus::Degraded,
                total_size_bytes: 532_676_608,
                used_size_bytes: 71_303_168,
                committed_size_bytes: 67_108_864,
            }],
            pool_io: vec![(
                "pool-1".into(),
                IoCounters {
                    bytes_written: 4096,
                    num_write_ops: 1,
                    ..Default::default()
                },
            )],
            volume_io: vec![(
                "6d617961-7374-4f72-8c6f-63616c64656d".into(),
                IoCounters {
                    bytes_read: 8192,
                    num_read_ops: 2,
                    bytes_written: 12_884_901_888,
                    num_write_ops: 3,
                    read_latency_us: 40,
                    write_latency_us: 90,
                },
            )],
            replica_io: vec![ReplicaIo {
                name: "r-1".into(),
                pool_id: "p-uuid".into(),
                pv_name: String::new(),
                io: IoCounters::default(),
            }],
        }
    }

    #[test]
    fn page_has_every_family_with_exact_integers() {
        let text = render("node-1", Some(&sample()));
        for name in family_names() {
            assert!(
                text.contains(&format!("# TYPE {name} gauge\n")),
                "{name} missing:\n{text}"
            );
        }
        for line in [
            "io_engine_up{node=\"node-1\"} 1",
            "diskpool_total_size_bytes{name=\"pool-1\",node=\"node-1\"} 532676608",
            "diskpool_used_size_bytes{name=\"pool-1\",node=\"node-1\"} 71303168",
            "diskpool_committed_size_bytes{name=\"pool-1\",node=\"node-1\"} 67108864",
            "diskpool_status{name=\"pool-1\",node=\"node-1\"} 2",
            "diskpool_num_write_ops{name=\"pool-1\",node=\"node-1\"} 1",
            "volume_bytes_written{pv_name=\"6d617961-7374-4f72-8c6f-63616c64656d\"} 12884901888",
            "volume_write_latency_us{pv_name=\"6d617961-7374-4f72-8c6f-63616c64656d\"} 90",
            "replica_bytes_read{name=\"r-1\",node=\"node-1\",pool_id=\"p-uuid\",pv_name=\"\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn engine_down_page_has_no_figures() {
        let text = render("node-2", None);
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["io_engine_up{node=\"node-2\"} 0"]
        );
    }

    #[test]
    fn empty_engine_has_only_up() {
        let text = render("node-3", Some(&Snapshot::default()));
        assert!(text.contains("io_engine_up{node=\"node-3\"} 1"));
        assert!(!text.contains("diskpool_"));
        assert_eq!(clamp(u64::MAX), i64::MAX);
    }
}
