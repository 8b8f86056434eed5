//! The stage machine of one switch-over. Each step looks at the cluster
//! before it acts, so a step that already happened (the agent was killed
//! after its side effect and before its record) is not done twice:
//!
//! - `Init`: the volume's current target. If it is no longer at the failed
//!   address (a drain, or an earlier switch-over, moved it), the republish
//!   is skipped.
//! - `RepublishVolume`: `PUT /volumes/{id}/target/republish`, unless the
//!   target already left the old node.
//! - `ReplacePath`: the reporting node agent connects the new target and
//!   drops the old path.
//! - `DeleteTarget`: the old nexus is gone, or left `Deleting` for the
//!   core's garbage collector (its node is unreachable; it is fenced by
//!   the new target's reservation meanwhile).
//!
//! A drain's switch-over (kind `drain`) is make before break: its
//! republish keeps the old target published but ANA inaccessible (the
//! host's I/O waits for a path instead of failing), ReplacePath is skipped
//! when the frontend node has no node agent, and `DeleteTarget` destroys
//! the kept target (`DELETE /volumes/{id}/target/retired`) once the host's
//! new path is live. A drain moves volumes of any replica count.
//!
//! A step that fails is tried again after `retry_delay`, up to
//! `max_attempts` times; then the switch-over ends `Errored`.

use std::{sync::Arc, time::Duration};

use io_engine_api::ha::{ha_node_rpc_client::HaNodeRpcClient, ReplacePathRequest};
use openapi::{
    models::{RepublishVolumeBody, SpecStatus, Volume},
    CoreApi, ErrorKind,
};
use tracing::{info, warn};

use crate::record::{Records, Stage, SwitchKind, SwitchOverRecord};

/// Settings of the switch-overs.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub node_timeout: Duration,
    pub retry_delay: Duration,
    pub max_attempts: u32,
}

/// What the switch-overs need: the store, the REST API and settings.
pub struct Switcher {
    pub records: Records,
    pub api: Arc<dyn CoreApi>,
    pub opts: SwitchOptions,
}

/// Why a step did not complete.
enum StepError {
    /// Worth another attempt.
    Retry(String),
    /// Another attempt cannot help.
    Fatal(String),
}

type StepResult = Result<Stage, StepError>;

/// `IP:PORT` of an `nvmf://IP:PORT/nqn` URI.
pub fn uri_address(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("nvmf://")?;
    let (addr, _) = rest.split_once('/')?;
    (!addr.is_empty()).then_some(addr)
}

fn retry_rest(what: &str, e: openapi::RestError) -> StepError {
    match e.kind {
        ErrorKind::NotFound => StepError::Fatal(format!("{what}: {e}")),
        _ => StepError::Retry(format!("{what}: {e}")),
    }
}

impl Switcher {
    /// Runs `rec` from its stored stage to the end; the final record.
    #[tracing::instrument(skip_all, fields(volume = %rec.volume, node = %rec.node))]
    pub async fn run(&self, mut rec: SwitchOverRecord) -> SwitchOverRecord {
        info!(stage = %rec.stage, failed = %rec.failed_address, "switch-over running");
        while !rec.stage.is_final() {
            let outcome = match rec.stage {
                Stage::Init => self.init(&mut rec).await,
                Stage::RepublishVolume => self.republish(&mut rec).await,
                Stage::ReplacePath => self.replace_path(&rec).await,
                Stage::DeleteTarget => self.delete_target(&rec).await,
                Stage::Successful | Stage::Errored => break,
            };
            match outcome {
                Ok(next) => {
                    info!(from = %rec.stage, to = %next, "switch-over stage done");
                    rec.stage = next;
                    rec.attempts = 0;
                    rec.error = None;
                }
                Err(StepError::Retry(e)) if rec.attempts + 1 < self.opts.max_attempts => {
                    rec.attempts += 1;
                    warn!(stage = %rec.stage, attempt = rec.attempts, error = %e, "switch-over stage failed; retrying");
                    rec.error = Some(e);
                }
                Err(StepError::Retry(e) | StepError::Fatal(e)) => {
                    warn!(stage = %rec.stage, error = %e, "switch-over failed");
                    rec.error = Some(format!("{}: {e}", rec.stage));
                    rec.stage = Stage::Errored;
                }
            }
            rec.updated_unix_ms = mayastor_common::time::now_unix_ms();
            self.persist(&rec).await;
            if rec.attempts > 0 && !rec.stage.is_final() {
                tokio::time::sleep(self.opts.retry_delay).await;
            }
        }
        info!(stage = %rec.stage, new_target = ?rec.new_target, "switch-over ended");
        rec
    }

