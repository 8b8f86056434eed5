//! Log history from Loki, through its documented HTTP API:
//!
//! `GET /loki/api/v1/query_range?query={container="io-engine"[,hostname=~"node-1|node-2"]}&start=<ns>&end=<ns>&limit=3000&direction=forward`
//!
//! answered with `{"status":"success","data":{"resultType":"streams",
//! "result":[{"stream":{labels},"values":[["<ns>","<line>"],...]}]}}`.
//!
//! Paging: a page of [`PAGE_LINES`] entries is followed by the next one
//! starting at the last entry's timestamp; entries of that timestamp that
//! were already written are skipped, so each line is kept exactly once
//! even when several share a timestamp (upstream's "last + 1 ms" loses
//! those). A page shorter than the limit is the last.
//!
//! One query per container; its lines go to one spool file per `hostname`
//! label (anonymous temporary files, so memory holds one page), and each
//! spool becomes `logs/<group>/<hostname>-loki-<container>.log`, cut to
//! `--max-log-bytes` of the newest lines.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufWriter, Write};

use serde::Deserialize;

use crate::bundle::Bundle;
use crate::logcut::Cut;
use crate::manifest::FileRecord;
use crate::topology::Selection;
use crate::DumpOptions;

/// Entries asked per page.
pub const PAGE_LINES: usize = 3000;
/// Pages per container at most (bounds a runaway server).
const MAX_PAGES: usize = 100_000;

/// Containers asked for when Kubernetes does not list them.
pub const DEFAULT_CONTAINERS: &[&str] = &[
    "io-engine",
    "agent-core",
    "agent-ha-cluster",
    "agent-ha-node",
    "api-rest",
    "csi-controller",
    "csi-node",
    "operator-diskpool",
    "metrics-exporter",
    "etcd",
];

/// Where Loki is.
#[derive(Clone)]
pub enum LokiSource {
    /// A base URL (`--loki-endpoint`).
    Url(String),
    /// Through the Kubernetes API server's service proxy: the client and
    /// the proxy path of the Service (`/api/v1/namespaces/<ns>/services/<name>:<port>/proxy`).
    Proxy(kube::Client, String),
}

