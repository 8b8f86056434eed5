//! Tables rendered from fixed models: columns, ids, sizes and alignment,
//! default and wide.

use std::collections::BTreeMap;

use kubectl_mayastor::views;
use openapi::models::*;

const VOL_A: &str = "0c08667c-8b59-4d11-9192-b54e27e0ce0f";
const VOL_B: &str = "18e30e83-b106-4e0d-9fb6-2b04e761e18a";
const REP_1: &str = "93b1e1e9-ffcd-4c56-971e-294a530ea5cd";
const REP_2: &str = "88d89a92-40cf-4147-97d4-09e64979f548";
const REP_3: &str = "b5de71a6-055d-433a-a1c5-2b39ade05d86";

fn topology(
    node: &str,
    pool: &str,
    child: Option<ChildState>,
    rebuild: Option<u8>,
) -> ReplicaTopology {
    ReplicaTopology {
        node: Some(node.into()),
        pool: Some(pool.into()),
        state: ReplicaStatus::Online,
        child_status: child,
        child_status_reason: child.map(|c| {
            if c == ChildState::Degraded {
                "out_of_sync".into()
            } else {
                "none".into()
            }
        }),
        rebuild_progress: rebuild,
    }
}

fn nexus(node: &str) -> Nexus {
    Nexus {
        node: node.into(),
        uuid: "3f0e5c29-7d5a-4c35-8b0d-2f1e6c7a9b10".into(),
        size: 1 << 30,
        status: NexusStatus::Degraded,
        children: vec![],
        device_uri: format!("nvmf://127.0.1.1:8420/nqn.2019-05.io.openebs:{VOL_A}"),
        rebuilds: 1,
        protocol: Protocol::Nvmf,
    }
}

fn volume_a() -> Volume {
    Volume {
        spec: VolumeSpec {
            uuid: VOL_A.into(),
            size: 1 << 30,
            num_replicas: 2,
            status: SpecStatus::Created,
            target: Some(VolumeTarget {
                node: "node-1".into(),
                protocol: Protocol::Nvmf,
                frontend_nodes: vec![],
            }),
            policy: VolumePolicy::default(),
            topology: None,
            labels: None,
            thin: false,
            affinity_group: None,
        },
        state: VolumeState {
            uuid: VOL_A.into(),
            size: 1 << 30,
            status: VolumeStatus::Degraded,
            target: Some(nexus("node-1")),
            replica_topology: BTreeMap::from([
                (
                    REP_1.to_string(),
                    topology("node-1", "pool-1", Some(ChildState::Online), None),
                ),
                (
                    REP_2.to_string(),
                    topology("node-2", "pool-2", Some(ChildState::Degraded), Some(42)),
                ),
            ]),
        },
    }
}

fn volume_b() -> Volume {
    Volume {
        spec: VolumeSpec {
            uuid: VOL_B.into(),
            size: 96 << 20,
            num_replicas: 1,
            status: SpecStatus::Created,
            target: None,
            policy: VolumePolicy::default(),
            topology: None,
            labels: None,
            thin: true,
            affinity_group: None,
        },
        state: VolumeState {
            uuid: VOL_B.into(),
            size: 96 << 20,
            status: VolumeStatus::Online,
            target: None,
            replica_topology: BTreeMap::from([(
                REP_3.to_string(),
                topology("node-3", "pool-3", None, None),
            )]),
        },
    }
}

fn replica(uuid: &str, node: &str, size: u64, allocated: u64) -> Replica {
    Replica {
        node: node.into(),
        uuid: uuid.into(),
        pool: node.replace("node", "pool"),
        thin: false,
        size,
        allocated,
        share: Protocol::Nvmf,
        uri: format!("bdev:///{uuid}?uuid={uuid}"),
        status: ReplicaStatus::Online,
        allowed_hosts: vec![],
    }
}

fn replicas() -> views::ReplicaIndex {
    views::index_replicas(vec![
        replica(REP_1, "node-1", 1 << 30, 1 << 30),
        replica(REP_2, "node-2", 1 << 30, 3 << 28),
        replica(REP_3, "node-3", 96 << 20, 8 << 20),
    ])
}

fn node(
    id: &str,
    status: NodeStatus,
    cordon: &[&str],
    drain: &[&str],
    drain_status: Option<DrainStatus>,
) -> Node {
    let n = id.trim_start_matches("node-");
    Node {
        id: id.into(),
        spec: Some(NodeSpec {
            id: id.into(),
            grpc_endpoint: format!("127.0.1.{n}:10124"),
            labels: BTreeMap::new(),
            cordon_drain_state: CordonDrainState {
                cordon_labels: cordon.iter().map(|s| s.to_string()).collect(),
                drain_labels: drain.iter().map(|s| s.to_string()).collect(),
                drain_status,
            },
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
        }),
        state: Some(NodeState {
            id: id.into(),
            grpc_endpoint: format!("127.0.1.{n}:10124"),
            status,
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
            version: "0.1.0".into(),
        }),
    }
}

