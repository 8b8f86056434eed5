//! Scheduler cases: the seed placement scenarios, each rule and filter,
//! determinism, and invariants checked over generated clusters.

use super::*;

const GIB: u64 = 1 << 30;

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.to_owned(),
        online: true,
        cordoned: false,
        labels: BTreeMap::new(),
    }
}

fn pool(id: &str, node: &str, capacity: u64) -> PoolInfo {
    PoolInfo {
        id: id.to_owned(),
        node: node.to_owned(),
        online: true,
        labels: BTreeMap::new(),
        capacity,
        used: 0,
        committed: 0,
    }
}

fn replica(uuid: &str, volume: &str, pool: &PoolInfo) -> ReplicaInfo {
    ReplicaInfo {
        uuid: uuid.to_owned(),
        volume: Some(volume.to_owned()),
        node: pool.node.clone(),
        pool: pool.id.clone(),
        size: GIB,
        allocated: 0,
        online: true,
        child: None,
    }
}

fn nexus(uuid: &str, volume: &str, node: &str) -> NexusInfo {
    NexusInfo {
        uuid: uuid.to_owned(),
        volume: Some(volume.to_owned()),
        node: node.to_owned(),
    }
}

fn request(uuid: &str, replicas: u8) -> VolumeRequest {
    VolumeRequest {
        uuid: uuid.to_owned(),
        size: GIB,
        replicas,
        thin: false,
        node_topology: None,
        pool_topology: None,
        affinity_group: None,
    }
}

fn cluster(nodes: Vec<NodeInfo>, pools: Vec<PoolInfo>) -> Cluster {
    Cluster {
        nodes,
        pools,
        replicas: Vec::new(),
        nexuses: Vec::new(),
        volumes_in_group: BTreeMap::new(),
        limits: ThinLimits::default(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn topology(inclusion: &[(&str, &str)], exclusion: &[(&str, &str)]) -> LabelledTopology {
    LabelledTopology {
        inclusion: labels(inclusion),
        exclusion: labels(exclusion),
    }
}

fn at(node: &str, pool: &str) -> Placement {
    Placement {
        node: node.to_owned(),
        pool: pool.to_owned(),
    }
}

fn of_volume(cluster: &Cluster, volume: &str) -> Vec<ReplicaInfo> {
    cluster
        .replicas
        .iter()
        .filter(|r| r.volume.as_deref() == Some(volume))
        .cloned()
        .collect()
}

fn nodes_of(placements: &[Placement]) -> Vec<&str> {
    placements.iter().map(|p| p.node.as_str()).collect()
}

// --------------------------------------------------------- seed scenarios --

/// Two nodes with two pools each, volume with 2 replicas (A/a1, B/b1), pool
/// a1 fails. While the faulted replica on A is listed, node A still holds a
/// replica of the volume, so rule 2 forbids a2 and no replacement exists
/// (the volume stays degraded). Once the faulted replica is left out (the
/// self-heal check before retiring it) or retired, the replacement goes to
/// the other pool of the same node, a2. A scale-down meanwhile retires the
/// faulted replica.
#[test]
fn seed_two_nodes_two_pools_faulted_pool() {
    let pools = vec![
        pool("a1", "A", 10 * GIB),
        pool("a2", "A", 10 * GIB),
        pool("b1", "B", 10 * GIB),
        pool("b2", "B", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B")], pools.clone());
    let mut r1 = replica("r1", "v", &pools[0]);
    let mut r2 = replica("r2", "v", &pools[2]);
    r1.online = false;
    r1.child = Some(ChildHealth::Faulted);
    r2.child = Some(ChildHealth::Online);
    c.replicas = vec![r1, r2.clone()];
    c.pools[0].online = false;
    let req = request("v", 2);

    let err = place_additional_replica(&c, &req, &of_volume(&c, "v")).unwrap_err();
    assert!(matches!(
        &err,
        ScheduleError::NoNodeForReplica { rejected, .. } if rejected.nodes_with_replica == 2
    ));
    assert_eq!(
        err.to_string(),
        "volume v needs one more replica on a node without one; no usable node has a pool \
         with room (rejected: 2 nodes already hold a replica)"
    );

    // The self-heal check: could the faulted one be replaced once retired?
    let without_faulted = vec![r2.clone()];
    assert_eq!(
        place_additional_replica(&c, &req, &without_faulted),
        Ok(at("A", "a2"))
    );

    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("r1"));
    c.replicas.retain(|r| r.uuid != "r1");
    assert_eq!(
        place_additional_replica(&c, &req, &of_volume(&c, "v")),
        Ok(at("A", "a2"))
    );
}

/// Three nodes, 2 replicas on A and B, A's pool fails: the replacement goes
/// to C, whether or not the faulted replica is still listed.
#[test]
fn seed_three_nodes_failed_pool_replaced_on_third_node() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    let mut ra = replica("ra", "v", &pools[0]);
    ra.online = false;
    ra.child = Some(ChildHealth::Faulted);
    c.replicas = vec![ra, replica("rb", "v", &pools[1])];
    c.pools[0].online = false;
    let req = request("v", 2);
    assert_eq!(
        place_additional_replica(&c, &req, &of_volume(&c, "v")),
        Ok(at("C", "pc"))
    );
    c.replicas.retain(|r| r.uuid != "ra");
    assert_eq!(
        place_additional_replica(&c, &req, &of_volume(&c, "v")),
        Ok(at("C", "pc"))
    );
}

/// Scale 2 -> 3 takes the node without a replica even though a node with a
/// replica has a roomier second pool.
#[test]
fn seed_scale_up_picks_node_without_replica() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pa-big", "A", 100 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 2 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    c.replicas = vec![replica("ra", "v", &pools[0]), replica("rb", "v", &pools[2])];
    let req = request("v", 3);
    assert_eq!(
        place_additional_replica(&c, &req, &of_volume(&c, "v")),
        Ok(at("C", "pc"))
    );
}

/// Three replicas on three nodes, one node dead: no node is left for a
/// replacement, before or after the dead node's replica is retired.
#[test]
fn seed_three_replicas_one_node_dead_no_placement() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    c.nodes[2].online = false;
    c.replicas = vec![
        replica("ra", "v", &pools[0]),
        replica("rb", "v", &pools[1]),
        replica("rc", "v", &pools[2]),
    ];
    let req = request("v", 3);
    let err = place_additional_replica(&c, &req, &of_volume(&c, "v")).unwrap_err();
    assert!(matches!(err, ScheduleError::NoNodeForReplica { .. }));
    c.replicas.retain(|r| r.uuid != "rc");
    let err = place_additional_replica(&c, &req, &of_volume(&c, "v")).unwrap_err();
    assert!(err.to_string().contains("1 node offline"), "{err}");
    assert!(
        err.to_string().contains("2 nodes already hold a replica"),
        "{err}"
    );
}

/// Scale 3 -> 2 retires the faulted replica, although a healthy one sits on
/// a more crowded node.
#[test]
fn seed_scale_down_removes_faulted_first() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    let mut rc = replica("rc", "v", &pools[2]);
    rc.child = Some(ChildHealth::Faulted);
    let mut ra = replica("ra", "v", &pools[0]);
    ra.child = Some(ChildHealth::Online);
    let mut rb = replica("rb", "v", &pools[1]);
    rb.child = Some(ChildHealth::Online);
    c.replicas = vec![ra, rb, rc, replica("other", "w", &pools[0])];
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("rc"));
}

