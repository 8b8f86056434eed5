//! Crash drill on the real daemon's data path: thin writes over NVMe/TCP
//! (our initiator) to a replica of the real `io-engine`, which is SIGKILLed
//! at random moments 200 times. After every restart the pool imports (and
//! the share comes back), `pool check` is clean, and every acknowledged
//! write reads back; the one write in flight at the kill is either wholly
//! old or new per block. Clusters are small (64 KiB) so kills keep landing
//! during thin allocations.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use blockdev::{BlockDevice, DmaBuf};
use common::{free_port, ok, Engine};
use io_engine::stress::fill_pattern;
use nvmf_host::{ConnectOptions, Controller};
use rand::{rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

const HOST: &str = "nqn.2019-05.io.openebs:node-name:crash-writer";
const BS: u64 = 512;

#[derive(Default)]
struct Model {
    /// block offset -> seed of the acknowledged write.
    blocks: HashMap<u64, u64>,
    /// The write in flight: (offset, len, seed).
    uncertain: Option<(u64, u64, u64)>,
    acked: u64,
}

fn expected(id: &Uuid, off: u64, seed: Option<u64>) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    if let Some(s) = seed {
        fill_pattern(&mut b, BS as usize, id, off, s);
    }
    b
}

async fn connect(uri: &str) -> (Controller, Arc<nvmf_host::Namespace>) {
    let mut o = ConnectOptions::from_uri(uri).expect("uri");
    o.hostnqn = HOST.into();
    o.io_queues = 1;
    o.reconnect_timeout_ms = 300;
    o.io_timeout_ms = 3000;
    let c = Controller::connect(o).await.expect("connect");
    let ns = Arc::new(c.namespace(1).await.expect("namespace"));
    (c, ns)
}

/// Checks `ranges` (offset, len) against the model, resolving the uncertain
/// write from what is on the disk.
async fn verify(
    ns: &nvmf_host::Namespace,
    id: &Uuid,
    model: &mut Model,
    ranges: &[(u64, u64)],
    iter: u32,
) {
    let uncertain = model.uncertain.take();
    for &(off, len) in ranges {
        let mut buf = DmaBuf::new(len as usize);
        ns.read_at(off, &mut buf).await.expect("read");
        for b in (0..len).step_by(BS as usize) {
            let at = off + b;
            let actual = &buf[b as usize..(b + BS) as usize];
            if actual == expected(id, at, model.blocks.get(&at).copied()).as_slice() {
                continue;
            }
            match uncertain {
                Some((o, l, s)) if at >= o && at < o + l => {
                    assert_eq!(
                        actual,
                        expected(id, at, Some(s)).as_slice(),
                        "iteration {iter}: block {at} is neither old nor new"
                    );
                    model.blocks.insert(at, s);
                }
                _ => panic!(
                    "iteration {iter}: block {at} lost its acknowledged write (seed {:?})",
                    model.blocks.get(&at)
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_thin_writes_over_nvme_tcp_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(96 << 20))
        .expect("disk");
    let disk_uri = format!("aio://{}", disk.display());
    let ip = "127.0.1.41";
    let nvmf = format!("{ip}:{}", free_port(ip));
    let mut engine = Engine::start(ip, 0, "node-crash-nvmf", &["--nvmf-endpoint", &nvmf]);
    ok(engine.client(&[
        "pool",
        "create",
        "crash",
        &disk_uri,
        "--cluster-size",
        "65536",
    ]));
    ok(engine.client(&[
        "replica", "create", "crash", "vol", "--size", "64", "--thin",
    ]));
    let uri = ok(engine.client(&["replica", "share", "crash", "vol", "--allowed-host", HOST]));
    let uri = uri.trim().to_string();
    let size: u64 = 64 << 20;
    let id = Uuid::new_v4();
    let model = Arc::new(Mutex::new(Model::default()));
    let mut rng = StdRng::seed_from_u64(77);
    let iterations = 200;
    let mut last_ranges: Vec<(u64, u64)> = Vec::new();
    for iter in 0..iterations {
        if iter > 0 {
            engine.restart();
            ok(engine.client(&["pool", "create", "crash", &disk_uri]));
            let check = ok(engine.client(&["pool", "check", "crash"]));
            assert!(check.contains("is clean"), "iteration {iter}: {check}");
        }
        let (ctrl, ns) = connect(&uri).await;
        {
            let mut m = model.lock().expect("model").clone_for_verify();
            let full = iter % 25 == 0 || iter == iterations - 1;
            let ranges = if full {
                vec![(0, size)]
            } else {
                std::mem::take(&mut last_ranges)
            };
            verify(&ns, &id, &mut m, &ranges, iter).await;
            *model.lock().expect("model") = m;
        }
        last_ranges.clear();
        let seed: u64 = rng.random();
        let writer = {
            let ns = ns.clone();
            let model = model.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut ranges = Vec::new();
                loop {
                    let len = rng.random_range(1..=16u64) * BS;
                    let off = rng.random_range(0..(size - len) / BS) * BS;
                    let s: u64 = rng.random();
                    let mut buf = DmaBuf::new(len as usize);
                    fill_pattern(&mut buf, BS as usize, &id, off, s);
                    model.lock().expect("model").uncertain = Some((off, len, s));
                    ranges.push((off, len));
                    if ns.write_at(off, &buf).await.is_err() {
                        return ranges;
                    }
                    let mut m = model.lock().expect("model");
                    m.uncertain = None;
                    m.acked += 1;
                    for b in (0..len).step_by(BS as usize) {
                        m.blocks.insert(off + b, s);
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..150))).await;
        engine.kill9();
        last_ranges = tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .expect("the writer must see the engine die, not hang")
            .expect("writer task");
        drop(ctrl);
    }
    let m = model.lock().expect("model");
    eprintln!(
        "{iterations} kills, {} acknowledged writes, {} blocks written",
        m.acked,
        m.blocks.len()
    );
    assert!(m.acked > u64::from(iterations), "the workload barely ran");
}

impl Model {
    fn clone_for_verify(&self) -> Model {
        Model {
            blocks: self.blocks.clone(),
            uncertain: self.uncertain,
            acked: self.acked,
        }
    }
}
