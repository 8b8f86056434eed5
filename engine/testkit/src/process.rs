//! Real processes: binaries of the workspace built on demand, each run with
//! its log in a temporary directory and stopped by PID.

use std::{
    fs,
    io::Read,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

/// A free TCP port on `ip` (an address such as `127.0.90.1`).
pub fn free_port(ip: &str) -> u16 {
    let ip: IpAddr = ip
        .parse()
        .unwrap_or_else(|e| panic!("{ip:?} is not an IP address: {e}"));
    free_port_on(ip).port()
}

/// `ip` with a TCP port free on it right now.
pub fn free_port_on(ip: impl Into<IpAddr>) -> SocketAddr {
    let ip = ip.into();
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    l.local_addr().unwrap()
}

static BUILT: Mutex<bool> = Mutex::new(false);

/// Path of binary `bin` of package `pkg`, built if needed. An environment
/// variable named after the binary (`IO_ENGINE_BIN` for `io-engine`)
/// overrides it.
///
/// The first call of a test process builds what the workspace's test run
/// builds (`cargo test --no-run --workspace`): the same feature set as the
/// suite itself, so under `cargo nextest run --workspace` it is a no-op, and
/// no test rebuilds the dependencies with another feature set (which a
/// `cargo build -p <pkg>` does, and which would also replace the suite's
/// binaries under `target/` with other builds).
pub fn bin(pkg: &str, bin: &str) -> PathBuf {
    let var = format!("{}_BIN", bin.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let profile_dir = profile_dir();
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !*built {
        build_workspace(&profile_dir, pkg, bin, &path);
        *built = true;
    }
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// `target/<profile>` of the running test: its binary is
/// `target/<profile>/deps/<test>`, and the workspace's binaries sit in the
/// directory above.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the test binary sits in target/<profile>/deps")
}

/// Runs `command` (no stdin) and returns its standard output; fails the
/// test, with both outputs, when it cannot start or exits non-zero.
/// `what` names it in the failure.
pub fn run_ok(command: &mut Command, what: &str) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `cargo test --no-run --workspace` into the target directory of
/// `profile_dir` (`target/debug` is the default profile).
fn build_workspace(profile_dir: &Path, pkg: &str, bin: &str, path: &Path) {
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let mut args = vec!["test", "--no-run", "--quiet", "--workspace"];
    let profile = profile_dir.file_name().and_then(|n| n.to_str());
    let named;
    match profile {
        Some("debug") | None => {}
        Some("release") => args.push("--release"),
        Some(other) => {
            named = other.to_string();
            args.extend(["--profile", &named]);
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args(&args).env("CARGO_TARGET_DIR", &target_dir);
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str().filter(|n| is_per_package_var(n)) {
            command.env_remove(name);
        }
    }
    let out = command.output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "building {bin} of {pkg} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if path.exists() => eprintln!("cannot run {cargo} ({e}); using {}", path.display()),
        Err(e) => panic!("cannot run {cargo} to build {bin} of {pkg}: {e}"),
    }
}

/// Whether `name` is one of the variables cargo (or nextest) sets for the
/// package whose test is running (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`,
/// `CARGO_BIN_EXE_<bin>`, ...).
///
/// They must not reach the build: some build scripts (ring's among them)
/// ask to be rerun when such a variable changes, and it has another value
/// in every package's tests than in the shell that built the suite. Passed
/// on, they would make each package's first test rebuild those crates and
/// everything above them, and the next package's test rebuild them back,
/// all under cargo's build lock that every other test waits for.
fn is_per_package_var(name: &str) -> bool {
    const EXACT: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
        "RUST_RECURSION_COUNT",
    ];
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "NEXTEST"];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A supervised child process.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    /// Environment changes: a value sets the variable, `None` removes it.
    env: Vec<(String, Option<String>)>,
    child: Option<Child>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `program` with `args`, stdout and stderr into its log.
    pub fn spawn(name: &str, program: PathBuf, args: Vec<String>) -> Proc {
        Proc::spawn_env(name, program, args, &[])
    }

    /// [`Proc::spawn`] with changes to the inherited environment (kept for
    /// every restart): `(key, Some(value))` sets `key` (`RUST_LOG` too,
    /// which is otherwise the test's own or `info`), `(key, None)` removes
    /// it.
    pub fn spawn_env(
        name: &str,
        program: PathBuf,
        args: Vec<String>,
        env: &[(&str, Option<&str>)],
    ) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect();
        let mut p = Proc {
            name: name.to_owned(),
            program,
            args,
            env,
            child: None,
            log,
            _dir: dir,
        };
        p.start();
        p
    }

    /// Starts it again (after [`Proc::kill9`] or [`Proc::terminate`]),
    /// appending to the same log.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(&self.program);
        command.args(&self.args).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// The command line the process runs with.
    pub fn args(&self) -> &[String] {
        &self.args
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

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGTERM and wait (SIGKILL after 20 s); returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        let mut c = self.child.take()?;
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

    /// Waits up to `timeout` for the process to exit by itself; returns
    /// its exit code (`None` when killed by a signal), or `Err(())` when it
    /// is still running (then it keeps running).
    #[allow(clippy::result_unit_err)]
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

    /// The whole log so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The log lines that contain `needle`, with their timestamps.
    pub fn log_lines(&self, needle: &str) -> Vec<(std::time::SystemTime, String)> {
        self.logs()
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| Some((crate::log_time(l)?, l.to_owned())))
            .collect()
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

/// Waits (30 s at most) until `addr` accepts TCP connections.
pub fn wait_port(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of a log, on a failure.
pub fn print_tail(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    eprintln!("==== {} (last lines)", path.display());
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::is_per_package_var;

    #[test]
    fn the_running_package_s_variables_stay_out_of_the_build() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_BIN_EXE_io-engine",
            "CARGO_CRATE_NAME",
            "NEXTEST_RUN_ID",
            "OUT_DIR",
        ] {
            assert!(is_per_package_var(name), "{name} reaches the build");
        }
        // What configures the build itself is kept.
        for name in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO_PROFILE_DEV_DEBUG",
            "CARGO_INCREMENTAL",
            "RUSTFLAGS",
            "PATH",
        ] {
            assert!(!is_per_package_var(name), "{name} is dropped");
        }
    }
}
