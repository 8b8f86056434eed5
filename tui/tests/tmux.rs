//! End to end: the real `kubectl-mayastor tui` in tmux against a local
//! cluster (`mayastor-local up --nodes 3 --ip-prefix 127.0.42`). Keys
//! navigate to a volume and scale it with confirmation; the screen read
//! with `capture-pane` shows the topology and the new replica count. An
//! engine killed with SIGKILL shows as a faulted child, and the rebuild
//! (when it comes back) as a progress bar or its events. Quitting and
//! SIGTERM both leave the terminal restored.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::procs::bin;
use common::tmux::{run, tmux};
use openapi::models::{CreateVolumeBody, PublishVolumeBody};
use openapi::{CoreApi, RestClient, RestClientOptions};
use testkit::LocalCluster;

const PREFIX: &str = "127.0.42";
const SESSION: &str = "tui-e2e-127-0-42";
const VOLUME: &str = "7e57e2e0-0000-4000-8000-00000000aa01";

fn screen() -> String {
    tmux(&["capture-pane", "-p", "-t", SESSION])
}

/// Captures the screen until `check` holds (at most `secs`); every capture
/// is also given to `seen`.
fn wait_screen(
    what: &str,
    secs: u64,
    mut seen: impl FnMut(&str),
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = screen();
        seen(&s);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {secs}s; screen:\n{s}"
        );
        sleep(Duration::from_millis(100));
    }
}

fn keys(keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", SESSION];
    args.extend_from_slice(keys);
    tmux(&args);
}

/// Stops the tmux session even when the test fails (the cluster stops
/// itself when dropped).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", SESSION])
            .output();
    }
}

fn start_tui(plugin: &Path, url: &str) {
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", SESSION])
        .output();
    // A shell runs the dashboard and prints its exit status into the pane
    // (tmux does not report the status of a pane process that ended on a
    // signal it handled).
    let cmd = format!(
        "bash -c '{} --rest {url} tui --interval 500ms; echo \"[dashboard exit status $?]\"'",
        plugin.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        SESSION,
        "-x",
        "100",
        "-y",
        "32",
        &cmd,
    ]);
    tmux(&["set-option", "-t", SESSION, "remain-on-exit", "on"]);
}

/// Waits for the dashboard to end with status 0, out of the alternate
/// screen. The status line may have scrolled into the pane's history.
fn wait_exit_status() {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = tmux(&["capture-pane", "-p", "-S", "-", "-t", SESSION]);
        if s.contains("[dashboard exit status 0]") {
            break;
        }
        assert!(
            !s.contains("[dashboard exit status"),
            "the dashboard failed:\n{s}"
        );
        assert!(
            Instant::now() < deadline,
            "the dashboard did not quit:\n{s}"
        );
        sleep(Duration::from_millis(100));
    }
    assert_eq!(pane("#{alternate_on}"), "0");
}

fn pane(format: &str) -> String {
    tmux(&["display-message", "-p", "-t", SESSION, format])
        .trim()
        .to_string()
}

