//! The exporter against a real local cluster and a real Prometheus
//! (Debian's `prometheus` package, which also brings `promtool`):
//!
//! 1. a 1-node local cluster (`mayastor-local up`, which starts the
//!    node's exporter on `127.0.145.1:9502`), its pool, and a published
//!    32 MiB volume;
//! 2. the exporter's page passes `promtool check metrics` (but for the
//!    one finding upstream's `*_latency_us` names always get, see
//!    [`UPSTREAM_NAME_FINDINGS`]);
//! 3. Prometheus scrapes it every second: the pool gauges it stores equal
//!    the REST API's figures of the pool;
//! 4. a writer (our NVMe/TCP initiator) writes 240 checksummed 64 KiB
//!    chunks over about 6 s: Prometheus sees `volume_num_write_ops` rise
//!    while it runs, and afterwards `volume_bytes_written` and
//!    `volume_num_write_ops` went up by exactly what it wrote; the data
//!    reads back intact and `volume_bytes_read` counts that read exactly;
//!    the replica's and the pool's counters are on the page too;
//! 5. the engine SIGKILLed: the exporter still answers, with
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

use blockdev::BlockDevice;
use mayastor_common::pattern;
use nvmf_host::{ConnectOptions, Controller, Namespace};
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
const BLOCK_BYTES: u64 = 4096;
/// The writer: WRITES writes of IO_BYTES, a pause after each.
const WRITES: u64 = 240;
const IO_BYTES: u64 = 64 * 1024;
const PAUSE: Duration = Duration::from_millis(25);
const HOST: &str = "metrics-test";

/// What `promtool check metrics` always says of upstream's I/O latency
/// names, which end in the abbreviated unit `_us`: the names are kept as
/// upstream's (dashboards written for it work), so these are the only
/// findings allowed.
const UPSTREAM_NAME_FINDINGS: [&str; 6] = [
    "diskpool_read_latency_us metric names should not contain abbreviated units",
    "diskpool_write_latency_us metric names should not contain abbreviated units",
    "volume_read_latency_us metric names should not contain abbreviated units",
    "volume_write_latency_us metric names should not contain abbreviated units",
    "replica_read_latency_us metric names should not contain abbreviated units",
    "replica_write_latency_us metric names should not contain abbreviated units",
];

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
    (parsed, findings)
}

