//! The command line: global flags and the command tree, as upstream's
//! plugin (`kubectl mayastor <operation> <resource> ...`).
//!
//! Global flags may come anywhere on the line (`get volumes -o json` and
//! `-o json get volumes` are the same). Durations take a unit (`500ms`,
//! `10s`, `2m`, `1h`); a bare number means seconds.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The plugin's whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-mayastor",
    version,
    about = "Operate a Mayastor cluster: volumes, pools, nodes, replica topology, cordon, drain, labels",
    after_help = "Without --rest the REST endpoint is taken from a local cluster started by \
                  `mayastor-local up`, else from the `api-rest` Service of the kubeconfig's cluster."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The REST endpoint to connect to, e.g. http://127.0.1.254:8081
    #[arg(short = 'r', long, global = true, value_name = "URL")]
    pub rest: Option<String>,

    /// Path to the kubeconfig file (else KUBECONFIG, else ~/.kube/config)
    #[arg(short = 'k', long, global = true, value_name = "PATH")]
    pub kube_config_path: Option<PathBuf>,

    /// Kubernetes namespace of the mayastor services
    #[arg(
        short = 'n',
        long,
        global = true,
        default_value = "mayastor",
        value_name = "NAMESPACE"
    )]
    pub namespace: String,

    /// Output format: tables (none, wide) or the full objects (yaml, json)
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value = "none",
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,

    /// Timeout of one REST request (e.g. 500ms, 10s, 1m)
    #[arg(short = 't', long, global = true, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Jaeger agent endpoint for tracing REST requests (accepted for
    /// compatibility; requests are not traced)
    #[arg(short = 'j', long, global = true, value_name = "ENDPOINT")]
    pub jaeger: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables with the default columns.
    None,
    /// Tables with every column.
    Wide,
    /// The full objects as YAML.
    Yaml,
    /// The full objects as JSON.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// 'Get' resources
    #[command(subcommand)]
    Get(GetCommand),
    /// 'Scale' resources
    #[command(subcommand)]
    Scale(ScaleCommand),
    /// 'Cordon' resources: no new replicas or targets go to them
    #[command(subcommand)]
    Cordon(CordonCommand),
    /// 'Uncordon' resources
    #[command(subcommand)]
    Uncordon(CordonCommand),
    /// 'Drain' resources: cordon and move volume targets away
    #[command(subcommand)]
    Drain(DrainCommand),
    /// 'Label' resources: add (key=value) or remove (key-) a label
    #[command(subcommand)]
    Label(LabelCommand),
    /// Upgrade the cluster to the version of new binaries, one node at a time
    Upgrade(upgrade::cli::UpgradeArgs),
    /// 'Delete' resources
    #[command(subcommand)]
    Delete(upgrade::cli::DeleteCommand),
    /// The live dashboard
    Tui(TuiArgs),
    /// 'Dump' a support bundle (topology, logs, Kubernetes resources, store)
    Dump(crate::dump::DumpArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// All volumes
    Volumes,
    /// One volume
    Volume { id: String },
    /// All pools
    Pools,
    /// One pool
    Pool { id: String },
    /// All nodes
    Nodes,
    /// One node
    Node { id: String },
    /// The replica topology of every volume
    VolumeReplicaTopologies,
    /// The replica topology of one volume
    VolumeReplicaTopology { id: String },
    /// The rebuild history of one volume
    RebuildHistory { id: String },
    /// Cordoned nodes and their cordon labels
    #[command(subcommand)]
    Cordon(NodeSelection),
    /// Draining or drained nodes and their drain state
    #[command(subcommand)]
    Drain(NodeSelection),
    /// The record of the current or last upgrade
    UpgradeStatus,
}

/// `nodes` or `node <id>` under `get cordon` / `get drain`.
#[derive(Debug, Subcommand)]
pub enum NodeSelection {
    /// Every node concerned
    Nodes,
    /// One node
    Node { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ScaleCommand {
    /// Set the replica count of a volume
    Volume {
        id: String,
        /// The new replica count (1 up to the number of usable nodes)
        replica_count: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CordonCommand {
    /// Cordon (or uncordon) a node under a label
    Node {
        id: String,
        /// Who cordons, e.g. `maintenance`; a node stays cordoned while any
        /// label remains
        label: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrainCommand {
    /// Drain a node under a label and wait until it is drained
    Node {
        id: String,
        /// The drain label (removed with `uncordon node <id> <label>`)
        label: String,
        /// Give up waiting after this long (the drain goes on in the
        /// cluster); waits until drained when absent
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        drain_timeout: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Label a node
    Node(LabelArgs),
    /// Label a pool
    Pool(LabelArgs),
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    pub id: String,
    /// `key=value` to set, `key-` to remove
    pub label: String,
    /// Replace the value of a key that already has a different one
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// How often the dashboard polls the REST API
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Directory the `b` key writes support bundles to (must exist)
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub bundle_dir: PathBuf,
}

/// Parses `500ms`, `10s`, `2m`, `1h` or a bare number of seconds (more than
/// zero).
pub use mayastor_common::duration::parse_positive as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "0", "-1s", "10x", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-mayastor",
            "get",
            "volumes",
            "-o",
            "json",
            "--rest",
            "http://127.0.0.1:1",
        ])
        .expect("parses");
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.rest.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(cli.global.namespace, "mayastor");
        assert_eq!(cli.global.timeout, Duration::from_secs(10));
    }
}
