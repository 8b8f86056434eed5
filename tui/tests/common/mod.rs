//! Fixed cluster states built from the REST models, and helpers to render
//! an [`App`] into ratatui's `TestBackend` and read the screen as text.

#![allow(dead_code, clippy::unwrap_used)]

pub mod procs;
pub mod tmux;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openapi::models::*;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tui::{App, Snapshot};

pub const GIB: u64 = 1 << 30;
pub const V1: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
pub const V2: &str = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
pub const R1: &str = "aaaaaaa1-0000-4000-8000-000000000001";
pub const R2: &str = "bbbbbbb2-0000-4000-8000-000000000002";
pub const R3: &str = "ccccccc3-0000-4000-8000-000000000003";
pub const R4: &str = "ddddddd4-0000-4000-8000-000000000004";
pub const NEXUS: &str = "5e3c1a2b-0000-4000-8000-00000000000e";

/// 10:00:00 UTC on some day, plus `secs`.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 10 * 3600 + secs)
}

pub fn node(id: &str, status: NodeStatus, cordon: &[&str]) -> Node {
    let ip = format!("127.0.40.{}", 10 + id.trim_start_matches("node-").len());
    Node {
        id: id.into(),
        spec: Some(NodeSpec {
            id: id.into(),
            grpc_endpoint: format!("{ip}:10124"),
            labels: BTreeMap::new(),
            cordon_drain_state: CordonDrainState {
                cordon_labels: cordon.iter().map(|s| s.to_string()).collect(),
                drain_labels: Vec::new(),
                drain_status: None,
            },
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
        }),
        state: Some(NodeState {
            id: id.into(),
            grpc_endpoint: format!("{ip}:10124"),
            status,
            node_nqn: format!("nqn.2019-05.io.openebs:node-name:{id}"),
            version: "0.1.0".into(),
        }),
    }
}

pub fn pool(id: &str, node: &str, capacity: u64, used: u64, committed: u64) -> Pool {
    Pool {
        id: id.into(),
        spec: Some(PoolSpec {
            node: node.into(),
            id: id.into(),
            disks: vec![format!("aio:///var/{id}.img")],
            labels: BTreeMap::new(),
            status: SpecStatus::Created,
        }),
        state: Some(PoolState {
            node: node.into(),
            id: id.into(),
            disks: vec![format!("aio:///var/{id}.img")],
            status: PoolStatus::Online,
            capacity,
            used,
            committed,
        }),
    }
}

/// A child of the nexus on node-1: local for node-1's replica, NVMe/TCP
/// for the others.
pub fn child(
    replica: &str,
    node: &str,
    state: ChildState,
    reason: &str,
    rebuild: Option<u8>,
) -> Child {
    let uri = if node == "node-1" {
        format!("bdev:///{replica}?uuid={replica}")
    } else {
        format!("nvmf://{node}:8420/nqn.2019-05.io.openebs:{replica}?uuid={replica}")
    };
    Child {
        uri,
        state,
        state_reason: reason.into(),
        rebuild_progress: rebuild,
    }
}

pub fn topo(node: &str, state: ReplicaStatus, child: Option<&Child>) -> ReplicaTopology {
    ReplicaTopology {
        node: Some(node.into()),
        pool: Some(node.replace("node", "pool")),
        state,
        child_status: child.map(|c| c.state),
        child_status_reason: child.map(|c| c.state_reason.clone()),
        rebuild_progress: child.and_then(|c| c.rebuild_progress),
    }
}

/// Volume V1: 3 replicas of 1 GiB, thin, published on node-1 with these
/// children (replica uuid, node, child).
pub fn v1(status: VolumeStatus, children: Vec<(&str, &str, Child)>) -> Volume {
    let nexus_status = match status {
        VolumeStatus::Online => NexusStatus::Online,
        VolumeStatus::Degraded => NexusStatus::Degraded,
        _ => NexusStatus::Faulted,
    };
    let mut topology = BTreeMap::new();
    for (uuid, node, c) in &children {
        let rstate = if c.state == ChildState::Faulted {
            ReplicaStatus::Faulted
        } else {
            ReplicaStatus::Online
        };
        topology.insert(uuid.to_string(), topo(node, rstate, Some(c)));
    }
    Volume {
        spec: VolumeSpec {
            uuid: V1.into(),
            size: GIB,
            num_replicas: children.len() as u8,
            status: SpecStatus::Created,
            target: Some(VolumeTarget {
                node: "node-1".into(),
                protocol: Protocol::Nvmf,
                frontend_nodes: vec![],
            }),
            policy: VolumePolicy::default(),
            topology: None,
            labels: None,
            thin: true,
            affinity_group: None,
        },
        state: VolumeState {
            uuid: V1.into(),
            size: GIB,
            status,
            target: Some(Nexus {
                node: "node-1".into(),
                uuid: NEXUS.into(),
                size: GIB,
                status: nexus_status,
                children: children.into_iter().map(|(_, _, c)| c).collect(),
                device_uri: format!("nvmf://127.0.40.11:8420/nqn.2019-05.io.openebs:{V1}"),
                rebuilds: 0,
                protocol: Protocol::Nvmf,
            }),
            replica_topology: topology,
        },
    }
}

