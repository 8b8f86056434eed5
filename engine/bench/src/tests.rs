//! Unit tests of the crate.

#![allow(clippy::unwrap_used)]
use super::*;

fn cfg(target: Target, workloads: Vec<Workload>) -> BenchConfig {
    BenchConfig {
        target,
        workloads,
        runtime: Duration::from_millis(250),
        ramp: Duration::ZERO,
        size_bytes: 16 << 20,
        block_size: None,
        open: OpenOptions::default(),
        rounds: 1,
        keep_file: false,
        max_other_pct: None,
        progress: false,
        seed: 42,
        target_pid: None,
        engine: EngineSpec::default(),
    }
}

#[test]
fn block_size_is_applied_or_refused() {
    assert_eq!(
        with_block_size("aio:///tmp/x", Some(4096)).unwrap(),
        "aio:///tmp/x?blk_size=4096"
    );
    assert!(with_block_size("aio:///tmp/x?blk_size=512", Some(4096)).is_err());
    assert!(with_block_size("malloc:///m?size_mb=8&blk_size=512", Some(4096)).is_err());
    assert!(with_block_size("malloc:///m?size_mb=8", Some(4096))
        .unwrap()
        .contains("blk_size=4096"));
    assert_eq!(with_block_size("nope", None).unwrap(), "nope");
    assert!(with_block_size("nope", Some(512)).is_err());
}

