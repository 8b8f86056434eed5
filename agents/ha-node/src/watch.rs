//! Failure detection and reporting. A path (volume NQN, target address)
//! whose controller stays `connecting` (or `resetting`) for the threshold
//! is due; due paths go to the cluster agent in one batch per period and
//! are sent again each period until the cluster agent acknowledges them.
//! An acknowledged path still failing is reported again after
//! `report_again_after` (its switch-over may have ended in error); a path
//! that is live again or gone is forgotten.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use io_engine_api::ha::{FailedPath, ReportFailedPathsRequest, ReportOutcome};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{config::AddressMap, sysfs::Controller, sysfs::Sysfs};

/// A path: (volume NQN, target address as this host sees it).
pub type PathKey = (String, String);

#[derive(Debug, Clone, Copy)]
struct Tracked {
    failing_since: Instant,
    acknowledged_at: Option<Instant>,
}

/// What the watcher knows of the failing paths.
#[derive(Debug)]
pub struct Tracker {
    threshold: Duration,
    report_again_after: Duration,
    failing: HashMap<PathKey, Tracked>,
}

fn failing_state(state: &str) -> bool {
    matches!(state, "connecting" | "resetting")
}

impl Tracker {
    pub fn new(threshold: Duration, report_again_after: Duration) -> Self {
        Self {
            threshold,
            report_again_after,
            failing: HashMap::new(),
        }
    }

    /// Takes a look at the controllers at `now`; the paths due for a
    /// report, sorted.
    pub fn observe(&mut self, ctrls: &[Controller], now: Instant) -> Vec<PathKey> {
        let failing_now: Vec<PathKey> = ctrls
            .iter()
            .filter(|c| failing_state(&c.state) && !c.address.is_empty())
            .map(|c| (c.nqn.clone(), c.address.clone()))
            .collect();
        self.failing.retain(|k, _| failing_now.contains(k));
        for k in failing_now {
            self.failing.entry(k).or_insert(Tracked {
                failing_since: now,
                acknowledged_at: None,
            });
        }
        let mut due: Vec<PathKey> = self
            .failing
            .iter()
            .filter(|(_, t)| now.duration_since(t.failing_since) >= self.threshold)
            .filter(|(_, t)| {
                t.acknowledged_at
                    .is_none_or(|a| now.duration_since(a) >= self.report_again_after)
            })
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        due
    }

    /// The cluster agent answered for `path`.
    pub fn acknowledge(&mut self, path: &PathKey, now: Instant) {
        if let Some(t) = self.failing.get_mut(path) {
            t.acknowledged_at = Some(now);
        }
    }
}

/// What the watcher needs.
pub struct Watcher {
    pub node: String,
    pub advertise: String,
    pub cluster_agent: String,
    pub sysfs: Sysfs,
    pub map: AddressMap,
    pub interval: Duration,
    pub tracker: Tracker,
}

impl Watcher {
    /// Watches until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let ctrls = self.sysfs.controllers();
            let due = self.tracker.observe(&ctrls, Instant::now());
            if due.is_empty() {
                continue;
            }
            match self.report(&due).await {
                Ok(acked) => {
                    let now = Instant::now();
                    for p in &acked {
                        self.tracker.acknowledge(p, now);
                    }
                }
                Err(e) => {
                    warn!(paths = due.len(), error = %e, "cannot report failed paths; resending")
                }
            }
        }
    }

    /// Sends one batch; the paths the cluster agent answered for.
    async fn report(&self, due: &[PathKey]) -> Result<Vec<PathKey>, String> {
        let paths: Vec<FailedPath> = due
            .iter()
            .map(|(nqn, addr)| FailedPath {
                nqn: nqn.clone(),
                target_address: self.map.cluster(addr).to_owned(),
            })
            .collect();
        info!(paths = ?due, "reporting failed paths");
        let reply = crate::register::cluster_agent(&self.cluster_agent)
            .await?
            .report_failed_paths(ReportFailedPathsRequest {
                node: self.node.clone(),
                endpoint: self.advertise.clone(),
                paths,
            })
            .await
            .map_err(|s| format!("ReportFailedPaths: {}", s.message()))?
            .into_inner();
        let mut acked = Vec::new();
        for r in reply.paths {
            let outcome = ReportOutcome::try_from(r.outcome).unwrap_or(ReportOutcome::Unspecified);
            if outcome == ReportOutcome::Unspecified {
                continue;
            }
            if outcome == ReportOutcome::Rejected {
                warn!(nqn = %r.nqn, reason = %r.message, "failed path rejected by the cluster agent");
            }
            acked.extend(due.iter().filter(|(n, _)| *n == r.nqn).cloned());
        }
        Ok(acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, state: &str, addr: &str) -> Controller {
        Controller {
            name: name.into(),
            nqn: "nqn.2019-05.io.openebs:v".into(),
            state: state.into(),
            address: addr.into(),
        }
    }

    #[test]
    fn a_path_is_due_after_the_threshold_until_acknowledged() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Tracker::new(3 * s, 60 * s);
        let failing = [c("nvme0", "connecting", "a:1"), c("nvme1", "live", "b:1")];
        assert!(t.observe(&failing, t0).is_empty());
        assert!(t.observe(&failing, t0 + 2 * s).is_empty());
        let due = t.observe(&failing, t0 + 3 * s);
        assert_eq!(due, vec![("nqn.2019-05.io.openebs:v".into(), "a:1".into())]);
        // Not acknowledged: due again at the next look.
        assert_eq!(t.observe(&failing, t0 + 4 * s), due);
        t.acknowledge(&due[0], t0 + 4 * s);
        assert!(t.observe(&failing, t0 + 5 * s).is_empty());
        // Still failing long after: reported again.
        assert_eq!(t.observe(&failing, t0 + 64 * s), due);
    }

    #[test]
    fn a_path_that_recovers_or_goes_starts_over() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Tracker::new(3 * s, 60 * s);
        assert!(t.observe(&[c("nvme0", "connecting", "a:1")], t0).is_empty());
        assert!(t
            .observe(&[c("nvme0", "live", "a:1")], t0 + 2 * s)
            .is_empty());
        assert!(t
            .observe(&[c("nvme0", "connecting", "a:1")], t0 + 4 * s)
            .is_empty());
        assert_eq!(
            t.observe(&[c("nvme0", "connecting", "a:1")], t0 + 7 * s)
                .len(),
            1
        );
        assert!(t.observe(&[], t0 + 8 * s).is_empty());
    }
}
