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
    etcd_with_data(ip, tempfile::tempdir().unwrap().keep())
}

/// A real etcd whose data lives in memory (`/dev/shm` when there is one),
/// removed when the returned directory is dropped: for tests that time the
/// store, so that a slow disk shared with other work does not count.
pub fn etcd_in_memory(ip: &str) -> (Proc, String, tempfile::TempDir) {
    let data = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let (proc, ep) = etcd_with_data(ip, data.path().to_path_buf());
    (proc, ep, data)
}

/// A real etcd keeping its data in `data`.
pub fn etcd_with_data(ip: &str, data: PathBuf) -> (Proc, String) {
    let client = free_port(ip);
    let peer = free_port(ip);
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
    /// More `agent-core` flags (e.g. a reconciler's own period).
    pub core_extra: &'static [&'static str],
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            faulted_child_wait: "4s",
            gc_period: "3s",
            core_extra: &[],
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
    let base = [
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
    ];
    // A flag in `core_extra` replaces the default above.
    let mut args: Vec<String> = base
        .chunks(2)
        .filter(|pair| !t.core_extra.contains(&pair[0]))
        .flatten()
        .map(|s| s.to_string())
        .collect();
    args.extend(t.core_extra.iter().map(|s| s.to_string()));
    args
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

// ------------------------------------------------- process and log helpers

impl Proc {
    /// The command line the process runs with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Waits up to `timeout` for the process to exit by itself; returns
    /// its exit code (`None` when killed by a signal), or `Err(())` when it
    /// is still running (then it keeps running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, ()> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.child.as_mut() else {
                return Ok(None);
            };
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                return Err(());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines that contain `needle`, with their timestamps.
    pub fn log_lines(&self, needle: &str) -> Vec<(std::time::SystemTime, String)> {
        self.logs()
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| Some((log_time(l)?, l.to_owned())))
            .collect()
    }
}

impl Cluster {
    /// The gRPC endpoint of engine `i` (0-based, in start order).
    pub fn engine_endpoint(&self, i: usize) -> String {
        let args = self.engines[i].args();
        let at = args.iter().position(|a| a == "--grpc-endpoint").unwrap();
        args[at + 1].clone()
    }
}

/// The timestamp a log line of ours starts with (RFC 3339 UTC, as the
/// tracing formatter writes it: `2024-05-01T10:00:00.123456Z`).
pub fn log_time(line: &str) -> Option<std::time::SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?;
    let (ss, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let ss: i64 = ss.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits = &frac[..frac.len().min(9)];
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    // Days since 1970-01-01 of a civil date.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(std::time::UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}
