//! The core agent's HTTP API is no way around `api-rest`'s bearer token:
//! given a token, `agent-core` refuses every HTTP route without it (each
//! path and method of the served OpenAPI document, the probes, the spec
//! and an unknown path), and `api-rest` given the same token forwards it.
//!
//! Real processes: etcd, `agent-core` and `api-rest`, on 127.0.80.x.

#![allow(clippy::unwrap_used)]

mod common;

use common::{bin, eventually, free_port, wait_port, Proc};
use openapi::{
    client::{RestClient, RestClientOptions},
    CoreApi, ErrorKind,
};
use reqwest::{Method, StatusCode};

const PREFIX: &str = "127.0.80";
const TOKEN: &str = "core-s3cret";

/// Every (method, path) the HTTP API serves, path parameters filled in.
fn every_route() -> Vec<(Method, String)> {
    let doc = api_rest::spec::openapi_json();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let filled: String = path
            .split('/')
            .map(|seg| {
                if seg == "{n}" {
                    "2"
                } else if seg.starts_with('{') {
                    "11111111-1111-4111-8111-111111111111"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, _) in item.as_object().unwrap() {
            let m = match method.as_str() {
                "get" => Method::GET,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                "post" => Method::POST,
                "patch" => Method::PATCH,
                _ => continue,
            };
            routes.push((m, filled.clone()));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_answers_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    let (_etcd, etcd_ep) = common::etcd(&format!("{PREFIX}.1"));
    let core_ip = format!("{PREFIX}.2");
    let core_ep = format!("{core_ip}:{}", free_port(&core_ip));
    let _core = Proc::spawn(
        "agent-core",
        bin("agent-core", "agent-core"),
        vec![
            "--grpc-endpoint".into(),
            core_ep.clone(),
            "--store".into(),
            etcd_ep.clone(),
            "--bearer-token-file".into(),
            token_file.display().to_string(),
        ],
    );
    wait_port(&core_ep, "agent-core");
    let base = format!("http://{core_ep}");
    let http = reqwest::Client::new();

    // Serving (the lease is taken) once the token opens a route.
    eventually("the core agent to serve", 30, || {
        let req = http.get(format!("{base}/v0/nodes")).bearer_auth(TOKEN);
        async move {
            match req.send().await {
                Ok(r) if r.status() == StatusCode::OK => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;

    let mut routes = every_route();
    assert!(
        routes.len() >= 25,
        "the document lists {} routes",
        routes.len()
    );
    for probe in ["/live", "/ready", "/v0/api/spec", "/v0/no-such-route"] {
        routes.push((Method::GET, probe.to_owned()));
    }
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("")] {
            let mut req = http
                .request(method.clone(), format!("{base}{path}"))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let answer = req.send().await.unwrap();
            assert_eq!(
                answer.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with token {token:?}"
            );
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["kind"], "Unauthenticated", "{method} {path}: {body}");
        }
    }
    // Nothing was changed by any of it.
    let core = RestClient::new(
        &base,
        RestClientOptions {
            bearer_token: Some(TOKEN.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let specs = core.get_specs().await.unwrap();
    assert!(specs.volumes.is_empty() && specs.pools.is_empty() && specs.nodes.is_empty());
    assert!(core.get_spec_json().await.unwrap()["paths"]["/v0/volumes"].is_object());

    // api-rest with the same token forwards it; without one, the core
    // refuses what it forwards.
    for (with_token, port_ip) in [
        (true, format!("{PREFIX}.3")),
        (false, format!("{PREFIX}.4")),
    ] {
        let addr = format!("{port_ip}:{}", free_port(&port_ip));
        let mut args = vec![
            "--core-endpoint".to_string(),
            base.clone(),
            "--http".into(),
            addr.clone(),
        ];
        if with_token {
            args.extend([
                "--bearer-token-file".into(),
                token_file.display().to_string(),
            ]);
        }
        let _rest = Proc::spawn("api-rest", bin("api-rest", "api-rest"), args);
        wait_port(&addr, "api-rest");
        let api = RestClient::new(
            &format!("http://{addr}"),
            RestClientOptions {
                bearer_token: with_token.then(|| TOKEN.to_string()),
                ..Default::default()
            },
        )
        .unwrap();
        match api.get_nodes().await {
            Ok(nodes) => assert!(with_token && nodes.is_empty(), "{nodes:?}"),
            Err(e) => {
                assert!(!with_token, "api-rest with the token: {e}");
                assert_eq!(e.kind, ErrorKind::Unauthenticated, "{e}");
            }
        }
    }
}
