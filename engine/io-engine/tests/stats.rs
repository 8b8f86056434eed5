//! End-to-end: the I/O statistics of the real `io-engine`, read with the
//! real `io-engine-client`, after I/O through our NVMe/TCP initiator to a
//! published nexus over a local replica.
//!
//! What users rely on: the nexus, its replica and the replica's pool count
//! exactly the reads and writes the host did (ops and bytes), latency sums
//! grow with them, the tick moves forward, an idle replica stays at zero,
//! a pool keeps the I/O of a replica it destroyed,
//! an unknown name is a one-line NOT_FOUND error, and an engine started
//! with `--no-io-stats` says so instead of reporting zeroes.
//!
//! Addresses: 127.0.140.1 and 127.0.140.2.

#![allow(clippy::unwrap_used)]

mod common;

use blockdev::{BlockDevice, DmaBuf};
use common::{free_port, ok, stderr, Engine};
use nvmf_host::{ConnectOptions, Controller};
use serde_json::Value;
use uuid::Uuid;

const HOST: &str = "nqn.2019-05.io.openebs:node-name:stats-writer";

/// `stats <kind> [name] -o json`, as a list.
fn stats(engine: &Engine, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-o", "json", "stats"];
    all.extend_from_slice(args);
    match serde_json::from_str(&ok(engine.client(&all))).expect("json") {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

/// The one entry named `name` of `stats <kind> <name> -o json`.
fn one(engine: &Engine, kind: &str, name: &str) -> Value {
    let list = stats(engine, &[kind, name]);
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

fn counters(v: &Value) -> [u64; 4] {
    [
        v["num_read_ops"].as_u64().unwrap(),
        v["bytes_read"].as_u64().unwrap(),
        v["num_write_ops"].as_u64().unwrap(),
        v["bytes_written"].as_u64().unwrap(),
    ]
}

fn pattern(offset: u64, len: usize) -> DmaBuf {
    let mut buf = DmaBuf::new(len);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((offset + i as u64).wrapping_mul(31) % 251) as u8;
    }
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_exactly_the_hosts_reads_and_writes() {
    let ip = "127.0.140.1";
    let nvmf = format!("{ip}:{}", free_port(ip));
    let engine = Engine::start(ip, 0, "node-stats", &["--nvmf-endpoint", &nvmf]);
    ok(engine.client(&["pool", "create", "sp", "malloc:///stats0?size_mb=96"]));
    let replica = Uuid::new_v4();
    let r = replica.to_string();
    ok(engine.client(&[
        "replica", "create", "--uuid", &r, "--size", "32MiB", "sp", "busy",
    ]));
    ok(engine.client(&["replica", "create", "--size", "8MiB", "sp", "idle"]));
    let nexus = Uuid::new_v4().to_string();
    let volume = Uuid::new_v4().to_string();
    ok(engine.client(&[
        "nexus",
        "create",
        &nexus,
        "--size",
        "32MiB",
        "--name",
        &volume,
        &format!("bdev:///{r}?uuid={r}"),
    ]));
    let uri = ok(engine.client(&["nexus", "publish", &nexus, "--allowed-host", HOST]));

    // Nothing counted before the host does I/O.
    let before = one(&engine, "nexus", &volume);
    assert_eq!(counters(&before), [0; 4]);
    assert_eq!(before["uuid"], nexus.as_str());

    let mut opts = ConnectOptions::from_uri(uri.trim()).expect("uri");
    opts.hostnqn = HOST.into();
    opts.io_queues = 1;
    let ctrl = Controller::connect(opts).await.expect("connect");
    let ns = ctrl.namespace(1).await.expect("namespace");
    // 100 writes of 4 KiB and 10 of 64 KiB, then 20 reads of 4 KiB
    // checked against what was written.
    let mut written = 0u64;
    for i in 0..100u64 {
        let off = i * 4096;
        ns.write_at(off, &pattern(off, 4096)).await.expect("write");
        written += 4096;
    }
    for i in 0..10u64 {
        let off = (1 << 20) + i * 65536;
        ns.write_at(off, &pattern(off, 65536)).await.expect("write");
        written += 65536;
    }
    for i in 0..20u64 {
        let off = i * 4096 * 3;
        let mut buf = DmaBuf::new(4096);
        ns.read_at(off, &mut buf).await.expect("read");
        assert_eq!(&buf[..], &pattern(off, 4096)[..], "read back at {off}");
    }
    let expected = [20, 20 * 4096, 110, written];
    assert_eq!(written, 100 * 4096 + 10 * 65536);

    let by_name = one(&engine, "nexus", &volume);
    assert_eq!(counters(&by_name), expected, "nexus {by_name}");
    assert!(by_name["write_latency_us"].as_u64().unwrap() > 0);
    assert!(by_name["tick_us"].as_u64().unwrap() > before["tick_us"].as_u64().unwrap());
    // The nexus is found by its uuid too.
    assert_eq!(counters(&one(&engine, "nexus", &nexus)), expected);

    // A 1-child nexus sends each I/O to its replica once; the pool sums
    // its replicas.
    let busy = one(&engine, "replica", "busy");
    assert_eq!(counters(&busy), expected, "replica {busy}");
    assert_eq!(busy["pool"], "sp");
    assert_eq!(busy["uuid"], r.as_str());
    assert_eq!(counters(&one(&engine, "replica", &r)), expected);
    assert_eq!(counters(&one(&engine, "replica", "idle")), [0; 4]);
    let pool = one(&engine, "pool", "sp");
    assert_eq!(counters(&pool), expected, "pool {pool}");
    assert_eq!(stats(&engine, &["replica"]).len(), 2);

    // The table shows the same figures.
    let table = ok(engine.client(&["stats", "pool"]));
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "NUM_RD_OPS",
            "TOTAL_RD",
            "NUM_WR_OPS",
            "TOTAL_WR",
            "RD_LAT_US",
            "WR_LAT_US"
        ]
    );
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["sp", "20", "81920", "110", "1064960"]);

    // Unknown names: one line, NOT_FOUND, exit code 1.
    for (kind, name) in [("pool", "nope"), ("replica", "nope"), ("nexus", "nope")] {
        let out = engine.client(&["stats", kind, name]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(
            err.trim(),
            format!("error: {kind} '{name}' not found (NotFound)"),
        );
    }
    drop(ns);
    ctrl.disconnect().await.ok();

    // A destroyed replica's I/O stays in its pool's figures.
    ok(engine.client(&["nexus", "destroy", &nexus]));
    ok(engine.client(&["replica", "destroy", "sp", "busy"]));
    assert_eq!(stats(&engine, &["replica"]).len(), 1);
    assert_eq!(counters(&one(&engine, "pool", "sp")), expected);
}

#[test]
fn an_engine_without_statistics_says_so() {
    let engine = Engine::start("127.0.140.2", 0, "node-nostats", &["--no-io-stats"]);
    ok(engine.client(&["pool", "create", "np", "malloc:///nostats0?size_mb=32"]));
    for kind in ["pool", "replica", "nexus"] {
        let out = engine.client(&["stats", kind]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("i/o statistics are off") && err.contains("FailedPrecondition"),
            "{err}"
        );
    }
    // Everything else works as usual.
    assert!(ok(engine.client(&["pool", "list"])).contains("np"));
}
