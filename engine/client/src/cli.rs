//! Command line of `io-engine-client`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use io_engine_api::v1;

use mayastor_common::duration::parse_positive as parse_duration;

use crate::units::{parse_size, parse_size_or_zero};

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
    /// adds SHARE and URI, `nexus list` CHILDREN, `nexus children`
    /// DIRTY_LOG and LAST_FAULTED_AT).
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
    /// Manage nexuses (volume targets) and their children.
    #[command(subcommand)]
    Nexus(NexusCommand),
    /// Manage the rebuilds of nexus children.
    #[command(subcommand)]
    Rebuild(RebuildCommand),
    /// Information about the node.
    #[command(subcommand)]
    Host(HostCommand),
    /// I/O statistics (cumulative reads and writes: ops, bytes, latency).
    #[command(subcommand)]
    Stats(StatsCommand),
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
        /// Size in MiB, or with a unit (B, KiB, MiB, GiB, TiB).
        #[arg(long, value_name = "MiB", value_parser = parse_size_or_zero)]
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
        /// New size in MiB, or with a unit (B, KiB, MiB, GiB, TiB).
        #[arg(long, value_name = "MiB", value_parser = parse_size_or_zero)]
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

/// A child of a nexus.
#[derive(Debug, Args)]
pub struct ChildRef {
    /// Nexus uuid.
    #[arg(value_parser = parse_uuid)]
    pub uuid: String,
    /// Child URI, as `nexus children` shows it.
    #[arg(value_parser = parse_child_uri)]
    pub uri: String,
}

/// A nexus named by its uuid.
#[derive(Debug, Args)]
pub struct NexusRef {
    /// Nexus uuid.
    #[arg(value_parser = parse_uuid)]
    pub uuid: String,
}

/// NVMe reservation settings of a nexus's remote children.
#[derive(Debug, Args)]
pub struct ReservationArgs {
    /// Reservation key registered on every remote child (non-zero).
    #[arg(long, value_name = "KEY", value_parser = clap::value_parser!(u64).range(1..))]
    pub resv_key: Option<u64>,
    /// Reservation key of a previous holder to preempt (non-zero).
    #[arg(long, value_name = "KEY", requires = "resv_key", value_parser = clap::value_parser!(u64).range(1..))]
    pub preempt_key: Option<u64>,
    /// Reservation to acquire with the key (default: register the key only).
    #[arg(long, value_name = "TYPE", requires = "resv_key", value_enum)]
    pub resv_type: Option<ReservationType>,
}

/// NVMe reservation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReservationType {
    WriteExclusive,
    ExclusiveAccess,
    WriteExclusiveRegOnly,
    ExclusiveAccessRegOnly,
    WriteExclusiveAllRegs,
    ExclusiveAccessAllRegs,
}

impl From<ReservationType> for v1::NvmeReservation {
    fn from(t: ReservationType) -> Self {
        match t {
            ReservationType::WriteExclusive => Self::WriteExclusive,
            ReservationType::ExclusiveAccess => Self::ExclusiveAccess,
            ReservationType::WriteExclusiveRegOnly => Self::WriteExclusiveRegOnly,
            ReservationType::ExclusiveAccessRegOnly => Self::ExclusiveAccessRegOnly,
            ReservationType::WriteExclusiveAllRegs => Self::WriteExclusiveAllRegs,
            ReservationType::ExclusiveAccessAllRegs => Self::ExclusiveAccessAllRegs,
        }
    }
}

/// What `nexus child-op` does to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChildAction {
    /// Reopen the child and rebuild it (partially when it has a dirty-region
    /// log).
    Online,
    /// Take the child out of the I/O path (a child that was online keeps a
    /// dirty-region log, for a partial rebuild when onlined).
    Offline,
    /// Fault the child as a failed I/O would (same effect as offline; says
    /// the child is broken rather than briefly away).
    Fault,
}

impl From<ChildAction> for v1::ChildAction {
    fn from(a: ChildAction) -> Self {
        match a {
            ChildAction::Online => Self::Online,
            ChildAction::Offline => Self::Offline,
            ChildAction::Fault => Self::Fault,
        }
    }
}

/// Largest NVMe controller ID a nexus may hand out.
pub const MAX_CNTLID: u32 = 0xffef;

