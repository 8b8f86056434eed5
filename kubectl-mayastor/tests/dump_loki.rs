//! `kubectl mayastor dump` with Loki: a stand-in server (Loki itself cannot
//! run here) speaking Loki's documented `GET /loki/api/v1/query_range`
//! (LogQL stream selector, `start`/`end` in ns, `limit`, `direction=forward`,
//! `{"status":"success","data":{"resultType":"streams","result":[...]}}`)
//! holds 7,500 lines of one container, pairs of which share a timestamp.
//! The bundle must hold each line exactly once, in order; secrets planted
//! in Loki's lines and in a component log never reach the bundle; with
//! Loki down the failure is recorded and the rest is collected.
//! Local cluster on 127.0.64.*.

#![allow(clippy::unwrap_used)]

mod common;
mod dumpkit;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::Cluster;
use dumpkit::{bundle_of, error_line};
use supportability::now_ns;

const LINES: usize = 7500;
const GIVEN_TOKEN: &str = "given-bearer-7f3a9c2e51";
const KUBE_TOKEN: &str = "kubeconfig-token-d41d8cd98f";
const KEY_MATERIAL: &str = "MIIEpAIBAAKCAQEAsecretkeymaterial";
const LOG_KEY_MATERIAL: &str = "MHcCAQEEIlogsecretkeymaterial";

