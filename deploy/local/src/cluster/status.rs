//! `mayastor-local status`: each component's health (running, not
//! listening, exited, stopped) and the cluster's nodes, pools and volumes
//! as the REST API reports them.

use std::{path::Path, process::ExitCode, time::Duration};

use openapi::{
    client::RestClient,
    models::{NodeStatus, PoolStatus},
    CoreApi,
};

use super::{listening, open_existing, rest_client};
use crate::{
    layout::{Component, Layout},
    process::ProcRecord,
    size::format_size,
    state::StateDir,
};

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
