//! Guided upgrades of real local clusters (`mayastor-local`) through the
//! plugin binary, from binaries reporting version A (the main build) to
//! binaries reporting version B (copies of the same binaries with their
//! version slot stamped, see `upgrade_kit::version_b_dir`):
//!
//! - a roll-out with a writer verifying every block through our NVMe/TCP
//!   initiator the whole time;
//! - the upgrade process SIGKILLed in the data plane and run again;
//! - an engine binary that exits at start for one node, then restored;
//! - each validation's refusal and skip flag, `--dry-run`, and
//!   `get upgrade-status` / `delete upgrade` in every stage.
//!
//! Addresses: 127.0.71.* to 127.0.74.*, one prefix per test.

#![allow(clippy::unwrap_used)]

mod common;
mod upgrade_kit;

use std::time::{Duration, Instant};

use common::Cluster;
use openapi::models::*;
use openapi::CoreApi;
use upgrade_kit::*;

const VOLUME: &str = "75706772-6164-4500-8000-000000000001";
const VOLUME_SIZE: u64 = 16 << 20;

fn upgrade_args<'a>(bin: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["upgrade", "--bin-dir", bin];
    args.extend_from_slice(extra);
    args
}

fn assert_all_on(cluster: &Cluster, version: &str) {
    let (v, nodes) = versions(cluster);
    assert_eq!(
        (v.store.as_str(), v.core.as_str(), v.rest.as_str()),
        (version, version, version),
        "control plane versions"
    );
    for (node, v) in &nodes {
        assert_eq!(v, version, "engine of {node}");
    }
}

fn assert_no_drain_left(cluster: &Cluster) {
    let client = cluster.client();
    let nodes = cluster.block_on(async { client.get_nodes().await.unwrap() });
    for n in nodes {
        let st = n.spec.map(|s| s.cordon_drain_state).unwrap_or_default();
        assert!(
            st.drain_labels.is_empty() && st.cordon_labels.is_empty(),
            "{} still has {st:?}",
            n.id
        );
    }
}

#[test]
fn rolls_every_node_with_a_verifying_writer() {
    let b = version_b_dir();
    let cluster = Cluster::up("127.0.71", 3);
    assert_all_on(&cluster, VERSION_A);
    published_volume(&cluster, VOLUME, VOLUME_SIZE, "node-1");
    let before_pids = pids(&cluster);
    let before_starts = starts(&cluster);
    let writer = Writer::start(&cluster.rest, VOLUME);
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    let out = plugin(&cluster, &upgrade_args(b.to_str().unwrap(), &[]));
    let took = started.elapsed();
    let report = writer.stop();
    assert!(out.status.success(), "{}", text(&out));
    let report = report.unwrap_or_else(|e| panic!("the writer failed: {e}\n{}", text(&out)));
    println!("upgrade took {took:?}; writer: {report:?}\n{}", text(&out));
    assert!(report.passes >= 2, "{report:?}");

    assert_all_on(&cluster, VERSION_B);
    let after_pids = pids(&cluster);
    let after_starts = starts(&cluster);
    for (name, pid) in &before_pids {
        assert_ne!(after_pids.get(name), Some(pid), "{name} was not restarted");
        assert_eq!(
            after_starts[name],
            before_starts[name] + 1,
            "{name} must be started exactly once more"
        );
    }
    let status = status(&cluster);
    assert_eq!(status.stage, UpgradeStage::Successful);
    assert_eq!(
        (status.from_version.as_str(), status.to_version.as_str()),
        (VERSION_A, VERSION_B)
    );
    assert_eq!(status.nodes.len(), 3);
    for n in &status.nodes {
        assert_eq!(n.state, NodeUpgradeState::Upgraded, "{n:?}");
        assert!(n.started_at.is_some() && n.finished_at.is_some(), "{n:?}");
        assert_eq!(n.from_version, VERSION_A);
    }
    assert!(status.finished_at.is_some());
    assert_no_drain_left(&cluster);
    let volume = cluster.volume(VOLUME);
    assert_eq!(volume.state.status, VolumeStatus::Online);

    // Again: nothing is on an older version, so nothing restarts.
    let again = plugin(&cluster, &upgrade_args(b.to_str().unwrap(), &[]));
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(pids(&cluster), after_pids);
}

