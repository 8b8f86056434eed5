//! Fencing pieces of a volume target, end to end: our initiator against
//! our target over loopback TCP (127.0.4.x, free ports).
//!
//! - two hosts on one subsystem: an Exclusive Access reservation keeps
//!   the other host's reads and writes out until it preempts the holder,
//!   which then is fenced in turn; the report names holder and
//!   registrants; data written by the new holder reads back;
//! - a reservation outlives a reconnect of its holder's controller;
//! - a reservation command whose response is lost with its connection is
//!   replayed and still reports success when it had taken effect;
//! - a per-subsystem controller-ID window hands out exactly its ids and
//!   refuses a Connect beyond them; bad windows are refused.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use blockdev::{dynamic::SharedDevice, BlockDevError, BlockDevice};
use nvmf_host::{
    AcquireAction, ConnectOptions, Controller, HostError, Namespace, RegisterAction, ReleaseAction,
    ReservationType,
};
use nvmf_target::{SubsystemOptions, Target, TargetConfig, TargetError};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const NQN: &str = "nqn.2019-05.io.openebs:6f0e4a52-1d7b-4c39-9a11-0c5b2d7e9f10";
const HOST_A: &str = "nqn.2019-05.io.openebs:node-name:nexus-a";
const HOST_B: &str = "nqn.2019-05.io.openebs:node-name:nexus-b";
const BS: usize = 512;
const EA: ReservationType = ReservationType::ExclusiveAccess;

async fn malloc() -> SharedDevice {
    let dev = blockdev::open_uri("malloc:///fence?size_mb=16", &Default::default())
        .await
        .unwrap();
    Arc::new(dev)
}

/// A target on `ip` (any free port) with [`NQN`] open to both hosts.
async fn start_target(ip: [u8; 4]) -> (Target, CancellationToken) {
    let t = Target::bind(TargetConfig {
        listen: SocketAddr::from((ip, 0)),
        cntlid_min: 0x200,
        cntlid_max: 0x2ff,
        ..TargetConfig::default()
    })
    .await
    .unwrap();
    t.add_subsystem(
        NQN,
        malloc().await,
        uuid::Uuid::new_v4(),
        vec![HOST_A.into(), HOST_B.into()],
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let (t2, c2) = (t.clone(), cancel.clone());
    tokio::spawn(async move { t2.serve(c2).await });
    (t, cancel)
}

fn opts(addr: SocketAddr, subnqn: &str, hostnqn: &str) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr, subnqn);
    o.hostnqn = hostnqn.into();
    o.io_queues = 1;
    o.queue_depth = 16;
    o.io_timeout_ms = 5000;
    o.reconnect_timeout_ms = 5000;
    o
}

async fn open(addr: SocketAddr, hostnqn: &str) -> (Controller, Namespace) {
    let c = Controller::connect(opts(addr, NQN, hostnqn)).await.unwrap();
    let ns = c.namespace(1).await.unwrap();
    (c, ns)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[track_caller]
fn assert_conflict(r: Result<(), BlockDevError>) {
    let e = r.expect_err("expected a reservation conflict");
    let h = HostError::from_blockdev(&e).unwrap_or_else(|| panic!("not a host error: {e}"));
    assert!(h.is_reservation_conflict(), "{h}");
    assert!(h.to_string().contains("reservation conflict"), "{h}");
}

/// Waits (bounded) until `c` counts `n` reconnects: the counter moves
/// just after the new association is installed.
async fn wait_reconnects(c: &Controller, n: u64) {
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        while c.stats().reconnects.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "reconnects: {} of {n}",
        c.stats().reconnects.load(Ordering::Relaxed)
    );
    assert_eq!(c.stats().reconnects.load(Ordering::Relaxed), n);
}

