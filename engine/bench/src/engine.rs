//! A real `io-engine` daemon started by `io-bench` for the NVMe/TCP modes,
//! driven through the real `io-engine-client`, and CPU pinning.
//!
//! [`EngineProc::start`] spawns the daemon on a loopback address with free
//! ports (pinned to one CPU when asked, from before its first thread, so
//! every thread it makes inherits the mask), waits until its gRPC port
//! accepts connections, and [`EngineProc::share_replica`] creates a pool, a
//! thick replica and shares it over NVMe/TCP, returning the `nvmf://` URI
//! our initiator connects to. The daemon's log goes to a file in the
//! system temporary directory (named in errors). Dropping the handle
//! sends SIGTERM, waits up to 10 s, then SIGKILLs it by PID.
//!
//! Binaries: `io-engine` and `io-engine-client` next to the running
//! `io-bench` (so `cargo build --release -p io-engine -p io-engine-client
//! -p io-bench` puts all three in `target/release`), unless given.
//!
//! Threading model: blocking calls (process spawn, the client binary),
//! made outside the measurements.

use std::{
    io,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::BenchError;

/// How long the daemon may take to accept gRPC connections or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Host NQN `io-bench`'s initiator connects with.
pub const BENCH_HOST_NQN: &str = "nqn.2019-05.io.openebs:node-name:io-bench";

/// Where the binaries are and where the engine listens.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// `io-engine` (default: next to this executable).
    pub engine_bin: Option<PathBuf>,
    /// `io-engine-client` (default: next to this executable).
    pub client_bin: Option<PathBuf>,
    /// Loopback IP the engines listen on.
    pub ip: IpAddr,
    /// CPU the engines are pinned to (`None`: not pinned).
    pub cpu: Option<usize>,
    /// Start the engines with `--poll`.
    pub poll: bool,
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            engine_bin: None,
            client_bin: None,
            ip: IpAddr::from([127, 0, 170, 1]),
            cpu: None,
            poll: false,
        }
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn engine_err(message: String) -> BenchError {
    BenchError::Engine(message)
}

/// Pins thread (or process main thread) `tid` (0: the calling thread) to
/// `cpu`. Threads created afterwards inherit the mask.
pub fn pin_thread(tid: i32, cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::other(format!("CPU {cpu} is out of range")));
    }
    // SAFETY: `cpu_set_t` is plain old data (all-zero is the empty set);
    // `CPU_SET` writes within it (checked bound above); `sched_setaffinity`
    // reads `size_of::<cpu_set_t>()` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins every current thread of process `pid` to `cpu`.
pub fn pin_process(pid: u32, cpu: usize) -> io::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .ok_or_else(|| io::Error::other("unexpected entry in /proc/PID/task"))?;
        pin_thread(tid, cpu)?;
    }
    Ok(())
}

fn free_port(ip: IpAddr) -> Result<u16, BenchError> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| engine_err(format!("no free port on {ip}: {e}")))
}

/// A running `io-engine`.
#[derive(Debug)]
pub struct EngineProc {
    child: Child,
    grpc: SocketAddr,
    client_bin: PathBuf,
    log: PathBuf,
}

impl EngineProc {
    /// Starts a daemon named `node` and waits until it serves gRPC.
    pub fn start(spec: &EngineSpec, node: &str) -> Result<Self, BenchError> {
        let engine_bin = spec
            .engine_bin
            .clone()
            .unwrap_or_else(|| sibling("io-engine"));
        let client_bin = spec
            .client_bin
            .clone()
            .unwrap_or_else(|| sibling("io-engine-client"));
        for bin in [&engine_bin, &client_bin] {
            if !bin.is_file() {
                return Err(engine_err(format!(
                    "{} not found: build it (cargo build --release -p io-engine -p io-engine-client) or give --engine-bin/--client-bin",
                    bin.display()
                )));
            }
        }
        let grpc = SocketAddr::new(spec.ip, free_port(spec.ip)?);
        let nvmf = SocketAddr::new(spec.ip, free_port(spec.ip)?);
        let log = std::env::temp_dir().join(format!(
            "io-bench-{}-{node}-{}.log",
            std::process::id(),
            grpc.port()
        ));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| engine_err(format!("{}: {e}", log.display())))?;
        let mut cmd = Command::new(&engine_bin);
        cmd.arg("--grpc-endpoint")
            .arg(grpc.to_string())
            .arg("--nvmf-endpoint")
            .arg(nvmf.to_string())
            .arg("--node-name")
            .arg(node)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if spec.poll {
            cmd.arg("--poll");
        }
        if let Some(cpu) = spec.cpu {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(engine_err(format!("CPU {cpu} is out of range")));
            }
            // SAFETY: the closure runs in the forked child before exec and
            // only makes the `sched_setaffinity` system call (through
            // `pin_thread`, which does not allocate on success).
            unsafe {
                cmd.pre_exec(move || pin_thread(0, cpu));
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| engine_err(format!("cannot start {}: {e}", engine_bin.display())))?;
        let mut engine = EngineProc {
            child,
            grpc,
            client_bin,
            log,
        };
        engine.wait_ready()?;
        Ok(engine)
    }

    fn wait_ready(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(engine_err(format!(
                    "io-engine exited ({status}) before serving: see {}",
                    self.log.display()
                )));
            }
            if TcpStream::connect_timeout(&self.grpc, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(engine_err(format!(
                    "io-engine did not serve gRPC on {} within {START_TIMEOUT:?}: see {}",
                    self.grpc,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Runs `io-engine-client --endpoint <engine> <args>`; its stdout.
    pub fn client(&self, args: &[&str]) -> Result<String, BenchError> {
        let out = Command::new(&self.client_bin)
            .arg("--endpoint")
            .arg(self.grpc.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| engine_err(format!("cannot run {}: {e}", self.client_bin.display())))?;
        if !out.status.success() {
            return Err(engine_err(format!(
                "io-engine-client {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates pool `pool` on `disk_uri`, a thick replica `name` of
    /// `size_mib` in it, shares the replica for [`BENCH_HOST_NQN`] and
    /// returns the URI our initiator connects with (`?hostnqn=` added).
    pub fn share_replica(
        &self,
        pool: &str,
        disk_uri: &str,
        name: &str,
        size_mib: u64,
    ) -> Result<String, BenchError> {
        self.client(&["pool", "create", pool, disk_uri])?;
        self.create_shared_replica(pool, name, size_mib)
    }

    /// A thick replica `name` of `size_mib` in the existing pool `pool`,
    /// shared as in [`Self::share_replica`].
    pub fn create_shared_replica(
        &self,
        pool: &str,
        name: &str,
        size_mib: u64,
    ) -> Result<String, BenchError> {
        let size = size_mib.to_string();
        self.client(&["replica", "create", pool, name, "--size", &size])?;
        let uri = self.client(&[
            "replica",
            "share",
            pool,
            name,
            "--allowed-host",
            BENCH_HOST_NQN,
        ])?;
        let base = uri.split('?').next().unwrap_or(&uri);
        if !base.starts_with("nvmf://") {
            return Err(engine_err(format!(
                "replica share printed {uri:?}, not an nvmf:// URI"
            )));
        }
        Ok(format!("{base}?hostnqn={BENCH_HOST_NQN}"))
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain system call on our own child's PID (not yet
            // reaped, so the PID cannot have been reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        self.terminate();
    }
}
