//! Leader election of the core agent: two `agent-core` processes against
//! one real etcd (same cluster uid and namespace), each on its own address,
//! lease TTL 3 s.
//!
//! - Only one logs `leader lease acquired`; the other answers no request
//!   and reconciles nothing (an interrupted create left in the store stays
//!   there until it leads).
//! - SIGKILL of the leader: the other takes over once the dead holder's
//!   lease expired (within TTL + a margin, and not before the TTL minus
//!   one keep-alive interval), and only after the kill.
//! - SIGTERM of a leader releases the lease at once: the other takes over
//!   well under the TTL, after the leader logged that it stops.
//! - A leader whose lock disappears from the store exits with code 2; with
//!   `--on-lease-loss restart` (the local cluster's setting) it comes back
//!   in place instead: same PID, a fresh instance that takes the lease
//!   again and serves.
//! - The lock key `StoreLeaseLock/core-agent` names the holder throughout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant, SystemTime};

use agent_core::specs::{VolumeOp, VolumeRecord};
use common::{bin, core_args, etcd_in_memory, free_port, Proc, Timers};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi,
};
use store::{
    keys::{Kind, StoreKeys},
    EtcdStore, LeaseLock, Store,
};

const PREFIX: &str = "127.0.8";
const TTL: Duration = Duration::from_secs(3);
/// The holder renews every third of the TTL.
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const ACQUIRED: &str = "leader lease acquired";
const WAITING: &str = "waiting for the leader lease";

struct Agent {
    proc: Proc,
    ep: String,
}

