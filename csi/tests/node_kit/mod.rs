//! Test kit of the node plugin's tests in the VM (with `common`, which
//! the test declares beside it: the local cluster on the host): relays
//! that bring a listener of the host (an engine's NVMe/TCP target, a unix
//! socket) to 127.0.0.1, where the VM's guest forwards land; the nvme-vm
//! guest running `csi-node` with a shell on a forwarded port; and gRPC
//! clients of the plugin.
//!
//! ```text
//!  guest 10.0.2.100:4420 --guestfwd--> host 127.0.0.1:R --relay--> 127.0.110.1:8420 (target engine)
//!  host 127.0.0.1:G --hostfwd--> guest :10199 (csi-node gRPC)
//!  host 127.0.0.1:S --hostfwd--> guest :2323  (busybox nc -e sh: one command per connection)
//! ```

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use csi::v1::{identity_client::IdentityClient, node_client::NodeClient, ProbeRequest};
use openapi::{models::*, CoreApi, RestClient};
use tonic::transport::Channel;

use crate::common::rest_volume;

pub mod ha;

pub const MIB: u64 = 1 << 20;
/// The guest's node name (CSI node id, host NQN suffix).
pub const GUEST_NODE: &str = "csi-vm";
/// Where the guest reaches the relayed target.
pub const GUEST_TARGET: &str = "10.0.2.100:4420";

pub use testkit::free_port;

// ------------------------------------------------------------ volumes --

/// Creates a volume and publishes it on `target_node` for the guest.
pub async fn create_published(
    rest: &RestClient,
    size_bytes: u64,
    replicas: u8,
    target_node: &str,
) -> (uuid::Uuid, Volume) {
    let id = uuid::Uuid::new_v4();
    rest_volume(rest, &id.to_string(), size_bytes, replicas).await;
    let v = rest
        .put_volume_target(
            &id.to_string(),
            PublishVolumeBody::nvmf(Some(target_node), Some(GUEST_NODE)),
        )
        .await
        .unwrap();
    (id, v)
}

/// The publish context the controller would give the guest: the target's
/// URI with its address replaced by the guest's forward, and short nvme
/// timeouts.
pub fn publish_context(v: &Volume) -> HashMap<String, String> {
    let uri = &v.state.target.as_ref().expect("published").device_uri;
    let rest = uri.strip_prefix("nvmf://").expect("nvmf uri");
    let (_, path) = rest.split_once('/').expect("uri path");
    HashMap::from([
        ("uri".to_owned(), format!("nvmf://{GUEST_TARGET}/{path}")),
        ("nvmeCtrlLossTmo".to_owned(), "300".to_owned()),
        ("nvmeKeepAliveTmo".to_owned(), "5".to_owned()),
        ("nvmeReconnectDelay".to_owned(), "1".to_owned()),
        ("nvmeNrIoQueues".to_owned(), "1".to_owned()),
        ("ioTimeout".to_owned(), "60".to_owned()),
    ])
}

// -------------------------------------------------------------- relay --

/// Forwards every connection to 127.0.0.1:`port` on to its upstream (the
/// guest's forwards land on 127.0.0.1; our engines listen in this test's
/// loopback range, csi-controller on a unix socket).
pub struct Relay {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

/// A connected stream a relay copies from and to.
trait Stream: Read + Write + Send + 'static {
    fn duplicate(&self) -> Box<dyn Stream>;
    fn close(&self);
}

impl Stream for TcpStream {
    fn duplicate(&self) -> Box<dyn Stream> {
        Box::new(self.try_clone().unwrap())
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Stream for UnixStream {
    fn duplicate(&self) -> Box<dyn Stream> {
        Box::new(self.try_clone().unwrap())
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Relay {
    /// To a TCP listener.
    pub fn start(upstream: SocketAddr) -> Relay {
        Relay::spawn(move || {
            let up = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)).ok()?;
            let _ = up.set_nodelay(true);
            Some(Box::new(up) as Box<dyn Stream>)
        })
    }

    /// To a unix socket (e.g. csi-controller's).
    pub fn to_unix(socket: &Path) -> Relay {
        let socket = socket.to_path_buf();
        Relay::spawn(move || {
            let up = UnixStream::connect(&socket).ok()?;
            Some(Box::new(up) as Box<dyn Stream>)
        })
    }

    fn spawn(connect: impl Fn() -> Option<Box<dyn Stream>> + Send + 'static) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = conn else { continue };
                let Some(up) = connect() else { continue };
                let _ = down.set_nodelay(true);
                let down: Box<dyn Stream> = Box::new(down);
                for (mut from, mut to) in [(down.duplicate(), up.duplicate()), (up, down)] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        to.close();
                        from.close();
                    });
                }
            }
        });
        Relay { port, stop }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

// -------------------------------------------------------------- guest --

