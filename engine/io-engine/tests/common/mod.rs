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
pub mod verify;

use std::{
    fs,
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

/// How long a daemon may take to accept connections or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of the `io-engine` daemon built for this test.
pub fn engine_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_io-engine"))
}

/// Path of an up-to-date `io-engine-client`.
pub fn client_bin() -> PathBuf {
    static CLIENT: OnceLock<PathBuf> = OnceLock::new();
    CLIENT.get_or_init(find_or_build_client).clone()
}

fn find_or_build_client() -> PathBuf {
    if let Some(path) = std::env::var_os("IO_ENGINE_CLIENT_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test>  ->  target/<profile>/io-engine-client
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let client = profile_dir.join("io-engine-client");
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let built = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "io-engine-client",
            "--bin",
            "io-engine-client",
        ])
        .arg("--profile")
        .arg(&profile)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match built {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "building io-engine-client failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if client.exists() => {
            eprintln!(
                "cannot run {cargo} ({e}); using the existing {}",
                client.display()
            );
        }
        Err(e) => panic!("cannot run {cargo} to build io-engine-client: {e}"),
    }
    assert!(client.exists(), "{} is missing", client.display());
    client
}

/// A free TCP port on `ip`.
pub fn free_port(ip: &str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    listener.local_addr().expect("bound address").port()
}

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
    extra_args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log_path: PathBuf,
}

impl Engine {
    /// Starts a daemon on `ip:port` (port 0: a free one) and waits until it
    /// accepts connections.
    pub fn start(ip: &str, port: u16, node_name: &str, extra_args: &[&str]) -> Engine {
        let port = if port == 0 { free_port(ip) } else { port };
        let addr: SocketAddr = format!("{ip}:{port}").parse().expect("valid IP:PORT");
        let dir = tempfile::tempdir().expect("temporary directory");
        let log_path = dir.path().join("io-engine.log");
        let mut engine = Engine {
            addr,
            node_name: node_name.to_string(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
            dir,
            log_path,
        };
        engine.spawn();
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
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Process id of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 20 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("engine is running");
        let sent = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", child.id()))
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for io-engine") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("io-engine ignored SIGTERM for 20 s; log:\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again, same address and arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the engine before restarting it");
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the engine log");
        let child = Command::new(engine_bin())
            .arg("--grpc-endpoint")
            .arg(self.endpoint())
            .arg("--node-name")
            .arg(&self.node_name)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn io-engine");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "io-engine exited during start-up ({status}); log:\n{}",
                    self.logs()
                );
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

    /// Directory the engine's log lives in (removed with the engine).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!("---- io-engine log ({}) ----\n{}", self.addr, self.logs());
        }
    }
}
