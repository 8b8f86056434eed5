//! The NVMe/TCP modes: a replica shared by a real `io-engine` and driven
//! through our initiator (`nvmf-host`), measured with the target's CPU.
//!
//! - [`nvmf_vs_raw`] (`--nvmf-vs-raw FILE|malloc:`): an engine this
//!   process starts (pinned to its own CPU) puts a pool and a thick
//!   replica on the backing and shares it; the same workloads run on the
//!   replica over NVMe/TCP and on the raw backing through the device layer
//!   in this process, alternating, and both sides' CPU per I/O is reported
//!   (the engine's from `/proc/PID/stat`). On a file both targets are the
//!   same bytes (the replica's clusters, checked with marker blocks as in
//!   `setup`); `malloc:` compares a RAM-disk replica with a RAM disk of
//!   this process.
//! - [`remote_nexus_2_vs_1`] (`--remote-nexus-2-vs-1 FILE|malloc:`): two
//!   engines each share one replica; an in-process nexus with one remote
//!   child against one with both.
//! - [`idle_cpu`] (`--nvmf-idle N`): an engine with N shared RAM replicas
//!   and one connected host per replica, left idle; the engine's and this
//!   process's CPU over the run.
//!
//! Threading model: set up and torn down on the caller's runtime; the
//! engines are child processes stopped by PID at the end (also on error).

use std::{path::PathBuf, sync::Arc, time::Duration};

use blockdev::{BlockDevice, DmaBuf};
use io_engine::nexus::{CreateNexusArgs, DefaultOpener, NexusConfig, NexusRegistry};
use nvmf_host::{Controller, Namespace};
use pool_format::{Geometry, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES};
use uuid::Uuid;

use crate::{
    compare::compare_pair, engine::EngineProc, nexus::BackingSpec, report::IdleResult,
    setup::backing_size, stats::CpuTime, BenchConfig, BenchError, Pairing, Region, Report, Subject,
};

const POOL: &str = "io-bench";
const REPLICA: &str = "io-bench-replica";
/// Block size of the pools the engines create (their default).
const POOL_BLOCK_SIZE: u32 = 512;

fn nvmf_err(uri: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Nvmf {
        uri: uri.to_string(),
        message: e.to_string(),
    }
}

/// Connects our initiator to namespace 1 of `uri`.
pub async fn connect(uri: &str) -> Result<(Controller, Namespace), BenchError> {
    let ctrl = Controller::connect_uri(uri)
        .await
        .map_err(|e| nvmf_err(uri, e))?;
    match ctrl.namespace(1).await {
        Ok(ns) => Ok((ctrl, ns)),
        Err(e) => {
            let _ = ctrl.disconnect().await;
            Err(nvmf_err(uri, e))
        }
    }
}

