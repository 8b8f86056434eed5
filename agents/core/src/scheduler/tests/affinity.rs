//! Affinity groups spread replicas.

use super::*;

// -------------------------------------------------------- affinity groups --

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
