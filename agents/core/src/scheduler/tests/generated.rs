//! Determinism, and the rules on generated clusters.

use std::collections::BTreeSet;

use super::*;

// ------------------------------------------------------------ determinism --

#[test]
fn same_input_same_output_whatever_the_order() {
    let mut c = group_cluster(&["A", "B", "C", "D", "E"]);
    for p in &mut c.pools {
        p.capacity = 10 * GIB;
    }
    c.replicas = vec![replica("r1", "v1", &c.pools[2].clone())];
    c.nexuses = vec![nexus("n1", "v1", "C")];
    let mut req = request("v2", 3);
    req.affinity_group = Some("sts".to_owned());
    let placed = place_new_volume(&c, &req).expect("fits");
    let target = target_node(&c, "v2", None, &[], &[]).expect("a target");
    for _ in 0..3 {
        assert_eq!(place_new_volume(&c, &req), Ok(placed.clone()));
    }
    let mut reversed = c.clone();
    reversed.nodes.reverse();
    reversed.pools.reverse();
    reversed.replicas.reverse();
    reversed.nexuses.reverse();
    assert_eq!(place_new_volume(&reversed, &req), Ok(placed.clone()));
    assert_eq!(target_node(&reversed, "v2", None, &[], &[]), Ok(target));
    assert_eq!(nodes_of(&placed), ["A", "B", "D"]);
}

// -------------------------------------------------------------- generated --

/// A small deterministic generator (xorshift), so the invariant checks below
/// need no extra dependency and replay the same clusters on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn generated_cluster(g: &mut Gen) -> Cluster {
    let node_count = 1 + g.below(6) as usize;
    let mut c = cluster(Vec::new(), Vec::new());
    for i in 0..node_count {
        let mut n = node(&format!("n{i}"));
        n.online = g.chance(80);
        n.cordoned = g.chance(15);
        if g.chance(50) {
            n.labels = labels(&[("zone", if g.chance(50) { "a" } else { "b" })]);
        }
        let pools = g.below(3);
        for j in 0..pools {
            let mut p = pool(&format!("p{i}-{j}"), &n.id, 1 + g.below(100));
            p.online = g.chance(85);
            p.used = g.below(p.capacity + 1);
            p.committed = g.below(3 * p.capacity + 1);
            if g.chance(30) {
                p.labels = labels(&[("media", "ssd")]);
            }
            c.pools.push(p);
        }
        c.nodes.push(n);
    }
    let volumes = g.below(4);
    for v in 0..volumes {
        for (k, p) in c.pools.clone().iter().enumerate() {
            if g.chance(30) {
                let mut r = replica(&format!("r{v}-{k}"), &format!("v{v}"), p);
                r.size = 1 + g.below(20);
                r.online = g.chance(85);
                r.child = match g.below(5) {
                    0 => None,
                    1 => Some(ChildHealth::Faulted),
                    2 => Some(ChildHealth::Rebuilding {
                        progress: g.below(101) as u8,
                    }),
                    _ => Some(ChildHealth::Online),
                };
                c.replicas.push(r);
            }
        }
        if g.chance(50) {
            c.volumes_in_group
                .entry("g".to_owned())
                .or_default()
                .push(format!("v{v}"));
        }
        let host = g.below(node_count as u64) as usize;
        c.nexuses.push(nexus(
            &format!("x{v}"),
            &format!("v{v}"),
            &format!("n{host}"),
        ));
    }
    c
}

fn generated_request(g: &mut Gen) -> VolumeRequest {
    let mut req = request("new", 1 + g.below(4) as u8);
    req.size = 1 + g.below(60);
    req.thin = g.chance(50);
    if g.chance(30) {
        req.node_topology = Some(topology(&[("zone", "a")], &[]));
    }
    if g.chance(30) {
        req.pool_topology = Some(topology(&[], &[("media", "")]));
    }
    if g.chance(50) {
        req.affinity_group = Some("g".to_owned());
    }
    req
}

