//! The REST API end to end: a 3-node cluster (real etcd, engines and
//! agent-core) behind the real `api-rest` binary, every call made through
//! [`RestClient`] to `api-rest`, which forwards it to the core agent.
//!
//! - every endpoint, each with its effect checked (on the resource, on the
//!   placement of later volumes, or on `GET /specs`);
//! - bad input: each refused with a 4xx and a stable kind, and nothing in
//!   `GET /specs` changed by any of it. Bodies the client cannot produce
//!   (malformed JSON, negative numbers) go over a raw HTTP connection;
//! - schemathesis (`scripts/rest-fuzz.sh`) against the served OpenAPI
//!   document, with data in the cluster.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use common::{bin, eventually, free_port, wait_port, Cluster, Proc, Timers};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi, ErrorKind, RestError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const VOL: u64 = 16 * MIB;
const POOL: u64 = 128 * MIB;
const PREFIX: &str = "127.0.8";

/// A cluster with `api-rest` in front of its core agent.
struct Rest {
    cluster: Cluster,
    server: Proc,
    /// `ip:port` of `api-rest`.
    addr: String,
    api: RestClient,
}

impl Rest {
    fn start() -> Rest {
        let cluster = Cluster::start(PREFIX, 3, Timers::default());
        let ip = format!("{PREFIX}.3");
        let addr = format!("{ip}:{}", free_port(&ip));
        let server = Proc::spawn(
            "api-rest",
            bin("api-rest", "api-rest"),
            vec![
                "--core-endpoint".into(),
                cluster.rest_url(),
                "--http".into(),
                addr.clone(),
                "--request-timeout".into(),
                "60s".into(),
            ],
        );
        wait_port(&addr, "api-rest");
        let api = RestClient::new(
            &format!("http://{addr}"),
            RestClientOptions {
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .unwrap();
        Rest {
            cluster,
            server,
            addr,
            api,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn nodes_online(&self) {
        eventually("3 nodes online", 30, || async {
            let nodes = self.api.get_nodes().await.map_err(|e| e.to_string())?;
            let online = nodes
                .iter()
                .filter(|n| {
                    n.spec.is_some()
                        && n.state
                            .as_ref()
                            .is_some_and(|s| s.status == NodeStatus::Online)
                })
                .count();
            if online == 3 {
                Ok(())
            } else {
                Err(format!("{online} of 3 online: {nodes:?}"))
            }
        })
        .await;
    }

    /// Pool `p<i>` on `node-<i>`, each on its own file.
    async fn make_pools(&self) {
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let id = format!("p{}", i + 1);
            let pool = self
                .api
                .put_node_pool(node, &id, pool_body(self.cluster.disk(&id, POOL)))
                .await
                .unwrap();
            assert_eq!(pool.id, id);
        }
    }

    /// Sends one raw HTTP/1.1 request to `api-rest`; returns the status and
    /// the body decoded as a [`RestError`] (when it is one).
    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, Option<RestError>) {
        let mut stream = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(ct) = content_type {
            request.push_str(&format!("content-type: {ct}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("api-rest answers within 60 s")
            .unwrap();
        let text = String::from_utf8_lossy(&answer).to_string();
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        (status, serde_json::from_str(&payload).ok())
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn pool_body(disk: String) -> CreatePoolBody {
    CreatePoolBody {
        disks: vec![disk],
        labels: None,
    }
}

fn volume_body(size: u64, replicas: u8) -> CreateVolumeBody {
    CreateVolumeBody {
        size,
        replicas,
        thin: false,
        policy: VolumePolicy { self_heal: true },
        topology: None,
        labels: None,
        affinity_group: None,
    }
}

fn publish_body(node: &str) -> PublishVolumeBody {
    PublishVolumeBody {
        node: Some(node.to_owned()),
        frontend_node: Some("test-host".into()),
        protocol: Protocol::Nvmf,
    }
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

/// A raw request and how it must be refused: method, path, content type,
/// body, status, kind, and what the message says.
type RawCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    &'a str,
    u16,
    ErrorKind,
    &'a str,
);

/// The error of `result`, which must be of `kind`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, RestError>, kind: ErrorKind) -> RestError {
    match result {
        Ok(v) => panic!("expected {kind:?}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{e:?}");
            assert!(!e.message.is_empty(), "{e:?}");
            e
        }
    }
}

fn replica_nodes(v: &Volume) -> Vec<String> {
    let mut nodes: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.node.clone())
        .collect();
    nodes.sort();
    nodes
}

fn replica_pools(v: &Volume) -> Vec<String> {
    let mut pools: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.pool.clone())
        .collect();
    pools.sort();
    pools
}

fn volume_ids(vs: &[Volume]) -> BTreeSet<String> {
    vs.iter().map(|v| v.spec.uuid.clone()).collect()
}

async fn wait_replicas_gone(api: &RestClient, uuids: &[String]) {
    eventually("the replicas to go", 20, || async {
        let replicas = api.get_replicas().await.map_err(|e| e.to_string())?;
        let left: Vec<&Replica> = replicas
            .iter()
            .filter(|r| uuids.contains(&r.uuid))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

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

/// `api-rest` logged no 5xx answer but 507 (no room: a refusal that
/// depends on free space, see `scripts/rest-fuzz.sh`).
fn assert_no_server_error(rest: &Rest) {
    let logs = strip_ansi(&rest.server.logs());
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request failed") && !l.contains("status=507"))
        .collect();
    assert!(failed.is_empty(), "5xx answers:\n{}", failed.join("\n"));
}

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

/// `text` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The seed of the fuzz run: fixed, so that the test asks the same
/// questions every time (`REST_FUZZ_SEED` picks another; the script alone
/// draws a random one).
const FUZZ_SEED: &str = "20240601";

fn fuzz_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rest-fuzz.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_spec_violation() {
    let rest = Rest::start();
    let api = &rest.api;
    let c = &rest.cluster;
    rest.nodes_online().await;
    rest.make_pools().await;
    api.put_node_pool("node-1", "p1-b", pool_body(c.disk("p1-b", POOL)))
        .await
        .unwrap();
    // Data for the fuzzer to find: a published and an unpublished volume,
    // labels and a cordon.
    let published = new_id();
    api.put_volume(&published, volume_body(VOL, 2))
        .await
        .unwrap();
    api.put_volume_target(&published, publish_body("node-1"))
        .await
        .unwrap();
    api.put_volume(&new_id(), volume_body(VOL, 1))
        .await
        .unwrap();
    api.label_node("node-2", "zone", Some("b")).await.unwrap();
    api.label_pool("p3", "tier", Some("slow")).await.unwrap();
    api.put_node_cordon("node-3", "fuzz").await.unwrap();

    let script = fuzz_script();
    let url = rest.url();
    let seed = std::env::var("REST_FUZZ_SEED").unwrap_or_else(|_| FUZZ_SEED.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(&script)
            .arg(&url)
            .env("REST_FUZZ_SEED", seed)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", fuzz_script().display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "schemathesis is not installed: run `bash scripts/rest-fuzz.sh --install` \
             (scripts/test.sh does)\n{text}"
        ),
        code => panic!("scripts/rest-fuzz.sh failed ({code:?}):\n{text}"),
    }
    eprintln!("{text}");
    assert!(text.contains("No issues found"), "{text}");
    assert_no_server_error(&rest);
    // The cluster still answers.
    api.get_specs().await.unwrap();
}