impl LokiSource {
    pub fn describe(&self) -> String {
        match self {
            LokiSource::Url(url) => url.clone(),
            LokiSource::Proxy(_, path) => format!("the API server's proxy {path}"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Response {
    status: String,
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Stream>,
}

#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(String, String)>,
}

/// One query's client.
struct Client {
    source: LokiSource,
    http: reqwest::Client,
    bearer: Option<String>,
}

impl Client {
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<u8>, String> {
        match &self.source {
            LokiSource::Url(base) => {
                let url = format!("{}{path}", base.trim_end_matches('/'));
                let mut request = self.http.get(&url).query(query);
                if let Some(token) = &self.bearer {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(|e| {
                    format!(
                        "Loki at {base} is unreachable: {}",
                        crate::store::source_chain(&e)
                    )
                })?;
                let status = response.status();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("Loki at {base}: {e}"))?;
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
                    return Err(format!("Loki at {base} answered {status}: {}", text.trim()));
                }
                Ok(body.to_vec())
            }
            LokiSource::Proxy(client, proxy) => {
                let uri = format!("{proxy}{path}?{}", form_urlencoded(query));
                let request = http::Request::get(uri)
                    .body(Vec::new())
                    .map_err(|e| format!("Loki through {proxy}: {e}"))?;
                client
                    .request_text(request)
                    .await
                    .map(String::into_bytes)
                    .map_err(|e| format!("Loki through {proxy}: {e}"))
            }
        }
    }
}

fn form_urlencoded(query: &[(&str, String)]) -> String {
    query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The LogQL selector of one container (and the concerned nodes).
pub fn selector(container: &str, hostnames: Option<&[String]>) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    match hostnames {
        Some(hosts) if !hosts.is_empty() => {
            let alternatives: Vec<String> = hosts.iter().map(|h| escape(h)).collect();
            format!(
                "{{container=\"{}\",hostname=~\"{}\"}}",
                escape(container),
                alternatives.join("|")
            )
        }
        _ => format!("{{container=\"{}\"}}", escape(container)),
    }
}

/// Spool files by hostname.
struct Spools(BTreeMap<String, BufWriter<tempfile::NamedTempFile>>);

impl Spools {
    fn write(&mut self, host: &str, line: &str) -> Result<(), String> {
        if !self.0.contains_key(host) {
            let file = tempfile::NamedTempFile::new().map_err(|e| format!("spool file: {e}"))?;
            self.0.insert(host.to_string(), BufWriter::new(file));
        }
        let spool = self
            .0
            .get_mut(host)
            .ok_or_else(|| "invariant: spool just inserted".to_string())?;
        spool
            .write_all(line.as_bytes())
            .and_then(|()| {
                if line.ends_with('\n') {
                    Ok(())
                } else {
                    spool.write_all(b"\n")
                }
            })
            .map_err(|e| format!("spool file: {e}"))
    }
}

/// Pages through one container's history into `spools`; returns the
/// number of lines.
async fn query_container(
    client: &Client,
    selector: &str,
    start_ns: i64,
    end_ns: i64,
    spools: &mut Spools,
) -> Result<u64, String> {
    let mut start = start_ns;
    // Entries already written at the timestamp `start` (stream, line).
    let mut seen_at_start: HashSet<(String, String)> = HashSet::new();
    let mut lines = 0u64;
    for _ in 0..MAX_PAGES {
        let query = [
            ("query", selector.to_string()),
            ("start", start.to_string()),
            ("end", end_ns.to_string()),
            ("limit", PAGE_LINES.to_string()),
            ("direction", "forward".to_string()),
        ];
        let body = client.get("/loki/api/v1/query_range", &query).await?;
        let response: Response = serde_json::from_slice(&body)
            .map_err(|e| format!("not a Loki query_range answer: {e}"))?;
        if response.status != "success" || response.data.result_type != "streams" {
            return Err(format!(
                "Loki answered status {} with {} results",
                response.status, response.data.result_type
            ));
        }
        // Merge the page's streams in time order (stable within a stream).
        let mut entries: Vec<(i64, String, String, String)> = Vec::new();
        for stream in response.data.result {
            let host = stream
                .stream
                .get("hostname")
                .or_else(|| stream.stream.get("node_name"))
                .cloned()
                .unwrap_or_else(|| "unknown".into());
            let key = format!("{:?}", stream.stream);
            for (ts, line) in stream.values {
                let ts: i64 = ts
                    .parse()
                    .map_err(|_| format!("Loki gave a timestamp that is not nanoseconds: {ts}"))?;
                entries.push((ts, key.clone(), host.clone(), line));
            }
        }
        entries.sort_by_key(|e| e.0);
        let count = entries.len();
        let Some(last_ts) = entries.last().map(|e| e.0) else {
            break;
        };
        let mut new_seen = HashSet::new();
        let mut fresh = 0usize;
        for (ts, key, host, line) in entries {
            if ts == start && seen_at_start.contains(&(key.clone(), line.clone())) {
                continue;
            }
            spools.write(&host, &line)?;
            fresh += 1;
            lines += 1;
            if ts == last_ts {
                new_seen.insert((key, line));
            }
        }
        if count < PAGE_LINES {
            break;
        }
        if last_ts == start {
            if fresh == 0 {
                // A whole page of one timestamp, all seen: step past it.
                start += 1;
                seen_at_start.clear();
                continue;
            }
            seen_at_start.extend(new_seen);
        } else {
            start = last_ts;
            seen_at_start = new_seen;
        }
    }
    Ok(lines)
}

/// Collects every container's history from Loki.
pub(crate) async fn collect(
    bundle: &mut Bundle<'_>,
    source: &LokiSource,
    opts: &DumpOptions,
    selection: &Selection,
    since_ns: i64,
    containers: &[String],
) {
    let http = match reqwest::Client::builder().timeout(opts.timeout).build() {
        Ok(h) => h,
        Err(e) => {
            let t = bundle.begin("logs/loki");
            bundle.end(
                "logs/loki",
                &source.describe(),
                t,
                Err(format!("http client: {e}")),
            );
            return;
        }
    };
    let client = Client {
        source: source.clone(),
        http,
        bearer: opts.bearer_token.clone(),
    };
    let hosts: Option<Vec<String>> =
        (!selection.everything).then(|| selection.nodes.iter().cloned().collect());
    let end_ns = crate::now_ns();
    for container in containers {
        let name = format!("logs/loki/{container}");
        let t = bundle.begin(&name);
        let mut spools = Spools(BTreeMap::new());
        let sel = selector(container, hosts.as_deref());
        let result = query_container(&client, &sel, since_ns, end_ns, &mut spools).await;
        let result = match result {
            Err(e) => {
                let down = e.contains("unreachable");
                bundle.end(&name, &source.describe(), t, Err(e));
                if down {
                    // Loki is down: one failure is enough, the rest goes on.
                    return;
                }
                continue;
            }
            Ok(_) => write_spools(bundle, container, spools, opts.max_log_bytes),
        };
        bundle.end(&name, &source.describe(), t, result);
    }
}

fn write_spools(
    bundle: &mut Bundle<'_>,
    container: &str,
    spools: Spools,
    max_bytes: u64,
) -> Result<Vec<FileRecord>, String> {
    let mut files = Vec::new();
    for (host, spool) in spools.0 {
        let file = spool
            .into_inner()
            .map_err(|e| format!("spool file: {}", e.error()))?;
        let path = format!(
            "logs/{}/{host}-loki-{container}.log",
            crate::log_group(container)
        );
        files.push(bundle.log_file(&path, file.path(), Cut::newest(max_bytes))?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(selector("io-engine", None), r#"{container="io-engine"}"#);
        assert_eq!(
            selector("io-engine", Some(&["node-1".into(), "node-2".into()])),
            r#"{container="io-engine",hostname=~"node-1|node-2"}"#
        );
        assert_eq!(percent("{a=\"b\"}"), "%7Ba%3D%22b%22%7D");
    }
}