impl Agent {
    fn start(name: &str, ip: &str, etcd_ep: &str) -> Agent {
        let ep = format!("{ip}:{}", free_port(ip));
        let args = core_args(PREFIX, etcd_ep, &ep, &Timers::default());
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--lease-ttl" && w[1] == "3s"),
            "the kit's lease TTL changed: {args:?}"
        );
        let proc = Proc::spawn(name, bin("agent-core", "agent-core"), args);
        Agent { proc, ep }
    }

    /// The lock owner this process records.
    fn owner(&self) -> String {
        format!("agent-core@{}/{}", self.ep, self.proc.pid().unwrap())
    }

    /// Whether it answers a REST call within half a second.
    async fn answers(&self) -> bool {
        let c = RestClient::new(
            &format!("http://{}", self.ep),
            RestClientOptions {
                timeout: Duration::from_millis(500),
                ..Default::default()
            },
        )
        .unwrap();
        c.get_specs().await.is_ok()
    }

    fn count(&self, needle: &str) -> usize {
        self.proc.log_lines(needle).len()
    }

    /// Waits until the log holds `n` lines with `needle`; the time the
    /// n-th was logged.
    async fn wait_log(&self, needle: &str, n: usize, within: Duration) -> SystemTime {
        let deadline = Instant::now() + within;
        loop {
            let lines = self.proc.log_lines(needle);
            if lines.len() >= n {
                return lines[n - 1].0;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {n}th {needle:?} within {within:?}",
                self.proc.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later
        .duration_since(earlier)
        .unwrap_or_else(|e| panic!("{later:?} is {:?} before {earlier:?}", e.duration()))
}

async fn owner(store: &EtcdStore, key: &str) -> Option<String> {
    LeaseLock::current_owner(store, key.as_bytes())
        .await
        .unwrap()
}

/// One holder's time as leader: from its acquisition to when it stopped.
struct Term {
    who: &'static str,
    from: SystemTime,
    to: SystemTime,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_with_takeover_after_kill_and_at_once_after_sigterm() {
    // In memory: the timings below are the agents', not a shared disk's.
    let (_etcd, etcd_ep, _etcd_data) = etcd_in_memory(&format!("{PREFIX}.1"));
    let store = EtcdStore::connect(std::slice::from_ref(&etcd_ep), Duration::from_secs(5))
        .await
        .unwrap();
    let keys = StoreKeys::new("default", "mayastor");
    let lock = keys.lease_lock("core-agent");
    let mut terms = Vec::new();

    // --- A leads.
    let mut a = Agent::start("agent-core-a", &format!("{PREFIX}.2"), &etcd_ep);
    let a_from = a.wait_log(ACQUIRED, 1, Duration::from_secs(30)).await;
    let now = SystemTime::now();
    assert!(
        since(now, a_from) < Duration::from_secs(60),
        "log timestamps are read wrong: {a_from:?} vs now {now:?}"
    );
    assert_eq!(owner(&store, &lock).await, Some(a.owner()));
    let t = Instant::now();
    while !a.answers().await {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the leader does not serve"
        );
    }

    // An interrupted create, as a crashed holder would leave it: only a
    // leader that loads the specs after taking the lease rolls it back.
    let seeded = uuid::Uuid::new_v4().to_string();
    let seeded_key = keys.key(Kind::VolumeSpec, &seeded);
    let rec = VolumeRecord {
        spec: VolumeSpec {
            uuid: seeded.clone(),
            size: 8 << 20,
            num_replicas: 1,
            status: SpecStatus::Creating,
            target: None,
            policy: VolumePolicy { self_heal: true },
            topology: None,
            labels: None,
            thin: false,
            affinity_group: None,
        },
        target_gen: 0,
        nexus: None,
        op: Some(VolumeOp::Create),
    };
    store
        .put(
            seeded_key.as_bytes(),
            serde_json::to_vec(&rec).unwrap(),
            None,
        )
        .await
        .unwrap();

    // --- B waits: no lease, no answers, no reconciling, for over a TTL.
    let mut b = Agent::start("agent-core-b", &format!("{PREFIX}.3"), &etcd_ep);
    b.wait_log(WAITING, 1, Duration::from_secs(30)).await;
    let watch = Instant::now();
    while watch.elapsed() < TTL + KEEP_ALIVE {
        assert_eq!(b.count(ACQUIRED), 0, "both agents acquired the lease");
        assert!(!b.answers().await, "the standby agent answers requests");
        assert_eq!(owner(&store, &lock).await, Some(a.owner()));
        assert!(
            store.get(seeded_key.as_bytes()).await.unwrap().is_some(),
            "the interrupted create was touched without the lease"
        );
        assert!(a.answers().await, "the leader stopped serving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.count(ACQUIRED), 1);
    assert_eq!(b.count("rolling back"), 0, "the standby reconciled");

    // --- SIGKILL A: B takes over once A's lease expired.
    let kill_sent = SystemTime::now();
    a.proc.kill9();
    let a_dead = SystemTime::now();
    terms.push(Term {
        who: "A (until SIGKILL)",
        from: a_from,
        to: a_dead,
    });
    let b_from = b.wait_log(ACQUIRED, 1, TTL + Duration::from_secs(5)).await;
    let takeover_kill = since(b_from, kill_sent);
    println!(
        "lease: takeover after SIGKILL of the leader: {takeover_kill:.2?} (TTL {TTL:?}, kill took {:.1?})",
        since(a_dead, kill_sent)
    );
    assert!(
        b_from > a_dead,
        "B acquired before A was dead: {b_from:?} vs {a_dead:?}"
    );
    assert!(
        takeover_kill <= TTL + Duration::from_millis(1500),
        "takeover took {takeover_kill:?}, TTL is {TTL:?}"
    );
    assert!(
        takeover_kill >= TTL - KEEP_ALIVE - Duration::from_millis(500),
        "B took over after {takeover_kill:?}: before A's lease could have expired"
    );
    assert_eq!(owner(&store, &lock).await, Some(b.owner()));
    let t = Instant::now();
    while !b.answers().await {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new leader does not serve"
        );
    }
    // B reconciles now: it rolls the interrupted create back.
    let t = Instant::now();
    while store.get(seeded_key.as_bytes()).await.unwrap().is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the new leader did not roll back the interrupted create"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled = b.proc.log_lines("rolling back an interrupted create");
    assert_eq!(rolled.len(), 1, "{rolled:?}");
    assert!(rolled[0].0 >= b_from && rolled[0].1.contains(&seeded));

    // --- A comes back and waits in turn.
    a.proc.start();
    a.wait_log(WAITING, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(KEEP_ALIVE).await;
    assert_eq!(a.count(ACQUIRED), 1, "A acquired while B holds the lease");
    assert!(!a.answers().await, "the restarted standby answers requests");
    assert_eq!(owner(&store, &lock).await, Some(b.owner()));

    // --- SIGTERM B: it releases the lease, A takes over at once.
    let term_sent = SystemTime::now();
    let code = b.proc.terminate();
    assert_eq!(code, Some(0), "SIGTERM exit code");
    let a_from2 = a.wait_log(ACQUIRED, 2, TTL + Duration::from_secs(5)).await;
    let b_stopping = b
        .wait_log("stopping: releasing the leader lease", 1, Duration::ZERO)
        .await;
    let b_released = b.wait_log("lease lock released", 1, Duration::ZERO).await;
    terms.push(Term {
        who: "B (until SIGTERM)",
        from: b_from,
        to: b_stopping,
    });
    let takeover_term = since(a_from2, term_sent);
    println!(
        "lease: takeover after SIGTERM of the leader: {takeover_term:.2?} (B stopped {:.1?} and released {:.1?} after the signal)",
        since(b_stopping, term_sent),
        since(b_released, term_sent)
    );
    assert!(
        takeover_term < TTL / 2,
        "takeover after SIGTERM took {takeover_term:?}: the lease was not released"
    );
    assert_eq!(owner(&store, &lock).await, Some(a.owner()));

    // --- The lock vanishes under A: it stops at once, exit code 2.
    let t = Instant::now();
    while !a.answers().await {
        assert!(t.elapsed() < Duration::from_secs(10), "A does not serve");
    }
    let deleted = SystemTime::now();
    assert!(store.delete(lock.as_bytes()).await.unwrap());
    let code = tokio::task::block_in_place(|| a.proc.wait_exit(Duration::from_secs(5)))
        .unwrap_or_else(|()| panic!("A kept running without its lock"));
    let a_gone = SystemTime::now();
    assert_eq!(code, Some(2), "exit code of a leader that lost its lease");
    assert_eq!(a.count("the leader lease was lost"), 1);
    println!(
        "lease: a leader whose lock was deleted exited (code 2) {:.2?} later",
        since(a_gone, deleted)
    );
    terms.push(Term {
        who: "A (until its lock vanished)",
        from: a_from2,
        to: a_gone,
    });

    // --- Never two leaders: the terms follow one another.
    terms.sort_by_key(|t| t.from);
    for w in terms.windows(2) {
        assert!(
            w[0].to <= w[1].from,
            "{} overlaps {}: ends {:?}, the next began {:?}",
            w[0].who,
            w[1].who,
            w[0].to,
            w[1].from
        );
        println!(
            "lease: {} -> {}: gap {:.2?}",
            w[0].who,
            w[1].who,
            since(w[1].from, w[0].to)
        );
    }
    let acquisitions = a.count(ACQUIRED) + b.count(ACQUIRED);
    assert_eq!(acquisitions, terms.len(), "an acquisition without a term");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_told_to_restart_comes_back_in_place_after_losing_its_lock() {
    let (_etcd, etcd_ep, _etcd_data) = etcd_in_memory(&format!("{PREFIX}.11"));
    let store = EtcdStore::connect(std::slice::from_ref(&etcd_ep), Duration::from_secs(5))
        .await
        .unwrap();
    let lock = StoreKeys::new("default", "mayastor").lease_lock("core-agent");
    let ip = format!("{PREFIX}.12");
    let ep = format!("{ip}:{}", free_port(&ip));
    let mut args = core_args(PREFIX, &etcd_ep, &ep, &Timers::default());
    args.extend(["--on-lease-loss".to_string(), "restart".to_string()]);
    let mut a = Agent {
        proc: Proc::spawn("agent-core-restart", bin("agent-core", "agent-core"), args),
        ep,
    };
    a.wait_log(ACQUIRED, 1, Duration::from_secs(60)).await;
    let pid = a.proc.pid().unwrap();
    let t = Instant::now();
    while !a.answers().await {
        assert!(t.elapsed() < Duration::from_secs(10), "A does not serve");
    }
    assert_eq!(owner(&store, &lock).await, Some(a.owner()));

    let deleted = SystemTime::now();
    assert!(store.delete(lock.as_bytes()).await.unwrap());
    let lost = a
        .wait_log("the leader lease was lost", 1, Duration::from_secs(5))
        .await;
    assert!(since(lost, deleted) < Duration::from_secs(2), "lost late");
    // A fresh instance: it waits for the lease, takes it and serves.
    a.wait_log(WAITING, 2, Duration::from_secs(10)).await;
    let again = a.wait_log(ACQUIRED, 2, Duration::from_secs(10)).await;
    assert!(a.proc.is_running(), "the restarted agent exited");
    assert_eq!(a.proc.pid(), Some(pid), "restarted under another PID");
    assert_eq!(owner(&store, &lock).await, Some(a.owner()));
    let t = Instant::now();
    while !a.answers().await {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the restarted agent does not serve"
        );
    }
    println!(
        "lease: a leader told to restart was leading again {:.2?} after its lock vanished",
        since(again, deleted)
    );
}
