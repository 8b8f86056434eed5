//! End-to-end: the real `io-engine` daemon driven by the real
//! `io-engine-client`, following upstream mayastor's README session, plus
//! bad input, JSON output, restarts and start-up errors.
//!
//! Each test uses its own 127.0.1.x address and a free port.

#![allow(clippy::unwrap_used)]

mod common;

use std::{fs, path::Path, process::Command};

use common::{client, free_port, ok, stderr, stdout, Engine};

const MIB: u64 = 1 << 20;

/// A sparse disk image of `size_mib` MiB in `dir`.
fn disk_image(dir: &Path, name: &str, size_mib: u64) -> String {
    let path = dir.join(name);
    let file = fs::File::create(&path).expect("create disk image");
    file.set_len(size_mib * MIB).expect("size disk image");
    path.to_str().expect("utf-8 temp path").to_string()
}

/// `pool list` and `replica list` tables: what must not change after a
/// rejected request.
fn snapshot(engine: &Engine) -> (String, String, String) {
    (
        ok(engine.client(&["pool", "list"])),
        ok(engine.client(&["replica", "list"])),
        ok(engine.client(&["-o", "json", "replica", "list"])),
    )
}

/// Asserts a run failed with exit code 1 and one `error: ...` line that
/// contains `expected`, printing nothing on stdout.
#[track_caller]
fn assert_error(out: std::process::Output, expected: &str) {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(stdout(&out), "", "nothing on stdout on error");
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn upstream_readme_session() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = disk_image(tmp.path(), "disk.img", 100);
    let uri = format!("aio://{disk}");
    let engine = Engine::start("127.0.1.10", 0, "node-readme", &[]);

    assert_eq!(ok(engine.client(&["pool", "create", "tpool", &uri])), "");
    assert_eq!(
        ok(engine.client(&["pool", "list"])),
        format!(
            "NAME                 STATE        CAPACITY         USED   DISKS\n\
             tpool                online       96.0 MiB          0 B   {uri}\n"
        )
    );

    assert_eq!(
        ok(engine.client(&["replica", "create", "tpool", "replica1", "--size=10"])),
        ""
    );
    assert_eq!(
        ok(engine.client(&[
            "replica",
            "create",
            "tpool",
            "replica2",
            "--size=1000",
            "--thin"
        ])),
        ""
    );
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "POOL                 NAME                 THIN           SIZE\n\
         tpool                replica1             false      10.0 MiB\n\
         tpool                replica2             true        1.0 GiB\n"
    );

    assert_eq!(
        ok(engine.client(&["replica", "destroy", "tpool", "replica1"])),
        ""
    );
    assert_eq!(
        ok(engine.client(&["replica", "destroy", "tpool", "replica2"])),
        ""
    );
    assert_eq!(
        ok(engine.client(&["replica", "list"])),
        "No replicas have been created\n"
    );

    assert_eq!(ok(engine.client(&["pool", "destroy", "tpool"])), "");
    assert_eq!(
        ok(engine.client(&["pool", "list"])),
        "No pools have been created\n"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = disk_image(tmp.path(), "disk.img", 100);
    let uri = format!("aio://{disk}");
    let missing = format!("aio://{}", tmp.path().join("missing.img").display());
    let engine = Engine::start("127.0.1.11", 0, "node-bad-input", &[]);
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "replica1", "--size=10"]));
    let before = snapshot(&engine);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["replica", "create", "tpool", "replica1", "--size=10"],
            "replica 'replica1' already exists in pool 'tpool' (AlreadyExists)",
        ),
        (
            vec!["replica", "create", "tpool", "zero", "--size=0"],
            "replica size must be greater than 0 (InvalidArgument)",
        ),
        (
            vec!["replica", "create", "tpool", "huge", "--size=200"],
            "(ResourceExhausted)",
        ),
        (
            vec!["replica", "create", "nopool", "r", "--size=1"],
            "pool 'nopool' not found (NotFound)",
        ),
        (
            vec![
                "replica",
                "create",
                "tpool",
                "r",
                "--size=1",
                "--uuid",
                "not-a-uuid",
            ],
            "(InvalidArgument)",
        ),
        (vec!["replica", "destroy", "tpool", "nothere"], "(NotFound)"),
        (
            vec!["replica", "resize", "tpool", "replica1", "--size=5"],
            "(FailedPrecondition)",
        ),
        (
            vec!["replica", "resize", "tpool", "nothere", "--size=5"],
            "replica 'tpool/nothere' not found (NotFound)",
        ),
        (
            vec!["pool", "destroy", "nopool"],
            "pool 'nopool' not found (NotFound)",
        ),
        (
            vec!["pool", "create", "p2", "aio://relative"],
            "(InvalidArgument)",
        ),
        (
            vec![
                "pool",
                "create",
                "p2",
                "malloc:///m0?size_mb=1&num_blocks=2",
            ],
            "(InvalidArgument)",
        ),
        (
            vec!["pool", "create", "p2", "foo:///x"],
            "(InvalidArgument)",
        ),
        (
            vec!["pool", "create", "tpool2", &uri],
            "(FailedPrecondition)",
        ),
        (vec!["pool", "create", "p3", &missing], "(NotFound)"),
        (
            vec!["pool", "create", "", &uri],
            "pool name must not be empty (InvalidArgument)",
        ),
        (
            vec!["pool", "create", "p4", &uri, "--uuid", "nope"],
            "pool uuid \"nope\" is not a valid uuid",
        ),
    ];
    for (args, expected) in cases {
        let out = engine.client(&args);
        assert_error(out, expected);
        assert_eq!(snapshot(&engine), before, "state changed after {args:?}");
    }

    // Usage errors are clap's: exit code 2.
    let out = engine.client(&["replica", "create", "tpool", "nosize"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(snapshot(&engine), before);
}

#[test]
fn json_output() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = disk_image(tmp.path(), "disk.img", 100);
    let uri = format!("aio://{disk}");
    let engine = Engine::start("127.0.1.12", 0, "node-json", &[]);

    let pool: serde_json::Value = serde_json::from_str(&ok(
        engine.client(&["-o", "json", "pool", "create", "tpool", &uri])
    ))
    .unwrap();
    assert_eq!(pool["name"], "tpool");
    assert_eq!(pool["state"], "online");
    assert_eq!(pool["capacity_bytes"].as_u64(), Some(96 * MIB));
    let pool_uuid = pool["uuid"].as_str().unwrap().to_string();
    uuid::Uuid::parse_str(&pool_uuid).unwrap();

    let fixed_uuid = "11111111-2222-4333-8444-555555555555";
    let created: serde_json::Value = serde_json::from_str(&ok(engine.client(&[
        "-o",
        "json",
        "replica",
        "create",
        "tpool",
        "replica1",
        "--size=10",
        "--uuid",
        fixed_uuid,
    ])))
    .unwrap();
    assert_eq!(created["uuid"], fixed_uuid);
    ok(engine.client(&[
        "replica",
        "create",
        "tpool",
        "replica2",
        "--size=1000",
        "--thin",
    ]));

    let list: serde_json::Value =
        serde_json::from_str(&ok(engine.client(&["-o", "json", "replica", "list"]))).unwrap();
    let replicas = list.as_array().expect("a JSON array");
    assert_eq!(replicas.len(), 2);
    for (r, (name, size_mib, thin)) in replicas
        .iter()
        .zip([("replica1", 10, false), ("replica2", 1000, true)])
    {
        assert_eq!(r["name"], name);
        assert_eq!(r["pool_name"], "tpool");
        assert_eq!(r["pool_uuid"], pool_uuid.as_str());
        assert_eq!(r["size_bytes"].as_u64(), Some(size_mib * MIB));
        assert_eq!(r["thin"], thin);
        assert_eq!(r["share"], "none");
        let uuid = uuid::Uuid::parse_str(r["uuid"].as_str().expect("uuid is a string")).unwrap();
        let uri = r["uri"].as_str().expect("uri is a string");
        assert!(uri.starts_with(&format!("bdev:///{uuid}")), "{uri}");
        assert!(r["allowed_hosts"].as_array().is_some());
        assert!(r["allocated_bytes"].as_u64().is_some());
    }
    assert_eq!(replicas[0]["uuid"], fixed_uuid);

    let pools: serde_json::Value =
        serde_json::from_str(&ok(engine.client(&["-o", "json", "pool", "list"]))).unwrap();
    assert_eq!(pools[0]["replica_count"].as_u64(), Some(2));
    assert_eq!(pools[0]["disks"][0], uri.as_str());

    // Resize by name, then check.
    let resized: serde_json::Value = serde_json::from_str(&ok(engine.client(&[
        "-o",
        "json",
        "replica",
        "resize",
        "tpool",
        "replica2",
        "--size=1200",
    ])))
    .unwrap();
    assert_eq!(resized["size_bytes"].as_u64(), Some(1200 * MIB));

    let check: serde_json::Value =
        serde_json::from_str(&ok(engine.client(&["-o", "json", "pool", "check", "tpool"])))
            .unwrap();
    assert_eq!(check["pool"], "tpool");
    assert_eq!(check["clean"], true);
    assert_eq!(check["replicas"].as_u64(), Some(2));
    let text = ok(engine.client(&["pool", "check", "tpool"]));
    assert!(text.starts_with("pool tpool is clean: "), "{text}");
    assert!(text.contains(" 2 replicas, generation "), "{text}");

    ok(engine.client(&["replica", "destroy", "--uuid", fixed_uuid]));
    let list: serde_json::Value =
        serde_json::from_str(&ok(engine.client(&["-o", "json", "replica", "list"]))).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[test]
fn restart_reimports_pool_with_its_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = disk_image(tmp.path(), "disk.img", 100);
    let uri = format!("aio://{disk}");
    let mut engine = Engine::start("127.0.1.13", 0, "node-restart", &[]);
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    ok(engine.client(&["replica", "create", "tpool", "replica1", "--size=10"]));
    ok(engine.client(&[
        "replica",
        "create",
        "tpool",
        "replica2",
        "--size=1000",
        "--thin",
    ]));
    let table = ok(engine.client(&["replica", "list"]));
    let json = ok(engine.client(&["-o", "json", "replica", "list"]));

    // Graceful: SIGTERM exports the pool and exits 0.
    let status = engine.terminate();
    assert_eq!(status, Some(0), "log:\n{}", engine.logs());
    engine.restart();
    assert_eq!(
        ok(engine.client(&["pool", "list"])),
        "No pools have been created\n"
    );
    ok(engine.client(&["pool", "create", "tpool", &uri]));
    assert_eq!(ok(engine.client(&["replica", "list"])), table);
    assert_eq!(ok(engine.client(&["-o", "json", "replica", "list"])), json);

    // Crash: SIGKILL, then import (not create) brings everything back.
    engine.kill9();
    engine.restart();
    ok(engine.client(&["pool", "import", "tpool", &uri]));
    assert_eq!(ok(engine.client(&["replica", "list"])), table);
    assert!(engine.logs().contains("io-engine listening"));
}

