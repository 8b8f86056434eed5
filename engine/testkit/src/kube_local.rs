//! A real Kubernetes API server for tests: `shared/tools/kube-local`
//! (etcd and kube-apiserver on 127.0.0.1, optionally one real kubelet
//! node), driven through its `start`, `stop` and `image` commands and
//! kubectl. No Kubernetes client library here: tests that need one link
//! it themselves.
//!
//! - [`tool_dir`] / [`require_built`]: where the tool is, and a failure
//!   (never a skip) when it is missing or not built;
//! - [`KubeLocal::start`]: an API-server-only cluster in its own state
//!   directory (several may run at once); [`KubeLocal::start_with_node`]:
//!   the one worker node of the machine, which holds an exclusive `flock`
//!   on [`NODE_LOCK`] for its whole life (tests using it belong to the
//!   nextest group `kube-node`);
//! - the kubeconfig, kubectl, state directory, `kubectl apply`/`get`, and
//!   the `image` command (images built into the node's containerd).
//!
//! Stopping: `stop` of the tool, which signals only the PIDs recorded in
//! the state directory (and tears the node down); run when dropped. A
//! crashed test leaks nothing for long: every start has a TTL watchdog.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The lock every user of `start --with-node` holds (one node per machine).
pub const NODE_LOCK: &str = "/tmp/mayastor-kube-node.lock";

/// The kube-local tool directory: `KUBE_LOCAL_TOOL`, else
/// `shared/tools/kube-local` beside the workspace.
pub fn tool_dir() -> PathBuf {
    std::env::var_os("KUBE_LOCAL_TOOL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // engine/testkit -> workspace -> beside it.
            let beside =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/kube-local");
            std::fs::canonicalize(&beside).unwrap_or(beside)
        })
}

/// The directory of kube-local's built binaries: `KUBE_LOCAL_BIN`, else
/// `$KUBE_LOCAL_CACHE/bin` (default `/var/cache/kube-local/bin`).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("KUBE_LOCAL_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("KUBE_LOCAL_CACHE")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/var/cache/kube-local"), PathBuf::from)
                .join("bin")
        })
}

/// The tool directory; fails (never skips) when kube-local is missing or
/// not built (`with_node`: the node's binaries too).
pub fn require_built(with_node: bool) -> PathBuf {
    let tool = tool_dir();
    assert!(
        tool.join("start").is_file(),
        "kube-local not found at {}: set KUBE_LOCAL_TOOL to its directory",
        tool.display()
    );
    let bin = bin_dir();
    let mut wanted = vec!["kube-apiserver", "kube-controller-manager", "kubectl"];
    if with_node {
        wanted.extend(["kubelet", "kube-scheduler", "kube-proxy", "pause"]);
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|b| !bin.join(b).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "kube-local is not built ({} has no {}): run `{}/build` as root before this test \
         (6-10 minutes the first time, cached afterwards)",
        bin.display(),
        missing.join(", "),
        tool.display()
    );
    tool
}

/// How to start an instance.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `--with-controller-manager` (implied by the node).
    pub controller_manager: bool,
    /// Extra `--apiserver-arg=` values (e.g. `--service-cluster-ip-range=...`).
    pub apiserver_args: Vec<String>,
    /// Watchdog: everything stops after this long (default 1800 s).
    pub ttl: Option<Duration>,
}

/// A running kube-local instance; stopped when dropped.
pub struct KubeLocal {
    tool: PathBuf,
    state: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// The node lock, held until the instance is stopped.
    node_lock: Option<File>,
    stopped: bool,
}

impl std::fmt::Debug for KubeLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLocal")
            .field("state", &self.state)
            .field("node", &self.node_lock.is_some())
            .finish()
    }
}

impl KubeLocal {
    /// An API-server-only instance with its state in `state` (created by
    /// the tool if missing; it must not be another running instance's).
    pub fn start(state: &Path, opts: &StartOptions) -> KubeLocal {
        let tool = require_built(false);
        Self::launch(&tool, state, opts, None)
    }

    /// The machine's one worker node (root only); waits for the node lock
    /// first, and holds it until the instance is stopped.
    pub fn start_with_node(state: &Path, opts: &StartOptions) -> KubeLocal {
        let tool = require_built(true);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(NODE_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {NODE_LOCK}: {e}"));
        let waited = Instant::now();
        lock.lock()
            .unwrap_or_else(|e| panic!("cannot lock {NODE_LOCK}: {e}"));
        if waited.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "waited {:.1?} for the kube-local node lock",
                waited.elapsed()
            );
        }
        Self::launch(&tool, state, opts, Some(lock))
    }

    fn launch(tool: &Path, state: &Path, opts: &StartOptions, lock: Option<File>) -> KubeLocal {
        let started = Instant::now();
        let with_node = lock.is_some();
        let mut command = Command::new(tool.join("start"));
        command.arg("--state-dir").arg(state);
        if with_node {
            command.arg("--with-node");
        } else if opts.controller_manager {
            command.arg("--with-controller-manager");
        }
        for arg in &opts.apiserver_args {
            command.arg(format!("--apiserver-arg={arg}"));
        }
        let ttl = opts.ttl.unwrap_or(Duration::from_secs(1800)).as_secs();
        command.args(["--ttl", &ttl.to_string()]);
        let out = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/start: {e}", tool.display()));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| PathBuf::from(v.trim_matches(|c| c == '\'' || c == '"')))
        };
        let state = value("KUBE_LOCAL_STATE").unwrap_or_else(|| state.to_path_buf());
        let kube = KubeLocal {
            tool: tool.to_path_buf(),
            kubeconfig: value("KUBECONFIG").unwrap_or_else(|| state.join("kubeconfig")),
            kubectl: value("KUBE_LOCAL_KUBECTL").unwrap_or_else(|| bin_dir().join("kubectl")),
            state,
            node_lock: lock,
            stopped: false,
        };
        assert!(
            out.status.success() && kube.kubeconfig.is_file() && kube.kubectl.is_file(),
            "kube-local start failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "kube-local{} ready in {:.1?}",
            if with_node { " with its node" } else { "" },
            started.elapsed()
        );
        kube
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// kubectl with this instance's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// `kubectl ARGS` that must succeed; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self
            .kubectl()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_success(&out, &format!("kubectl {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `kubectl apply -f -` with `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_success(&out, &format!("kubectl apply of\n{yaml}\n"));
    }

    /// kube-local's `image` with `args` (e.g. `--name REF --busybox
    /// --entrypoint /bin/sh`): builds an image into the node's containerd.
    pub fn image(&self, args: &[&str]) {
        let out = Command::new(self.tool.join("image"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/image: {e}", self.tool.display()));
        assert_success(&out, &format!("kube-local image {}", args.join(" ")));
    }

    /// Stops the instance (also done when dropped); releases the node lock.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let out = Command::new(self.tool.join("stop"))
            .arg("--state-dir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "kube-local stop failed: {}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run kube-local stop: {e}"),
        }
        // Released only after the node is gone.
        self.node_lock.take();
    }
}

impl Drop for KubeLocal {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.stopped {
            print_tail(&self.state.join("kube-apiserver.log"));
            if self.node_lock.is_some() {
                print_tail(&self.state.join("kubelet.log"));
            }
        }
        self.stop_now();
    }
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub use crate::process::print_tail;
