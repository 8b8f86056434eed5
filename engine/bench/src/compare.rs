//! The paired modes (a nexus against the replica under it, a 2-child
//! nexus against a 1-child one, a full rebuild against a plain copy of the
//! same bytes) and the comparison of two targets over every workload, run
//! back to back and retried when other work disturbed them.

use std::sync::Arc;

use blockdev::BlockDevice;

use crate::report::CopyResult;
use crate::*;

/// Pools and replicas on `legs` backings, recorded in the report.
pub(super) async fn prepare_nexus_setup(
    cfg: &BenchConfig,
    spec: &BackingSpec,
    legs: usize,
    report: &mut Report,
) -> Result<nexus::NexusSetup, BenchError> {
    let bs = cfg.block_size.unwrap_or(512);
    if *spec == BackingSpec::Malloc {
        pin_mmap_threshold();
    }
    let setup = nexus::NexusSetup::prepare(spec, legs, cfg.size_bytes, bs, &cfg.open).await?;
    report.machine.filesystem = setup.first_file().and_then(filesystem_of);
    report.session.cluster_size_bytes = Some(setup.cluster_size_bytes());
    Ok(setup)
}

/// Tears a nexus setup down whatever the outcome of the run, and adds the
/// ratios.
pub(super) async fn finish_nexus(
    cfg: &BenchConfig,
    setup: nexus::NexusSetup,
    result: Result<(), BenchError>,
    report: &mut Report,
) -> Result<(), BenchError> {
    let down = setup.teardown(cfg.keep_file).await;
    result?;
    down?;
    report.compare();
    Ok(())
}

/// The bare replica against a 1-child nexus over it.
pub(super) async fn nexus_vs_replica(
    cfg: &BenchConfig,
    report: &mut Report,
    setup: &nexus::NexusSetup,
) -> Result<(), BenchError> {
    let pairing = Pairing::NexusVsReplica;
    report.pairing = Some(pairing);
    let leg = &setup.legs[0];
    let replica = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.baseline(),
        dev: Arc::clone(&leg.replica),
        region: leg.replica_region,
    };
    let nexus = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.candidate(),
        dev: setup.create_nexus(&[0]).await?,
        region: setup.region(),
    };
    compare_pair(cfg, &replica, &nexus, true, report).await
}

/// The same device with the engine's I/O statistics off (baseline) and on
/// (candidate): the bare replica, or a 1-child nexus over it (whose runs
/// count at the nexus and at the replica).
pub(super) async fn stats_cost(
    cfg: &BenchConfig,
    report: &mut Report,
    setup: &nexus::NexusSetup,
    layer: StatsLayer,
) -> Result<(), BenchError> {
    let pairing = Pairing::StatsOnVsOff;
    report.pairing = Some(pairing);
    match layer {
        StatsLayer::Replica => {
            let leg = &setup.legs[0];
            let subject = |name, on| Subject {
                io_stats: Some(on),
                target_pid: None,
                name,
                dev: Arc::clone(&leg.replica),
                region: leg.replica_region,
            };
            let (off, on) = (
                subject(pairing.baseline(), false),
                subject(pairing.candidate(), true),
            );
            compare_pair(cfg, &off, &on, true, report).await
        }
        StatsLayer::Nexus => {
            let dev = setup.create_nexus(&[0]).await?;
            let subject = |name, on| Subject {
                io_stats: Some(on),
                target_pid: None,
                name,
                dev: Arc::clone(&dev),
                region: setup.region(),
            };
            let (off, on) = (
                subject(pairing.baseline(), false),
                subject(pairing.candidate(), true),
            );
            compare_pair(cfg, &off, &on, true, report).await
        }
    }
}

/// A 1-child nexus (replica A) against a 2-child nexus (replicas A and B).
pub(super) async fn nexus_2_vs_1(
    cfg: &BenchConfig,
    report: &mut Report,
    setup: &nexus::NexusSetup,
) -> Result<(), BenchError> {
    let pairing = Pairing::Nexus2Vs1;
    report.pairing = Some(pairing);
    let one = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.baseline(),
        dev: setup.create_nexus(&[0]).await?,
        region: setup.region(),
    };
    let two = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.candidate(),
        dev: setup.create_nexus(&[0, 1]).await?,
        region: setup.region(),
    };
    // Filling the 2-child nexus fills both replicas, so the 1-child one too.
    compare_pair(cfg, &one, &two, true, report).await
}

