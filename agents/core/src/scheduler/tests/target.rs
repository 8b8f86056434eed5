//! Target node choice.

use super::*;

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
