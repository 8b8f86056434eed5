//! Command line of `mayastor-local`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs a whole Mayastor cluster on this machine: the store, the core
/// agent, the REST API and N io-engines, each on its own loopback address,
/// each engine with a file-backed pool.
#[derive(Debug, Parser)]
#[command(name = "mayastor-local", version)]
pub struct Cli {
    /// Directory holding the cluster's settings, PIDs, logs, store data and
    /// pool files [default: ${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-local].
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Starts the cluster (only what is not running yet) and creates the pools.
    Up(UpArgs),
    /// Shows the components, the nodes, pools and volumes, and the REST
    /// endpoint; exits non-zero when the cluster is not fully up.
    Status,
    /// Stops everything the launcher started; keeps the data unless --wipe.
    Down(DownArgs),
    /// Creates a 3-replica volume, writes and verifies data over NVMe/TCP,
    /// kills an engine and shows the volume degrade and rebuild.
    Demo,
    /// Stops one component and starts it again (on the binary of
    /// --bin-dir when given, recorded for later `up`s); data is kept.
    Restart(RestartArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// The component: store, agent-core, api-rest or io-engine-<i>.
    pub name: String,
    /// Directory holding the new binary (io-engine, agent-core, api-rest,
    /// mayastor-store).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Do nothing when the component already runs from the binary of
    /// --bin-dir (a retried step of an upgrade restarts nothing twice).
    #[arg(long, requires = "bin_dir")]
    pub if_changed: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of io-engines (nodes) [default: 3].
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,
    /// Size of each node's pool file, e.g. 512MiB, 1GiB [default: 512MiB].
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse_size)]
    pub pool_size: Option<u64>,
    /// Store of the control plane [default: embedded].
    #[arg(long, value_enum)]
    pub store: Option<StoreKind>,
    /// First three octets of the loopback addresses, e.g. 127.0.1: engine i
    /// listens on A.B.C.i, the store on .250, the core agent on .251 and
    /// the REST API on .252 [default: 127.0.1].
    #[arg(long, value_name = "A.B.C")]
    pub ip_prefix: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Also delete the store data, the pool files and the logs.
    #[arg(long)]
    pub wipe: bool,
}

/// Which store the control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// `mayastor-store`, the embedded store speaking the etcd API.
    Embedded,
    /// A real `etcd` (Debian's `etcd-server`).
    Etcd,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Etcd => "etcd",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "mayastor-local",
            "up",
            "--nodes",
            "4",
            "--pool-size",
            "1GiB",
            "--store",
            "etcd",
            "--ip-prefix",
            "127.0.9",
            "--state-dir",
            "/tmp/x",
        ])
        .expect("valid flags");
        assert_eq!(cli.state_dir, Some(PathBuf::from("/tmp/x")));
        match cli.command {
            Command::Up(a) => {
                assert_eq!(a.nodes, Some(4));
                assert_eq!(a.pool_size, Some(1 << 30));
                assert_eq!(a.store, Some(StoreKind::Etcd));
                assert_eq!(a.ip_prefix.as_deref(), Some("127.0.9"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["mayastor-local", "up", "--pool-size", "lots"]).is_err());
        assert!(Cli::try_parse_from(["mayastor-local", "down", "--wipe"]).is_ok());
        assert!(Cli::try_parse_from(["mayastor-local"]).is_err());
    }
}
