//! Bad input: each refused with a 4xx and a stable kind, and nothing
//! changed by any of it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_kind_and_changes_nothing() {
    let rest = Rest::start();
    let api = &rest.api;
    let c = &rest.cluster;
    rest.nodes_online().await;
    rest.make_pools().await;
    // a: published on node-1 with 2 replicas; b: unpublished, 1 replica.
    let a = new_id();
    let b = new_id();
    api.put_volume(&a, volume_body(VOL, 2)).await.unwrap();
    api.put_volume_target(&a, publish_body("node-1"))
        .await
        .unwrap();
    api.put_volume(&b, volume_body(VOL, 1)).await.unwrap();
    let a_pool = replica_pools(&api.get_volume(&a).await.unwrap())[0].clone();
    let a_pool_node = api.get_pool(&a_pool).await.unwrap().spec.unwrap().node;
    let other_node = if a_pool_node == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    let before = api.get_specs().await.unwrap();
    let fresh = new_id();

    // Malformed and out-of-range bodies, over raw HTTP.
    let json = Some("application/json");
    let put_vol = format!("/v0/volumes/{fresh}");
    let odd_size = format!(r#"{{"size":{}}}"#, VOL + 1);
    let (size_b, count_b, target_b) = (
        format!("/v0/volumes/{b}/size"),
        format!("/v0/volumes/{b}/replica_count"),
        format!("/v0/volumes/{b}/target"),
    );
    let px = "/v0/nodes/node-1/pools/px".to_string();
    let (bad, inval) = (ErrorKind::Deserialize, ErrorKind::InvalidArgument);
    #[rustfmt::skip]
    let cases: Vec<RawCase> = vec![
        ("PUT", put_vol.clone(), json, "not json", 400, bad, "invalid request body"),
        ("PUT", put_vol.clone(), json, "[]", 400, bad, "must be of type object"),
        ("PUT", put_vol.clone(), json, "", 400, bad, "missing request body"),
        ("PUT", put_vol.clone(), None, r#"{"size":1048576,"replicas":1}"#, 400, bad, "content-type"),
        ("PUT", put_vol.clone(), Some("text/plain"), r#"{"size":1048576,"replicas":1}"#, 400, bad, "not application/json"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576}"#, 400, bad, "missing field `replicas`"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":1,"colour":"red"}"#, 400, bad, "unknown field `colour`"),
        ("PUT", put_vol.clone(), json, r#"{"size":"1048576","replicas":1}"#, 400, bad, "'size' must be of type integer"),
        ("PUT", put_vol.clone(), json, r#"{"size":1.5,"replicas":1}"#, 400, bad, "'size' must be of type integer"),
        ("PUT", put_vol.clone(), json, r#"{"size":-1048576,"replicas":1}"#, 400, bad, "at 'size'"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":-1}"#, 400, bad, "at 'replicas'"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":256}"#, 400, bad, "at 'replicas'"),
        ("PUT", put_vol.clone(), json, r#"{"size":0,"replicas":1}"#, 400, inval, "greater than 0"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":0}"#, 400, inval, "at least 1 replica"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":4}"#, 400, inval, "exceeds the 3 nodes"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048577,"replicas":1}"#, 400, inval, "multiple of 512"),
        ("PUT", put_vol.clone(), json, r#"{"size":1048576,"replicas":1,"topology":{"node_topology":{"inclusion":[]}}}"#, 400, bad, "topology"),
        ("PUT", "/v0/volumes/not-a-uuid".into(), json, r#"{"size":1048576,"replicas":1}"#, 400, inval, "is not a uuid"),
        ("PUT", size_b.clone(), json, r#"{"size":-5}"#, 400, bad, "at 'size'"),
        ("PUT", size_b.clone(), json, r#"{"size":"big"}"#, 400, bad, "'size'"),
        ("PUT", size_b.clone(), json, r#"{"size":0}"#, 400, inval, "greater than 0"),
        ("PUT", size_b.clone(), json, r#"{"size":1048576}"#, 400, inval, "cannot shrink"),
        ("PUT", size_b.clone(), json, &odd_size, 400, inval, "multiple of 512"),
        ("PUT", format!("{count_b}/0"), None, "", 400, inval, "at least 1"),
        ("PUT", format!("{count_b}/-1"), None, "", 400, inval, "not a number from 1 to 255"),
        ("PUT", format!("{count_b}/4"), None, "", 400, inval, "exceeds the 3 nodes"),
        ("PUT", format!("{count_b}/300"), None, "", 400, inval, "not a number from 1 to 255"),
        ("PUT", target_b.clone(), json, r#"{"protocol":"iscsi"}"#, 400, bad, "protocol"),
        ("PUT", target_b.clone(), json, r#"{"protocol":"none"}"#, 400, inval, "nvmf"),
        ("PUT", target_b.clone(), json, r#"{"protocol":"nvmf","node":"a/b"}"#, 400, inval, "must not contain '/'"),
        ("PUT", px.clone(), json, r#"{"disks":[]}"#, 400, inval, "exactly one disk"),
        ("PUT", px.clone(), json, r#"{"disks":["aio:///a","aio:///b"]}"#, 400, inval, "exactly one disk"),
        ("PUT", px.clone(), json, r#"{"disks":[""]}"#, 400, inval, "must not be empty"),
        ("PUT", px.clone(), json, r#"{}"#, 400, bad, "missing field `disks`"),
        ("PUT", px.clone(), json, r#"{"disks":"aio:///a"}"#, 400, bad, "'disks' must be of type array"),
        ("PUT", px.clone(), json, r#"{"disks":["bogus://x"]}"#, 400, inval, "bogus"),
        ("GET", "/v0/volumes?max_entries=-1".into(), None, "", 400, inval, "max_entries"),
        ("GET", "/v0/volumes?starting_token=x".into(), None, "", 400, inval, "starting_token"),
        ("GET", "/v0/volumes?starting_token=9".into(), None, "", 400, inval, "starting_token 9"),
        ("GET", "/v0/replicas/42".into(), None, "", 400, inval, "is not a uuid"),
        ("PUT", "/v0/nodes/node-1/label/zone".into(), None, "", 405, ErrorKind::Unimplemented, "takes DELETE"),
        ("DELETE", "/v0/specs".into(), None, "", 405, ErrorKind::Unimplemented, "not allowed"),
        ("GET", "/v0/nothing-here".into(), None, "", 404, ErrorKind::NotFound, "no such endpoint"),
    ];
    for (method, path, ct, body, status, kind, needle) in &cases {
        let (got, error) = rest.raw(method, path, *ct, body).await;
        let what = format!("{method} {path} {body:?}");
        assert_eq!(got, *status, "{what}: {error:?}");
        let error = error.unwrap_or_else(|| panic!("{what}: the answer is not a RestError"));
        assert_eq!(error.kind, *kind, "{what}: {error:?}");
        assert!(
            error.message.contains(needle),
            "{what}: {error:?} lacks {needle:?}"
        );
    }

    // Unknown ids: 404 NotFound, naming what is missing.
    let ghost = new_id();
    let nf = ErrorKind::NotFound;
    let named = |e: RestError, what: &str| {
        assert!(e.message.contains(what), "{e:?} does not name {what}");
    };
    named(refused(api.get_volume(&ghost).await, nf), &ghost);
    named(refused(api.del_volume(&ghost).await, nf), &ghost);
    named(
        refused(api.put_volume_replica_count(&ghost, 1).await, nf),
        &ghost,
    );
    named(
        refused(
            api.put_volume_size(&ghost, ResizeVolumeBody { size: VOL })
                .await,
            nf,
        ),
        &ghost,
    );
    named(
        refused(
            api.put_volume_target(&ghost, publish_body("node-1")).await,
            nf,
        ),
        &ghost,
    );
    named(
        refused(api.del_volume_target(&ghost, false).await, nf),
        &ghost,
    );
    named(refused(api.get_rebuild_history(&ghost).await, nf), &ghost);
    named(refused(api.get_replica(&ghost).await, nf), &ghost);
    named(refused(api.get_nexus(&ghost).await, nf), &ghost);
    named(refused(api.get_pool("nope").await, nf), "nope");
    named(refused(api.del_pool("nope").await, nf), "nope");
    named(
        refused(api.del_node_pool("node-1", "nope").await, nf),
        "nope",
    );
    named(
        refused(api.del_node_pool(other_node, &a_pool).await, nf),
        &a_pool,
    );
    named(
        refused(api.label_pool("nope", "k", Some("v")).await, nf),
        "nope",
    );
    named(
        refused(api.label_pool("p1", "never", None).await, nf),
        "never",
    );
    named(refused(api.get_node("node-9").await, nf), "node-9");
    named(refused(api.get_node_pools("node-9").await, nf), "node-9");
    named(
        refused(
            api.put_node_pool("node-9", "p9", pool_body(c.disk("p9", POOL)))
                .await,
            nf,
        ),
        "node-9",
    );
    named(
        refused(api.put_node_cordon("node-9", "x").await, nf),
        "node-9",
    );
    named(
        refused(api.del_node_cordon("node-1", "never").await, nf),
        "never",
    );
    named(
        refused(api.put_node_drain("node-9", "x").await, nf),
        "node-9",
    );
    named(
        refused(api.label_node("node-9", "k", Some("v")).await, nf),
        "node-9",
    );
    named(
        refused(api.label_node("node-1", "never", None).await, nf),
        "never",
    );

    // Replica counts of 0 and above the node count.
    let e = refused(
        api.put_volume(&fresh, volume_body(VOL, 0)).await,
        ErrorKind::InvalidArgument,
    );
    assert!(e.message.contains("at least 1"), "{e:?}");
    let e = refused(
        api.put_volume(&fresh, volume_body(VOL, 4)).await,
        ErrorKind::InvalidArgument,
    );
    assert!(
        e.message.contains("replica count 4 exceeds the 3 nodes"),
        "{e:?}"
    );
    let e = refused(
        api.put_volume_replica_count(&b, 0).await,
        ErrorKind::InvalidArgument,
    );
    assert!(e.message.contains("at least 1"), "{e:?}");
    let e = refused(
        api.put_volume_replica_count(&b, 4).await,
        ErrorKind::InvalidArgument,
    );
    assert!(
        e.message.contains("replica count 4 exceeds the 3 nodes"),
        "{e:?}"
    );
    refused(
        api.put_volume(&fresh, volume_body(0, 1)).await,
        ErrorKind::InvalidArgument,
    );

    // Conflicts.
    let e = refused(
        api.put_node_pool("node-1", "p1-twin", pool_body(c.disk("p1", POOL)))
            .await,
        ErrorKind::InUse,
    );
    assert!(
        e.message.contains("p1"),
        "the pool holding the disk is named: {e:?}"
    );
    let e = refused(
        api.put_node_pool("node-2", "p1", pool_body(c.disk("other", POOL)))
            .await,
        ErrorKind::AlreadyExists,
    );
    assert!(e.message.contains("node-1"), "{e:?}");
    let e = refused(
        api.put_volume_target(&a, publish_body("node-2")).await,
        ErrorKind::AlreadyPublished,
    );
    assert!(e.message.contains("node-1"), "{e:?}");
    let e = refused(api.del_pool(&a_pool).await, ErrorKind::InUse);
    assert!(e.message.contains(&a_pool), "{e:?}");
    refused(
        api.del_node_pool(&a_pool_node, &a_pool).await,
        ErrorKind::InUse,
    );
    let e = refused(
        api.put_volume(&b, volume_body(2 * VOL, 1)).await,
        ErrorKind::AlreadyExists,
    );
    assert!(e.message.contains(&b), "{e:?}");
    let e = refused(
        api.put_volume_size(&a, ResizeVolumeBody { size: 2 * VOL + 1 })
            .await,
        ErrorKind::InvalidArgument,
    );
    assert!(e.message.contains("multiple of 512"), "{e:?}");
    // A volume larger than any pool.
    refused(
        api.put_volume(&fresh, volume_body(1 << 40, 1)).await,
        ErrorKind::ResourceExhausted,
    );

    // Nothing changed.
    let after = api.get_specs().await.unwrap();
    assert_eq!(after, before);
    refused(api.get_volume(&fresh).await, ErrorKind::NotFound);
    let pools: Vec<String> = api
        .get_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(pools, ["p1", "p2", "p3"]);
    assert_eq!(
        api.get_volume(&a)
            .await
            .unwrap()
            .spec
            .target
            .map(|t| t.node)
            .as_deref(),
        Some("node-1")
    );
    assert_no_server_error(&rest);
}
