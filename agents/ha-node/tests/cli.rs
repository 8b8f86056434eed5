//! The `agent-ha-node` binary as an operator starts it: a bad flag or a
//! wildcard endpoint without `--advertise-endpoint` is one clear error, and
//! on a host without the kernel's native NVMe multipath (a sysfs tree
//! whose `nvme_core` says `N`) the agent says HA cannot work there, keeps
//! answering on its port, and stops on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_agent-ha-node");

fn free_endpoint() -> String {
    let l = TcpListener::bind("127.0.155.200:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn sysfs_without_multipath(root: &Path) {
    let params = root.join("module/nvme_core/parameters");
    std::fs::create_dir_all(&params).unwrap();
    std::fs::write(params.join("multipath"), "N\n").unwrap();
    std::fs::create_dir_all(root.join("class/nvme")).unwrap();
}

#[test]
fn bad_flags_are_one_clear_error() {
    for (args, expected) in [
        (
            vec!["--node-name", "n1", "--interval", "soon"],
            "invalid value 'soon' for '--interval",
        ),
        (
            vec!["--node-name", "n1", "--grpc-endpoint", "0.0.0.0:0"],
            "is a wildcard: give --advertise-endpoint",
        ),
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("NODE_NAME")
            .env_remove("ADVERTISE_ENDPOINT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn without_native_multipath_it_says_ha_cannot_work_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sysfs = dir.path().join("sys");
    sysfs_without_multipath(&sysfs);
    let endpoint = free_endpoint();
    let log = dir.path().join("agent.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(BIN)
        .args(["--node-name", "node-1", "--grpc-endpoint", &endpoint])
        .arg("--sysfs")
        .arg(&sysfs)
        .args(["--log-format", "json"])
        .env_remove("ADVERTISE_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("HA cannot work here") || Instant::now() > deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.contains("native NVMe multipath is off on this host"),
        "{text}"
    );
    // Still serving its port (ReplacePath is refused there, not unreachable).
    assert!(TcpStream::connect(&endpoint).is_ok(), "{text}");
    assert!(child.try_wait().unwrap().is_none(), "it exited:\n{text}");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("HA node agent stopped"), "{text}");
}
