//! Unit tests of `client`.

use super::*;

fn client(base: &str) -> RestClient {
    RestClient::new(base, RestClientOptions::default()).expect("valid test client")
}

#[test]
fn base_urls() {
    assert_eq!(
        client("127.0.0.1:8081").base_url(),
        "http://127.0.0.1:8081/"
    );
    assert_eq!(
        client("https://rest.example:8080/").base_url(),
        "https://rest.example:8080/"
    );
    for bad in ["ftp://host", "http://", "::::"] {
        let error = RestClient::new(bad, RestClientOptions::default())
            .expect_err("an invalid base url is refused");
        assert_eq!(error.kind, ErrorKind::InvalidArgument, "{bad}");
    }
}

#[test]
fn path_segments_are_encoded() {
    let c = client("http://h:1/prefix");
    let url = c
        .url(&["nodes", "a/b c%d?e#f", "label", "openebs.io/x=y"])
        .expect("valid segments");
    assert_eq!(
        url.as_str(),
        "http://h:1/prefix/v0/nodes/a%2Fb%20c%25d%3Fe%23f/label/openebs.io%2Fx=y"
    );
    for bad in ["", ".", ".."] {
        assert_eq!(
            c.url(&["nodes", bad]).expect_err("refused").kind,
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn error_bodies() {
    let url = Url::parse("http://h/v0/x").expect("valid url");
    let body = serde_json::to_vec(&RestError::not_found("volume 1")).expect("serialises");
    let error = error_from_answer(&Method::GET, &url, StatusCode::NOT_FOUND, &body);
    assert_eq!(error, RestError::not_found("volume 1"));

    let error = error_from_answer(
        &Method::GET,
        &url,
        StatusCode::BAD_GATEWAY,
        b"<html>bad gateway</html>",
    );
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.message.contains("http://h/v0/x"), "{error:?}");
    assert_eq!(error.details, "<html>bad gateway</html>");

    let long = vec![b'x'; 4 * MAX_DETAILS_BYTES];
    let error = error_from_answer(&Method::GET, &url, StatusCode::IM_A_TEAPOT, &long);
    assert_eq!(error.kind, ErrorKind::InvalidArgument);
    assert!(error.details.len() <= MAX_DETAILS_BYTES + 3);
}

#[test]
fn statuses_map_back_to_their_kinds() {
    for kind in [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::NotAcceptable,
        ErrorKind::Conflict,
        ErrorKind::FailedPrecondition,
        ErrorKind::CapacityLimitExceeded,
        ErrorKind::Unimplemented,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Internal,
    ] {
        let status = StatusCode::from_u16(kind.http_status()).expect("valid status");
        assert_eq!(kind_of_status(status), kind);
    }
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("ephemeral port")
        .port();
    let c = client(&format!("http://127.0.0.1:{port}"));
    let error = c.get_nodes().await.expect_err("nobody listens");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains(&format!("127.0.0.1:{port}")),
        "{error:?}"
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Accept and hold connections without answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let c = RestClient::new(
        &format!("http://{addr}"),
        RestClientOptions {
            timeout: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .expect("valid client");
    let error = c.get_specs().await.expect_err("no answer");
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(error.message.contains(&addr.to_string()), "{error:?}");
    holder.abort();
}
