//! Every endpoint, each with its effect checked.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_has_its_effect_through_api_rest() {
    let rest = Rest::start();
    let api = &rest.api;
    let c = &rest.cluster;
    rest.nodes_online().await;

    // ---------------------------------------------------------------- nodes
    let nodes = api.get_nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["node-1", "node-2", "node-3"]);
    let node1 = api.get_node("node-1").await.unwrap();
    assert_eq!(node1, nodes[0]);
    let state = node1.state.unwrap();
    assert_eq!(state.status, NodeStatus::Online);
    assert_eq!(state.node_nqn, "nqn.2019-05.io.openebs:node-name:node-1");
    assert_eq!(node1.spec.unwrap().grpc_endpoint, state.grpc_endpoint);

    // ---------------------------------------------------------------- pools
    rest.make_pools().await;
    let pools = api.get_pools().await.unwrap();
    assert_eq!(
        pools.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );
    for (i, p) in pools.iter().enumerate() {
        let node = format!("node-{}", i + 1);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            (spec.node.as_str(), spec.status),
            (node.as_str(), SpecStatus::Created)
        );
        let state = p.state.as_ref().unwrap();
        assert_eq!(state.node, node);
        assert_eq!(state.status, PoolStatus::Online);
        assert!(
            state.capacity > 100 * MIB && state.capacity <= POOL,
            "{p:?}"
        );
        assert!(state.used < state.capacity, "{p:?}");
        assert_eq!(state.committed, 0, "{p:?}");
    }
    assert_eq!(api.get_pool("p2").await.unwrap(), pools[1]);
    assert_eq!(
        api.get_node_pools("node-3").await.unwrap(),
        vec![pools[2].clone()]
    );
    // Creating the same pool again is idempotent.
    let again = api
        .put_node_pool("node-1", "p1", pool_body(c.disk("p1", POOL)))
        .await
        .unwrap();
    assert_eq!(again.spec, pools[0].spec);

    // A second pool on node-2: listed with the node, deleted by node and pool;
    // its disk is then free for a new pool, deleted by pool id.
    let spare_disk = c.disk("spare", POOL);
    api.put_node_pool("node-2", "spare", pool_body(spare_disk.clone()))
        .await
        .unwrap();
    let on2: Vec<String> = api
        .get_node_pools("node-2")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(on2, ["p2", "spare"]);
    api.del_node_pool("node-2", "spare").await.unwrap();
    refused(api.get_pool("spare").await, ErrorKind::NotFound);
    assert_eq!(api.get_node_pools("node-2").await.unwrap().len(), 1);
    let reborn = api
        .put_node_pool("node-2", "spare2", pool_body(spare_disk))
        .await
        .unwrap();
    assert_eq!(reborn.state.unwrap().status, PoolStatus::Online);
    api.del_pool("spare2").await.unwrap();
    refused(api.get_pool("spare2").await, ErrorKind::NotFound);
    assert!(!api
        .get_specs()
        .await
        .unwrap()
        .pools
        .iter()
        .any(|p| p.id.starts_with("spare")));

    // Pool labels steer placement.
    let p1 = api.label_pool("p1", "tier", Some("fast")).await.unwrap();
    assert_eq!(
        p1.spec.unwrap().labels.get("tier").map(String::as_str),
        Some("fast")
    );
    let mut body = volume_body(VOL, 1);
    body.topology = Some(Topology {
        node_topology: None,
        pool_topology: Some(LabelledTopology {
            inclusion: [("tier".to_string(), "fast".to_string())].into(),
            exclusion: Default::default(),
        }),
    });
    let fast = new_id();
    let v = api.put_volume(&fast, body).await.unwrap();
    assert_eq!(replica_pools(&v), ["p1"]);
    api.del_volume(&fast).await.unwrap();
    let fast_replicas: Vec<String> = v.state.replica_topology.into_keys().collect();
    wait_replicas_gone(api, &fast_replicas).await;
    let p1 = api.label_pool("p1", "tier", None).await.unwrap();
    assert!(p1.spec.unwrap().labels.is_empty());

    // -------------------------------------------------------------- volumes
    let v1 = new_id();
    let v2 = new_id();
    let v3 = new_id();
    let created = api.put_volume(&v1, volume_body(VOL, 2)).await.unwrap();
    assert_eq!(created.spec.uuid, v1);
    assert_eq!(created.spec.size, VOL);
    assert_eq!(created.spec.num_replicas, 2);
    assert_eq!(created.spec.status, SpecStatus::Created);
    assert!(created.spec.target.is_none());
    assert_eq!(created.state.status, VolumeStatus::Online);
    let nodes_of_v1 = replica_nodes(&created);
    assert_eq!(nodes_of_v1.len(), 2);
    assert_ne!(nodes_of_v1[0], nodes_of_v1[1], "rule 2: {created:?}");
    // The same PUT again is idempotent.
    assert_eq!(
        api.put_volume(&v1, volume_body(VOL, 2)).await.unwrap().spec,
        created.spec
    );
    api.put_volume(&v2, volume_body(VOL, 1)).await.unwrap();
    let mut thin = volume_body(2 * VOL, 1);
    thin.thin = true;
    thin.labels = Some([("app".to_string(), "db".to_string())].into());
    let v = api.put_volume(&v3, thin).await.unwrap();
    assert!(v.spec.thin);
    assert_eq!(
        v.spec.labels.unwrap().get("app").map(String::as_str),
        Some("db")
    );

    // Paging: all, then pages of 2.
    let all = api.get_volumes(0, None).await.unwrap();
    assert_eq!(
        volume_ids(&all.entries),
        [&v1, &v2, &v3].into_iter().cloned().collect()
    );
    assert_eq!(all.next_token, None);
    let page1 = api.get_volumes(2, None).await.unwrap();
    assert_eq!(page1.entries.len(), 2);
    assert_eq!(page1.next_token, Some(2));
    let page2 = api.get_volumes(2, page1.next_token).await.unwrap();
    assert_eq!(page2.entries.len(), 1);
    assert_eq!(page2.next_token, None);
    let mut paged = page1.entries.clone();
    paged.extend(page2.entries);
    assert_eq!(volume_ids(&paged), volume_ids(&all.entries));
    assert_eq!(
        api.get_volumes(3, None).await.unwrap().next_token,
        None,
        "an exact last page has no next token"
    );
    assert_eq!(api.get_volume(&v1).await.unwrap().spec, created.spec);

    // Replicas: listed and fetched one by one, where the volume says.
    let replicas = api.get_replicas().await.unwrap();
    let v1_now = api.get_volume(&v1).await.unwrap();
    for (uuid, topo) in &v1_now.state.replica_topology {
        let r = api.get_replica(uuid).await.unwrap();
        assert!(replicas.contains(&r), "{r:?} not in the list");
        assert_eq!(Some(&r.node), topo.node.as_ref());
        assert_eq!(Some(&r.pool), topo.pool.as_ref());
        assert_eq!(r.status, ReplicaStatus::Online);
        assert!(r.size >= VOL && !r.thin, "{r:?}");
    }
    // v1's two, v2's and v3's.
    assert_eq!(replicas.len(), 4, "{replicas:?}");

    // Replica count: 1 -> 3 (one per node) -> 1.
    let v = api.put_volume_replica_count(&v2, 3).await.unwrap();
    assert_eq!(v.spec.num_replicas, 3);
    assert_eq!(replica_nodes(&v), ["node-1", "node-2", "node-3"]);
    let three: Vec<String> = v.state.replica_topology.into_keys().collect();
    let v = api.put_volume_replica_count(&v2, 1).await.unwrap();
    assert_eq!(v.spec.num_replicas, 1);
    assert_eq!(v.state.replica_topology.len(), 1, "{v:?}");
    let removed: Vec<String> = three
        .into_iter()
        .filter(|r| !v.state.replica_topology.contains_key(r))
        .collect();
    assert_eq!(removed.len(), 2);
    wait_replicas_gone(api, &removed).await;
    assert_eq!(api.get_replicas().await.unwrap().len(), 4);

    // Size: grow the unpublished v2; its replica grows with it.
    let grown = VOL + 8 * MIB;
    let v = api
        .put_volume_size(&v2, ResizeVolumeBody { size: grown })
        .await
        .unwrap();
    assert_eq!((v.spec.size, v.state.size), (grown, grown));
    let uuid = v.state.replica_topology.keys().next().unwrap();
    assert!(api.get_replica(uuid).await.unwrap().size >= grown);
    assert!(api
        .get_specs()
        .await
        .unwrap()
        .replicas
        .iter()
        .any(|r| &r.uuid == uuid && r.size == grown));

    // Target: publish v1 on node-1 -> a nexus there with both replicas.
    let v = api
        .put_volume_target(&v1, publish_body("node-1"))
        .await
        .unwrap();
    let target = v.spec.target.clone().unwrap();
    assert_eq!(target.node, "node-1");
    assert_eq!(target.protocol, Protocol::Nvmf);
    assert_eq!(target.frontend_nodes, ["test-host"]);
    let nexus = v.state.target.clone().unwrap();
    assert_eq!(nexus.node, "node-1");
    assert!(nexus.device_uri.starts_with("nvmf://"), "{nexus:?}");
    assert_eq!(nexus.children.len(), 2, "{nexus:?}");
    assert_eq!(api.get_nexus(&nexus.uuid).await.unwrap().uuid, nexus.uuid);
    let nexuses = api.get_nexuses().await.unwrap();
    assert_eq!(
        nexuses.iter().map(|n| n.uuid.as_str()).collect::<Vec<_>>(),
        [nexus.uuid.as_str()]
    );
    // Publishing again on the same node is idempotent.
    assert_eq!(
        api.put_volume_target(&v1, publish_body("node-1"))
            .await
            .unwrap()
            .spec
            .target,
        Some(target)
    );
    let history = api.get_rebuild_history(&v1).await.unwrap();
    assert_eq!(history.target_uuid, v1);
    assert!(
        history
            .records
            .iter()
            .all(|r| r.rebuild_job_state != "failed"),
        "{history:?}"
    );
    let specs = api.get_specs().await.unwrap();
    let nexus_spec = specs.nexuses.iter().find(|n| n.uuid == nexus.uuid).unwrap();
    assert_eq!(nexus_spec.owner.as_deref(), Some(v1.as_str()));
    assert_eq!(nexus_spec.node, "node-1");

    // Unpublish: the nexus goes.
    let v = api.del_volume_target(&v1, false).await.unwrap();
    assert!(v.spec.target.is_none() && v.state.target.is_none(), "{v:?}");
    refused(api.get_nexus(&nexus.uuid).await, ErrorKind::NotFound);
    assert!(api.get_specs().await.unwrap().nexuses.is_empty());
    // Unpublishing an unpublished volume is idempotent.
    assert!(api
        .del_volume_target(&v1, true)
        .await
        .unwrap()
        .spec
        .target
        .is_none());
    let history = api.get_rebuild_history(&v1).await.unwrap();
    assert!(history.records.is_empty(), "{history:?}");

    // Delete v3: its replica goes too.
    let v3_replicas: Vec<String> = api
        .get_volume(&v3)
        .await
        .unwrap()
        .state
        .replica_topology
        .into_keys()
        .collect();
    api.del_volume(&v3).await.unwrap();
    refused(api.get_volume(&v3).await, ErrorKind::NotFound);
    wait_replicas_gone(api, &v3_replicas).await;
    assert!(!api
        .get_specs()
        .await
        .unwrap()
        .replicas
        .iter()
        .any(|r| v3_replicas.contains(&r.uuid)));

    // ------------------------------------------- node labels, cordon, drain
    let n3 = api.label_node("node-3", "zone", Some("c")).await.unwrap();
    assert_eq!(
        n3.spec.unwrap().labels.get("zone").map(String::as_str),
        Some("c")
    );
    let mut body = volume_body(VOL, 1);
    body.topology = Some(Topology {
        node_topology: Some(LabelledTopology {
            inclusion: [("zone".to_string(), "c".to_string())].into(),
            exclusion: Default::default(),
        }),
        pool_topology: None,
    });
    let zoned = new_id();
    let v = api.put_volume(&zoned, body).await.unwrap();
    assert_eq!(replica_nodes(&v), ["node-3"]);
    api.del_volume(&zoned).await.unwrap();
    let n3 = api.label_node("node-3", "zone", None).await.unwrap();
    assert!(n3.spec.unwrap().labels.is_empty());
    // At most 64 labels: the 65th is refused and changes nothing.
    for i in 0..64 {
        api.label_node("node-3", &format!("k{i}"), Some("v"))
            .await
            .unwrap();
    }
    let e = refused(
        api.label_node("node-3", "k64", Some("v")).await,
        ErrorKind::InvalidArgument,
    );
    assert!(e.message.contains("at most 64"), "{e:?}");
    let n3 = api.get_node("node-3").await.unwrap();
    assert_eq!(n3.spec.unwrap().labels.len(), 64);
    // Overwriting an existing key is still fine.
    api.label_node("node-3", "k0", Some("w")).await.unwrap();
    let mut crowded = volume_body(VOL, 1);
    crowded.labels = Some(
        (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect(),
    );
    refused(
        api.put_volume(&new_id(), crowded).await,
        ErrorKind::InvalidArgument,
    );
    for i in 0..64 {
        api.label_node("node-3", &format!("k{i}"), None)
            .await
            .unwrap();
    }

    // Cordon node-3: a 3-replica volume no longer fits; uncordon: it does.
    let n3 = api.put_node_cordon("node-3", "maintenance").await.unwrap();
    let cd = n3.spec.unwrap().cordon_drain_state;
    assert_eq!(cd.cordon_labels, ["maintenance"]);
    assert!(cd.drain_labels.is_empty() && cd.drain_status.is_none());
    let wide = new_id();
    let e = refused(
        api.put_volume(&wide, volume_body(VOL, 3)).await,
        ErrorKind::InvalidArgument,
    );
    assert!(e.message.contains("exceeds the 2 nodes"), "{e:?}");
    let n3 = api.del_node_cordon("node-3", "maintenance").await.unwrap();
    assert!(!n3.spec.unwrap().cordon_drain_state.is_cordoned());
    let v = api.put_volume(&wide, volume_body(VOL, 3)).await.unwrap();
    assert_eq!(replica_nodes(&v), ["node-1", "node-2", "node-3"]);
    api.del_volume(&wide).await.unwrap();

    // Drain node-2 with v1 published there: the target moves off it.
    let v = api
        .put_volume_target(&v1, publish_body("node-2"))
        .await
        .unwrap();
    assert_eq!(v.spec.target.unwrap().node, "node-2");
    let n2 = api.put_node_drain("node-2", "upgrade").await.unwrap();
    let cd = n2.spec.unwrap().cordon_drain_state;
    assert_eq!(cd.drain_labels, ["upgrade"]);
    assert!(cd.drain_status.is_some());
    eventually("node-2 drained", 40, || async {
        let n = api.get_node("node-2").await.map_err(|e| e.to_string())?;
        let v = api.get_volume(&v1).await.map_err(|e| e.to_string())?;
        let status = n.spec.unwrap().cordon_drain_state.drain_status;
        let target = v.spec.target.map(|t| t.node);
        if status == Some(DrainStatus::Drained) && target.as_deref().is_some_and(|t| t != "node-2")
        {
            Ok(())
        } else {
            Err(format!("drain {status:?}, target {target:?}"))
        }
    })
    .await;
    let v = api.get_volume(&v1).await.unwrap();
    assert_eq!(v.state.target.unwrap().children.len(), 2);
    // Removing the drain label ends the drain and the cordon.
    let n2 = api.del_node_cordon("node-2", "upgrade").await.unwrap();
    let cd = n2.spec.unwrap().cordon_drain_state;
    assert!(!cd.is_cordoned() && cd.drain_status.is_none(), "{cd:?}");

    // ---------------------------------------------------------------- specs
    let specs = api.get_specs().await.unwrap();
    assert_eq!(specs.nodes.len(), 3);
    assert!(specs
        .nodes
        .iter()
        .all(|n| n.labels.is_empty() && !n.cordon_drain_state.is_cordoned()));
    assert_eq!(
        specs
            .pools
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );
    let vols: BTreeSet<String> = specs.volumes.iter().map(|v| v.uuid.clone()).collect();
    assert_eq!(vols, [v1.clone(), v2.clone()].into());
    assert_eq!(specs.replicas.len(), 3, "{:?}", specs.replicas);
    assert!(specs
        .replicas
        .iter()
        .all(|r| r.status == SpecStatus::Created
            && r.owners.volume.as_ref().is_some_and(|v| vols.contains(v))));
    assert_eq!(specs.nexuses.len(), 1);
    assert_eq!(specs.nexuses[0].owner.as_deref(), Some(v1.as_str()));

    // Tear down through the API: nothing is left.
    api.del_volume(&v1).await.unwrap();
    api.del_volume(&v2).await.unwrap();
    for p in ["p1", "p2", "p3"] {
        api.del_pool(p).await.unwrap();
    }
    let specs = api.get_specs().await.unwrap();
    assert!(
        specs.pools.is_empty()
            && specs.volumes.is_empty()
            && specs.replicas.is_empty()
            && specs.nexuses.is_empty(),
        "{specs:?}"
    );
    assert_no_server_error(&rest);
}