#[test]
fn busy_machine_detection() {
    let mut c = cfg(Target::ReplicaVsRawMalloc, vec![Workload::RandRead4kQd1]);
    let mk = |other: Option<f64>| WorkloadResult {
        round: 1,
        target: "raw".into(),
        workload: Workload::RandRead4kQd1,
        io_size_bytes: 4096,
        queue_depth: 1,
        ops: 1,
        bytes: 4096,
        elapsed_s: 1.0,
        iops: 1.0,
        mib_per_s: 0.0,
        p50_us: 1.0,
        p99_us: 1.0,
        mean_us: 1.0,
        max_us: 1.0,
        cpu_user_s: 0.0,
        cpu_system_s: 0.0,
        cpu_us_per_io: 0.0,
        target_cpu_us_per_io: None,
        host_other_pct: other,
        host_steal_pct: None,
        attempts: 1,
        ran_first: true,
    };
    let (quiet, busy, unknown) = (mk(Some(5.0)), mk(Some(40.0)), mk(None));
    assert!(!disturbed(&c, &[&quiet, &busy]));
    c.max_other_pct = Some(25.0);
    assert!(!disturbed(&c, &[&quiet, &unknown]));
    assert!(disturbed(&c, &[&quiet, &busy]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_on_malloc_is_sane() {
    let mut c = cfg(
        Target::Device("malloc:///malloc0?size_mb=64".into()),
        Workload::ALL.to_vec(),
    );
    c.runtime = Duration::from_secs(1) / 6;
    c.size_bytes = 64 << 20;
    let r = run(&c).await.unwrap();
    assert_eq!(r.results.len(), 6);
    assert!(r.comparisons.is_empty());
    assert_eq!(r.targets[0].region.len_bytes, 64 << 20);
    for res in &r.results {
        assert!(res.ops > 0 && res.iops > 0.0, "{res:?}");
        assert!(
            res.p50_us <= res.p99_us && res.p99_us <= res.max_us,
            "{res:?}"
        );
        assert!(res.cpu_us_per_io >= 0.0);
    }
    let table = r.render_table();
    assert!(table.contains("seqwrite-128k-qd8"), "{table}");
    assert!(table.contains("CPU/IO(us)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvme_tcp_mode_drives_our_target_through_our_initiator() {
    let target = nvmf_target::Target::bind(nvmf_target::TargetConfig {
        listen: "127.0.3.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dev = blockdev::open_uri("malloc:///benchnvmf?size_mb=32", &OpenOptions::default())
        .await
        .unwrap();
    let nqn = "nqn.2019-05.io.openebs:bench-test";
    let host = "nqn.2019-05.io.openebs:node-name:bench";
    target
        .add_subsystem(nqn, Arc::new(dev), uuid::Uuid::new_v4(), vec![host.into()])
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (t2, c2) = (target.clone(), cancel.clone());
    tokio::spawn(async move { t2.serve(c2).await });
    let uri = format!("nvmf://{}/{nqn}?hostnqn={host}", target.local_addr());
    let mut c = cfg(
        Target::Device(uri),
        vec![Workload::RandRead4kQd32, Workload::RandWrite4kQd32],
    );
    c.size_bytes = 32 << 20;
    let r = run(&c).await.unwrap();
    assert_eq!(r.session.mode, "nvmf");
    assert_eq!(r.results.len(), 2);
    for res in &r.results {
        assert_eq!(res.target, "nvmf");
        assert!(res.ops > 0 && res.iops > 0.0, "{res:?}");
    }
    // A stranger is refused with a clear error.
    let bad = format!(
        "nvmf://{}/{nqn}?hostnqn=nqn.2019-05.io.openebs:node-name:x",
        target.local_addr()
    );
    let err = run(&cfg(Target::Device(bad), vec![Workload::RandRead4kQd1]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot use NVMe/TCP target"),
        "{err}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_vs_raw_on_a_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.img");
    let c = cfg(
        Target::ReplicaVsRaw(file.clone()),
        vec![Workload::RandRead4kQd32, Workload::SeqWrite128kQd8],
    );
    let r = run(&c).await.unwrap();
    assert_eq!(r.results.len(), 4);
    assert_eq!(r.comparisons.len(), 2);
    let raw = &r.targets[0];
    assert_eq!(raw.name, "raw");
    assert!(raw.region.offset_bytes > 0);
    assert_eq!(raw.region.len_bytes, 16 << 20);
    assert_eq!(r.targets[1].region.len_bytes, 16 << 20);
    assert_eq!(raw.direct_io, r.targets[1].direct_io);
    for cmp in &r.comparisons {
        assert!(cmp.iops_ratio.unwrap() > 0.0);
    }
    assert!(r.render_table().contains("replica/raw"));
    // The file was created by the run, so it is gone.
    assert!(!file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_vs_raw_on_ram_disks() {
    let mut c = cfg(Target::ReplicaVsRawMalloc, vec![Workload::RandWrite4kQd32]);
    c.rounds = 2;
    c.runtime = Duration::from_millis(150);
    c.ramp = Duration::from_millis(50);
    let r = run(&c).await.unwrap();
    assert_eq!(r.session.mode, "replica-vs-raw-malloc");
    assert_eq!(r.comparisons.len(), 2);
    assert_eq!(r.summary.len(), 1);
    // The first target alternates between rounds.
    let order: Vec<(u32, &str, bool)> = r
        .results
        .iter()
        .map(|x| (x.round, x.target.as_str(), x.ran_first))
        .collect();
    assert_eq!(
        order,
        [
            (1, "raw", true),
            (1, "replica", false),
            (2, "replica", true),
            (2, "raw", false)
        ]
    );
    assert!(r.results.iter().all(|x| x.ops > 0));
    assert!(r.targets.iter().all(|t| t.backend == "malloc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused() {
    let c = cfg(Target::Device("malloc:///m1?size_mb=8".into()), Vec::new());
    assert!(matches!(run(&c).await, Err(BenchError::Config(_))));
    let mut c = cfg(
        Target::Device("malloc:///m1?size_mb=8".into()),
        vec![Workload::RandRead4kQd1],
    );
    c.block_size = Some(1024);
    assert!(matches!(run(&c).await, Err(BenchError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_file_is_reused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kept.img");
    let mut c = cfg(
        Target::ReplicaVsRaw(file.clone()),
        vec![Workload::RandWrite4kQd1],
    );
    c.keep_file = true;
    c.runtime = Duration::from_millis(100);
    run(&c).await.unwrap();
    assert!(file.exists());
    // Second run on the existing file (the pool was destroyed, so it is
    // formatted again), and the file is still not removed.
    c.keep_file = false;
    let r = run(&c).await.unwrap();
    assert_eq!(r.comparisons.len(), 1);
    assert!(file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_vs_replica_on_ram_disks() {
    let mut c = cfg(
        Target::NexusVsReplica(BackingSpec::Malloc),
        vec![Workload::RandRead4kQd32, Workload::RandWrite4kQd32],
    );
    c.runtime = Duration::from_millis(150);
    let r = run(&c).await.unwrap();
    assert_eq!(r.session.mode, "nexus-vs-replica-malloc");
    assert_eq!(r.pairing, Some(Pairing::NexusVsReplica));
    let names: Vec<&str> = r.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["replica", "nexus"]);
    assert_eq!(r.targets[1].backend, "nexus");
    assert_eq!(r.results.len(), 4);
    assert!(r.results.iter().all(|x| x.ops > 0));
    assert_eq!(r.comparisons.len(), 2);
    assert_eq!(r.comparisons[0].target_iops_ratio, Some(0.97));
    assert_eq!(r.comparisons[1].target_iops_ratio, Some(0.95));
    assert!(r.render_table().contains("nexus/replica IOPS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexus_2_vs_1_on_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n.img");
    let mut c = cfg(
        Target::Nexus2Vs1(BackingSpec::File(file.clone())),
        vec![Workload::RandWrite4kQd32, Workload::SeqRead128kQd8],
    );
    c.runtime = Duration::from_millis(150);
    let r = run(&c).await.unwrap();
    assert_eq!(r.session.mode, "nexus-2-vs-1");
    let names: Vec<&str> = r.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["nexus-1", "nexus-2"]);
    assert_eq!(r.results.len(), 4);
    assert!(r.results.iter().all(|x| x.ops > 0));
    assert_eq!(r.comparisons.len(), 2);
    assert_eq!(r.comparisons[0].target_iops_ratio, Some(0.92));
    assert_eq!(r.comparisons[1].target_iops_ratio, None);
    // Both backing files were created by the run, so both are gone.
    assert!(!file.exists());
    assert!(!dir.path().join("n.img.2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_vs_copy_on_ram_disks() {
    let mut c = cfg(
        Target::RebuildVsCopy(BackingSpec::Malloc),
        vec![Workload::RandRead4kQd1],
    );
    c.rounds = 2;
    let r = run(&c).await.unwrap();
    assert_eq!(r.session.mode, "rebuild-vs-copy-malloc");
    assert_eq!(r.session.segment_bytes, Some(1 << 20));
    assert!(r.results.is_empty());
    let order: Vec<(u32, &str)> = r
        .copies
        .iter()
        .map(|x| (x.round, x.method.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (1, "rebuild"),
            (1, "raw-copy"),
            (2, "raw-copy"),
            (2, "rebuild")
        ]
    );
    for x in &r.copies {
        assert_eq!(x.bytes, 16 << 20, "{x:?}");
        assert!(x.mib_per_s > 0.0, "{x:?}");
    }
    assert_eq!(r.copy_comparisons.len(), 2);
    assert!(r.copy_comparisons[0].throughput_ratio.unwrap() > 0.0);
    assert!(r.render_table().contains("rebuild/raw-copy"));
}

/// Engines for the NVMe/TCP modes: the real daemon and client (built, or
/// `IO_ENGINE_BIN` / `IO_ENGINE_CLIENT_BIN`), on this crate's addresses.
fn engine_spec(ip: [u8; 4]) -> EngineSpec {
    EngineSpec {
        engine_bin: Some(testkit::bin("io-engine", "io-engine")),
        client_bin: Some(testkit::bin("io-engine-client", "io-engine-client")),
        ip: std::net::IpAddr::from(ip),
        cpu: None,
        poll: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvmf_vs_raw_with_a_real_engine_reports_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, ip) in [
        (BackingSpec::Malloc, [127, 0, 170, 2]),
        (
            BackingSpec::File(dir.path().join("nvmf.img")),
            [127, 0, 170, 3],
        ),
    ] {
        let file = match &spec {
            BackingSpec::File(p) => Some(p.clone()),
            BackingSpec::Malloc => None,
        };
        let mut c = cfg(
            Target::NvmfVsRaw(spec),
            vec![Workload::RandRead4kQd32, Workload::RandWrite4kQd32],
        );
        c.engine = engine_spec(ip);
        let r = run(&c).await.unwrap();
        assert!(r.session.mode.starts_with("nvmf-vs-raw"), "{r:?}");
        assert_eq!(r.results.len(), 4);
        for res in &r.results {
            assert!(res.ops > 0 && res.iops > 0.0, "{res:?}");
            match res.target.as_str() {
                // The engine's CPU is measured with the initiator's.
                "nvmf" => assert!(res.target_cpu_us_per_io.is_some_and(|t| t > 0.0), "{res:?}"),
                "raw" => assert_eq!(res.target_cpu_us_per_io, None),
                other => panic!("unexpected target {other}"),
            }
        }
        assert_eq!(r.summary.len(), 2);
        let table = r.render_table();
        assert!(
            table.contains("TGT-CPU/IO(us)") && table.contains("nvmf/raw IOPS"),
            "{table}"
        );
        if let Some(f) = file {
            assert!(!f.exists(), "the backing file io-bench created is removed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_engine_with_connected_hosts_is_measured() {
    let mut c = cfg(Target::NvmfIdle(3), vec![Workload::RandRead4kQd1]);
    c.engine = engine_spec([127, 0, 170, 4]);
    c.runtime = Duration::from_millis(1500);
    let r = run(&c).await.unwrap();
    let idle = r.idle.clone().expect("idle result");
    assert_eq!((idle.replicas, idle.hosts), (3, 3));
    assert!(idle.elapsed_s >= 1.5, "{idle:?}");
    assert!(
        idle.engine_core_pct >= 0.0 && idle.engine_core_pct < 10.0,
        "an idle engine sleeps: {idle:?}"
    );
    assert!(r.render_table().contains("ENGINE %CORE"));
    // The same engine polling (`--poll`): busy although idle.
    c.engine.poll = true;
    let polled = run(&c).await.unwrap().idle.expect("idle result");
    assert!(
        polled.engine_core_pct >= 20.0,
        "a polling engine stays busy: {polled:?}"
    );
    // A bad count is refused.
    let err = run(&cfg(Target::NvmfIdle(0), vec![Workload::RandRead4kQd1]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}
