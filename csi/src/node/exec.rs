//! Running the host's tools (`nvme`, `blkid`, `mkfs.*`, `resize2fs`,
//! `xfs_growfs`, `modprobe`) as child processes with a time limit; a
//! failure becomes one line naming the command and its stderr.

use std::{process::Stdio, time::Duration};

use tokio::process::Command;

use super::error::NodeError;

/// What a finished tool left: its exit code, stdout and stderr.
#[derive(Debug)]
pub struct ToolOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty line of stderr (else stdout), for error messages.
    pub fn last_line(&self) -> &str {
        [&self.stderr, &self.stdout]
            .into_iter()
            .find_map(|s| s.lines().rev().find(|l| !l.trim().is_empty()))
            .map(str::trim)
            .unwrap_or("no output")
    }
}

/// Runs `program args` and waits at most `limit`; the child is killed when
/// the limit passes. Fails only when the tool cannot be started or runs
/// over; a non-zero exit is the caller's to judge.
pub async fn run(program: &str, args: &[&str], limit: Duration) -> Result<ToolOutput, NodeError> {
    let line = format!("{program} {}", args.join(" "));
    tracing::debug!(command = %line, "running");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NodeError::internal(format!("cannot run {program}: {e}")))?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| {
            NodeError::DeadlineExceeded(format!("{line} did not finish within {limit:?}"))
        })?
        .map_err(|e| NodeError::internal(format!("{line}: {e}")))?;
    Ok(ToolOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a tool that must succeed; its stdout.
pub async fn run_ok(program: &str, args: &[&str], limit: Duration) -> Result<String, NodeError> {
    let out = run(program, args, limit).await?;
    if !out.success() {
        return Err(NodeError::internal(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.code
                .map_or("killed".to_owned(), |c| format!("exit {c}")),
            out.last_line()
        )));
    }
    Ok(out.stdout)
}
