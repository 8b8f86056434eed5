//! Kubernetes: the workloads of the Helm chart (`deploy/helm/mayastor`) in
//! one namespace, upgraded to the images tagged with the target version
//! (the version of this build: the plugin rolls out its own version).
//!
//! ```text
//!  agent-core ─► api-rest ─► agent-ha-cluster ─► operator-diskpool ─► csi-controller
//!  (Deployments: image patched, waited for until rolled out; core and REST
//!   then answer on the target version over REST)
//!  ─► csi-node, agent-ha-node (rolling-update DaemonSets, same)
//!  ─► io-engine DaemonSet (OnDelete): template patched, then per node, from
//!     the roll-out's state machine: pod deleted, replacement waited for
//!     until Ready on the new images
//! ```
//!
//! The workloads are patched in place (strategic merge of our containers'
//! `image`, optionally `imagePullPolicy`, and the `app.kubernetes.io/version`
//! label); the CSI sidecars, etcd and the Helm release record are left as
//! they are (see docs/upgrade.md). Workloads the release does not have
//! (HA off, operator off) are skipped. Every wait has its timeout (the
//! roll-out's `--control-plane-timeout` and `--node-timeout`) and shows on
//! the progress line. Each step is also written as an Event of the
//! namespace (the store's record stays the durable status; an Event that
//! cannot be written is not an error).
//!
//! [`workloads`] holds the pure half (images, patches, when a workload or
//! pod counts as rolled out); this file does the API calls. One task, the
//! caller's runtime.

pub mod workloads;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Resource;

use self::workloads::{
    daemonset_available, daemonset_rolled_out, deployment_available, deployment_rolled_out,
    pod_has_images, pod_problem, pod_ready, template_patch, wanted_images, ImageSettings, Kind,
    ENGINE_DAEMONSET, WORKLOADS,
};
use super::{ControlPlane, Platform};
use crate::progress::Progress;
use crate::rollout::wait_for;
use crate::{Result, UpgradeError};

/// The component name our Events are reported by.
pub const EVENT_SOURCE: &str = "mayastor-upgrade";

/// How long the platform's own waits may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A control-plane workload rolled out.
    pub control_plane: Duration,
    /// A replaced io-engine pod Ready.
    pub node: Duration,
}

