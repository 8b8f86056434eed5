//! `control-plane-bench`: creates and publishes many volumes through the
//! REST API from concurrent clients, and prints throughput, p50/p99
//! latency and the count of 5xx answers for each phase. A benchmark, not a
//! test: it asserts nothing and is run by hand against a running cluster
//! (`mayastor-local up`), see `docs/control-plane.md`.
//!
//! With `--slow-node NODE` one engine is slowed for the run by a delay
//! proxy ([`delay_proxy`]) that the benchmark starts in front of that
//! engine's gRPC port: every chunk between the core agent and the engine
//! arrives `--delay-ms` late, each way. The engine is restarted once
//! (`--restart-engine`, a shell command, run with `IO_ENGINE_GRPC_ADVERTISE`
//! set to the proxy) so that it registers the proxy as its gRPC address,
//! and once more at the end without it. Results are then also split into
//! volumes that touch that node (a replica or the target on it) and those
//! that do not.
//!
//! Talks to the cluster through the REST client crate only; every volume
//! it made is unpublished and destroyed at the end (unless `--keep`).

#[path = "control-plane-bench/delay_proxy.rs"]
mod delay_proxy;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::Command,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use clap::Parser;
use io_engine_api::names::REST_HTTP_PORT;
use openapi::{
    client::{RestClient, RestClientOptions},
    models::{CreateVolumeBody, PublishVolumeBody, Volume},
    CoreApi, RestError,
};

#[derive(Debug, Parser)]
#[command(
    name = "control-plane-bench",
    version,
    about = "Creates and publishes volumes through the REST API from concurrent clients; prints throughput, p50/p99 and 5xx counts."
)]
struct Args {
    /// REST API endpoint.
    #[arg(long, default_value_t = format!("http://127.0.1.252:{REST_HTTP_PORT}"))]
    rest: String,
    /// Volumes to create and publish.
    #[arg(long, default_value_t = 500)]
    volumes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Size of each volume in MiB.
    #[arg(long, default_value_t = 4)]
    size_mib: u64,
    /// Replicas of each volume.
    #[arg(long, default_value_t = 2)]
    replicas: u8,
    /// Thick volumes (thin by default).
    #[arg(long)]
    thick: bool,
    /// Client timeout of one call (well above the REST server's own).
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Node whose engine is slowed by a delay proxy: results are split by
    /// it.
    #[arg(long, requires_all = ["proxy_listen", "restart_engine"])]
    slow_node: Option<String>,
    /// IP:PORT the delay proxy listens on (a free loopback address).
    #[arg(long, value_name = "IP:PORT")]
    proxy_listen: Option<std::net::SocketAddr>,
    /// Shell command that restarts the slow node's engine, e.g.
    /// `mayastor-local --state-dir DIR restart io-engine-3`; it is run with
    /// IO_ENGINE_GRPC_ADVERTISE set to the proxy, and again at the end
    /// without it.
    #[arg(long, value_name = "COMMAND")]
    restart_engine: Option<String>,
    /// Delay the proxy adds to every chunk, each way, in milliseconds.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
    /// How long the slowed engine may take to register again, in seconds.
    #[arg(long, default_value_t = 60)]
    restart_timeout_secs: u64,
    /// Leave the volumes in place.
    #[arg(long)]
    keep: bool,
    /// Print the results as JSON.
    #[arg(short = 'o', long, default_value = "table")]
    output: String,
}

/// One timed call.
#[derive(Debug, Clone)]
struct Sample {
    volume: usize,
    elapsed: Duration,
    /// HTTP status of a failed call.
    failed: Option<u16>,
}

/// Latency and outcome figures of one set of samples.
#[derive(Debug, serde::Serialize)]
struct Summary {
    count: usize,
    ok: usize,
    failed_5xx: usize,
    failed_other: usize,
    p50_ms: u64,
    p99_ms: u64,
    max_ms: u64,
    /// Failed calls by HTTP status.
    failures: BTreeMap<u16, usize>,
}

