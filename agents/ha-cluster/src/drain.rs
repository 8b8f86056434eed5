//! Drains: while this agent holds its lease, the core leaves the targets
//! of a draining node to it (see the core's drain reconciler). Every
//! `period` the nodes are read through the REST API; each volume whose
//! target is on a draining node gets a switch-over of kind
//! [`SwitchKind::Drain`] (make before break) unless one runs for it. The
//! node agent of the volume's frontend node (from its registration) is
//! the one asked to replace the path; without one the target still moves
//! and the host keeps only its old path, as without HA.

use std::{collections::HashSet, sync::Arc, time::Duration};

use openapi::{models::DrainStatus, CoreApi};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    nodes::NodeAgents,
    record::{Stage, SwitchKind, SwitchOverRecord},
    server::SwitchOvers,
    switch::uri_address,
};

/// A drain switch-over that ended Errored is started again after this.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);

/// Looks for draining nodes and starts their volumes' switch-overs.
pub struct DrainWatcher {
    pub api: Arc<dyn CoreApi>,
    pub switch_overs: SwitchOvers,
    pub nodes: NodeAgents,
    pub period: Duration,
}

impl DrainWatcher {
    /// Watches until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.pass().await {
                warn!(error = %e, "drain watch: cannot look at the drains now");
            }
        }
    }

    /// Whether the volume's last drain switch-over ended Errored less than
    /// [`RETRY_AFTER_ERROR`] ago (it is not started again at once).
    async fn failed_lately(&self, volume: &str) -> bool {
        match self.switch_overs.records().get(volume).await {
            Ok(Some(r)) => {
                r.kind == SwitchKind::Drain
                    && r.stage == Stage::Errored
                    && mayastor_common::time::now_unix_ms() - r.updated_unix_ms
                        < RETRY_AFTER_ERROR.as_millis() as i64
            }
            _ => false,
        }
    }

    /// One look: the switch-overs started.
    pub async fn pass(&self) -> Result<usize, String> {
        let nodes = self.api.get_nodes().await.map_err(|e| e.to_string())?;
        let draining: HashSet<String> = nodes
            .into_iter()
            .filter(|n| {
                n.spec.as_ref().is_some_and(|s| {
                    s.cordon_drain_state.drain_status == Some(DrainStatus::Draining)
                })
            })
            .map(|n| n.id)
            .collect();
        if draining.is_empty() {
            return Ok(0);
        }
        let volumes = self
            .api
            .get_volumes(0, None)
            .await
            .map_err(|e| e.to_string())?;
        let mut started = 0;
        for v in volumes.entries {
            let Some(target) = v.spec.target.as_ref() else {
                continue;
            };
            if !draining.contains(&target.node) {
                continue;
            }
            // A target its engine lost (e.g. an offline node) has no
            // address: it moves all the same, with no old path to delete.
            let address = v
                .state
                .target
                .as_ref()
                .and_then(|n| uri_address(&n.device_uri))
                .unwrap_or_default()
                .to_owned();
            let volume = v.spec.uuid.clone();
            if self.failed_lately(&volume).await {
                continue;
            }
            let frontend = target.frontend_nodes.first().cloned().unwrap_or_default();
            let endpoint = if frontend.is_empty() {
                None
            } else {
                self.nodes
                    .endpoint(&frontend)
                    .await
                    .map_err(|e| e.to_string())?
            };
            if endpoint.is_none() {
                warn!(volume = %volume, node = %frontend, "no node agent registered for the volume's frontend node: its host keeps only its old path");
            }
            let nqn = io_engine_api::names::volume_nqn(&volume);
            let mut rec = SwitchOverRecord::new(
                &volume,
                &nqn,
                &frontend,
                endpoint.as_deref().unwrap_or_default(),
                &address,
            );
            rec.kind = SwitchKind::Drain;
            if self
                .switch_overs
                .start_record(rec)
                .await
                .map_err(|e| e.to_string())?
            {
                info!(volume = %volume, node = %target.node, "drain: switch-over started");
                started += 1;
            }
        }
        Ok(started)
    }
}
