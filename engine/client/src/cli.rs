//! Command line of `io-engine-client`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default io-engine gRPC endpoint.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:10124";

/// Drives an io-engine over its gRPC API.
#[derive(Debug, Parser)]
#[command(name = "io-engine-client", version, about, propagate_version = true)]
pub struct Cli {
    /// io-engine gRPC endpoint: IP[:PORT], HOST[:PORT] or http://HOST[:PORT]
    /// (port 10124 when none is given).
    #[arg(short = 'e', long, global = true, value_name = "ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    /// Time limit of one request (e.g. 30s, 500ms, 2m; plain numbers are
    /// seconds).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns (as upstream's mayastor-client).
    Table,
    /// The table with more columns where there are any (`replica list`
    /// adds SHARE and URI).
    Wide,
    /// Pretty JSON: snake_case fields, sizes in bytes.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Manage replicas.
    #[command(subcommand)]
    Replica(ReplicaCommand),
    /// Information about the node.
    #[command(subcommand)]
    Host(HostCommand),
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool on a disk (imports it when the disk already holds a pool
    /// of that name).
    Create {
        /// Pool name.
        name: String,
        /// Disk URI: /dev/sdx, aio:///path, uring:///path,
        /// malloc:///malloc0?size_mb=64.
        disk: String,
        /// Pool uuid (default: a new one, or the one on the disk).
        #[arg(long)]
        uuid: Option<String>,
        /// Cluster size in bytes (power of two; default 4 MiB).
        #[arg(long, value_name = "BYTES")]
        cluster_size: Option<u64>,
    },
    /// Import the pool a disk holds.
    Import {
        /// Pool name.
        name: String,
        /// Disk URI.
        disk: String,
    },
    /// List pools.
    #[command(alias = "ls")]
    List,
    /// Destroy a pool and all its replicas.
    Destroy {
        /// Pool name.
        name: String,
    },
    /// Export a pool: flush and release it, leaving the data on the disk.
    Export {
        /// Pool name.
        name: String,
    },
    /// Check a pool's metadata; exits 1 when problems are found.
    Check {
        /// Pool name.
        name: String,
    },
}

/// A replica named by pool and name, or by uuid.
#[derive(Debug, Args)]
pub struct ReplicaRef {
    /// Pool name or uuid.
    #[arg(required_unless_present = "uuid")]
    pub pool: Option<String>,
    /// Replica name.
    #[arg(required_unless_present = "uuid")]
    pub name: Option<String>,
    /// Replica uuid (instead of pool and name).
    #[arg(long, conflicts_with_all = ["pool", "name"])]
    pub uuid: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Create a replica.
    Create {
        /// Pool name or uuid.
        pool: String,
        /// Replica name.
        name: String,
        /// Size in MiB.
        #[arg(long, value_name = "MiB")]
        size: u64,
        /// Allocate space on first write instead of up front.
        #[arg(long)]
        thin: bool,
        /// Replica uuid (default: a new one).
        #[arg(long)]
        uuid: Option<String>,
    },
    /// List replicas.
    #[command(alias = "ls")]
    List,
    /// Destroy a replica.
    Destroy(ReplicaRef),
    /// Grow a replica.
    Resize {
        #[command(flatten)]
        replica: ReplicaRef,
        /// New size in MiB.
        #[arg(long, value_name = "MiB")]
        size: u64,
    },
    /// Share a replica over NVMe/TCP and print its nvmf:// URI. Sharing a
    /// shared replica again replaces its allowed hosts.
    Share {
        #[command(flatten)]
        replica: ReplicaRef,
        /// Host NQN allowed to connect (repeat for more). Only the hosts
        /// listed may connect: none given, nobody may.
        #[arg(long = "allowed-host", value_name = "NQN")]
        allowed_hosts: Vec<String>,
    },
    /// Stop sharing a replica (connected hosts' I/O fails from then on).
    Unshare(ReplicaRef),
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Version, node name, endpoint and block devices of the node.
    Info,
}

/// Parses `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1_000)
    };
    let value: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let ms = value
        .checked_mul(unit_ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn replica_ref_forms() {
        let by_name = Cli::try_parse_from(["c", "replica", "destroy", "p", "r"]);
        assert!(by_name.is_ok());
        let by_uuid = Cli::try_parse_from(["c", "replica", "destroy", "--uuid", "u"]);
        assert!(by_uuid.is_ok());
        assert!(Cli::try_parse_from(["c", "replica", "destroy"]).is_err());
        assert!(Cli::try_parse_from(["c", "replica", "destroy", "p"]).is_err());
        assert!(Cli::try_parse_from(["c", "replica", "destroy", "p", "r", "--uuid", "u"]).is_err());
        assert!(
            Cli::try_parse_from(["c", "replica", "create", "p", "r", "--size=10", "--thin"])
                .is_ok()
        );
        assert!(Cli::try_parse_from(["c", "-o", "json", "pool", "list"]).is_ok());
        assert!(Cli::try_parse_from(["c", "pool", "list", "-o", "wide"]).is_ok());
        assert!(Cli::try_parse_from(["c", "-o", "yaml", "pool", "list"]).is_err());
    }

    #[test]
    fn share_forms() {
        let cli = Cli::try_parse_from([
            "c",
            "replica",
            "share",
            "p",
            "r",
            "--allowed-host",
            "nqn.2019-05.io.openebs:node-name:n1",
            "--allowed-host=nqn.2019-05.io.openebs:node-name:n2",
        ])
        .unwrap();
        match cli.command {
            Command::Replica(ReplicaCommand::Share {
                replica,
                allowed_hosts,
            }) => {
                assert_eq!(replica.pool.as_deref(), Some("p"));
                assert_eq!(replica.name.as_deref(), Some("r"));
                assert_eq!(allowed_hosts.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["c", "replica", "share", "--uuid", "u"]).is_ok());
        assert!(Cli::try_parse_from(["c", "replica", "share", "p"]).is_err());
        assert!(Cli::try_parse_from(["c", "replica", "unshare", "p", "r"]).is_ok());
        assert!(Cli::try_parse_from(["c", "replica", "unshare"]).is_err());
    }
}