#[test]
fn host_info() {
    let engine = Engine::start("127.0.1.14", 0, "node-host", &[]);
    let text = ok(engine.client(&["host", "info"]));
    assert!(
        text.starts_with("VERSION    NODE                 GRPC ENDPOINT\n"),
        "{text}"
    );
    assert!(text.contains("node-host"), "{text}");
    assert!(text.contains(&engine.endpoint()), "{text}");

    let info: serde_json::Value =
        serde_json::from_str(&ok(engine.client(&["-o", "json", "host", "info"]))).unwrap();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["node_name"], "node-host");
    assert_eq!(info["grpc_endpoint"], engine.endpoint());
    assert!(info["block_devices"].as_array().is_some());
}

#[test]
fn unreachable_engine_is_one_clear_line() {
    let port = free_port("127.0.1.15");
    let endpoint = format!("127.0.1.15:{port}");
    let out = client(&endpoint, &["pool", "list"]);
    assert_error(
        out,
        &format!("error: cannot connect to io-engine at {endpoint}: "),
    );
}

#[test]
fn busy_endpoint_fails_start_up() {
    let engine = Engine::start("127.0.1.16", 0, "node-first", &[]);
    let out = Command::new(common::engine_bin())
        .args([
            "--grpc-endpoint",
            &engine.endpoint(),
            "--node-name",
            "node-second",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot listen on gRPC endpoint {}",
            engine.endpoint()
        )),
        "{err}"
    );
    // The first engine is unaffected.
    assert_eq!(
        ok(engine.client(&["pool", "list"])),
        "No pools have been created\n"
    );
}
