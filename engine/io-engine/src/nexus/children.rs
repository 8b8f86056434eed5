//! Changes to a nexus's children and its lifecycle: fault on request,
//! online, add, remove, rebuild start/finish/control, shutdown. Each keeps
//! the invariants of the module header (the last online child is never
//! faulted; a fault is persisted before it is acted on).

use std::{
    sync::{atomic::Ordering, Arc},
    time::SystemTime,
};

use tracing::{info, warn};

use blockdev::BlockDevice;
use uuid::Uuid;

use super::{
    check_child_uri, child,
    rebuild::{Control, Outcome, RebuildJob},
    Child, ChildDevice, ChildState, ChildStatus, FaultOutcome, FaultReason, Nexus, NexusError,
    OpenedChild, RebuildState, RebuildStats, ReservationArgs,
};

impl Nexus {
    /// Faults a child on a client request. The last online child cannot be
    /// faulted.
    pub(crate) async fn fault_by_client(&self, uri: &str) -> Result<(), NexusError> {
        let child = self.child(uri)?;
        self.stop_job_of(&child).await;
        let (outcome, gen) = self.fault_locked(&child, FaultReason::ByClient, true, false);
        if outcome == FaultOutcome::LastHealthy {
            return Err(NexusError::FailedPrecondition(format!(
                "child {uri} is the last healthy child of nexus {}",
                self.uuid
            )));
        }
        // Let in-flight writes that still used the child finish: from now
        // on writes mark its log instead.
        drop(self.gate.write().await);
        self.persist_upto(gen).await
    }

    /// Stops the rebuild of `child`, if any, and waits for it to end.
    pub(super) async fn stop_job_of(&self, child: &Arc<Child>) {
        let job = self.jobs.lock().get(&child.uuid()).cloned();
        if let Some(job) = job {
            job.set_control(Control::Stop);
            job.wait().await;
        }
    }

    /// Brings a faulted (or new) child back: reopens it, adds it to the
    /// write path and starts its rebuild (partial when it has a dirty log,
    /// full otherwise). A child that is online already is left alone.
    pub(crate) async fn online_child(
        &self,
        uri: &str,
        max_bandwidth: Option<u64>,
    ) -> Result<(), NexusError> {
        if self.is_shut_down() {
            return Err(NexusError::FailedPrecondition(format!(
                "nexus {} is shut down",
                self.uuid
            )));
        }
        let child = self.child(uri)?;
        match child.state() {
            ChildState::Online => return Ok(()),
            ChildState::Degraded => {
                if self.jobs.lock().contains_key(&child.uuid()) {
                    return Err(NexusError::AlreadyExists(format!(
                        "child {uri} is being rebuilt already"
                    )));
                }
            }
            ChildState::Faulted => {}
        }
        if child.device().is_none() {
            let resv = *self.reservation.lock();
            let opened = match self.open_reserved(child.uri(), &child.uuid(), &resv).await {
                Ok(o) => o,
                Err(e) => {
                    child.set_status(ChildState::Faulted, FaultReason::CannotOpen);
                    return Err(NexusError::FailedPrecondition(format!(
                        "cannot open child {uri}: {e}"
                    )));
                }
            };
            if let Err(e) = self.check_child_device(&opened.device) {
                child.set_status(ChildState::Faulted, FaultReason::CannotOpen);
                return Err(e);
            }
            child.set_device(opened);
        }
        self.start_rebuild_of(&child, max_bandwidth).await
    }

    /// Opens a child and takes the nexus's reservation on it.
    pub(super) async fn open_reserved(
        &self,
        uri: &str,
        uuid: &Uuid,
        resv: &ReservationArgs,
    ) -> Result<OpenedChild, String> {
        let opened = self.opener.open(uri, uuid).await?;
        if let Err(e) = child::take_reservation(resv, &opened).await {
            if let Some(ns) = &opened.remote {
                let ctrl = ns.controller().clone();
                tokio::spawn(async move {
                    let _ = ctrl.disconnect().await;
                });
            }
            return Err(e);
        }
        Ok(opened)
    }

    /// Checks a child device fits the nexus.
    pub(super) fn check_child_device(&self, dev: &ChildDevice) -> Result<(), NexusError> {
        let info = dev.info();
        if info.block_size != self.block_size() {
            return Err(NexusError::FailedPrecondition(format!(
                "child block size {} differs from the nexus block size {}",
                info.block_size,
                self.block_size()
            )));
        }
        if info.size_bytes() < self.size_bytes() {
            return Err(NexusError::FailedPrecondition(format!(
                "child size {} is smaller than the nexus size {}",
                info.size_bytes(),
                self.size_bytes()
            )));
        }
        Ok(())
    }

