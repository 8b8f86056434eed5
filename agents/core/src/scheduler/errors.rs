//! Why a placement is impossible: the error, and the count of nodes and
//! pools passed over for each reason.

use std::fmt;

/// Why nodes and pools were passed over, for error messages. Pools are
/// counted only on nodes that were not passed over themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    pub nodes_offline: usize,
    pub nodes_cordoned: usize,
    /// Outside the volume's node topology.
    pub nodes_topology: usize,
    /// Already holding a replica of the volume (rule 2).
    pub nodes_with_replica: usize,
    /// Excluded by the caller (e.g. the node being drained).
    pub nodes_excluded: usize,
    /// Usable, but with no pool at all.
    pub nodes_without_pool: usize,
    pub pools_offline: usize,
    /// Outside the volume's pool topology.
    pub pools_topology: usize,
    /// Not enough free (thick: free and uncommitted) space.
    pub pools_no_space: usize,
    /// A thin replica would take the pool past its commitment limit.
    pub pools_overcommitted: usize,
}

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = [
            (self.nodes_offline, "node offline", "nodes offline"),
            (self.nodes_cordoned, "node cordoned", "nodes cordoned"),
            (
                self.nodes_topology,
                "node outside the node topology",
                "nodes outside the node topology",
            ),
            (
                self.nodes_with_replica,
                "node already holds a replica",
                "nodes already hold a replica",
            ),
            (self.nodes_excluded, "node excluded", "nodes excluded"),
            (
                self.nodes_without_pool,
                "node without a pool",
                "nodes without a pool",
            ),
            (self.pools_offline, "pool offline", "pools offline"),
            (
                self.pools_topology,
                "pool outside the pool topology",
                "pools outside the pool topology",
            ),
            (
                self.pools_no_space,
                "pool without enough free space",
                "pools without enough free space",
            ),
            (
                self.pools_overcommitted,
                "pool past its commitment limit",
                "pools past their commitment limit",
            ),
        ];
        let mut first = true;
        for (count, one, many) in items {
            if count == 0 {
                continue;
            }
            f.write_str(if first { "rejected: " } else { ", " })?;
            first = false;
            write!(f, "{count} {}", if count == 1 { one } else { many })?;
        }
        if first {
            f.write_str("no node or pool was rejected")?;
        }
        Ok(())
    }
}

/// Why a placement is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("volume {volume} asks for 0 replicas; at least 1 is needed")]
    NoReplicas { volume: String },
    #[error(
        "volume {volume} needs {needed} replicas on distinct nodes; only {available} usable \
         nodes have a pool with room ({rejected})"
    )]
    NotEnoughNodes {
        volume: String,
        needed: usize,
        available: usize,
        rejected: Rejections,
    },
    #[error(
        "volume {volume} needs one more replica on a node without one; no usable node has a \
         pool with room ({rejected})"
    )]
    NoNodeForReplica {
        volume: String,
        rejected: Rejections,
    },
    #[error("volume {volume} cannot have its target on node {node}: the node is unknown")]
    TargetNodeUnknown { volume: String, node: String },
    #[error("volume {volume} cannot have its target on node {node}: the node is offline")]
    TargetNodeOffline { volume: String, node: String },
    #[error("volume {volume} cannot have its target on node {node}: the node is cordoned")]
    TargetNodeCordoned { volume: String, node: String },
    #[error(
        "volume {volume} cannot have its target on node {node}: the node is excluded (e.g. \
         being drained)"
    )]
    TargetNodeExcluded { volume: String, node: String },
    #[error("volume {volume} needs a target node; none of {total} nodes is usable ({rejected})")]
    NoTargetNode {
        volume: String,
        total: usize,
        rejected: Rejections,
    },
}