fn summarise(samples: &[&Sample]) -> Summary {
    let mut ms: Vec<u64> = samples
        .iter()
        .map(|s| u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX))
        .collect();
    ms.sort_unstable();
    let pct = |p: f64| -> u64 {
        if ms.is_empty() {
            return 0;
        }
        let rank = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        ms[rank - 1]
    };
    Summary {
        count: samples.len(),
        ok: samples.iter().filter(|s| s.failed.is_none()).count(),
        failed_5xx: samples
            .iter()
            .filter(|s| s.failed.is_some_and(|c| c >= 500))
            .count(),
        failed_other: samples
            .iter()
            .filter(|s| s.failed.is_some_and(|c| c < 500))
            .count(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: ms.last().copied().unwrap_or(0),
        failures: samples
            .iter()
            .filter_map(|s| s.failed)
            .fold(BTreeMap::new(), |mut m, code| {
                *m.entry(code).or_default() += 1;
                m
            }),
    }
}

fn status_of(e: &RestError) -> u16 {
    e.kind.http_status()
}

/// Runs `call` for every volume index from `clients` workers; returns the
/// samples and the phase's wall time.
async fn phase<F, Fut>(
    name: &str,
    volumes: usize,
    clients: usize,
    call: F,
) -> (Vec<Sample>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), RestError>> + Send,
{
    let bar = indicatif::ProgressBar::new(volumes as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(name.to_owned());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let call = Arc::new(call);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let next = next.clone();
        let call = call.clone();
        let bar = bar.clone();
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= volumes {
                    return out;
                }
                let t = Instant::now();
                let r = call(i).await;
                out.push(Sample {
                    volume: i,
                    elapsed: t.elapsed(),
                    failed: r.err().map(|e| status_of(&e)),
                });
                bar.inc(1);
            }
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = workers.join_next().await {
        if let Ok(s) = done {
            samples.extend(s);
        }
    }
    let wall = started.elapsed();
    bar.finish_and_clear();
    (samples, wall)
}

fn touches(v: &Volume, node: &str) -> bool {
    v.state
        .replica_topology
        .values()
        .any(|r| r.node.as_deref() == Some(node))
        || v.spec.target.as_ref().is_some_and(|t| t.node == node)
}

#[derive(Debug, serde::Serialize)]
struct PhaseReport {
    phase: String,
    per_sec: f64,
    wall_ms: u64,
    all: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    touching_slow: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_touching_slow: Option<Summary>,
}

fn report(
    phase: &str,
    samples: &[Sample],
    wall: Duration,
    touching: Option<&BTreeMap<usize, bool>>,
) -> PhaseReport {
    let all: Vec<&Sample> = samples.iter().collect();
    let split = |want: bool| {
        touching.map(|t| {
            let part: Vec<&Sample> = samples
                .iter()
                .filter(|s| t.get(&s.volume).copied().unwrap_or(true) == want)
                .collect();
            summarise(&part)
        })
    };
    PhaseReport {
        phase: phase.to_owned(),
        per_sec: samples.len() as f64 / wall.as_secs_f64().max(1e-9),
        wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
        all: summarise(&all),
        touching_slow: split(true),
        not_touching_slow: split(false),
    }
}

fn print_table(reports: &[PhaseReport]) {
    println!(
        "{:<9} {:<18} {:>6} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
        "PHASE", "VOLUMES", "COUNT", "PER-SEC", "P50-MS", "P99-MS", "MAX-MS", "5XX", "OTHER"
    );
    for r in reports {
        let mut rows = vec![("all", &r.all)];
        if let Some(s) = &r.touching_slow {
            rows.push(("touching-slow", s));
        }
        if let Some(s) = &r.not_touching_slow {
            rows.push(("not-touching-slow", s));
        }
        for (what, s) in rows {
            let rate = if what == "all" {
                format!("{:.1}", r.per_sec)
            } else {
                "-".to_owned()
            };
            println!(
                "{:<9} {:<18} {:>6} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
                r.phase,
                what,
                s.count,
                rate,
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.failed_5xx,
                s.failed_other
            );
        }
    }
    for r in reports {
        if !r.all.failures.is_empty() {
            let list: Vec<String> = r
                .all
                .failures
                .iter()
                .map(|(code, n)| format!("{n} x {code}"))
                .collect();
            println!("{} failures: {}", r.phase, list.join(", "));
        }
    }
}