/// The chart's release in `namespace`, upgraded to `target`.
pub struct KubernetesPlatform {
    client: kube::Client,
    namespace: String,
    target: String,
    images: ImageSettings,
    timeouts: Timeouts,
    /// The workloads the release has, in upgrade order.
    present: Vec<(ControlPlane, Kind, &'static str)>,
    /// Their available pods when the upgrade started (before the core
    /// agent's restart makes its dependents briefly unready).
    available_before: BTreeMap<&'static str, i32>,
    /// The io-engine DaemonSet's reference (for Events).
    engine_ref: ObjectReference,
    /// Its pods' label selector (`k=v,...`).
    engine_selector: String,
}

fn api_error(doing: String) -> impl FnOnce(kube::Error) -> UpgradeError {
    move |e| UpgradeError::Platform(format!("{doing}: {e}"))
}

impl KubernetesPlatform {
    /// Finds the release's workloads in `namespace`; refuses a namespace
    /// without the io-engine DaemonSet, or one whose update strategy is not
    /// OnDelete (patching it would restart every engine at once).
    pub async fn connect(
        client: kube::Client,
        namespace: &str,
        target: &str,
        images: ImageSettings,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
        let engine = daemonsets
            .get_opt(ENGINE_DAEMONSET)
            .await
            .map_err(api_error(format!(
                "cannot read DaemonSet {namespace}/{ENGINE_DAEMONSET}"
            )))?
            .ok_or_else(|| {
                UpgradeError::Input(format!(
                    "no DaemonSet {ENGINE_DAEMONSET} in namespace {namespace}: is the mayastor chart installed there? (use -n for another namespace)"
                ))
            })?;
        let spec = engine.spec.as_ref();
        let strategy = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "RollingUpdate".into());
        if strategy != "OnDelete" {
            return Err(UpgradeError::Input(format!(
                "DaemonSet {namespace}/{ENGINE_DAEMONSET} has update strategy {strategy}; the guided upgrade needs OnDelete (the chart's), so that engines restart one node at a time"
            )));
        }
        let engine_selector = spec
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                UpgradeError::Input(format!(
                    "DaemonSet {namespace}/{ENGINE_DAEMONSET} has no matchLabels selector"
                ))
            })?;
        let engine_ref = engine.object_ref(&());
        let mut present = Vec::new();
        let mut available_before = BTreeMap::new();
        for &(component, kind, name) in WORKLOADS {
            let available = match kind {
                Kind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
                    .get_opt(name)
                    .await
                    .map(|d| d.as_ref().map(deployment_available)),
                Kind::DaemonSet => daemonsets
                    .get_opt(name)
                    .await
                    .map(|d| d.as_ref().map(daemonset_available)),
            }
            .map_err(api_error(format!(
                "cannot read {kind:?} {namespace}/{name}"
            )))?;
            if let Some(available) = available {
                present.push((component, kind, name));
                available_before.insert(name, available);
            }
        }
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
            target: target.to_owned(),
            images,
            timeouts,
            present,
            available_before,
            engine_ref,
            engine_selector,
        })
    }

    /// The workload names found, in upgrade order (for messages and tests).
    pub fn workloads(&self) -> Vec<&'static str> {
        self.present.iter().map(|(_, _, name)| *name).collect()
    }

    /// Available pods of a workload before the upgrade: the more of the
    /// count at the start and `now`.
    fn before(&self, name: &str, now: i32) -> i32 {
        self.available_before
            .get(name)
            .copied()
            .unwrap_or(0)
            .max(now)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn daemonsets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Patches a pod template's images when they differ; returns the
    /// images our containers should run.
    fn plan(
        &self,
        template: &PodTemplateSpec,
    ) -> (BTreeMap<String, String>, Option<serde_json::Value>) {
        let containers = template
            .spec
            .as_ref()
            .map_or(&[][..], |s| &s.containers[..]);
        let wanted = wanted_images(containers, &self.target, &self.images);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        let patch = template_patch(containers, labels, &wanted, &self.target, &self.images);
        (wanted, patch)
    }

    async fn upgrade_deployment(&self, name: &str, progress: &Progress) -> Result<()> {
        let what = format!("Deployment {}/{name}", self.namespace);
        let api = self.deployments();
        let current = api
            .get(name)
            .await
            .map_err(api_error(format!("cannot read {what}")))?;
        let before = self.before(name, deployment_available(&current));
        let template = current.spec.as_ref().map(|s| &s.template);
        let (wanted, patch) = template.map(|t| self.plan(t)).unwrap_or_default();
        if wanted.is_empty() {
            return Err(UpgradeError::Platform(format!(
                "{what} runs none of our images"
            )));
        }
        if let Some(patch) = patch {
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map_err(api_error(format!("cannot patch {what}")))?;
            progress.line(format!("  {what}: {}", describe(&wanted)));
        }
        let done = wait_for(
            progress,
            &format!("control plane: rolling out {what}"),
            self.timeouts.control_plane,
            || async {
                let d = api.get(name).await.map_err(|e| e.to_string())?;
                deployment_rolled_out(&d, before).map(|()| Some(d))
            },
        )
        .await?;
        if deployment_available(&done) < before.max(1) {
            progress.line(format!(
                "  {what}: updated, not waited for to be available (it had {before} available pod(s) before the upgrade)"
            ));
        }
        Ok(())
    }

    async fn upgrade_daemonset(&self, name: &str, progress: &Progress) -> Result<()> {
        let what = format!("DaemonSet {}/{name}", self.namespace);
        let api = self.daemonsets();
        let current = api
            .get(name)
            .await
            .map_err(api_error(format!("cannot read {what}")))?;
        let before = self.before(name, daemonset_available(&current));
        let template = current.spec.as_ref().map(|s| &s.template);
        let (wanted, patch) = template.map(|t| self.plan(t)).unwrap_or_default();
        if let Some(patch) = patch {
            api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .map_err(api_error(format!("cannot patch {what}")))?;
            progress.line(format!("  {what}: {}", describe(&wanted)));
        }
        wait_for(
            progress,
            &format!("control plane: rolling out {what}"),
            self.timeouts.control_plane,
            || async {
                let d = api.get(name).await.map_err(|e| e.to_string())?;
                daemonset_rolled_out(&d, before).map(|()| Some(()))
            },
        )
        .await
    }

    /// Gives the io-engine DaemonSet's template the new images (OnDelete:
    /// no pod restarts from this); returns our containers' images.
    async fn engine_template(&self, progress: &Progress) -> Result<BTreeMap<String, String>> {
        let what = format!("DaemonSet {}/{ENGINE_DAEMONSET}", self.namespace);
        let api = self.daemonsets();
        let current = api
            .get(ENGINE_DAEMONSET)
            .await
            .map_err(api_error(format!("cannot read {what}")))?;
        let template = current.spec.as_ref().map(|s| &s.template);
        let (wanted, patch) = template.map(|t| self.plan(t)).unwrap_or_default();
        if !wanted.contains_key(ENGINE_DAEMONSET) {
            return Err(UpgradeError::Platform(format!(
                "{what} has no io-engine container of our image"
            )));
        }
        if let Some(patch) = patch {
            api.patch(
                ENGINE_DAEMONSET,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .map_err(api_error(format!("cannot patch {what}")))?;
            progress.line(format!(
                "  {what} (OnDelete): {}; pods are replaced node by node",
                describe(&wanted)
            ));
        }
        Ok(wanted)
    }

    async fn engine_pods(&self, node: &str) -> std::result::Result<Vec<Pod>, String> {
        let params = ListParams::default()
            .labels(&self.engine_selector)
            .fields(&format!("spec.nodeName={node}"));
        self.pods()
            .list(&params)
            .await
            .map(|l| l.items)
            .map_err(|e| format!("cannot list the io-engine pods of {node}: {e}"))
    }

    async fn event(&self, involved: ObjectReference, reason: &str, message: &str) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let warning = reason.contains("Failed");
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{EVENT_SOURCE}.")),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(EventSource {
                component: Some(EVENT_SOURCE.to_owned()),
                host: None,
            }),
            reporting_component: Some(EVENT_SOURCE.to_owned()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        // The store's record is the durable status; an Event is a courtesy.
        let _ = events.create(&PostParams::default(), &event).await;
    }
}

