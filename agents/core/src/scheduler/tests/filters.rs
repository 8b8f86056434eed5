//! Node and pool filters, capacity and ranking.

use super::*;

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
