//! The nexus arrangements: one pool with one thick replica per backing
//! (see [`setup`](crate::setup)), all pools in one [`PoolRegistry`], and an
//! in-process [`NexusRegistry`] over them (no nexus-info store, nothing
//! published over NVMe/TCP). The modes use them like this:
//!
//! ```text
//! nexus-vs-replica   FILE   -> pool io-bench   -> replica A <- nexus (1 child)
//!                    baseline: replica A itself
//! nexus-2-vs-1       FILE   -> pool io-bench   -> replica A <- nexus-1 (A)
//!                    FILE.2 -> pool io-bench-2 -> replica B <- nexus-2 (A, B)
//! rebuild-vs-copy    FILE   -> pool io-bench   -> replica A <- nexus (A), then + B
//!                    FILE.2 -> pool io-bench-2 -> replica B
//!                    raw copy: FILE[A's clusters] -> FILE.2[B's clusters]
//! ```
//!
//! Both nexuses of `nexus-2-vs-1` open replica A; they are never driven at
//! the same time. Replica B goes stale while nexus-1 writes, which does not
//! matter to a benchmark (nothing reads back to verify).
//!
//! The raw copy of `rebuild-vs-copy` moves exactly the bytes the rebuild
//! moves (a thick replica on a fresh pool is one contiguous run after the
//! metadata, checked at setup), through the same device layer, with the
//! rebuild's segment size and one segment in flight like the rebuild job.
//! With `malloc:` the backings are RAM disks; a RAM disk cannot be opened
//! twice, so the raw copy runs between the two spare raw RAM disks of the
//! same size instead (filled beforehand, so no run pays for allocating
//! memory).
//!
//! Threading model: set up and torn down on the caller's runtime; the
//! rebuild job runs as a task of that runtime.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use blockdev::{BlockDevice, Device, DmaBuf, OpenOptions};
use io_engine::{
    nexus::{
        ChildState, CreateNexusArgs, DefaultOpener, Nexus, NexusConfig, NexusError, NexusRegistry,
        RebuildState,
    },
    pool::PoolRegistry,
};
use uuid::Uuid;

use crate::{
    runner::Region,
    setup::{self, Backing, ReplicaVsRaw},
    stats::{CpuTime, HostCpu, HostLoad},
    BenchError,
};

/// What the pools of a nexus mode sit on, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingSpec {
    /// FILE for the first pool, FILE.2 for the second, and so on.
    File(PathBuf),
    /// RAM disks (`malloc:` on the command line).
    Malloc,
}

impl BackingSpec {
    /// `malloc:` means RAM disks, anything else is a file path.
    pub fn from_arg(arg: PathBuf) -> Self {
        if arg.as_os_str() == "malloc:" {
            BackingSpec::Malloc
        } else {
            BackingSpec::File(arg)
        }
    }

    /// The backing file of pool `index` (0-based): FILE, FILE.2, FILE.3...
    pub fn nth_path(path: &Path, index: usize) -> PathBuf {
        if index == 0 {
            return path.to_path_buf();
        }
        let mut s = OsString::from(path.as_os_str());
        s.push(format!(".{}", index + 1));
        PathBuf::from(s)
    }

    /// Name of the pool on backing `index`: `io-bench`, `io-bench-2`...
    pub fn pool_name(index: usize) -> String {
        if index == 0 {
            setup::POOL_NAME.to_string()
        } else {
            format!("{}-{}", setup::POOL_NAME, index + 1)
        }
    }
}

fn nexus_err(source: NexusError) -> BenchError {
    BenchError::Nexus(source)
}

/// Pools with one replica each, and the nexuses built on them.
pub struct NexusSetup {
    pools: Arc<PoolRegistry>,
    pub nexuses: NexusRegistry,
    /// One pool and replica per backing, in order.
    pub legs: Vec<ReplicaVsRaw>,
}

impl NexusSetup {
    /// Creates `count` pools and replicas of up to `size_bytes` each on the
    /// backings `spec` names (created files are removed at teardown).
    pub async fn prepare(
        spec: &BackingSpec,
        count: usize,
        size_bytes: u64,
        block_size: u32,
        opts: &OpenOptions,
    ) -> Result<Self, BenchError> {
        let pools = Arc::new(PoolRegistry::new(opts.clone()));
        let mut legs = Vec::with_capacity(count);
        for i in 0..count {
            let name = BackingSpec::pool_name(i);
            let leg = match spec {
                BackingSpec::File(path) => {
                    let path = BackingSpec::nth_path(path, i);
                    ReplicaVsRaw::prepare_file_in(
                        &pools, &name, &path, size_bytes, block_size, opts,
                    )
                    .await
                }
                BackingSpec::Malloc => {
                    ReplicaVsRaw::prepare_malloc_in(&pools, &name, size_bytes, block_size, opts)
                        .await
                }
            };
            match leg {
                Ok(leg) => legs.push(leg),
                Err(e) => {
                    for leg in legs {
                        let _ = leg.release(false).await;
                    }
                    pools.shutdown().await;
                    return Err(e);
                }
            }
        }
        let cfg = NexusConfig::default();
        let opener = DefaultOpener {
            registry: Arc::clone(&pools),
            host_nqn: cfg.host_nqn.clone(),
            io_timeout: cfg.child_io_timeout,
            reconnect_timeout: cfg.child_reconnect_timeout,
            nvmf: None,
        };
        let nexuses = NexusRegistry::new(cfg, Arc::new(opener), None, None);
        Ok(NexusSetup {
            pools,
            nexuses,
            legs,
        })
    }

