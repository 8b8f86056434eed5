//! The PV garbage collector of `csi-controller`: frees the volumes
//! Kubernetes no longer refers to, as upstream Mayastor's controller does.
//!
//! - **PV watcher**: a PersistentVolume of this driver that disappears
//!   from the API server while `Bound`, or while `Released` under the
//!   `Retain` policy (a PV deleted by hand: no CSI `DeleteVolume` will
//!   ever come), gets its volume deleted through REST. A PV still
//!   terminating (held by its protection finalizer) is left alone until it
//!   is gone.
//! - **Orphan sweep**: every `--orphan-vol-gc-period`, the volumes labelled
//!   [`CREATED_BY`] with neither a PV of this driver (by volume handle) nor
//!   a PVC whose uid is the volume's (provisioning in progress) are
//!   orphan candidates; after `--orphan-vol-gc-grace` the listing is made
//!   again and the candidates still orphaned are deleted. This catches
//!   events missed while the controller was down and PVs removed in ways
//!   the watcher did not see.
//!
//! Safety rules: a volume with a PV is never touched; any error listing PVs,
//! PVCs or volumes skips the whole round (never "no PV found, delete");
//! a volume with a CSI call in flight (its [`VolumeGuards`] entry) is
//! skipped.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{
    api::{Api, ListParams},
    runtime::{watcher, WatchStreamExt},
};
use openapi::{CoreApi, ErrorKind};
use tokio_util::sync::CancellationToken;

use super::{errors::volume_uuid, views::CREATED_BY};
use crate::{volume_guard::VolumeGuards, PLUGIN_NAME};

/// Page size of the PV, PVC and volume listings.
const PAGE: u32 = 500;

/// How often the collector runs and how long an orphan candidate waits.
#[derive(Debug, Clone, Copy)]
pub struct GcTimes {
    /// Time between two orphan sweeps.
    pub period: Duration,
    /// Time between finding an orphan candidate and deleting it.
    pub grace: Duration,
}

/// The collector (see the module header).
#[derive(Clone)]
pub struct PvGarbageCollector {
    pvs: Api<PersistentVolume>,
    pvcs: Api<PersistentVolumeClaim>,
    rest: Arc<dyn CoreApi>,
    guards: VolumeGuards,
    times: GcTimes,
}

/// The volume a gone PV leaves behind for the collector to delete: the
/// uuid of its CSI volume handle when the PV is this driver's and was
/// `Bound`, or `Released` under the `Retain` policy. `None` otherwise
/// (another driver, a `Delete` PV released, whose volume the provisioner
/// deletes itself, a PV that was never bound).
pub fn volume_of_gone_pv(pv: &PersistentVolume) -> Option<String> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref().filter(|c| c.driver == PLUGIN_NAME)?;
    let id = volume_uuid(&csi.volume_handle)?;
    let policy = spec.persistent_volume_reclaim_policy.as_deref();
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    match (policy, phase) {
        (_, Some("Bound")) | (Some("Retain"), Some("Released")) => Some(id),
        _ => None,
    }
}

/// The uuids of the volumes labelled [`CREATED_BY`] in `volumes` that
/// neither a PV handle nor a PVC uid names.
pub fn orphans<'a>(
    volumes: impl IntoIterator<Item = &'a openapi::models::Volume>,
    pv_handles: &HashSet<String>,
    pvc_uids: &HashSet<String>,
) -> HashSet<String> {
    volumes
        .into_iter()
        .filter(|v| {
            v.spec
                .labels
                .as_ref()
                .and_then(|l| l.get(CREATED_BY.0))
                .is_some_and(|value| value == CREATED_BY.1)
        })
        .map(|v| v.spec.uuid.to_ascii_lowercase())
        .filter(|id| !pv_handles.contains(id) && !pvc_uids.contains(id))
        .collect()
}

