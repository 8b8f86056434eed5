//! The release's Kubernetes objects as YAML, one collector per kind:
//!
//! | kind | scope | file |
//! |---|---|---|
//! | DaemonSet, Deployment, StatefulSet | namespace | `k8s_resources/configurations/<name>.yaml` (one object) |
//! | DiskPool (`openebs.io/v1beta2`) | namespace | `k8s_resources/configurations/k8s_diskPools.yaml` |
//! | StorageClass of [`PROVISIONER`] | cluster | `k8s_resources/configurations/k8s_storageClasses.yaml` |
//! | PersistentVolume of those | cluster | `k8s_resources/configurations/k8s_persistentVolumes.yaml` |
//! | PersistentVolumeClaim of those | all namespaces | `k8s_resources/configurations/k8s_persistentVolumeClaims.yaml` |
//! | Node | cluster | `k8s_resources/configurations/k8s_nodes.yaml` |
//! | Pod | namespace | `k8s_resources/pods.yaml` |
//! | Event | namespace | `k8s_resources/k8s_events.yaml` and `k8s_events.json` (oldest first) |
//!
//! Several objects go into one `kind: List` document, as `kubectl get -o
//! yaml` writes them, so `kubectl apply -f` or any YAML reader takes them
//! back. `metadata.managedFields` is left out (bookkeeping of the API
//! server). A missing DiskPool CRD is recorded as skipped, not failed.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::Api;
use serde_json::{json, Value};

use super::{Kube, PROVISIONER};
use crate::bundle::Bundle;
use crate::manifest::FileRecord;

/// Where the objects' files go.
const CONFIGURATIONS: &str = "k8s_resources/configurations";

/// The DiskPool custom resource.
fn diskpool_resource() -> ApiResource {
    ApiResource {
        group: "openebs.io".into(),
        version: "v1beta2".into(),
        api_version: "openebs.io/v1beta2".into(),
        kind: "DiskPool".into(),
        plural: "diskpools".into(),
    }
}

/// An object as the bundle stores it: `apiVersion` and `kind` set, no
/// `managedFields`, credentials redacted.
fn value_of<T: serde::Serialize>(
    object: &T,
    api_version: &str,
    kind: &str,
) -> Result<Value, String> {
    let mut value = serde_json::to_value(object).map_err(|e| format!("{kind}: {e}"))?;
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| json!(api_version));
        map.entry("kind").or_insert_with(|| json!(kind));
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    Ok(value)
}

/// A `kind: List` of `items`.
fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}})
}

fn yaml(value: &Value) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| format!("cannot render YAML: {e}"))
}

/// Writes `value` (redacted) at `path`.
fn write_value(
    bundle: &mut Bundle<'_>,
    path: &str,
    mut value: Value,
) -> Result<FileRecord, String> {
    bundle.redactor.json(&mut value);
    let text = if path.ends_with(".json") {
        serde_json::to_string_pretty(&value).map_err(|e| e.to_string())? + "\n"
    } else {
        yaml(&value)?
    };
    bundle.text(path, &text)
}

fn name_of(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed")
}

/// File names must not climb out of their folder.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Lists a typed kind; its objects as values.
async fn list<K>(api: Api<K>, api_version: &str, kind: &str) -> Result<Vec<Value>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list {kind}s: {e}"))?;
    list.items
        .iter()
        .map(|o| value_of(o, api_version, kind))
        .collect()
}

/// How many collectors [`collect`] runs: three workloads, DiskPool,
/// StorageClass, PersistentVolume, PersistentVolumeClaim, Node, Pod, Event.
pub(crate) const COLLECTORS: usize = 10;