fn nodes() -> Vec<Node> {
    vec![
        node("node-1", NodeStatus::Online, &[], &[], None),
        node(
            "node-2",
            NodeStatus::Online,
            &["maintenance", "upgrade"],
            &[],
            None,
        ),
        node(
            "node-3",
            NodeStatus::Offline,
            &[],
            &["drain-1"],
            Some(DrainStatus::Draining),
        ),
        node(
            "node-10",
            NodeStatus::Online,
            &[],
            &["d"],
            Some(DrainStatus::Drained),
        ),
    ]
}

fn pool(id: &str, node: &str, capacity: u64, used: u64, committed: u64) -> Pool {
    let disk = format!("aio:///var/lib/mayastor-local/{id}.img");
    Pool {
        id: id.into(),
        spec: Some(PoolSpec {
            node: node.into(),
            id: id.into(),
            disks: vec![disk.clone()],
            labels: BTreeMap::new(),
            status: SpecStatus::Created,
        }),
        state: Some(PoolState {
            node: node.into(),
            id: id.into(),
            disks: vec![disk],
            status: PoolStatus::Online,
            capacity,
            used,
            committed,
        }),
    }
}

fn pools() -> Vec<Pool> {
    let mut unmanaged = pool("pool-x", "node-2", 10 << 30, 0, 0);
    unmanaged.spec = None;
    vec![
        pool("pool-1", "node-1", 508 << 20, 96 << 20, 1 << 30),
        pool("pool-2", "node-2", 3 << 29, 0, 0),
        unmanaged,
    ]
}

