//! Bursts of commands go out together: our initiator against our target
//! over loopback TCP (127.0.171.1, a free port), on one runtime thread.
//!
//! - 32 submitters each read and write their own blocks in a loop: every
//!   block reads back what was written (checksummed patterns), and the
//!   host made fewer socket writes than it sent commands, because the
//!   commands submitted in answer to one delivery of completions were
//!   corked and sent as one write;
//! - one submitter alone (queue depth 1) is never corked: one socket
//!   write per command, so a lone command does not wait for a flush.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use blockdev::BlockDevice;
use nvmf_host::{ConnectOptions, Controller, HostStats};
use nvmf_target::{Target, TargetConfig};
use tokio_util::sync::CancellationToken;

const NQN: &str = "nqn.2019-05.io.openebs:2c1e9a0b-7f3d-4b8e-9c55-1d2e3f4a5b6c";
const HOST: &str = "nqn.2019-05.io.openebs:node-name:burst";
const BS: usize = 4096;
const SUBMITTERS: u64 = 32;
const ROUNDS: u64 = 40;

async fn start_target() -> (Target, CancellationToken) {
    let t = Target::bind(TargetConfig {
        listen: SocketAddr::from(([127, 0, 171, 1], 0)),
        ..TargetConfig::default()
    })
    .await
    .unwrap();
    let dev = blockdev::open_uri("malloc:///burst?size_mb=16", &Default::default())
        .await
        .unwrap();
    t.add_subsystem(NQN, Arc::new(dev), uuid::Uuid::new_v4(), vec![HOST.into()])
        .unwrap();
    let cancel = CancellationToken::new();
    let (t2, c2) = (t.clone(), cancel.clone());
    tokio::spawn(async move { t2.serve(c2).await });
    (t, cancel)
}

/// Block contents for submitter `s`, round `r`: a pattern whose last 8
/// bytes are a checksum of the rest.
fn block(s: u64, r: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..BS as u64 - 8)
        .map(|i| (i.wrapping_mul(31) ^ s.wrapping_mul(7) ^ r) as u8)
        .collect();
    let sum = b.iter().fold(0u64, |a, &x| a.rotate_left(5) ^ u64::from(x));
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn counts(st: &HostStats) -> (u64, u64, u64) {
    (
        st.commands.load(Ordering::Relaxed),
        st.socket_writes.load(Ordering::Relaxed),
        st.corked_pdus.load(Ordering::Relaxed),
    )
}

#[tokio::test]
async fn a_burst_of_commands_goes_out_in_fewer_writes_and_a_lone_one_at_once() {
    let (t, cancel) = start_target().await;
    let mut o = ConnectOptions::new(t.local_addr(), NQN);
    o.hostnqn = HOST.into();
    o.io_queues = 1;
    o.queue_depth = 64;
    let ctrl = Controller::connect(o).await.unwrap();
    let ns = Arc::new(ctrl.namespace(1).await.unwrap());

    let (c0, w0, k0) = counts(ctrl.stats());
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|s| {
            let ns = ns.clone();
            tokio::spawn(async move {
                for r in 0..ROUNDS {
                    let off = (s * ROUNDS + r) * BS as u64;
                    let want = block(s, r);
                    ns.write_at(off, &want).await.unwrap();
                    let mut got = vec![0u8; BS];
                    ns.read_at(off, &mut got).await.unwrap();
                    assert!(got == want, "submitter {s} round {r}: data differs");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (c1, w1, k1) = counts(ctrl.stats());
    let commands = c1 - c0;
    let writes = w1 - w0;
    assert_eq!(commands, SUBMITTERS * ROUNDS * 2);
    assert!(k1 > k0, "no command was corked ({commands} commands)");
    assert!(
        writes * 4 < commands * 3,
        "{writes} socket writes for {commands} commands: bursts were not coalesced"
    );

    // Queue depth 1: one write per command, never corked. (The first
    // read may still meet the cork of the burst's last delivery, whose
    // flush it then goes out with.)
    let mut got = vec![0u8; BS];
    ns.read_at(0, &mut got).await.unwrap();
    let (c2, w2, k2) = counts(ctrl.stats());
    for r in 0..50u64 {
        let mut got = vec![0u8; BS];
        ns.read_at(r * BS as u64, &mut got).await.unwrap();
        assert!(got == block(r / ROUNDS, r % ROUNDS), "re-read {r}");
    }
    let (c3, w3, k3) = counts(ctrl.stats());
    assert_eq!((c3 - c2, w3 - w2, k3 - k2), (50, 50, 0));

    drop(ns);
    ctrl.disconnect().await.unwrap();
    cancel.cancel();
}
