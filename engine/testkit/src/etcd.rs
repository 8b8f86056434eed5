//! A real etcd (Debian's `etcd-server`) on a loopback address with free
//! ports, stopped by PID.

use std::path::PathBuf;

use crate::{free_port, wait_port, Proc};

/// The etcd binary: on `PATH`, else the usual places.
fn program() -> PathBuf {
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| PathBuf::from(dir).join("etcd"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| {
            ["/usr/bin/etcd", "/usr/local/bin/etcd"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("etcd is not installed: run `apt-get install -y etcd-server` (scripts/test.sh does)")
        })
}

/// A real etcd on `ip` with its data in a fresh directory (kept after the
/// test, under the system's temporary directory); returns the process and
/// its `IP:PORT` client endpoint.
pub fn start(ip: &str) -> (Proc, String) {
    start_with_data(ip, tempfile::tempdir().unwrap().keep())
}

/// A real etcd whose data lives in memory (`/dev/shm` when there is one),
/// removed when the returned directory is dropped: for tests that time the
/// store, so that a slow disk shared with other work does not count.
pub fn start_in_memory(ip: &str) -> (Proc, String, tempfile::TempDir) {
    let data = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let (proc, ep) = start_with_data(ip, data.path().to_path_buf());
    (proc, ep, data)
}

/// A real etcd keeping its data in `data`; waits until it listens.
pub fn start_with_data(ip: &str, data: PathBuf) -> (Proc, String) {
    start_with_args(ip, data, &[])
}

/// [`start_with_data`] with `extra` flags after ours (e.g. shorter
/// `--heartbeat-interval` and `--election-timeout`, so that a fresh etcd
/// elects itself sooner).
pub fn start_with_args(ip: &str, data: PathBuf, extra: &[&str]) -> (Proc, String) {
    let client = free_port(ip);
    let peer = free_port(ip);
    let c = format!("http://{ip}:{client}");
    let p = format!("http://{ip}:{peer}");
    let proc = Proc::spawn(
        "etcd",
        program(),
        vec![
            "--name".into(),
            "t".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            c.clone(),
            "--advertise-client-urls".into(),
            c,
            "--listen-peer-urls".into(),
            p.clone(),
            "--initial-advertise-peer-urls".into(),
            p.clone(),
            "--initial-cluster".into(),
            format!("t={p}"),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| (*a).to_owned()))
        .collect(),
    );
    let ep = format!("{ip}:{client}");
    wait_port(&ep, "etcd");
    (proc, ep)
}
