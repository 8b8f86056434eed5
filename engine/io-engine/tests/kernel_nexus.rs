//! The Linux kernel NVMe/TCP host against a 3-way nexus whose children are
//! faulted and rebuilt under its I/O (acceptance of the nexus work).
//!
//! Three real engines on 127.0.1.21-23, one replica each; a nexus on the
//! first over its local replica and the two remote ones (NVMe/TCP),
//! published for the guest. A Debian kernel in QEMU
//! (`../shared/tools/nvme-vm`) connects and runs fio random writes of 4-64
//! KiB at QD16 over the whole namespace with crc32c verification, while the
//! test, on the host:
//!
//! 1. faults a remote child by request, removes it and adds it back: a full
//!    rebuild, paced by the nexus engine's rebuild bandwidth limit so that
//!    it overlaps the writes;
//! 2. SIGKILLs the other remote child's engine: the child faults on I/O;
//!    the engine is restarted, its pool imported (the replica keeps its
//!    share) and the child brought online: a partial rebuild of the regions
//!    written while it was away.
//!
//! Passes when fio reports no I/O or verify error, both children went
//! faulted and came back online, the rebuild history holds the completed
//! full and partial rebuilds (both within the fio run), and afterwards the
//! three replicas hold identical data.
//!
//! The guest reaches the nexus through the harness's guest forward (guest
//! 10.0.2.100:4420 -> host 127.0.0.1:<port>), so the nexus engine's
//! NVMe/TCP listener is on 127.0.0.1 while its gRPC API is on 127.0.1.21.
//! The guest prints `RESULT fio_started=1` / `RESULT fio_done=RC`; the test
//! watches its console for them to time the faults.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use blockdev::dynamic::SharedDevice;
use common::{child_of, free_port, nexus_json, ok, verify::checksum, Engine};
use nvmf_host::{ConnectOptions, Controller};
use serde_json::Value;
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const SIZE_MIB: u64 = 256;
/// The guest's host NQN (allowed on the nexus).
const GUEST_HOST: &str = "nqn.2019-05.io.openebs:node-name:kernel-nexus-guest";
/// The test's own host NQN, to read the replicas at the end.
const CHECK_HOST: &str = "nqn.2019-05.io.openebs:node-name:kernel-nexus-check";
const CHILD_TIMEOUT_MS: u64 = 3000;
const FIO_RUNTIME_S: u64 = 60;
/// Full rebuild of 256 MiB at this rate: at least ~10 s under the writes.
const REBUILD_MIB_PER_S: u64 = 24;

fn nvme_vm() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/nvme-vm");
    assert!(
        dir.join("run").exists(),
        "the NVMe/TCP VM harness is missing at {} (it ships in ../shared beside the project)",
        dir.display()
    );
    dir
}

fn node_nqn(node: &str) -> String {
    format!("nqn.2019-05.io.openebs:node-name:{node}")
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The guest run: the harness's console (stdout and stderr) is collected
/// into `log` as it arrives. Dropping it stops the VM.
struct Vm {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Vm {
    fn start(port: u16, nqn: &str) -> Vm {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vm/kernel-nexus.sh");
        let mut child = Command::new(nvme_vm().join("run"))
            .args(["-t", "600", "-g", &format!("4420:{port}")])
            .args(["-e", &format!("TARGET_NQN={nqn}")])
            .args(["-e", &format!("HOSTNQN={GUEST_HOST}")])
            .args(["-e", &format!("FIO_RUNTIME={FIO_RUNTIME_S}")])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nvme-vm");
        let log = Arc::new(Mutex::new(String::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [out, err]
            .into_iter()
            .map(|stream| {
                let log = log.clone();
                thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { break };
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                })
            })
            .collect();
        Vm {
            child: Some(child),
            log,
            readers,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn saw(&self, needle: &str) -> bool {
        self.log.lock().unwrap().contains(needle)
    }

    /// Whether the VM is still running.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits for the guest to exit (the harness's `-t` bounds it).
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.take().unwrap().wait().expect("wait for nvme-vm");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.log())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the harness stops QEMU and its helpers itself.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("---- guest console ----\n{}", self.log());
            }
        }
    }
}

fn start_engine(ip: &str, nvmf_ip: &str, node: &str, extra: &[&str]) -> Engine {
    let nvmf = format!("{nvmf_ip}:{}", free_port(nvmf_ip));
    let timeout = CHILD_TIMEOUT_MS.to_string();
    let reconnect = (CHILD_TIMEOUT_MS / 2).to_string();
    let mut args = vec![
        "--nvmf-endpoint",
        &nvmf,
        "--child-io-timeout-ms",
        &timeout,
        "--child-reconnect-timeout-ms",
        &reconnect,
    ];
    args.extend_from_slice(extra);
    Engine::start(ip, 0, node, &args)
}

fn disk_path(dir: &Path, pool: &str) -> String {
    format!("aio://{}", dir.join(format!("{pool}.img")).display())
}

