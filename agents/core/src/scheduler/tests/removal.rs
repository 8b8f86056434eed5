//! Scale-down order (rule 3).

use super::*;

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
