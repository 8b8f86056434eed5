//! `mayastor-local down`: stops by PID, in order (the REST API, the core
//! agent, the engines with their metrics exporters, the store), SIGTERM then SIGKILL after a grace
//! period; `--wipe` removes the state too.

use std::path::Path;

use anyhow::bail;

use super::STOP_GRACE;
use crate::{
    process::{stop_all, ProcRecord},
    progress::Step,
    state::StateDir,
};

/// Stop order of a component name: the REST API, the core agent, the
/// engines and their exporters, the store, anything else.
fn stop_rank(name: &str) -> u8 {
    match name {
        "api-rest" => 0,
        "agent-core" => 1,
        n if n.starts_with("io-engine-") || n.starts_with("metrics-exporter-") => 2,
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
