//! `csi-controller` against a real 3-node local cluster, every RPC through a
//! real tonic client on its unix socket: Probe, capabilities, every
//! StorageClass parameter accepted and each bad value refused with nothing
//! created, idempotency, ALREADY_EXISTS and ABORTED, publish (node choice,
//! publish context), expand, get, validate, unpublish, delete, GetCapacity
//! against what a thick volume can really take, ListVolumes paging over
//! 250 volumes, malformed or unknown ids with the CSI codes, and an
//! abnormal volume condition once an engine holding a replica is SIGKILLed.
//! One cluster for the whole file (loopback 127.0.100.x).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::*;
use csi::v1::{volume_capability::access_mode::Mode, *};
use futures::StreamExt;
use openapi::CoreApi;
use tonic::Code;

const MIB: i64 = 1 << 20;

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

async fn volume_count(rest: &openapi::RestClient) -> usize {
    rest.get_volumes(0, None).await.unwrap().entries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_rpcs_against_a_local_cluster() {
    let cluster = Cluster::up("127.0.100", 3, "512MiB");
    let rest = cluster.rest();
    // The pools CSI may use carry the DiskPool operator's label; node-3's
    // pool is left unlabelled for now.
    for pool in ["pool-1", "pool-2"] {
        rest.label_pool(pool, "openebs.io/created-by", Some("operator-diskpool"))
            .await
            .unwrap();
    }
    for node in ["node-1", "node-2", "node-3"] {
        rest.label_node(node, "tier", Some("gold")).await.unwrap();
    }
    let ctl = Controller::start(&cluster.rest_url, &[]);
    let mut c = ctl.controller();

    // --- Probe ready while REST answers.
    let probe = ctl
        .identity()
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));

    // --- Capabilities.
    let caps: BTreeSet<i32> = c
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .map(|cap| match cap.r#type.unwrap() {
            controller_service_capability::Type::Rpc(r) => r.r#type,
        })
        .collect();
    use controller_service_capability::rpc::Type as T;
    let want: BTreeSet<i32> = [
        T::CreateDeleteVolume,
        T::PublishUnpublishVolume,
        T::ListVolumes,
        T::GetCapacity,
        T::ExpandVolume,
        T::GetVolume,
        T::VolumeCondition,
    ]
    .into_iter()
    .map(|t| t as i32)
    .collect();
    assert_eq!(caps, want);

    // --- Each bad StorageClass value: InvalidArgument naming it, nothing made.
    for (k, v) in [
        ("repl", "0"),
        ("repl", "x"),
        ("protocol", "iscsi"),
        ("thin", "yes"),
        ("fsType", "btrfs"),
        ("ioTimeout", "0"),
        ("nvmeCtrlLossTmo", "-5"),
        ("nvmeKeepAliveTmo", "0"),
        ("nvmeNrIoQueues", "many"),
        ("stsAffinityGroup", "on"),
        ("stsAffinityGroup", "true"),
        ("local", "1"),
        ("poolAffinityTopologyLabel", "zone"),
        ("poolHasTopologyKey", "a=b"),
        ("nodeAffinityTopologyLabel", "=x"),
        ("nodeHasTopologyKey", " "),
        ("replicas", "2"),
    ] {
        let err = c
            .create_volume(create_req("pvc-bad", 4 * MIB, &[(k, v)]))
            .await
            .expect_err(&format!("{k}={v} must be refused"));
        assert_eq!(err.code(), Code::InvalidArgument, "{k}={v}: {err:?}");
        assert!(
            err.message().contains(k) && err.message().contains(&format!("{v:?}")),
            "{k}={v}: {}",
            err.message()
        );
    }
    assert_eq!(volume_count(&rest).await, 0, "nothing was created");

    // --- Every parameter accepted.
    let all_id = "0a1b2c3d-0000-4000-8000-000000000001";
    let all_params = [
        ("repl", "2"),
        ("protocol", "nvmf"),
        ("thin", "true"),
        ("fsType", "xfs"),
        ("ioTimeout", "33"),
        ("nvmeCtrlLossTmo", "1980"),
        ("nvmeKeepAliveTmo", "7"),
        ("nvmeNrIoQueues", "2"),
        ("stsAffinityGroup", "true"),
        ("local", "false"),
        (
            "poolAffinityTopologyLabel",
            "openebs.io/created-by=operator-diskpool",
        ),
        ("poolHasTopologyKey", "openebs.io/created-by"),
        ("nodeAffinityTopologyLabel", "tier: gold"),
        ("nodeHasTopologyKey", "tier"),
        ("csi.storage.k8s.io/pvc/name", "data-web-3"),
        ("csi.storage.k8s.io/pvc/namespace", "shop"),
    ];
    let req = create_req(&format!("pvc-{all_id}"), 8 * MIB, &all_params);
    let made = c.create_volume(req.clone()).await.unwrap().into_inner();
    let vol = made.volume.clone().unwrap();
    assert_eq!(vol.volume_id, all_id);
    assert_eq!(vol.capacity_bytes, 8 * MIB);
    for (k, v) in [
        ("fsType", "xfs"),
        ("ioTimeout", "33"),
        ("nvmeCtrlLossTmo", "1980"),
        ("nvmeKeepAliveTmo", "7"),
        ("nvmeNrIoQueues", "2"),
        ("repl", "2"),
        ("thin", "true"),
    ] {
        assert_eq!(
            vol.volume_context.get(k).map(String::as_str),
            Some(v),
            "{k}"
        );
    }
    let spec = rest.get_volume(all_id).await.unwrap().spec;
    assert_eq!(
        (spec.num_replicas, spec.thin, spec.size),
        (2, true, 8 << 20)
    );
    assert_eq!(spec.affinity_group.unwrap().id, "shop/data-web");
    let topo = spec.topology.unwrap();
    let pools = topo.pool_topology.unwrap().inclusion;
    assert_eq!(
        pools.get("openebs.io/created-by").map(String::as_str),
        Some("operator-diskpool")
    );
    assert_eq!(
        topo.node_topology
            .unwrap()
            .inclusion
            .get("tier")
            .map(String::as_str),
        Some("gold")
    );
    // Its replicas are on the labelled pools only.
    let placed: BTreeSet<String> = rest
        .get_volume(all_id)
        .await
        .unwrap()
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.pool.clone())
        .collect();
    assert_eq!(placed, BTreeSet::from(["pool-1".into(), "pool-2".into()]));

    // --- Idempotent; ALREADY_EXISTS when it differs.
    let again = c.create_volume(req.clone()).await.unwrap().into_inner();
    assert_eq!(again.volume.unwrap().volume_id, all_id);
    assert_eq!(volume_count(&rest).await, 1);
    let mut bigger = req.clone();
    bigger.capacity_range.as_mut().unwrap().required_bytes = 16 * MIB;
    assert_eq!(code(c.create_volume(bigger).await), Code::AlreadyExists);
    let mut other = req.clone();
    other.parameters.insert("ioTimeout".into(), "34".into());
    assert_eq!(code(c.create_volume(other).await), Code::AlreadyExists);
    assert_eq!(rest.get_volume(all_id).await.unwrap().spec.size, 8 << 20);

    // --- Three replicas need node-3's pool: refused, nothing created.
    let three = create_req("pvc-three", 4 * MIB, &[("repl", "3")]);
    let err = c.create_volume(three.clone()).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::ResourceExhausted | Code::InvalidArgument),
        "{err:?}"
    );
    assert_eq!(volume_count(&rest).await, 1);
    rest.label_pool("pool-3", "openebs.io/created-by", Some("operator-diskpool"))
        .await
        .unwrap();

    // --- ABORTED while another call on the same volume is in flight.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let mut c = ctl.controller();
            let req = three.clone();
            tokio::spawn(async move { code(c.create_volume(req).await) })
        })
        .collect();
    let mut codes = Vec::new();
    for r in racers {
        codes.push(r.await.unwrap());
    }
    assert!(codes.contains(&Code::Ok), "{codes:?}");
    assert!(codes.contains(&Code::Aborted), "{codes:?}");
    assert!(
        codes.iter().all(|c| matches!(c, Code::Ok | Code::Aborted)),
        "{codes:?}"
    );
    assert_eq!(
        volume_count(&rest).await,
        2,
        "one volume for all the racers"
    );
    let three_id = csi::controller::service::volume_id_of_name("pvc-three");
    assert_eq!(
        rest.get_volume(&three_id).await.unwrap().spec.num_replicas,
        3
    );

    // --- ControllerPublish: a multi-replica volume's target goes on the
    // CSI node when it is a storage node.
    let publish = |volume: &str, node: &str| ControllerPublishVolumeRequest {
        volume_id: volume.to_owned(),
        node_id: node.to_owned(),
        volume_capability: Some(rwo()),
        ..Default::default()
    };
    let ctx = c
        .controller_publish_volume(publish(all_id, "node-2"))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let uri = &ctx["uri"];
    assert!(
        uri.starts_with("nvmf://127.0.100.2:")
            && uri.ends_with(&format!("nqn.2019-05.io.openebs:{all_id}")),
        "{uri}"
    );
    for (k, v) in [
        ("ioTimeout", "33"),
        ("nvmeCtrlLossTmo", "1980"),
        ("nvmeKeepAliveTmo", "7"),
        ("nvmeNrIoQueues", "2"),
        ("fsType", "xfs"),
    ] {
        assert_eq!(ctx.get(k).map(String::as_str), Some(v), "{k}");
    }
    let target = rest.get_volume(all_id).await.unwrap().spec.target.unwrap();
    assert_eq!(target.node, "node-2");
    assert_eq!(target.frontend_nodes, ["node-2"]);
    // Idempotent; another node is refused while published.
    let ctx2 = c
        .controller_publish_volume(publish(all_id, "node-2"))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx2, ctx);
    assert_eq!(
        code(c.controller_publish_volume(publish(all_id, "node-1")).await),
        Code::FailedPrecondition
    );
    // A CSI node without storage: the core chooses.
    let single = c
        .create_volume(create_req("pvc-single", 4 * MIB, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let ctx = c
        .controller_publish_volume(publish(&single, "app-node-7"))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert!(ctx["uri"].contains(&single));
    let target = rest.get_volume(&single).await.unwrap().spec.target.unwrap();
    assert_eq!(target.frontend_nodes, ["app-node-7"]);

    // --- ControllerGetVolume: published node and a normal condition.
    let got = c
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: all_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = got.status.unwrap();
    assert_eq!(status.published_node_ids, ["node-2"]);
    assert!(!status.volume_condition.unwrap().abnormal);
    assert_eq!(
        got.volume
            .unwrap()
            .volume_context
            .get("fsType")
            .map(String::as_str),
        Some("xfs")
    );

    // --- ValidateVolumeCapabilities.
    let validate = |caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: all_id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let ok = c
        .validate_volume_capabilities(validate(vec![rwo(), block_cap()]))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some(), "{}", ok.message);
    for bad in [
        mount_cap("", Mode::MultiNodeMultiWriter),
        mount_cap("btrfs", Mode::SingleNodeWriter),
    ] {
        let r = c
            .validate_volume_capabilities(validate(vec![bad]))
            .await
            .unwrap()
            .into_inner();
        assert!(r.confirmed.is_none() && !r.message.is_empty());
    }

    // --- ControllerExpandVolume, online (published) and then raw block.
    let expand = |size: i64, cap: VolumeCapability| ControllerExpandVolumeRequest {
        volume_id: all_id.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: size,
            limit_bytes: 0,
        }),
        volume_capability: Some(cap),
        ..Default::default()
    };
    let grown = c
        .controller_expand_volume(expand(12 * MIB, rwo()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, 12 * MIB);
    assert!(grown.node_expansion_required);
    assert_eq!(rest.get_volume(all_id).await.unwrap().spec.size, 12 << 20);
    let block = c
        .controller_expand_volume(expand(16 * MIB, block_cap()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(block.capacity_bytes, 16 * MIB);
    assert!(!block.node_expansion_required);
    // Smaller than now: the current size, nothing shrinks.
    let same = c
        .controller_expand_volume(expand(4 * MIB, rwo()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.capacity_bytes, 16 * MIB);
    let v = rest.get_volume(all_id).await.unwrap();
    assert_eq!(v.spec.size, 16 << 20);
    assert!(v.state.target.is_some(), "still published after the grow");

    // --- Unpublish, idempotent, from the wrong node a no-op.
    let unpublish = |volume: &str, node: &str| ControllerUnpublishVolumeRequest {
        volume_id: volume.to_owned(),
        node_id: node.to_owned(),
        ..Default::default()
    };
    c.controller_unpublish_volume(unpublish(all_id, "node-1"))
        .await
        .unwrap();
    assert!(rest.get_volume(all_id).await.unwrap().spec.target.is_some());
    for _ in 0..2 {
        c.controller_unpublish_volume(unpublish(all_id, "node-2"))
            .await
            .unwrap();
        assert!(rest.get_volume(all_id).await.unwrap().spec.target.is_none());
    }
    c.controller_unpublish_volume(unpublish(&single, "app-node-7"))
        .await
        .unwrap();

    // --- Bad input: malformed and unknown ids, unsupported capabilities.
    let before = volume_count(&rest).await;
    for id in [
        "not-a-uuid",
        "0A1B2C3D-0000-4000-8000-000000000001",
        "11111111-2222-4333-8444-555555555555",
    ] {
        assert_eq!(
            code(
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: id.into(),
                    ..Default::default()
                })
                .await
            ),
            Code::Ok,
            "{id}"
        );
        assert_eq!(
            code(c.controller_publish_volume(publish(id, "node-1")).await),
            Code::NotFound,
            "{id}"
        );
        assert_eq!(
            code(c.controller_unpublish_volume(unpublish(id, "node-1")).await),
            Code::Ok,
            "{id}"
        );
        let mut v = validate(vec![rwo()]);
        v.volume_id = id.into();
        assert_eq!(
            code(c.validate_volume_capabilities(v).await),
            Code::NotFound,
            "{id}"
        );
        let mut e = expand(32 * MIB, rwo());
        e.volume_id = id.into();
        assert_eq!(
            code(c.controller_expand_volume(e).await),
            Code::NotFound,
            "{id}"
        );
        assert_eq!(
            code(
                c.controller_get_volume(ControllerGetVolumeRequest {
                    volume_id: id.into()
                })
                .await
            ),
            Code::NotFound,
            "{id}"
        );
    }
    assert_eq!(
        code(c.delete_volume(DeleteVolumeRequest::default()).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.controller_publish_volume(publish("", "node-1")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.controller_publish_volume(publish(all_id, "")).await),
        Code::InvalidArgument
    );
    let mut no_cap = publish(all_id, "node-1");
    no_cap.volume_capability = None;
    assert_eq!(
        code(c.controller_publish_volume(no_cap).await),
        Code::InvalidArgument
    );
    let mut multi = publish(all_id, "node-1");
    multi.volume_capability = Some(mount_cap("", Mode::MultiNodeMultiWriter));
    assert_eq!(
        code(c.controller_publish_volume(multi).await),
        Code::InvalidArgument
    );
    for bad_caps in [
        vec![],
        vec![mount_cap("", Mode::MultiNodeReaderOnly)],
        vec![mount_cap("ntfs", Mode::SingleNodeWriter)],
        vec![VolumeCapability {
            access_type: None,
            access_mode: None,
        }],
    ] {
        let mut r = create_req("pvc-caps", 4 * MIB, &[]);
        r.volume_capabilities = bad_caps;
        assert_eq!(code(c.create_volume(r).await), Code::InvalidArgument);
    }
    assert_eq!(
        code(c.create_volume(create_req("", 4 * MIB, &[])).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.create_volume(create_req("pvc-neg", -1, &[])).await),
        Code::OutOfRange
    );
    let mut tight = create_req("pvc-tight", 1000, &[]);
    tight.capacity_range.as_mut().unwrap().limit_bytes = 1000;
    assert_eq!(code(c.create_volume(tight).await), Code::OutOfRange);
    assert!(rest.get_volume(all_id).await.unwrap().spec.target.is_none());
    assert_eq!(
        volume_count(&rest).await,
        before,
        "bad input changed nothing"
    );

    // --- Delete, idempotent.
    for id in [all_id, three_id.as_str(), single.as_str()] {
        for _ in 0..2 {
            c.delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        assert_eq!(
            rest.get_volume(id).await.unwrap_err().kind,
            openapi::ErrorKind::NotFound
        );
    }
    assert_eq!(volume_count(&rest).await, 0);

    // --- GetCapacity: exactly what a new thick volume can take.
    let capacity = |params: &[(&str, &str)]| GetCapacityRequest {
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let free = c
        .get_capacity(capacity(&[]))
        .await
        .unwrap()
        .into_inner()
        .available_capacity;
    assert!(free > 256 * MIB, "{free}");
    let over = c
        .create_volume(create_req("pvc-over", free + 512, &[]))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert_eq!(volume_count(&rest).await, 0);
    let exact = c
        .create_volume(create_req("pvc-exact", free, &[]))
        .await
        .unwrap()
        .into_inner();
    let exact_id = exact.volume.unwrap().volume_id;
    // The biggest pool is now full; the next biggest is what is left.
    let next = c
        .get_capacity(capacity(&[]))
        .await
        .unwrap()
        .into_inner()
        .available_capacity;
    assert!(next <= free, "{next} > {free}");
    let three_free = c
        .get_capacity(capacity(&[("repl", "3")]))
        .await
        .unwrap()
        .into_inner()
        .available_capacity;
    assert!(three_free < free);
    let none = c
        .get_capacity(capacity(&[("poolHasTopologyKey", "no-such-label")]))
        .await
        .unwrap()
        .into_inner()
        .available_capacity;
    assert_eq!(none, 0);
    assert_eq!(
        code(c.get_capacity(capacity(&[("repl", "-1")])).await),
        Code::InvalidArgument
    );
    c.delete_volume(DeleteVolumeRequest {
        volume_id: exact_id,
        ..Default::default()
    })
    .await
    .unwrap();

    // --- ListVolumes paging over 250 volumes: each exactly once.
    let names: Vec<String> = (0..250).map(|i| format!("page-{i:03}")).collect();
    let made: Vec<String> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let mut c = ctl.controller();
            async move {
                let req = create_req(&name, MIB, &[("thin", "true")]);
                // ABORTED only when the create limit is reached: retry.
                loop {
                    match c.create_volume(req.clone()).await {
                        Ok(r) => return r.into_inner().volume.unwrap().volume_id,
                        Err(e) if e.code() == Code::Aborted => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await
                        }
                        Err(e) => panic!("{name}: {e:?}"),
                    }
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let made: BTreeSet<String> = made.into_iter().collect();
    assert_eq!(made.len(), 250);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_volumes(ListVolumesRequest {
                max_entries: 7,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 7);
        pages += 1;
        for e in page.entries {
            *seen.entry(e.volume.unwrap().volume_id).or_default() += 1;
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(pages, 250usize.div_ceil(7));
    assert!(seen.values().all(|n| *n == 1), "a volume listed twice");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), made);
    assert_eq!(
        code(
            c.list_volumes(ListVolumesRequest {
                max_entries: 5,
                starting_token: "nonsense".into()
            })
            .await
        ),
        Code::Aborted
    );
    assert_eq!(
        code(
            c.list_volumes(ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new()
            })
            .await
        ),
        Code::InvalidArgument
    );
    futures::stream::iter(made)
        .for_each_concurrent(8, |id| {
            let mut c = ctl.controller();
            async move {
                c.delete_volume(DeleteVolumeRequest {
                    volume_id: id,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
        })
        .await;
    assert_eq!(volume_count(&rest).await, 0);

    // --- An abnormal condition while the volume is Degraded: SIGKILL the
    // engine of a replica away from the target.
    let deg = c
        .create_volume(create_req("pvc-degraded", 8 * MIB, &[("repl", "2")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    c.controller_publish_volume(publish(&deg, "node-1"))
        .await
        .unwrap();
    let victim = rest
        .get_volume(&deg)
        .await
        .unwrap()
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.node.clone())
        .find(|n| n != "node-1")
        .expect("a replica away from the target");
    let engine = victim.replace("node-", "io-engine-");
    let pid_file = cluster.state_dir.join("pids").join(format!("{engine}.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.split_whitespace().next().unwrap().to_owned();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    testkit::eventually("an abnormal condition", 60, || {
        let mut c = ctl.controller();
        let deg = deg.clone();
        async move {
            let got = c
                .controller_get_volume(ControllerGetVolumeRequest { volume_id: deg })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let cond = got.status.unwrap().volume_condition.unwrap();
            if cond.abnormal && cond.message.contains("Degraded") {
                Ok(())
            } else {
                Err(cond.message)
            }
        }
    })
    .await;
    let listed = c
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = listed
        .iter()
        .find(|e| e.volume.as_ref().unwrap().volume_id == deg)
        .unwrap();
    let status = entry.status.as_ref().unwrap();
    assert!(status.volume_condition.as_ref().unwrap().abnormal);
    assert_eq!(status.published_node_ids, ["node-1"]);

    // --- Probe not ready once REST is gone.
    drop(cluster);
    let probe = ctl
        .identity()
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(false));
}
