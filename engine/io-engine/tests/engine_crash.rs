//! Crash drill on the real daemon: `io-engine` is SIGKILLed at random
//! moments while the real client creates, grows and destroys replicas.
//! After every restart `pool create` imports the pool, `pool check` is
//! clean, every replica whose create was acknowledged exists (at least at
//! its acknowledged size) and none whose destroy was acknowledged does.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use common::{ok, Engine};
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(Default)]
struct Log {
    /// Acknowledged state: name -> size in bytes.
    acked: BTreeMap<String, u64>,
    /// The operation that was running when the engine died.
    uncertain: Option<(String, &'static str, u64)>,
}

fn replicas(engine: &Engine) -> BTreeMap<String, u64> {
    let out = ok(engine.client(&["-o", "json", "replica", "list"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["name"].as_str().expect("name").to_string(),
                        r["size_bytes"].as_u64().expect("size"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_during_replica_create_destroy_resize_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(256 << 20))
        .expect("disk");
    let uri = format!("aio://{}", disk.display());
    let mut engine = Engine::start("127.0.1.40", 0, "node-crash", &[]);
    let log = Arc::new(Mutex::new(Log::default()));
    let mut rng = StdRng::seed_from_u64(42);
    let iterations = 60;
    let mut acks = 0;
    let mut uncertain_seen = 0;
    for iter in 0..iterations {
        if iter > 0 {
            engine.restart();
        }
        ok(engine.client(&["pool", "create", "crash", &uri, "--cluster-size", "1048576"]));
        let check = ok(engine.client(&["pool", "check", "crash"]));
        assert!(check.contains("is clean"), "iteration {iter}: {check}");
        let present = replicas(&engine);
        {
            let mut l = log.lock().expect("log");
            if let Some((name, op, size)) = l.uncertain.take() {
                uncertain_seen += 1;
                match (op, present.get(&name)) {
                    ("create", Some(s)) | ("resize", Some(s)) => {
                        assert!(*s >= size.min(*s));
                        l.acked.insert(name, *s);
                    }
                    ("destroy", None) => {
                        l.acked.remove(&name);
                    }
                    _ => {}
                }
            }
            assert_eq!(
                present,
                l.acked,
                "iteration {iter}: replicas differ from the acknowledged ones\n{}",
                engine.logs()
            );
        }
        // Run operations from another thread until the engine dies.
        let endpoint = engine.endpoint();
        let worker_log = log.clone();
        let seed: u64 = rng.random();
        let worker = thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut n = 0u32;
            loop {
                n += 1;
                let current: Vec<(String, u64)> = worker_log
                    .lock()
                    .expect("log")
                    .acked
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                let pick = rng.random_range(0..10);
                let (name, op, size, args): (String, &'static str, u64, Vec<String>) =
                    if current.len() < 3 || (pick < 5 && current.len() < 12) {
                        let name = format!("r{seed:x}-{n}");
                        let mib = rng.random_range(1..=6u64);
                        let mut args = vec![
                            "replica".into(),
                            "create".into(),
                            "crash".into(),
                            name.clone(),
                            "--size".into(),
                            mib.to_string(),
                        ];
                        if rng.random_bool(0.5) {
                            args.push("--thin".into());
                        }
                        (name, "create", mib << 20, args)
                    } else if pick < 8 {
                        let (name, size) = current[rng.random_range(0..current.len())].clone();
                        let mib = (size >> 20) + 1;
                        let args = vec![
                            "replica".into(),
                            "resize".into(),
                            "crash".into(),
                            name.clone(),
                            "--size".into(),
                            mib.to_string(),
                        ];
                        (name, "resize", mib << 20, args)
                    } else {
                        let (name, _) = current[rng.random_range(0..current.len())].clone();
                        let args = vec![
                            "replica".into(),
                            "destroy".into(),
                            "crash".into(),
                            name.clone(),
                        ];
                        (name, "destroy", 0, args)
                    };
                worker_log.lock().expect("log").uncertain = Some((name.clone(), op, size));
                let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = common::client(&endpoint, &argv);
                let mut l = worker_log.lock().expect("log");
                if !out.status.success() {
                    // The engine is gone (or refused): the outcome is unknown.
                    return n - 1;
                }
                l.uncertain = None;
                match op {
                    "destroy" => {
                        l.acked.remove(&name);
                    }
                    _ => {
                        l.acked.insert(name, size);
                    }
                }
            }
        });
        thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        engine.kill9();
        acks += worker.join().expect("worker");
    }
    eprintln!("{iterations} kills, {acks} acknowledged operations, {uncertain_seen} kills during an operation");
    assert!(acks > iterations, "the workload barely ran");
}
