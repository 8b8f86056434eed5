//! Crash drill: `pool-stress` (a real process owning the pool) is SIGKILLed
//! at random moments during replica create/destroy/resize and thin writes,
//! 200 times on the same pool. After every kill the pool must import, pass
//! `check`, hold every replica whose create was acknowledged and none whose
//! destroy was, and return every acknowledged write (and zeroes where
//! nothing was written).

use std::{
    collections::HashMap,
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use blockdev::{BlockDevice, OpenOptions};
use io_engine::{
    pool::{CreatePoolArgs, PoolRegistry, ReplicaSelector},
    stress::fill_pattern,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

#[derive(Debug, Clone)]
struct ModelReplica {
    size_bytes: u64,
    /// block offset -> seed of the write that must be there.
    blocks: HashMap<u64, u64>,
}

#[derive(Debug)]
enum Op {
    Create {
        uuid: Uuid,
        size: u64,
    },
    Destroy {
        uuid: Uuid,
    },
    Resize {
        uuid: Uuid,
        size: u64,
    },
    Write {
        uuid: Uuid,
        offset: u64,
        len: u64,
        seed: u64,
    },
}

fn parse_op(words: &[&str]) -> Op {
    let u = |s: &str| Uuid::parse_str(s).expect("uuid in log");
    let n = |s: &str| s.parse::<u64>().expect("number in log");
    match words {
        ["create", uuid, _name, size, _thin] => Op::Create {
            uuid: u(uuid),
            size: n(size),
        },
        ["destroy", uuid] => Op::Destroy { uuid: u(uuid) },
        ["resize", uuid, size] => Op::Resize {
            uuid: u(uuid),
            size: n(size),
        },
        ["write", uuid, offset, len, seed] => Op::Write {
            uuid: u(uuid),
            offset: n(offset),
            len: n(len),
            seed: n(seed),
        },
        other => panic!("unexpected log line {other:?}"),
    }
}

const BS: u64 = 512;

fn apply(model: &mut HashMap<Uuid, ModelReplica>, op: &Op) {
    match op {
        Op::Create { uuid, size } => {
            model.insert(
                *uuid,
                ModelReplica {
                    size_bytes: *size,
                    blocks: HashMap::new(),
                },
            );
        }
        Op::Destroy { uuid } => {
            model.remove(uuid);
        }
        Op::Resize { uuid, size } => {
            if let Some(r) = model.get_mut(uuid) {
                r.size_bytes = (*size).next_multiple_of(BS);
            }
        }
        Op::Write {
            uuid,
            offset,
            len,
            seed,
        } => {
            if let Some(r) = model.get_mut(uuid) {
                for b in (0..*len).step_by(BS as usize) {
                    r.blocks.insert(offset + b, *seed);
                }
            }
        }
    }
}

fn expected_block(uuid: &Uuid, off: u64, seed: Option<u64>) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    if let Some(seed) = seed {
        fill_pattern(&mut b, BS as usize, uuid, off, seed);
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_metadata_ops_and_thin_writes_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(48 << 20))
        .expect("disk file");
    let uri = format!("aio://{}", disk.display());
    let mut model: HashMap<Uuid, ModelReplica> = HashMap::new();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let iterations = 200;
    let mut acked_total = 0usize;
    let mut killed_mid_op = 0usize;
    for iter in 0..iterations {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pool-stress"))
            .args([
                "--disk",
                &uri,
                "--pool",
                "crash",
                "--cluster-size",
                "1048576",
            ])
            .args(["--seed", &(iter as u64 + 1).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pool-stress");
        let run_ms = rng.random_range(5..120);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "pool-stress ended by itself: {status}");
        let mut log = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut log)
            .expect("read log");

        // Replay the log: acknowledged operations are certain, the last
        // one may or may not have happened.
        let mut pending: Option<Op> = None;
        for line in log.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"begin") => {
                    assert!(pending.is_none(), "two operations in flight: {line}");
                    pending = Some(parse_op(&words[1..]));
                }
                Some(&"ack") => {
                    let op = pending.take().expect("ack without begin");
                    apply(&mut model, &op);
                    acked_total += 1;
                }
                Some(&"fail") => {
                    // A failed operation is treated like an interrupted one.
                    let op = pending.take().expect("fail without begin");
                    pending = Some(op);
                    break;
                }
                _ => panic!("bad log line {line:?}"),
            }
        }
        if pending.is_some() {
            killed_mid_op += 1;
        }

        let reg = PoolRegistry::new(OpenOptions::default());
        let args = CreatePoolArgs {
            name: "crash".into(),
            uuid: None,
            disks: vec![uri.clone()],
            cluster_size_bytes: None,
        };
        reg.import_pool(args)
            .await
            .unwrap_or_else(|e| panic!("iteration {iter}: import failed: {e}\nlog:\n{log}"));
        let report = reg.check_pool("crash").await.expect("check");
        assert!(
            report.problems.is_empty(),
            "iteration {iter}: check: {:?}",
            report.problems
        );

        // Resolve the uncertain operation from what the disk says.
        let present: HashMap<Uuid, u64> = reg
            .list_replicas()
            .into_iter()
            .map(|r| (r.uuid, r.size_bytes))
            .collect();
        let mut uncertain_write: Option<(Uuid, u64, u64, u64)> = None;
        match pending {
            Some(op @ Op::Create { .. }) => {
                if let Op::Create { uuid, .. } = &op {
                    if present.contains_key(uuid) {
                        apply(&mut model, &op);
                    }
                }
            }
            Some(op @ Op::Destroy { .. }) => {
                if let Op::Destroy { uuid } = &op {
                    if !present.contains_key(uuid) {
                        apply(&mut model, &op);
                    }
                }
            }
            Some(Op::Resize { uuid, .. }) => {
                if let (Some(r), Some(size)) = (model.get_mut(&uuid), present.get(&uuid)) {
                    assert!(*size >= r.size_bytes, "replica shrank");
                    r.size_bytes = *size;
                }
            }
            Some(Op::Write {
                uuid,
                offset,
                len,
                seed,
            }) => uncertain_write = Some((uuid, offset, len, seed)),
            None => {}
        }
        let mut want: Vec<_> = model.iter().map(|(u, r)| (*u, r.size_bytes)).collect();
        let mut got: Vec<_> = present.iter().map(|(u, s)| (*u, *s)).collect();
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "iteration {iter}: replicas differ from the acknowledged ones\nlog:\n{log}"
        );

        // Every block of every replica: acknowledged data or zeroes.
        for (uuid, r) in model.iter_mut() {
            let dev = reg.open_replica(uuid).expect("open replica");
            let mut buf = blockdev::DmaBuf::new(r.size_bytes as usize);
            dev.read_at(0, &mut buf).await.expect("read replica");
            for off in (0..r.size_bytes).step_by(BS as usize) {
                let actual = &buf[off as usize..(off + BS) as usize];
                let old = expected_block(uuid, off, r.blocks.get(&off).copied());
                if actual == old.as_slice() {
                    continue;
                }
                match uncertain_write {
                    Some((u, o, l, seed)) if u == *uuid && off >= o && off < o + l => {
                        let new = expected_block(uuid, off, Some(seed));
                        assert_eq!(actual, new.as_slice(), "iteration {iter}: block {off} of {uuid} is neither old nor new data");
                        r.blocks.insert(off, seed);
                    }
                    _ => panic!("iteration {iter}: block {off} of {uuid} lost acknowledged data (expected seed {:?})\nlog:\n{log}", r.blocks.get(&off)),
                }
            }
        }
        reg.shutdown().await;
    }
    eprintln!("{iterations} kills, {acked_total} acknowledged operations, {killed_mid_op} kills during an operation");
    assert!(acked_total > iterations, "the workload barely ran");
    assert!(
        killed_mid_op > iterations / 4,
        "too few kills landed during an operation"
    );
    let _ = ReplicaSelector::Uuid(Uuid::nil());
}
