//! The optional bearer token: required everywhere but the spec and the
//! probes when set, ignored when not.

use api_rest::RouterOptions;
use openapi::{CoreApi, ErrorKind};
use reqwest::{Method, StatusCode};

use super::routing_double::*;
use super::support::{raw, TestServer};

const TOKEN: &str = "s3cret-token";

async fn guarded() -> TestServer {
    TestServer::start(RouterOptions {
        bearer_token: Some(TOKEN.to_string()),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn token_is_required_when_set() {
    let server = guarded().await;
    let base = server.url();

    for (token, what) in [
        (None, "missing credentials"),
        (Some("wrong"), "not a valid bearer token"),
        (Some(""), "not a valid bearer token"),
    ] {
        for (method, path) in [
            (Method::GET, "/v0/nodes".to_string()),
            (Method::GET, format!("/v0/volumes/{VOLUME_1}")),
            (Method::DELETE, format!("/v0/volumes/{VOLUME_1}")),
            (Method::GET, "/v0/unknown".to_string()),
        ] {
            let answer = raw(method.clone(), &format!("{base}{path}"), None, None, token).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            let error = answer.error();
            assert_eq!(error.kind, ErrorKind::Unauthenticated);
            assert!(error.message.contains(what), "{error:?}");
            assert_eq!(
                answer
                    .headers
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer")
            );
        }
    }
    // A bad token in a header that is not the bearer scheme.
    let basic = reqwest::Client::new()
        .get(format!("{base}/v0/nodes"))
        .basic_auth("user", Some(TOKEN))
        .send()
        .await
        .expect("answer");
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
    assert!(
        server.double.calls().is_empty(),
        "{:?}",
        server.double.calls()
    );

    // Through the client: without the token, Unauthenticated; with it, fine.
    let error = server.client().get_nodes().await.expect_err("no token");
    assert_eq!(error.kind, ErrorKind::Unauthenticated);
    let nodes = server
        .client_with_token(TOKEN)
        .get_nodes()
        .await
        .expect("token accepted");
    assert_eq!(nodes.len(), 3);
    // The scheme name is case-insensitive.
    let answer = reqwest::Client::new()
        .get(format!("{base}/v0/nodes"))
        .header(reqwest::header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn spec_and_probes_need_no_token() {
    let server = guarded().await;
    for path in ["/v0/api/spec", "/live", "/ready"] {
        let answer = raw(
            Method::GET,
            &format!("{}{path}", server.url()),
            None,
            None,
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
    server
        .client()
        .get_spec_json()
        .await
        .expect("spec without a token");
}

#[tokio::test]
async fn no_token_configured_means_open() {
    let server = TestServer::open().await;
    server.client().get_nodes().await.expect("open");
    // A token sent anyway is ignored.
    server
        .client_with_token("anything")
        .get_nodes()
        .await
        .expect("ignored token");
}