/// `container=image, ...` for messages.
fn describe(images: &BTreeMap<String, String>) -> String {
    images
        .iter()
        .map(|(c, i)| format!("{c}={i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Platform for KubernetesPlatform {
    fn describe(&self) -> String {
        format!(
            "Kubernetes namespace {}, images tagged {}",
            self.namespace, self.target
        )
    }

    async fn target_version(&self) -> Result<String> {
        Ok(self.target.clone())
    }

    fn control_plane(&self) -> Vec<ControlPlane> {
        self.present.iter().map(|(c, _, _)| *c).collect()
    }

    async fn upgrade_control_plane(
        &self,
        component: ControlPlane,
        progress: &Progress,
    ) -> Result<()> {
        let Some(&(_, kind, name)) = self.present.iter().find(|(c, _, _)| *c == component) else {
            return Err(UpgradeError::Platform(format!(
                "the release in namespace {} runs no {}",
                self.namespace,
                component.name()
            )));
        };
        match kind {
            Kind::Deployment => self.upgrade_deployment(name, progress).await,
            Kind::DaemonSet => self.upgrade_daemonset(name, progress).await,
        }
    }

    async fn restart_engine(&self, node: &str, progress: &Progress) -> Result<()> {
        let wanted = self.engine_template(progress).await?;
        let pods = self
            .engine_pods(node)
            .await
            .map_err(UpgradeError::Platform)?;
        // Pods on the old images are deleted; a pod already on the new ones
        // (a resumed step) is only waited for.
        let stale: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !pod_has_images(p, &wanted))
            .collect();
        let old: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() || !pod_has_images(p, &wanted))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        for pod in &stale {
            let name = pod.metadata.name.clone().unwrap_or_default();
            self.pods()
                .delete(&name, &DeleteParams::default())
                .await
                .map_err(api_error(format!(
                    "cannot delete io-engine pod {}/{name}",
                    self.namespace
                )))?;
            progress.line(format!(
                "  node {node}: io-engine pod {name} deleted (uid {})",
                pod.metadata.uid.as_deref().unwrap_or("?")
            ));
            self.event(
                pod.object_ref(&()),
                "EnginePodDeleted",
                &format!(
                    "upgrade to {}: io-engine pod {name} of node {node} deleted",
                    self.target
                ),
            )
            .await;
        }
        let ready = wait_for(
            progress,
            &format!("node {node}: waiting for the new io-engine pod to be Ready"),
            self.timeouts.node,
            || async {
                let pods = self.engine_pods(node).await?;
                let new = pods.into_iter().find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && !p.metadata.uid.as_ref().is_some_and(|u| old.contains(u))
                });
                match new {
                    None => Err(format!("no new io-engine pod on {node} yet")),
                    Some(p) if !pod_has_images(&p, &wanted) => Err(format!(
                        "pod {} does not run the new images",
                        p.metadata.name.as_deref().unwrap_or("?")
                    )),
                    Some(p) if pod_ready(&p) => Ok(Some(p)),
                    Some(p) => Err(format!(
                        "pod {} {}",
                        p.metadata.name.as_deref().unwrap_or("?"),
                        pod_problem(&p)
                    )),
                }
            },
        )
        .await?;
        let name = ready.metadata.name.clone().unwrap_or_default();
        progress.line(format!(
            "  node {node}: io-engine pod {name} Ready on {}",
            self.target
        ));
        self.event(
            ready.object_ref(&()),
            "EnginePodReady",
            &format!(
                "upgrade to {}: io-engine pod {name} of node {node} Ready",
                self.target
            ),
        )
        .await;
        Ok(())
    }

    async fn record_event(&self, reason: &str, message: &str) {
        self.event(self.engine_ref.clone(), reason, message).await;
    }
}