/// A node that was away comes back: the scale-up that failed while it was
/// offline now places the replica there.
#[test]
fn seed_returned_node_receives_scale_up() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    c.nodes[2].online = false;
    c.replicas = vec![replica("ra", "v", &pools[0]), replica("rb", "v", &pools[1])];
    let req = request("v", 3);
    assert!(place_additional_replica(&c, &req, &of_volume(&c, "v")).is_err());
    c.nodes[2].online = true;
    assert_eq!(
        place_additional_replica(&c, &req, &of_volume(&c, "v")),
        Ok(at("C", "pc"))
    );
}

// ---------------------------------------------------------- node and pool --

#[test]
fn cordoned_node_gets_no_replica_and_no_target() {
    let pools = vec![
        pool("pa", "A", 100 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools);
    c.nodes[0].cordoned = true;
    let placed = place_new_volume(&c, &request("v", 2)).expect("two uncordoned nodes");
    assert_eq!(nodes_of(&placed), ["B", "C"]);
    let err = place_new_volume(&c, &request("v", 3)).unwrap_err();
    assert!(err.to_string().contains("1 node cordoned"), "{err}");
    assert_eq!(usable_node_count(&c, &request("v", 3)), 2);

    let target = target_node(&c, "v", None, &["A".to_owned()], &[]).expect("a target");
    assert_eq!(target, "B");
}

#[test]
fn offline_nodes_and_pools_are_skipped() {
    let pools = vec![
        pool("pa", "A", 100 * GIB),
        pool("pb", "B", 50 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools);
    c.nodes[0].online = false;
    c.pools[1].online = false;
    assert_eq!(
        place_new_volume(&c, &request("v", 1)),
        Ok(vec![at("C", "pc")])
    );
    let err = place_new_volume(&c, &request("v", 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume v needs 2 replicas on distinct nodes; only 1 usable nodes have a pool with \
         room (rejected: 1 node offline, 1 pool offline)"
    );
}

#[test]
fn topology_label_semantics() {
    let have = labels(&[("zone", "a"), ("disk", "ssd")]);
    let admits = |inclusion: &[(&str, &str)], exclusion: &[(&str, &str)]| {
        topology_admits(&have, Some(&topology(inclusion, exclusion)))
    };
    assert!(topology_admits(&have, None));
    assert!(admits(&[], &[]));
    assert!(admits(&[("zone", "a")], &[]));
    assert!(!admits(&[("zone", "b")], &[]));
    // Empty inclusion value: any value of the key, but the key is needed.
    assert!(admits(&[("zone", "")], &[]));
    assert!(!admits(&[("rack", "")], &[]));
    // Exclusion with a value: only that value is excluded.
    assert!(!admits(&[], &[("disk", "ssd")]));
    assert!(admits(&[], &[("disk", "hdd")]));
    // Empty exclusion value: the key must be absent.
    assert!(!admits(&[], &[("disk", "")]));
    assert!(admits(&[], &[("rack", "")]));
    // Both at once.
    assert!(admits(&[("zone", "a")], &[("disk", "hdd")]));
    assert!(!admits(&[("zone", "a")], &[("disk", "ssd")]));
}

#[test]
fn node_topology_inclusion_and_exclusion() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 20 * GIB),
        pool("pc", "C", 30 * GIB),
        pool("pd", "D", 40 * GIB),
    ];
    let mut c = cluster(vec![node("A"), node("B"), node("C"), node("D")], pools);
    c.nodes[0].labels = labels(&[("zone", "east"), ("tier", "gold")]);
    c.nodes[1].labels = labels(&[("zone", "east")]);
    c.nodes[2].labels = labels(&[("zone", "west")]);
    c.nodes[3].labels = labels(&[("zone", "east"), ("maintenance", "soon")]);

    let mut req = request("v", 2);
    req.node_topology = Some(topology(&[("zone", "east")], &[("maintenance", "")]));
    assert_eq!(usable_node_count(&c, &req), 2);
    let placed = place_new_volume(&c, &req).expect("A and B qualify");
    assert_eq!(nodes_of(&placed), ["B", "A"]);

    req.node_topology = Some(topology(&[("zone", "")], &[("tier", "gold")]));
    assert_eq!(usable_node_count(&c, &req), 3);
    let placed = place_new_volume(&c, &req).expect("B, C and D qualify");
    assert_eq!(nodes_of(&placed), ["D", "C"]);

    req.replicas = 4;
    let err = place_new_volume(&c, &req).unwrap_err();
    assert!(
        err.to_string().contains("1 node outside the node topology"),
        "{err}"
    );
}

