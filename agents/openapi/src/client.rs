//! The HTTP client of the REST API: [`RestClient`] implements [`CoreApi`]
//! against a server, so the kubectl plugin, the TUI, the CSI driver and the
//! `api-rest` forwarder all speak the same interface as the core agent.
//!
//! - Every method maps to one endpoint under `/v0`; path segments are
//!   percent-encoded (`/` in an id stays inside its segment).
//! - A non-2xx answer becomes the server's [`RestError`]; when the body is
//!   not one (a proxy's page, an empty body), the kind comes from the HTTP
//!   status and the body goes into `details`.
//! - Transport failures are errors too: no connection is
//!   [`ErrorKind::Unavailable`], no answer in time is [`ErrorKind::Timeout`],
//!   both naming the URL.
//! - TLS is rustls (ring) with the webpki roots, plus an optional extra CA;
//!   `insecure` skips certificate checks (test clusters only).
//!
//! The client is cheap to clone (one shared connection pool) and is used
//! from any tokio runtime.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::{de::DeserializeOwned, Serialize};

use crate::models::*;
use crate::{CoreApi, ErrorKind, RestError, Result};

/// How long a request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many bytes of an unexpected body are kept in an error's details.
const MAX_DETAILS_BYTES: usize = 512;

/// Settings of a [`RestClient`].
#[derive(Clone)]
pub struct RestClientOptions {
    /// Whole-request timeout (connect, send, receive).
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` on every request.
    pub bearer_token: Option<String>,
    /// Extra trusted CA certificate(s), PEM, for https endpoints.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate (self-signed test clusters only).
    pub insecure: bool,
}

impl Default for RestClientOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            bearer_token: None,
            ca_pem: None,
            insecure: false,
        }
    }
}

impl std::fmt::Debug for RestClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClientOptions")
            .field("timeout", &self.timeout)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// HTTP client of the REST API (see the module header).
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    /// Server root, e.g. `http://127.0.0.1:8081/` (always ends with `/`).
    base: Url,
    timeout: Duration,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RestClient {
    /// A client of the server at `base_url` (`http://host:port` or
    /// `https://host:port`, optionally with a path prefix; `host:port`
    /// alone means http).
    pub fn new(base_url: &str, opts: RestClientOptions) -> Result<Self> {
        let base = parse_base_url(base_url)?;

        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        if let Some(token) = &opts.bearer_token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| RestError::invalid("the bearer token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .default_headers(headers)
            .danger_accept_invalid_certs(opts.insecure);
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|error| {
                RestError::invalid("the CA certificate is not valid PEM")
                    .with_details(error.to_string())
            })?;
            if certs.is_empty() {
                return Err(RestError::invalid(
                    "the CA certificate file holds no certificate",
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|error| {
            RestError::new(ErrorKind::Internal, "cannot set up the HTTP client")
                .with_details(error.to_string())
        })?;

        Ok(Self {
            http,
            base,
            timeout: opts.timeout,
        })
    }

    /// The server root this client talks to.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /v0/api/spec`: the server's OpenAPI document.
    pub async fn get_spec_json(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, &["api", "spec"], &[], None::<&()>)
            .await
    }

    /// `base/v0/<segments...>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| RestError::invalid("the REST endpoint URL cannot take a path"))?;
            path.pop_if_empty().push("v0");
            for segment in segments {
                // The URL rules would drop or resolve these instead of
                // sending them.
                if segment.is_empty() || *segment == "." || *segment == ".." {
                    return Err(RestError::invalid(format!(
                        "'{segment}' is not a valid id in a request path"
                    )));
                }
                path.push(segment);
            }
        }
        Ok(url)
    }

    /// Sends one request and decodes a JSON answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let (url, response) = self.send(method.clone(), segments, query, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&method, &url, &error))?;
        serde_json::from_slice(&bytes).map_err(|error| {
            RestError::new(
                ErrorKind::Deserialize,
                format!("unexpected answer to {method} {url}: {error}"),
            )
            .with_details(snippet(&bytes))
        })
    }

    /// Sends one request whose answer carries no body.
    async fn call_unit(&self, method: Method, segments: &[&str]) -> Result<()> {
        self.send(method, segments, &[], None::<&()>).await?;
        Ok(())
    }

    /// Sends one request; a non-2xx answer becomes its [`RestError`].
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
    ) -> Result<(Url, reqwest::Response)> {
        let mut url = self.url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(key, value)| (*key, value.as_str())));
        }
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&method, &url, &error))?;
        let status = response.status();
        if status.is_success() {
            return Ok((url, response));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&method, &url, &error))?;
        Err(error_from_answer(&method, &url, status, &bytes))
    }

    fn transport_error(&self, method: &Method, url: &Url, error: &reqwest::Error) -> RestError {
        let cause = error_chain(error);
        if error.is_timeout() {
            RestError::new(
                ErrorKind::Timeout,
                format!("no answer from {url} to {method} within {:?}", self.timeout),
            )
            .with_details(cause)
        } else if error.is_connect() {
            RestError::new(ErrorKind::Unavailable, format!("cannot connect to {url}"))
                .with_details(cause)
        } else {
            RestError::new(
                ErrorKind::Unavailable,
                format!("{method} {url} failed before an answer arrived"),
            )
            .with_details(cause)
        }
    }
}

