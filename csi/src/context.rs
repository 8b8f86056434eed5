//! Keys of the string maps CSI passes between the plugins: the StorageClass
//! parameters (given to `CreateVolume`, returned as the volume context) and
//! the publish context (`ControllerPublishVolume` -> `NodeStageVolume`).
//! One home for these names, shared by the controller and the node.

/// Replica count, 1..=255 (default 1).
pub const REPL: &str = "repl";
/// Share protocol: `nvmf` only (the default).
pub const PROTOCOL: &str = "protocol";
/// `true` or `false` (default): thin-provisioned replicas.
pub const THIN: &str = "thin";
/// Filesystem made on the volume: `ext4` (default) or `xfs`.
pub const FS_TYPE: &str = "fsType";
/// I/O timeout of the volume's block device on the node, seconds.
pub const IO_TIMEOUT: &str = "ioTimeout";
/// NVMe controller-loss timeout, seconds (`nvme connect --ctrl-loss-tmo`).
pub const NVME_CTRL_LOSS_TMO: &str = "nvmeCtrlLossTmo";
/// NVMe keep-alive timeout, seconds (`nvme connect --keep-alive-tmo`).
pub const NVME_KEEP_ALIVE_TMO: &str = "nvmeKeepAliveTmo";
/// NVMe I/O queue count (`nvme connect --nr-io-queues`).
pub const NVME_NR_IO_QUEUES: &str = "nvmeNrIoQueues";
/// `true` or `false` (default): volumes of one StatefulSet spread their
/// replicas and targets over different nodes.
pub const STS_AFFINITY_GROUP: &str = "stsAffinityGroup";
/// `true` or `false` (default): the target is placed on the application's
/// node whenever that node is a usable storage node.
pub const LOCAL: &str = "local";
/// Pool labels every replica's pool must have: `key=value` pairs separated
/// by commas or new lines (`key: value` is accepted too).
pub const POOL_AFFINITY_TOPOLOGY_LABEL: &str = "poolAffinityTopologyLabel";
/// Pool label keys every replica's pool must have, any value.
pub const POOL_HAS_TOPOLOGY_KEY: &str = "poolHasTopologyKey";
/// Node labels every replica's node must have (`key=value` pairs).
pub const NODE_AFFINITY_TOPOLOGY_LABEL: &str = "nodeAffinityTopologyLabel";
/// Node label keys every replica's node must have, any value.
pub const NODE_HAS_TOPOLOGY_KEY: &str = "nodeHasTopologyKey";

/// Prefix of the parameters Kubernetes adds itself (accepted and ignored,
/// apart from the PVC name and namespace below).
pub const KUBERNETES_PREFIX: &str = "csi.storage.k8s.io/";
/// The PVC's name (external-provisioner `--extra-create-metadata`).
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
/// The PVC's namespace (external-provisioner `--extra-create-metadata`).
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";

/// Publish context: the volume target's URI
/// (`nvmf://host:port/nqn.2019-05.io.openebs:<volume-uuid>`).
pub const URI: &str = "uri";

/// The volume-context keys copied into the publish context for the node.
pub const PUBLISHED_TUNING: [&str; 5] = [
    FS_TYPE,
    IO_TIMEOUT,
    NVME_CTRL_LOSS_TMO,
    NVME_KEEP_ALIVE_TMO,
    NVME_NR_IO_QUEUES,
];
