//! Test kit of the control plane: a real etcd, real `io-engine` daemons on
//! 127.0.x.y addresses and a real `agent-core`, each a process with its log
//! in a temporary directory, stopped by PID (SIGKILL when dropped; the logs
//! are printed when the test fails).
//!
//! Binaries of other packages are built once per test process with the
//! same cargo, profile and target directory (a no-op when up to date).

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    fs,
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

/// A free TCP port on `ip`.
pub fn free_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    l.local_addr().unwrap().port()
}

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Path of binary `bin` of package `pkg`, built if needed.
pub fn bin(pkg: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap();
    if built.iter().any(|b| b == bin) {
        return path;
    }
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            pkg,
            "--bin",
            bin,
            "--profile",
            &profile,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "building {bin} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if path.exists() => eprintln!("cannot run {cargo} ({e}); using {}", path.display()),
        Err(e) => panic!("cannot run {cargo} to build {bin}: {e}"),
    }
    assert!(path.exists(), "{} is missing", path.display());
    built.push(bin.to_owned());
    path
}

/// A supervised child process.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn spawn(name: &str, program: PathBuf, args: Vec<String>) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let mut p = Proc {
            name: name.to_owned(),
            program,
            args,
            child: None,
            log,
            _dir: dir,
        };
        p.start();
        p
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 20 s); returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!("----- {} (last lines) -----", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_port(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A real etcd.
pub fn etcd(ip: &str) -> (Proc, String) {
    let client = free_port(ip);
    let peer = free_port(ip);
    let data = tempfile::tempdir().unwrap().keep();
    let c = format!("http://{ip}:{client}");
    let p = format!("http://{ip}:{peer}");
    let program = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("etcd is not installed: run `apt-get install -y etcd-server`"));
    let proc = Proc::spawn(
        "etcd",
        program,
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
        ],
    );
    let ep = format!("{ip}:{client}");
    wait_port(&ep, "etcd");
    (proc, ep)
}

/// Timers of a test cluster (short, so scenarios run in seconds).
#[derive(Clone)]
pub struct Timers {
    pub faulted_child_wait: &'static str,
    pub gc_period: &'static str,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            faulted_child_wait: "4s",
            gc_period: "3s",
        }
    }
}

/// etcd + agent-core + N engines, each engine with a pool on a file.
pub struct Cluster {
    pub etcd: Proc,
    pub etcd_ep: String,
    pub core: Proc,
    pub core_ep: String,
    pub engines: Vec<Proc>,
    pub nodes: Vec<String>,
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

/// The address of node `i` (1-based) of a cluster with address prefix
/// `prefix` (e.g. "127.0.3").
pub fn node_ip(prefix: &str, i: usize) -> String {
    format!("{prefix}.{}", 10 + i)
}

pub fn core_args(prefix: &str, etcd_ep: &str, core_ep: &str, t: &Timers) -> Vec<String> {
    let _ = prefix;
    [
        "--grpc-endpoint",
        core_ep,
        "--store",
        etcd_ep,
        "--heartbeat-timeout",
        "2s",
        "--reconcile-period",
        "1s",
        "--poll-period",
        "500ms",
        "--faulted-child-wait",
        t.faulted_child_wait,
        "--gc-period",
        t.gc_period,
        "--lease-ttl",
        "3s",
        "--engine-timeout",
        "10s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Cluster {
    /// Starts etcd on `<prefix>.1`, the core on `<prefix>.2` and `n`
    /// engines on `<prefix>.11...`.
    pub fn start(prefix: &str, n: usize, timers: Timers) -> Cluster {
        let (etcd, etcd_ep) = etcd(&format!("{prefix}.1"));
        let core_ip = format!("{prefix}.2");
        let core_ep = format!("{core_ip}:{}", free_port(&core_ip));
        let core = Proc::spawn(
            "agent-core",
            bin("agent-core", "agent-core"),
            core_args(prefix, &etcd_ep, &core_ep, &timers),
        );
        wait_port(&core_ep, "agent-core");
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let mut c = Cluster {
            etcd,
            etcd_ep,
            core,
            core_ep,
            engines: Vec::new(),
            nodes: Vec::new(),
            dir,
            prefix: prefix.to_owned(),
        };
        for i in 1..=n {
            c.add_engine(i);
        }
        c
    }

    pub fn engine_args(&self, i: usize) -> Vec<String> {
        let ip = node_ip(&self.prefix, i);
        let grpc = format!("{ip}:{}", free_port(&ip));
        let nvmf = format!("{ip}:{}", free_port(&ip));
        [
            "--grpc-endpoint",
            &grpc,
            "--node-name",
            &format!("node-{i}"),
            "--nvmf-endpoint",
            &nvmf,
            "-R",
            &self.core_ep,
            "--heartbeat-interval-ms",
            "500",
            "--ps-endpoint",
            &self.etcd_ep,
            "--child-io-timeout-ms",
            "3000",
            "--child-reconnect-timeout-ms",
            "1500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn add_engine(&mut self, i: usize) {
        let args = self.engine_args(i);
        let grpc = args[1].clone();
        let p = Proc::spawn(
            &format!("io-engine-{i}"),
            bin("io-engine", "io-engine"),
            args,
        );
        wait_port(&grpc, "io-engine");
        self.engines.push(p);
        self.nodes.push(format!("node-{i}"));
    }

    /// A pool file for node `i` (sparse).
    pub fn disk(&self, name: &str, size: u64) -> String {
        let path = self.dir.path().join(format!("{name}.img"));
        if !path.exists() {
            fs::File::create(&path).unwrap().set_len(size).unwrap();
        }
        format!("aio://{}", path.display())
    }

    pub fn rest_url(&self) -> String {
        format!("http://{}", self.core_ep)
    }
}

/// Polls `check` every 200 ms for up to `secs` seconds.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(()) => return,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs} s waiting for {what}: {last}");
}