/// The nvme-vm guest running `csi-node`; stopped when dropped.
pub struct Guest {
    child: Option<Child>,
    pub log: PathBuf,
    pub grpc_port: u16,
    pub shell_port: u16,
    _dir: tempfile::TempDir,
}

fn nvme_vm() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/nvme-vm");
    assert!(
        dir.join("run").exists(),
        "the NVMe/TCP VM harness is missing at {} (it ships in ../shared beside the project)",
        dir.display()
    );
    dir
}

/// What the guest gets besides `csi-node`.
#[derive(Debug, Default)]
pub struct GuestSetup {
    /// `(GP, HP)`: the guest's 10.0.2.100:GP reaches the host's
    /// 127.0.0.1:HP.
    pub guest_forwards: Vec<(u16, u16)>,
    /// `(HP, GP)`: the host's 127.0.0.1:HP reaches the guest's :GP.
    pub host_forwards: Vec<(u16, u16)>,
    /// Host files put in the guest's PATH.
    pub copies: Vec<PathBuf>,
    /// Shell commands run in the guest before `csi-node` starts.
    pub script: String,
    /// Extra `csi-node` flags.
    pub csi_node_args: Vec<String>,
}

impl Guest {
    /// Boots the guest with `csi-node` (stripped copy of this build) and
    /// `blkid` from the host (the guest image lacks it; its library is in
    /// the image) plus what `setup` says, and waits until the plugin
    /// answers Probe.
    pub async fn start(setup: GuestSetup) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("csi-node");
        let st = Command::new("strip")
            .arg("-o")
            .arg(&bin)
            .arg(env!("CARGO_BIN_EXE_csi-node"))
            .status()
            .unwrap();
        assert!(st.success(), "strip csi-node");
        let log = dir.path().join("console.log");
        let grpc_port = free_port("127.0.0.1");
        let shell_port = free_port("127.0.0.1");
        let script = format!(
            "modprobe -a ext4 xfs; mkdir -p /run/csi; \
             (nc -ll -p 2323 -e sh &) ; {} \
             exec csi-node --node-name {GUEST_NODE} --csi-socket /run/csi/csi.sock \
             --grpc-endpoint 0.0.0.0:10199 {}",
            setup.script,
            setup.csi_node_args.join(" ")
        );
        let mut command = Command::new(nvme_vm().join("run"));
        command
            .args(["-q", "-t", "1500", "-m", "1024"])
            .arg("--log")
            .arg(&log);
        for (guest, host) in &setup.guest_forwards {
            command.args(["-g", &format!("{guest}:{host}")]);
        }
        for (host, guest) in &setup.host_forwards {
            command.args(["-f", &format!("{host}:{guest}")]);
        }
        command
            .args(["-f", &format!("{grpc_port}:10199")])
            .args(["-f", &format!("{shell_port}:2323")])
            .arg("--copy")
            .arg(&bin)
            .args(["--copy", "/sbin/blkid"]);
        for copy in &setup.copies {
            command.arg("--copy").arg(copy);
        }
        let child = command
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut guest = Guest {
            child: Some(child),
            log,
            grpc_port,
            shell_port,
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(mut c) = guest.identity().await {
                if c.probe(ProbeRequest {}).await.is_ok() {
                    break;
                }
            }
            let exited = guest
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            assert!(
                !exited && start.elapsed() < Duration::from_secs(180),
                "csi-node in the guest did not answer within 180 s\n{}",
                guest.console()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("guest ready after {:.1?}", start.elapsed());
        guest
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.grpc_port))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .connect()
            .await
    }

    pub async fn identity(&self) -> Result<IdentityClient<Channel>, tonic::transport::Error> {
        Ok(IdentityClient::new(self.channel().await?))
    }

    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel().await.unwrap())
    }

    /// Runs `cmd` in the guest's shell; (exit code, stdout+stderr).
    pub fn sh(&self, cmd: &str) -> (i32, String) {
        self.sh_within(cmd, Duration::from_secs(600))
    }

    /// [`Guest::sh`] for a command that may take up to `limit`.
    pub fn sh_within(&self, cmd: &str, limit: Duration) -> (i32, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.shell_port)).unwrap();
        s.set_read_timeout(Some(limit)).unwrap();
        s.write_all(format!("( {cmd} ) 2>&1; echo \"@@RC=$?\"\nexit\n").as_bytes())
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (body, rc) = out
            .rsplit_once("@@RC=")
            .unwrap_or_else(|| panic!("no exit code from the guest for {cmd:?}: {out}"));
        (rc.trim().parse().unwrap_or(-1), body.to_owned())
    }

    /// Runs `cmd`, which must succeed; its output.
    pub fn ok(&self, cmd: &str) -> String {
        let (rc, out) = self.sh(cmd);
        assert_eq!(rc, 0, "guest command {cmd:?} failed ({rc}):\n{out}");
        out
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the harness stops QEMU and its helpers itself.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("---- guest console ----\n{}", self.console());
            }
        }
    }
}