/// A backing file io-bench created, removed on drop unless kept.
struct CreatedFile {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl Drop for CreatedFile {
    fn drop(&mut self) {
        if self.created && !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The replica's size in MiB (whole clusters) and the backing's disk URI
/// for the engine; creates FILE (just large enough) when it is missing.
fn backing(
    spec: &BackingSpec,
    index: usize,
    size_bytes: u64,
    keep: bool,
) -> Result<(u64, String, Option<CreatedFile>), BenchError> {
    let cs = DEFAULT_CLUSTER_SIZE;
    let want = size_bytes.div_ceil(cs).max(1) * cs;
    let disk_len = backing_size(want, POOL_BLOCK_SIZE, cs)?;
    let size_mib = want >> 20;
    match spec {
        BackingSpec::Malloc => Ok((
            size_mib,
            format!(
                "malloc:///io-bench-{index}?size_mb={}",
                disk_len.div_ceil(1 << 20)
            ),
            None,
        )),
        BackingSpec::File(path) => {
            let path = BackingSpec::nth_path(path, index);
            let file_err = |source| BenchError::File {
                path: path.clone(),
                source,
            };
            let created = !path.exists();
            if created {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(file_err)?;
                f.set_len(disk_len).map_err(file_err)?;
            }
            let abs = std::fs::canonicalize(&path).map_err(file_err)?;
            let guard = CreatedFile {
                path: abs.clone(),
                created,
                keep,
            };
            Ok((
                size_mib,
                format!("aio://{}?blk_size={POOL_BLOCK_SIZE}", abs.display()),
                Some(guard),
            ))
        }
    }
}

/// Replica over NVMe/TCP against the raw backing (see the module doc).
pub async fn nvmf_vs_raw(
    cfg: &BenchConfig,
    spec: &BackingSpec,
    report: &mut Report,
) -> Result<(), BenchError> {
    let pairing = Pairing::NvmfVsRaw;
    report.pairing = Some(pairing);
    let (size_mib, disk_uri, file) = backing(spec, 0, cfg.size_bytes, cfg.keep_file)?;
    let engine = EngineProc::start(&cfg.engine, "io-bench-target")?;
    let uri = engine.share_replica(POOL, &disk_uri, REPLICA, size_mib)?;
    let (ctrl, ns) = connect(&uri).await?;
    let size = size_mib << 20;
    let result = async {
        let nvmf = Subject {
            name: pairing.candidate(),
            dev: Arc::new(ns),
            region: Region {
                offset_bytes: 0,
                len_bytes: size,
            },
            io_stats: None,
            target_pid: Some(engine.pid()),
        };
        match &file {
            Some(f) => {
                let raw_uri = format!("aio://{}?blk_size={POOL_BLOCK_SIZE}", f.path.display());
                let raw = blockdev::open_uri(&raw_uri, &cfg.open)
                    .await
                    .map_err(|source| BenchError::Open {
                        uri: raw_uri.clone(),
                        source,
                    })?;
                report.machine.filesystem = crate::filesystem_of(&f.path);
                let g = Geometry::new(
                    raw.info().size_bytes(),
                    POOL_BLOCK_SIZE,
                    DEFAULT_CLUSTER_SIZE,
                    DEFAULT_RT_PAGES,
                )
                .map_err(|e| BenchError::Config(format!("pool geometry of {raw_uri}: {e}")))?;
                let raw = Subject {
                    name: pairing.baseline(),
                    dev: Arc::new(raw),
                    region: Region {
                        offset_bytes: g.data_offset_bytes,
                        len_bytes: size,
                    },
                    io_stats: None,
                    target_pid: None,
                };
                verify_same_bytes(&nvmf, &raw).await?;
                compare_pair(cfg, &raw, &nvmf, true, report).await
            }
            None => {
                let raw_uri = format!("malloc:///io-bench-raw?size_mb={size_mib}");
                let raw = blockdev::open_uri(&raw_uri, &cfg.open)
                    .await
                    .map_err(|source| BenchError::Open {
                        uri: raw_uri.clone(),
                        source,
                    })?;
                let raw = Subject {
                    name: pairing.baseline(),
                    dev: Arc::new(raw),
                    region: Region {
                        offset_bytes: 0,
                        len_bytes: size,
                    },
                    io_stats: None,
                    target_pid: None,
                };
                compare_pair(cfg, &raw, &nvmf, false, report).await
            }
        }
    }
    .await;
    let _ = ctrl.disconnect().await;
    engine.stop();
    drop(file);
    result?;
    report.compare();
    Ok(())
}

/// Checks that offset `x` of the shared replica is raw offset
/// `raw.region.offset_bytes + x` (first, middle and last block).
async fn verify_same_bytes<A: BlockDevice, B: BlockDevice>(
    nvmf: &Subject<A>,
    raw: &Subject<B>,
) -> Result<(), BenchError> {
    let bs = u64::from(raw.dev.info().block_size);
    let len = nvmf.region.len_bytes;
    let io = |op: &'static str, offset_bytes: u64| {
        move |source| BenchError::Io {
            op,
            offset_bytes,
            source,
        }
    };
    for (i, at) in [0, (len / 2) / bs * bs, len - bs].into_iter().enumerate() {
        let mut marker = DmaBuf::new(bs as usize);
        for (j, b) in marker.iter_mut().enumerate() {
            *b = (j as u8) ^ 0xa5 ^ (i as u8);
        }
        nvmf.dev
            .write_at(at, &marker)
            .await
            .map_err(io("marker write", at))?;
        nvmf.dev.flush().await.map_err(io("flush", 0))?;
        let mut back = DmaBuf::new(bs as usize);
        let raw_at = raw.region.offset_bytes + at;
        raw.dev
            .read_at(raw_at, &mut back)
            .await
            .map_err(io("marker read", raw_at))?;
        if back[..] != marker[..] {
            return Err(BenchError::Layout(format!(
                "replica offset {at} is not at raw offset {raw_at}: the pool layout is not the expected one"
            )));
        }
    }
    Ok(())
}

/// A nexus with one remote child against one with two (replicas on two
/// engines).
pub async fn remote_nexus_2_vs_1(
    cfg: &BenchConfig,
    spec: &BackingSpec,
    report: &mut Report,
) -> Result<(), BenchError> {
    let pairing = Pairing::RemoteNexus2Vs1;
    report.pairing = Some(pairing);
    let mut engines = Vec::new();
    let mut files = Vec::new();
    let mut uris = Vec::new();
    let mut size_mib = 0;
    for i in 0..2 {
        let (mib, disk_uri, file) = backing(spec, i, cfg.size_bytes, cfg.keep_file)?;
        files.extend(file);
        let engine = EngineProc::start(&cfg.engine, &format!("io-bench-child-{i}"))?;
        uris.push(engine.share_replica(POOL, &disk_uri, REPLICA, mib)?);
        engines.push(engine);
        size_mib = mib;
    }
    let ncfg = NexusConfig::default();
    let opener = DefaultOpener {
        registry: Arc::new(io_engine::pool::PoolRegistry::new(cfg.open.clone())),
        host_nqn: ncfg.host_nqn.clone(),
        io_timeout: ncfg.child_io_timeout,
        reconnect_timeout: ncfg.child_reconnect_timeout,
        nvmf: None,
    };
    let nexuses = NexusRegistry::new(ncfg, Arc::new(opener), None, None);
    let size = size_mib << 20;
    let result = async {
        let mut made = Vec::new();
        for children in [&uris[..1], &uris[..]] {
            let uuid = Uuid::new_v4();
            nexuses
                .create(CreateNexusArgs {
                    uuid,
                    name: None,
                    size_bytes: size,
                    children: children.to_vec(),
                    reservation: Default::default(),
                    info_key: None,
                })
                .await
                .map_err(BenchError::Nexus)?;
            made.push(nexuses.get(&uuid).map_err(BenchError::Nexus)?);
        }
        let region = Region {
            offset_bytes: 0,
            len_bytes: size,
        };
        // Both engines share one CPU; their CPU is not attributed.
        let one = Subject {
            name: pairing.baseline(),
            dev: Arc::clone(&made[0]),
            region,
            io_stats: None,
            target_pid: None,
        };
        let two = Subject {
            name: pairing.candidate(),
            dev: Arc::clone(&made[1]),
            region,
            io_stats: None,
            target_pid: None,
        };
        compare_pair(cfg, &one, &two, false, report).await
    }
    .await;
    for view in nexuses.list() {
        let _ = nexuses.destroy(&view.uuid).await;
    }
    drop(nexuses);
    for e in engines {
        e.stop();
    }
    drop(files);
    result?;
    report.compare();
    Ok(())
}

/// `count` shared RAM replicas on one engine, one connected host each,
/// idle for `cfg.runtime`: the engine's and this process's CPU.
pub async fn idle_cpu(
    cfg: &BenchConfig,
    count: usize,
    report: &mut Report,
) -> Result<(), BenchError> {
    if count == 0 {
        return Err(BenchError::Config("--nvmf-idle needs at least 1".into()));
    }
    let engine = EngineProc::start(&cfg.engine, "io-bench-idle")?;
    let size_mib = 8;
    let disk_mib = (count as u64) * (size_mib + 4) + 64;
    engine.client(&[
        "pool",
        "create",
        POOL,
        &format!("malloc:///io-bench-idle?size_mb={disk_mib}"),
    ])?;
    let mut ctrls = Vec::new();
    let result = async {
        for i in 0..count {
            let uri = engine.create_shared_replica(POOL, &format!("idle-{i}"), size_mib)?;
            ctrls.push(connect(&uri).await?);
        }
        // Let the connections settle before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = engine.pid();
        let before = (
            CpuTime::of_pid(pid),
            CpuTime::now(),
            std::time::Instant::now(),
        );
        tokio::time::sleep(cfg.runtime).await;
        let after = (
            CpuTime::of_pid(pid),
            CpuTime::now(),
            std::time::Instant::now(),
        );
        let elapsed = after.2 - before.2;
        let engine_cpu = before
            .0
            .zip(after.0)
            .map(|(b, a)| a.since(b).total())
            .ok_or_else(|| BenchError::Engine("engine process vanished".into()))?;
        let own = after.1.since(before.1).total();
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / elapsed.as_secs_f64();
        report.idle = Some(IdleResult {
            replicas: count,
            hosts: ctrls.len(),
            elapsed_s: elapsed.as_secs_f64(),
            engine_cpu_s: engine_cpu.as_secs_f64(),
            engine_core_pct: pct(engine_cpu),
            initiator_cpu_s: own.as_secs_f64(),
            initiator_core_pct: pct(own),
            keep_alive_ms: nvmf_host::options::DEFAULT_KATO_MS,
        });
        Ok(())
    }
    .await;
    for (c, _) in ctrls {
        let _ = c.disconnect().await;
    }
    engine.stop();
    result
}