/// Runs every resource collector.
pub(crate) async fn collect(bundle: &mut Bundle<'_>, kube: &Kube) {
    let ns = kube.namespace.as_str();
    let client = &kube.client;
    let mut used: BTreeSet<String> = BTreeSet::new();

    // Workloads: one file each.
    let workloads = [
        ("DaemonSet", "apps/v1"),
        ("Deployment", "apps/v1"),
        ("StatefulSet", "apps/v1"),
    ];
    for (kind, api_version) in workloads {
        let name = format!("k8s/{kind}");
        let t = bundle.begin(&name);
        let listed = match kind {
            "DaemonSet" => {
                list(
                    Api::<DaemonSet>::namespaced(client.clone(), ns),
                    api_version,
                    kind,
                )
                .await
            }
            "Deployment" => {
                list(
                    Api::<Deployment>::namespaced(client.clone(), ns),
                    api_version,
                    kind,
                )
                .await
            }
            _ => {
                list(
                    Api::<StatefulSet>::namespaced(client.clone(), ns),
                    api_version,
                    kind,
                )
                .await
            }
        };
        let result = listed.and_then(|objects| {
            let mut files = Vec::new();
            for object in objects {
                let stem = safe(name_of(&object));
                let mut path = format!("{CONFIGURATIONS}/{stem}.yaml");
                if !used.insert(path.clone()) {
                    path = format!("{CONFIGURATIONS}/{stem}-{}.yaml", kind.to_ascii_lowercase());
                    used.insert(path.clone());
                }
                files.push(write_value(bundle, &path, object)?);
            }
            Ok(files)
        });
        bundle.end(&name, &kube.server, t, result);
    }

    // DiskPools: the CRD may be absent.
    let resource = diskpool_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let t = std::time::Instant::now();
    let listed = api.list(&ListParams::default()).await;
    match listed {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            bundle.skip(
                "k8s/DiskPool",
                "no DiskPool CRD (diskpools.openebs.io/v1beta2) in this cluster",
            );
        }
        Err(e) => {
            bundle.begin("k8s/DiskPool");
            bundle.end(
                "k8s/DiskPool",
                &kube.server,
                t,
                Err(format!("cannot list DiskPools: {e}")),
            );
        }
        Ok(list) => {
            bundle.begin("k8s/DiskPool");
            let result = list
                .items
                .iter()
                .map(|o| value_of(o, &resource.api_version, &resource.kind))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|items| {
                    let path = format!("{CONFIGURATIONS}/k8s_diskPools.yaml");
                    Ok(vec![write_value(bundle, &path, list_of(items))?])
                });
            bundle.end("k8s/DiskPool", &kube.server, t, result);
        }
    }

    // Storage of our provisioner, and the nodes.
    let t = bundle.begin("k8s/StorageClass");
    let classes = list(
        Api::<StorageClass>::all(client.clone()),
        "storage.k8s.io/v1",
        "StorageClass",
    )
    .await
    .map(|all| {
        all.into_iter()
            .filter(|sc| sc.get("provisioner").and_then(Value::as_str) == Some(PROVISIONER))
            .collect::<Vec<_>>()
    });
    let class_names: BTreeSet<String> = classes
        .as_ref()
        .map(|c| c.iter().map(|sc| name_of(sc).to_string()).collect())
        .unwrap_or_default();
    let result = classes.and_then(|items| {
        let path = format!("{CONFIGURATIONS}/k8s_storageClasses.yaml");
        Ok(vec![write_value(bundle, &path, list_of(items))?])
    });
    bundle.end("k8s/StorageClass", &kube.server, t, result);

    let t = bundle.begin("k8s/PersistentVolume");
    let volumes = list(
        Api::<PersistentVolume>::all(client.clone()),
        "v1",
        "PersistentVolume",
    )
    .await
    .map(|all| {
        all.into_iter()
            .filter(|pv| is_ours_pv(pv, &class_names))
            .collect::<Vec<_>>()
    });
    let volume_names: BTreeSet<String> = volumes
        .as_ref()
        .map(|v| v.iter().map(|pv| name_of(pv).to_string()).collect())
        .unwrap_or_default();
    let result = volumes.and_then(|items| {
        let path = format!("{CONFIGURATIONS}/k8s_persistentVolumes.yaml");
        Ok(vec![write_value(bundle, &path, list_of(items))?])
    });
    bundle.end("k8s/PersistentVolume", &kube.server, t, result);

    let t = bundle.begin("k8s/PersistentVolumeClaim");
    let result = list(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        "v1",
        "PersistentVolumeClaim",
    )
    .await
    .and_then(|all| {
        let items: Vec<Value> = all
            .into_iter()
            .filter(|pvc| is_ours_pvc(pvc, &class_names, &volume_names))
            .collect();
        let path = format!("{CONFIGURATIONS}/k8s_persistentVolumeClaims.yaml");
        Ok(vec![write_value(bundle, &path, list_of(items))?])
    });
    bundle.end("k8s/PersistentVolumeClaim", &kube.server, t, result);

    let t = bundle.begin("k8s/Node");
    let result = list(Api::<Node>::all(client.clone()), "v1", "Node")
        .await
        .and_then(|items| {
            let path = format!("{CONFIGURATIONS}/k8s_nodes.yaml");
            Ok(vec![write_value(bundle, &path, list_of(items))?])
        });
    bundle.end("k8s/Node", &kube.server, t, result);

    // Pods and events of the namespace.
    let t = bundle.begin("k8s/Pod");
    let result = list(Api::<Pod>::namespaced(client.clone(), ns), "v1", "Pod")
        .await
        .and_then(|items| {
            Ok(vec![write_value(
                bundle,
                "k8s_resources/pods.yaml",
                list_of(items),
            )?])
        });
    bundle.end("k8s/Pod", &kube.server, t, result);

    let t = bundle.begin("k8s/Event");
    let result = list(Api::<Event>::namespaced(client.clone(), ns), "v1", "Event")
        .await
        .and_then(|mut items| {
            items.sort_by_key(event_time);
            let list = list_of(items);
            Ok(vec![
                write_value(bundle, "k8s_resources/k8s_events.yaml", list.clone())?,
                write_value(bundle, "k8s_resources/k8s_events.json", list)?,
            ])
        });
    bundle.end("k8s/Event", &kube.server, t, result);
}

