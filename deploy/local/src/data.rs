//! Checksummed data over NVMe/TCP with our initiator (`nvmf-host`): the
//! demo writes and verifies a published volume with it, and so can tests.
//!
//! Every 4 KiB block holds its own index and a generation number, a
//! pseudo-random payload derived from both, and a CRC-32C of all that in
//! its last 4 bytes; so a block read back is checked for corruption (the
//! checksum), for being misplaced (the index) and for being stale (the
//! generation).

use std::ops::Range;

use anyhow::{bail, Context};
use blockdev::BlockDevice;
use futures::{StreamExt, TryStreamExt};
use mayastor_common::pattern;
use nvmf_host::{ConnectOptions, Controller, Namespace};

/// Block size of the pattern.
pub const BLOCK_BYTES: u64 = 4096;
/// Blocks per I/O.
const CHUNK_BLOCKS: u64 = 64;
/// I/Os in flight.
const QUEUE_DEPTH: usize = 4;
/// The frontend node name the launcher publishes volumes to.
pub const HOST_NODE: &str = "mayastor-local";

/// Host NQN of [`HOST_NODE`].
pub fn host_nqn() -> String {
    io_engine_api::names::host_nqn(HOST_NODE)
}

/// The contents of block `index` at generation `generation` (at least 1).
pub fn pattern_block(index: u64, generation: u64) -> Vec<u8> {
    pattern::block(index, generation, BLOCK_BYTES as usize)
}

/// Why a block read back is wrong, or `None` when it is right.
pub use pattern::check as check_block;

/// A connection to a published volume.
pub struct VolumePath {
    ctrl: Controller,
    ns: Namespace,
}

impl VolumePath {
    /// Connects to `uri` (`nvmf://...`) as [`HOST_NODE`].
    pub async fn connect(uri: &str) -> anyhow::Result<VolumePath> {
        let mut opts = ConnectOptions::from_uri(uri)
            .with_context(|| format!("{uri} is not an NVMe/TCP URI"))?;
        opts.hostnqn = host_nqn();
        opts.io_timeout_ms = 10_000;
        opts.reconnect_timeout_ms = 5_000;
        let ctrl = Controller::connect(opts)
            .await
            .with_context(|| format!("cannot connect to {uri}"))?;
        let ns = ctrl
            .namespace(1)
            .await
            .with_context(|| format!("cannot open namespace 1 of {uri}"))?;
        Ok(VolumePath { ctrl, ns })
    }

    /// Size of the volume in blocks of [`BLOCK_BYTES`].
    pub fn blocks(&self) -> u64 {
        self.ns.info().size_bytes() / BLOCK_BYTES
    }

    /// Writes generation `generation` of `blocks`; `progress` gets the
    /// number of blocks done after each I/O.
    pub async fn write(
        &self,
        blocks: Range<u64>,
        generation: u64,
        progress: impl Fn(u64),
    ) -> anyhow::Result<()> {
        let chunks = chunks(blocks);
        let ns = &self.ns;
        let mut done = 0;
        let mut stream = futures::stream::iter(chunks)
            .map(|range| async move {
                let mut buf =
                    Vec::with_capacity(((range.end - range.start) * BLOCK_BYTES) as usize);
                for b in range.clone() {
                    buf.extend_from_slice(&pattern_block(b, generation));
                }
                ns.write_at(range.start * BLOCK_BYTES, &buf)
                    .await
                    .with_context(|| format!("write of blocks {range:?} failed"))?;
                Ok::<u64, anyhow::Error>(range.end - range.start)
            })
            .buffer_unordered(QUEUE_DEPTH);
        while let Some(n) = stream.try_next().await? {
            done += n;
            progress(done);
        }
        Ok(())
    }

    /// Reads `blocks` back and checks each against the generation
    /// `expected` gives for it. Fails naming the first bad blocks.
    pub async fn verify(
        &self,
        blocks: Range<u64>,
        expected: impl Fn(u64) -> u64 + Sync,
        progress: impl Fn(u64),
    ) -> anyhow::Result<()> {
        let ns = &self.ns;
        let expected = &expected;
        let mut done = 0;
        let mut bad: Vec<String> = Vec::new();
        let mut bad_count = 0u64;
        let mut stream = futures::stream::iter(chunks(blocks))
            .map(|range| async move {
                let mut buf = vec![0u8; ((range.end - range.start) * BLOCK_BYTES) as usize];
                ns.read_at(range.start * BLOCK_BYTES, &mut buf)
                    .await
                    .with_context(|| format!("read of blocks {range:?} failed"))?;
                let problems: Vec<String> = range
                    .clone()
                    .zip(buf.chunks(BLOCK_BYTES as usize))
                    .filter_map(|(b, got)| check_block(b, expected(b), got))
                    .collect();
                Ok::<(u64, Vec<String>), anyhow::Error>((range.end - range.start, problems))
            })
            .buffer_unordered(QUEUE_DEPTH);
        while let Some((n, problems)) = stream.try_next().await? {
            done += n;
            bad_count += problems.len() as u64;
            bad.extend(problems.into_iter().take(3usize.saturating_sub(bad.len())));
            progress(done);
        }
        if bad_count > 0 {
            bail!(
                "{bad_count} block(s) read back wrong, e.g. {}",
                bad.join("; ")
            );
        }
        Ok(())
    }

    /// Disconnects (best effort).
    pub async fn disconnect(self) {
        let _ = self.ctrl.disconnect().await;
    }
}

fn chunks(blocks: Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = blocks.start;
    while at < blocks.end {
        let end = (at + CHUNK_BLOCKS).min(blocks.end);
        out.push(at..end);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        assert_eq!(chunks(0..130), vec![0..64, 64..128, 128..130]);
        assert!(chunks(5..5).is_empty());
    }
}