fn hostid(c: &Controller) -> [u8; 16] {
    *c.options().hostid.as_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_access_preempt_fences_the_old_holder() {
    let (t, cancel) = start_target([127, 0, 4, 1]).await;
    let (ca, a) = open(t.local_addr(), HOST_A).await;
    let (cb, b) = open(t.local_addr(), HOST_B).await;

    // Before any reservation both hosts may write.
    let early = pattern(4 * BS, 1);
    a.write_at(0, &early).await.unwrap();
    b.write_at(64 * BS as u64, &pattern(BS, 9)).await.unwrap();

    // A registers key 1 and takes Exclusive Access.
    a.resv_register(RegisterAction::Register, 0, 1, false)
        .await
        .unwrap();
    a.resv_acquire(AcquireAction::Acquire, EA, 1, 0)
        .await
        .unwrap();
    a.write_at(4 * BS as u64, &pattern(BS, 2)).await.unwrap();

    // B is kept out of reads and writes.
    assert_conflict(b.write_at(8 * BS as u64, &pattern(BS, 3)).await);
    let mut buf = vec![0u8; BS];
    assert_conflict(b.read_at(0, &mut buf).await);
    assert_conflict(b.flush().await);

    // B registers key 2; a plain acquire conflicts, a preempt of key 1
    // takes the reservation (a new target fencing the old one).
    b.resv_register(RegisterAction::Register, 0, 2, false)
        .await
        .unwrap();
    let e = b
        .resv_acquire(AcquireAction::Acquire, EA, 2, 0)
        .await
        .unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");
    assert!(
        e.to_string()
            .starts_with("reservation acquire failed: reservation conflict"),
        "{e}"
    );
    b.resv_acquire(AcquireAction::Preempt, EA, 2, 1)
        .await
        .unwrap();

    // Now A is fenced: writes and reads fail, and it lost its
    // registration, so it cannot take the reservation back.
    assert_conflict(a.write_at(8 * BS as u64, &pattern(BS, 4)).await);
    assert_conflict(a.read_at(0, &mut buf).await);
    let e = a
        .resv_acquire(AcquireAction::Acquire, EA, 1, 0)
        .await
        .unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");

    // B writes; its data and the data written before the switch read back.
    let data = pattern(16 * BS, 5);
    b.write_at(8 * BS as u64, &data).await.unwrap();
    let mut back = vec![0u8; 16 * BS];
    b.read_at(8 * BS as u64, &mut back).await.unwrap();
    assert!(back == data, "B's data reads back");
    let mut back = vec![0u8; 4 * BS];
    b.read_at(0, &mut back).await.unwrap();
    assert!(back == early, "data written before the switch-over is kept");

    // The report (from either host) names B as the only registrant and
    // the holder of an Exclusive Access reservation.
    for ns in [&a, &b] {
        let st = ns.resv_report().await.unwrap();
        assert!(st.extended);
        assert_eq!(st.rtype, Some(EA));
        assert!(!st.ptpls);
        assert!(st.generation >= 3, "register, register, preempt");
        assert_eq!(st.registrants.len(), 1, "{st:?}");
        let h = st.holder().unwrap();
        assert_eq!(h.hostid, hostid(&cb));
        assert_eq!(h.rkey, 2);
        assert_eq!(Some(h.cntlid), cb.cntlid());
        assert!(st.registrant(&hostid(&ca)).is_none());
    }

    // A registers again (key 3): listed, not holding, still fenced.
    a.resv_register(RegisterAction::Register, 0, 3, false)
        .await
        .unwrap();
    let st = b.resv_report().await.unwrap();
    assert_eq!(st.registrants.len(), 2);
    let ra = st.registrant(&hostid(&ca)).unwrap();
    assert_eq!(
        (ra.rkey, ra.holds, Some(ra.cntlid)),
        (3, false, ca.cntlid())
    );
    assert_conflict(a.write_at(0, &pattern(BS, 6)).await);

    // Releasing with the wrong type is refused, with the right one works,
    // and then A may write again.
    let e = b
        .resv_release(ReleaseAction::Release, ReservationType::WriteExclusive, 2)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid field in command"), "{e}");
    b.resv_release(ReleaseAction::Release, EA, 2).await.unwrap();
    a.write_at(0, &pattern(BS, 7)).await.unwrap();
    // Clear drops every registration.
    b.resv_release(ReleaseAction::Clear, EA, 2).await.unwrap();
    let st = a.resv_report().await.unwrap();
    assert_eq!((st.rtype, st.registrants.len()), (None, 0));

    ca.disconnect().await.unwrap();
    cb.disconnect().await.unwrap();
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_outlives_a_reconnect_of_its_holder() {
    let (t, cancel) = start_target([127, 0, 4, 2]).await;
    let (ca, a) = open(t.local_addr(), HOST_A).await;
    let (_cb, b) = open(t.local_addr(), HOST_B).await;
    a.resv_register(RegisterAction::Register, 0, 0xa, false)
        .await
        .unwrap();
    a.resv_acquire(AcquireAction::Acquire, EA, 0xa, 0)
        .await
        .unwrap();
    let before = ca.cntlid().unwrap();

    ca.reset();
    // Commands wait for the reconnect and go through.
    let data = pattern(8 * BS, 11);
    a.write_at(0, &data).await.unwrap();
    let after = ca.cntlid().unwrap();
    assert_ne!(before, after, "a new association has a new controller id");
    wait_reconnects(&ca, 1).await;
    let mut back = vec![0u8; 8 * BS];
    a.read_at(0, &mut back).await.unwrap();
    assert!(back == data);
    assert_conflict(b.read_at(0, &mut back).await);

    // The report shows A under its current controller id.
    let st = a.resv_report().await.unwrap();
    let h = st.holder().unwrap();
    assert_eq!((h.hostid, h.cntlid), (hostid(&ca), after));
    // Acquiring again is harmless.
    a.resv_acquire(AcquireAction::Acquire, EA, 0xa, 0)
        .await
        .unwrap();
    cancel.cancel();
}

/// A TCP proxy that, when armed, swallows the next bytes the target sends
/// and cuts that connection: the command they answered was executed but
/// the host never learns it.
struct LossyProxy {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
}

impl LossyProxy {
    async fn start(ip: [u8; 4], target: SocketAddr) -> LossyProxy {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let armed2 = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let armed = armed2.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if armed.swap(false, Ordering::SeqCst) {
                                return; // drop the answer and the connection
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        LossyProxy { addr, armed }
    }

    fn lose_next_answer(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_reservation_command_that_took_effect_succeeds() {
    let (t, cancel) = start_target([127, 0, 4, 3]).await;
    let proxy = LossyProxy::start([127, 0, 4, 3], t.local_addr()).await;
    let mut o = opts(proxy.addr, NQN, HOST_A);
    // No keep-alive: the only traffic after setup is our commands.
    o.kato_ms = 0;
    let ca = Controller::connect(o).await.unwrap();
    let a = ca.namespace(1).await.unwrap();
    let me = hostid(&ca);

    a.resv_register(RegisterAction::Register, 0, 5, false)
        .await
        .unwrap();

    // Replace 5 -> 6; the answer is lost, the replay finds key 6 in
    // place (conflict on key 5) and the report settles it.
    proxy.lose_next_answer();
    a.resv_register(RegisterAction::Replace, 5, 6, false)
        .await
        .unwrap();
    wait_reconnects(&ca, 1).await;
    let st = a.resv_report().await.unwrap();
    assert_eq!(st.registrant(&me).unwrap().rkey, 6);

    // Same for acquire and for unregister.
    proxy.lose_next_answer();
    a.resv_acquire(AcquireAction::Acquire, EA, 6, 0)
        .await
        .unwrap();
    assert_eq!(a.resv_report().await.unwrap().holder().unwrap().hostid, me);
    proxy.lose_next_answer();
    a.resv_register(RegisterAction::Unregister, 6, 0, false)
        .await
        .unwrap();
    wait_reconnects(&ca, 3).await;
    let st = a.resv_report().await.unwrap();
    assert!(st.registrants.is_empty() && st.rtype.is_none(), "{st:?}");

    // A real conflict (nothing replayed) is still reported as one.
    let e = a
        .resv_register(RegisterAction::Unregister, 6, 0, false)
        .await
        .unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");
    assert!(
        e.to_string()
            .starts_with("reservation register (unregister) failed: reservation conflict"),
        "{e}"
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subsystem_window_hands_out_only_its_controller_ids() {
    let (t, cancel) = start_target([127, 0, 4, 4]).await;
    let windowed = "nqn.2019-05.io.openebs:0a9e7c2d-5b41-4f86-8e3a-7d6c1b2a3f40";
    t.add_subsystem_with(
        windowed,
        malloc().await,
        uuid::Uuid::new_v4(),
        SubsystemOptions {
            allowed_hosts: vec![HOST_A.into(), HOST_B.into()],
            cntlid_min: Some(100),
            cntlid_max: Some(101),
        },
    )
    .unwrap();
    let infos = t.subsystems();
    let info = |nqn: &str| infos.iter().find(|i| i.nqn == nqn).unwrap().clone();
    assert_eq!(
        (info(windowed).cntlid_min, info(windowed).cntlid_max),
        (100, 101)
    );
    assert_eq!(
        (info(NQN).cntlid_min, info(NQN).cntlid_max),
        (0x200, 0x2ff),
        "without a window of its own a subsystem reports the target's"
    );

    let addr = t.local_addr();
    let c1 = Controller::connect(opts(addr, windowed, HOST_A))
        .await
        .unwrap();
    let c2 = Controller::connect(opts(addr, windowed, HOST_B))
        .await
        .unwrap();
    assert_eq!((c1.cntlid(), c2.cntlid()), (Some(100), Some(101)));
    let e = Controller::connect(opts(addr, windowed, HOST_A))
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.code()), Some(0x181), "{e}");
    assert!(
        e.to_string()
            .starts_with("fabrics connect failed: connect: controller busy"),
        "{e}"
    );
    // The other subsystem still uses the target's window.
    let other = Controller::connect(opts(addr, NQN, HOST_A)).await.unwrap();
    assert!((0x200..=0x2ff).contains(&other.cntlid().unwrap()));
    let hosts: Vec<u16> = t
        .subsystems()
        .into_iter()
        .find(|i| i.nqn == windowed)
        .unwrap()
        .hosts
        .iter()
        .map(|h| h.1)
        .collect();
    assert_eq!(hosts, vec![100, 101]);

    // A freed id is handed out again.
    c1.disconnect().await.unwrap();
    drop(c1);
    let c3 = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match Controller::connect(opts(addr, windowed, HOST_A)).await {
                Ok(c) => return c,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("id 100 is free again once the controller is gone");
    assert_eq!(c3.cntlid(), Some(100));
    drop(c2);

    // Bad windows are refused and add nothing.
    let bad = "nqn.2019-05.io.openebs:bad";
    for (min, max) in [
        (Some(0), Some(5)),
        (Some(10), Some(5)),
        (Some(1), Some(0xfff0)),
        (Some(0x300), None),
        (None, Some(0x1ff)),
    ] {
        let r = t.add_subsystem_with(
            bad,
            malloc().await,
            uuid::Uuid::new_v4(),
            SubsystemOptions {
                allowed_hosts: vec![HOST_A.into()],
                cntlid_min: min,
                cntlid_max: max,
            },
        );
        let e = r.unwrap_err();
        assert!(
            matches!(e, TargetError::InvalidCntlidWindow { .. }),
            "{min:?}..{max:?}: {e}"
        );
        assert!(e.to_string().contains("1..=0xffef"), "{e}");
    }
    assert!(t.subsystems().iter().all(|i| i.nqn != bad));
    // One bound alone: the other is the target's.
    t.add_subsystem_with(
        bad,
        malloc().await,
        uuid::Uuid::new_v4(),
        SubsystemOptions {
            cntlid_max: Some(0x210),
            ..SubsystemOptions::default()
        },
    )
    .unwrap();
    let i = t.subsystems().into_iter().find(|i| i.nqn == bad).unwrap();
    assert_eq!((i.cntlid_min, i.cntlid_max), (0x200, 0x210));
    cancel.cancel();
}