#[test]
fn pool_topology_inclusion_and_exclusion() {
    let mut pools = vec![
        pool("a-ssd", "A", 10 * GIB),
        pool("a-hdd", "A", 90 * GIB),
        pool("b-ssd", "B", 10 * GIB),
        pool("c-hdd", "C", 90 * GIB),
    ];
    pools[0].labels = labels(&[("media", "ssd")]);
    pools[1].labels = labels(&[("media", "hdd")]);
    pools[2].labels = labels(&[("media", "ssd"), ("encrypted", "no")]);
    pools[3].labels = labels(&[("media", "hdd")]);
    let c = cluster(vec![node("A"), node("B"), node("C")], pools);

    let mut req = request("v", 2);
    req.pool_topology = Some(topology(&[("media", "ssd")], &[]));
    let placed = place_new_volume(&c, &req).expect("two ssd pools");
    assert_eq!(placed, vec![at("A", "a-ssd"), at("B", "b-ssd")]);
    assert_eq!(usable_node_count(&c, &req), 2);

    req.pool_topology = Some(topology(&[("media", "ssd")], &[("encrypted", "no")]));
    assert_eq!(usable_node_count(&c, &req), 1);
    let err = place_new_volume(&c, &req).unwrap_err();
    assert!(
        err.to_string()
            .contains("3 pools outside the pool topology"),
        "{err}"
    );

    req.pool_topology = Some(topology(&[], &[("media", "ssd")]));
    let placed = place_new_volume(&c, &req).expect("two hdd pools");
    assert_eq!(placed, vec![at("A", "a-hdd"), at("C", "c-hdd")]);
}

