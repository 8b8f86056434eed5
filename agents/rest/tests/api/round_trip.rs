//! Every `CoreApi` method through `RestClient` -> router -> double: reads
//! equal what the double answers directly, writes equal the state they
//! leave, errors arrive as the double's RestError, unchanged.

use std::collections::BTreeMap;

use openapi::models::*;
use openapi::{CoreApi, ErrorKind, RestError};

use super::routing_double::*;
use super::support::TestServer;

fn create_body() -> CreateVolumeBody {
    CreateVolumeBody {
        size: 5 << 20,
        replicas: 2,
        thin: true,
        policy: VolumePolicy { self_heal: false },
        topology: Some(Topology {
            node_topology: Some(LabelledTopology {
                inclusion: BTreeMap::from([("zone".into(), "a".into())]),
                exclusion: BTreeMap::new(),
            }),
            pool_topology: None,
        }),
        labels: Some(BTreeMap::from([("app".into(), "db".into())])),
        affinity_group: Some(AffinityGroup { id: "sts-1".into() }),
    }
}

#[tokio::test]
async fn reads_equal_the_api_behind() {
    let server = TestServer::open().await;
    let client = server.client();
    let api = server.double.clone();

    assert_eq!(
        client.get_volumes(0, None).await,
        api.get_volumes(0, None).await
    );
    assert_eq!(
        client.get_volume(VOLUME_1).await,
        api.get_volume(VOLUME_1).await
    );
    assert_eq!(
        client.get_rebuild_history(VOLUME_1).await,
        api.get_rebuild_history(VOLUME_1).await
    );
    assert_eq!(
        client.get_volume_stats(VOLUME_1).await,
        api.get_volume_stats(VOLUME_1).await
    );
    assert_eq!(
        client
            .get_volume_stats(VOLUME_1)
            .await
            .expect("stats")
            .stats
            .bytes_written,
        7 * 4096
    );
    // An unpublished volume has no statistics: 412 NotPublished, as is.
    assert_eq!(
        client.get_volume_stats(VOLUME_2).await.map_err(|e| e.kind),
        Err(ErrorKind::NotPublished)
    );
    assert_eq!(
        client.get_pool_stats(None, "pool-2").await,
        api.get_pool_stats(None, "pool-2").await
    );
    assert_eq!(
        client.get_pool_stats(Some("node-2"), "pool-2").await,
        api.get_pool_stats(Some("node-2"), "pool-2").await
    );
    assert_eq!(
        client
            .get_pool_stats(Some("node-1"), "pool-2")
            .await
            .map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(client.get_pools().await, api.get_pools().await);
    assert_eq!(
        client.get_pool("pool-2").await,
        api.get_pool("pool-2").await
    );
    assert_eq!(
        client.get_node_pools("node-3").await,
        api.get_node_pools("node-3").await
    );
    assert_eq!(client.get_replicas().await, api.get_replicas().await);
    assert_eq!(
        client.get_replica(REPLICA_1).await,
        api.get_replica(REPLICA_1).await
    );
    assert_eq!(client.get_nexuses().await, api.get_nexuses().await);
    assert_eq!(
        client.get_nexus(NEXUS_1).await,
        api.get_nexus(NEXUS_1).await
    );
    assert_eq!(client.get_nodes().await, api.get_nodes().await);
    assert_eq!(
        client.get_node("node-1").await,
        api.get_node("node-1").await
    );
    assert_eq!(client.get_specs().await, api.get_specs().await);

    // The answers are not empty: the comparison means something.
    assert_eq!(client.get_nodes().await.expect("nodes").len(), 3);
    assert_eq!(
        client
            .get_volumes(0, None)
            .await
            .expect("volumes")
            .entries
            .len(),
        3
    );
}

#[tokio::test]
async fn volume_writes_round_trip() {
    let server = TestServer::open().await;
    let client = server.client();
    let api = server.double.clone();
    let id = "44444444-4444-4444-8444-444444444444";

    let created = client.put_volume(id, create_body()).await.expect("created");
    assert_eq!(created.spec.size, 5 << 20);
    assert_eq!(created.spec.affinity_group, create_body().affinity_group);
    assert_eq!(Ok(created), api.get_volume(id).await);

    let scaled = client
        .put_volume_replica_count(id, 3)
        .await
        .expect("scaled");
    assert_eq!(scaled.spec.num_replicas, 3);
    assert_eq!(Ok(scaled), api.get_volume(id).await);

    let grown = client
        .put_volume_size(id, ResizeVolumeBody { size: 10 << 20 })
        .await
        .expect("grown");
    assert_eq!(grown.spec.size, 10 << 20);
    assert_eq!(Ok(grown), api.get_volume(id).await);

    let published = client
        .put_volume_target(id, PublishVolumeBody::nvmf(Some("node-2"), Some("node-3")))
        .await
        .expect("published");
    assert_eq!(
        published.spec.target,
        Some(VolumeTarget {
            node: "node-2".into(),
            protocol: Protocol::Nvmf,
            frontend_nodes: vec!["node-3".into()],
        })
    );
    assert_eq!(Ok(published), api.get_volume(id).await);

    let unpublished = client
        .del_volume_target(id, false)
        .await
        .expect("unpublished");
    assert_eq!(unpublished.spec.target, None);
    assert_eq!(Ok(unpublished), api.get_volume(id).await);
    // `force` travels: without it the double refuses a second unpublish.
    assert_eq!(
        client.del_volume_target(id, false).await.map(|_| ()),
        Err(RestError::new(
            ErrorKind::NotPublished,
            format!("volume {id} is not published")
        ))
    );
    client
        .del_volume_target(id, true)
        .await
        .expect("forced unpublish");

    client.del_volume(id).await.expect("deleted");
    assert_eq!(
        api.get_volume(id).await,
        Err(RestError::not_found(format!("volume {id}")))
    );

    let calls = api.calls();
    for expected in [
        format!("put_volume({id})"),
        format!("put_volume_replica_count({id}, 3)"),
        format!("put_volume_size({id}, {})", 10 << 20),
        format!("put_volume_target({id})"),
        format!("del_volume_target({id}, false)"),
        format!("del_volume_target({id}, true)"),
        format!("del_volume({id})"),
    ] {
        assert!(calls.contains(&expected), "{expected} not in {calls:?}");
    }
}

#[tokio::test]
async fn pool_writes_round_trip() {
    let server = TestServer::open().await;
    let client = server.client();
    let api = server.double.clone();

    let created = client
        .put_node_pool(
            "node-2",
            "pool-new",
            CreatePoolBody {
                disks: vec!["malloc:///malloc0?size_mb=64".into()],
                labels: Some(BTreeMap::from([(
                    "openebs.io/created-by".into(),
                    "operator-diskpool".into(),
                )])),
            },
        )
        .await
        .expect("created");
    assert_eq!(Ok(created), api.get_pool("pool-new").await);

    let labelled = client
        .label_pool("pool-new", "openebs.io/tier", Some("fast=yes"))
        .await
        .expect("labelled");
    let labels = &labelled.spec.as_ref().expect("spec").labels;
    assert_eq!(
        labels.get("openebs.io/tier").map(String::as_str),
        Some("fast=yes")
    );
    assert_eq!(Ok(labelled), api.get_pool("pool-new").await);

    let unlabelled = client
        .label_pool("pool-new", "openebs.io/tier", None)
        .await
        .expect("unlabelled");
    assert!(!unlabelled
        .spec
        .as_ref()
        .expect("spec")
        .labels
        .contains_key("openebs.io/tier"));

    client
        .del_node_pool("node-2", "pool-new")
        .await
        .expect("deleted from the node");
    client.del_pool("pool-1").await.expect("deleted");
    assert!(api.get_pool("pool-new").await.is_err());
    assert!(api.get_pool("pool-1").await.is_err());
    assert!(api
        .calls()
        .contains(&"label_pool(pool-new, openebs.io/tier, Some(\"fast=yes\"))".to_string()));
}

#[tokio::test]
async fn node_writes_round_trip() {
    let server = TestServer::open().await;
    let client = server.client();
    let api = server.double.clone();

    let cordoned = client
        .put_node_cordon("node-1", "maintenance")
        .await
        .expect("cordoned");
    let state = &cordoned.spec.as_ref().expect("spec").cordon_drain_state;
    assert_eq!(state.cordon_labels, vec!["maintenance".to_string()]);
    assert_eq!(Ok(cordoned), api.get_node("node-1").await);

    let uncordoned = client
        .del_node_cordon("node-1", "maintenance")
        .await
        .expect("uncordoned");
    assert!(!uncordoned
        .spec
        .as_ref()
        .expect("spec")
        .cordon_drain_state
        .is_cordoned());

    let draining = client
        .put_node_drain("node-2", "upgrade")
        .await
        .expect("draining");
    assert_eq!(
        draining
            .spec
            .as_ref()
            .expect("spec")
            .cordon_drain_state
            .drain_status,
        Some(DrainStatus::Draining)
    );
    assert_eq!(Ok(draining), api.get_node("node-2").await);

    let labelled = client
        .label_node("node-3", "openebs.io/engine", Some("mayastor"))
        .await
        .expect("labelled");
    assert_eq!(Ok(labelled.clone()), api.get_node("node-3").await);
    assert_eq!(
        labelled
            .spec
            .as_ref()
            .expect("spec")
            .labels
            .get("openebs.io/engine")
            .map(String::as_str),
        Some("mayastor")
    );
    let unlabelled = client
        .label_node("node-3", "openebs.io/engine", None)
        .await
        .expect("unlabelled");
    assert!(unlabelled.spec.as_ref().expect("spec").labels.is_empty());
}

#[tokio::test]
async fn errors_arrive_unchanged() {
    let server = TestServer::open().await;
    let client = server.client();

    assert_eq!(
        client.get_volume(MISSING).await,
        Err(RestError::not_found(format!("volume {MISSING}")))
    );
    assert_eq!(
        client.get_node("node-9").await,
        Err(RestError::not_found("node node-9"))
    );
    let exists = client
        .put_volume(VOLUME_2, create_body())
        .await
        .expect_err("already exists");
    assert_eq!(exists.kind, ErrorKind::AlreadyExists);
    let published = client
        .put_volume_target(VOLUME_1, PublishVolumeBody::nvmf(None, None))
        .await
        .expect_err("already published");
    assert_eq!(published.kind, ErrorKind::AlreadyPublished);
    assert_eq!(
        client
            .label_node("node-1", "absent", None)
            .await
            .expect_err("no such label")
            .kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn ids_with_odd_characters_stay_one_segment() {
    let server = TestServer::open().await;
    let client = server.client();
    let api = server.double.clone();

    // Spaces, '%', '?', '#' and unicode are fine in node names.
    for name in ["node 1", "node%41", "node?x#y", "nœud-ü"] {
        assert_eq!(
            client.get_node(name).await,
            Err(RestError::not_found(format!("node {name}")))
        );
        assert!(
            api.calls().contains(&format!("get_node({name})")),
            "{name}: {:?}",
            api.calls()
        );
    }
    // '/' in a label key is encoded and decoded back.
    client
        .label_node("node-1", "a/b/c", Some("v w"))
        .await
        .expect("labelled");
    assert!(api
        .calls()
        .contains(&"label_node(node-1, a/b/c, Some(\"v w\"))".to_string()));
    // ... but never accepted inside a node name.
    assert_eq!(
        client.get_node("a/b").await.expect_err("refused").kind,
        ErrorKind::InvalidArgument
    );
}
