//! End-to-end: sharing replicas over NVMe/TCP with the real `io-engine` and
//! the real `io-engine-client`.
//!
//! Covered here: `replica share` / `unshare` and what lists show, the URI's
//! port accepting connections, shares surviving an engine restart (and a
//! pool export/import), bad input leaving everything as it was, destroying
//! shared replicas and pools, start-up errors and the advertised address.
//! What goes over the wire (Connect, I/O, disallowed hosts refused) is
//! tested with the NVMe/TCP host elsewhere.
//!
//! Each test uses its own 127.0.1.5x address.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use common::{free_port, ok, stderr, stdout, Engine};
use serde_json::Value;

const MIB: u64 = 1 << 20;
const HOST_A: &str = "nqn.2019-05.io.openebs:node-name:node-a";
const HOST_B: &str = "nqn.2019-05.io.openebs:node-name:node-b";

/// A sparse disk image of `size_mib` MiB in `dir`, as an `aio://` URI.
fn disk_image(dir: &Path, name: &str, size_mib: u64) -> String {
    let path = dir.join(name);
    let file = fs::File::create(&path).expect("create disk image");
    file.set_len(size_mib * MIB).expect("size disk image");
    format!("aio://{}", path.display())
}

/// `replica list -o json`.
fn replicas(engine: &Engine) -> Vec<Value> {
    let out = ok(engine.client(&["-o", "json", "replica", "list"]));
    match serde_json::from_str(&out).expect("json") {
        Value::Array(list) => list,
        other => panic!("not a list: {other}"),
    }
}

/// The replica named `name` in `replica list -o json`.
fn replica(engine: &Engine, name: &str) -> Value {
    replicas(engine)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("replica {name} not listed"))
}

fn nvmf_uri(addr: &str, uuid: &str) -> String {
    format!("nvmf://{addr}/nqn.2019-05.io.openebs:{uuid}?uuid={uuid}")
}

fn bdev_uri(uuid: &str) -> String {
    format!("bdev:///{uuid}?uuid={uuid}")
}

/// Whether something accepts TCP connections at `addr`.
fn accepts(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("IP:PORT");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Asserts a client run failed with exit code 1 and one `error:` line
/// containing `expected`.
#[track_caller]
fn assert_error(out: std::process::Output, expected: &str) {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(stdout(&out), "", "nothing on stdout on error");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
}

#[test]
fn share_list_and_unshare() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = disk_image(tmp.path(), "disk.img", 64);
    // Default NVMe/TCP endpoint: the gRPC IP, port 8420.
    let engine = Engine::start("127.0.1.50", 0, "node-share", &[]);
    let nvmf = "127.0.1.50:8420";
    assert!(engine.logs().contains("nvmf target listening"));

    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "r1", "--size", "8"]));
    ok(engine.client(&["replica", "create", "tpool", "r2", "--size", "4"]));
    let uuid = replica(&engine, "r1")["uuid"].as_str().unwrap().to_string();
    let uuid2 = replica(&engine, "r2")["uuid"].as_str().unwrap().to_string();
    assert_eq!(replica(&engine, "r1")["uri"], bdev_uri(&uuid));
    let default_table = ok(engine.client(&["replica", "list"]));

    // Share: the URI alone on one line.
    let out = ok(engine.client(&["replica", "share", "tpool", "r1", "--allowed-host", HOST_A]));
    assert_eq!(out, format!("{}\n", nvmf_uri(nvmf, &uuid)));
    let r1 = replica(&engine, "r1");
    assert_eq!(r1["share"], "nvmf");
    assert_eq!(r1["uri"], nvmf_uri(nvmf, &uuid));
    assert_eq!(r1["allowed_hosts"], serde_json::json!([HOST_A]));
    assert_eq!(replica(&engine, "r2")["share"], "none");

    // The default table is unchanged; the wide one adds SHARE and URI.
    assert_eq!(ok(engine.client(&["replica", "list"])), default_table);
    let wide = ok(engine.client(&["-o", "wide", "replica", "list"]));
    let lines: Vec<&str> = wide.lines().collect();
    assert_eq!(lines.len(), 3, "{wide}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["POOL", "NAME", "THIN", "SIZE", "SHARE", "URI"]);
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row1[0..2], ["tpool", "r1"]);
    assert_eq!(row1[row1.len() - 2..], ["nvmf", &nvmf_uri(nvmf, &uuid)]);
    let row2: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row2[row2.len() - 2..], ["none", &bdev_uri(&uuid2)]);
    assert_eq!(lines[0].find("URI"), lines[1].find("nvmf://"));

    // The URI's port accepts connections.
    assert!(accepts(nvmf), "nothing listens on {nvmf}");

    // Sharing again replaces the allowed hosts; `-o json` prints the
    // object; by uuid works too.
    let out = ok(engine.client(&[
        "-o",
        "json",
        "replica",
        "share",
        "--uuid",
        &uuid,
        "--allowed-host",
        HOST_A,
        "--allowed-host",
        HOST_B,
    ]));
    let shared: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shared["uri"], nvmf_uri(nvmf, &uuid));
    assert_eq!(shared["allowed_hosts"], serde_json::json!([HOST_A, HOST_B]));
    assert_eq!(shared["name"], "r1");

    // Unshare: nothing printed, the replica is local again.
    assert_eq!(
        ok(engine.client(&["replica", "unshare", "tpool", "r1"])),
        ""
    );
    let r1 = replica(&engine, "r1");
    assert_eq!(r1["share"], "none");
    assert_eq!(r1["uri"], bdev_uri(&uuid));
    let wide = ok(engine.client(&["-o", "wide", "replica", "list"]));
    assert!(!wide.contains("nvmf"), "{wide}");
    // Unsharing again is fine.
    ok(engine.client(&["replica", "unshare", "tpool", "r1"]));

    // Shared with nobody allowed: still shared (strict allow-list).
    let out = ok(engine.client(&["replica", "share", "tpool", "r2"]));
    assert_eq!(out, format!("{}\n", nvmf_uri(nvmf, &uuid2)));
    assert_eq!(
        replica(&engine, "r2")["allowed_hosts"],
        serde_json::json!([])
    );
}

