//! The flags of `kubectl mayastor upgrade` and `delete upgrade` (the
//! plugin flattens these into its command tree).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::validate::Skips;

/// `kubectl mayastor upgrade`.
#[derive(Debug, Clone, Args)]
pub struct UpgradeArgs {
    /// Run the validations and show what would be done; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Upgrade the control plane only; leave the io-engines running
    #[arg(long)]
    pub skip_data_plane_restart: bool,
    /// Allow volumes with a single replica (unavailable while their node restarts)
    #[arg(long)]
    pub skip_single_replica_volume_validation: bool,
    /// Allow starting while a replica is being rebuilt
    #[arg(long)]
    pub skip_replica_rebuild: bool,
    /// Allow cordoned or drained storage nodes
    #[arg(long)]
    pub skip_cordoned_node_validation: bool,
    /// Allow a downgrade, a stable to pre-release upgrade or an unsupported source version
    #[arg(long)]
    pub skip_upgrade_path_validation: bool,
    /// Helm value for the chart (Kubernetes only), key=value; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Helm value from a file (Kubernetes only), key=path; repeatable
    #[arg(long = "set-file", value_name = "KEY=PATH")]
    pub set_file: Vec<String>,
    /// Directory of the new binaries (local cluster) [default: the
    /// directory of this plugin's binary]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Longest wait for the control plane to answer on the new version
    #[arg(long, default_value = "2m", value_parser = mayastor_common::duration::parse_positive, value_name = "DURATION")]
    pub control_plane_timeout: Duration,
    /// Longest wait for a node's volume targets to move off it
    #[arg(long, default_value = "5m", value_parser = mayastor_common::duration::parse_positive, value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// Longest wait for a restarted engine to be Online on the new version
    #[arg(long, default_value = "2m", value_parser = mayastor_common::duration::parse_positive, value_name = "DURATION")]
    pub node_timeout: Duration,
    /// Longest wait for rebuilds to finish and every volume to be Online
    #[arg(long, default_value = "10m", value_parser = mayastor_common::duration::parse_positive, value_name = "DURATION")]
    pub rebuild_timeout: Duration,
}

impl UpgradeArgs {
    pub fn skips(&self) -> Skips {
        Skips {
            upgrade_path: self.skip_upgrade_path_validation,
            replica_rebuild: self.skip_replica_rebuild,
            cordoned_node: self.skip_cordoned_node_validation,
            single_replica_volume: self.skip_single_replica_volume_validation,
        }
    }

    /// Checks `--set` and `--set-file`: `key=value` with a non-empty key,
    /// and files that exist.
    pub fn check_values(&self) -> Result<(), String> {
        for item in &self.set {
            split_value("--set", item)?;
        }
        for item in &self.set_file {
            let (_, path) = split_value("--set-file", item)?;
            if !std::path::Path::new(path).is_file() {
                return Err(format!("--set-file {item}: {path} is not a readable file"));
            }
        }
        Ok(())
    }
}

fn split_value<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str), String> {
    match item.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key, value)),
        _ => Err(format!("{flag} {item:?}: expected key=value")),
    }
}

/// `kubectl mayastor delete ...`
#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete the upgrade record
    Upgrade(DeleteUpgradeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DeleteUpgradeArgs {
    /// Delete an unfinished (in progress or failed) upgrade's record too
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: UpgradeArgs,
    }

    #[test]
    fn flags_and_values() {
        use clap::Parser;
        let w = Wrap::try_parse_from([
            "x",
            "--dry-run",
            "--skip-replica-rebuild",
            "--set",
            "a=b",
            "--set",
            "c.d=",
            "--node-timeout",
            "30s",
        ])
        .expect("parses");
        assert!(w.args.dry_run && w.args.skips().replica_rebuild);
        assert!(!w.args.skips().upgrade_path);
        assert_eq!(w.args.node_timeout, Duration::from_secs(30));
        assert_eq!(w.args.check_values(), Ok(()));
        let bad = Wrap::try_parse_from(["x", "--set", "novalue"]).expect("parses");
        assert!(bad.args.check_values().is_err());
        let missing = Wrap::try_parse_from(["x", "--set-file", "k=/no/such/file"]).expect("parses");
        assert!(missing.args.check_values().is_err());
        assert!(Wrap::try_parse_from(["x", "--drain-timeout", "0s"]).is_err());
    }
}