/// Every placed pool passes the filters and has room for the replica.
fn assert_admissible(c: &Cluster, req: &VolumeRequest, p: &Placement, free_pct: u64) {
    let n = c
        .nodes
        .iter()
        .find(|n| n.id == p.node)
        .expect("a known node");
    let pool = c
        .pools
        .iter()
        .find(|x| x.id == p.pool)
        .expect("a known pool");
    assert_eq!(pool.node, n.id);
    assert!(n.online && !n.cordoned && pool.online);
    assert!(topology_admits(&n.labels, req.node_topology.as_ref()));
    assert!(topology_admits(&pool.labels, req.pool_topology.as_ref()));
    if req.thin {
        let limit = pool.capacity as u128 * c.limits.pool_commitment_pct as u128;
        assert!((pool.committed as u128 + req.size as u128) * 100 <= limit);
        let free = (pool.capacity - pool.used) as u128;
        assert!(free * 100 >= req.size as u128 * free_pct as u128);
    } else {
        assert!(pool.capacity - pool.used.max(pool.committed).min(pool.capacity) >= req.size);
    }
}

#[test]
fn generated_clusters_keep_the_rules() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let c = generated_cluster(&mut g);
        let req = generated_request(&mut g);
        let usable = usable_node_count(&c, &req);

        // New volume: all or nothing, distinct nodes, admissible pools.
        match place_new_volume(&c, &req) {
            Ok(placed) => {
                assert_eq!(placed.len(), usize::from(req.replicas));
                let nodes: BTreeSet<_> = placed.iter().map(|p| &p.node).collect();
                assert_eq!(nodes.len(), placed.len(), "two replicas on one node");
                assert!(placed.len() <= usable);
                for p in &placed {
                    assert_admissible(&c, &req, p, c.limits.volume_commitment_initial_pct);
                }
                assert_eq!(place_new_volume(&c, &req), Ok(placed));
            }
            Err(ScheduleError::NotEnoughNodes {
                needed, available, ..
            }) => {
                assert_eq!(needed, usize::from(req.replicas));
                assert!(available < needed);
                assert!(available <= usable);
            }
            Err(e) => panic!("unexpected error {e}"),
        }

        // Added replica of an existing volume: never beside another.
        let mut existing_req = req.clone();
        existing_req.uuid = "v0".to_owned();
        let existing = of_volume(&c, "v0");
        if let Ok(p) = place_additional_replica(&c, &existing_req, &existing) {
            assert!(existing.iter().all(|r| r.node != p.node));
            assert_admissible(&c, &existing_req, &p, c.limits.volume_commitment_pct);
        }

        // Scale-down: never the only replica, never the last healthy one.
        for v in ["v0", "v1", "v2"] {
            let replicas = of_volume(&c, v);
            let Some(victim) = replica_to_remove(&c, v) else {
                continue;
            };
            assert!(replicas.len() >= 2);
            let victim = replicas
                .iter()
                .find(|r| r.uuid == victim)
                .expect("own replica");
            let nexus_seen = replicas.iter().any(|r| r.child.is_some());
            let healthy = |r: &ReplicaInfo| {
                r.online
                    && c.nodes.iter().any(|n| n.id == r.node && n.online)
                    && match r.child {
                        Some(ChildHealth::Online) => true,
                        None => !nexus_seen,
                        _ => false,
                    }
            };
            if healthy(victim) {
                assert!(replicas.iter().filter(|r| healthy(r)).count() >= 2);
                assert!(replicas.iter().all(healthy), "a healthy one went first");
            }
        }

        // Target: usable and outside the exclusion list.
        let exclude = ["n0".to_owned()];
        if let Ok(t) = target_node(&c, "v0", None, &[], &exclude) {
            let n = c.nodes.iter().find(|n| n.id == t).expect("a known node");
            assert!(n.online && !n.cordoned && t != "n0");
        }
    }
}