#[derive(Debug, Subcommand)]
pub enum NexusCommand {
    /// Create a nexus over children that are in sync (they start online).
    Create {
        /// Nexus uuid.
        #[arg(value_parser = parse_uuid)]
        uuid: String,
        /// Size in MiB, or with a unit (B, KiB, MiB, GiB, TiB).
        #[arg(long, value_name = "MiB", value_parser = parse_size)]
        size: u64,
        /// Volume uuid: the nexus is published as
        /// nqn.2019-05.io.openebs:<VOLUME_UUID> (default: the nexus uuid).
        #[arg(long, value_name = "VOLUME_UUID", value_parser = parse_uuid)]
        name: Option<String>,
        #[command(flatten)]
        reservation: ReservationArgs,
        /// Store key under which the nexus persists its children's health
        /// (default: derived by the engine from the volume and nexus uuids).
        #[arg(long, value_name = "KEY")]
        nexus_info_key: Option<String>,
        /// Child URIs: bdev:///<replica-uuid>?uuid=<replica-uuid> or
        /// nvmf://host:port/<nqn>?uuid=<replica-uuid>.
        #[arg(required = true, value_name = "CHILD_URI", value_parser = parse_child_uri)]
        children: Vec<String>,
    },
    /// List nexuses.
    #[command(alias = "ls")]
    List {
        /// Add the CHILDREN column (as `-o wide`).
        #[arg(short = 'c', long)]
        show_children: bool,
    },
    /// List a nexus's children with their state and rebuild progress.
    Children(NexusRef),
    /// Publish a nexus over NVMe/TCP and print its nvmf:// URI. Publishing
    /// again replaces its allowed hosts.
    Publish {
        #[command(flatten)]
        nexus: NexusRef,
        /// Host NQN allowed to connect (repeat for more). Only the hosts
        /// listed may connect: none given, nobody may.
        #[arg(long = "allowed-host", value_name = "NQN")]
        allowed_hosts: Vec<String>,
        /// Lowest NVMe controller ID the target hands out (default 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CNTLID)))]
        min_cntlid: Option<u32>,
        /// Highest NVMe controller ID the target hands out (default 65519).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CNTLID)))]
        max_cntlid: Option<u32>,
        #[command(flatten)]
        reservation: ReservationArgs,
    },
    /// Stop exporting a nexus (connected hosts' I/O fails from then on).
    Unpublish(NexusRef),
    /// Shut a nexus down: I/O fails from then on, it stays listed until
    /// destroyed.
    Shutdown(NexusRef),
    /// Destroy a nexus (its children's replicas are left alone).
    Destroy(NexusRef),
    /// Add a child; it is rebuilt from a healthy child.
    Add {
        #[command(flatten)]
        child: ChildRef,
        /// Do not start the rebuild (start it later with `rebuild start`).
        #[arg(long)]
        norebuild: bool,
    },
    /// Remove a child (the last healthy one cannot be removed).
    Remove(ChildRef),
    /// Bring a child online, take it offline or fault it.
    ChildOp {
        #[command(flatten)]
        child: ChildRef,
        /// online, offline or fault.
        #[arg(value_enum)]
        action: ChildAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum RebuildCommand {
    /// Start rebuilding a faulted child from a healthy one.
    Start {
        #[command(flatten)]
        child: ChildRef,
        /// Copy rate limit in MiB/s, or with a unit per second (e.g.
        /// 512KiB); default unlimited.
        #[arg(long, value_name = "MiB/s", value_parser = parse_size)]
        max_bandwidth: Option<u64>,
    },
    /// Stop a child's rebuild (the child stays out of sync).
    Stop(ChildRef),
    /// Pause a child's rebuild.
    Pause(ChildRef),
    /// Resume a paused rebuild.
    Resume(ChildRef),
    /// Progress of a child's rebuild: percent, state, blocks done/total.
    Progress(ChildRef),
    /// Statistics of a child's rebuild.
    Stats(ChildRef),
    /// A nexus's finished, stopped and failed rebuilds.
    History(NexusRef),
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Version, node name, endpoint and block devices of the node.
    Info,
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// I/O statistics of the pools (all reads and writes of their replicas).
    Pool {
        /// Only this pool (name or uuid).
        name: Option<String>,
    },
    /// I/O statistics of the replicas.
    Replica {
        /// Only this replica (name or uuid).
        name: Option<String>,
    },
    /// I/O statistics of the nexuses (the application's reads and writes).
    Nexus {
        /// Only this nexus (name, i.e. the volume uuid, or nexus uuid).
        name: Option<String>,
    },
}

impl Cli {
    /// Checks what the parser alone cannot (relations between flags), so
    /// that bad input is refused before any request is sent.
    pub fn validate(&self) -> Result<(), String> {
        if let Command::Nexus(NexusCommand::Publish {
            min_cntlid: Some(min),
            max_cntlid: Some(max),
            ..
        }) = &self.command
        {
            if min > max {
                return Err(format!(
                    "--min-cntlid {min} is greater than --max-cntlid {max}"
                ));
            }
        }
        Ok(())
    }
}

/// Parses a uuid (any form the uuid crate accepts) into the hyphenated
/// lowercase form the API uses.
pub fn parse_uuid(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("{text:?} is not a uuid (e.g. 0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f)"))
}

/// Checks that a child URI has a scheme (`bdev:///...`, `nvmf://...`); the
/// engine checks the rest.
pub fn parse_child_uri(text: &str) -> Result<String, String> {
    match text.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.') =>
        {
            Ok(text.to_string())
        }
        _ => Err(format!(
            "{text:?} is not a child URI (bdev:///<replica-uuid>?uuid=<uuid> or \
             nvmf://host:port/<nqn>?uuid=<uuid>)"
        )),
    }
}

#[cfg(test)]
mod tests;