    /// Moves an open, out-of-sync child into the write path and starts the
    /// job that brings it in sync.
    pub(super) async fn start_rebuild_of(
        &self,
        child: &Arc<Child>,
        max_bandwidth: Option<u64>,
    ) -> Result<(), NexusError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| NexusError::FailedPrecondition("the nexus is being destroyed".into()))?;
        let src_uri = match self.pick_source(child) {
            Some((src, _)) => src.uri().to_owned(),
            None => {
                return Err(NexusError::FailedPrecondition(format!(
                    "nexus {} has no healthy child to rebuild {} from",
                    self.uuid,
                    child.uri()
                )))
            }
        };
        // Enter the write path; from now on the range locks are on.
        self.rebuilds_active.fetch_add(1, Ordering::SeqCst);
        {
            let _g = self.state_lock.lock();
            child.set_status(ChildState::Degraded, FaultReason::None);
            self.bump();
        }
        // Wait for the writes that started before (they marked the log).
        drop(self.gate.write().await);
        let log = child.take_log();
        let (ranges, partial) = match &log {
            Some(log) => (log.runs().collect::<Vec<_>>(), true),
            None => (vec![(0, self.size_bytes())], false),
        };
        let bandwidth = max_bandwidth.unwrap_or(self.cfg.rebuild_max_bandwidth);
        let job = Arc::new(RebuildJob::new(
            child.clone(),
            src_uri,
            ranges,
            self.block_size(),
            partial,
            bandwidth,
        ));
        self.jobs.lock().insert(child.uuid(), job.clone());
        info!(nexus = %self.uuid, child = child.uri(), partial,
            bytes = job.stats().blocks_total * u64::from(self.block_size()), "rebuild queued");
        tokio::spawn(me.run_rebuild(job));
        Ok(())
    }

    /// Applies the outcome of a rebuild job.
    pub(crate) async fn finish_rebuild(&self, job: &Arc<RebuildJob>, outcome: Outcome) {
        let dst = &job.dst;
        let (state, error) = match &outcome {
            Outcome::Completed => (RebuildState::Completed, None),
            Outcome::Stopped => (RebuildState::Stopped, None),
            Outcome::Failed(_, e) => (RebuildState::Failed, Some(e.clone())),
        };
        let gen = {
            let _g = self.state_lock.lock();
            if dst.state() == ChildState::Degraded {
                match &outcome {
                    Outcome::Completed => dst.set_status(ChildState::Online, FaultReason::None),
                    Outcome::Stopped => {
                        dst.set_status(ChildState::Faulted, FaultReason::OutOfSync);
                    }
                    Outcome::Failed(reason, _) => dst.set_status(ChildState::Faulted, *reason),
                }
            }
            self.bump()
        };
        if dst.state() == ChildState::Faulted {
            dst.close();
        }
        let stats = {
            let mut s = job.stats.lock();
            s.state = state;
            s.error = error.clone();
            s.end_time = Some(SystemTime::now());
            s.clone()
        };
        {
            let mut jobs = self.jobs.lock();
            if jobs.get(&dst.uuid()).is_some_and(|j| Arc::ptr_eq(j, job)) {
                jobs.remove(&dst.uuid());
            }
        }
        self.rebuilds_active.fetch_sub(1, Ordering::SeqCst);
        {
            let mut h = self.history.lock();
            h.push_back(stats.clone());
            while h.len() > self.cfg.history_len {
                h.pop_front();
            }
        }
        match &error {
            None => info!(nexus = %self.uuid, child = dst.uri(), %state,
                bytes = stats.bytes_transferred, partial = stats.is_partial, "rebuild ended"),
            Some(e) => warn!(nexus = %self.uuid, child = dst.uri(), error = %e, "rebuild failed"),
        }
        if let Err(e) = self.persist_upto(gen).await {
            warn!(nexus = %self.uuid, error = %e, "cannot persist the nexus info after a rebuild");
        }
        job.done.send_replace(true);
    }

    /// The running rebuild of a child.
    pub fn rebuild_job(&self, uri: &str) -> Result<Arc<RebuildJob>, NexusError> {
        let child = self.child(uri)?;
        self.jobs
            .lock()
            .get(&child.uuid())
            .cloned()
            .ok_or_else(|| NexusError::NotFound(format!("no rebuild of child {uri} is running")))
    }

    /// Stats of the running rebuild of a child, or its last record.
    pub fn rebuild_stats(&self, uri: &str) -> Result<RebuildStats, NexusError> {
        if let Ok(job) = self.rebuild_job(uri) {
            return Ok(job.stats());
        }
        let child = self.child(uri)?;
        self.history
            .lock()
            .iter()
            .rev()
            .find(|s| s.uri == child.uri())
            .cloned()
            .ok_or_else(|| NexusError::NotFound(format!("child {uri} has no rebuild")))
    }

    pub(crate) fn control_rebuild(
        &self,
        uri: &str,
        c: Control,
    ) -> Result<RebuildStats, NexusError> {
        let job = self.rebuild_job(uri)?;
        job.set_control(c);
        Ok(job.stats())
    }

    /// Stops a rebuild and waits for it to end.
    pub(crate) async fn stop_rebuild(&self, uri: &str) -> Result<RebuildStats, NexusError> {
        let job = self.rebuild_job(uri)?;
        job.set_control(Control::Stop);
        job.wait().await;
        Ok(job.stats())
    }

    /// Adds a new child (it is rebuilt in full unless `norebuild`).
    ///
    /// The child takes the nexus's reservation like every child.
    pub(crate) async fn add_child(&self, uri: &str, norebuild: bool) -> Result<(), NexusError> {
        if self.is_shut_down() {
            return Err(NexusError::FailedPrecondition(format!(
                "nexus {} is shut down",
                self.uuid
            )));
        }
        let uuid = check_child_uri(uri).map_err(NexusError::InvalidArgument)?;
        if self
            .children()
            .iter()
            .any(|c| c.uri() == uri || c.uuid() == uuid)
        {
            return Err(NexusError::AlreadyExists(format!(
                "nexus {} already has child {uri}",
                self.uuid
            )));
        }
        let resv = *self.reservation.lock();
        let opened = self
            .open_reserved(uri, &uuid, &resv)
            .await
            .map_err(|e| NexusError::FailedPrecondition(format!("cannot open child {uri}: {e}")))?;
        self.check_child_device(&opened.device)?;
        let child = Arc::new(Child::new(
            uri.to_owned(),
            uuid,
            ChildStatus {
                state: ChildState::Faulted,
                reason: FaultReason::OutOfSync,
                faulted_at: None,
            },
        ));
        child.set_device(opened);
        {
            let _g = self.state_lock.lock();
            let mut list = self.children.write();
            let mut next = (**list).clone();
            next.push(child.clone());
            *list = Arc::new(next);
            self.bump();
        }
        self.persist().await?;
        info!(nexus = %self.uuid, child = uri, "child added");
        if norebuild {
            return Ok(());
        }
        self.start_rebuild_of(&child, None).await
    }

    /// Removes a child. The last online child cannot be removed.
    pub(crate) async fn remove_child(&self, uri: &str) -> Result<(), NexusError> {
        let child = self.child(uri)?;
        if child.state() == ChildState::Online && self.online_count() <= 1 {
            return Err(NexusError::FailedPrecondition(format!(
                "child {uri} is the last healthy child of nexus {}",
                self.uuid
            )));
        }
        self.stop_job_of(&child).await;
        {
            let _g = self.state_lock.lock();
            if child.state() == ChildState::Online && self.online_count() <= 1 {
                return Err(NexusError::FailedPrecondition(format!(
                    "child {uri} is the last healthy child of nexus {}",
                    self.uuid
                )));
            }
            child.set_status(ChildState::Faulted, FaultReason::ByClient);
            let mut list = self.children.write();
            let next: Vec<_> = list
                .iter()
                .filter(|c| !Arc::ptr_eq(c, &child))
                .cloned()
                .collect();
            *list = Arc::new(next);
            self.bump();
        }
        drop(self.gate.write().await);
        child.close();
        self.persist().await?;
        info!(nexus = %self.uuid, child = uri, "child removed");
        Ok(())
    }

    /// Shuts the nexus down: rebuilds stop, in-flight I/O drains, children
    /// are flushed and closed, and the info is persisted with
    /// `clean_shutdown = true`. I/O fails from then on.
    pub(crate) async fn shutdown(&self) -> Result<(), NexusError> {
        if self.shutdown.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let jobs: Vec<_> = self.jobs.lock().values().cloned().collect();
        for job in &jobs {
            job.set_control(Control::Stop);
        }
        for job in &jobs {
            job.wait().await;
        }
        drop(self.gate.write().await);
        let children = self.children();
        let mut flushed_all = true;
        for c in children.iter() {
            if let Some((dev, _)) = c.write_device() {
                if let Err((_, e)) = self.child_io(dev.flush()).await {
                    warn!(nexus = %self.uuid, child = c.uri(), error = %e, "flush at shutdown failed");
                    if c.state() == ChildState::Online {
                        flushed_all = false;
                    }
                }
            }
        }
        // A child whose final flush failed may have lost writes: not clean.
        self.clean.store(flushed_all, Ordering::SeqCst);
        self.bump();
        let persisted = self.persist().await;
        for c in children.iter() {
            c.close();
        }
        info!(nexus = %self.uuid, clean = flushed_all, "nexus shut down");
        persisted
    }
}
