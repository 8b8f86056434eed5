//! The local cluster (`mayastor-local`) as a test fixture, for every suite
//! that needs a whole cluster: the launcher and the binaries it starts
//! built by [`crate::bin`], `up` in a temporary home, the launcher's other
//! commands run on the same state directory, and `down --wipe` however the
//! test ends (with the components' logs printed when it fails).
//!
//! The state directory is `$XDG_DATA_HOME/mayastor-local` of that
//! temporary home, where the kubectl plugin and the dashboard find the
//! cluster's endpoint file when run with [`LocalCluster::envs`].

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The binaries `mayastor-local up` starts: (package, binary).
const CLUSTER_BINARIES: [(&str, &str); 5] = [
    ("store", "mayastor-store"),
    ("agent-core", "agent-core"),
    ("api-rest", "api-rest"),
    ("io-engine", "io-engine"),
    ("metrics-exporter", "metrics-exporter"),
];

/// The launcher, with every binary it starts built beside it.
pub fn launcher() -> PathBuf {
    for (pkg, bin) in CLUSTER_BINARIES {
        crate::bin(pkg, bin);
    }
    crate::bin("mayastor-local", "mayastor-local")
}

/// Another binary of the workspace built beside the launcher (`api-rest`,
/// `kubectl-mayastor`, ...).
pub fn binary(name: &str) -> PathBuf {
    let path = launcher()
        .parent()
        .expect("the launcher is in a directory")
        .join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A running local cluster; `down --wipe` when dropped.
pub struct LocalCluster {
    launcher: PathBuf,
    /// The `--ip-prefix` (`127.0.N`): engine `i` is `PREFIX.i`.
    pub prefix: String,
    /// `XDG_DATA_HOME` of the launcher (and of tools run with [`Self::envs`]).
    pub data_home: PathBuf,
    /// The launcher's `--state-dir`.
    pub state_dir: PathBuf,
    /// The REST endpoint `up` printed.
    pub rest_url: String,
    home: tempfile::TempDir,
}

impl LocalCluster {
    /// `up --nodes N --ip-prefix PREFIX` plus `extra` flags (`--store etcd`,
    /// `--pool-size 1GiB`, ...); fails the test, with the launcher's output,
    /// when `up` fails.
    pub fn up(prefix: &str, nodes: u32, extra: &[&str]) -> LocalCluster {
        let launcher = launcher();
        // Pools are files: keep them in memory when the machine has /dev/shm.
        let home = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let data_home = home.path().join("data");
        std::fs::create_dir_all(&data_home).unwrap();
        let mut cluster = LocalCluster {
            launcher,
            prefix: prefix.to_owned(),
            state_dir: data_home.join("mayastor-local"),
            data_home,
            rest_url: String::new(),
            home,
        };
        let nodes = nodes.to_string();
        let mut args = vec!["up", "--nodes", &nodes, "--ip-prefix", prefix];
        args.extend_from_slice(extra);
        let out = cluster.run(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let rest = stdout
            .lines()
            .find_map(|l| l.strip_prefix("REST endpoint: "))
            .map(|u| u.trim().to_owned());
        assert!(
            out.status.success() && rest.is_some(),
            "mayastor-local up failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.rest_url = rest.unwrap_or_default();
        cluster
    }

    /// The environment tools run with to find this cluster (`HOME` and
    /// `XDG_DATA_HOME` of its temporary home).
    pub fn envs(&self) -> [(&'static str, &Path); 2] {
        [
            ("HOME", self.home.path()),
            ("XDG_DATA_HOME", &self.data_home),
        ]
    }

    /// The launcher on this cluster's state directory, ready for a command.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.launcher);
        cmd.arg("--state-dir")
            .arg(&self.state_dir)
            .envs(self.envs());
        cmd
    }

    /// Runs the launcher command `args` on this cluster.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.launcher.display()))
    }

    /// The launcher's path.
    pub fn launcher_path(&self) -> &Path {
        &self.launcher
    }

    /// The components' logs directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// PID of engine `i` (1-based) from the launcher's records, when it is
    /// a running io-engine.
    pub fn engine_pid(&self, i: u32) -> Option<i32> {
        let file = self.state_dir.join(format!("pids/io-engine-{i}.pid"));
        let pid: i32 = std::fs::read_to_string(file)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("io-engine")
            .then_some(pid)
    }

    /// SIGKILLs engine `i`; false when it was not running.
    pub fn kill_engine(&self, i: u32) -> bool {
        self.engine_pid(i).is_some_and(|pid| {
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(&self.logs_dir());
        }
        let out = self.command().args(["down", "--wipe"]).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "mayastor-local down --wipe failed: {}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run mayastor-local down: {e}"),
        }
    }
}

/// Prints the last lines of every log file in `dir` (for a failing test).
pub fn print_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        crate::print_tail(&path);
    }
}
