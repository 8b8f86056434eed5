//! Test kit: real `io-engine` daemons and the real `io-engine-client`.
//!
//! - [`Engine::start`] spawns the daemon on a 127.0.x.y address, its log in
//!   a temporary directory, and waits until the gRPC port accepts
//!   connections (20 s, then fails with the log);
//! - [`Engine::client`] runs `io-engine-client --endpoint <engine>`;
//! - [`Engine::terminate`] sends SIGTERM and waits, [`Engine::kill9`] sends
//!   SIGKILL, [`Engine::restart`] starts the same daemon again; dropping an
//!   engine kills it, and prints its log when the test is failing.
//!
//! Binaries: the daemon is this package's (`CARGO_BIN_EXE_io-engine`). The
//! client belongs to another package, so the kit builds it once per test
//! process with the same cargo, profile and target directory (a no-op when
//! it is up to date); `IO_ENGINE_CLIENT_BIN` overrides that.
//!
//! Ports: give each test its own address (127.0.1.x) and use
//! [`free_port`], so tests run in parallel without clashes.

#![allow(dead_code)]

pub mod etcd;
pub mod patterns;
pub mod verify;

use std::{
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use testkit::Proc;

/// How long a daemon may take to accept connections or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `io-engine` daemon built for this test.
pub fn engine_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_io-engine"))
}

/// Path of an up-to-date `io-engine-client` (built once per test process;
/// `IO_ENGINE_CLIENT_BIN` overrides it).
pub fn client_bin() -> PathBuf {
    testkit::bin("io-engine-client", "io-engine-client")
}

pub use testkit::free_port;

/// Runs `io-engine-client --endpoint <endpoint> <args>`.
pub fn client(endpoint: &str, args: &[&str]) -> Output {
    Command::new(client_bin())
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run io-engine-client")
}

/// Stdout of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a run succeeded and returns its stdout.
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A running `io-engine` daemon.
pub struct Engine {
    pub addr: SocketAddr,
    pub node_name: String,
    proc: Proc,
}

impl Engine {
    /// Starts a daemon on `ip:port` (port 0: a free one) and waits until it
    /// accepts connections.
    pub fn start(ip: &str, port: u16, node_name: &str, extra_args: &[&str]) -> Engine {
        let port = if port == 0 { free_port(ip) } else { port };
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("valid IP:PORT");
        let mut args = vec![
            "--grpc-endpoint".to_string(),
            addr.to_string(),
            "--node-name".to_string(),
            node_name.to_string(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut engine = Engine {
            addr,
            node_name: node_name.to_string(),
            proc: Proc::spawn("io-engine", engine_bin(), args),
        };
        engine.wait_ready();
        engine
    }

    /// `IP:PORT` of the gRPC API.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Runs the client against this engine.
    pub fn client(&self, args: &[&str]) -> Output {
        client(&self.endpoint(), args)
    }

    /// Everything the daemon logged so far (all its runs).
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 20 s); returns
    /// the exit code (`None` when it had to be killed).
    pub fn terminate(&mut self) -> Option<i32> {
        self.proc.terminate()
    }

    /// Starts the daemon again, same address and arguments.
    pub fn restart(&mut self) {
        self.proc.start();
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.proc.is_running() {
                panic!("io-engine exited during start-up; log:\n{}", self.logs());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "io-engine did not accept connections on {} within 20 s; log:\n{}",
                    self.addr,
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `nexus list -o json` entry of `nexus` (panics when it is not listed).
pub fn nexus_json(engine: &Engine, nexus: &uuid::Uuid) -> serde_json::Value {
    let out = ok(engine.client(&["-o", "json", "nexus", "list"]));
    let list: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nexus list: {e}: {out}"));
    list.as_array()
        .and_then(|l| l.iter().find(|n| n["uuid"] == nexus.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("nexus {nexus} not listed: {out}"))
}

/// The child of a [`nexus_json`] entry backed by `replica`.
pub fn child_of<'a>(nexus: &'a serde_json::Value, replica: &uuid::Uuid) -> &'a serde_json::Value {
    nexus["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["uuid"] == replica.to_string()))
        .unwrap_or_else(|| panic!("child {replica} not in {nexus}"))
}