    /// Size of every nexus: the smallest replica.
    pub fn size_bytes(&self) -> u64 {
        self.legs
            .iter()
            .map(|l| l.replica_region.len_bytes)
            .min()
            .unwrap_or(0)
    }

    /// The whole nexus, as a region.
    pub fn region(&self) -> Region {
        Region {
            offset_bytes: 0,
            len_bytes: self.size_bytes(),
        }
    }

    pub fn cluster_size_bytes(&self) -> u64 {
        self.legs.first().map_or(0, |l| l.cluster_size_bytes)
    }

    /// The first backing file, if the backings are files.
    pub fn first_file(&self) -> Option<&Path> {
        match &self.legs.first()?.backing {
            Backing::File { path, .. } => Some(path),
            Backing::Malloc => None,
        }
    }

    /// Creates a nexus over the replicas of the legs `children` names.
    pub async fn create_nexus(&self, children: &[usize]) -> Result<Arc<Nexus>, BenchError> {
        let uuid = Uuid::new_v4();
        let uris = children
            .iter()
            .map(|&i| {
                self.legs
                    .get(i)
                    .map(ReplicaVsRaw::child_uri)
                    .ok_or_else(|| BenchError::Config(format!("no replica {i} to add")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.nexuses
            .create(CreateNexusArgs {
                uuid,
                name: None,
                size_bytes: self.size_bytes(),
                children: uris,
                reservation: Default::default(),
                info_key: None,
            })
            .await
            .map_err(nexus_err)?;
        let nexus = self.nexuses.get(&uuid).map_err(nexus_err)?;
        let online = nexus
            .children()
            .iter()
            .filter(|c| c.state() == ChildState::Online)
            .count();
        if online != children.len() {
            return Err(BenchError::Config(format!(
                "nexus {uuid}: {online} of {} children are online",
                children.len()
            )));
        }
        Ok(nexus)
    }

    /// Destroys the nexuses (their children are flushed and closed), then
    /// the pools, and removes the backing files `io-bench` created (unless
    /// `keep_file`).
    pub async fn teardown(self, keep_file: bool) -> Result<(), BenchError> {
        let NexusSetup {
            pools,
            nexuses,
            legs,
        } = self;
        let mut first_err = None;
        for view in nexuses.list() {
            if let Err(e) = nexuses.destroy(&view.uuid).await {
                first_err.get_or_insert(nexus_err(e));
            }
        }
        drop(nexuses);
        for leg in legs {
            if let Err(e) = leg.release(keep_file).await {
                first_err.get_or_insert(e);
            }
        }
        pools.shutdown().await;
        first_err.map_or(Ok(()), Err)
    }
}

/// What one copy of the working set cost.
#[derive(Debug, Clone, Copy)]
pub struct CopySample {
    pub bytes: u64,
    pub elapsed: Duration,
    pub cpu: CpuTime,
    pub host: Option<HostLoad>,
}

/// Measures wall time, process CPU and machine load around `f`.
async fn timed<F>(f: F) -> Result<CopySample, BenchError>
where
    F: std::future::Future<Output = Result<u64, BenchError>>,
{
    let host_before = HostCpu::now();
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    let bytes = f.await?;
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(cpu_before);
    let ncpu = crate::stats::online_cpus();
    let host = host_before
        .zip(HostCpu::now())
        .and_then(|(before, after)| after.load_since(before, cpu.total(), elapsed, ncpu));
    Ok(CopySample {
        bytes,
        elapsed,
        cpu,
        host,
    })
}

/// Adds `uri` to `nexus` as a new child, which starts a full rebuild, and
/// measures until [`NexusRegistry::rebuild_stats`] reports it done. A child
/// `uri` that is already in the nexus is removed first (untimed).
pub async fn rebuild_child(
    nexuses: &NexusRegistry,
    nexus: &Nexus,
    uri: &str,
) -> Result<CopySample, BenchError> {
    let uuid = nexus.uuid();
    if nexus.child(uri).is_ok() {
        nexuses.remove_child(&uuid, uri).await.map_err(nexus_err)?;
    }
    let expected = nexus.size_bytes();
    let mut stats = None;
    let sample = timed(async {
        nexuses
            .add_child(&uuid, uri, false)
            .await
            .map_err(nexus_err)?;
        loop {
            let s = nexuses.rebuild_stats(&uuid, uri).map_err(nexus_err)?;
            if s.state.is_done() {
                let bytes = s.bytes_transferred;
                stats = Some(s);
                return Ok(bytes);
            }
            // Sleep on the job's end rather than poll; it may have ended
            // (and left the job table) since the stats were read.
            match nexus.rebuild_job(uri) {
                Ok(job) => job.wait().await,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    })
    .await?;
    let stats = stats.expect("invariant: the measured future returned Ok after setting stats");
    if stats.state != RebuildState::Completed || stats.bytes_transferred != expected {
        return Err(BenchError::Rebuild(format!(
            "rebuild of {uri} ended {} after {} of {expected} bytes{}",
            stats.state,
            stats.bytes_transferred,
            stats.error.map(|e| format!(": {e}")).unwrap_or_default()
        )));
    }
    Ok(sample)
}

/// Copies `len_bytes` from `src` at `src_offset` to `dst` at `dst_offset`:
/// read one segment, write it, next segment (one I/O in flight, like the
/// rebuild job). The copy runs as a task of the runtime, like the rebuild
/// job, not on the thread that awaits it (a `block_on` thread is woken by
/// another path than the workers). The destination is not flushed (the
/// rebuild does not flush either).
pub async fn raw_copy(
    src: &Arc<Device>,
    src_offset: u64,
    dst: &Arc<Device>,
    dst_offset: u64,
    len_bytes: u64,
    segment_bytes: u64,
) -> Result<CopySample, BenchError> {
    let seg = usize::try_from(segment_bytes)
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| BenchError::Config(format!("bad segment size {segment_bytes}")))?;
    let (src, dst) = (Arc::clone(src), Arc::clone(dst));
    let copy = async move {
        let mut buf = DmaBuf::new(seg);
        let mut off = 0u64;
        while off < len_bytes {
            let n = segment_bytes.min(len_bytes - off);
            let chunk = &mut buf[..n as usize];
            src.read_at(src_offset + off, chunk)
                .await
                .map_err(|source| BenchError::Io {
                    op: "read",
                    offset_bytes: src_offset + off,
                    source,
                })?;
            dst.write_at(dst_offset + off, chunk)
                .await
                .map_err(|source| BenchError::Io {
                    op: "write",
                    offset_bytes: dst_offset + off,
                    source,
                })?;
            off += n;
        }
        Ok(len_bytes)
    };
    timed(async move {
        tokio::spawn(copy)
            .await
            .map_err(|e| BenchError::Task(e.to_string()))?
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backing_arguments() {
        assert_eq!(BackingSpec::from_arg("malloc:".into()), BackingSpec::Malloc);
        assert_eq!(
            BackingSpec::from_arg("/tmp/b.img".into()),
            BackingSpec::File("/tmp/b.img".into())
        );
        let p = Path::new("/tmp/b.img");
        assert_eq!(BackingSpec::nth_path(p, 0), p);
        assert_eq!(BackingSpec::nth_path(p, 1), Path::new("/tmp/b.img.2"));
        assert_eq!(BackingSpec::pool_name(0), "io-bench");
        assert_eq!(BackingSpec::pool_name(1), "io-bench-2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebuild_and_raw_copy_move_the_same_bytes() {
        let opts = OpenOptions::default();
        let s = NexusSetup::prepare(&BackingSpec::Malloc, 2, 8 << 20, 512, &opts)
            .await
            .unwrap();
        assert_eq!(s.legs.len(), 2);
        let size = s.size_bytes();
        assert_eq!(size, 8 << 20);
        let nexus = s.create_nexus(&[0]).await.unwrap();
        // Something to copy: a marker in the last segment.
        let mut marker = DmaBuf::new(4096);
        marker.fill(0xa5);
        nexus.write_at(size - 4096, &marker).await.unwrap();
        let uri = s.legs[1].child_uri();
        for _ in 0..2 {
            let r = rebuild_child(&s.nexuses, &nexus, &uri).await.unwrap();
            assert_eq!(r.bytes, size);
            assert!(r.elapsed > Duration::ZERO);
        }
        let mut back = DmaBuf::new(4096);
        s.legs[1]
            .replica
            .read_at(size - 4096, &mut back)
            .await
            .unwrap();
        assert_eq!(&back[..], &marker[..]);
        let (a, b) = (&s.legs[0], &s.legs[1]);
        a.raw
            .write_at(a.raw_region.offset_bytes, &marker)
            .await
            .unwrap();
        let c = raw_copy(
            &a.raw,
            a.raw_region.offset_bytes,
            &b.raw,
            b.raw_region.offset_bytes,
            size,
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(c.bytes, size);
        b.raw
            .read_at(b.raw_region.offset_bytes, &mut back)
            .await
            .unwrap();
        assert_eq!(&back[..], &marker[..]);
        s.teardown(false).await.unwrap();
    }
}