#[test]
fn a_killed_upgrade_resumes_without_restarting_finished_nodes() {
    let b = version_b_dir();
    let cluster = Cluster::up("127.0.72", 3);
    published_volume(&cluster, VOLUME, VOLUME_SIZE, "node-2");
    let before_starts = starts(&cluster);
    let writer = Writer::start(&cluster.rest, VOLUME);
    std::thread::sleep(Duration::from_secs(1));

    let mut child = plugin_command(&cluster, &upgrade_args(b.to_str().unwrap(), &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once node-1 is done and node-2 is under way.
    let client = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(240);
    let at_kill = loop {
        assert!(
            Instant::now() < deadline,
            "the upgrade never reached node-2"
        );
        if let Ok(s) = cluster.block_on(client.get_upgrade_status()) {
            let state = |n: &str| s.nodes.iter().find(|x| x.node == n).map(|x| x.state);
            if s.stage == UpgradeStage::UpgradingDataPlane
                && state("node-1") == Some(NodeUpgradeState::Upgraded)
                && state("node-2").is_some_and(|st| st != NodeUpgradeState::Pending)
            {
                break s;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upgrade ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    println!("killed at {:?}", at_kill.nodes);

    let out = plugin(&cluster, &upgrade_args(b.to_str().unwrap(), &[]));
    let report = writer.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Resuming the upgrade"),
        "{}",
        text(&out)
    );
    let report = report.unwrap_or_else(|e| panic!("the writer failed: {e}"));
    println!("writer: {report:?}");
    assert_all_on(&cluster, VERSION_B);
    let after = starts(&cluster);
    for (name, n) in &before_starts {
        assert_eq!(
            after[name],
            n + 1,
            "{name} must be started exactly once more"
        );
    }
    assert_eq!(status(&cluster).stage, UpgradeStage::Successful);
    assert_no_drain_left(&cluster);
}

#[test]
fn an_engine_that_does_not_start_stops_the_upgrade_at_its_node() {
    let b = version_b_dir();
    let cluster = Cluster::up("127.0.73", 3);
    published_volume(&cluster, VOLUME, VOLUME_SIZE, "node-1");
    let dir = tempfile::tempdir().unwrap();
    let real = b.join("io-engine");
    let broken = format!(
        "#!/bin/sh\n# node-2's engine exits at start; the others run version B\ncase \" $* \" in *\" node-2 \"*) echo 'refusing to start' >&2; exit 3;; esac\nexec {} \"$@\"\n",
        real.display()
    );
    let bin = bin_dir_view(dir.path(), Some(&broken));
    let bin_s = bin.to_str().unwrap().to_string();
    let writer = Writer::start(&cluster.rest, VOLUME);
    std::thread::sleep(Duration::from_secs(1));
    let before = pids(&cluster);

    let out = plugin(&cluster, &upgrade_args(&bin_s, &["--node-timeout", "20s"]));
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node node-2"), "{}", text(&out));

    let s = status(&cluster);
    assert_eq!(s.stage, UpgradeStage::Failed);
    let reason = s.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("node node-2") && reason.contains("io-engine-2"),
        "{reason}"
    );
    let state = |n: &str| s.nodes.iter().find(|x| x.node == n).unwrap().state;
    assert_eq!(state("node-1"), NodeUpgradeState::Upgraded);
    assert_eq!(state("node-2"), NodeUpgradeState::Failed);
    assert_eq!(state("node-3"), NodeUpgradeState::Pending);
    // node-3 untouched, node-2 keeps its drain label, the volume is served.
    let after = pids(&cluster);
    assert_eq!(after.get("io-engine-3"), before.get("io-engine-3"));
    let (_, nodes) = versions(&cluster);
    assert_eq!(nodes["node-1"], VERSION_B);
    assert_eq!(nodes["node-3"], VERSION_A);
    let client = cluster.client();
    let node2 = cluster.block_on(client.get_node("node-2")).unwrap();
    assert!(node2
        .spec
        .unwrap()
        .cordon_drain_state
        .drain_labels
        .contains(&"mayastor-upgrade".to_string()));
    let volume = cluster.volume(VOLUME);
    assert!(
        matches!(
            volume.state.status,
            VolumeStatus::Online | VolumeStatus::Degraded
        ),
        "{:?}",
        volume.state.status
    );
    let deleted = plugin(&cluster, &["delete", "upgrade"]);
    assert!(
        !deleted.status.success(),
        "an unfinished upgrade is not deleted without --force"
    );

    // The binary restored: the upgrade finishes.
    let bin = bin_dir_view(dir.path(), None);
    assert_eq!(bin.to_str().unwrap(), bin_s);
    let out = plugin(&cluster, &upgrade_args(&bin_s, &[]));
    let report = writer.stop();
    assert!(out.status.success(), "{}", text(&out));
    let report = report.unwrap_or_else(|e| panic!("the writer failed: {e}"));
    println!("writer: {report:?}");
    assert_all_on(&cluster, VERSION_B);
    assert_eq!(status(&cluster).stage, UpgradeStage::Successful);
    assert_eq!(
        pids(&cluster).get("io-engine-1"),
        after.get("io-engine-1"),
        "node-1 was done and is not restarted again"
    );
    assert_no_drain_left(&cluster);
}

/// The stderr of a failed plugin run.
fn refused(cluster: &Cluster, args: &[&str]) -> String {
    let out = plugin(cluster, args);
    assert!(!out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn passes(cluster: &Cluster, args: &[&str]) -> String {
    let out = plugin(cluster, args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn validations_refuse_skip_flags_pass_and_dry_run_changes_nothing() {
    let b = version_b_dir();
    let b = b.to_str().unwrap();
    let cluster = Cluster::up("127.0.74", 3);
    let client = cluster.client();
    let pids_before = pids(&cluster);

    // A clean cluster: the dry run passes and changes nothing.
    let out = passes(&cluster, &upgrade_args(b, &["--dry-run"]));
    assert!(out.contains("Dry run: the validations pass"), "{out}");
    assert!(
        out.contains("Plan: node node-2 (0.1.0): drained, restarted, undrained"),
        "{out}"
    );
    assert_eq!(
        cluster
            .block_on(client.get_upgrade_status())
            .unwrap_err()
            .kind,
        openapi::ErrorKind::NotFound,
        "a dry run records nothing"
    );

    // Single-replica volume, named by id.
    let single = "75706772-6164-4500-8000-000000000002";
    cluster.create_volume(single, 1, None);
    let err = refused(&cluster, &upgrade_args(b, &[]));
    assert!(
        err.contains("single-replica volumes") && err.contains(single),
        "{err}"
    );
    let s = status(&cluster);
    assert_eq!(s.stage, UpgradeStage::ValidationFailed);
    assert!(s.reason.unwrap_or_default().contains(single));
    passes(
        &cluster,
        &upgrade_args(b, &["--dry-run", "--skip-single-replica-volume-validation"]),
    );

    // Cordoned node, named with its label (as well as the volume).
    passes(&cluster, &["cordon", "node", "node-3", "maintenance"]);
    let err = refused(&cluster, &upgrade_args(b, &["--dry-run"]));
    assert!(
        err.contains("cordoned nodes: node node-3 (cordon maintenance)"),
        "{err}"
    );
    assert!(
        err.contains(single),
        "every offending object is named: {err}"
    );
    let err = refused(
        &cluster,
        &upgrade_args(b, &["--dry-run", "--skip-single-replica-volume-validation"]),
    );
    assert!(err.contains("node-3") && !err.contains(single), "{err}");
    passes(
        &cluster,
        &upgrade_args(
            b,
            &[
                "--dry-run",
                "--skip-single-replica-volume-validation",
                "--skip-cordoned-node-validation",
            ],
        ),
    );

    // Upgrade path: binaries reporting an older version are a downgrade.
    // (Only their --version is asked: a refused upgrade runs nothing.)
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for name in ["io-engine", "agent-core", "api-rest", "mayastor-store"] {
        use std::os::unix::fs::PermissionsExt;
        let p = old.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho {name} 0.0.9\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let all_skips = [
        "--skip-single-replica-volume-validation",
        "--skip-cordoned-node-validation",
    ];
    let old_s = old.to_str().unwrap();
    let mut args = upgrade_args(old_s, &["--dry-run"]);
    args.extend(all_skips);
    let err = refused(&cluster, &args);
    assert!(
        err.contains("upgrade path") && err.contains("downgrade"),
        "{err}"
    );
    args.push("--skip-upgrade-path-validation");
    passes(&cluster, &args);
    // Not a dry run: refused and recorded, nothing restarted.
    let mut args = upgrade_args(old_s, &[]);
    args.extend(all_skips);
    let err = refused(&cluster, &args);
    assert!(err.contains("downgrade"), "{err}");
    assert_eq!(status(&cluster).stage, UpgradeStage::ValidationFailed);

    // Bad input: one line, nothing changed.
    let err = refused(&cluster, &upgrade_args(b, &["--set", "novalue"]));
    assert!(err.contains("expected key=value"), "{err}");
    let err = refused(&cluster, &upgrade_args(b, &["--set", "a=b"]));
    assert!(err.contains("Helm values"), "{err}");
    let err = refused(&cluster, &upgrade_args("/no/such/dir", &[]));
    assert!(err.lines().count() == 1, "{err}");

    assert_eq!(
        pids(&cluster),
        pids_before,
        "no validation restarted anything"
    );
    assert_all_on(&cluster, VERSION_A);

    // The record in every stage: table, json and yaml, delete rules.
    for stage in [
        UpgradeStage::Validating,
        UpgradeStage::UpgradingControlPlane,
        UpgradeStage::UpgradingDataPlane,
        UpgradeStage::Successful,
        UpgradeStage::ValidationFailed,
        UpgradeStage::Failed,
    ] {
        let record = record_in(stage);
        cluster
            .block_on(client.put_upgrade_status(record.clone()))
            .unwrap();
        let table = passes(&cluster, &["get", "upgrade-status"]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["FROM", "TO", "STAGE", "NODES", "STARTED", "FINISHED", "REASON"]
        );
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], ["0.1.0", "0.2.0", &stage.to_string(), "1/2"]);
        let node_rows: Vec<Vec<&str>> = table
            .lines()
            .skip_while(|l| !l.starts_with("NODE"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            node_rows[0],
            ["NODE", "STATE", "FROM", "STARTED", "FINISHED", "DURATION"],
            "{table}"
        );
        assert_eq!(node_rows[1][..3], ["node-1", "Upgraded", "0.1.0"]);
        assert_eq!(node_rows[1][5], "11s", "{table}");
        assert_eq!(node_rows[2][..2], ["node-2", "Restarting"]);
        let json: UpgradeStatus =
            serde_json::from_str(&passes(&cluster, &["get", "upgrade-status", "-o", "json"]))
                .unwrap();
        assert_eq!(json, record);
        let yaml: UpgradeStatus =
            serde_yaml::from_str(&passes(&cluster, &["get", "upgrade-status", "-o", "yaml"]))
                .unwrap();
        assert_eq!(yaml, record);
        if stage.is_finished() {
            let out = passes(&cluster, &["delete", "upgrade"]);
            assert!(out.contains("deleted"), "{out}");
        } else {
            let err = refused(&cluster, &["delete", "upgrade"]);
            assert!(
                err.contains("unfinished") && err.contains("--force"),
                "{err}"
            );
            assert_eq!(
                status(&cluster),
                record,
                "a refused delete keeps the record"
            );
            passes(&cluster, &["delete", "upgrade", "--force"]);
        }
        let err = refused(&cluster, &["get", "upgrade-status"]);
        assert!(err.contains("no upgrade is recorded"), "{err}");
    }
    let err = refused(&cluster, &["delete", "upgrade"]);
    assert!(err.contains("no upgrade is recorded"), "{err}");
}

fn record_in(stage: UpgradeStage) -> UpgradeStatus {
    let finished = matches!(
        stage,
        UpgradeStage::Successful | UpgradeStage::ValidationFailed | UpgradeStage::Failed
    );
    UpgradeStatus {
        from_version: "0.1.0".into(),
        to_version: "0.2.0".into(),
        stage,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:30.000Z".into(),
        finished_at: finished.then(|| "2026-01-01T00:00:30.000Z".into()),
        nodes: vec![
            NodeUpgradeStatus {
                node: "node-1".into(),
                state: NodeUpgradeState::Upgraded,
                from_version: "0.1.0".into(),
                started_at: Some("2026-01-01T00:00:01.000Z".into()),
                finished_at: Some("2026-01-01T00:00:12.000Z".into()),
            },
            NodeUpgradeStatus {
                node: "node-2".into(),
                state: NodeUpgradeState::Restarting,
                from_version: "0.1.0".into(),
                started_at: Some("2026-01-01T00:00:13.000Z".into()),
                finished_at: None,
            },
        ],
        reason: (stage == UpgradeStage::Failed).then(|| "node node-2: timed out".into()),
    }
}
