//! A verifying writer: checksummed blocks at random offsets, at a queue
//! depth, against any block device (a nexus in-process, or a remote
//! namespace through the NVMe/TCP initiator).
//!
//! Block `b` written for the `g`-th time holds a pattern derived from
//! `(b, g)`: its index and generation in the first 16 bytes, pseudo-random
//! bytes, and a CRC32C of everything before it in the last 4 bytes. Each
//! writer task owns the blocks `b % depth == task`, so a block has at most
//! one write in flight and its expected content is exact: the last
//! acknowledged generation (zeroes when never written). A write that fails
//! leaves its block uncertain (old or new generation); the failure is
//! recorded.

#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use blockdev::{dynamic::SharedDevice, DmaBuf};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

/// The content of block `block` after its `gen`-th write (all zeros for
/// generation 0, never written).
pub fn pattern(block: u64, gen: u64, bs: usize, out: &mut [u8]) {
    mayastor_common::pattern::fill(block, gen, &mut out[..bs]);
}

/// Running writer state.
pub struct Writer {
    dev: SharedDevice,
    bs: usize,
    blocks: u64,
    depth: u64,
    gens: Vec<AtomicU64>,
    uncertain: Mutex<HashMap<u64, (u64, u64)>>,
    stop: AtomicBool,
    pub errors: Mutex<Vec<String>>,
    pub acked: AtomicU64,
    max_latency_us: AtomicU64,
    tracking: AtomicBool,
    pace_us: AtomicU64,
    touched: Mutex<HashSet<u64>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Writer {
    /// A writer over the first `blocks` blocks of `dev` with `depth` tasks.
    pub fn new(dev: SharedDevice, blocks: u64, depth: u64) -> Arc<Self> {
        let bs = dev.info().block_size.max(4096) as usize;
        let dev_blocks = dev.info().size_bytes() / bs as u64;
        let blocks = blocks.min(dev_blocks);
        Arc::new(Self {
            dev,
            bs,
            blocks,
            depth,
            gens: (0..blocks).map(|_| AtomicU64::new(0)).collect(),
            uncertain: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            errors: Mutex::new(Vec::new()),
            acked: AtomicU64::new(0),
            max_latency_us: AtomicU64::new(0),
            tracking: AtomicBool::new(false),
            pace_us: AtomicU64::new(0),
            touched: Mutex::new(HashSet::new()),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Bytes per written block.
    pub fn block_bytes(&self) -> usize {
        self.bs
    }

    /// Starts (or restarts, after [`Writer::stop`]) the writer tasks.
    pub fn start(self: &Arc<Self>) {
        self.stop.store(false, Ordering::SeqCst);
        for task in 0..self.depth {
            let me = self.clone();
            self.tasks
                .lock()
                .push(tokio::spawn(async move { me.run(task).await }));
        }
    }

    async fn run(&self, task: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(task ^ 0x5eed);
        let mut buf = DmaBuf::new(self.bs);
        let per_task = self.blocks / self.depth;
        while !self.stop.load(Ordering::Relaxed) {
            let block = rng.random_range(0..per_task) * self.depth + task;
            let old = self.gens[block as usize].load(Ordering::Relaxed);
            let gen = old + 1;
            pattern(block, gen, self.bs, &mut buf);
            if self.tracking.load(Ordering::SeqCst) {
                self.touched.lock().insert(block);
            }
            let t0 = Instant::now();
            let res = self.dev.write_at(block * self.bs as u64, &buf).await;
            let us = t0.elapsed().as_micros() as u64;
            self.max_latency_us.fetch_max(us, Ordering::Relaxed);
            match res {
                Ok(()) => {
                    self.gens[block as usize].store(gen, Ordering::Relaxed);
                    self.uncertain.lock().remove(&block);
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    let gap = self.pace_us.load(Ordering::Relaxed);
                    if gap > 0 {
                        tokio::time::sleep(Duration::from_micros(gap)).await;
                    }
                }
                Err(e) => {
                    self.uncertain.lock().insert(block, (old, gen));
                    self.gens[block as usize].store(gen, Ordering::Relaxed);
                    self.errors.lock().push(format!("write block {block}: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Makes each task wait this long between writes (0: none).
    pub fn pace(&self, gap: Duration) {
        self.pace_us
            .store(gap.as_micros() as u64, Ordering::Relaxed);
    }

    /// Starts recording which blocks are written.
    pub fn track(&self, on: bool) {
        self.tracking.store(on, Ordering::SeqCst);
    }

    /// Distinct blocks written while tracking.
    pub fn touched_blocks(&self) -> u64 {
        self.touched.lock().len() as u64
    }

    pub fn max_latency(&self) -> Duration {
        Duration::from_micros(self.max_latency_us.load(Ordering::Relaxed))
    }

    pub fn error_count(&self) -> usize {
        self.errors.lock().len()
    }

    /// Stops the tasks and waits for them.
    pub async fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Reads every covered block of `dev` and checks it holds the last
    /// acknowledged generation. Returns the number of blocks checked.
    pub async fn verify(&self, dev: &SharedDevice) -> Result<u64, String> {
        let chunk_blocks = (1 << 20) / self.bs as u64;
        let mut buf = DmaBuf::new(chunk_blocks as usize * self.bs);
        let mut want = vec![0u8; self.bs];
        let mut alt = vec![0u8; self.bs];
        let uncertain = self.uncertain.lock().clone();
        let mut bad = Vec::new();
        let mut b = 0;
        while b < self.blocks {
            let n = chunk_blocks.min(self.blocks - b);
            let len = n as usize * self.bs;
            dev.read_at(b * self.bs as u64, &mut buf[..len])
                .await
                .map_err(|e| format!("read at block {b}: {e}"))?;
            for i in 0..n {
                let block = b + i;
                let got = &buf[i as usize * self.bs..(i as usize + 1) * self.bs];
                let gen = self.gens[block as usize].load(Ordering::Relaxed);
                pattern(block, gen, self.bs, &mut want);
                if got == &want[..] {
                    continue;
                }
                if let Some((old, _)) = uncertain.get(&block) {
                    pattern(block, *old, self.bs, &mut alt);
                    if got == &alt[..] {
                        continue;
                    }
                }
                bad.push(block);
            }
            b += n;
        }
        if bad.is_empty() {
            Ok(self.blocks)
        } else {
            Err(format!(
                "{} blocks do not hold their last acknowledged write (first: {:?})",
                bad.len(),
                &bad[..bad.len().min(8)]
            ))
        }
    }
}

/// CRC32C over the first `len` bytes of a device.
pub async fn checksum(dev: &SharedDevice, len: u64) -> Result<u32, String> {
    let mut buf = DmaBuf::new(1 << 20);
    let mut crc = 0u32;
    let mut off = 0;
    while off < len {
        let n = (len - off).min(1 << 20) as usize;
        dev.read_at(off, &mut buf[..n])
            .await
            .map_err(|e| format!("read at {off}: {e}"))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        off += n as u64;
    }
    Ok(crc)
}
