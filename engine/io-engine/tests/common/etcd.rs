//! A real etcd (Debian's `etcd-server`) for tests: started on a loopback
//! address with free ports and a temporary data directory, stopped by PID
//! (SIGKILL) when dropped.

#![allow(dead_code)]

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::free_port;

pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

fn etcd_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("etcd");
        if p.is_file() {
            return p;
        }
    }
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if std::path::Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("etcd is not installed: run `apt-get install -y etcd-server` (scripts/test.sh does)");
}

impl Etcd {
    /// Starts etcd on `ip` and waits until its client port accepts
    /// connections.
    pub fn start(ip: &str) -> Etcd {
        let dir = tempfile::tempdir().expect("etcd data dir");
        let client = free_port(ip);
        let peer = free_port(ip);
        let client_url = format!("http://{ip}:{client}");
        let peer_url = format!("http://{ip}:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new(etcd_bin())
            .args([
                "--name",
                "test",
                "--data-dir",
                &dir.path().join("data").display().to_string(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("test={peer_url}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = format!("{ip}:{client}");
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start on {addr}");
            thread::sleep(Duration::from_millis(50));
        }
        Etcd {
            child,
            endpoint: addr,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