impl PvGarbageCollector {
    pub fn new(
        kube: kube::Client,
        rest: Arc<dyn CoreApi>,
        guards: VolumeGuards,
        times: GcTimes,
    ) -> Self {
        Self {
            pvs: Api::all(kube.clone()),
            pvcs: Api::all(kube),
            rest,
            guards,
            times,
        }
    }

    /// Watches PVs and sweeps orphans until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            period = ?self.times.period,
            grace = ?self.times.grace,
            "PV garbage collector started"
        );
        let sweeper = self.clone();
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.watch_pvs() => {}
            () = sweeper.sweep_forever() => {}
        }
    }

    async fn watch_pvs(&self) {
        let events = watcher(self.pvs.clone(), watcher::Config::default()).default_backoff();
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Delete(pv)) => {
                    let name = pv.metadata.name.clone().unwrap_or_default();
                    if let Some(id) = volume_of_gone_pv(&pv) {
                        tracing::info!(pv = %name, volume = %id, "PV deleted: deleting its volume");
                        self.delete(&id).await;
                    }
                }
                Ok(_) => {}
                // The backoff retries; the sweep covers what is missed.
                Err(error) => tracing::warn!(%error, "watching PersistentVolumes"),
            }
        }
    }

    async fn sweep_forever(&self) {
        let mut ticker = tokio::time::interval(self.times.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.sweep().await {
                tracing::warn!("orphan volume sweep skipped: {error:#}");
            }
        }
    }

    /// One sweep: candidates now, deleted if still orphaned after the
    /// grace period.
    async fn sweep(&self) -> anyhow::Result<()> {
        let candidates = self.orphans_now().await?;
        if candidates.is_empty() {
            return Ok(());
        }
        tracing::info!(
            volumes = ?candidates,
            grace = ?self.times.grace,
            "volumes with no PV: checking again after the grace period"
        );
        tokio::time::sleep(self.times.grace).await;
        let still = self.orphans_now().await?;
        for id in candidates.intersection(&still) {
            tracing::info!(volume = %id, "volume still has no PV: deleting it");
            self.delete(id).await;
        }
        Ok(())
    }

    async fn orphans_now(&self) -> anyhow::Result<HashSet<String>> {
        let volumes = self.volumes().await?;
        let pv_handles = self.pv_handles().await?;
        let pvc_uids = self.pvc_uids().await?;
        Ok(orphans(&volumes, &pv_handles, &pvc_uids))
    }

    async fn volumes(&self) -> anyhow::Result<Vec<openapi::models::Volume>> {
        self.rest
            .all_volumes(u64::from(PAGE))
            .await
            .map_err(|e| anyhow::anyhow!("listing volumes: {e}"))
    }

    /// The volume handles (uuids) of this driver's PVs.
    async fn pv_handles(&self) -> anyhow::Result<HashSet<String>> {
        let mut handles = HashSet::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let list = self
                .pvs
                .list(&params)
                .await
                .map_err(|e| anyhow::anyhow!("listing PersistentVolumes: {e}"))?;
            handles.extend(list.items.iter().filter_map(|pv| {
                let csi = pv.spec.as_ref()?.csi.as_ref()?;
                if csi.driver != PLUGIN_NAME {
                    return None;
                }
                // A handle that is no uuid names no volume of ours, but is
                // kept as is: it protects nothing and costs nothing.
                Some(volume_uuid(&csi.volume_handle).unwrap_or_else(|| csi.volume_handle.clone()))
            }));
            match list.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(next) => params = params.continue_token(&next),
                None => return Ok(handles),
            }
        }
    }

    /// The uids of every PVC (a volume named `pvc-<uid>` belongs to it).
    async fn pvc_uids(&self) -> anyhow::Result<HashSet<String>> {
        let mut uids = HashSet::new();
        let mut params = ListParams::default().limit(PAGE);
        loop {
            let list = self
                .pvcs
                .list_metadata(&params)
                .await
                .map_err(|e| anyhow::anyhow!("listing PersistentVolumeClaims: {e}"))?;
            uids.extend(
                list.items
                    .iter()
                    .filter_map(|pvc| pvc.metadata.uid.as_deref())
                    .map(str::to_ascii_lowercase),
            );
            match list.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(next) => params = params.continue_token(&next),
                None => return Ok(uids),
            }
        }
    }

    /// Deletes the volume through REST unless a CSI call holds it.
    async fn delete(&self, id: &str) {
        let Ok(_guard) = self.guards.take(id) else {
            tracing::info!(volume = %id, "a CSI call is in flight on the volume: left for the next round");
            return;
        };
        match self.rest.del_volume(id).await {
            Ok(()) => tracing::info!(volume = %id, "volume deleted by the PV garbage collector"),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(volume = %id, "deleting the volume: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus,
    };

    const ID: &str = "c4a1a9a2-6f4f-4b55-9d8a-2f6d4a0d2b11";

    fn pv(driver: &str, policy: &str, phase: &str) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.to_owned(),
                    volume_handle: ID.to_owned(),
                    ..Default::default()
                }),
                persistent_volume_reclaim_policy: Some(policy.to_owned()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_gone_pv_frees_its_volume_only_when_nothing_else_will() {
        let ours = |policy, phase| volume_of_gone_pv(&pv(PLUGIN_NAME, policy, phase));
        assert_eq!(ours("Retain", "Released").as_deref(), Some(ID));
        assert_eq!(ours("Retain", "Bound").as_deref(), Some(ID));
        assert_eq!(ours("Delete", "Bound").as_deref(), Some(ID));
        // The provisioner deletes a released Delete volume itself.
        assert_eq!(ours("Delete", "Released"), None);
        assert_eq!(ours("Retain", "Available"), None);
        assert_eq!(
            volume_of_gone_pv(&pv("other.csi.io", "Retain", "Released")),
            None
        );
        let mut bad = pv(PLUGIN_NAME, "Retain", "Released");
        if let Some(csi) = bad.spec.as_mut().and_then(|s| s.csi.as_mut()) {
            csi.volume_handle = "not-a-uuid".into();
        }
        assert_eq!(volume_of_gone_pv(&bad), None);
    }

    fn volume(id: &str, labels: Option<&[(&str, &str)]>) -> openapi::models::Volume {
        use openapi::models::*;
        let labels = labels.map(|l| {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        Volume {
            spec: VolumeSpec {
                uuid: id.to_owned(),
                size: 1 << 20,
                num_replicas: 1,
                status: SpecStatus::Created,
                target: None,
                policy: VolumePolicy::default(),
                topology: None,
                labels,
                thin: false,
                affinity_group: None,
            },
            state: VolumeState {
                uuid: id.to_owned(),
                size: 1 << 20,
                status: VolumeStatus::Online,
                target: None,
                replica_topology: Default::default(),
            },
        }
    }

    #[test]
    fn only_our_volumes_with_neither_pv_nor_pvc_are_orphans() {
        let ours = [CREATED_BY];
        let volumes = [
            volume("00000000-0000-0000-0000-000000000001", Some(&ours)),
            volume("00000000-0000-0000-0000-000000000002", Some(&ours)),
            volume("00000000-0000-0000-0000-000000000003", Some(&ours)),
            volume("00000000-0000-0000-0000-000000000004", None),
            volume(
                "00000000-0000-0000-0000-000000000005",
                Some(&[(CREATED_BY.0, "someone-else")]),
            ),
        ];
        let pvs = HashSet::from(["00000000-0000-0000-0000-000000000001".to_owned()]);
        let pvcs = HashSet::from(["00000000-0000-0000-0000-000000000002".to_owned()]);
        assert_eq!(
            orphans(&volumes, &pvs, &pvcs),
            HashSet::from(["00000000-0000-0000-0000-000000000003".to_owned()])
        );
    }
}