    /// Writes the record, retrying until the store takes it: the next
    /// stage's side effect must not run before its stage is stored.
    pub async fn persist(&self, rec: &SwitchOverRecord) {
        loop {
            match self.records.put(rec).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(volume = %rec.volume, error = %e, "cannot store the switch-over; retrying");
                    tokio::time::sleep(self.opts.retry_delay).await;
                }
            }
        }
    }

    async fn volume(&self, rec: &SwitchOverRecord) -> Result<Volume, StepError> {
        self.api
            .get_volume(&rec.volume)
            .await
            .map_err(|e| retry_rest("get volume", e))
    }

    async fn init(&self, rec: &mut SwitchOverRecord) -> StepResult {
        let v = self.volume(rec).await?;
        if rec.kind == SwitchKind::Failure && v.spec.num_replicas < 2 {
            return Err(StepError::Fatal(format!(
                "volume has {} replica: a target move needs at least 2",
                v.spec.num_replicas
            )));
        }
        rec.old_target_node = v.spec.target.as_ref().map(|t| t.node.clone());
        let current = v.state.target.as_ref();
        let moved = current
            .is_some_and(|n| uri_address(&n.device_uri).is_some_and(|a| a != rec.failed_address));
        if moved {
            // A drain or an earlier switch-over moved it already: only the
            // path is left to replace.
            rec.new_target = current.map(|n| n.device_uri.clone());
            rec.old_nexus = None;
            return Ok(Stage::ReplacePath);
        }
        rec.old_nexus = current.map(|n| n.uuid.clone());
        Ok(Stage::RepublishVolume)
    }

    async fn republish(&self, rec: &mut SwitchOverRecord) -> StepResult {
        let v = self.volume(rec).await?;
        let target_node = v.spec.target.as_ref().map(|t| t.node.clone());
        let done = target_node.is_some() && target_node != rec.old_target_node;
        let v = if done {
            v
        } else {
            let body = RepublishVolumeBody {
                make_before_break: rec.kind == SwitchKind::Drain,
                ..RepublishVolumeBody::default()
            };
            self.api
                .put_volume_republish(&rec.volume, body)
                .await
                .map_err(|e| retry_rest("republish", e))?
        };
        let uri = v
            .state
            .target
            .as_ref()
            .map(|n| n.device_uri.clone())
            .filter(|u| uri_address(u).is_some())
            .ok_or_else(|| StepError::Retry("the new target is not shared yet".into()))?;
        info!(target = %uri, node = ?v.spec.target.map(|t| t.node), "volume republished");
        rec.new_target = Some(uri);
        Ok(Stage::ReplacePath)
    }

    async fn replace_path(&self, rec: &SwitchOverRecord) -> StepResult {
        let uri = rec
            .new_target
            .clone()
            .ok_or_else(|| StepError::Fatal("no new target recorded".into()))?;
        if rec.node_endpoint.is_empty() {
            warn!(node = %rec.node, "no node agent to replace the path: the host keeps its old path only");
            return Ok(Stage::DeleteTarget);
        }
        let endpoint = format!("http://{}", rec.node_endpoint);
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .map_err(|e| StepError::Fatal(format!("node agent endpoint {endpoint}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.opts.node_timeout)
            .connect()
            .await
            .map_err(|e| StepError::Retry(format!("node agent {endpoint} unreachable: {e}")))?;
        let reply = HaNodeRpcClient::new(channel)
            .replace_path(ReplacePathRequest {
                nqn: rec.nqn.clone(),
                new_uri: uri.clone(),
                old_address: rec.failed_address.clone(),
            })
            .await
            .map_err(|s| StepError::Retry(format!("ReplacePath on {}: {}", rec.node, s.message())))?
            .into_inner();
        info!(controller = %reply.controller, target = %uri, "path replaced");
        Ok(Stage::DeleteTarget)
    }

    async fn delete_target(&self, rec: &SwitchOverRecord) -> StepResult {
        if rec.kind == SwitchKind::Drain {
            // The host's new path is live (or it has no node agent): the
            // kept target goes.
            self.api
                .del_volume_retired_targets(&rec.volume)
                .await
                .map_err(|e| retry_rest("destroy the old target", e))?;
        }
        let Some(old) = &rec.old_nexus else {
            return Ok(Stage::Successful);
        };
        let specs = self
            .api
            .get_specs()
            .await
            .map_err(|e| retry_rest("get specs", e))?;
        match specs.nexuses.iter().find(|n| &n.uuid == old) {
            None => Ok(Stage::Successful),
            Some(n) if n.status == SpecStatus::Deleting => {
                info!(nexus = %old, node = %n.node, "the old target is left to the garbage collector");
                Ok(Stage::Successful)
            }
            Some(n) => Err(StepError::Retry(format!(
                "the old target {old} on {} is still {:?}",
                n.node, n.status
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_target_uris() {
        assert_eq!(
            uri_address("nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:v"),
            Some("127.0.0.1:8420")
        );
        assert_eq!(uri_address("nvmf:///nqn"), None);
        assert_eq!(uri_address(""), None);
        assert_eq!(uri_address("bdev:///x"), None);
    }
}
