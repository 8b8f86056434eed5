//! Shared by the controller's integration tests: a real local cluster
//! (`mayastor-local up`, torn down with `down --wipe` however the test
//! ends), the real `csi-controller` binary serving on a unix socket, and
//! the request builders every test uses.

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
use openapi::{RestClient, RestClientOptions};
use testkit::{LocalCluster, Proc};
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

pub fn rwo() -> VolumeCapability {
    mount_cap("", volume_capability::access_mode::Mode::SingleNodeWriter)
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
