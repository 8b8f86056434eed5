//! Moving replicas off a full thin pool.

use super::*;

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