#[test]
fn dashboard_against_a_local_cluster_in_tmux() {
    let plugin = bin("kubectl-mayastor", "kubectl-mayastor");
    let cluster = LocalCluster::up(PREFIX, 3, &[]);
    let _cleanup = Cleanup;
    let url = cluster.rest_url.clone();
    assert_eq!(url, format!("http://{PREFIX}.252:8081"));

    // a published 2-replica volume, made through the REST client
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = RestClient::new(&url, RestClientOptions::default()).unwrap();
    rt.block_on(async {
        client
            .put_volume(VOLUME, CreateVolumeBody::new(256 << 20, 2))
            .await
            .unwrap();
        client
            .put_volume_target(VOLUME, PublishVolumeBody::nvmf(Some("node-1"), None))
            .await
            .unwrap();
    });

    start_tui(&plugin, &url);
    wait_screen(
        "connected dashboard",
        30,
        |_| {},
        |s| s.contains("connected, updated"),
    );
    let s = screen();
    assert!(s.contains("node-1") && s.contains("pool-3"), "{s}");

    // navigate to the volume: its topology has a nexus and two children
    keys(&["2"]);
    let s = wait_screen(
        "volume topology",
        10,
        |_| {},
        |s| {
            s.contains("nexus ")
                && s.matches("├─ replica").count() + s.matches("└─ replica").count() == 2
        },
    );
    assert!(s.contains(&format!("> {VOLUME}")), "{s}");
    assert!(s.contains("on node-1: "), "{s}");

    // scale 2 -> 3 with confirmation
    keys(&["s"]);
    wait_screen(
        "scale dialog",
        5,
        |_| {},
        |s| s.contains("replicas: 2 -> 3"),
    );
    keys(&["Enter"]);
    let mut rebuild_seen = false;
    let s = wait_screen(
        "scaled volume with three children",
        60,
        |s| rebuild_seen |= s.contains("rebuild [") || s.contains("rebuild of replica"),
        |s| {
            s.contains("volume 7e57e2e0 scaled to 3 replicas")
                && s.matches("replica ").count() >= 3
                && s.contains(" Online   3 ")
        },
    );
    assert!(s.contains("REPLICAS"), "{s}");

    // kill the engine of a replica that is not on the nexus's node
    let victim = rt.block_on(async {
        let v = client.get_volume(VOLUME).await.unwrap();
        v.state
            .replica_topology
            .values()
            .filter_map(|t| t.node.clone())
            .find(|n| n != "node-1")
            .unwrap()
    });
    let index = victim.trim_start_matches("node-");
    assert!(
        cluster.kill_engine(index.parse().unwrap()),
        "io-engine of {victim} is not running"
    );
    let mut faulted = false;
    wait_screen(
        "faulted child",
        60,
        |s| faulted |= s.contains(&format!("on {victim} (")) && s.contains("Faulted"),
        |s| s.contains(&format!("node {victim} Offline")) || s.contains("Faulted"),
    );
    // bring it back: the child is rebuilt
    run(cluster
        .command()
        .args(["up", "--nodes", "3", "--ip-prefix", PREFIX]));
    wait_screen(
        "rebuilt volume",
        120,
        |s| {
            faulted |= s.contains("Faulted");
            rebuild_seen |= s.contains("rebuild [") || s.contains("rebuild of replica");
        },
        |s| {
            s.lines()
                .any(|l| l.contains(&format!("> {VOLUME}")) && l.contains(" Online "))
        },
    );
    assert!(faulted, "the killed engine's child never showed as Faulted");
    keys(&["5"]);
    let events = screen();
    rebuild_seen |= events.contains("rebuild of replica");
    assert!(
        rebuild_seen,
        "no rebuild progress bar or rebuild event seen:\n{events}"
    );

    // q quits and leaves the alternate screen
    keys(&["q"]);
    wait_exit_status();

    // SIGTERM also quits cleanly
    start_tui(&plugin, &url);
    wait_screen(
        "connected dashboard",
        30,
        |_| {},
        |s| s.contains("connected, updated"),
    );
    assert_eq!(pane("#{alternate_on}"), "1");
    let shell = pane("#{pane_pid}");
    let out = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !pid.is_empty(),
        "no dashboard process under the pane's shell"
    );
    run(Command::new("kill").args(["-TERM", &pid]));
    wait_exit_status();

    // Closing its terminal (the tmux session killed) ends it too.
    start_tui(&plugin, &url);
    wait_screen(
        "connected dashboard",
        30,
        |_| {},
        |s| s.contains("connected, updated"),
    );
    let shell = pane("#{pane_pid}");
    let out = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no dashboard process");
    tmux(&["kill-session", "-t", SESSION]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|st| st.split_whitespace().nth(2) == Some("Z"))
    {
        assert!(
            Instant::now() < deadline,
            "the dashboard (pid {pid}) keeps running after its terminal closed"
        );
        sleep(Duration::from_millis(100));
    }
}
