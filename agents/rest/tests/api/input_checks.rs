//! Bad input is refused by the router with a JSON RestError and the right
//! status, and the API behind it is never called.

use openapi::ErrorKind;
use reqwest::{Method, StatusCode};

use super::routing_double::*;
use super::support::{get, put_json, raw, TestServer};

const GOOD_VOLUME: &str = r#"{"size": 1048576, "replicas": 1}"#;

#[tokio::test]
async fn malformed_and_unknown_bodies_are_refused() {
    let server = TestServer::open().await;
    let url = format!("{}/v0/volumes/{MISSING}", server.url());

    let cases: &[(&str, ErrorKind, &str)] = &[
        ("{", ErrorKind::Deserialize, "invalid request body"),
        ("not json", ErrorKind::Deserialize, "invalid request body"),
        ("[]", ErrorKind::Deserialize, "invalid request body"),
        (r#"{"size": 1}"#, ErrorKind::Deserialize, "replicas"),
        (
            r#"{"size": 1, "replicas": 1, "colour": "blue"}"#,
            ErrorKind::Deserialize,
            "colour",
        ),
        (
            r#"{"size": 1, "replicas": 1, "policy": {"self_heal": true, "x": 1}}"#,
            ErrorKind::Deserialize,
            "policy",
        ),
        (
            r#"{"size": -5, "replicas": 1}"#,
            ErrorKind::Deserialize,
            "size",
        ),
        (
            r#"{"size": "big", "replicas": 1}"#,
            ErrorKind::Deserialize,
            "size",
        ),
        (
            r#"{"size": 1, "replicas": 256}"#,
            ErrorKind::Deserialize,
            "replicas",
        ),
        (
            r#"{"size": 1, "replicas": 1} trailing"#,
            ErrorKind::Deserialize,
            "trailing",
        ),
        (
            r#"{"size": 0, "replicas": 1}"#,
            ErrorKind::InvalidArgument,
            "greater than 0",
        ),
        (
            r#"{"size": 1, "replicas": 0}"#,
            ErrorKind::InvalidArgument,
            "at least 1 replica",
        ),
        (
            r#"{"size": 1, "replicas": 1, "topology": [null, null]}"#,
            ErrorKind::Deserialize,
            "'topology' must be of type null or object",
        ),
        (
            r#"{"size": 1, "replicas": 1.5}"#,
            ErrorKind::Deserialize,
            "'replicas' must be of type integer",
        ),
        (
            r#"{"size": 9223372036854775808, "replicas": 1}"#,
            ErrorKind::InvalidArgument,
            "at most",
        ),
    ];
    for (body, kind, needle) in cases {
        let answer = put_json(&url, body).await;
        let error = answer.error();
        assert_eq!(error.kind, *kind, "{body}: {error:?}");
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error.message.contains(needle), "{body}: {error:?}");
    }

    // Resize and publish bodies too.
    let size_url = format!("{}/v0/volumes/{VOLUME_1}/size", server.url());
    for (body, kind) in [
        (r#"{"size": 0}"#, ErrorKind::InvalidArgument),
        (r#"{"size": -1}"#, ErrorKind::Deserialize),
        (r#"{"size": 10, "shrink": true}"#, ErrorKind::Deserialize),
        ("{}", ErrorKind::Deserialize),
    ] {
        assert_eq!(put_json(&size_url, body).await.error().kind, kind, "{body}");
    }
    let target_url = format!("{}/v0/volumes/{VOLUME_2}/target", server.url());
    for (body, kind) in [
        (r#"{"protocol": "iscsi"}"#, ErrorKind::Deserialize),
        (
            r#"{"protocol": "nvmf", "node": "a/b"}"#,
            ErrorKind::InvalidArgument,
        ),
        (
            r#"{"protocol": "nvmf", "frontend_node": ""}"#,
            ErrorKind::InvalidArgument,
        ),
    ] {
        assert_eq!(
            put_json(&target_url, body).await.error().kind,
            kind,
            "{body}"
        );
    }
    let pool_url = format!("{}/v0/nodes/node-1/pools/pool-x", server.url());
    for (body, kind) in [
        (r#"{"disks": []}"#, ErrorKind::InvalidArgument),
        (
            r#"{"disks": ["/dev/a", "/dev/b"]}"#,
            ErrorKind::InvalidArgument,
        ),
        (r#"{"disks": [""]}"#, ErrorKind::InvalidArgument),
        (r#"{"disk": "/dev/a"}"#, ErrorKind::Deserialize),
    ] {
        assert_eq!(put_json(&pool_url, body).await.error().kind, kind, "{body}");
    }

    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );
}

#[tokio::test]
async fn missing_body_or_content_type_is_refused() {
    let server = TestServer::open().await;
    let url = format!("{}/v0/volumes/{MISSING}", server.url());

    let no_type = raw(Method::PUT, &url, None, Some(GOOD_VOLUME), None).await;
    assert_eq!(no_type.status, StatusCode::BAD_REQUEST);
    assert!(no_type.error().message.contains("content-type"));

    let wrong_type = raw(
        Method::PUT,
        &url,
        Some("text/plain"),
        Some(GOOD_VOLUME),
        None,
    )
    .await;
    assert_eq!(wrong_type.error().kind, ErrorKind::Deserialize);

    let no_body = raw(Method::PUT, &url, Some("application/json"), None, None).await;
    assert_eq!(no_body.error().kind, ErrorKind::Deserialize);
    assert!(no_body.error().message.contains("missing request body"));

    let too_big = format!(
        r#"{{"size": 1, "replicas": 1, "labels": {{"k": "{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let answer = put_json(&url, &too_big).await;
    assert_eq!(answer.error().kind, ErrorKind::InvalidArgument);
    assert!(answer.error().message.contains("larger than"));

    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );

    // The same body with its content type goes through.
    let charset = raw(
        Method::PUT,
        &url,
        Some("application/json; charset=utf-8"),
        Some(GOOD_VOLUME),
        None,
    )
    .await;
    assert_eq!(charset.status, StatusCode::OK, "{:?}", charset.body);
}

#[tokio::test]
async fn bad_ids_are_refused() {
    let server = TestServer::open().await;
    let base = server.url();

    let cases: Vec<(Method, String)> = vec![
        (Method::GET, format!("{base}/v0/volumes/not-a-uuid")),
        (Method::GET, format!("{base}/v0/volumes/{}", &MISSING[..35])),
        (
            Method::GET,
            format!("{base}/v0/volumes/{}", MISSING.replace('-', "")),
        ),
        (Method::DELETE, format!("{base}/v0/volumes/xyz")),
        (
            Method::PUT,
            format!("{base}/v0/volumes/xyz/replica_count/2"),
        ),
        (
            Method::GET,
            format!("{base}/v0/volumes/xyz/rebuild-history"),
        ),
        (Method::DELETE, format!("{base}/v0/volumes/xyz/target")),
        (Method::GET, format!("{base}/v0/replicas/r1")),
        (Method::GET, format!("{base}/v0/nexuses/n1")),
        (Method::GET, format!("{base}/v0/nodes/a%2Fb")),
        (Method::GET, format!("{base}/v0/nodes/a%07b")),
        (Method::GET, format!("{base}/v0/nodes/{}", "n".repeat(256))),
        (Method::GET, format!("{base}/v0/pools/p%2F1")),
        (Method::DELETE, format!("{base}/v0/pools/p%0A")),
        (Method::GET, format!("{base}/v0/nodes/a%2Fb/pools")),
        (
            Method::DELETE,
            format!("{base}/v0/nodes/node-1/pools/p%2F1"),
        ),
        (Method::PUT, format!("{base}/v0/nodes/node-1/cordon/a%2Fb")),
        (Method::DELETE, format!("{base}/v0/nodes/node-1/cordon/%09")),
        (Method::PUT, format!("{base}/v0/nodes/node-1/drain/x%2Fy")),
        (Method::PUT, format!("{base}/v0/nodes/node-1/label/=v")),
        (Method::PUT, format!("{base}/v0/nodes/node-1/label/k=v%0A")),
        (Method::DELETE, format!("{base}/v0/pools/pool%2F1/label/k")),
        (Method::GET, format!("{base}/v0/volumes/%FF")),
    ];
    for (method, url) in cases {
        let answer = raw(method.clone(), &url, None, None, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {url}");
        assert_eq!(
            answer.error().kind,
            ErrorKind::InvalidArgument,
            "{method} {url}"
        );
    }
    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );

    // Upper-case uuids are accepted and passed on in lower case.
    let upper = VOLUME_1.to_ascii_uppercase();
    let answer = get(&format!("{base}/v0/volumes/{upper}")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        server.double.calls(),
        vec![format!("get_volume({VOLUME_1})")]
    );
}

#[tokio::test]
async fn bad_replica_counts_and_queries_are_refused() {
    let server = TestServer::open().await;
    let base = server.url();
    for n in ["0", "-1", "256", "two", "1.5"] {
        let answer = raw(
            Method::PUT,
            &format!("{base}/v0/volumes/{VOLUME_1}/replica_count/{n}"),
            None,
            None,
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{n}");
        assert_eq!(answer.error().kind, ErrorKind::InvalidArgument, "{n}");
    }
    for query in [
        "max_entries=-1",
        "max_entries=x",
        "starting_token=-3",
        "max_entries=1&starting_token=",
        "max_entries=9223372036854775808",
        "starting_token=18446744073709551615",
    ] {
        let answer = get(&format!("{base}/v0/volumes?{query}")).await;
        assert_eq!(answer.error().kind, ErrorKind::InvalidArgument, "{query}");
    }
    let answer = raw(
        Method::DELETE,
        &format!("{base}/v0/volumes/{VOLUME_1}/target?force=maybe"),
        None,
        None,
        None,
    )
    .await;
    assert_eq!(answer.error().kind, ErrorKind::InvalidArgument);
    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let server = TestServer::open().await;
    let base = server.url();

    for path in [
        "/",
        "/v0",
        "/v1/volumes",
        "/v0/volume",
        "/v0/nodes/n/unknown",
        "/v0/pools/p/label/",
    ] {
        let answer = get(&format!("{base}{path}")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        let error = answer.error();
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert!(error.message.contains(path), "{error:?}");
    }

    for (method, path, allow) in [
        (Method::POST, "/v0/volumes".to_string(), "GET,HEAD"),
        (
            Method::PATCH,
            format!("/v0/volumes/{VOLUME_1}"),
            "GET,HEAD,PUT,DELETE",
        ),
        (
            Method::GET,
            "/v0/nodes/node-1/cordon/x".to_string(),
            "PUT,DELETE",
        ),
        (Method::DELETE, "/v0/specs".to_string(), "GET,HEAD"),
        (Method::OPTIONS, "/v0/api/spec".to_string(), "GET,HEAD"),
        // One route, two documented resources: the segment tells which.
        (
            Method::PUT,
            "/v0/nodes/node-1/label/novalue".to_string(),
            "DELETE",
        ),
        (
            Method::GET,
            "/v0/nodes/node-1/label/k".to_string(),
            "DELETE",
        ),
        (
            Method::OPTIONS,
            "/v0/pools/pool-1/label/k=v".to_string(),
            "PUT",
        ),
        (
            Method::DELETE,
            "/v0/nodes/node-1/label/k=v".to_string(),
            "PUT",
        ),
        (
            Method::PUT,
            "/v0/pools/pool-1/label/k".to_string(),
            "DELETE",
        ),
    ] {
        let answer = raw(method.clone(), &format!("{base}{path}"), None, None, None).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(answer.error().kind, ErrorKind::Unimplemented);
        let header = answer
            .headers
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut got: Vec<&str> = header.split(',').map(str::trim).collect();
        let mut want: Vec<&str> = allow.split(',').collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
    }
    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );
}

#[tokio::test]
async fn probes_answer() {
    let server = TestServer::open().await;
    let live = get(&format!("{}/live", server.url())).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.body["status"], "live");
    let ready = get(&format!("{}/ready", server.url())).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
}
