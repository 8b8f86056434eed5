//! The durable `UpgradeStatus` record: built and changed here, stored in
//! the store through `PUT /v0/upgrade-status` after every change.
//!
//! While the control plane restarts, the REST API may not answer for a
//! while: [`save`] retries until [`SAVE_TIMEOUT`], so a step is never
//! taken without its record.

use std::time::{Duration, Instant};

use openapi::models::{NodeUpgradeState, NodeUpgradeStatus, UpgradeStage, UpgradeStatus};
use openapi::{CoreApi, ErrorKind};

use crate::{Result, UpgradeError};

/// How long [`save`] keeps retrying.
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Now, RFC 3339 UTC to the millisecond.
pub fn now() -> String {
    use mayastor_common::time;
    time::format_millis(time::now_unix_ms())
}

/// Whole seconds from `start` to `end` (RFC 3339 strings): `12s`, `3m4s`.
pub fn duration(start: &str, end: &str) -> Option<String> {
    use mayastor_common::time::parse_nanos;
    let nanos = parse_nanos(end)?.checked_sub(parse_nanos(start)?)?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(mayastor_common::duration::format(
        std::time::Duration::from_secs(secs),
    ))
}

/// A fresh record in stage `Validating`.
pub fn new_record(from: &str, to: &str) -> UpgradeStatus {
    let at = now();
    UpgradeStatus {
        from_version: from.to_owned(),
        to_version: to.to_owned(),
        stage: UpgradeStage::Validating,
        started_at: at.clone(),
        updated_at: at,
        finished_at: None,
        nodes: Vec::new(),
        reason: None,
    }
}

/// Moves the record to `stage` (a final stage sets `finished_at`).
pub fn set_stage(status: &mut UpgradeStatus, stage: UpgradeStage, reason: Option<String>) {
    status.stage = stage;
    status.reason = reason;
    status.finished_at = matches!(
        stage,
        UpgradeStage::Successful | UpgradeStage::ValidationFailed | UpgradeStage::Failed
    )
    .then(now);
}

/// The entry of `node` (added as Pending when missing).
pub fn node_mut<'a>(
    status: &'a mut UpgradeStatus,
    node: &str,
    from_version: &str,
) -> &'a mut NodeUpgradeStatus {
    let index = match status.nodes.iter().position(|n| n.node == node) {
        Some(i) => i,
        None => {
            status.nodes.push(NodeUpgradeStatus {
                node: node.to_owned(),
                state: NodeUpgradeState::Pending,
                from_version: from_version.to_owned(),
                started_at: None,
                finished_at: None,
            });
            status.nodes.len() - 1
        }
    };
    &mut status.nodes[index]
}

/// Sets a node's state, stamping its start and end times.
pub fn set_node(status: &mut UpgradeStatus, node: &str, state: NodeUpgradeState) {
    let entry = node_mut(status, node, "");
    entry.state = state;
    if state != NodeUpgradeState::Pending && entry.started_at.is_none() {
        entry.started_at = Some(now());
    }
    entry.finished_at = matches!(state, NodeUpgradeState::Upgraded).then(now);
}

/// Writes the record (stamping `updated_at`), retrying while the REST API
/// does not answer.
pub async fn save(api: &dyn CoreApi, status: &mut UpgradeStatus) -> Result<()> {
    status.updated_at = now();
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        match api.put_upgrade_status(status.clone()).await {
            Ok(_) => return Ok(()),
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.kind,
                        ErrorKind::Unavailable
                            | ErrorKind::Timeout
                            | ErrorKind::DeadlineExceeded
                            | ErrorKind::FailedPersist
                            | ErrorKind::Internal
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(UpgradeError::rest("cannot record the upgrade status")(e)),
        }
    }
}

/// The recorded upgrade, if any.
pub async fn load(api: &dyn CoreApi) -> Result<Option<UpgradeStatus>> {
    match api.get_upgrade_status().await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UpgradeError::rest("cannot read the upgrade status")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_nodes_are_stamped() {
        let mut s = new_record("0.1.0", "0.2.0");
        assert_eq!(s.stage, UpgradeStage::Validating);
        assert!(s.finished_at.is_none());
        set_node(&mut s, "node-1", NodeUpgradeState::Draining);
        assert!(s.nodes[0].started_at.is_some() && s.nodes[0].finished_at.is_none());
        set_node(&mut s, "node-1", NodeUpgradeState::Upgraded);
        assert!(s.nodes[0].finished_at.is_some());
        assert_eq!(s.upgraded_nodes(), 1);
        set_stage(&mut s, UpgradeStage::Successful, None);
        assert!(s.finished_at.is_some());
        set_stage(&mut s, UpgradeStage::UpgradingDataPlane, None);
        assert!(s.finished_at.is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration("2026-01-01T00:00:00Z", "2026-01-01T00:00:12.5Z").as_deref(),
            Some("12s")
        );
        assert_eq!(
            duration("2026-01-01T00:00:00Z", "2026-01-01T00:03:04Z").as_deref(),
            Some("3m4s")
        );
        assert_eq!(duration("bad", "2026-01-01T00:00:00Z"), None);
        assert!(now().ends_with('Z'));
    }
}
