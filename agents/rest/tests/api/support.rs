//! A router over a fresh [`RoutingDouble`] on an ephemeral loopback port,
//! and raw-request helpers that check every error body is a RestError.

use std::net::SocketAddr;
use std::sync::Arc;

use api_rest::{router, RouterOptions};
use openapi::{RestClient, RestClientOptions, RestError};
use reqwest::StatusCode;

use super::routing_double::RoutingDouble;

/// The router serving a seeded double; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub double: Arc<RoutingDouble>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(opts: RouterOptions) -> Self {
        let double = Arc::new(RoutingDouble::seeded());
        let app = router(double.clone(), opts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test server runs");
        });
        Self { addr, double, task }
    }

    pub async fn open() -> Self {
        Self::start(RouterOptions::default()).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> RestClient {
        RestClient::new(&self.url(), RestClientOptions::default()).expect("client")
    }

    pub fn client_with_token(&self, token: &str) -> RestClient {
        RestClient::new(
            &self.url(),
            RestClientOptions {
                bearer_token: Some(token.to_string()),
                ..Default::default()
            },
        )
        .expect("client")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One raw answer.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Raw {
    /// The body as a RestError whose kind's status is the answer's status.
    pub fn error(&self) -> RestError {
        let error: RestError = serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("not a RestError body ({e}): {:?}", self.body));
        if self.status != StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(
                self.status.as_u16(),
                error.kind.http_status(),
                "status and kind disagree: {error:?}"
            );
        }
        assert!(!error.message.is_empty(), "{error:?}");
        error
    }
}

/// Sends a request with an optional content type and body; every answer
/// must be JSON.
pub async fn raw(
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Option<&str>,
    token: Option<&str>,
) -> Raw {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(content_type, "application/json", "{status} {bytes:?}");
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {bytes:?}"))
    };
    Raw {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Raw {
    raw(reqwest::Method::GET, url, None, None, None).await
}

pub async fn put_json(url: &str, body: &str) -> Raw {
    raw(
        reqwest::Method::PUT,
        url,
        Some("application/json"),
        Some(body),
        None,
    )
    .await
}