/// An event's time for ordering (RFC 3339 strings sort in time order).
fn event_time(event: &Value) -> String {
    [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str))
    .unwrap_or_default()
    .to_string()
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// A PV of our CSI driver, or provisioned by it, or of one of our classes.
fn is_ours_pv(pv: &Value, classes: &BTreeSet<String>) -> bool {
    pv.pointer("/spec/csi/driver").and_then(Value::as_str) == Some(PROVISIONER)
        || annotation(pv, "pv.kubernetes.io/provisioned-by") == Some(PROVISIONER)
        || pv
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .is_some_and(|c| classes.contains(c))
}

/// A PVC of one of our classes, asking our provisioner, or bound to one of
/// our PVs.
fn is_ours_pvc(pvc: &Value, classes: &BTreeSet<String>, volumes: &BTreeSet<String>) -> bool {
    pvc.pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .is_some_and(|c| classes.contains(c))
        || annotation(pvc, "volume.kubernetes.io/storage-provisioner") == Some(PROVISIONER)
        || annotation(pvc, "volume.beta.kubernetes.io/storage-provisioner") == Some(PROVISIONER)
        || pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .is_some_and(|v| volumes.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours() {
        let classes: BTreeSet<String> = ["ms".to_string()].into();
        let volumes: BTreeSet<String> = ["pv-1".to_string()].into();
        let csi = json!({"metadata": {"name": "a"}, "spec": {"csi": {"driver": PROVISIONER}}});
        let by_class = json!({"metadata": {"name": "b"}, "spec": {"storageClassName": "ms"}});
        let other = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "local"}});
        assert!(is_ours_pv(&csi, &classes));
        assert!(is_ours_pv(&by_class, &classes));
        assert!(!is_ours_pv(&other, &classes));
        let bound = json!({"metadata": {"name": "d"}, "spec": {"volumeName": "pv-1"}});
        assert!(is_ours_pvc(&bound, &classes, &volumes));
        assert!(is_ours_pvc(&by_class, &classes, &volumes));
        assert!(!is_ours_pvc(&other, &classes, &volumes));
    }

    #[test]
    fn values_lose_managed_fields_and_keep_their_kind() {
        let ds = DaemonSet {
            metadata: kube::api::ObjectMeta {
                name: Some("mayastor-io-engine".into()),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let v = value_of(&ds, "apps/v1", "DaemonSet").unwrap_or_default();
        assert_eq!(v["kind"], "DaemonSet");
        assert_eq!(v["apiVersion"], "apps/v1");
        assert!(v["metadata"].get("managedFields").is_none());
        assert_eq!(safe("../x/y"), "_x_y");
    }
}