#[test]
fn share_survives_engine_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = disk_image(tmp.path(), "disk.img", 64);
    let port = free_port("127.0.1.51");
    let nvmf = format!("127.0.1.51:{port}");
    let mut engine = Engine::start("127.0.1.51", 0, "node-restart", &["--nvmf-endpoint", &nvmf]);
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "shared", "--size", "8"]));
    ok(engine.client(&["replica", "create", "tpool", "local", "--size", "4"]));
    let out = ok(engine.client(&[
        "replica",
        "share",
        "tpool",
        "shared",
        "--allowed-host",
        HOST_A,
    ]));
    let uuid = replica(&engine, "shared")["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(out, format!("{}\n", nvmf_uri(&nvmf, &uuid)));

    let status = engine.terminate();
    assert_eq!(status, Some(0));

    engine.restart();
    assert!(accepts(&nvmf));
    // Nothing is known until the pool is created (imported) again...
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "No replicas have been created\n"
    );
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    // ... and then the share is back, with its allowed hosts.
    let shared = replica(&engine, "shared");
    assert_eq!(shared["share"], "nvmf");
    assert_eq!(shared["uri"], nvmf_uri(&nvmf, &uuid));
    assert_eq!(shared["allowed_hosts"], serde_json::json!([HOST_A]));
    assert_eq!(replica(&engine, "local")["share"], "none");
    let wide = ok(engine.client(&["-o", "wide", "replica", "list"]));
    assert!(wide.contains(&nvmf_uri(&nvmf, &uuid)), "{wide}");
    assert!(engine.logs().contains("replica shared again over nvmf"));

    // Creating the pool again (idempotent) keeps it shared once.
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    assert_eq!(replica(&engine, "shared")["uri"], nvmf_uri(&nvmf, &uuid));

    // Export and import: unshared while exported, shared again after.
    ok(engine.client(&["pool", "export", "tpool"]));
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "No replicas have been created\n"
    );
    ok(engine.client(&["pool", "import", "tpool", &uri]));
    assert_eq!(replica(&engine, "shared")["uri"], nvmf_uri(&nvmf, &uuid));
}

#[test]
fn bad_share_input_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = disk_image(tmp.path(), "disk.img", 64);
    let engine = Engine::start("127.0.1.52", 0, "node-bad-share", &[]);
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "r1", "--size", "4"]));
    ok(engine.client(&["replica", "share", "tpool", "r1", "--allowed-host", HOST_A]));
    let before = ok(engine.client(&["-o", "json", "replica", "list"]));

    assert_error(
        engine.client(&["replica", "share", "tpool", "nope"]),
        "replica 'tpool/nope' not found (NotFound)",
    );
    assert_error(
        engine.client(&["replica", "share", "nopool", "r1"]),
        "pool 'nopool' not found (NotFound)",
    );
    assert_error(
        engine.client(&[
            "replica",
            "share",
            "--uuid",
            "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f",
        ]),
        "not found (NotFound)",
    );
    assert_error(
        engine.client(&["replica", "share", "--uuid", "not-a-uuid"]),
        "replica uuid \"not-a-uuid\" is not a valid uuid",
    );
    for bad in [
        "node-b",
        "nqn.node-b",
        "nqn.2019-13.io.openebs:b",
        "nqn.2019-05.io.openebs:a b",
    ] {
        assert_error(
            engine.client(&[
                "replica",
                "share",
                "tpool",
                "r1",
                "--allowed-host",
                HOST_B,
                "--allowed-host",
                bad,
            ]),
            &format!("allowed host '{bad}' is not a valid NQN"),
        );
    }
    assert_error(
        engine.client(&["replica", "unshare", "tpool", "nope"]),
        "replica 'tpool/nope' not found (NotFound)",
    );
    assert_eq!(
        ok(engine.client(&["-o", "json", "replica", "list"])),
        before
    );
}