/// Volume V2: 1 replica of 2 GiB on node-2, thick, not published.
pub fn v2() -> Volume {
    let mut topology = BTreeMap::new();
    topology.insert(R4.to_string(), topo("node-2", ReplicaStatus::Online, None));
    Volume {
        spec: VolumeSpec {
            uuid: V2.into(),
            size: 2 * GIB,
            num_replicas: 1,
            status: SpecStatus::Created,
            target: None,
            policy: VolumePolicy::default(),
            topology: None,
            labels: None,
            thin: false,
            affinity_group: None,
        },
        state: VolumeState {
            uuid: V2.into(),
            size: 2 * GIB,
            status: VolumeStatus::Online,
            target: None,
            replica_topology: topology,
        },
    }
}

pub fn healthy_children() -> Vec<(&'static str, &'static str, Child)> {
    vec![
        (
            R1,
            "node-1",
            child(R1, "node-1", ChildState::Online, "none", None),
        ),
        (
            R2,
            "node-2",
            child(R2, "node-2", ChildState::Online, "none", None),
        ),
        (
            R3,
            "node-3",
            child(R3, "node-3", ChildState::Online, "none", None),
        ),
    ]
}

pub fn nodes() -> Vec<Node> {
    vec![
        node("node-1", NodeStatus::Online, &[]),
        node("node-2", NodeStatus::Online, &["maint"]),
        node("node-3", NodeStatus::Online, &[]),
    ]
}

pub fn pools() -> Vec<Pool> {
    vec![
        pool("pool-1", "node-1", 10 * GIB, 4 * GIB, 6 * GIB),
        pool("pool-2", "node-2", 10 * GIB, 5 * GIB, 5 * GIB),
        pool("pool-3", "node-3", 10 * GIB, GIB, 15 * GIB),
    ]
}

/// The fixed state of the rendering tests: V1 degraded with one faulted
/// child and one rebuilding at 55 %, V2 healthy and unpublished.
pub fn fixed_snapshot() -> Snapshot {
    let children = vec![
        (
            R1,
            "node-1",
            child(R1, "node-1", ChildState::Online, "none", None),
        ),
        (
            R2,
            "node-2",
            child(R2, "node-2", ChildState::Faulted, "io_failure", None),
        ),
        (
            R3,
            "node-3",
            child(R3, "node-3", ChildState::Degraded, "out_of_sync", Some(55)),
        ),
    ];
    Snapshot::new(
        nodes(),
        pools(),
        vec![v1(VolumeStatus::Degraded, children), v2()],
    )
}

pub fn fixed_app() -> App {
    let mut app = App::new("http://127.0.40.252:8081");
    app.apply(fixed_snapshot(), at(0));
    app
}

/// The screen after drawing `app` on a `width` x `height` terminal.
pub fn render(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| tui::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

/// Asserts that some line of `screen` contains every one of `parts`, in
/// order.
#[track_caller]
pub fn assert_line(screen: &[String], parts: &[&str]) {
    let found = screen.iter().any(|line| {
        let mut rest = line.as_str();
        parts.iter().all(|p| match rest.find(p) {
            Some(i) => {
                rest = &rest[i + p.len()..];
                true
            }
            None => false,
        })
    });
    assert!(
        found,
        "no line contains {parts:?} in order; screen:\n{}",
        screen.join("\n")
    );
}

#[track_caller]
pub fn assert_absent(screen: &[String], text: &str) {
    assert!(
        !screen.iter().any(|l| l.contains(text)),
        "{text:?} should not be shown; screen:\n{}",
        screen.join("\n")
    );
}