// --------------------------------------------------------------- capacity --

#[test]
fn thick_capacity_counts_used_and_committed() {
    let fits = |used: u64, committed: u64, size: u64| {
        let mut p = pool("p", "A", 100);
        p.used = used;
        p.committed = committed;
        let c = cluster(vec![node("A")], vec![p]);
        let mut req = request("v", 1);
        req.size = size;
        place_new_volume(&c, &req).is_ok()
    };
    assert!(fits(10, 60, 40));
    assert!(!fits(10, 60, 41));
    assert!(fits(60, 10, 40));
    assert!(!fits(60, 10, 41));
    assert!(fits(0, 0, 100));
    assert!(!fits(0, 0, 101));
    // An overcommitted pool (thin replicas) has no room for thick ones.
    assert!(!fits(0, 300, 1));
}

#[test]
fn thin_pool_commitment_limit() {
    let place = |committed: u64, size: u64| {
        let mut p = pool("p", "A", 100);
        p.committed = committed;
        let c = cluster(vec![node("A")], vec![p]);
        let mut req = request("v", 1);
        req.size = size;
        req.thin = true;
        place_new_volume(&c, &req)
    };
    // Up to 250% of the capacity may be committed, not a byte more.
    assert!(place(200, 50).is_ok());
    // Exactly at both limits: 250% committed, 40% of 250 bytes free.
    assert!(place(0, 250).is_ok());
    assert!(place(0, 251).is_err());
    let err = place(201, 50).unwrap_err();
    assert!(
        err.to_string().contains("1 pool past its commitment limit"),
        "{err}"
    );
    assert!(place(250, 1).is_err());

    let mut c = cluster(vec![node("A")], vec![pool("p", "A", 100)]);
    c.limits.pool_commitment_pct = 100;
    let mut req = request("v", 1);
    req.size = 100;
    req.thin = true;
    assert!(place_new_volume(&c, &req).is_ok());
    c.pools[0].committed = 1;
    assert!(place_new_volume(&c, &req).is_err());
}

#[test]
fn thin_initial_free_space_rule() {
    let place = |used: u64| {
        let mut p = pool("p", "A", 1000);
        p.used = used;
        let c = cluster(vec![node("A")], vec![p]);
        let mut req = request("v", 1);
        req.size = 100;
        req.thin = true;
        place_new_volume(&c, &req)
    };
    // 40% of 100 bytes must be free.
    assert!(place(960).is_ok());
    let err = place(961).unwrap_err();
    assert!(
        err.to_string().contains("1 pool without enough free space"),
        "{err}"
    );
}

#[test]
fn thin_additional_replica_uses_volume_commitment() {
    let mut p = pool("p", "B", 1000);
    p.used = 980;
    let mut c = cluster(vec![node("A"), node("B")], vec![pool("pa", "A", 1000), p]);
    c.limits.volume_commitment_initial_pct = 10;
    c.limits.volume_commitment_pct = 50;
    let mut req = request("v", 1);
    req.size = 100;
    req.thin = true;
    // The initial share (10 bytes) fits on B's 20 free bytes...
    let mut only_b = c.clone();
    only_b.nodes.retain(|n| n.id == "B");
    assert_eq!(place_new_volume(&only_b, &req), Ok(vec![at("B", "p")]));
    // ...the share for an added replica (50 bytes) does not.
    let existing = vec![replica("ra", "v", &c.pools[0])];
    let err = place_additional_replica(&c, &req, &existing).unwrap_err();
    assert!(
        err.to_string().contains("1 pool without enough free space"),
        "{err}"
    );
    c.pools[1].used = 950;
    assert_eq!(
        place_additional_replica(&c, &req, &existing),
        Ok(at("B", "p"))
    );
}

#[test]
fn thin_replicas_rank_by_free_not_committed_space() {
    let mut busy = pool("busy", "A", 100 * GIB);
    busy.committed = 200 * GIB;
    busy.used = 10 * GIB;
    let mut quiet = pool("quiet", "B", 100 * GIB);
    quiet.used = 50 * GIB;
    let c = cluster(vec![node("A"), node("B")], vec![busy, quiet]);
    let mut req = request("v", 1);
    req.thin = true;
    assert_eq!(place_new_volume(&c, &req), Ok(vec![at("A", "busy")]));
    req.thin = false;
    assert_eq!(place_new_volume(&c, &req), Ok(vec![at("B", "quiet")]));
}

