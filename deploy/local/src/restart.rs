//! `restart NAME [--bin-dir DIR]`: stops one component by PID and starts
//! it again, on the binary of `DIR` when given (how a guided upgrade rolls
//! the local cluster to new binaries one component at a time).
//!
//! The binary used is recorded in `<state-dir>/binaries/NAME`, so later
//! `up`s start the component on the same binary. The component's data
//! (store data, pool files) is kept. The command returns once the new
//! process listens on all its addresses; a process that exits during
//! start-up is an error quoting the last line of its log, and its PID is
//! not recorded (status then shows it `stopped`). With `--if-changed`, a
//! component already running from the `--bin-dir` binary is left alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cluster::{self, check_free, open_existing, start, wait_listening, STOP_GRACE};
use crate::process::stop_all;

/// How long the old process's ports may take to be free again.
const PORT_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// `mayastor-local restart`.
pub async fn restart(
    root: &Path,
    name: &str,
    bin_dir: Option<&Path>,
    if_changed: bool,
) -> anyhow::Result<()> {
    let (state, layout) = open_existing(root)?;
    let component = layout.component(&state, name).with_context(|| {
        format!(
            "components are: {}",
            layout
                .components(&state)
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let binary = match bin_dir {
        Some(dir) => {
            let path = dir.join(&component.binary);
            if !is_executable(&path) {
                bail!(
                    "{} is not an executable file: --bin-dir must hold `{}`",
                    path.display(),
                    component.binary
                );
            }
            Some(absolute(&path)?)
        }
        None => None,
    };

    if if_changed {
        let running = state.pid(name).filter(|r| r.is_alive());
        if let (Some(rec), Some(path)) = (running, &binary) {
            if state.recorded_binary(name).as_ref() == Some(path) {
                println!(
                    "✓ {name} already runs from {} (pid {})",
                    path.display(),
                    rec.pid
                );
                return Ok(());
            }
        }
    }
    if let Some(old) = state.pid(name).filter(|r| r.is_alive()) {
        let killed = stop_all(&[old], STOP_GRACE);
        if old.is_alive() {
            bail!("{name} (pid {}) did not stop even after SIGKILL", old.pid);
        }
        let how = if killed.is_empty() {
            "stopped"
        } else {
            "killed after the grace period"
        };
        println!("✓ {name} {how} (pid {})", old.pid);
    }
    state.remove_pid(name);
    let deadline = Instant::now() + PORT_RELEASE_TIMEOUT;
    for addr in &component.listen {
        loop {
            match check_free(*addr, name) {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    if let Some(path) = &binary {
        state.save_binary(name, path)?;
    }
    let mut spawned = start(&state, &component)?;
    let started = wait_listening(&mut [(&component, &mut spawned)]).await;
    if let Err(e) = started {
        spawned.stop(Duration::from_secs(5));
        state.remove_pid(name);
        return Err(e);
    }
    println!(
        "✓ {name} restarted (pid {}) from {}",
        spawned.record.pid,
        cluster::component_binary(&state, &component)?.display()
    );
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