#[test]
fn volumes_default() {
    insta::assert_snapshot!(views::volumes(&[volume_a(), volume_b()], None).render(), @r"
    ID                                    REPLICAS  TARGET-NODE  ACCESSIBILITY  STATUS    SIZE   THIN-PROVISIONED
    0c08667c-8b59-4d11-9192-b54e27e0ce0f  2         node-1       nvmf           Degraded  1GiB   false
    18e30e83-b106-4e0d-9fb6-2b04e761e18a  1         <none>       <none>         Online    96MiB  true
    ");
}

#[test]
fn volumes_wide() {
    let index = replicas();
    insta::assert_snapshot!(views::volumes(&[volume_a(), volume_b()], Some(&index)).render(), @r"
    ID                                    REPLICAS  TARGET-NODE  ACCESSIBILITY  STATUS    SIZE   THIN-PROVISIONED  ALLOCATED  SNAPSHOTS
    0c08667c-8b59-4d11-9192-b54e27e0ce0f  2         node-1       nvmf           Degraded  1GiB   false             1GiB       0
    18e30e83-b106-4e0d-9fb6-2b04e761e18a  1         <none>       <none>         Online    96MiB  true              8MiB       0
    ");
}

#[test]
fn pools_default_and_wide() {
    insta::assert_snapshot!(views::pools(&pools(), false).render(), @r"
    ID      TOTAL CAPACITY  USED CAPACITY  DISKS                                     NODE    STATUS  MANAGED
    pool-1  508MiB          96MiB          aio:///var/lib/mayastor-local/pool-1.img  node-1  Online  true
    pool-2  1.5GiB          0B             aio:///var/lib/mayastor-local/pool-2.img  node-2  Online  true
    pool-x  10GiB           0B             aio:///var/lib/mayastor-local/pool-x.img  node-2  Online  false
    ");
    insta::assert_snapshot!(views::pools(&pools()[..1], true).render(), @r"
    ID      TOTAL CAPACITY  USED CAPACITY  DISKS                                     NODE    STATUS  MANAGED  AVAILABLE  COMMITTED
    pool-1  508MiB          96MiB          aio:///var/lib/mayastor-local/pool-1.img  node-1  Online  true     412MiB     1GiB
    ");
}

#[test]
fn nodes_with_cordon_and_drain_state() {
    insta::assert_snapshot!(views::nodes(&nodes(), false).render(), @r"
    ID       GRPC ENDPOINT     STATUS
    node-1   127.0.1.1:10124   Online
    node-2   127.0.1.2:10124   Online,Cordoned
    node-3   127.0.1.3:10124   Offline,Draining
    node-10  127.0.1.10:10124  Online,Drained
    ");
    insta::assert_snapshot!(views::nodes(&nodes()[..1], true).render(), @r"
    ID      GRPC ENDPOINT    STATUS  VERSION
    node-1  127.0.1.1:10124  Online  0.1.0
    ");
}

#[test]
fn cordon_and_drain_views() {
    insta::assert_snapshot!(views::cordon_nodes(&nodes()).render(), @r"
    ID       GRPC ENDPOINT     STATUS   CORDONED  CORDON LABELS
    node-1   127.0.1.1:10124   Online   false
    node-2   127.0.1.2:10124   Online   true      maintenance, upgrade
    node-3   127.0.1.3:10124   Offline  true
    node-10  127.0.1.10:10124  Online   true
    ");
    insta::assert_snapshot!(views::drain_nodes(&nodes()).render(), @r"
    ID       GRPC ENDPOINT     STATUS   CORDONED  DRAIN STATE   DRAIN LABELS
    node-1   127.0.1.1:10124   Online   false     Not draining
    node-2   127.0.1.2:10124   Online   true      Not draining
    node-3   127.0.1.3:10124   Offline  true      Draining      drain-1
    node-10  127.0.1.10:10124  Online   true      Drained       d
    ");
    let all = nodes();
    let cordoned: Vec<&str> = all
        .iter()
        .filter(|n| views::is_cordoned(n))
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(cordoned, ["node-2", "node-3", "node-10"]);
    let draining: Vec<&str> = all
        .iter()
        .filter(|n| views::is_draining_or_drained(n))
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(draining, ["node-3", "node-10"]);
}

#[test]
fn replica_topology_default_and_wide() {
    insta::assert_snapshot!(views::replica_topology(&volume_a(), None).render(), @r"
    ID                                    NODE    POOL    STATUS
    88d89a92-40cf-4147-97d4-09e64979f548  node-2  pool-2  Online
    93b1e1e9-ffcd-4c56-971e-294a530ea5cd  node-1  pool-1  Online
    ");
    let index = replicas();
    insta::assert_snapshot!(views::replica_topology(&volume_a(), Some(&index)).render(), @r"
    ID                                    NODE    POOL    STATUS  CAPACITY  ALLOCATED  SNAPSHOTS  CHILD-STATUS  REASON       REBUILD
    88d89a92-40cf-4147-97d4-09e64979f548  node-2  pool-2  Online  1GiB      768MiB     0          Degraded      out_of_sync  42%
    93b1e1e9-ffcd-4c56-971e-294a530ea5cd  node-1  pool-1  Online  1GiB      1GiB       0          Online        <none>       <none>
    ");
}

#[test]
fn replica_topologies_group_by_volume() {
    insta::assert_snapshot!(views::replica_topologies(&[volume_a(), volume_b()], None).render(), @r"
    VOLUME-ID                             ID                                    NODE    POOL    STATUS
    0c08667c-8b59-4d11-9192-b54e27e0ce0f  88d89a92-40cf-4147-97d4-09e64979f548  node-2  pool-2  Online
                                          93b1e1e9-ffcd-4c56-971e-294a530ea5cd  node-1  pool-1  Online
    18e30e83-b106-4e0d-9fb6-2b04e761e18a  b5de71a6-055d-433a-a1c5-2b39ade05d86  node-3  pool-3  Online
    ");
}

#[test]
fn rebuild_history() {
    let history = RebuildHistory {
        target_uuid: VOL_A.into(),
        records: vec![RebuildRecord {
            child_uri: format!("nvmf://127.0.1.2:8420/nqn.2019-05.io.openebs:{REP_2}?uuid={REP_2}"),
            src_uri: format!("bdev:///{REP_1}?uuid={REP_1}"),
            rebuild_job_state: "completed".into(),
            blocks_total: 2048,
            blocks_recovered: 2048,
            blocks_transferred: 512,
            blocks_remaining: 0,
            block_size: 4096,
            is_partial: true,
            start_time: "2026-01-02T03:04:05Z".into(),
            end_time: "2026-01-02T03:04:07Z".into(),
        }],
    };
    insta::assert_snapshot!(views::rebuild_history(&history).render(), @r"
    DST                                   SRC                                   STATE      TOTAL  RECOVERED  TRANSFERRED  IS-PARTIAL  START-TIME            END-TIME
    88d89a92-40cf-4147-97d4-09e64979f548  93b1e1e9-ffcd-4c56-971e-294a530ea5cd  Completed  8MiB   8MiB       2MiB         true        2026-01-02T03:04:05Z  2026-01-02T03:04:07Z
    ");
}

#[test]
fn empty_lists_print_the_header() {
    assert_eq!(
        views::volumes(&[], None).render(),
        "ID  REPLICAS  TARGET-NODE  ACCESSIBILITY  STATUS  SIZE  THIN-PROVISIONED\n"
    );
}