// ---------------------------------------------------------------- ranking --

#[test]
fn prefers_most_room_then_fewer_replicas_then_id() {
    let pools = vec![
        pool("p1", "A", 10 * GIB),
        pool("p2", "B", 10 * GIB),
        pool("p3", "C", 10 * GIB),
        pool("p4", "D", 20 * GIB),
    ];
    let mut c = cluster(
        vec![node("A"), node("B"), node("C"), node("D")],
        pools.clone(),
    );
    // p1 holds a (thin, unallocated) replica: same room, more replicas.
    let mut other = replica("x", "w", &pools[0]);
    other.size = 0;
    c.replicas = vec![other];
    let placed = place_new_volume(&c, &request("v", 4)).expect("four nodes");
    assert_eq!(
        placed,
        vec![at("D", "p4"), at("B", "p2"), at("C", "p3"), at("A", "p1")]
    );
}

#[test]
fn picks_the_best_pool_of_each_node() {
    let pools = vec![
        pool("a-small", "A", 5 * GIB),
        pool("a-large", "A", 50 * GIB),
        pool("b", "B", 20 * GIB),
    ];
    let c = cluster(vec![node("A"), node("B")], pools);
    assert_eq!(
        place_new_volume(&c, &request("v", 2)),
        Ok(vec![at("A", "a-large"), at("B", "b")])
    );
}

#[test]
fn never_two_replicas_on_one_node() {
    let pools = vec![
        pool("a1", "A", 100 * GIB),
        pool("a2", "A", 100 * GIB),
        pool("a3", "A", 100 * GIB),
        pool("b1", "B", GIB),
    ];
    let c = cluster(vec![node("A"), node("B")], pools);
    let placed = place_new_volume(&c, &request("v", 2)).expect("two nodes");
    assert_eq!(nodes_of(&placed), ["A", "B"]);
    let err = place_new_volume(&c, &request("v", 3)).unwrap_err();
    assert!(matches!(
        err,
        ScheduleError::NotEnoughNodes {
            needed: 3,
            available: 2,
            ..
        }
    ));
    assert_eq!(usable_node_count(&c, &request("v", 3)), 2);
}

#[test]
fn rule1_no_partial_placement() {
    let mut pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    pools[2].used = 9 * GIB + 1;
    let c = cluster(vec![node("A"), node("B"), node("C")], pools);
    let err = place_new_volume(&c, &request("v", 3)).unwrap_err();
    assert_eq!(
        err,
        ScheduleError::NotEnoughNodes {
            volume: "v".to_owned(),
            needed: 3,
            available: 2,
            rejected: Rejections {
                pools_no_space: 1,
                ..Rejections::default()
            },
        }
    );
    assert_eq!(
        err.to_string(),
        "volume v needs 3 replicas on distinct nodes; only 2 usable nodes have a pool with \
         room (rejected: 1 pool without enough free space)"
    );
    // Capacity aside, three nodes could hold it.
    assert_eq!(usable_node_count(&c, &request("v", 3)), 3);
}

#[test]
fn zero_replicas_is_an_error() {
    let c = cluster(vec![node("A")], vec![pool("p", "A", GIB)]);
    let err = place_new_volume(&c, &request("v", 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume v asks for 0 replicas; at least 1 is needed"
    );
}

#[test]
fn empty_cluster_explains_itself() {
    let c = cluster(vec![node("A")], Vec::new());
    let err = place_new_volume(&c, &request("v", 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume v needs 1 replicas on distinct nodes; only 0 usable nodes have a pool with \
         room (rejected: 1 node without a pool)"
    );
    let c = cluster(Vec::new(), Vec::new());
    let err = place_new_volume(&c, &request("v", 1)).unwrap_err();
    assert!(
        err.to_string().ends_with("(no node or pool was rejected)"),
        "{err}"
    );
}

#[test]
fn pools_on_unknown_nodes_are_ignored() {
    let c = cluster(
        vec![node("A")],
        vec![pool("ghost", "Z", 100 * GIB), pool("pa", "A", GIB)],
    );
    assert_eq!(
        place_new_volume(&c, &request("v", 1)),
        Ok(vec![at("A", "pa")])
    );
    assert_eq!(usable_node_count(&c, &request("v", 1)), 1);
}

// -------------------------------------------------------- affinity groups --

fn group_cluster(nodes: &[&str]) -> Cluster {
    let pools = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let size = if i < 2 { 100 * GIB } else { 10 * GIB };
            pool(&format!("p{n}"), n, size)
        })
        .collect();
    let mut c = cluster(nodes.iter().map(|n| node(n)).collect(), pools);
    c.volumes_in_group
        .insert("sts".to_owned(), vec!["v1".to_owned(), "v2".to_owned()]);
    c
}

