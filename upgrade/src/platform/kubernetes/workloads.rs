//! The pure half of the Kubernetes platform: which workloads of the chart
//! are upgraded and in which order, which of their containers are ours,
//! the image each one gets, the patch that sets it, and when a workload
//! or an io-engine pod counts as rolled out. No I/O here.
//!
//! Our containers are named after their component (the chart's
//! `<image.registry>/<image.repo>/<component>:<tag>` images); a container
//! of another name (the CSI sidecars) is never touched. The new image
//! keeps the registry and repository the workload runs from, unless
//! `--set image.registry=...` / `--set image.repo=...` say otherwise, and
//! its tag is the target version.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use crate::platform::ControlPlane;

/// The label the chart puts on every object and pod template with the
/// components' version; the upgrade sets it to the target version.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The io-engine DaemonSet (update strategy OnDelete).
pub const ENGINE_DAEMONSET: &str = "io-engine";

/// The containers that run our images (the rest are sidecars).
pub const OUR_CONTAINERS: &[&str] = &[
    "io-engine",
    "metrics-exporter",
    "agent-core",
    "api-rest",
    "operator-diskpool",
    "csi-controller",
    "csi-node",
    "agent-ha-cluster",
    "agent-ha-node",
];

/// Kind of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    DaemonSet,
}

/// The chart's workloads upgraded before the io-engines, in order: the
/// core agent first (as on a local cluster), then the REST API, then the
/// rest of the control plane and the node plugins. The store (etcd) is not
/// ours: it keeps its image.
pub const WORKLOADS: &[(ControlPlane, Kind, &str)] = &[
    (ControlPlane::Core, Kind::Deployment, "agent-core"),
    (ControlPlane::Rest, Kind::Deployment, "api-rest"),
    (
        ControlPlane::HaCluster,
        Kind::Deployment,
        "agent-ha-cluster",
    ),
    (
        ControlPlane::DiskPoolOperator,
        Kind::Deployment,
        "operator-diskpool",
    ),
    (
        ControlPlane::CsiController,
        Kind::Deployment,
        "csi-controller",
    ),
    (ControlPlane::CsiNode, Kind::DaemonSet, "csi-node"),
    (ControlPlane::HaNode, Kind::DaemonSet, "agent-ha-node"),
];

/// How the images are named, from `--set image.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// `image.registry`: replaces the registry of the running images.
    pub registry: Option<String>,
    /// `image.repo`: replaces the path between registry and component.
    pub repo: Option<String>,
    /// `image.pullPolicy` of our containers.
    pub pull_policy: Option<String>,
}

