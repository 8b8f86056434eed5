//! `pool-stress`: a sequential random workload on one pool, for crash drills
//! and disk validation.
//!
//! It imports (or creates) a pool and then loops: create, destroy or grow a
//! replica, or write a checksummed block to a thin replica. Before each
//! operation it prints an intent line and after it completes an
//! acknowledgement line, so a verifier can tell, after the process was
//! killed at any moment, exactly which operations were acknowledged:
//!
//! ```text
//! begin create <uuid> <name> <size_bytes> <thin 0|1>
//! ack
//! begin write <uuid> <offset_bytes> <len_bytes> <seed>
//! ack
//! ```
//!
//! Operations run one at a time, so at most the last `begin` lacks its
//! `ack`. The data pattern is a pure function of (replica, offset, seed):
//! see [`fill_pattern`].

use std::io::Write;

use blockdev::{BlockDevice, DmaBuf, OpenOptions};
use rand::{rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

use crate::pool::{
    CreatePoolArgs, CreateReplicaArgs, PoolRegistry, ReplicaSelector, ShareProtocol,
};

/// Fills `buf` (a multiple of `block_size`) with the pattern for a write at
/// `offset_bytes` of replica `uuid` with `seed`: every block carries its
/// offset, the seed and the replica, pseudo-random filler and a trailing
/// CRC32C of the rest.
pub fn fill_pattern(buf: &mut [u8], block_size: usize, uuid: &Uuid, offset_bytes: u64, seed: u64) {
    for (i, block) in buf.chunks_mut(block_size).enumerate() {
        let off = offset_bytes + (i * block_size) as u64;
        block[..8].copy_from_slice(&off.to_le_bytes());
        block[8..16].copy_from_slice(&seed.to_le_bytes());
        block[16..32].copy_from_slice(uuid.as_bytes());
        let mut x = seed ^ off.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let n = block.len() - 4;
        for b in block[32..n].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let crc = crc32c::crc32c(&block[..n]);
        block[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Settings of a stress run.
#[derive(Debug, Clone)]
pub struct StressConfig {
    pub disk: String,
    pub pool: String,
    pub cluster_size_bytes: Option<u64>,
    pub seed: u64,
    /// Number of operations; 0 = until killed.
    pub ops: u64,
}

fn line(out: &mut impl Write, s: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    out.write_fmt(s)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Runs the workload, printing intents and acknowledgements to `out`.
pub async fn run(cfg: StressConfig, out: &mut impl Write) -> anyhow::Result<()> {
    let reg = PoolRegistry::new(OpenOptions::default());
    let pool = reg
        .create_pool(CreatePoolArgs {
            name: cfg.pool.clone(),
            uuid: None,
            disks: vec![cfg.disk.clone()],
            cluster_size_bytes: cfg.cluster_size_bytes,
        })
        .await?;
    let cs = pool.cluster_size_bytes;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut done = 0u64;
    while cfg.ops == 0 || done < cfg.ops {
        done += 1;
        let replicas = reg.list_replicas();
        let choice = rng.random_range(0..100u32);
        if replicas.len() < 2 || (choice < 12 && replicas.len() < 6) {
            let uuid = Uuid::new_v4();
            let thin = rng.random_bool(0.7);
            let size = cs * rng.random_range(1..=4u64);
            let name = format!("r-{}", &uuid.simple().to_string()[..8]);
            line(
                out,
                format_args!("begin create {uuid} {name} {size} {}", u8::from(thin)),
            )?;
            match reg
                .create_replica(CreateReplicaArgs {
                    pool: cfg.pool.clone(),
                    name,
                    uuid,
                    size_bytes: size,
                    thin,
                    share: ShareProtocol::None,
                    allowed_hosts: vec![],
                })
                .await
            {
                Ok(_) => line(out, format_args!("ack"))?,
                Err(e) => line(out, format_args!("fail {e}"))?,
            }
        } else if choice < 20 {
            let r = &replicas[rng.random_range(0..replicas.len())];
            line(out, format_args!("begin destroy {}", r.uuid))?;
            reg.destroy_replica(&ReplicaSelector::Uuid(r.uuid)).await?;
            line(out, format_args!("ack"))?;
        } else if choice < 28 {
            let r = &replicas[rng.random_range(0..replicas.len())];
            let size = r.size_bytes + cs * rng.random_range(0..=1u64) + 4096;
            line(out, format_args!("begin resize {} {size}", r.uuid))?;
            match reg
                .resize_replica(&ReplicaSelector::Uuid(r.uuid), size)
                .await
            {
                Ok(_) => line(out, format_args!("ack"))?,
                Err(e) => line(out, format_args!("fail {e}"))?,
            }
        } else {
            let r = &replicas[rng.random_range(0..replicas.len())];
            let dev = reg.open_replica(&r.uuid)?;
            let bs = dev.info().block_size as u64;
            let blocks = dev.info().num_blocks;
            let len_blocks = rng.random_range(1..=16u64).min(blocks);
            let offset = rng.random_range(0..=blocks - len_blocks) * bs;
            let seed: u64 = rng.random();
            let mut buf = DmaBuf::new((len_blocks * bs) as usize);
            fill_pattern(&mut buf, bs as usize, &r.uuid, offset, seed);
            line(
                out,
                format_args!("begin write {} {offset} {} {seed}", r.uuid, buf.len()),
            )?;
            match dev.write_at(offset, &buf).await {
                Ok(()) => line(out, format_args!("ack"))?,
                Err(e) => line(out, format_args!("fail {e}"))?,
            }
        }
    }
    reg.shutdown().await;
    Ok(())
}