#[test]
fn affinity_group_spreads_replicas() {
    let mut c = group_cluster(&["A", "B", "C", "D"]);
    let first = place_new_volume(&c, &request("v1", 2)).expect("v1");
    assert_eq!(nodes_of(&first), ["A", "B"]);
    for (i, p) in first.iter().enumerate() {
        let pool = c
            .pools
            .iter()
            .find(|x| x.id == p.pool)
            .expect("placed pool")
            .clone();
        c.replicas.push(replica(&format!("r{i}"), "v1", &pool));
    }
    let mut req = request("v2", 2);
    req.affinity_group = Some("sts".to_owned());
    let second = place_new_volume(&c, &req).expect("v2");
    assert_eq!(nodes_of(&second), ["C", "D"]);
    // Without the group, v2 would go where the space is.
    req.affinity_group = None;
    let alone = place_new_volume(&c, &req).expect("v2 alone");
    assert_eq!(nodes_of(&alone), ["A", "B"]);
}

#[test]
fn affinity_group_falls_back_when_no_spare_nodes() {
    let mut c = group_cluster(&["A", "B", "C"]);
    c.replicas = vec![
        replica("r1", "v1", &c.pools[0].clone()),
        replica("r2", "v1", &c.pools[1].clone()),
    ];
    let mut req = request("v2", 2);
    req.affinity_group = Some("sts".to_owned());
    // One spare node: it comes first, then the roomiest shared one.
    let placed = place_new_volume(&c, &req).expect("falls back");
    assert_eq!(nodes_of(&placed), ["C", "A"]);
    // No spare node: shares nodes rather than failing.
    c.nodes.retain(|n| n.id != "C");
    let placed = place_new_volume(&c, &req).expect("falls back");
    assert_eq!(nodes_of(&placed), ["A", "B"]);
    // Also for an added replica.
    let existing = vec![replica("s1", "v2", &c.pools[0].clone())];
    assert_eq!(
        place_additional_replica(&c, &req, &existing),
        Ok(at("B", "pB"))
    );
}

// ------------------------------------------------------------- scale-down --

#[test]
fn never_removes_last_healthy_replica() {
    let pools = vec![pool("pa", "A", GIB), pool("pb", "B", GIB)];
    let mut c = cluster(vec![node("A"), node("B")], pools.clone());
    let mut healthy = replica("healthy", "v", &pools[0]);
    healthy.child = Some(ChildHealth::Online);
    c.replicas = vec![healthy.clone()];
    assert_eq!(replica_to_remove(&c, "v"), None, "only replica");

    let mut rebuilding = replica("rebuilding", "v", &pools[1]);
    rebuilding.child = Some(ChildHealth::Rebuilding { progress: 99 });
    c.replicas = vec![healthy.clone(), rebuilding];
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("rebuilding"));

    // Two replicas, only one healthy; the other is unreachable.
    let mut lost = replica("lost", "v", &pools[1]);
    lost.online = false;
    c.replicas = vec![healthy.clone(), lost];
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("lost"));

    // Two healthy: one may go.
    let mut twin = replica("twin", "v", &pools[1]);
    twin.child = Some(ChildHealth::Online);
    c.replicas = vec![healthy, twin];
    assert!(replica_to_remove(&c, "v").is_some());

    assert_eq!(replica_to_remove(&c, "unknown-volume"), None);
}

#[test]
fn scale_down_order() {
    let pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
        pool("pd", "D", 10 * GIB),
        pool("pe", "E", 10 * GIB),
        pool("pf", "F", 10 * GIB),
    ];
    let nodes = ["A", "B", "C", "D", "E", "F"].map(node).to_vec();
    let mut c = cluster(nodes, pools.clone());
    c.nodes[1].online = false;
    let with = |uuid: &str, i: usize, child: Option<ChildHealth>| {
        let mut r = replica(uuid, "v", &pools[i]);
        r.child = child;
        r
    };
    c.replicas = vec![
        with("faulted", 0, Some(ChildHealth::Faulted)),
        with("on-dead-node", 1, Some(ChildHealth::Online)),
        with("not-a-child", 2, None),
        with(
            "rebuild-80",
            3,
            Some(ChildHealth::Rebuilding { progress: 80 }),
        ),
        with(
            "rebuild-20",
            4,
            Some(ChildHealth::Rebuilding { progress: 20 }),
        ),
        with("healthy", 5, Some(ChildHealth::Online)),
    ];
    let mut order = Vec::new();
    while let Some(victim) = replica_to_remove(&c, "v") {
        c.replicas.retain(|r| r.uuid != victim);
        order.push(victim);
    }
    assert_eq!(
        order,
        [
            "faulted",
            "on-dead-node",
            "not-a-child",
            "rebuild-20",
            "rebuild-80"
        ]
    );
    assert_eq!(c.replicas.len(), 1);
    assert_eq!(c.replicas[0].uuid, "healthy");
}