impl ImageSettings {
    /// Reads `--set` and `--set-file` for the Kubernetes upgrade, which
    /// changes images only: `image.registry`, `image.repo`,
    /// `image.pullPolicy`, and `image.tag` when it equals `target` (the
    /// tag is always the target version). Anything else is refused in one
    /// line naming the key.
    pub fn from_values(set: &[String], set_file: &[String], target: &str) -> Result<Self, String> {
        const KEYS: &str = "image.registry, image.repo, image.tag, image.pullPolicy";
        if let Some(item) = set_file.first() {
            return Err(format!(
                "--set-file {item}: the Kubernetes upgrade sets images only ({KEYS}), none of which is read from a file; change other chart values with helm upgrade"
            ));
        }
        let mut out = Self::default();
        for item in set {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!("--set {item:?}: expected key=value"));
            };
            let (key, value) = (key.trim(), value.trim());
            let valid_name = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_/:".contains(&b));
            match key {
                "image.registry" | "image.repo" if !valid_name => {
                    return Err(format!("--set {item}: not a valid {key}"));
                }
                "image.registry" => out.registry = Some(value.trim_matches('/').to_owned()),
                "image.repo" => out.repo = Some(value.trim_matches('/').to_owned()),
                "image.pullPolicy" => match value {
                    "Always" | "IfNotPresent" | "Never" => out.pull_policy = Some(value.to_owned()),
                    _ => {
                        return Err(format!(
                            "--set {item}: image.pullPolicy is Always, IfNotPresent or Never"
                        ))
                    }
                },
                "image.tag" if value == target => {}
                "image.tag" => {
                    return Err(format!(
                        "--set {item}: the images' tag is the target version {target} (the version of this plugin); install the plugin of version {value} to upgrade to it"
                    ))
                }
                _ => {
                    return Err(format!(
                        "--set {item}: the Kubernetes upgrade sets images only ({KEYS}); change other chart values with helm upgrade"
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// The image `component` should run, from the image it runs now: the
/// same registry and repository (or the ones of `settings`), tag `target`.
/// `None` when `current` is not `<...>/<component>[:tag][@digest]`.
pub fn new_image(
    current: &str,
    component: &str,
    target: &str,
    settings: &ImageSettings,
) -> Option<String> {
    let without_digest = current.split('@').next().unwrap_or(current);
    let last_slash = without_digest.rfind('/')?;
    let (prefix, name) = (
        &without_digest[..last_slash],
        &without_digest[last_slash + 1..],
    );
    let name = name.split(':').next().unwrap_or(name);
    if name != component {
        return None;
    }
    let (registry, repo) = match prefix.split_once('/') {
        Some((registry, repo)) => (registry, repo),
        None => (prefix, ""),
    };
    let registry = settings.registry.as_deref().unwrap_or(registry);
    let repo = settings.repo.as_deref().unwrap_or(repo);
    Some(if repo.is_empty() {
        format!("{registry}/{component}:{target}")
    } else {
        format!("{registry}/{repo}/{component}:{target}")
    })
}

/// Our containers of a pod template and the image each should run.
pub fn wanted_images(
    containers: &[Container],
    target: &str,
    settings: &ImageSettings,
) -> BTreeMap<String, String> {
    containers
        .iter()
        .filter(|c| OUR_CONTAINERS.contains(&c.name.as_str()))
        .filter_map(|c| {
            let current = c.image.as_deref()?;
            Some((
                c.name.clone(),
                new_image(current, &c.name, target, settings)?,
            ))
        })
        .collect()
}

/// The strategic merge patch that gives a workload's pod template the
/// `wanted` images (and pull policy) and the version label; `None` when it
/// already has them.
pub fn template_patch(
    containers: &[Container],
    template_labels: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<String, String>,
    target: &str,
    settings: &ImageSettings,
) -> Option<Value> {
    let changed: Vec<Value> = containers
        .iter()
        .filter_map(|c| {
            let image = wanted.get(&c.name)?;
            let policy = settings.pull_policy.as_deref();
            let same_policy = policy.is_none() || c.image_pull_policy.as_deref() == policy;
            if c.image.as_deref() == Some(image.as_str()) && same_policy {
                return None;
            }
            let mut entry = json!({ "name": c.name, "image": image });
            if let Some(p) = policy {
                entry["imagePullPolicy"] = json!(p);
            }
            Some(entry)
        })
        .collect();
    let labelled = template_labels
        .and_then(|l| l.get(VERSION_LABEL))
        .is_some_and(|v| v == target);
    if changed.is_empty() && labelled {
        return None;
    }
    let labels = json!({ VERSION_LABEL: target });
    let mut patch = json!({
        "metadata": { "labels": labels },
        "spec": { "template": { "metadata": { "labels": labels } } },
    });
    if !changed.is_empty() {
        patch["spec"]["template"]["spec"] = json!({ "containers": changed });
    }
    Some(patch)
}

/// Pods a workload had available before its patch; the roll-out waits for
/// at least as many (never for more than it had: a component that could
/// not run before, e.g. for want of an image, is not waited for).
pub fn deployment_available(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn daemonset_available(d: &DaemonSet) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.number_available)
        .unwrap_or(0)
}

/// `Ok` once a patched Deployment has rolled out: the controller saw the
/// change, every desired pod is of the new template, and (when it was
/// fully available before) the old pods are gone and the new ones
/// available; else what it still waits for.
pub fn deployment_rolled_out(d: &Deployment, available_before: i32) -> Result<(), String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return Err("no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < generation {
        return Err("the change is not seen by the controller yet".into());
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < desired {
        return Err(format!("{updated} of {desired} pod(s) on the new image"));
    }
    if available_before >= desired && (total > updated || available < desired) {
        return Err(format!(
            "{available} of {desired} pod(s) available, {} old pod(s) left",
            total - updated
        ));
    }
    Ok(())
}

/// As [`deployment_rolled_out`], for a rolling-update DaemonSet.
pub fn daemonset_rolled_out(d: &DaemonSet, available_before: i32) -> Result<(), String> {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(st) = d.status.as_ref() else {
        return Err("no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < generation {
        return Err("the change is not seen by the controller yet".into());
    }
    let desired = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let available = st.number_available.unwrap_or(0);
    if updated < desired {
        return Err(format!("{updated} of {desired} pod(s) on the new image"));
    }
    if available < available_before.min(desired) {
        return Err(format!("{available} of {desired} pod(s) available"));
    }
    Ok(())
}

/// Whether a pod is Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether every container named in `wanted` runs its wanted image.
pub fn pod_has_images(pod: &Pod, wanted: &BTreeMap<String, String>) -> bool {
    let containers = pod.spec.as_ref().map_or(&[][..], |s| &s.containers[..]);
    wanted.iter().all(|(name, image)| {
        containers
            .iter()
            .any(|c| c.name == *name && c.image.as_deref() == Some(image.as_str()))
    })
}

/// What a pod that is not Ready waits for: its phase and each waiting or
/// failing container's reason (`ErrImageNeverPull`, `CrashLoopBackOff`).
pub fn pod_problem(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let reasons: Vec<String> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let state = c.state.as_ref()?;
            let why = match (&state.waiting, &state.terminated) {
                (Some(w), _) => w.reason.clone().unwrap_or_else(|| "waiting".into()),
                (None, Some(t)) => t
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("exited {}", t.exit_code)),
                _ if !c.ready => "not ready".into(),
                _ => return None,
            };
            Some(format!("{} {why}", c.name))
        })
        .collect();
    if reasons.is_empty() {
        phase.to_owned()
    } else {
        format!("{phase}: {}", reasons.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    #[test]
    fn images_keep_their_registry_and_take_the_target_tag() {
        let none = ImageSettings::default();
        assert_eq!(
            new_image(
                "localhost/mayastor/agent-core:0.1.0",
                "agent-core",
                "0.2.0",
                &none
            )
            .as_deref(),
            Some("localhost/mayastor/agent-core:0.2.0")
        );
        assert_eq!(
            new_image(
                "reg:5000/a/b/io-engine@sha256:00",
                "io-engine",
                "1.0.0",
                &none
            )
            .as_deref(),
            Some("reg:5000/a/b/io-engine:1.0.0")
        );
        let moved = ImageSettings {
            registry: Some("quay.io".into()),
            repo: Some("openebs".into()),
            pull_policy: None,
        };
        assert_eq!(
            new_image(
                "localhost/mayastor/api-rest:0.1.0",
                "api-rest",
                "0.2.0",
                &moved
            )
            .as_deref(),
            Some("quay.io/openebs/api-rest:0.2.0")
        );
        // Not ours: another name, or no registry path at all.
        assert_eq!(
            new_image("localhost/x/csi-provisioner:v5", "api-rest", "0.2.0", &none),
            None
        );
        assert_eq!(
            new_image("api-rest:0.1.0", "api-rest", "0.2.0", &none),
            None
        );
    }

    #[test]
    fn only_our_containers_are_patched() {
        let containers = vec![
            container("csi-provisioner", "localhost/csi/csi-provisioner:v5.3.0"),
            container("csi-controller", "localhost/mayastor/csi-controller:0.1.0"),
        ];
        let none = ImageSettings::default();
        let wanted = wanted_images(&containers, "0.2.0", &none);
        assert_eq!(wanted.len(), 1);
        let patch = template_patch(&containers, None, &wanted, "0.2.0", &none).expect("a change");
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "csi-controller", "image": "localhost/mayastor/csi-controller:0.2.0" }])
        );
        assert_eq!(
            patch["spec"]["template"]["metadata"]["labels"][VERSION_LABEL],
            "0.2.0"
        );
        // Already done: no patch.
        let done = vec![container(
            "csi-controller",
            "localhost/mayastor/csi-controller:0.2.0",
        )];
        let labels = BTreeMap::from([(VERSION_LABEL.to_owned(), "0.2.0".to_owned())]);
        assert_eq!(
            template_patch(&done, Some(&labels), &wanted, "0.2.0", &none),
            None
        );
    }

