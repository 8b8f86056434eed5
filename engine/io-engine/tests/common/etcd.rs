//! A real etcd (Debian's `etcd-server`) for tests, from the workspace's
//! process test kit: started on a loopback address with free ports and a
//! temporary data directory, stopped by PID (SIGKILL) when dropped.

#![allow(dead_code)]

use testkit::Proc;

pub struct Etcd {
    _proc: Proc,
    pub endpoint: String,
}

impl Etcd {
    /// Starts etcd on `ip` and waits until its client port accepts
    /// connections.
    pub fn start(ip: &str) -> Etcd {
        let (proc, endpoint) = testkit::etcd::start(ip);
        Etcd {
            _proc: proc,
            endpoint,
        }
    }
}
