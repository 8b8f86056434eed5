//! `HaClusterRpc`: failed-path reports start switch-overs, one per volume
//! at a time. A report for a volume whose switch-over runs is answered
//! `IN_PROGRESS` and starts nothing.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use io_engine_api::{
    ha::{
        ha_cluster_rpc_server::HaClusterRpc, ListSwitchOversReply, ListSwitchOversRequest,
        PathReport, RegisterNodeAgentReply, RegisterNodeAgentRequest, ReportFailedPathsReply,
        ReportFailedPathsRequest, ReportOutcome,
    },
    names::NQN_PREFIX,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::{record::SwitchOverRecord, switch::Switcher};

/// Most paths in one report.
pub const MAX_PATHS_PER_REPORT: usize = 1024;

/// The running switch-overs, by volume: the one-per-volume rule.
#[derive(Clone)]
pub struct SwitchOvers {
    switcher: Arc<Switcher>,
    running: Arc<Mutex<HashSet<String>>>,
}

/// Removes the volume from the running set when its task ends (also if it
/// panics).
struct RunningGuard {
    running: Arc<Mutex<HashSet<String>>>,
    volume: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.volume);
    }
}

fn lock(m: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    // A panic while holding it left a plain set, still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The volume uuid of a volume target NQN.
pub fn volume_of_nqn(nqn: &str) -> Option<String> {
    let id = nqn.strip_prefix(NQN_PREFIX)?;
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

impl SwitchOvers {
    pub fn new(switcher: Arc<Switcher>) -> Self {
        Self {
            switcher,
            running: Arc::default(),
        }
    }

    /// Claims `volume` for a switch-over; `None` when one runs already.
    fn claim(&self, volume: &str) -> Option<RunningGuard> {
        lock(&self.running)
            .insert(volume.to_owned())
            .then(|| RunningGuard {
                running: self.running.clone(),
                volume: volume.to_owned(),
            })
    }

    /// Runs a stored switch-over to its end in its own task (a resume).
    pub fn resume(&self, rec: SwitchOverRecord) -> bool {
        let Some(guard) = self.claim(&rec.volume) else {
            return false;
        };
        info!(volume = %rec.volume, stage = %rec.stage, "resuming a switch-over");
        self.spawn(rec, guard);
        true
    }

    fn spawn(&self, rec: SwitchOverRecord, guard: RunningGuard) {
        let switcher = self.switcher.clone();
        tokio::spawn(async move {
            let _guard = guard;
            switcher.run(rec).await;
        });
    }

    /// The stored switch-overs.
    pub fn records(&self) -> &crate::record::Records {
        &self.switcher.records
    }

    /// Starts a switch-over for a failed path unless one runs.
    async fn start(
        &self,
        node: &str,
        endpoint: &str,
        nqn: &str,
        failed: &str,
    ) -> Result<ReportOutcome, Status> {
        let Some(volume) = volume_of_nqn(nqn) else {
            return Ok(ReportOutcome::Rejected);
        };
        let rec = SwitchOverRecord::new(&volume, nqn, node, endpoint, failed);
        match self.start_record(rec).await {
            Ok(true) => {
                info!(volume = %volume, node, failed, "switch-over started");
                Ok(ReportOutcome::Started)
            }
            Ok(false) => {
                info!(volume = %volume, node, "switch-over already running: report acknowledged");
                Ok(ReportOutcome::InProgress)
            }
            // If the store fails the report is not acknowledged and the
            // node agent sends it again.
            Err(e) => Err(Status::unavailable(format!(
                "cannot record the switch-over of volume {volume}: {e}"
            ))),
        }
    }

    /// Records `rec` and runs it, unless a switch-over of its volume runs
    /// (`Ok(false)`). Stored before it runs: a restart finds it.
    pub async fn start_record(&self, rec: SwitchOverRecord) -> Result<bool, crate::HaError> {
        let Some(guard) = self.claim(&rec.volume) else {
            return Ok(false);
        };
        if let Err(e) = self.switcher.records.put(&rec).await {
            warn!(volume = %rec.volume, error = %e, "cannot record the switch-over");
            return Err(e);
        }
        self.spawn(rec, guard);
        Ok(true)
    }
}

/// The gRPC service.
#[derive(Clone)]
pub struct HaClusterService {
    pub switch_overs: SwitchOvers,
    pub nodes: crate::nodes::NodeAgents,
}

/// A node name as the reports and registrations carry it.
fn check_node(node: &str) -> Result<(), Status> {
    if node.is_empty() || node.chars().any(|c| c.is_control() || c == '/') {
        return Err(Status::invalid_argument(format!(
            "node {node:?} must be non-empty and printable, without '/'"
        )));
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> Result<(), Status> {
    if endpoint.parse::<SocketAddr>().is_err() {
        return Err(Status::invalid_argument(format!(
            "node agent endpoint {endpoint:?} is not IP:PORT"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl HaClusterRpc for HaClusterService {
    #[tracing::instrument(skip_all, fields(node = %request.get_ref().node))]
    async fn report_failed_paths(
        &self,
        request: Request<ReportFailedPathsRequest>,
    ) -> Result<Response<ReportFailedPathsReply>, Status> {
        let r = request.into_inner();
        check_node(&r.node)?;
        check_endpoint(&r.endpoint)?;
        if r.paths.len() > MAX_PATHS_PER_REPORT {
            return Err(Status::invalid_argument(format!(
                "{} paths in one report; at most {MAX_PATHS_PER_REPORT}",
                r.paths.len()
            )));
        }
        let mut out = Vec::with_capacity(r.paths.len());
        for p in r.paths {
            let (outcome, message) = if volume_of_nqn(&p.nqn).is_none() {
                (
                    ReportOutcome::Rejected,
                    format!("{:?} is not a volume NQN ({NQN_PREFIX}<uuid>)", p.nqn),
                )
            } else if p.target_address.parse::<SocketAddr>().is_err() {
                (
                    ReportOutcome::Rejected,
                    format!("target address {:?} is not IP:PORT", p.target_address),
                )
            } else {
                let o = self
                    .switch_overs
                    .start(&r.node, &r.endpoint, &p.nqn, &p.target_address)
                    .await?;
                (o, String::new())
            };
            out.push(PathReport {
                nqn: p.nqn,
                outcome: outcome as i32,
                message,
            });
        }
        Ok(Response::new(ReportFailedPathsReply { paths: out }))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().node))]
    async fn register_node_agent(
        &self,
        request: Request<RegisterNodeAgentRequest>,
    ) -> Result<Response<RegisterNodeAgentReply>, Status> {
        let r = request.into_inner();
        check_node(&r.node)?;
        check_endpoint(&r.endpoint)?;
        self.nodes
            .register(&r.node, &r.endpoint)
            .await
            .map_err(|e| Status::unavailable(format!("cannot record the node agent: {e}")))?;
        info!(node = %r.node, endpoint = %r.endpoint, "node agent registered");
        Ok(Response::new(RegisterNodeAgentReply {}))
    }

    async fn list_switch_overs(
        &self,
        _request: Request<ListSwitchOversRequest>,
    ) -> Result<Response<ListSwitchOversReply>, Status> {
        let records = self
            .switch_overs
            .switcher
            .records
            .list()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ListSwitchOversReply {
            switch_overs: records.iter().map(SwitchOverRecord::to_proto).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_nqns_only() {
        let id = "0b0f8a5c-3c3a-4a2e-9a52-2e7fa7b1c1d2";
        assert_eq!(
            volume_of_nqn(&format!("nqn.2019-05.io.openebs:{id}")).as_deref(),
            Some(id)
        );
        assert_eq!(volume_of_nqn("nqn.2019-05.io.openebs:node-name:n1"), None);
        assert_eq!(volume_of_nqn("nqn.2014-08.org.nvmexpress.discovery"), None);
        assert_eq!(volume_of_nqn(id), None);
    }
}
