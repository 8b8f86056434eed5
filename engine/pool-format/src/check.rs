//! Semantic checks of decoded metadata: what `pool check` reports.
//!
//! The owner table gives every physical cluster at most one owner by
//! construction; "a cluster owned twice" therefore shows up as two physical
//! clusters claiming the same (replica, logical cluster) pair.

use std::collections::{HashMap, HashSet};

use crate::meta::PoolMeta;

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A cluster owned by a replica slot that does not exist.
    LeakedCluster { cluster: u32, slot: u32 },
    /// Two physical clusters claim the same logical cluster of a replica.
    OwnedTwice {
        replica: String,
        logical: u32,
        clusters: (u32, u32),
    },
    /// A cluster claims a logical index beyond the replica's size.
    BeyondEnd {
        replica: String,
        cluster: u32,
        logical: u32,
    },
    /// A thick replica with unallocated clusters.
    ThickHole { replica: String, missing: u64 },
    /// Two replicas with the same uuid or name.
    Duplicate { what: &'static str, value: String },
    /// A replica larger than the cluster index can address.
    TooLarge { replica: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::LeakedCluster { cluster, slot } => {
                write!(f, "cluster {cluster} is owned by missing replica slot {slot} (leaked)")
            }
            Problem::OwnedTwice {
                replica,
                logical,
                clusters,
            } => write!(
                f,
                "replica '{replica}' maps logical cluster {logical} twice (clusters {} and {})",
                clusters.0, clusters.1
            ),
            Problem::BeyondEnd {
                replica,
                cluster,
                logical,
            } => write!(
                f,
                "cluster {cluster} maps logical cluster {logical} beyond the end of replica '{replica}'"
            ),
            Problem::ThickHole { replica, missing } => {
                write!(f, "thick replica '{replica}' lacks {missing} clusters")
            }
            Problem::Duplicate { what, value } => write!(f, "duplicate replica {what} '{value}'"),
            Problem::TooLarge { replica } => write!(f, "replica '{replica}' is too large"),
        }
    }
}

/// Lists every inconsistency of `meta` (empty when consistent).
pub fn check_meta(meta: &PoolMeta) -> Vec<Problem> {
    let mut problems = Vec::new();
    let cs = meta.geometry.cluster_size_bytes;
    let mut by_slot = HashMap::new();
    let mut uuids = HashSet::new();
    let mut names = HashSet::new();
    for r in &meta.replicas {
        if !uuids.insert(r.uuid) {
            problems.push(Problem::Duplicate {
                what: "uuid",
                value: r.uuid.to_string(),
            });
        }
        if !names.insert(r.name.as_str()) {
            problems.push(Problem::Duplicate {
                what: "name",
                value: r.name.clone(),
            });
        }
        if r.clusters(cs) > u64::from(u32::MAX) {
            problems.push(Problem::TooLarge {
                replica: r.name.clone(),
            });
        }
        by_slot.insert(r.slot, (r, 0u64));
    }
    let mut seen: HashMap<(u32, u32), u32> = HashMap::new();
    for (cluster, o) in meta.owners.iter().enumerate() {
        if o.is_free() {
            continue;
        }
        let cluster = cluster as u32;
        match by_slot.get_mut(&o.slot) {
            None => problems.push(Problem::LeakedCluster {
                cluster,
                slot: o.slot,
            }),
            Some((r, count)) => {
                if u64::from(o.logical) >= r.clusters(cs) {
                    problems.push(Problem::BeyondEnd {
                        replica: r.name.clone(),
                        cluster,
                        logical: o.logical,
                    });
                    continue;
                }
                if let Some(prev) = seen.insert((o.slot, o.logical), cluster) {
                    problems.push(Problem::OwnedTwice {
                        replica: r.name.clone(),
                        logical: o.logical,
                        clusters: (prev, cluster),
                    });
                    continue;
                }
                *count += 1;
            }
        }
    }
    let mut slots: Vec<_> = by_slot.values().collect();
    slots.sort_by_key(|(r, _)| r.slot);
    for (r, count) in slots {
        if !r.thin && *count < r.clusters(cs) {
            problems.push(Problem::ThickHole {
                replica: r.name.clone(),
                missing: r.clusters(cs) - count,
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Geometry, Owner, ReplicaRecord, Share};
    use uuid::Uuid;

    fn meta() -> PoolMeta {
        let g = Geometry::new(64 << 20, 512, 1 << 20, 2).expect("geometry");
        let mut m = PoolMeta::new(Uuid::from_u128(1), "p", g).expect("meta");
        m.replicas.push(ReplicaRecord {
            slot: 3,
            uuid: Uuid::from_u128(2),
            name: "thick".into(),
            size_bytes: 2 << 20,
            thin: false,
            share: Share::None,
            allowed_hosts: vec![],
        });
        m.owners[0] = Owner {
            slot: 3,
            logical: 0,
        };
        m.owners[1] = Owner {
            slot: 3,
            logical: 1,
        };
        m
    }

    #[test]
    fn consistent_pool_has_no_problem() {
        assert_eq!(check_meta(&meta()), vec![]);
    }

    #[test]
    fn each_inconsistency_is_reported() {
        let mut m = meta();
        m.owners[5] = Owner {
            slot: 9,
            logical: 0,
        };
        m.owners[6] = Owner {
            slot: 3,
            logical: 1,
        };
        m.owners[7] = Owner {
            slot: 3,
            logical: 7,
        };
        let p = check_meta(&m);
        assert!(p.contains(&Problem::LeakedCluster {
            cluster: 5,
            slot: 9
        }));
        assert!(p.contains(&Problem::OwnedTwice {
            replica: "thick".into(),
            logical: 1,
            clusters: (1, 6)
        }));
        assert!(p.contains(&Problem::BeyondEnd {
            replica: "thick".into(),
            cluster: 7,
            logical: 7
        }));
        let mut m = meta();
        m.owners[1] = Owner::FREE;
        assert_eq!(
            check_meta(&m),
            vec![Problem::ThickHole {
                replica: "thick".into(),
                missing: 1
            }]
        );
    }
}
