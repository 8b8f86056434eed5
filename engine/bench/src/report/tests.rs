//! Unit tests of `report`.

use super::*;

fn result(target: &str, iops: f64, p50: f64) -> WorkloadResult {
    WorkloadResult {
        round: 1,
        target: target.into(),
        workload: Workload::RandRead4kQd32,
        io_size_bytes: 4096,
        queue_depth: 32,
        ops: 100,
        bytes: 409_600,
        elapsed_s: 1.0,
        iops,
        mib_per_s: iops * 4096.0 / 1048576.0,
        p50_us: p50,
        p99_us: p50 * 2.0,
        mean_us: p50,
        max_us: p50 * 3.0,
        cpu_user_s: 0.1,
        cpu_system_s: 0.1,
        cpu_us_per_io: 4.0,
        target_cpu_us_per_io: None,
        host_other_pct: Some(3.0),
        host_steal_pct: Some(0.0),
        attempts: 1,
        ran_first: target == "raw",
    }
}

fn report(results: Vec<WorkloadResult>) -> Report {
    Report {
        machine: MachineInfo {
            nproc: 2,
            kernel: "6.1".into(),
            cpu_model: "test".into(),
            filesystem: Some("ext4".into()),
            cpuidle: Some("haltpoll (guest_halt_poll_ns 0)".into()),
        },
        session: SessionInfo {
            mode: "replica-vs-raw".into(),
            runtime_s: 1.0,
            ramp_s: 0.0,
            rounds: 1,
            runtime_threads: 2,
            seed: 1,
            cluster_size_bytes: Some(4 << 20),
            segment_bytes: None,
        },
        pairing: Some(Pairing::ReplicaVsRaw),
        targets: Vec::new(),
        results,
        comparisons: Vec::new(),
        summary: Vec::new(),
        copies: Vec::new(),
        copy_comparisons: Vec::new(),
        idle: None,
    }
}

