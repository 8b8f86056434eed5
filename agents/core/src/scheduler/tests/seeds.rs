//! The seed scenarios of the placement rules.

use super::*;

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