#[test]
fn scale_down_of_healthy_replicas_relieves_crowded_nodes() {
    let mut pools = vec![
        pool("pa", "A", 10 * GIB),
        pool("pb", "B", 10 * GIB),
        pool("pc", "C", 10 * GIB),
    ];
    pools[2].used = 8 * GIB;
    let mut c = cluster(vec![node("A"), node("B"), node("C")], pools.clone());
    c.replicas = vec![
        replica("ra", "v", &pools[0]),
        replica("rb", "v", &pools[1]),
        replica("rc", "v", &pools[2]),
        replica("x1", "w", &pools[1]),
        replica("x2", "w", &pools[1]),
    ];
    // B holds the most replicas.
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("rb"));
    // Equal counts: the fullest pool.
    c.replicas.retain(|r| r.volume.as_deref() == Some("v"));
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("rc"));
}

#[test]
fn unpublished_volume_health_rests_on_reachability() {
    // No child states at all: no nexus is observed, so `None` is not
    // "missing from the nexus".
    let pools = vec![pool("pa", "A", 10 * GIB), pool("pb", "B", 20 * GIB)];
    let mut c = cluster(vec![node("A"), node("B")], pools.clone());
    c.replicas = vec![replica("ra", "v", &pools[0]), replica("rb", "v", &pools[1])];
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("ra"));
    c.nodes[1].online = false;
    assert_eq!(replica_to_remove(&c, "v").as_deref(), Some("rb"));
}

// ----------------------------------------------------------------- target --

