//! Every nexus and rebuild command of `io-engine-client` against a real
//! engine: add, rebuild progress, pause, resume, stop, start, offline and
//! online (partial rebuild), remove, history, and refusals that change
//! nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::{thread, time::Duration};

use common::{ok, stderr, Engine};
use serde_json::Value;
use uuid::Uuid;

fn json(engine: &Engine, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(engine.client(&all))).unwrap()
}

fn child_state(engine: &Engine, nexus: &str, uri: &str) -> (String, String) {
    let list = json(engine, &["nexus", "list"]);
    let n = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["uuid"] == nexus)
        .unwrap()
        .clone();
    let c = n["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["uri"] == uri)
        .unwrap()
        .clone();
    (
        c["state"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn wait_online(engine: &Engine, nexus: &str, uri: &str) {
    for _ in 0..300 {
        if child_state(engine, nexus, uri).0 == "online" {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("{uri} did not come online");
}

fn replica(engine: &Engine, pool: &str) -> String {
    ok(engine.client(&[
        "pool",
        "create",
        pool,
        &format!("malloc:///{pool}?size_mb=96"),
    ]));
    let uuid = Uuid::new_v4();
    ok(engine.client(&[
        "replica",
        "create",
        "--uuid",
        &uuid.to_string(),
        "--size",
        "64MiB",
        pool,
        "r",
    ]));
    format!("bdev:///{uuid}?uuid={uuid}")
}

#[test]
fn nexus_and_rebuild_commands_drive_a_real_engine() {
    let engine = Engine::start("127.0.1.40", 0, "node-client", &[]);
    let a = replica(&engine, "pa");
    let b = replica(&engine, "pb");
    let c = replica(&engine, "pc");
    let nexus = Uuid::new_v4().to_string();
    ok(engine.client(&["nexus", "create", &nexus, "--size", "64", &a]));

    // Bad input and refusals change nothing.
    let out = engine.client(&["nexus", "remove", &nexus, &a]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("last healthy child"),
        "{}",
        stderr(&out)
    );
    let out = engine.client(&["nexus", "children", &Uuid::new_v4().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let out = engine.client(&["nexus", "add", &nexus, "bdev:///not-a-uuid"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = engine.client(&["nexus", "child-op", &nexus, &a, "offline"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(child_state(&engine, &nexus, &a).0, "online");

    // Add b without a rebuild, then rebuild it slowly: pause, resume, stop.
    ok(engine.client(&["nexus", "add", &nexus, &b, "--norebuild"]));
    assert_eq!(
        child_state(&engine, &nexus, &b),
        ("faulted".into(), "out_of_sync".into())
    );
    ok(engine.client(&["rebuild", "start", &nexus, &b, "--max-bandwidth", "8"]));
    thread::sleep(Duration::from_millis(600));
    let p = json(&engine, &["rebuild", "progress", &nexus, &b]);
    assert_eq!(p["state"], "running", "{p}");
    ok(engine.client(&["rebuild", "pause", &nexus, &b]));
    thread::sleep(Duration::from_millis(300));
    let p1 = json(&engine, &["rebuild", "stats", &nexus, &b]);
    thread::sleep(Duration::from_millis(500));
    let p2 = json(&engine, &["rebuild", "stats", &nexus, &b]);
    assert_eq!(p2["state"], "paused", "{p2}");
    assert_eq!(
        p1["blocks_recovered"], p2["blocks_recovered"],
        "a paused rebuild moved"
    );
    assert_eq!(child_state(&engine, &nexus, &b).0, "degraded");
    ok(engine.client(&["rebuild", "resume", &nexus, &b]));
    thread::sleep(Duration::from_millis(300));
    let p3 = json(&engine, &["rebuild", "stats", &nexus, &b]);
    assert!(
        p3["blocks_recovered"].as_u64() > p2["blocks_recovered"].as_u64(),
        "{p3}"
    );
    ok(engine.client(&["rebuild", "stop", &nexus, &b]));
    assert_eq!(
        child_state(&engine, &nexus, &b),
        ("faulted".into(), "out_of_sync".into())
    );
    // Started again at full speed it completes.
    ok(engine.client(&["rebuild", "start", &nexus, &b]));
    wait_online(&engine, &nexus, &b);

    // Offline then online: a partial rebuild.
    ok(engine.client(&["nexus", "child-op", &nexus, &b, "offline"]));
    assert_eq!(
        child_state(&engine, &nexus, &b),
        ("faulted".into(), "by_client".into())
    );
    let table = ok(engine.client(&["nexus", "children", &nexus]));
    assert!(table.contains("by_client"), "{table}");
    ok(engine.client(&["nexus", "child-op", &nexus, &b, "online"]));
    wait_online(&engine, &nexus, &b);

    // A third child, then removed.
    ok(engine.client(&["nexus", "add", &nexus, &c]));
    wait_online(&engine, &nexus, &c);
    ok(engine.client(&["nexus", "remove", &nexus, &c]));

    let history = json(&engine, &["rebuild", "history", &nexus]);
    let states: Vec<(String, bool)> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap().to_owned(),
                r["is_partial"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("stopped".to_owned(), false),
            ("completed".to_owned(), false),
            ("completed".to_owned(), true),
            ("completed".to_owned(), false),
        ],
        "{history}"
    );
    let table = ok(engine.client(&["rebuild", "history", &nexus]));
    assert!(table.lines().count() >= 5, "{table}");
    let list = ok(engine.client(&["nexus", "list"]));
    assert!(list.contains(&nexus) && list.contains("online"), "{list}");
    ok(engine.client(&["nexus", "destroy", &nexus]));
    let list = json(&engine, &["nexus", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0);
}
