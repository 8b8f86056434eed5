//! The operator's main loop: a kube-rs runtime `Controller` over the
//! DiskPools of one namespace, running [`crate::reconcile`].
//!
//! The watch stream is filtered to changes of `metadata.generation` (the
//! spec) and of the deletion mark, so the operator's own status and
//! finalizer patches do not trigger it again: retries follow the error
//! policy's backoff and healthy resources the resync interval only.
//! A restart lists every DiskPool again and reconciles each (that is how
//! an interrupted operation converges).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    runtime::{
        events::{Recorder, Reporter},
        reflector,
        utils::PredicateConfig,
        watcher, Controller, WatchStreamExt,
    },
    Api, Resource,
};
use openapi::RestClient;
use tracing::{info, warn};

use crate::{
    crd::DiskPool,
    reconcile::{error_policy, reconcile, Context},
};

/// What the operator needs to run.
pub struct OperatorConfig {
    pub kube: kube::Client,
    pub rest: RestClient,
    /// Namespace whose DiskPools are managed.
    pub namespace: String,
    /// Resync period of each DiskPool.
    pub interval: Duration,
    /// `reportingInstance` of the events (the pod name in a cluster).
    pub instance: Option<String>,
}

/// The hash the watch stream is filtered on: the spec's generation and
/// whether the resource is being deleted.
fn spec_or_deletion(dp: &DiskPool) -> Option<u64> {
    let generation = dp.meta().generation.unwrap_or_default() as u64;
    let deleting = u64::from(dp.meta().deletion_timestamp.is_some());
    Some(generation.wrapping_mul(2).wrapping_add(deleting))
}

/// Runs until `shutdown` completes (in-flight reconciles finish first).
pub async fn run(
    config: OperatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DiskPool> = Api::namespaced(config.kube.clone(), &config.namespace);
    let recorder = Recorder::new(
        config.kube.clone(),
        Reporter {
            controller: "operator-diskpool".to_owned(),
            instance: config.instance.clone(),
        },
    );
    let ctx = Arc::new(Context::new(
        config.kube.clone(),
        config.rest.clone(),
        recorder,
        config.interval,
    ));
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_deletion, PredicateConfig::default());
    info!(
        namespace = %config.namespace,
        rest = %config.rest.base_url(),
        interval_ms = config.interval.as_millis() as u64,
        "watching DiskPools"
    );
    Controller::for_stream(stream, reader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => {
                    tracing::debug!(pool = %object.name, ?action, "reconciled")
                }
                // Reconcile errors are logged by the error policy; these
                // are the watch's own (API server unreachable, ...).
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => warn!("controller: {error}"),
            }
        })
        .await;
    info!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DiskPoolSpec;

    #[test]
    fn status_changes_do_not_pass_the_filter() {
        let mut dp = DiskPool::new(
            "p",
            DiskPoolSpec {
                node: "n".into(),
                disks: vec!["/dev/x".into()],
                topology: None,
            },
        );
        dp.metadata.generation = Some(1);
        let before = spec_or_deletion(&dp);
        dp.status = Some(Default::default());
        dp.metadata.finalizers = Some(vec!["x".into()]);
        assert_eq!(spec_or_deletion(&dp), before);
        dp.metadata.generation = Some(2);
        assert_ne!(spec_or_deletion(&dp), before);
        let spec_changed = spec_or_deletion(&dp);
        dp.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert_ne!(spec_or_deletion(&dp), spec_changed);
    }
}
