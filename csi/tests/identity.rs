//! The Identity service of the real `csi-controller` binary over its unix
//! socket, with no cluster behind it: plugin name and capabilities, `Probe`
//! not ready while the REST API is unreachable, a stale socket replaced at
//! start and the socket removed at SIGTERM. (`Probe` ready against a
//! running cluster is checked in `controller.rs`.)

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use csi::v1::{
    identity_client::IdentityClient, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginInfoRequest, ProbeRequest,
};
use testkit::Proc;

fn controller(socket: &std::path::Path, rest: &str) -> Proc {
    Proc::spawn(
        "csi-controller",
        PathBuf::from(env!("CARGO_BIN_EXE_csi-controller")),
        vec![
            "--rest-endpoint".into(),
            rest.into(),
            "--csi-socket".into(),
            socket.display().to_string(),
            "--rest-timeout".into(),
            "2s".into(),
        ],
    )
}

#[tokio::test]
async fn identity_answers_and_probe_is_not_ready_without_rest() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    // A stale socket from an earlier run: bound, then its listener gone.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    // Nothing listens on this port of our loopback range.
    let port = testkit::free_port("127.0.100.1");
    let mut proc = controller(&socket, &format!("http://127.0.100.1:{port}"));
    testkit::wait_until("the CSI socket", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });

    let mut identity = IdentityClient::new(csi::client::channel(&socket));
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "io.openebs.csi-mayastor");
    assert!(!info.vendor_version.is_empty());

    let caps = identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    use plugin_capability::{service, volume_expansion, Type};
    let mut services = Vec::new();
    let mut expansions = Vec::new();
    for cap in caps {
        match cap.r#type.unwrap() {
            Type::Service(s) => services.push(service::Type::try_from(s.r#type).unwrap()),
            Type::VolumeExpansion(e) => {
                expansions.push(volume_expansion::Type::try_from(e.r#type).unwrap())
            }
        }
    }
    assert_eq!(
        services,
        [
            service::Type::ControllerService,
            service::Type::VolumeAccessibilityConstraints
        ]
    );
    assert_eq!(
        expansions,
        [
            volume_expansion::Type::Online,
            volume_expansion::Type::Offline
        ]
    );

    let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(false), "REST is unreachable");
    assert!(
        proc.logs().contains("REST API is not reachable"),
        "{}",
        proc.logs()
    );

    assert_eq!(proc.terminate(), Some(0), "{}", proc.logs());
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    std::fs::write(&socket, b"not a socket").unwrap();
    let mut proc = controller(&socket, "http://127.0.100.1:1");
    let code = proc.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(code, Some(1));
    let logs = proc.logs();
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("csi-controller: error: ") && last.contains("not a socket"),
        "{logs}"
    );
    assert_eq!(std::fs::read(&socket).unwrap(), b"not a socket");
}
