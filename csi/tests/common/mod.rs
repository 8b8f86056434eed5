//! Shared by the CSI integration tests: a real local cluster
//! (`mayastor-local up`, torn down with `down --wipe` however the test
//! ends), optionally beside a real API server (kube-local), the real
//! `csi-controller` binary serving on a unix socket, the capability and
//! request builders every test uses, the csi-tools binaries, and the
//! reading of a csi-sanity run.

// Each test binary uses a part of this kit.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use csi::v1::{
    controller_client::ControllerClient, identity_client::IdentityClient, volume_capability,
    CapacityRange, CreateVolumeRequest, VolumeCapability,
};
use openapi::{models::CreateVolumeBody, CoreApi, RestClient, RestClientOptions};
use testkit::{
    kube_local::{KubeLocal, StartOptions},
    LocalCluster, Proc,
};
use tonic::transport::Channel;

/// A running local cluster (the process test kit's); `down --wipe` when
/// dropped.
pub struct Cluster(LocalCluster);

impl std::ops::Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.0
    }
}

impl Cluster {
    /// `mayastor-local up --nodes N --ip-prefix PREFIX --pool-size SIZE`.
    pub fn up(prefix: &str, nodes: u32, pool_size: &str) -> Cluster {
        Cluster(LocalCluster::up(prefix, nodes, &["--pool-size", pool_size]))
    }

    pub fn rest(&self) -> RestClient {
        RestClient::new(&self.rest_url, RestClientOptions::default()).unwrap()
    }

    /// The NVMe/TCP listener of engine `i`.
    pub fn engine_nvmf(&self, i: u32) -> std::net::SocketAddr {
        format!("{}.{i}:8420", self.prefix).parse().unwrap()
    }

    /// [`Cluster::up`] while a real API server with its controller-manager
    /// (kube-local, no node) starts beside it.
    pub fn up_beside_kube(prefix: &str, nodes: u32, pool_size: &str) -> (Cluster, KubeApi) {
        let state = tempfile::tempdir().unwrap();
        let kube_state = state.path().join("kube");
        let kube = std::thread::spawn(move || {
            KubeLocal::start(
                &kube_state,
                &StartOptions {
                    controller_manager: true,
                    ttl: Some(Duration::from_secs(900)),
                    ..Default::default()
                },
            )
        });
        let cluster = Cluster::up(prefix, nodes, pool_size);
        let kube = kube.join().unwrap();
        (
            cluster,
            KubeApi {
                kube,
                _state: state,
            },
        )
    }
}

/// A kube-local API server and its state directory; stopped when dropped.
pub struct KubeApi {
    kube: KubeLocal,
    _state: tempfile::TempDir,
}

impl std::ops::Deref for KubeApi {
    type Target = KubeLocal;
    fn deref(&self) -> &KubeLocal {
        &self.kube
    }
}

impl KubeApi {
    pub fn stop(self) {
        self.kube.stop();
    }
}

/// A volume of `size` bytes and `replicas` made through REST (not by the
/// CSI controller).
pub async fn rest_volume(
    rest: &RestClient,
    id: &str,
    size: u64,
    replicas: u8,
) -> openapi::models::Volume {
    rest.put_volume(id, CreateVolumeBody::new(size, replicas))
        .await
        .unwrap()
}

/// The real `csi-controller` on a unix socket in a temporary directory.
pub struct Controller {
    pub proc: Proc,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Controller {
    pub fn start(rest_url: &str, extra: &[&str]) -> Controller {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let mut args = vec![
            "--rest-endpoint".to_owned(),
            rest_url.to_owned(),
            "--csi-socket".to_owned(),
            socket.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(
            "csi-controller",
            PathBuf::from(env!("CARGO_BIN_EXE_csi-controller")),
            args,
        );
        wait_socket(&socket);
        Controller {
            proc,
            socket,
            _dir: dir,
        }
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(csi::client::channel(&self.socket))
    }

    pub fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(csi::client::channel(&self.socket))
    }
}

pub fn wait_socket(socket: &Path) {
    testkit::wait_until("the CSI socket", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
}

/// A mount capability (`fs` may be empty) with access mode `mode`.
pub fn mount_cap(fs: &str, mode: volume_capability::access_mode::Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume {
                fs_type: fs.to_owned(),
                ..Default::default()
            },
        )),
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Block(
            volume_capability::BlockVolume {},
        )),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

