//! Serves one RAM namespace over NVMe/TCP, for interop checks with the
//! kernel host (`shared/tools/nvme-vm`).
//!
//! ```text
//! cargo run -p nvmf-target --example malloc-target -- \
//!     [--port 4421] [--host-nqn NQN] [--uuid UUID] [--size-mb 256] [--listen 127.0.0.1]
//! ```
//! Prints `NQN=<subsystem nqn>` once listening; runs until Ctrl-C.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use mayastor_common::log::LogFormat;
use nvmf_target::{Target, TargetConfig};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mayastor_common::log::init_tracing("malloc-target", LogFormat::Pretty);
    let mut port = 4421u16;
    let mut host = "nqn.2019-05.io.openebs:node-name:vm".to_owned();
    let mut id = uuid::Uuid::new_v4();
    let mut size_mb = 256u64;
    let mut listen = "127.0.0.1".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().context("missing value")?;
        match a.as_str() {
            "--port" => port = v.parse()?,
            "--host-nqn" => host = v,
            "--uuid" => id = v.parse()?,
            "--size-mb" => size_mb = v.parse()?,
            "--listen" => listen = v,
            _ => anyhow::bail!("unknown option {a}"),
        }
    }
    let dev = blockdev::open_uri(
        &format!("malloc:///m0?size_mb={size_mb}"),
        &Default::default(),
    )
    .await
    .context("malloc device")?;
    let cfg = TargetConfig {
        listen: SocketAddr::new(listen.parse()?, port),
        ..TargetConfig::default()
    };
    let target = Target::bind(cfg).await?;
    let nqn = format!("nqn.2019-05.io.openebs:{id}");
    target.add_subsystem(&nqn, Arc::new(dev), id, vec![host])?;
    println!("NQN={nqn}");
    println!("LISTEN={}", target.local_addr());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        c.cancel();
    });
    target.serve(cancel).await;
    println!("{:?}", target.stats());
    Ok(())
}