/// A full rebuild of replica B into a nexus over replica A, against a raw
/// copy of A's bytes onto B's, `cfg.rounds` times each, alternating which
/// goes first.
pub(super) async fn rebuild_vs_copy(
    cfg: &BenchConfig,
    report: &mut Report,
    setup: &nexus::NexusSetup,
) -> Result<(), BenchError> {
    let seg = setup.nexuses.config().rebuild_segment_bytes;
    report.session.segment_bytes = Some(seg);
    let (a, b) = (&setup.legs[0], &setup.legs[1]);
    let shared = a.shares_storage();
    // Fill the source, and write every destination byte once, so neither
    // method writes to holes (files) or unallocated memory (RAM disks).
    for (name, leg) in [("source", a), ("dest", b)] {
        let replica = Subject {
            io_stats: None,
            target_pid: None,
            name,
            dev: Arc::clone(&leg.replica),
            region: leg.replica_region,
        };
        replica.fill(cfg).await?;
        if !shared {
            let raw = Subject {
                io_stats: None,
                target_pid: None,
                name,
                dev: Arc::clone(&leg.raw),
                region: leg.raw_region,
            };
            raw.fill(cfg).await?;
        }
    }
    let nexus = setup.create_nexus(&[0]).await?;
    let size = setup.size_bytes();
    let uri = b.child_uri();
    report.targets.push(
        Subject {
            io_stats: None,
            target_pid: None,
            name: "nexus",
            dev: Arc::clone(&nexus),
            region: setup.region(),
        }
        .info(),
    );
    for (name, leg) in [("source", a), ("dest", b)] {
        report.targets.push(
            Subject {
                io_stats: None,
                target_pid: None,
                name,
                dev: Arc::clone(&leg.raw),
                region: Region {
                    offset_bytes: leg.raw_region.offset_bytes,
                    len_bytes: size,
                },
            }
            .info(),
        );
    }
    for round in 1..=cfg.rounds {
        let rebuild_first = round % 2 == 1;
        for rebuild in [rebuild_first, !rebuild_first] {
            let (method, sample) = if rebuild {
                let bar = new_bar(cfg, "ms", format!("round {round} rebuild"));
                let s = nexus::rebuild_child(&setup.nexuses, &nexus, &uri).await?;
                bar.finish_and_clear();
                (report::REBUILD, s)
            } else {
                let bar = new_bar(cfg, "ms", format!("round {round} raw-copy"));
                let s = nexus::raw_copy(
                    &a.raw,
                    a.raw_region.offset_bytes,
                    &b.raw,
                    b.raw_region.offset_bytes,
                    size,
                    seg,
                )
                .await?;
                bar.finish_and_clear();
                (report::RAW_COPY, s)
            };
            let mib = sample.bytes as f64 / f64::from(1u32 << 20);
            report.copies.push(CopyResult {
                round,
                method: method.to_string(),
                bytes: sample.bytes,
                segment_bytes: seg,
                elapsed_s: sample.elapsed.as_secs_f64(),
                mib_per_s: stats::mib_per_second(sample.bytes, sample.elapsed),
                cpu_us_per_mib: if mib > 0.0 {
                    sample.cpu.total().as_secs_f64() * 1e6 / mib
                } else {
                    0.0
                },
                host_other_pct: sample.host.map(|h| h.other_pct),
                ran_first: rebuild == rebuild_first,
            });
        }
    }
    Ok(())
}

/// Runs the comparison, tears the setup down and adds the ratios.
pub(super) async fn finish_comparison(
    cfg: &BenchConfig,
    setup: setup::ReplicaVsRaw,
    report: &mut Report,
) -> Result<(), BenchError> {
    report.session.cluster_size_bytes = Some(setup.cluster_size_bytes);
    let pairing = Pairing::ReplicaVsRaw;
    report.pairing = Some(pairing);
    let raw = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.baseline(),
        dev: Arc::clone(&setup.raw),
        region: setup.raw_region,
    };
    let replica = Subject {
        io_stats: None,
        target_pid: None,
        name: pairing.candidate(),
        dev: Arc::clone(&setup.replica),
        region: setup.replica_region,
    };
    // On a shared file the replica's clusters are the raw region (checked
    // at setup).
    let result = compare_pair(cfg, &raw, &replica, setup.shares_storage(), report).await;
    drop((raw, replica));
    let down = setup.teardown(cfg.keep_file).await;
    result?;
    down?;
    report.compare();
    Ok(())
}

/// Runs every workload on the baseline and on the candidate, alternating
/// which target goes first.
///
/// `shared`: both targets are views of the same bytes, so filling the
/// candidate fills the baseline too.
pub(super) async fn compare_pair<B, C>(
    cfg: &BenchConfig,
    baseline: &Subject<B>,
    candidate: &Subject<C>,
    shared: bool,
    report: &mut Report,
) -> Result<(), BenchError>
where
    B: BlockDevice + 'static,
    C: BlockDevice + 'static,
{
    report.targets.push(baseline.info());
    report.targets.push(candidate.info());
    // Fill before any measurement, so no run pays for another's fill
    // write-back.
    candidate.fill(cfg).await?;
    if !shared {
        baseline.fill(cfg).await?;
    }
    for round in 1..=cfg.rounds {
        for (i, &w) in cfg.workloads.iter().enumerate() {
            // Alternate which target goes first, per workload and per
            // round, so an even number of rounds balances any order effect.
            let baseline_first = (i + round as usize) % 2 == 1;
            let mut attempt = 1;
            loop {
                let (mut a, mut b) = if baseline_first {
                    let a = baseline.measure(cfg, w, round).await?;
                    (a, candidate.measure(cfg, w, round).await?)
                } else {
                    let a = candidate.measure(cfg, w, round).await?;
                    (a, baseline.measure(cfg, w, round).await?)
                };
                a.ran_first = true;
                if !disturbed(cfg, &[&a, &b]) || attempt == MAX_ATTEMPTS {
                    a.attempts = attempt;
                    b.attempts = attempt;
                    report.results.extend([a, b]);
                    break;
                }
                attempt += 1;
            }
        }
    }
    Ok(())
}
