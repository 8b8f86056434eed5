//! The validations, in the order they run, each skippable by its flag and
//! each a pure function of REST objects:
//!
//! 1. upgrade path ([`crate::version::path_refusal`]);
//! 2. no rebuild in progress on any volume;
//! 3. no cordoned storage node (the upgrade's own drain label, left by an
//!    interrupted upgrade, does not count);
//! 4. no single-replica volume (listed by id, and by PVC where its labels
//!    name one).
//!
//! A refusal names every offending object.

use openapi::models::{Node, Volume};

use crate::DRAIN_LABEL;

/// Volume labels naming the PVC a CSI-created volume belongs to.
pub const PVC_NAME_LABEL: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE_LABEL: &str = "csi.storage.k8s.io/pvc/namespace";

/// Which validations to skip (the `--skip-...` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skips {
    pub upgrade_path: bool,
    pub replica_rebuild: bool,
    pub cordoned_node: bool,
    pub single_replica_volume: bool,
}

/// The outcome of one validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `upgrade path`.
    pub name: &'static str,
    /// The flag that skips it.
    pub skip_flag: &'static str,
    pub skipped: bool,
    /// One line per offending object (empty: passed).
    pub problems: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.skipped || self.problems.is_empty()
    }

    /// `name: ok | skipped | refused: ...`.
    pub fn line(&self) -> String {
        if self.skipped {
            format!("{}: skipped ({})", self.name, self.skip_flag)
        } else if self.problems.is_empty() {
            format!("{}: ok", self.name)
        } else {
            format!(
                "{}: refused: {} (skip with {})",
                self.name,
                self.problems.join(", "),
                self.skip_flag
            )
        }
    }
}

/// Volumes with a replica being rebuilt, with the progress.
pub fn rebuilds_in_progress(volumes: &[Volume]) -> Vec<String> {
    let mut out = Vec::new();
    for v in volumes {
        let mut rebuilding: Vec<String> = v
            .state
            .replica_topology
            .iter()
            .filter_map(|(replica, t)| {
                let percent = t.rebuild_progress.or_else(|| {
                    (t.child_status_reason.as_deref() == Some("rebuilding")).then_some(0)
                })?;
                Some(format!(
                    "replica {replica} on {} at {percent}%",
                    t.node.as_deref().unwrap_or("?")
                ))
            })
            .collect();
        if rebuilding.is_empty() {
            if let Some(target) = &v.state.target {
                rebuilding.extend(target.children.iter().filter_map(|c| {
                    c.rebuild_progress
                        .map(|p| format!("child {} at {p}%", c.uri))
                }));
            }
        }
        if !rebuilding.is_empty() {
            out.push(format!(
                "volume {} is rebuilding ({})",
                v.spec.uuid,
                rebuilding.join(", ")
            ));
        }
    }
    out
}

/// The cordon and drain labels of `node`, without the upgrade's own.
fn foreign_cordons(node: &Node) -> Vec<String> {
    let Some(spec) = &node.spec else {
        return Vec::new();
    };
    let st = &spec.cordon_drain_state;
    st.cordon_labels
        .iter()
        .map(|l| format!("cordon {l}"))
        .chain(
            st.drain_labels
                .iter()
                .filter(|l| *l != DRAIN_LABEL)
                .map(|l| format!("drain {l}")),
        )
        .collect()
}

/// Storage nodes that are cordoned or drained (by someone else than the
/// upgrade).
pub fn cordoned_nodes(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| {
            let labels = foreign_cordons(n);
            (!labels.is_empty()).then(|| format!("node {} ({})", n.id, labels.join(", ")))
        })
        .collect()
}

/// Volumes with a single replica (their data is unavailable while that
/// replica's node restarts).
pub fn single_replica_volumes(volumes: &[Volume]) -> Vec<String> {
    volumes
        .iter()
        .filter(|v| v.spec.num_replicas == 1)
        .map(|v| {
            let pvc = v.spec.labels.as_ref().and_then(|l| {
                let name = l.get(PVC_NAME_LABEL)?;
                Some(match l.get(PVC_NAMESPACE_LABEL) {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                })
            });
            match pvc {
                Some(pvc) => format!("volume {} (PVC {pvc})", v.spec.uuid),
                None => format!("volume {}", v.spec.uuid),
            }
        })
        .collect()
}