/// A single-node-writer mount capability with filesystem `fs` (may be
/// empty: the default).
pub fn rwo_fs(fs: &str) -> VolumeCapability {
    mount_cap(fs, volume_capability::access_mode::Mode::SingleNodeWriter)
}

pub fn rwo() -> VolumeCapability {
    rwo_fs("")
}

/// A CreateVolume request of `size` bytes with `params`.
pub fn create_req(name: &str, size: i64, params: &[(&str, &str)]) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_owned(),
        capacity_range: Some(CapacityRange {
            required_bytes: size,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![rwo()],
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

/// A tool of `../shared/tools/csi-tools` (csi-sanity, the sidecars),
/// unpacked once per target directory by the tools' `install`.
pub fn csi_tool(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("csi-tools");
    let bin = dir.join(name);
    if !bin.exists() {
        let install =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/csi-tools/install");
        let out = Command::new(&install).arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            install.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

/// A csi-sanity run as its output and JUnit report say.
pub struct SanityRun {
    /// csi-sanity's standard output.
    pub stdout: String,
    /// Its exit status was 0.
    pub success: bool,
    /// The `--ginkgo.junit-report` file.
    pub junit: String,
}

impl SanityRun {
    /// Asserts the run passed with at least `min_passed` specs and that
    /// every skipped spec was skipped for a listed reason: a
    /// `--ginkgo.skip` pattern of `skips` (pattern, reason), outside the
    /// `--ginkgo.focus` of `focus` (pattern, reason), pending upstream, or
    /// a capability the driver does not claim (csi-sanity's own skip).
    /// Prints the summary and the skip reasons.
    pub fn check(&self, skips: &[(&str, &str)], focus: Option<(&str, &str)>, min_passed: u32) {
        let summary = self
            .stdout
            .lines()
            .find(|l| l.contains(" Passed | "))
            .unwrap_or_default();
        println!("csi-sanity: {summary}");
        for (spec, why) in skips {
            println!("skipped {spec:?}: {why}");
        }
        if let Some((pattern, why)) = focus {
            println!("only {pattern:?}: {why}");
        }
        let mut reasons = std::collections::BTreeMap::<String, u32>::new();
        for (name, message) in skipped_specs(&self.junit) {
            let listed = match message.as_str() {
                "skipped" => {
                    skips.iter().any(|(pattern, _)| name.contains(pattern))
                        || focus.is_some_and(|(pattern, _)| !name.contains(pattern))
                }
                "pending" => true,
                other => {
                    other.starts_with("skipped - ")
                        && (other.ends_with("not supported") || other.ends_with("not enabled"))
                }
            };
            assert!(
                listed,
                "spec skipped for no listed reason: {name}: {message}"
            );
            *reasons.entry(message).or_default() += 1;
        }
        assert!(!reasons.is_empty(), "no skipped spec in the JUnit report");
        for (message, count) in reasons {
            println!("{count:3} specs: {message}");
        }
        assert!(self.success, "csi-sanity failed:\n{}", self.stdout);
        let passed: u32 = summary
            .split(" Passed")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(passed >= min_passed, "too few specs ran: {summary}");
        assert!(summary.contains("| 0 Failed |"), "{summary}");
    }
}

/// The skipped specs of a JUnit report: (name, skip message).
fn skipped_specs(report: &str) -> Vec<(String, String)> {
    let attr = |text: &str, key: &str| -> String {
        text.split(&format!("{key}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    report
        .split("<testcase ")
        .skip(1)
        .filter_map(|case| {
            let case = case.split("</testcase>").next()?;
            let skipped = case.split("<skipped").nth(1)?;
            Some((attr(case, "name"), attr(skipped, "message")))
        })
        .collect()
}
