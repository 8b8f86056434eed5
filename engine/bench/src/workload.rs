//! The fixed set of workloads `io-bench` knows.
//!
//! Each workload is an access pattern (random or sequential), a direction
//! (read or write), an I/O size and a queue depth, named like fio jobs:
//! `randread-4k-qd32`. The set is closed so that results from different
//! machines and revisions stay comparable.
//!
//! Threading model: plain values.

use std::{fmt, str::FromStr};

use serde::Serialize;

/// One benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Workload {
    RandRead4kQd1,
    RandRead4kQd32,
    RandWrite4kQd1,
    RandWrite4kQd32,
    SeqRead128kQd8,
    SeqWrite128kQd8,
}

/// Where the next offset of a worker comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Uniformly random, aligned to the I/O size.
    Random,
    /// One sequential stream shared by all workers (like fio's single job
    /// with `iodepth=N`), wrapping at the end of the region.
    Sequential,
}

impl Workload {
    /// Every workload, in the order `all` runs them.
    pub const ALL: [Workload; 6] = [
        Workload::RandRead4kQd1,
        Workload::RandRead4kQd32,
        Workload::RandWrite4kQd1,
        Workload::RandWrite4kQd32,
        Workload::SeqRead128kQd8,
        Workload::SeqWrite128kQd8,
    ];

    /// The workload's name (`randread-4k-qd32`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::RandRead4kQd1 => "randread-4k-qd1",
            Workload::RandRead4kQd32 => "randread-4k-qd32",
            Workload::RandWrite4kQd1 => "randwrite-4k-qd1",
            Workload::RandWrite4kQd32 => "randwrite-4k-qd32",
            Workload::SeqRead128kQd8 => "seqread-128k-qd8",
            Workload::SeqWrite128kQd8 => "seqwrite-128k-qd8",
        }
    }

    /// Bytes per I/O.
    pub fn io_size_bytes(self) -> usize {
        match self {
            Workload::RandRead4kQd1
            | Workload::RandRead4kQd32
            | Workload::RandWrite4kQd1
            | Workload::RandWrite4kQd32 => 4 << 10,
            Workload::SeqRead128kQd8 | Workload::SeqWrite128kQd8 => 128 << 10,
        }
    }

    /// Number of I/Os kept in flight.
    pub fn queue_depth(self) -> usize {
        match self {
            Workload::RandRead4kQd1 | Workload::RandWrite4kQd1 => 1,
            Workload::RandRead4kQd32 | Workload::RandWrite4kQd32 => 32,
            Workload::SeqRead128kQd8 | Workload::SeqWrite128kQd8 => 8,
        }
    }

    /// Whether the workload writes.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Workload::RandWrite4kQd1 | Workload::RandWrite4kQd32 | Workload::SeqWrite128kQd8
        )
    }

    /// Access pattern.
    pub fn pattern(self) -> Pattern {
        match self {
            Workload::SeqRead128kQd8 | Workload::SeqWrite128kQd8 => Pattern::Sequential,
            _ => Pattern::Random,
        }
    }

    /// The replica/raw IOPS ratio the project aims for on this workload
    /// (97 % for reads, 95 % for writes), or `None` when the workload is
    /// informational (queue depth 1).
    pub fn target_ratio(self) -> Option<f64> {
        match self {
            Workload::RandRead4kQd32 | Workload::SeqRead128kQd8 => Some(0.97),
            Workload::RandWrite4kQd32 | Workload::SeqWrite128kQd8 => Some(0.95),
            Workload::RandRead4kQd1 | Workload::RandWrite4kQd1 => None,
        }
    }

    /// Parses a list of `--workload` values; `all` expands to every
    /// workload. Duplicates are dropped, order is kept.
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Workload>, UnknownWorkload> {
        let mut out: Vec<Workload> = Vec::new();
        for v in values {
            let v = v.as_ref();
            let add: Vec<Workload> = if v == "all" {
                Workload::ALL.to_vec()
            } else {
                vec![v.parse()?]
            };
            for w in add {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Workload> for String {
    fn from(w: Workload) -> String {
        w.name().to_string()
    }
}

/// A `--workload` value that names no workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload '{0}' (expected all, {list})", list = Workload::ALL.map(Workload::name).join(", "))]
pub struct UnknownWorkload(pub String);

impl FromStr for Workload {
    type Err = UnknownWorkload;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| UnknownWorkload(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        assert!("randread".parse::<Workload>().is_err());
    }

    #[test]
    fn all_expands_and_dedups() {
        let l = Workload::parse_list(&["seqread-128k-qd8", "all"]).unwrap();
        assert_eq!(l.len(), 6);
        assert_eq!(l[0], Workload::SeqRead128kQd8);
        let err = Workload::parse_list(&["nope"]).unwrap_err();
        assert!(err.to_string().contains("randread-4k-qd1"));
    }

    #[test]
    fn shapes() {
        assert_eq!(Workload::RandRead4kQd32.queue_depth(), 32);
        assert_eq!(Workload::SeqWrite128kQd8.io_size_bytes(), 131072);
        assert!(Workload::SeqWrite128kQd8.is_write());
        assert_eq!(Workload::SeqRead128kQd8.pattern(), Pattern::Sequential);
        assert_eq!(Workload::RandRead4kQd1.target_ratio(), None);
    }
}