/// Runs the engine restart command (`sh -c`), with
/// `IO_ENGINE_GRPC_ADVERTISE` set to `advertise` or removed.
fn restart_engine(command: &str, advertise: Option<SocketAddr>) -> anyhow::Result<()> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command);
    match advertise {
        Some(a) => cmd.env("IO_ENGINE_GRPC_ADVERTISE", a.to_string()),
        None => cmd.env_remove("IO_ENGINE_GRPC_ADVERTISE"),
    };
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {command:?}: {e}"))?;
    if !status.success() {
        anyhow::bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// How long a restarted engine must look settled (online at its new
/// address, every pool online) before the run starts: a few poll periods,
/// so that what the core showed of the old instance has been replaced.
const SETTLED: Duration = Duration::from_secs(5);

/// Waits until `node` is online at gRPC endpoint `endpoint` with every
/// pool of it online (the core agent reached it there), without a break
/// for [`SETTLED`].
async fn wait_registered(
    api: &RestClient,
    node: &str,
    endpoint: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut settled_since: Option<Instant> = None;
    loop {
        let at = api
            .get_node(node)
            .await
            .ok()
            .and_then(|n| n.state)
            .filter(|s| s.status == openapi::models::NodeStatus::Online)
            .is_some_and(|s| s.grpc_endpoint == endpoint);
        let pools = api.get_node_pools(node).await.unwrap_or_default();
        let pools_online = !pools.is_empty()
            && pools.iter().all(|p| {
                p.state
                    .as_ref()
                    .is_some_and(|s| s.status == openapi::models::PoolStatus::Online)
            });
        if at && pools_online {
            let since = *settled_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SETTLED {
                return Ok(());
            }
        } else {
            settled_since = None;
        }
        if Instant::now() > deadline {
            anyhow::bail!("{node} is not online with its pools at {endpoint} after {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.volumes == 0 || args.clients == 0 || args.size_mib == 0 || args.replicas == 0 {
        anyhow::bail!("--volumes, --clients, --size-mib and --replicas must be > 0");
    }
    if !matches!(args.output.as_str(), "table" | "json") {
        anyhow::bail!("-o must be table or json, not {:?}", args.output);
    }
    let api = RestClient::new(
        &args.rest,
        RestClientOptions {
            timeout: Duration::from_secs(args.timeout_secs),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot set up the REST client: {e}"))?;
    let nodes = api
        .get_nodes()
        .await
        .map_err(|e| anyhow::anyhow!("the REST API at {} does not answer: {e}", args.rest))?;
    // The slow node's engine, restarted behind the delay proxy.
    let slowed = match (&args.slow_node, args.proxy_listen, &args.restart_engine) {
        (Some(slow), Some(listen), Some(restart)) => {
            let Some(upstream) = nodes
                .iter()
                .find(|n| &n.id == slow)
                .and_then(|n| n.state.as_ref())
                .map(|s| s.grpc_endpoint.clone())
            else {
                anyhow::bail!("--slow-node {slow}: no such node, or it is not registered");
            };
            let upstream: SocketAddr = upstream.parse().map_err(|_| {
                anyhow::anyhow!("node {slow} registered gRPC endpoint {upstream:?}, not IP:PORT")
            })?;
            let delay = Duration::from_millis(args.delay_ms);
            let proxy = delay_proxy::DelayProxy::start(listen, upstream, delay)
                .await
                .map_err(|e| anyhow::anyhow!("cannot start the delay proxy on {listen}: {e}"))?;
            eprintln!(
                "delay proxy {} -> {upstream} (+{} ms per chunk each way); restarting {slow}'s engine behind it",
                proxy.listen, args.delay_ms
            );
            restart_engine(restart, Some(proxy.listen))?;
            let wait = Duration::from_secs(args.restart_timeout_secs);
            wait_registered(&api, slow, &proxy.listen.to_string(), wait).await?;
            Some((proxy, slow.clone(), upstream, restart.clone(), wait))
        }
        _ => None,
    };
    let ids: Arc<Vec<String>> = Arc::new(
        (0..args.volumes)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect(),
    );

    let body = CreateVolumeBody {
        thin: !args.thick,
        ..CreateVolumeBody::new(args.size_mib << 20, args.replicas)
    };
    let (creates, create_wall) = {
        let (api, ids, body) = (api.clone(), ids.clone(), body.clone());
        phase("create", args.volumes, args.clients, move |i| {
            let (api, ids, body) = (api.clone(), ids.clone(), body.clone());
            async move { api.put_volume(&ids[i], body).await.map(|_| ()) }
        })
        .await
    };
    let (publishes, publish_wall) = {
        let (api, ids) = (api.clone(), ids.clone());
        phase("publish", args.volumes, args.clients, move |i| {
            let (api, ids) = (api.clone(), ids.clone());
            async move {
                api.put_volume_target(&ids[i], PublishVolumeBody::nvmf(None, None))
                    .await
                    .map(|_| ())
            }
        })
        .await
    };

    let touching = match &args.slow_node {
        Some(slow) => {
            let mut map = BTreeMap::new();
            for (i, id) in ids.iter().enumerate() {
                if let Ok(v) = api.get_volume(id).await {
                    map.insert(i, touches(&v, slow));
                }
            }
            Some(map)
        }
        None => None,
    };
    let reports = vec![
        report("create", &creates, create_wall, touching.as_ref()),
        report("publish", &publishes, publish_wall, touching.as_ref()),
    ];

    if !args.keep {
        let (cleanup, _) = {
            let (api, ids) = (api.clone(), ids.clone());
            phase("cleanup", args.volumes, args.clients, move |i| {
                let (api, ids) = (api.clone(), ids.clone());
                async move {
                    let _ = api.del_volume_target(&ids[i], true).await;
                    match api.del_volume(&ids[i]).await {
                        Err(e) if e.kind == openapi::ErrorKind::NotFound => Ok(()),
                        r => r,
                    }
                }
            })
            .await
        };
        let left = cleanup.iter().filter(|s| s.failed.is_some()).count();
        if left > 0 {
            eprintln!("control-plane-bench: {left} volume(s) could not be destroyed");
        }
    }

    if let Some((proxy, slow, upstream, restart, wait)) = slowed {
        eprintln!("restarting {slow}'s engine without the proxy");
        let restored = restart_engine(&restart, None);
        let registered = match restored {
            Ok(()) => wait_registered(&api, &slow, &upstream.to_string(), wait).await,
            Err(e) => Err(e),
        };
        drop(proxy);
        if let Err(e) = registered {
            eprintln!("control-plane-bench: {slow}'s engine is not back at {upstream}: {e:#}");
        }
    }

    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{} volumes ({} MiB, {} replica(s), {}), {} clients, {} node(s){}",
            args.volumes,
            args.size_mib,
            args.replicas,
            if args.thick { "thick" } else { "thin" },
            args.clients,
            nodes.len(),
            match &args.slow_node {
                Some(n) => format!(
                    ", {n}'s engine behind a proxy adding {} ms per chunk each way",
                    args.delay_ms
                ),
                None => String::new(),
            }
        );
        print_table(&reports);
    }
    Ok(())
}