#[test]
fn destroying_shared_replicas_and_pools_unshares_them() {
    let tmp = tempfile::tempdir().unwrap();
    let uri = disk_image(tmp.path(), "disk.img", 64);
    let port = free_port("127.0.1.53");
    let nvmf = format!("127.0.1.53:{port}");
    let engine = Engine::start("127.0.1.53", 0, "node-destroy", &["--nvmf-endpoint", &nvmf]);
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "r1", "--size", "4"]));
    let uuid = replica(&engine, "r1")["uuid"].as_str().unwrap().to_string();
    ok(engine.client(&["replica", "share", "tpool", "r1", "--allowed-host", HOST_A]));
    ok(engine.client(&["replica", "destroy", "tpool", "r1"]));
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "No replicas have been created\n"
    );
    let logs = engine.logs();
    let removed = logs.find("nvmf subsystem removed");
    let destroyed = logs.find("replica destroyed");
    assert!(removed.is_some() && removed < destroyed, "{logs}");

    // The same uuid can be created and shared again.
    ok(engine.client(&[
        "replica", "create", "tpool", "r1", "--size", "4", "--uuid", &uuid,
    ]));
    assert_eq!(replica(&engine, "r1")["uri"], bdev_uri(&uuid));
    let out = ok(engine.client(&["replica", "share", "tpool", "r1"]));
    assert_eq!(out, format!("{}\n", nvmf_uri(&nvmf, &uuid)));

    // Destroying the pool unshares its replicas; a new pool on the disk
    // has none.
    ok(engine.client(&["pool", "destroy", "tpool"]));
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "No replicas have been created\n"
    );
    ok(engine.client(&[
        "replica", "create", "tpool", "r1", "--size", "4", "--uuid", &uuid,
    ]));
    let out = ok(engine.client(&["replica", "share", "tpool", "r1"]));
    assert_eq!(out, format!("{}\n", nvmf_uri(&nvmf, &uuid)));
}

#[test]
fn busy_nvmf_endpoint_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.1.54:0").unwrap();
    let nvmf = taken.local_addr().unwrap().to_string();
    let grpc = format!("127.0.1.54:{}", free_port("127.0.1.54"));
    let out = Command::new(common::engine_bin())
        .args(["--grpc-endpoint", &grpc, "--nvmf-endpoint", &nvmf])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on NVMe/TCP endpoint {nvmf}")),
        "{err}"
    );
    // Bad flag values are usage errors.
    let out = Command::new(common::engine_bin())
        .args(["--grpc-endpoint", &grpc, "--nvmf-cntlid-range", "10-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--nvmf-cntlid-range"));
}

#[test]
fn advertised_address() {
    let tmp = tempfile::tempdir().unwrap();
    // Listening on one address, advertising another.
    let port = free_port("127.0.1.55");
    let engine = Engine::start(
        "127.0.1.55",
        0,
        "node-advertise",
        &[
            "--nvmf-endpoint",
            &format!("127.0.1.55:{port}"),
            "--nvmf-advertise",
            "10.20.30.40",
            "--nvmf-cntlid-range",
            "100-199",
        ],
    );
    ok(engine.client(&[
        "pool",
        "create",
        "tpool",
        &disk_image(tmp.path(), "a.img", 64),
    ]));
    ok(engine.client(&["replica", "create", "tpool", "r1", "--size", "4"]));
    let uuid = replica(&engine, "r1")["uuid"].as_str().unwrap().to_string();
    let out = ok(engine.client(&["replica", "share", "tpool", "r1"]));
    assert_eq!(
        out,
        format!("{}\n", nvmf_uri(&format!("10.20.30.40:{port}"), &uuid))
    );

    // Listening on every address: loopback is advertised.
    let port = free_port("0.0.0.0");
    let engine = Engine::start(
        "127.0.1.56",
        0,
        "node-any",
        &["--nvmf-endpoint", &format!("0.0.0.0:{port}")],
    );
    ok(engine.client(&[
        "pool",
        "create",
        "tpool",
        &disk_image(tmp.path(), "b.img", 64),
    ]));
    ok(engine.client(&["replica", "create", "tpool", "r1", "--size", "4"]));
    let uuid = replica(&engine, "r1")["uuid"].as_str().unwrap().to_string();
    let out = ok(engine.client(&["replica", "share", "tpool", "r1"]));
    assert_eq!(
        out,
        format!("{}\n", nvmf_uri(&format!("127.0.0.1:{port}"), &uuid))
    );
    assert!(accepts(&format!("127.0.1.56:{port}")));
}
