//! `up`, `down` and `status`.
//!
//! `up` starts, in order, the store, the core agent, the engines, their
//! metrics exporters and the REST API, skipping whatever already runs (a recorded PID that is still
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
//!
//! This module starts the components; the waits at the end of `up`
//! (`settle`), `down` and `status` have a module each.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use openapi::client::{RestClient, RestClientOptions};

use crate::{
    cli::{StoreKind, UpArgs},
    layout::{Component, Layout, Role},
    process::{self, find_binary, last_log_line, Spawned},
    progress::Step,
    size::format_size,
    state::{self, Settings, StateDir},
};

mod down;
mod settle;
mod status;

pub use down::down;
use settle::settle;
pub use status::{health, status, Health};

/// How long a component may take to listen after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Smallest pool file.
const MIN_POOL_SIZE_BYTES: u64 = 64 << 20;

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
        &|r: Role| matches!(r, Role::Exporter(_)),
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
