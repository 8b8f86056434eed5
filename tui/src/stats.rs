//! Live I/O rates from the engines' cumulative counters: two samples of
//! one target or pool give its IOPS, throughput and mean latency over the
//! time between them (the engine's own clock, `tick_us`).

use std::collections::BTreeMap;

use openapi::models::IoStats;

use crate::format;
use crate::snapshot::Snapshot;

/// Reads and writes per second, bytes per second and mean latency over
/// one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub read_iops: f64,
    pub write_iops: f64,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    /// Mean latency of the interval's reads, µs (`None` without reads).
    pub read_latency_us: Option<f64>,
    /// Mean latency of the interval's writes, µs (`None` without writes).
    pub write_latency_us: Option<f64>,
}

impl Rates {
    /// The rates from `before` to `after`, or `None` when the two samples
    /// do not make an interval: no time passed, or a counter went back
    /// (the engine restarted and counts from zero again).
    pub fn between(before: &IoStats, after: &IoStats) -> Option<Rates> {
        let dt = after.tick_us.checked_sub(before.tick_us)?;
        if dt == 0 {
            return None;
        }
        let d = |a: u64, b: u64| a.checked_sub(b);
        let reads = d(after.num_read_ops, before.num_read_ops)?;
        let writes = d(after.num_write_ops, before.num_write_ops)?;
        let read_bytes = d(after.bytes_read, before.bytes_read)?;
        let written = d(after.bytes_written, before.bytes_written)?;
        let read_lat = d(after.read_latency_us, before.read_latency_us)?;
        let write_lat = d(after.write_latency_us, before.write_latency_us)?;
        let secs = dt as f64 / 1e6;
        let mean = |total: u64, ops: u64| (ops > 0).then(|| total as f64 / ops as f64);
        Some(Rates {
            read_iops: reads as f64 / secs,
            write_iops: writes as f64 / secs,
            read_bytes_per_sec: read_bytes as f64 / secs,
            write_bytes_per_sec: written as f64 / secs,
            read_latency_us: mean(read_lat, reads),
            write_latency_us: mean(write_lat, writes),
        })
    }

    /// Reads and writes per second together.
    pub fn iops(&self) -> f64 {
        self.read_iops + self.write_iops
    }

    /// One line: `r 1.2k/s 4.8 MiB/s 180µs  w 3.4k/s 13.3 MiB/s 420µs`.
    pub fn line(&self) -> String {
        format!(
            "r {}/s {} {}  w {}/s {} {}",
            format::count(self.read_iops),
            format::rate(self.read_bytes_per_sec),
            latency(self.read_latency_us),
            format::count(self.write_iops),
            format::rate(self.write_bytes_per_sec),
            latency(self.write_latency_us),
        )
    }
}

fn latency(us: Option<f64>) -> String {
    match us {
        None => "-".to_string(),
        Some(us) if us < 1000.0 => format!("{us:.0}µs"),
        Some(us) => format!("{:.1}ms", us / 1000.0),
    }
}

/// The rates of every volume and pool between two polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRates {
    /// By volume uuid; only volumes whose target stayed the same.
    pub volumes: BTreeMap<String, Rates>,
    /// By pool id.
    pub pools: BTreeMap<String, Rates>,
}

impl LiveRates {
    /// The rates from the `before` poll to the `after` one.
    pub fn between(before: &Snapshot, after: &Snapshot) -> LiveRates {
        let volumes = after
            .volume_stats
            .iter()
            .filter_map(|(uuid, now)| {
                let then = before.volume_stats.get(uuid)?;
                // A new target counts from zero: no interval.
                if then.nexus_uuid != now.nexus_uuid || then.node != now.node {
                    return None;
                }
                Some((uuid.clone(), Rates::between(&then.stats, &now.stats)?))
            })
            .collect();
        let pools = after
            .pool_stats
            .iter()
            .filter_map(|(id, now)| {
                let then = before.pool_stats.get(id)?;
                Some((id.clone(), Rates::between(then, now)?))
            })
            .collect();
        LiveRates { volumes, pools }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tick_s: u64, reads: u64, writes: u64, lat: u64) -> IoStats {
        IoStats {
            num_read_ops: reads,
            bytes_read: reads * 4096,
            num_write_ops: writes,
            bytes_written: writes * 4096,
            read_latency_us: reads * lat,
            write_latency_us: writes * lat * 2,
            tick_us: tick_s * 1_000_000,
        }
    }

    #[test]
    fn rates_over_an_interval() {
        let r = Rates::between(&sample(10, 1000, 500, 100), &sample(12, 3000, 1500, 100)).unwrap();
        assert_eq!(r.read_iops, 1000.0);
        assert_eq!(r.write_iops, 500.0);
        assert_eq!(r.read_bytes_per_sec, 1000.0 * 4096.0);
        assert_eq!(r.write_bytes_per_sec, 500.0 * 4096.0);
        assert_eq!(r.read_latency_us, Some(100.0));
        assert_eq!(r.write_latency_us, Some(200.0));
        assert_eq!(r.iops(), 1500.0);
        assert_eq!(
            r.line(),
            "r 1.0k/s 3.9 MiB/s 100µs  w 500/s 2.0 MiB/s 200µs"
        );
    }

    #[test]
    fn no_rates_across_a_restart_or_without_time() {
        let later = sample(5, 10, 10, 50);
        assert_eq!(Rates::between(&sample(10, 1000, 500, 100), &later), None);
        assert_eq!(Rates::between(&sample(5, 1, 1, 1), &later), None);
        let idle = Rates::between(&sample(1, 10, 10, 50), &sample(2, 10, 10, 50)).unwrap();
        assert_eq!(idle.iops(), 0.0);
        assert_eq!(idle.read_latency_us, None);
        assert_eq!(idle.line(), "r 0/s 0 B/s -  w 0/s 0 B/s -");
    }
}
