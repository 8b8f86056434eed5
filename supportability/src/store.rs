//! The store dump (`etcd_dump`): every key under the cluster's prefix,
//! read over etcd's v3 gRPC API (a real etcd or the embedded store, which
//! speaks the same wire subset) in pages of [`PAGE_KEYS`].
//!
//! Format, one entry per key, in key order:
//!
//! ```text
//! /openebs.io/mayastor/apis/v0/clusters/<uid>/namespaces/<ns>/VolumeSpec/<id>:
//! {
//!   "uuid": "...",
//!   ...
//! }
//!
//! ```
//!
//! The value is pretty-printed when it is JSON, else written as text
//! (invalid UTF-8 replaced). Each page is written out before the next is
//! read, so memory holds one page at most.

use std::io::Write;
use std::time::Duration;

use io_engine_api::etcd::etcdserverpb::{kv_client::KvClient, RangeRequest};
use tonic::transport::{Channel, Endpoint};

use crate::DumpError;

/// Root of every key the project writes (DESIGN.md section 2).
pub const KEY_PREFIX: &str = "/openebs.io/mayastor/";
/// Keys read per request.
pub const PAGE_KEYS: i64 = 1000;
/// Largest message accepted from the store (a page of big values).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A client of the store's KV service.
#[derive(Debug, Clone)]
pub struct StoreClient {
    endpoint: String,
    kv: KvClient<Channel>,
}

/// What a dump read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub keys: u64,
    pub pages: u64,
}

/// The end of the key range of every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl StoreClient {
    /// Connects to `host:port` (or `http://host:port`); fails when the
    /// store does not answer a read within `timeout`.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<StoreClient, DumpError> {
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let unreachable = |reason: String| DumpError::Store {
            endpoint: endpoint.to_string(),
            reason,
        };
        let ep = Endpoint::from_shared(url)
            .map_err(|e| unreachable(format!("not a valid endpoint: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = tokio::time::timeout(timeout, ep.connect())
            .await
            .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
            .map_err(|e| unreachable(format!("cannot connect: {}", source_chain(&e))))?;
        let mut client = StoreClient {
            endpoint: endpoint.to_string(),
            kv: KvClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        };
        // A count-only read proves it speaks the API.
        client
            .range(KEY_PREFIX.as_bytes().to_vec(), true, 0)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(client)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn range(
        &mut self,
        from: Vec<u8>,
        count_only: bool,
        limit: i64,
    ) -> Result<io_engine_api::etcd::etcdserverpb::RangeResponse, DumpError> {
        let request = RangeRequest {
            key: from,
            range_end: prefix_end(KEY_PREFIX.as_bytes()),
            limit,
            count_only,
            ..Default::default()
        };
        self.kv
            .range(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| DumpError::Store {
                endpoint: self.endpoint.clone(),
                reason: s.message().to_string(),
            })
    }

    /// Writes every key under [`KEY_PREFIX`] accepted by `keep` to `out`,
    /// in the format of the module header.
    pub async fn dump(
        &mut self,
        out: &mut dyn Write,
        keep: &dyn Fn(&[u8], &[u8]) -> bool,
    ) -> Result<StoreStats, DumpError> {
        let mut stats = StoreStats::default();
        let mut from = KEY_PREFIX.as_bytes().to_vec();
        loop {
            let page = self.range(from.clone(), false, PAGE_KEYS).await?;
            stats.pages += 1;
            let Some(last) = page.kvs.last().map(|kv| kv.key.clone()) else {
                break;
            };
            for kv in &page.kvs {
                if !keep(&kv.key, &kv.value) {
                    continue;
                }
                write_entry(out, &kv.key, &kv.value).map_err(|e| DumpError::Store {
                    endpoint: self.endpoint.clone(),
                    reason: format!("cannot write the dump: {e}"),
                })?;
                stats.keys += 1;
            }
            if !page.more {
                break;
            }
            // The next page starts just after the last key.
            from = last;
            from.push(0);
        }
        Ok(stats)
    }
}

/// One `key:` + value entry.
pub fn write_entry(out: &mut dyn Write, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&key.escape_ascii().to_string().into_bytes())?;
    out.write_all(b":\n")?;
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
            out.write_all(pretty.as_bytes())?;
        }
        Err(_) => out.write_all(String::from_utf8_lossy(value).as_bytes())?,
    }
    out.write_all(b"\n\n")
}

/// An error with its causes, on one line.
pub(crate) fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Parses a dump back into (key, value text) pairs (used by tests and by
/// anyone reading a bundle programmatically).
pub fn parse_dump(text: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let block = block.trim_start_matches('\n');
        if block.is_empty() {
            continue;
        }
        let (key, value) = block.split_once(":\n").unwrap_or((block, ""));
        entries.push((key.to_string(), value.to_string()));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn entries_round_trip() {
        let mut out = Vec::new();
        write_entry(&mut out, b"/k/1", br#"{"a":1,"b":[true]}"#).expect("write");
        write_entry(&mut out, b"/k/2", b"plain").expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("/k/1:\n{\n  \"a\": 1"));
        let parsed = parse_dump(&text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "/k/1");
        let v: serde_json::Value = serde_json::from_str(&parsed[0].1).expect("json");
        assert_eq!(v["b"][0], true);
        assert_eq!(parsed[1], ("/k/2".to_string(), "plain".to_string()));
    }
}