/// Every validation, in order.
pub fn run(
    path_refusal: Option<String>,
    nodes: &[Node],
    volumes: &[Volume],
    skips: Skips,
) -> Vec<Check> {
    vec![
        Check {
            name: "upgrade path",
            skip_flag: "--skip-upgrade-path-validation",
            skipped: skips.upgrade_path,
            problems: path_refusal.into_iter().collect(),
        },
        Check {
            name: "rebuilds in progress",
            skip_flag: "--skip-replica-rebuild",
            skipped: skips.replica_rebuild,
            problems: rebuilds_in_progress(volumes),
        },
        Check {
            name: "cordoned nodes",
            skip_flag: "--skip-cordoned-node-validation",
            skipped: skips.cordoned_node,
            problems: cordoned_nodes(nodes),
        },
        Check {
            name: "single-replica volumes",
            skip_flag: "--skip-single-replica-volume-validation",
            skipped: skips.single_replica_volume,
            problems: single_replica_volumes(volumes),
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openapi::models::*;

    use super::*;

    fn volume(uuid: &str, replicas: u8, rebuild: Option<u8>, labels: &[(&str, &str)]) -> Volume {
        let mut topology = BTreeMap::new();
        topology.insert(
            format!("{uuid}-r1"),
            ReplicaTopology {
                node: Some("node-1".into()),
                pool: Some("pool-1".into()),
                state: ReplicaStatus::Online,
                child_status: Some(ChildState::Degraded),
                child_status_reason: rebuild.map(|_| "rebuilding".into()),
                rebuild_progress: rebuild,
            },
        );
        Volume {
            spec: VolumeSpec {
                uuid: uuid.into(),
                size: 1 << 20,
                num_replicas: replicas,
                status: SpecStatus::Created,
                target: None,
                policy: VolumePolicy::default(),
                topology: None,
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                thin: false,
                affinity_group: None,
            },
            state: VolumeState {
                uuid: uuid.into(),
                size: 1 << 20,
                status: VolumeStatus::Online,
                target: None,
                replica_topology: topology,
            },
        }
    }

    fn node(id: &str, cordons: &[&str], drains: &[&str]) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                id: id.into(),
                grpc_endpoint: "127.0.0.1:10124".into(),
                labels: BTreeMap::new(),
                cordon_drain_state: CordonDrainState {
                    cordon_labels: cordons.iter().map(|s| (*s).to_owned()).collect(),
                    drain_labels: drains.iter().map(|s| (*s).to_owned()).collect(),
                    drain_status: None,
                },
                node_nqn: String::new(),
            }),
            state: None,
        }
    }

    #[test]
    fn each_validation_names_every_offender() {
        let volumes = [
            volume("v1", 3, Some(42), &[]),
            volume(
                "v2",
                1,
                None,
                &[(PVC_NAME_LABEL, "data"), (PVC_NAMESPACE_LABEL, "apps")],
            ),
            volume("v3", 1, None, &[]),
        ];
        let nodes = [
            node("node-1", &["maintenance"], &[]),
            node("node-2", &[], &[DRAIN_LABEL]),
            node("node-3", &[], &["evacuate"]),
        ];
        let checks = run(Some("downgrade".into()), &nodes, &volumes, Skips::default());
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "upgrade path",
                "rebuilds in progress",
                "cordoned nodes",
                "single-replica volumes"
            ]
        );
        assert_eq!(checks[0].problems, ["downgrade"]);
        assert_eq!(
            checks[1].problems,
            ["volume v1 is rebuilding (replica v1-r1 on node-1 at 42%)"]
        );
        assert_eq!(
            checks[2].problems,
            [
                "node node-1 (cordon maintenance)",
                "node node-3 (drain evacuate)"
            ]
        );
        assert_eq!(
            checks[3].problems,
            ["volume v2 (PVC apps/data)", "volume v3"]
        );
        assert!(checks.iter().all(|c| !c.passed()));
        assert!(checks[2].line().contains("--skip-cordoned-node-validation"));
    }

    #[test]
    fn skips_pass_and_a_clean_cluster_passes() {
        let volumes = [volume("v1", 1, Some(1), &[])];
        let nodes = [node("node-1", &["x"], &[])];
        let all = Skips {
            upgrade_path: true,
            replica_rebuild: true,
            cordoned_node: true,
            single_replica_volume: true,
        };
        assert!(run(Some("no".into()), &nodes, &volumes, all)
            .iter()
            .all(|c| c.passed() && c.line().contains("skipped")));
        let clean = run(
            None,
            &[node("node-1", &[], &[DRAIN_LABEL])],
            &[volume("v", 2, None, &[])],
            Skips::default(),
        );
        assert!(clean.iter().all(Check::passed), "{clean:?}");
    }
}