#[test]
fn requested_target_node_must_be_usable() {
    let mut c = cluster(vec![node("A"), node("B"), node("C"), node("D")], Vec::new());
    c.nodes[1].online = false;
    c.nodes[2].cordoned = true;
    let drained = ["D".to_owned()];
    assert_eq!(
        target_node(&c, "v", Some("A"), &[], &drained),
        Ok("A".to_owned())
    );
    let cases = [
        (
            "Z",
            "volume v cannot have its target on node Z: the node is unknown",
        ),
        (
            "B",
            "volume v cannot have its target on node B: the node is offline",
        ),
        (
            "C",
            "volume v cannot have its target on node C: the node is cordoned",
        ),
        (
            "D",
            "volume v cannot have its target on node D: the node is excluded (e.g. being \
             drained)",
        ),
    ];
    for (node, message) in cases {
        let err = target_node(&c, "v", Some(node), &[], &drained).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn target_prefers_local_replica_then_least_loaded() {
    let mut c = cluster(vec![node("A"), node("B"), node("C")], Vec::new());
    c.nexuses = vec![
        nexus("n1", "w1", "A"),
        nexus("n2", "w2", "A"),
        nexus("n3", "w3", "B"),
    ];
    // No local replica: the least loaded node.
    assert_eq!(target_node(&c, "v", None, &[], &[]), Ok("C".to_owned()));
    // Local replicas on A and B: the less loaded of them.
    let local = ["A".to_owned(), "B".to_owned()];
    assert_eq!(target_node(&c, "v", None, &local, &[]), Ok("B".to_owned()));
    // The volume's own (old) nexus does not count as load.
    c.nexuses.push(nexus("old", "v", "A"));
    c.nexuses.push(nexus("n4", "w4", "B"));
    c.nexuses.push(nexus("n5", "w5", "B"));
    assert_eq!(target_node(&c, "v", None, &local, &[]), Ok("A".to_owned()));
}

#[test]
fn target_never_on_excluded_or_cordoned_nodes() {
    let mut c = cluster(vec![node("A"), node("B"), node("C")], Vec::new());
    c.nodes[2].cordoned = true;
    let local = ["A".to_owned(), "C".to_owned()];
    let draining = ["A".to_owned()];
    assert_eq!(
        target_node(&c, "v", None, &local, &draining),
        Ok("B".to_owned())
    );
    c.nodes[1].online = false;
    let err = target_node(&c, "v", None, &local, &draining).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume v needs a target node; none of 3 nodes is usable (rejected: 1 node offline, \
         1 node cordoned, 1 node excluded)"
    );
}

#[test]
fn target_spreads_affinity_group() {
    let mut c = cluster(vec![node("A"), node("B"), node("C")], Vec::new());
    c.volumes_in_group
        .insert("sts".to_owned(), vec!["v1".to_owned(), "v2".to_owned()]);
    c.nexuses = vec![
        nexus("n1", "v1", "A"),
        nexus("x1", "w", "C"),
        nexus("x2", "w2", "C"),
    ];
    let local = ["A".to_owned()];
    // v2's replica is on A, but A already hosts v1's target.
    assert_eq!(target_node(&c, "v2", None, &local, &[]), Ok("B".to_owned()));
    // Only A and C usable: C is busier but hosts no target of the group.
    c.nodes[1].cordoned = true;
    assert_eq!(target_node(&c, "v2", None, &local, &[]), Ok("C".to_owned()));
    // Only A usable: shared rather than refused.
    c.nodes[2].online = false;
    assert_eq!(target_node(&c, "v2", None, &local, &[]), Ok("A".to_owned()));
    // Outside the group, the local replica wins.
    c.nodes[1].cordoned = false;
    assert_eq!(target_node(&c, "v3", None, &local, &[]), Ok("A".to_owned()));
}

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

// ------------------------------------------------------- thin pool space --

/// Node A's thin pool is full: volume v1's replica there holds 600 bytes,
/// v2's (which ran out of space and is faulted) 300. Each volume has a
/// second replica on B; C has room.
fn full_pool_cluster() -> (Cluster, BTreeMap<String, VolumeRequest>) {
    let mut full = pool("full", "A", 1000);
    full.used = 1000;
    let mut c = cluster(
        vec![node("A"), node("B"), node("C")],
        vec![full, pool("pb", "B", 10_000), pool("pc", "C", 10_000)],
    );
    let mut requests = BTreeMap::new();
    for (v, allocated, health) in [
        ("v1", 600, ChildHealth::Online),
        ("v2", 300, ChildHealth::Faulted),
    ] {
        let mut on_a = replica(&format!("{v}-a"), v, &c.pools[0]);
        on_a.allocated = allocated;
        on_a.child = Some(health);
        let mut on_b = replica(&format!("{v}-b"), v, &c.pools[1]);
        on_b.child = Some(ChildHealth::Online);
        c.replicas.extend([on_a, on_b]);
        let mut req = request(v, 2);
        req.size = 1000;
        req.thin = true;
        requests.insert(v.to_owned(), req);
    }
    (c, requests)
}

#[test]
fn a_full_pool_moves_its_largest_replica_not_the_one_that_ran_out() {
    let (c, requests) = full_pool_cluster();
    let relief = relieve_pool(&c, "full", &requests).unwrap();
    assert_eq!(
        relief,
        Relief {
            replica: "v1-a".into(),
            volume: "v1".into(),
            to: at("C", "pc"),
            faulted: false,
        }
    );
}

#[test]
fn the_next_largest_moves_when_the_largest_cannot_be_placed() {
    let (mut c, requests) = full_pool_cluster();
    // v1 also has a replica on C: rule 2 leaves it nowhere to go.
    let mut on_c = replica("v1-c", "v1", &c.pools[2]);
    on_c.child = Some(ChildHealth::Online);
    c.replicas.push(on_c);
    let relief = relieve_pool(&c, "full", &requests).unwrap();
    assert_eq!(relief.replica, "v2-a");
    assert!(relief.faulted, "the faulted replica is retired first");
    assert_eq!(relief.to, at("C", "pc"));
}

#[test]
fn nothing_moves_without_a_rebuild_source_a_nexus_or_room() {
    let (mut c, requests) = full_pool_cluster();
    // Unpublished volumes (no child state) never move.
    let mut unpublished = c.clone();
    for r in &mut unpublished.replicas {
        r.child = None;
    }
    assert_eq!(relieve_pool(&unpublished, "full", &requests), None);
    // A faulted replica whose siblings are not Online has no source.
    c.replicas.retain(|r| r.volume.as_deref() == Some("v2"));
    c.replicas[1].child = Some(ChildHealth::Rebuilding { progress: 10 });
    assert_eq!(relieve_pool(&c, "full", &requests), None);
    // No pool elsewhere with room: nothing.
    let (mut c, requests) = full_pool_cluster();
    c.pools[2].used = 10_000;
    assert_eq!(relieve_pool(&c, "full", &requests), None);
}