/// `promtool check metrics` parses `page` and finds nothing but
/// [`UPSTREAM_NAME_FINDINGS`].
fn assert_promtool_passes(page: &str) {
    let (parsed, findings) = promtool_check(page);
    assert!(
        parsed,
        "promtool cannot parse the page: {findings:#?}\n{page}"
    );
    let other: Vec<&String> = findings
        .iter()
        .filter(|f| !UPSTREAM_NAME_FINDINGS.contains(&f.as_str()))
        .collect();
    assert!(
        other.is_empty(),
        "promtool check metrics: {other:#?}\n{page}"
    );
    eprintln!(
        "promtool check metrics: {} finding(s), all upstream's `_us` names",
        findings.len()
    );
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
        let results = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
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
    api.put_volume(VOLUME, CreateVolumeBody::new(32 * MIB, 1))
        .await
        .unwrap();
    let uri = api
        .put_volume_target(VOLUME, PublishVolumeBody::nvmf(Some("node-1"), Some(HOST)))
        .await
        .unwrap()
        .state
        .target
        .unwrap()
        .device_uri;

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
    assert_promtool_passes(&page);
    // With no write yet, the promtool findings are the `_us` names only.
    assert!(
        page.contains("# TYPE volume_write_latency_us gauge"),
        "{page}"
    );

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

    // Volume I/O: the writer's writes, seen rising while it runs, and in
    // the end exactly.
    let ops_query = format!("volume_num_write_ops{{pv_name=\"{VOLUME}\"}}");
    let bytes_query = format!("volume_bytes_written{{pv_name=\"{VOLUME}\"}}");
    let ops_before = prometheus.one(&ops_query).await.unwrap();
    let bytes_before = prometheus.one(&bytes_query).await.unwrap();
    let (ctrl, ns) = connect(&uri).await;
    let writer = tokio::spawn(write_pattern(ns));
    let mut seen = vec![ops_before];
    while !writer.is_finished() {
        let ops = prometheus.one(&ops_query).await.unwrap();
        if ops != *seen.last().unwrap() {
            assert!(
                ops > *seen.last().unwrap(),
                "went down: {seen:?} then {ops}"
            );
            seen.push(ops);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let ns = writer.await.unwrap();
    eprintln!("volume_num_write_ops seen in Prometheus while writing: {seen:?}");
    assert!(
        seen.len() >= 3,
        "num_write_ops did not rise while the writer ran: {seen:?}"
    );
    let wrote_bytes = WRITES * IO_BYTES;
    eventually("Prometheus has the writer's last writes", 30, || async {
        let ops = prometheus.one(&ops_query).await?;
        let bytes = prometheus.one(&bytes_query).await?;
        if ops == ops_before + WRITES as f64 && bytes == bytes_before + wrote_bytes as f64 {
            Ok(())
        } else {
            Err(format!(
                "ops {ops_before} -> {ops}, bytes {bytes_before} -> {bytes}; wrote {WRITES} ops, {wrote_bytes} bytes"
            ))
        }
    })
    .await;

    // The data reads back, and the read is counted as exactly.
    let read_before = sample(
        &scrape().await,
        "volume_bytes_read",
        &format!("pv_name=\"{VOLUME}\""),
    )
    .unwrap();
    verify_pattern(&ns).await;
    let _ = ctrl.disconnect().await;
    let page = scrape().await;
    let volume = format!("pv_name=\"{VOLUME}\"");
    assert_eq!(
        sample(&page, "volume_bytes_read", &volume),
        Some(read_before + wrote_bytes),
        "{page}"
    );
    // The volume's one replica is in pool-1 on this node, under its nexus:
    // its counters carry the volume's name; the pool counts at least what
    // its replica did.
    let replica_line = page
        .lines()
        .find(|l| l.starts_with("replica_bytes_written{") && l.contains(&volume))
        .unwrap_or_else(|| panic!("no replica_bytes_written of the volume:\n{page}"));
    let replica_written: u64 = replica_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(replica_written >= wrote_bytes, "{replica_line}");
    let pool_written = sample(&page, "diskpool_bytes_written", labels).unwrap();
    assert!(pool_written >= replica_written, "{page}");
    assert!(sample(&page, "volume_write_latency_us", &volume).unwrap() > 0);
    assert_promtool_passes(&page);

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
    let (parsed, findings) = promtool_check(&page);
    assert!(parsed && findings.is_empty(), "{findings:#?}\n{page}");
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

async fn connect(uri: &str) -> (Controller, Namespace) {
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = io_engine_api::names::host_nqn(HOST);
    opts.io_timeout_ms = 30_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, ns)
}

/// The chunk written at I/O `i`: checksummed blocks (index, generation 1).
fn chunk(i: u64) -> Vec<u8> {
    let blocks = IO_BYTES / BLOCK_BYTES;
    (i * blocks..(i + 1) * blocks)
        .flat_map(|b| pattern::block(b, 1, BLOCK_BYTES as usize))
        .collect()
}

/// The writer: [`WRITES`] writes of [`IO_BYTES`], one at a time, with a
/// pause after each, so that it runs for several scrape intervals.
async fn write_pattern(ns: Namespace) -> Namespace {
    for i in 0..WRITES {
        ns.write_at(i * IO_BYTES, &chunk(i)).await.unwrap();
        tokio::time::sleep(PAUSE).await;
    }
    ns
}

/// Reads back everything the writer wrote and checks every block.
async fn verify_pattern(ns: &Namespace) {
    let mut buf = vec![0u8; IO_BYTES as usize];
    for i in 0..WRITES {
        ns.read_at(i * IO_BYTES, &mut buf).await.unwrap();
        let first = i * (IO_BYTES / BLOCK_BYTES);
        for (n, block) in buf.chunks(BLOCK_BYTES as usize).enumerate() {
            if let Some(problem) = pattern::check(first + n as u64, 1, block) {
                panic!("block {}: {problem}", first + n as u64);
            }
        }
    }
}
