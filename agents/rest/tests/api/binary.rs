//! The `api-rest` binary as a real process: it forwards to a core endpoint
//! (the router over the routing test double), answers over http and https
//! (a self-signed certificate made here), checks its token, reports a
//! taken port, and stops with exit code 0 on SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openapi::models::*;
use openapi::{CoreApi, ErrorKind, RestClient, RestClientOptions, RestError};
use testkit::{free_port, Proc};

use super::routing_double::*;
use super::support::TestServer;

const TOKEN: &str = "binary-test-token";

/// The `api-rest` process (no token from the environment, debug logs),
/// killed by PID if a test fails before stopping it.
fn spawn(args: &[String]) -> Proc {
    Proc::spawn_env(
        "api-rest",
        PathBuf::from(env!("CARGO_BIN_EXE_api-rest")),
        args.to_vec(),
        &[("REST_BEARER_TOKEN", None), ("RUST_LOG", Some("debug"))],
    )
}

/// Waits until `/live` answers on `url` through `client`.
async fn wait_live(process: &mut Proc, client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(format!("{url}/live")).send().await {
            if response.status().is_success() {
                return;
            }
        }
        if let Ok(code) = process.wait_exit(Duration::ZERO) {
            panic!("api-rest exited early ({code:?}):\n{}", process.logs());
        }
        assert!(
            Instant::now() < deadline,
            "api-rest not live:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (20 s at most) for the process to exit; its exit code.
async fn wait_exit(process: &mut Proc) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(code) = process.wait_exit(Duration::ZERO) {
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "api-rest did not exit:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM by PID, then the exit code.
async fn terminate(process: &mut Proc) -> Option<i32> {
    assert!(process.is_running(), "api-rest is not running");
    process.signal("TERM");
    wait_exit(process).await
}

/// A self-signed certificate for localhost / 127.0.0.1, as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert, key, cert_pem.into_bytes())
}

fn args(core: &str, http: SocketAddr) -> Vec<String> {
    vec![
        "--core-endpoint".into(),
        core.into(),
        "--http".into(),
        http.to_string(),
        "--request-timeout".into(),
        "5s".into(),
    ]
}

fn client(url: &str, opts: RestClientOptions) -> RestClient {
    RestClient::new(url, opts).expect("client")
}

#[tokio::test]
async fn forwards_over_http_and_https_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = TestServer::open().await;
    let (cert, key, ca_pem) = self_signed(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");

    let http: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let https: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let mut argv = args(&core.url(), http);
    argv.extend([
        "--https".into(),
        https.to_string(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
        "--bearer-token-file".into(),
        token_file.display().to_string(),
        "--log-format".into(),
        "json".into(),
    ]);
    let mut process = spawn(&argv);
    wait_live(
        &mut process,
        &reqwest::Client::new(),
        &format!("http://{http}"),
    )
    .await;

    let with_token = RestClientOptions {
        bearer_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let over_http = client(&format!("http://{http}"), with_token.clone());
    let over_https = client(
        &format!("https://{https}"),
        RestClientOptions {
            ca_pem: Some(ca_pem.clone()),
            ..with_token.clone()
        },
    );

    for api in [&over_http, &over_https] {
        assert_eq!(api.get_nodes().await, core.double.get_nodes().await);
        assert_eq!(
            api.get_volume(VOLUME_1).await,
            core.double.get_volume(VOLUME_1).await
        );
        assert_eq!(
            api.get_volume(MISSING).await,
            Err(RestError::not_found(format!("volume {MISSING}")))
        );
        let spec = api.get_spec_json().await.expect("spec");
        assert!(spec["paths"]["/v0/volumes"].is_object());
    }
    let id = "55555555-5555-4555-8555-555555555555";
    let created = over_https
        .put_volume(id, CreateVolumeBody::new(1 << 20, 1))
        .await
        .expect("created through the forwarder");
    assert_eq!(Ok(created), core.double.get_volume(id).await);
    over_http.del_volume(id).await.expect("deleted");
    assert!(core.double.calls().contains(&format!("del_volume({id})")));

    // Input checks happen in front of the forwarder too.
    let bad = over_http
        .put_volume_replica_count(VOLUME_1, 0)
        .await
        .expect_err("count 0");
    assert_eq!(bad.kind, ErrorKind::InvalidArgument);
    assert!(!core
        .double
        .calls()
        .iter()
        .any(|c| c.starts_with("put_volume_replica_count")));

    // The token is checked.
    let anonymous = client(&format!("http://{http}"), RestClientOptions::default());
    assert_eq!(
        anonymous.get_nodes().await.expect_err("no token").kind,
        ErrorKind::Unauthenticated
    );
    // An unknown CA is refused; insecure mode accepts it.
    let unknown_ca = client(&format!("https://{https}"), with_token.clone());
    let error = unknown_ca.get_nodes().await.expect_err("unknown CA");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error:?}");
    let insecure = client(
        &format!("https://{https}"),
        RestClientOptions {
            insecure: true,
            ..with_token.clone()
        },
    );
    insecure.get_nodes().await.expect("insecure accepts");
    // The name in the certificate is checked as well.
    let by_name = client(
        &format!("https://localhost:{}", https.port()),
        RestClientOptions {
            ca_pem: Some(ca_pem),
            ..with_token
        },
    );
    by_name
        .get_nodes()
        .await
        .expect("localhost is in the certificate");

    let status = terminate(&mut process).await;
    assert_eq!(status, Some(0), "{}", process.logs());
    let log = process.logs();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        std::net::TcpStream::connect(http).is_err(),
        "the http port still answers"
    );
}

#[tokio::test]
async fn unreachable_core_is_unavailable_and_not_ready() {
    let dead_core = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let http: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let mut process = spawn(&args(&dead_core, http));
    wait_live(
        &mut process,
        &reqwest::Client::new(),
        &format!("http://{http}"),
    )
    .await;

    let api = client(&format!("http://{http}"), RestClientOptions::default());
    let error = api.get_nodes().await.expect_err("core is down");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.message.contains(&dead_core), "{error:?}");

    let ready = reqwest::get(format!("http://{http}/ready"))
        .await
        .expect("answer");
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    let status = terminate(&mut process).await;
    assert_eq!(status, Some(0), "{}", process.logs());
}

#[tokio::test]
async fn taken_port_fails_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut process = spawn(&args("http://127.0.0.1:1", addr));
    let status = wait_exit(&mut process).await;
    assert_eq!(status, Some(1));
    let log = process.logs();
    assert!(
        log.contains(&format!("cannot listen for http on {addr}")),
        "{log}"
    );
    assert!(log.to_lowercase().contains("in use"), "{log}");
    drop(taken);
}

#[tokio::test]
async fn https_setup_errors_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let https = format!("127.0.0.1:{}", free_port("127.0.0.1"));

    // --https without --cert/--key is a usage error.
    let mut argv = args("http://127.0.0.1:1", http);
    argv.extend(["--https".into(), https.clone()]);
    let mut process = spawn(&argv);
    assert_eq!(wait_exit(&mut process).await, Some(2));

    // A certificate file that holds no PEM.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let mut argv = args("http://127.0.0.1:1", http);
    argv.extend([
        "--https".into(),
        https,
        "--cert".into(),
        junk.display().to_string(),
        "--key".into(),
        junk.display().to_string(),
    ]);
    let mut process = spawn(&argv);
    assert_eq!(wait_exit(&mut process).await, Some(1));
    let log = process.logs();
    assert!(log.contains("junk.pem"), "{log}");
}
