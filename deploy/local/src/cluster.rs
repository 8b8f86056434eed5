//! `up`, `down` and `status`.
//!
//! `up` starts, in order, the store, the core agent, the engines and the
//! REST API, skipping whatever already runs (a recorded PID that is still
//! the same process). Every address is checked before anything starts; a
//! failure at any point (a busy port, a process that exits during
//! start-up, Ctrl-C) stops what this command started, so nothing is left
//! half-started. Then it waits for the nodes, creates the pools through
//! REST (an existing pool spec is simply returned) and waits for them and
//! for published volumes to be Online.
//!
//! `down` stops by PID: the REST API, the core agent (so it does not react
//! to engines going away), the engines (they shut their nexuses down
//! cleanly, recording it in the store), then the store; SIGTERM, SIGKILL
//! after a grace period.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use openapi::{
    client::{RestClient, RestClientOptions},
    models::{CreatePoolBody, NodeStatus, PoolStatus, VolumeStatus},
    CoreApi,
};

use crate::{
    cli::{StoreKind, UpArgs},
    layout::{Component, Layout, Role},
    process::{self, find_binary, last_log_line, stop_all, ProcRecord, Spawned},
    progress::Step,
    size::format_size,
    state::{self, Settings, StateDir},
};

/// How long a component may take to listen after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Smallest pool file.
const MIN_POOL_SIZE_BYTES: u64 = 64 << 20;
/// How long `up` waits for nodes and pools.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A REST client of the cluster.
pub fn rest_client(layout: &Layout, timeout: Duration) -> anyhow::Result<RestClient> {
    RestClient::new(
        &layout.rest_url(),
        RestClientOptions {
            timeout,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot set up the REST client: {e}"))
}

/// Settings for `up`: the recorded ones, which flags may not contradict,
/// or the flags with defaults for a new cluster.
fn settings_for_up(
    state: &StateDir,
    recorded: Option<Settings>,
    args: &UpArgs,
) -> anyhow::Result<Settings> {
    let Some(r) = recorded else {
        let s = Settings {
            nodes: args.nodes.unwrap_or(state::DEFAULT_NODES),
            pool_size_bytes: args.pool_size.unwrap_or(state::DEFAULT_POOL_SIZE_BYTES),
            store: args.store.unwrap_or(StoreKind::Embedded),
            ip_prefix: args
                .ip_prefix
                .clone()
                .unwrap_or_else(|| state::DEFAULT_IP_PREFIX.to_owned()),
        };
        if s.pool_size_bytes < MIN_POOL_SIZE_BYTES {
            bail!(
                "--pool-size {} is too small (at least {})",
                format_size(s.pool_size_bytes),
                format_size(MIN_POOL_SIZE_BYTES)
            );
        }
        return Ok(s);
    };
    let mut conflicts = Vec::new();
    if let Some(n) = args.nodes.filter(|n| *n != r.nodes) {
        conflicts.push(format!("--nodes {} (not {n})", r.nodes));
    }
    if let Some(p) = args.pool_size.filter(|p| *p != r.pool_size_bytes) {
        conflicts.push(format!(
            "--pool-size {} (not {})",
            format_size(r.pool_size_bytes),
            format_size(p)
        ));
    }
    if let Some(s) = args.store.filter(|s| *s != r.store) {
        conflicts.push(format!("--store {} (not {s})", r.store));
    }
    if let Some(p) = args.ip_prefix.as_ref().filter(|p| **p != r.ip_prefix) {
        conflicts.push(format!("--ip-prefix {} (not {p})", r.ip_prefix));
    }
    if !conflicts.is_empty() {
        bail!(
            "the cluster in {} was created with {}; run `mayastor-local down --wipe` first to change it",
            state.root().display(),
            conflicts.join(", ")
        );
    }
    Ok(r)
}

/// Fails when `addr` is taken by another program.
pub fn check_free(addr: SocketAddr, name: &str) -> anyhow::Result<()> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "{addr} is already in use by another program: cannot start {name} there (stop that program, or use another --ip-prefix)"
        ),
        Err(e) => bail!("cannot listen on {addr} for {name}: {e}"),
    }
}

fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The binary of `c`: the one recorded by `restart --bin-dir`, else found
/// beside the launcher or on PATH.
pub fn component_binary(state: &StateDir, c: &Component) -> anyhow::Result<std::path::PathBuf> {
    match state.recorded_binary(&c.name) {
        Some(path) => Ok(path),
        None => find_binary(&c.binary),
    }
}

/// Starts one component and records its PID.
pub fn start(state: &StateDir, c: &Component) -> anyhow::Result<Spawned> {
    let binary = component_binary(state, c)?;
    let spawned = process::spawn(&c.name, &binary, &c.args, &state.log(&c.name))?;
    state.save_pid(&c.name, spawned.record)?;
    Ok(spawned)
}

/// Waits until every spawned component listens on all its addresses.
pub async fn wait_listening(group: &mut [(&Component, &mut Spawned)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut pending = None;
        for (c, s) in group.iter_mut() {
            if let Some(status) = s.exited() {
                bail!(
                    "{} exited during start-up ({status}){}; see {}",
                    c.name,
                    last_log_line(&s.log)
                        .map(|l| format!(": {l}"))
                        .unwrap_or_default(),
                    s.log.display()
                );
            }
            if let Some(addr) = c.listen.iter().find(|a| !listening(**a)) {
                pending = Some((c.name.clone(), *addr, s.log.clone()));
            }
        }
        let Some((name, addr, log)) = pending else {
            return Ok(());
        };
        if Instant::now() > deadline {
            bail!(
                "{name} did not listen on {addr} within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `mayastor-local up`.
pub async fn up(root: &Path, args: UpArgs) -> anyhow::Result<()> {
    let state =
        StateDir::open(root, true)?.with_context(|| format!("cannot create {}", root.display()))?;
    let recorded = state.settings()?;
    let new_cluster = recorded.is_none();
    let settings = settings_for_up(&state, recorded, &args)?;
    let layout = Layout::new(settings.clone())?;
    state.prepare(settings.store)?;
    if new_cluster {
        state.save_settings(&settings)?;
    }

    let mut started: Vec<(Component, Spawned)> = Vec::new();
    let outcome = tokio::select! {
        r = up_inner(&state, &layout, &mut started) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = outcome {
        if !started.is_empty() {
            let step = Step::start(format!(
                "stopping the {} component(s) this command started",
                started.len()
            ));
            for (c, s) in started.iter_mut().rev() {
                s.stop(Duration::from_secs(5));
                state.remove_pid(&c.name);
            }
            step.done(format!(
                "stopped what this command started: {}",
                started
                    .iter()
                    .map(|(c, _)| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let anything_running = state
            .recorded_names()
            .iter()
            .any(|n| state.pid(n).is_some_and(|r| r.is_alive()));
        if new_cluster && !anything_running {
            // Nothing of this cluster ever ran: the next `up` may choose
            // other settings.
            let _ = std::fs::remove_file(state.root().join("cluster.json"));
        }
        return Err(e);
    }
    let url = layout.rest_url();
    state::write_atomic(&state.rest_endpoint_file(), format!("{url}\n").as_bytes())?;
    println!(
        "Cluster is up: {} node(s), {} pool(s) of {}, {} store; state in {}",
        settings.nodes,
        settings.nodes,
        format_size(settings.pool_size_bytes),
        settings.store,
        state.root().display()
    );
    println!("REST endpoint: {url}");
    Ok(())
}

async fn up_inner(
    state: &StateDir,
    layout: &Layout,
    started: &mut Vec<(Component, Spawned)>,
) -> anyhow::Result<()> {
    let components = layout.components(state);
    let mut to_start = Vec::new();
    for c in &components {
        match state.pid(&c.name) {
            Some(rec) if rec.is_alive() => {
                println!("✓ {} already running (pid {})", c.name, rec.pid);
            }
            Some(_) => {
                state.remove_pid(&c.name);
                to_start.push(c.clone());
            }
            None => to_start.push(c.clone()),
        }
    }
    // Every binary and every address first, so a missing binary or a busy
    // port starts nothing.
    for c in &to_start {
        component_binary(state, c)?;
        for addr in &c.listen {
            check_free(*addr, &c.name)?;
        }
    }
    for node in 1..=layout.settings.nodes {
        let path = state.pool_file(node);
        if !path.exists() {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("cannot create the pool file {}", path.display()))?;
            file.set_len(layout.settings.pool_size_bytes)
                .with_context(|| format!("cannot size the pool file {}", path.display()))?;
        }
    }
    if to_start.is_empty() {
        println!("✓ every component is already running");
    }
    // Start in groups: the store, the core agent, all engines, the REST API.
    for role_group in [
        &(|r: Role| r == Role::Store) as &dyn Fn(Role) -> bool,
        &|r: Role| r == Role::Core,
        &|r: Role| matches!(r, Role::Engine(_)),
        &|r: Role| r == Role::Rest,
    ] {
        let group: Vec<&Component> = to_start.iter().filter(|c| role_group(c.role)).collect();
        if group.is_empty() {
            continue;
        }
        let names: Vec<&str> = group.iter().map(|c| c.name.as_str()).collect();
        let step = Step::start(format!("starting {}", names.join(", ")));
        let first = started.len();
        for c in &group {
            let spawned = start(state, c)?;
            started.push(((*c).clone(), spawned));
        }
        let mut waiting: Vec<(&Component, &mut Spawned)> =
            started[first..].iter_mut().map(|(c, s)| (&*c, s)).collect();
        wait_listening(&mut waiting).await?;
        for (c, s) in &started[first..] {
            step.println(format!(
                "✓ {} on {} (pid {})",
                c.name,
                c.listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" + "),
                s.record.pid
            ));
        }
        drop(step);
    }
    settle(state, layout).await
}

/// Nodes online, pools created and online, published volumes online.
async fn settle(state: &StateDir, layout: &Layout) -> anyhow::Result<()> {
    let api = rest_client(layout, Duration::from_secs(10))?;
    let n = layout.settings.nodes;
    let names: Vec<String> = (1..=n).map(Layout::node_name).collect();

    let step = Step::start(format!("waiting for {n} node(s) to register"));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match api.get_nodes().await {
            Ok(nodes) => {
                let online = names
                    .iter()
                    .filter(|id| {
                        nodes.iter().any(|node| {
                            node.id == **id
                                && node
                                    .state
                                    .as_ref()
                                    .is_some_and(|s| s.status == NodeStatus::Online)
                        })
                    })
                    .count();
                if online == names.len() {
                    break;
                }
                step.message(format!("waiting for nodes: {online}/{n} online"));
                format!("{online} of {n} nodes online")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the nodes did not come online: {last}; see the logs in {}",
                state.logs_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step.done(format!("{n} node(s) online"));

    let step = Step::start(format!("creating {n} pool(s)"));
    for node in 1..=n {
        let pool = Layout::pool_name(node);
        let disk = format!("aio://{}", state.pool_file(node).display());
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let body = CreatePoolBody {
                disks: vec![disk.clone()],
                labels: None,
            };
            match api
                .put_node_pool(&Layout::node_name(node), &pool, body)
                .await
            {
                Ok(_) => break,
                Err(e) if e.kind == openapi::ErrorKind::AlreadyExists => {
                    bail!("cannot create {pool}: {e}")
                }
                Err(e) if Instant::now() > deadline => bail!("cannot create {pool}: {e}"),
                Err(e) => step.message(format!("creating {pool}: {e} (retrying)")),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let last = match api.get_pools().await {
            Ok(pools) => {
                let online = (1..=n)
                    .filter(|i| {
                        pools.iter().any(|p| {
                            p.id == Layout::pool_name(*i)
                                && p.state
                                    .as_ref()
                                    .is_some_and(|s| s.status == PoolStatus::Online)
                        })
                    })
                    .count();
                if online == n as usize {
                    break;
                }
                step.message(format!("waiting for pools: {online}/{n} online"));
                format!("{online} of {n} pools online")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!(
                "the pools did not come online: {last}; see the logs in {}",
                state.logs_dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step.done(format!(
        "{n} pool(s) online ({} each)",
        format_size(layout.settings.pool_size_bytes)
    ));

    // Volumes published before a `down` come back once their target is
    // recreated; a volume that does not is reported, not fatal.
    let step = Step::start("waiting for published volumes");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let volumes = match api.get_volumes(0, None).await {
            Ok(v) => v.entries,
            Err(e) => bail!("cannot list the volumes: {e}"),
        };
        let published: Vec<_> = volumes.iter().filter(|v| v.spec.target.is_some()).collect();
        let not_online: Vec<String> = published
            .iter()
            .filter(|v| v.state.status != VolumeStatus::Online)
            .map(|v| format!("{} {:?}", v.spec.uuid, v.state.status))
            .collect();
        if not_online.is_empty() {
            step.done(format!(
                "{} volume(s), {} published, all online",
                volumes.len(),
                published.len()
            ));
            break;
        }
        if Instant::now() > deadline {
            drop(step);
            println!(
                "! {} published volume(s) not online yet: {}",
                not_online.len(),
                not_online.join(", ")
            );
            break;
        }
        step.message(format!(
            "waiting for {} published volume(s) to be online",
            not_online.len()
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Stop order of a component name: the REST API, the core agent, the
/// engines, the store, anything else.
fn stop_rank(name: &str) -> u8 {
    match name {
        "api-rest" => 0,
        "agent-core" => 1,
        n if n.starts_with("io-engine-") => 2,
        "store" => 3,
        _ => 4,
    }
}

/// `mayastor-local down`.
pub fn down(root: &Path, wipe: bool) -> anyhow::Result<()> {
    let Some(state) = StateDir::open(root, false)? else {
        println!("no cluster in {}: nothing to stop", root.display());
        return Ok(());
    };
    let mut names = state.recorded_names();
    names.sort_by_key(|n| (stop_rank(n), n.clone()));
    let mut stopped_any = false;
    for rank in 0..=4 {
        let group: Vec<(String, ProcRecord)> = names
            .iter()
            .filter(|n| stop_rank(n) == rank)
            .filter_map(|n| state.pid(n).map(|r| (n.clone(), r)))
            .collect();
        let alive: Vec<(String, ProcRecord)> = group
            .iter()
            .filter(|(_, r)| r.is_alive())
            .cloned()
            .collect();
        if !alive.is_empty() {
            let step = Step::start(format!(
                "stopping {}",
                alive
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let records: Vec<ProcRecord> = alive.iter().map(|(_, r)| *r).collect();
            let killed = stop_all(&records, STOP_GRACE);
            for (name, rec) in &alive {
                if rec.is_alive() {
                    bail!("{name} (pid {}) did not stop even after SIGKILL", rec.pid);
                }
                let how = if killed.contains(rec) {
                    format!("killed after {} s", STOP_GRACE.as_secs())
                } else {
                    "stopped".to_owned()
                };
                step.println(format!("✓ {name} {how} (pid {})", rec.pid));
            }
            stopped_any = true;
        }
        for (name, _) in &group {
            state.remove_pid(name);
        }
    }
    // Files a crashed `state.pid` parse might leave behind.
    for name in state.recorded_names() {
        state.remove_pid(&name);
    }
    let _ = std::fs::remove_file(state.rest_endpoint_file());
    if !stopped_any {
        println!("✓ nothing was running");
    }
    if wipe {
        state.wipe()?;
        println!("✓ wiped {}", state.root().display());
    } else {
        println!(
            "Data kept in {} (store and pool files); `mayastor-local up` brings the cluster back",
            state.root().display()
        );
    }
    Ok(())
}

/// State of one component as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Running,
    NotListening,
    Exited,
    Stopped,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Running => "running",
            Health::NotListening => "not listening",
            Health::Exited => "exited",
            Health::Stopped => "stopped",
        })
    }
}

/// Health of `c`.
pub fn health(state: &StateDir, c: &Component) -> (Option<ProcRecord>, Health) {
    match state.pid(&c.name) {
        None => (None, Health::Stopped),
        Some(rec) if !rec.is_alive() => (Some(rec), Health::Exited),
        Some(rec) if c.listen.iter().all(|a| listening(*a)) => (Some(rec), Health::Running),
        Some(rec) => (Some(rec), Health::NotListening),
    }
}

/// Opens the state directory of an existing cluster.
pub fn open_existing(root: &Path) -> anyhow::Result<(StateDir, Layout)> {
    let missing = || {
        format!(
            "no cluster in {}: run `mayastor-local up` first",
            root.display()
        )
    };
    let state = StateDir::open(root, false)?.with_context(missing)?;
    let settings = state.settings()?.with_context(missing)?;
    let layout = Layout::new(settings)?;
    Ok((state, layout))
}

/// `mayastor-local status`.
pub async fn status(root: &Path) -> anyhow::Result<ExitCode> {
    let (state, layout) = open_existing(root)?;
    let mut rows = vec![[
        "NAME".to_owned(),
        "PID".to_owned(),
        "ADDRESS".to_owned(),
        "STATUS".to_owned(),
    ]];
    let mut problems = Vec::new();
    for c in layout.components(&state) {
        let (rec, health) = health(&state, &c);
        if health != Health::Running {
            problems.push(format!("{} {health}", c.name));
        }
        let status = match health {
            Health::Exited => format!("exited (see logs/{}.log)", c.name),
            other => other.to_string(),
        };
        rows.push([
            c.name.clone(),
            rec.filter(|r| r.is_alive())
                .map_or_else(|| "-".to_owned(), |r| r.pid.to_string()),
            c.listen
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            status,
        ]);
    }
    print_table(&rows);
    println!();

    let api = rest_client(&layout, Duration::from_secs(5))?;
    match summary(&api, &layout).await {
        Ok((lines, missing)) => {
            for l in lines {
                println!("{l}");
            }
            problems.extend(missing);
        }
        Err(e) => {
            println!("REST API unreachable: {e}");
            problems.push("the REST API is unreachable".to_owned());
        }
    }
    println!("REST endpoint: {}", layout.rest_url());
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "mayastor-local: the cluster is not fully up: {} (run `mayastor-local up`)",
            problems.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The nodes/pools/volumes lines, and what is not online.
async fn summary(api: &RestClient, layout: &Layout) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let nodes = api.get_nodes().await?;
    let pools = api.get_pools().await?;
    let volumes = api.get_volumes(0, None).await?.entries;
    let mut missing = Vec::new();
    let online_nodes = nodes
        .iter()
        .filter(|n| {
            n.state
                .as_ref()
                .is_some_and(|s| s.status == NodeStatus::Online)
        })
        .count();
    for i in 1..=layout.settings.nodes {
        let id = Layout::node_name(i);
        let ok = nodes.iter().any(|n| {
            n.id == id
                && n.state
                    .as_ref()
                    .is_some_and(|s| s.status == NodeStatus::Online)
        });
        if !ok {
            missing.push(format!("{id} not online"));
        }
    }
    let states: Vec<_> = pools.iter().filter_map(|p| p.state.as_ref()).collect();
    let online_pools = states
        .iter()
        .filter(|s| s.status == PoolStatus::Online)
        .count();
    let capacity: u64 = states.iter().map(|s| s.capacity).sum();
    let used: u64 = states.iter().map(|s| s.used).sum();
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for v in &volumes {
        *by_status
            .entry(format!("{:?}", v.state.status).to_lowercase())
            .or_default() += 1;
    }
    let volume_counts = if by_status.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            by_status
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok((
        vec![
            format!("nodes:   {} ({online_nodes} online)", nodes.len()),
            format!(
                "pools:   {} ({online_pools} online), {} used of {}",
                pools.len(),
                format_size(used),
                format_size(capacity)
            ),
            format!("volumes: {}{volume_counts}", volumes.len()),
        ],
        missing,
    ))
}

/// Prints rows with columns padded to the widest cell.
fn print_table(rows: &[[String; 4]]) {
    let mut widths = [0usize; 4];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