/// Accepts `http(s)://host:port[/prefix]` or a bare `host:port`.
fn parse_base_url(base_url: &str) -> Result<Url> {
    let trimmed = base_url.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|error| {
        RestError::invalid(format!(
            "'{base_url}' is not a valid REST endpoint URL: {error}"
        ))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(RestError::invalid(format!(
            "'{base_url}': the REST endpoint must be http:// or https://"
        )));
    }
    if url.host().is_none() {
        return Err(RestError::invalid(format!(
            "'{base_url}': the REST endpoint URL has no host"
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The error of a non-2xx answer: the server's [`RestError`] when the body
/// is one, else one whose kind follows the status.
fn error_from_answer(method: &Method, url: &Url, status: StatusCode, body: &[u8]) -> RestError {
    if let Ok(error) = serde_json::from_slice::<RestError>(body) {
        return error;
    }
    RestError::new(
        kind_of_status(status),
        format!("{method} {url} answered {status}"),
    )
    .with_details(snippet(body))
}

/// The error kind a bare HTTP status stands for.
pub fn kind_of_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        400 | 413 | 414 | 415 | 422 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        405 | 501 => ErrorKind::Unimplemented,
        406 => ErrorKind::NotAcceptable,
        408 | 504 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::FailedPrecondition,
        429 => ErrorKind::ResourceExhausted,
        502 | 503 => ErrorKind::Unavailable,
        507 => ErrorKind::CapacityLimitExceeded,
        code if (400..500).contains(&code) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// The start of a body, as text, for an error's details.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= MAX_DETAILS_BYTES {
        return text.to_string();
    }
    let mut end = MAX_DETAILS_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[async_trait::async_trait]
impl CoreApi for RestClient {
    async fn get_volumes(&self, max_entries: u64, starting_token: Option<u64>) -> Result<Volumes> {
        let mut query = vec![("max_entries", max_entries.to_string())];
        if let Some(token) = starting_token {
            query.push(("starting_token", token.to_string()));
        }
        self.call(Method::GET, &["volumes"], &query, None::<&()>)
            .await
    }

    async fn get_volume(&self, id: &str) -> Result<Volume> {
        self.call(Method::GET, &["volumes", id], &[], None::<&()>)
            .await
    }

    async fn put_volume(&self, id: &str, body: CreateVolumeBody) -> Result<Volume> {
        self.call(Method::PUT, &["volumes", id], &[], Some(&body))
            .await
    }

    async fn del_volume(&self, id: &str) -> Result<()> {
        self.call_unit(Method::DELETE, &["volumes", id]).await
    }

    async fn put_volume_replica_count(&self, id: &str, count: u8) -> Result<Volume> {
        let count = count.to_string();
        self.call(
            Method::PUT,
            &["volumes", id, "replica_count", &count],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn put_volume_size(&self, id: &str, body: ResizeVolumeBody) -> Result<Volume> {
        self.call(Method::PUT, &["volumes", id, "size"], &[], Some(&body))
            .await
    }

    async fn put_volume_target(&self, id: &str, body: PublishVolumeBody) -> Result<Volume> {
        self.call(Method::PUT, &["volumes", id, "target"], &[], Some(&body))
            .await
    }

    async fn put_volume_republish(&self, id: &str, body: RepublishVolumeBody) -> Result<Volume> {
        self.call(
            Method::PUT,
            &["volumes", id, "target", "republish"],
            &[],
            Some(&body),
        )
        .await
    }

    async fn del_volume_retired_targets(&self, id: &str) -> Result<Volume> {
        self.call(
            Method::DELETE,
            &["volumes", id, "target", "retired"],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn del_volume_target(&self, id: &str, force: bool) -> Result<Volume> {
        self.call(
            Method::DELETE,
            &["volumes", id, "target"],
            &[("force", force.to_string())],
            None::<&()>,
        )
        .await
    }

    async fn get_rebuild_history(&self, id: &str) -> Result<RebuildHistory> {
        self.call(
            Method::GET,
            &["volumes", id, "rebuild-history"],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn get_volume_stats(&self, id: &str) -> Result<VolumeIoStats> {
        self.call(Method::GET, &["volumes", id, "stats"], &[], None::<&()>)
            .await
    }

    async fn get_pools(&self) -> Result<Vec<Pool>> {
        self.call(Method::GET, &["pools"], &[], None::<&()>).await
    }

    async fn get_pool_stats(&self, node: Option<&str>, id: &str) -> Result<PoolIoStats> {
        match node {
            Some(node) => {
                self.call(
                    Method::GET,
                    &["nodes", node, "pools", id, "stats"],
                    &[],
                    None::<&()>,
                )
                .await
            }
            None => {
                self.call(Method::GET, &["pools", id, "stats"], &[], None::<&()>)
                    .await
            }
        }
    }

    async fn get_pool(&self, id: &str) -> Result<Pool> {
        self.call(Method::GET, &["pools", id], &[], None::<&()>)
            .await
    }

    async fn del_pool(&self, id: &str) -> Result<()> {
        self.call_unit(Method::DELETE, &["pools", id]).await
    }

    async fn get_node_pools(&self, node: &str) -> Result<Vec<Pool>> {
        self.call(Method::GET, &["nodes", node, "pools"], &[], None::<&()>)
            .await
    }

    async fn put_node_pool(&self, node: &str, pool: &str, body: CreatePoolBody) -> Result<Pool> {
        self.call(
            Method::PUT,
            &["nodes", node, "pools", pool],
            &[],
            Some(&body),
        )
        .await
    }

    async fn del_node_pool(&self, node: &str, pool: &str) -> Result<()> {
        self.call_unit(Method::DELETE, &["nodes", node, "pools", pool])
            .await
    }

    async fn label_pool(&self, id: &str, key: &str, value: Option<&str>) -> Result<Pool> {
        self.label("pools", id, key, value).await
    }

    async fn get_replicas(&self) -> Result<Vec<Replica>> {
        self.call(Method::GET, &["replicas"], &[], None::<&()>)
            .await
    }

    async fn get_replica(&self, id: &str) -> Result<Replica> {
        self.call(Method::GET, &["replicas", id], &[], None::<&()>)
            .await
    }

    async fn get_nexuses(&self) -> Result<Vec<Nexus>> {
        self.call(Method::GET, &["nexuses"], &[], None::<&()>).await
    }

    async fn get_nexus(&self, id: &str) -> Result<Nexus> {
        self.call(Method::GET, &["nexuses", id], &[], None::<&()>)
            .await
    }

    async fn get_nodes(&self) -> Result<Vec<Node>> {
        self.call(Method::GET, &["nodes"], &[], None::<&()>).await
    }

    async fn get_node(&self, id: &str) -> Result<Node> {
        self.call(Method::GET, &["nodes", id], &[], None::<&()>)
            .await
    }

    async fn put_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        self.call(
            Method::PUT,
            &["nodes", id, "cordon", label],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn del_node_cordon(&self, id: &str, label: &str) -> Result<Node> {
        self.call(
            Method::DELETE,
            &["nodes", id, "cordon", label],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn put_node_drain(&self, id: &str, label: &str) -> Result<Node> {
        self.call(
            Method::PUT,
            &["nodes", id, "drain", label],
            &[],
            None::<&()>,
        )
        .await
    }

    async fn label_node(&self, id: &str, key: &str, value: Option<&str>) -> Result<Node> {
        self.label("nodes", id, key, value).await
    }

    async fn get_specs(&self) -> Result<Specs> {
        self.call(Method::GET, &["specs"], &[], None::<&()>).await
    }

    async fn get_versions(&self) -> Result<Versions> {
        self.call(Method::GET, &["versions"], &[], None::<&()>)
            .await
    }

    async fn get_upgrade_status(&self) -> Result<UpgradeStatus> {
        self.call(Method::GET, &["upgrade-status"], &[], None::<&()>)
            .await
    }

    async fn put_upgrade_status(&self, body: UpgradeStatus) -> Result<UpgradeStatus> {
        self.call(Method::PUT, &["upgrade-status"], &[], Some(&body))
            .await
    }

    async fn del_upgrade_status(&self) -> Result<()> {
        self.call_unit(Method::DELETE, &["upgrade-status"]).await
    }
}

impl RestClient {
    /// `PUT /v0/{collection}/{id}/label/{key}={value}` or
    /// `DELETE /v0/{collection}/{id}/label/{key}`.
    async fn label<T: DeserializeOwned>(
        &self,
        collection: &str,
        id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<T> {
        if key.is_empty() || key.contains('=') {
            return Err(RestError::invalid(format!(
                "'{key}' is not a valid label key (it must be non-empty, without '=')"
            )));
        }
        match value {
            Some(value) => {
                let pair = format!("{key}={value}");
                self.call(
                    Method::PUT,
                    &[collection, id, "label", &pair],
                    &[],
                    None::<&()>,
                )
                .await
            }
            None => {
                self.call(
                    Method::DELETE,
                    &[collection, id, "label", key],
                    &[],
                    None::<&()>,
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests;
