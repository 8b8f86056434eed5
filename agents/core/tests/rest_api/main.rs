//! The REST API end to end: a 3-node cluster (real etcd, engines and
//! agent-core) behind the real `api-rest` binary, every call made through
//! [`RestClient`] to `api-rest`, which forwards it to the core agent.
//!
//! - every endpoint, each with its effect checked (on the resource, on the
//!   placement of later volumes, or on `GET /specs`);
//! - bad input: each refused with a 4xx and a stable kind, and nothing in
//!   `GET /specs` changed by any of it. Bodies the client cannot produce
//!   (malformed JSON, negative numbers) go over a raw HTTP connection;
//! - schemathesis (`scripts/rest-fuzz.sh`) against the served OpenAPI
//!   document, with data in the cluster.

#![allow(clippy::unwrap_used)]

mod bad_input;
#[path = "../common/mod.rs"]
mod common;
mod effects;
mod fuzz;

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use common::{bin, eventually, free_port, wait_port, Cluster, Proc, Timers};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi, ErrorKind, RestError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const VOL: u64 = 16 * MIB;
const POOL: u64 = 128 * MIB;
const PREFIX: &str = "127.0.8";

/// A cluster with `api-rest` in front of its core agent.
struct Rest {
    cluster: Cluster,
    server: Proc,
    /// `ip:port` of `api-rest`.
    addr: String,
    api: RestClient,
}

impl Rest {
    fn start() -> Rest {
        let cluster = Cluster::start(PREFIX, 3, Timers::default());
        let ip = format!("{PREFIX}.3");
        let addr = format!("{ip}:{}", free_port(&ip));
        let server = Proc::spawn(
            "api-rest",
            bin("api-rest", "api-rest"),
            vec![
                "--core-endpoint".into(),
                cluster.rest_url(),
                "--http".into(),
                addr.clone(),
                "--request-timeout".into(),
                "60s".into(),
            ],
        );
        wait_port(&addr, "api-rest");
        let api = RestClient::new(
            &format!("http://{addr}"),
            RestClientOptions {
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .unwrap();
        Rest {
            cluster,
            server,
            addr,
            api,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn nodes_online(&self) {
        eventually("3 nodes online", 30, || async {
            let nodes = self.api.get_nodes().await.map_err(|e| e.to_string())?;
            let online = nodes
                .iter()
                .filter(|n| {
                    n.spec.is_some()
                        && n.state
                            .as_ref()
                            .is_some_and(|s| s.status == NodeStatus::Online)
                })
                .count();
            if online == 3 {
                Ok(())
            } else {
                Err(format!("{online} of 3 online: {nodes:?}"))
            }
        })
        .await;
    }

    /// Pool `p<i>` on `node-<i>`, each on its own file.
    async fn make_pools(&self) {
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let id = format!("p{}", i + 1);
            let pool = self
                .api
                .put_node_pool(node, &id, pool_body(self.cluster.disk(&id, POOL)))
                .await
                .unwrap();
            assert_eq!(pool.id, id);
        }
    }

    /// Sends one raw HTTP/1.1 request to `api-rest`; returns the status and
    /// the body decoded as a [`RestError`] (when it is one).
    async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, Option<RestError>) {
        let mut stream = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(ct) = content_type {
            request.push_str(&format!("content-type: {ct}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("api-rest answers within 60 s")
            .unwrap();
        let text = String::from_utf8_lossy(&answer).to_string();
        let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let payload = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(payload)
        } else {
            payload.to_string()
        };
        (status, serde_json::from_str(&payload).ok())
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn pool_body(disk: String) -> CreatePoolBody {
    CreatePoolBody {
        disks: vec![disk],
        labels: None,
    }
}

fn volume_body(size: u64, replicas: u8) -> CreateVolumeBody {
    CreateVolumeBody::new(size, replicas)
}

fn publish_body(node: &str) -> PublishVolumeBody {
    PublishVolumeBody::nvmf(Some(node), Some("test-host"))
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

/// A raw request and how it must be refused: method, path, content type,
/// body, status, kind, and what the message says.
type RawCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    &'a str,
    u16,
    ErrorKind,
    &'a str,
);

/// The error of `result`, which must be of `kind`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, RestError>, kind: ErrorKind) -> RestError {
    match result {
        Ok(v) => panic!("expected {kind:?}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{e:?}");
            assert!(!e.message.is_empty(), "{e:?}");
            e
        }
    }
}

fn replica_nodes(v: &Volume) -> Vec<String> {
    let mut nodes: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.node.clone())
        .collect();
    nodes.sort();
    nodes
}

fn replica_pools(v: &Volume) -> Vec<String> {
    let mut pools: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.pool.clone())
        .collect();
    pools.sort();
    pools
}

fn volume_ids(vs: &[Volume]) -> BTreeSet<String> {
    vs.iter().map(|v| v.spec.uuid.clone()).collect()
}

async fn wait_replicas_gone(api: &RestClient, uuids: &[String]) {
    eventually("the replicas to go", 20, || async {
        let replicas = api.get_replicas().await.map_err(|e| e.to_string())?;
        let left: Vec<&Replica> = replicas
            .iter()
            .filter(|r| uuids.contains(&r.uuid))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

/// `api-rest` logged no 5xx answer but 507 (no room: a refusal that
/// depends on free space, see `scripts/rest-fuzz.sh`).
fn assert_no_server_error(rest: &Rest) {
    let logs = strip_ansi(&rest.server.logs());
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request failed") && !l.contains("status=507"))
        .collect();
    assert!(failed.is_empty(), "5xx answers:\n{}", failed.join("\n"));
}

/// `text` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