    #[test]
    fn values_are_images_only() {
        let ok = ImageSettings::from_values(
            &[
                "image.registry=quay.io".into(),
                "image.pullPolicy=Never".into(),
                "image.tag=0.2.0".into(),
            ],
            &[],
            "0.2.0",
        )
        .expect("image keys");
        assert_eq!(ok.registry.as_deref(), Some("quay.io"));
        assert_eq!(ok.pull_policy.as_deref(), Some("Never"));
        for (set, file) in [
            (vec!["io_engine.logLevel=debug"], vec![]),
            (vec!["image.tag=0.3.0"], vec![]),
            (vec!["image.pullPolicy=Sometimes"], vec![]),
            (vec!["image.registry=has space"], vec![]),
            (vec![], vec!["x=/etc/hostname"]),
        ] {
            let set: Vec<String> = set.into_iter().map(String::from).collect();
            let file: Vec<String> = file.into_iter().map(String::from).collect();
            let err = ImageSettings::from_values(&set, &file, "0.2.0").expect_err("refused");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn deployment_roll_out() {
        let dep = |generation, observed, updated, total, available| Deployment {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                replicas: Some(total),
                available_replicas: Some(available),
                ..Default::default()
            }),
        };
        assert!(deployment_rolled_out(&dep(2, 1, 1, 1, 1), 1).is_err());
        assert!(deployment_rolled_out(&dep(2, 2, 0, 1, 1), 1).is_err());
        assert!(deployment_rolled_out(&dep(2, 2, 1, 2, 1), 1).is_err());
        assert!(deployment_rolled_out(&dep(2, 2, 1, 1, 0), 1).is_err());
        assert_eq!(deployment_rolled_out(&dep(2, 2, 1, 1, 1), 1), Ok(()));
        // Not available before (an image missing): the new pod existing is enough.
        assert_eq!(deployment_rolled_out(&dep(2, 2, 1, 1, 0), 0), Ok(()));
    }
}
