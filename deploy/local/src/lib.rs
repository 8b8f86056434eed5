//! The local cluster launcher: runs a whole Mayastor cluster on one
//! machine (DESIGN.md section 1, `deploy/`).
//!
//! - [`layout`]: where each component listens and its command line;
//! - [`state`]: the state directory (settings, PIDs, logs, data);
//! - [`process`]: starting, finding and stopping child processes by PID
//!   and start time;
//! - [`cluster`]: `up`, `down`, `status`;
//! - [`restart`]: one component stopped and started again, on new
//!   binaries when asked;
//! - [`demo`]: the replicated data path shown end to end;
//! - [`data`]: checksummed patterns over NVMe/TCP with our initiator.
//!
//! The launcher talks to the cluster through the REST API only (plus
//! NVMe/TCP for the demo's data); it does not link any server.
//! Every command takes the state directory's lock, so two commands on one
//! cluster run one after the other.

pub mod cli;
pub mod cluster;
pub mod data;
pub mod demo;
pub mod layout;
pub mod process;
pub mod progress;
pub mod restart;
pub mod size;
pub mod state;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = match cli.state_dir {
        Some(dir) => dir,
        None => state::default_dir()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Up(args) => cluster::up(&root, args).await.map(|()| ExitCode::SUCCESS),
            Command::Status => cluster::status(&root).await,
            Command::Down(args) => cluster::down(&root, args.wipe).map(|()| ExitCode::SUCCESS),
            Command::Demo => demo::demo(&root).await.map(|()| ExitCode::SUCCESS),
            Command::Restart(args) => {
                restart::restart(&root, &args.name, args.bin_dir.as_deref(), args.if_changed)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
        }
    })
}