/// The lines Loki holds: (timestamp ns, line).
fn loki_lines(base_ns: i64) -> Vec<(i64, String)> {
    (0..LINES)
        .map(|i| {
            // Two lines per millisecond: equal timestamps across pages.
            let ts = base_ns + (i as i64 / 2) * 1_000_000;
            let text = match i {
                100 => format!("loki line {i:05} GET /v0 Authorization: Bearer {GIVEN_TOKEN}"),
                200 => format!("loki line {i:05} kubeconfig user token: {KUBE_TOKEN}"),
                300 => format!("loki line {i:05} -----BEGIN RSA PRIVATE KEY-----"),
                301 => KEY_MATERIAL.to_string(),
                302 => "-----END RSA PRIVATE KEY-----".to_string(),
                _ => format!("loki line {i:05} io-engine says something"),
            };
            (ts, text)
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// What the stand-in saw.
#[derive(Default)]
struct Seen {
    requests: Vec<std::collections::BTreeMap<String, String>>,
}

/// Serves `query_range` over `lines` for container `io-engine` on host
/// `node-1`; other containers have no streams.
fn serve_loki(listener: TcpListener, lines: Arc<Vec<(i64, String)>>, seen: Arc<Mutex<Seen>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let params: std::collections::BTreeMap<String, String> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), decode(v)))
                .collect();
            seen.lock().unwrap().requests.push(params.clone());
            let body = if path != "/loki/api/v1/query_range" {
                None
            } else {
                let start: i64 = params["start"].parse().unwrap();
                let end: i64 = params["end"].parse().unwrap();
                let limit: usize = params["limit"].parse().unwrap();
                let ours = params["query"].contains("container=\"io-engine\"");
                let values: Vec<serde_json::Value> = if ours {
                    lines
                        .iter()
                        .filter(|(ts, _)| *ts >= start && *ts < end)
                        .take(limit)
                        .map(|(ts, l)| serde_json::json!([ts.to_string(), l]))
                        .collect()
                } else {
                    Vec::new()
                };
                let result = if values.is_empty() {
                    serde_json::json!([])
                } else {
                    serde_json::json!([{
                        "stream": {"app": "mayastor", "container": "io-engine", "hostname": "node-1"},
                        "values": values,
                    }])
                };
                Some(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "streams", "result": result, "stats": {}},
                }))
            };
            let (status, text) = match body {
                Some(json) => ("200 OK", json.to_string()),
                None => ("404 Not Found", "404 page not found".to_string()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
}

#[test]
fn loki_history_once_in_order_secrets_redacted_and_loki_down_recorded() {
    let cluster = Cluster::up("127.0.64", 1);
    // A secret in a component log too.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(cluster.state_dir.join("logs/api-rest.log"))
        .unwrap();
    let now = supportability::rfc3339(now_ns());
    writeln!(
        log,
        "{now}  INFO request authorization=\"Bearer {GIVEN_TOKEN}\" user token: {KUBE_TOKEN}"
    )
    .unwrap();
    // A private key block in the log, as a careless component would print it.
    writeln!(
        log,
        "{now}  WARN loaded tls key:\n-----BEGIN EC PRIVATE KEY-----\n{LOG_KEY_MATERIAL}\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----"
    )
    .unwrap();
    drop(log);

    let base = now_ns() - 30 * 60 * 1_000_000_000;
    let lines = Arc::new(loki_lines(base));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = TcpListener::bind("127.0.64.20:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    serve_loki(listener, lines.clone(), seen.clone());

    let out_dir = tempfile::tempdir().unwrap();
    let dir = out_dir.path().to_str().unwrap();
    let args = [
        "dump",
        "system",
        "-d",
        dir,
        "--since",
        "1h",
        "-l",
        &url,
        "--bearer-token",
        GIVEN_TOKEN,
    ];
    let out = cluster.plugin(&args);
    dumpkit::assert_ok(&out, &args);
    let bundle = bundle_of(&out);

    // Each line once, in order (the private key's lines redacted).
    let text = bundle.text("logs/mayastor/node-1-loki-io-engine.log");
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), LINES, "every line exactly once");
    for (i, line) in got.iter().enumerate() {
        match i {
            301 => assert_eq!(*line, "<redacted>", "line {i}"),
            302 => assert_eq!(*line, "-----END RSA PRIVATE KEY-----"),
            _ => assert!(
                line.starts_with(&format!("loki line {i:05} ")),
                "line {i}: {line}"
            ),
        }
    }
    // The header's value is gone (the scheme may go with it).
    assert!(
        got[100].starts_with("loki line 00100 GET /v0 Authorization: ")
            && got[100].ends_with("<redacted>")
            && !got[100].contains(GIVEN_TOKEN),
        "{}",
        got[100]
    );
    // The requests were pages of 3,000 forward, 3 for our container.
    let seen = seen.lock().unwrap();
    let ours: Vec<_> = seen
        .requests
        .iter()
        .filter(|p| p["query"].contains("io-engine"))
        .collect();
    assert_eq!(ours.len(), 3, "7,500 lines in pages of 3,000");
    for p in &seen.requests {
        assert_eq!(p["limit"], "3000");
        assert_eq!(p["direction"], "forward");
        assert!(p["query"].starts_with("{container=\""), "{}", p["query"]);
    }
    drop(seen);

    // Secrets: nowhere in the unpacked bundle (byte search).
    for secret in [
        GIVEN_TOKEN,
        KUBE_TOKEN,
        KEY_MATERIAL,
        LOG_KEY_MATERIAL,
        "AwEHoUQDQgAE",
    ] {
        assert_eq!(
            bundle.contains(secret),
            Vec::<&str>::new(),
            "{secret} leaked"
        );
    }
    // Counted by kind: the given token (Loki line 100 and the REST log),
    // the kubeconfig token in `token:` fields (Loki line 200 and the REST
    // log), the private key blocks (Loki lines 300-302 and the REST log).
    let manifest = bundle.manifest();
    let count = |kind: &str| manifest.redactions.get(kind).copied().unwrap_or(0);
    assert!(count("known-secret") >= 2, "{:?}", manifest.redactions);
    assert!(count("credential-field") >= 2, "{:?}", manifest.redactions);
    assert_eq!(count("private-key-block"), 2, "{:?}", manifest.redactions);
    let rest_log = bundle.text("logs/rest/api-rest.log");
    assert!(
        rest_log.contains("-----END EC PRIVATE KEY-----"),
        "{rest_log}"
    );
    bundle.check_manifest_sizes();

    // Loki down: recorded, the rest collected, exit code non-zero.
    let args = ["dump", "system", "-d", dir, "-l", "http://127.0.64.9:1"];
    let out = cluster.plugin(&args);
    let line = error_line(&out);
    assert!(
        line.contains("partially collected") && line.contains("logs/loki"),
        "{line}"
    );
    let bundle = bundle_of(&out);
    let manifest = bundle.manifest();
    assert!(manifest.partial);
    let failed: Vec<&str> = manifest.failures().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["logs/loki/io-engine"], "one failure for Loki down");
    let error = manifest.failures().next().unwrap().error.clone().unwrap();
    assert!(
        error.contains("unreachable") && error.contains("127.0.64.9:1"),
        "{error}"
    );
    assert!(bundle.text("README.txt").contains("PARTIALLY COLLECTED"));
    assert!(!bundle.under("topology/node/").is_empty());
    assert!(!bundle.text("logs/mayastor/node-1-io-engine.log").is_empty());
    assert!(!bundle.text("etcd_dump").is_empty());
}