#[test]
fn ratios_and_table() {
    let mut r = report(vec![
        result("raw", 1000.0, 100.0),
        result("replica", 980.0, 101.0),
    ]);
    r.compare();
    assert_eq!(r.comparisons.len(), 1);
    let c = &r.comparisons[0];
    assert!((c.iops_ratio.unwrap() - 0.98).abs() < 1e-9);
    assert!((c.p50_ratio.unwrap() - 1.01).abs() < 1e-9);
    assert_eq!(c.meets_target, Some(true));
    let t = r.render_table();
    assert!(t.contains("replica/raw IOPS"), "{t}");
    assert!(t.contains("98.0%"), "{t}");
    assert!(t.contains(">=97% ok"), "{t}");
    assert!(t.contains("randread-4k-qd32"), "{t}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["results"][0]["workload"], "randread-4k-qd32");
    assert_eq!(json["comparisons"][0]["meets_target"], true);
}

#[test]
fn summary_takes_medians_over_rounds() {
    let mut rs = Vec::new();
    for (round, raw, rep) in [(1, 1000.0, 990.0), (2, 1000.0, 900.0), (3, 1000.0, 1010.0)] {
        let mut a = result("raw", raw, 100.0);
        a.round = round;
        let mut b = result("replica", rep, 100.0);
        b.round = round;
        rs.extend([a, b]);
    }
    let mut r = report(rs);
    r.session.rounds = 3;
    r.compare();
    assert_eq!(r.summary.len(), 1);
    let m = &r.summary[0];
    assert_eq!(m.rounds, 3);
    assert!((m.iops_ratio_median.unwrap() - 0.99).abs() < 1e-9);
    assert!((m.iops_ratio_min.unwrap() - 0.90).abs() < 1e-9);
    assert!((m.iops_ratio_max.unwrap() - 1.01).abs() < 1e-9);
    assert_eq!(m.candidate_iops_median, 990.0);
    assert_eq!(m.baseline_iops_median, 1000.0);
    assert_eq!(m.meets_target, Some(true));
    let t = r.render_table();
    assert!(t.contains("MEDIAN OVER 3 ROUNDS"), "{t}");
    assert!(t.contains("(90.0%..101.0%)"), "{t}");
}

#[test]
fn below_target_is_flagged() {
    let mut r = report(vec![
        result("raw", 1000.0, 100.0),
        result("replica", 900.0, 111.0),
    ]);
    r.compare();
    assert_eq!(r.comparisons[0].meets_target, Some(false));
    assert!(r.render_table().contains("BELOW"));
}

#[test]
fn pairings_name_their_targets_and_targets() {
    use Workload::*;
    let p = Pairing::NexusVsReplica;
    assert_eq!((p.baseline(), p.candidate()), ("replica", "nexus"));
    assert_eq!(p.target_ratio(RandRead4kQd32), Some(0.97));
    assert_eq!(p.target_ratio(SeqWrite128kQd8), Some(0.95));
    assert_eq!(p.target_ratio(RandWrite4kQd1), None);
    let p = Pairing::Nexus2Vs1;
    assert_eq!(p.label(), "nexus-2/nexus-1");
    assert_eq!(p.target_ratio(RandWrite4kQd32), Some(0.92));
    assert_eq!(p.target_ratio(SeqWrite128kQd8), None);
    assert_eq!(p.target_ratio(RandRead4kQd32), None);
    assert_eq!(
        serde_json::to_value(Pairing::Nexus2Vs1).unwrap(),
        "nexus-2-vs-1"
    );
    assert_eq!(Pairing::ReplicaVsRaw.label(), "replica/raw");
}

#[test]
fn nexus_pairs_are_compared_with_their_own_targets() {
    let mut one = result("nexus-1", 1000.0, 100.0);
    one.workload = Workload::RandWrite4kQd32;
    let mut two = result("nexus-2", 910.0, 110.0);
    two.workload = Workload::RandWrite4kQd32;
    // Results of other targets are not paired.
    let mut r = report(vec![one, two, result("raw", 1.0, 1.0)]);
    r.pairing = Some(Pairing::Nexus2Vs1);
    r.compare();
    assert_eq!(r.comparisons.len(), 1);
    let c = &r.comparisons[0];
    assert_eq!(c.target_iops_ratio, Some(0.92));
    assert_eq!(c.meets_target, Some(false));
    let t = r.render_table();
    assert!(t.contains("nexus-2/nexus-1 IOPS"), "{t}");
    assert!(t.contains("91.0%"), "{t}");
    assert!(t.contains(">=92% BELOW"), "{t}");
}

#[test]
fn copies_are_compared_per_round() {
    let copy = |round: u32, method: &str, mib_per_s: f64, cpu: f64| CopyResult {
        round,
        method: method.into(),
        bytes: 1 << 30,
        segment_bytes: 1 << 20,
        elapsed_s: 1024.0 / mib_per_s,
        mib_per_s,
        cpu_us_per_mib: cpu,
        host_other_pct: Some(2.0),
        ran_first: method == REBUILD,
    };
    let mut r = report(Vec::new());
    r.pairing = None;
    r.session.rounds = 2;
    r.session.segment_bytes = Some(1 << 20);
    r.copies = vec![
        copy(1, REBUILD, 900.0, 300.0),
        copy(1, RAW_COPY, 1000.0, 200.0),
        copy(2, RAW_COPY, 1000.0, 200.0),
        copy(2, REBUILD, 800.0, 200.0),
    ];
    r.compare();
    assert!(r.comparisons.is_empty() && r.summary.is_empty());
    let ratios: Vec<f64> = r
        .copy_comparisons
        .iter()
        .map(|c| c.throughput_ratio.unwrap())
        .collect();
    assert_eq!(ratios.len(), 2);
    assert!((ratios[0] - 0.9).abs() < 1e-9 && (ratios[1] - 0.8).abs() < 1e-9);
    assert!((r.copy_comparisons[0].cpu_per_mib_ratio.unwrap() - 1.5).abs() < 1e-9);
    let t = r.render_table();
    assert!(t.contains("1048576 byte segments"), "{t}");
    assert!(t.contains("rebuild/raw-copy MiB/s"), "{t}");
    assert!(
        t.contains("median over 2 rounds: rebuild/raw-copy MiB/s 85.0%"),
        "{t}"
    );
    assert!(!t.contains("WORKLOAD"), "{t}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["copies"][0]["method"], "rebuild");
    assert_eq!(json["session"]["segment_bytes"], 1 << 20);
}