/// A pool on a file in RAM and one replica; returns the replica uuid.
fn make_replica(engine: &Engine, dir: &Path, pool: &str) -> Uuid {
    let disk = dir.join(format!("{pool}.img"));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len((SIZE_MIB + 32) * MIB)
        .unwrap();
    ok(engine.client(&["pool", "create", pool, &disk_path(dir, pool)]));
    let uuid = Uuid::new_v4();
    ok(engine.client(&[
        "replica",
        "create",
        "--uuid",
        &uuid.to_string(),
        "--size",
        &format!("{SIZE_MIB}MiB"),
        pool,
        &format!("{pool}-r"),
    ]));
    uuid
}

fn share(engine: &Engine, replica: &Uuid, hosts: &[&str]) -> String {
    let id = replica.to_string();
    let mut cmd = vec!["replica", "share", "--uuid", &id];
    for h in hosts {
        cmd.extend_from_slice(&["--allowed-host", h]);
    }
    ok(engine.client(&cmd)).trim().to_owned()
}

fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if check() {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// CRC32C of the first `SIZE_MIB` of a replica, read over NVMe/TCP.
async fn replica_checksum(uri: &str) -> u32 {
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = CHECK_HOST.into();
    opts.io_queues = 1;
    let ctrl = Controller::connect(opts).await.unwrap();
    let dev: SharedDevice = Arc::new(ctrl.namespace(1).await.unwrap());
    let sum = checksum(&dev, SIZE_MIB * MIB).await.unwrap();
    ctrl.disconnect().await.unwrap();
    sum
}

#[test]
fn kernel_host_fio_verify_survives_child_faults_and_rebuilds() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let bandwidth = REBUILD_MIB_PER_S.to_string();
    // The nexus engine's NVMe/TCP listener is where the guest forward lands.
    let e1 = start_engine(
        "127.0.1.21",
        "127.0.0.1",
        "kn-node-1",
        &["--rebuild-bandwidth-mib", &bandwidth],
    );
    let e2 = start_engine("127.0.1.22", "127.0.1.22", "kn-node-2", &[]);
    let mut e3 = start_engine("127.0.1.23", "127.0.1.23", "kn-node-3", &[]);
    let r1 = make_replica(&e1, dir.path(), "kn1");
    let r2 = make_replica(&e2, dir.path(), "kn2");
    let r3 = make_replica(&e3, dir.path(), "kn3");
    let n1 = node_nqn("kn-node-1");
    let u1 = format!("bdev:///{r1}?uuid={r1}");
    let u2 = share(&e2, &r2, &[&n1, CHECK_HOST]);
    let u3 = share(&e3, &r3, &[&n1, CHECK_HOST]);
    let nexus = Uuid::new_v4();
    let nexus_id = nexus.to_string();
    let volume = Uuid::new_v4();
    ok(e1.client(&[
        "nexus",
        "create",
        &nexus_id,
        "--name",
        &volume.to_string(),
        "--size",
        &SIZE_MIB.to_string(),
        &u1,
        &u2,
        &u3,
    ]));
    let uri = ok(e1.client(&["nexus", "publish", &nexus_id, "--allowed-host", GUEST_HOST]));
    let uri = uri.trim();
    let nqn = format!("nqn.2019-05.io.openebs:{volume}");
    assert!(
        uri.starts_with("nvmf://127.0.0.1:") && uri.contains(&nqn),
        "{uri}"
    );
    let port: u16 = uri["nvmf://127.0.0.1:".len()..]
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {uri}"));
    assert_eq!(nexus_json(&e1, &nexus)["state"], "online");

    let started = Instant::now();
    let mut vm = Vm::start(port, &nqn);
    wait_for("the guest to start fio", 300, || {
        assert!(vm.running(), "the VM ended early:\n{}", vm.log());
        vm.saw("RESULT fio_started=1")
    });
    let fio_start = Instant::now();
    eprintln!(
        "fio started {:.1} s after the VM was launched",
        started.elapsed().as_secs_f64()
    );
    let fio_running = |vm: &Vm, what: &str| {
        assert!(
            !vm.saw("RESULT fio_done="),
            "fio ended before {what} (it must run through the faults):\n{}",
            vm.log()
        );
    };
    thread::sleep(Duration::from_secs(5));

    // --- 1: fault a remote child by request; remove and re-add it ---------
    fio_running(&vm, "the first fault");
    ok(e1.client(&["nexus", "child-op", &nexus_id, &u2, "fault"]));
    let n = nexus_json(&e1, &nexus);
    assert_eq!(child_of(&n, &r2)["state"], "faulted", "{n}");
    assert_eq!(n["state"], "degraded", "{n}");
    eprintln!(
        "[{:5.1}s] child 2 faulted by request",
        fio_start.elapsed().as_secs_f64()
    );
    thread::sleep(Duration::from_secs(3));
    ok(e1.client(&["nexus", "remove", &nexus_id, &u2]));
    fio_running(&vm, "the full rebuild");
    ok(e1.client(&["nexus", "add", &nexus_id, &u2]));
    let n = nexus_json(&e1, &nexus);
    assert_eq!(child_of(&n, &r2)["state"], "degraded", "{n}");
    let took = wait_for("the full rebuild of child 2", 180, || {
        nexus_json(&e1, &nexus)["state"] == "online"
    });
    eprintln!(
        "[{:5.1}s] child 2 online again: full rebuild took {:.1} s",
        fio_start.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );

    // --- 2: the other remote child's engine dies; restart, online ---------
    thread::sleep(Duration::from_secs(2));
    fio_running(&vm, "the engine kill");
    e3.kill9();
    let took = wait_for("child 3 to fault", 60, || {
        child_of(&nexus_json(&e1, &nexus), &r3)["state"] == "faulted"
    });
    let n = nexus_json(&e1, &nexus);
    assert_eq!(n["state"], "degraded", "{n}");
    eprintln!(
        "[{:5.1}s] child 3 faulted {:.1} s after SIGKILL of its engine ({})",
        fio_start.elapsed().as_secs_f64(),
        took.as_secs_f64(),
        child_of(&n, &r3)["reason"]
    );
    thread::sleep(Duration::from_secs(3));
    e3.restart();
    ok(e3.client(&["pool", "import", "kn3", &disk_path(dir.path(), "kn3")]));
    fio_running(&vm, "the partial rebuild");
    let mut onlined = false;
    for _ in 0..20 {
        if e1
            .client(&["nexus", "child-op", &nexus_id, &u3, "online"])
            .status
            .success()
        {
            onlined = true;
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert!(onlined, "child 3 could not be brought online");
    let took = wait_for("the partial rebuild of child 3", 180, || {
        nexus_json(&e1, &nexus)["state"] == "online"
    });
    eprintln!(
        "[{:5.1}s] child 3 online again: partial rebuild took {:.1} s",
        fio_start.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );

    // --- the guest's verdict ---------------------------------------------
    wait_for("fio to end", 300, || {
        vm.saw("RESULT fio_done=") || !vm.running()
    });
    let fio_done_ms = unix_ms();
    let (status, log) = vm.finish();
    assert!(
        status.success() && log.contains("RESULT kernel_nexus=ok"),
        "the guest failed ({status}):\n{log}\n---- nexus engine log ----\n{}",
        e1.logs()
    );
    eprintln!(
        "guest passed in {:.1} s; fio summary:",
        started.elapsed().as_secs_f64()
    );
    for line in log.lines().filter(|l| {
        l.starts_with("RESULT")
            || l.contains("READ:")
            || l.contains("WRITE:")
            || l.contains("err=")
            || l.trim_start().starts_with("read:")
            || l.trim_start().starts_with("write:")
            || l.contains("issued rwts:")
    }) {
        eprintln!("  {}", line.trim());
    }

    // --- rebuild history: one full, one partial, both completed -----------
    let history: Value = serde_json::from_str(&ok(
        e1.client(&["-o", "json", "rebuild", "history", &nexus_id])
    ))
    .unwrap();
    let records = history["records"].as_array().unwrap();
    for (child, partial) in [(&u2, false), (&u3, true)] {
        let r = records
            .iter()
            .find(|r| r["uri"] == *child.as_str())
            .unwrap_or_else(|| panic!("no rebuild of {child} in {history}"));
        assert_eq!(r["state"], "completed", "{r}");
        assert_eq!(r["is_partial"], partial, "{r}");
        assert!(
            r["end_time_ms"].as_i64().unwrap() < fio_done_ms,
            "the rebuild did not complete while fio ran: {r}"
        );
        eprintln!(
            "rebuild of {}: {}, {} MiB copied in {:.1} s",
            if partial { "child 3" } else { "child 2" },
            if partial { "partial" } else { "full" },
            r["bytes_transferred"].as_u64().unwrap() / MIB,
            (r["end_time_ms"].as_i64().unwrap() - r["start_time_ms"].as_i64().unwrap()) as f64
                / 1000.0
        );
    }
    let n = nexus_json(&e1, &nexus);
    for r in [&r1, &r2, &r3] {
        assert_eq!(child_of(&n, r)["state"], "online", "{n}");
    }

    // --- every replica holds the same data --------------------------------
    let u1_shared = share(&e1, &r1, &[CHECK_HOST]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sums: Vec<u32> = [&u1_shared, &u2, &u3]
        .into_iter()
        .map(|u| rt.block_on(replica_checksum(u)))
        .collect();
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "replicas differ after the rebuilds: {sums:08x?}"
    );
    eprintln!("the three replicas are identical (crc32c {:08x})", sums[0]);
    for (e, pool) in [(&e1, "kn1"), (&e2, "kn2"), (&e3, "kn3")] {
        let check = ok(e.client(&["pool", "check", pool]));
        assert!(check.contains("is clean"), "{check}");
        assert!(!e.logs().contains("panicked"), "{}", e.logs());
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
