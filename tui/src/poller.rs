//! The background side: a task that polls the REST API every interval and
//! one task per action, each reporting an [`Update`] through a bounded
//! channel. The UI thread only ever reads that channel without waiting.
//!
//! A failed poll is reported like a successful one (as an error message)
//! and the poller simply tries again at the next interval, so the
//! dashboard recovers by itself when the API returns.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openapi::CoreApi;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::app::{Action, Update};
use crate::snapshot::fetch;

/// Capacity of the update channel.
pub const UPDATES: usize = 64;

/// Starts polling `api` every `interval` (and at once when `refresh` is
/// notified); stops when the receiver is gone.
pub fn spawn_poller(
    runtime: &tokio::runtime::Handle,
    api: Arc<dyn CoreApi>,
    interval: Duration,
    updates: mpsc::Sender<Update>,
    refresh: Arc<Notify>,
) -> JoinHandle<()> {
    runtime.spawn(async move {
        loop {
            let result = fetch(api.as_ref()).await.map_err(|e| e.to_string());
            let update = Update::Polled {
                result,
                at: SystemTime::now(),
            };
            if updates.send(update).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = refresh.notified() => {}
            }
        }
    })
}

/// Runs `action` against the API in its own task; reports the outcome and
/// then asks the poller for a fresh snapshot.
pub fn spawn_action(
    runtime: &tokio::runtime::Handle,
    api: Arc<dyn CoreApi>,
    action: Action,
    updates: mpsc::Sender<Update>,
    refresh: Arc<Notify>,
) {
    runtime.spawn(async move {
        let result = perform(api.as_ref(), &action).await;
        let _ = updates
            .send(Update::ActionDone {
                action,
                result,
                at: SystemTime::now(),
            })
            .await;
        refresh.notify_one();
    });
}

/// Calls the endpoint behind `action`; an error is the REST error's text.
pub async fn perform(api: &dyn CoreApi, action: &Action) -> Result<(), String> {
    let result = match action {
        // The support bundle is not a REST call (see `crate::bundle`).
        Action::Quit | Action::Refresh | Action::Bundle => return Ok(()),
        Action::Scale { volume, replicas } => api
            .put_volume_replica_count(volume, *replicas)
            .await
            .map(drop),
        Action::Cordon { node, label } => api.put_node_cordon(node, label).await.map(drop),
        Action::Uncordon { node, label } => api.del_node_cordon(node, label).await.map(drop),
        Action::Drain { node, label } => api.put_node_drain(node, label).await.map(drop),
    };
    result.map_err(|e| {
        if e.details.is_empty() {
            format!("{} ({})", e.message, e.kind)
        } else {
            format!("{} ({}; {})", e.message, e.kind, e.details)
        }
    })
}
