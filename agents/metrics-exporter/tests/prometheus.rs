//! The exporter against a real local cluster and a real Prometheus
//! (Debian's `prometheus` package, which also brings `promtool`):
//!
//! 1. a 1-node local cluster (`mayastor-local up`, which starts the
//!    node's exporter on `127.0.145.1:9502`), its pool, and a published
//!    volume written through our NVMe/TCP initiator;
//! 2. the exporter's page passes `promtool check metrics`;
//! 3. Prometheus scrapes it every second: the pool gauges it stores equal
//!    the REST API's figures of the pool;
//! 4. the engine SIGKILLed: the exporter still answers, with
//!    `io_engine_up 0` and no pool figure, and logs that the engine does
//!    not answer.
//!
//! Addresses: the cluster on 127.0.145.*, Prometheus on 127.0.146.1.
//! Every process is stopped by PID (Prometheus by [`testkit::Proc`], the
//! cluster by `mayastor-local down`).

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use openapi::{
    client::{RestClient, RestClientOptions},
    models::*,
    CoreApi,
};
use testkit::{eventually, LocalCluster, Proc};

const PREFIX: &str = "127.0.145";
const EXPORTER: &str = "127.0.145.1:9502";
const PROMETHEUS_IP: &str = "127.0.146.1";
const VOLUME: &str = "7e2d8c4a-5b1f-4c3e-9a6d-0f1e2d3c4b5a";
const MIB: u64 = 1 << 20;

/// A Debian program, found on PATH or in /usr/bin.
fn debian_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} is missing: install Debian's prometheus package (scripts/test.sh does)")
    })
}

async fn get(url: &str) -> Result<String, String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    Ok(body)
}

/// The exporter's page.
async fn scrape() -> String {
    get(&format!("http://{EXPORTER}/metrics")).await.unwrap()
}

/// `promtool check metrics` on `page`: its findings, one per line (none
/// when the page is clean), and whether it could parse the page at all.
fn promtool_check(page: &str) -> (bool, Vec<String>) {
    let mut child = Command::new(debian_program("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect();
    // promtool exits 0 when clean, 3 with lint findings, 1 when the page
    // cannot be parsed.
    let parsed = matches!(out.status.code(), Some(0 | 3));
    (parsed && out.status.success(), findings)
}

/// The value of the single sample `name{labels}` on `page`.
fn sample(page: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// A real Prometheus scraping the exporter every second.
struct Prometheus {
    url: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: mayastor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = testkit::free_port_on(PROMETHEUS_IP.parse::<std::net::IpAddr>().unwrap());
        let proc = Proc::spawn(
            "prometheus",
            debian_program("prometheus"),
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address={listen}"),
                // Samples of a second ago are still "now" for instant queries.
                "--query.lookback-delta=5s".into(),
            ],
        );
        Prometheus {
            url: format!("http://{listen}"),
            _proc: proc,
            _dir: dir,
        }
    }

    /// The samples of instant query `promql`: each series' labels (as
    /// JSON) and value.
    async fn query(&self, promql: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&get(url.as_str()).await?).map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("query {promql}: {body}"));
        }
        let results = body["data"]["result"].as_array().cloned().unwrap_or_default();
        Ok(results
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap_or("NaN").parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect())
    }

    /// The value of a query that selects exactly one series.
    async fn one(&self, promql: &str) -> Result<f64, String> {
        match self.query(promql).await?.as_slice() {
            [(_, v)] => Ok(*v),
            other => Err(format!("{promql}: {other:?}")),
        }
    }
}

fn rest(cluster: &LocalCluster) -> RestClient {
    RestClient::new(
        &cluster.rest_url,
        RestClientOptions {
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .unwrap()
}

async fn pool_state(api: &RestClient) -> PoolState {
    api.get_pool("pool-1").await.unwrap().state.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_pool_gauges_and_volume_io() {
    let cluster = LocalCluster::up(PREFIX, 1, &["--pool-size", "256MiB"]);
    let api = rest(&cluster);
    api.put_volume(
        VOLUME,
        CreateVolumeBody {
            size: 32 * MIB,
            replicas: 1,
            thin: false,
            policy: VolumePolicy { self_heal: true },
            topology: None,
            labels: None,
            affinity_group: None,
        },
    )
    .await
    .unwrap();
    api.put_volume_target(
        VOLUME,
        PublishVolumeBody {
            node: Some("node-1".into()),
            frontend_node: Some("metrics-test".into()),
            protocol: Protocol::Nvmf,
        },
    )
    .await
    .unwrap();

    // The page: upstream's pool families with the REST API's figures.
    let pool = pool_state(&api).await;
    assert_eq!(pool.committed, 32 * MIB, "{pool:?}");
    let page = scrape().await;
    let labels = "name=\"pool-1\",node=\"node-1\"";
    assert_eq!(
        sample(&page, "diskpool_total_size_bytes", labels),
        Some(pool.capacity),
        "{page}"
    );
    assert_eq!(
        sample(&page, "diskpool_used_size_bytes", labels),
        Some(pool.used)
    );
    assert_eq!(
        sample(&page, "diskpool_committed_size_bytes", labels),
        Some(pool.committed)
    );
    assert_eq!(sample(&page, "diskpool_status", labels), Some(1));
    assert_eq!(sample(&page, "io_engine_up", "node=\"node-1\""), Some(1));
    let (clean, findings) = promtool_check(&page);
    assert!(clean, "promtool check metrics: {findings:#?}\n{page}");

    // A real Prometheus scraping the exporter stores the same figures.
    let prometheus = Prometheus::start(EXPORTER);
    eventually("Prometheus scrapes the exporter", 60, || async {
        let up = prometheus.one("up{job=\"mayastor\"}").await?;
        (up == 1.0).then_some(()).ok_or(format!("up = {up}"))
    })
    .await;
    let pool = pool_state(&api).await;
    for (family, expected) in [
        ("diskpool_total_size_bytes", pool.capacity),
        ("diskpool_used_size_bytes", pool.used),
        ("diskpool_committed_size_bytes", pool.committed),
        ("diskpool_status", 1),
    ] {
        let promql = format!("{family}{{node=\"node-1\",name=\"pool-1\"}}");
        let got = prometheus.one(&promql).await.unwrap();
        assert_eq!(got, expected as f64, "{promql}");
    }

    // The engine gone: the page still answers, says so, and shows no
    // figure that would pass for a current one.
    assert!(cluster.kill_engine(1));
    let page = scrape().await;
    assert_eq!(
        sample(&page, "io_engine_up", "node=\"node-1\""),
        Some(0),
        "{page}"
    );
    assert!(
        page.lines()
            .all(|l| l.starts_with('#') || l.starts_with("io_engine_up")),
        "{page}"
    );
    let (clean, findings) = promtool_check(&page);
    assert!(clean, "promtool check metrics: {findings:#?}\n{page}");
    eventually("Prometheus sees the pool gauges go", 30, || async {
        let left = prometheus
            .query("diskpool_total_size_bytes{node=\"node-1\"}")
            .await?;
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
    let log = std::fs::read_to_string(cluster.logs_dir().join("metrics-exporter-1.log")).unwrap();
    assert!(
        log.contains("io-engine does not answer"),
        "exporter log:\n{log}"
    );
}
