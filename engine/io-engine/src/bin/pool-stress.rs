//! `pool-stress`: random sequential workload on one pool (crash drills,
//! disk validation). See `io_engine::stress`.

#![forbid(unsafe_code)]

use clap::Parser;

/// Runs a random workload on a pool, printing each operation before and
/// after it completes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Pool disk URI (created when blank, imported otherwise).
    #[arg(long)]
    disk: String,
    /// Pool name.
    #[arg(long, default_value = "stress")]
    pool: String,
    /// Cluster size of a new pool, in bytes.
    #[arg(long)]
    cluster_size: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of operations (0 = until killed).
    #[arg(long, default_value_t = 0)]
    ops: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = io_engine::stress::StressConfig {
        disk: a.disk,
        pool: a.pool,
        cluster_size_bytes: a.cluster_size,
        seed: a.seed,
        ops: a.ops,
    };
    io_engine::stress::run(cfg, &mut std::io::stdout().lock()).await
}
