//! Container logs through the API server (`GET
//! /api/v1/namespaces/<ns>/pods/<pod>/log?container=<c>[&previous=true]&sinceSeconds=<s>`):
//! the current log of every container (init containers too) of every pod
//! of the namespace, and the previous one of each container that
//! restarted.
//!
//! Each log is one collector, `logs/pod/<ns>/<pod>/<container>` (and
//! `.../previous`), written to `logs/<group>/<node>-<pod>-<container>.log`
//! (`-previous.log`); the group is [`crate::log_group`] of the container.
//! A log is streamed to an anonymous spool file, then the newest
//! `--max-log-bytes` of it into the archive (through the redactor): memory
//! holds one read buffer. `--since` is the API's `sinceSeconds`. A pod
//! that cannot give a log (Pending, gone, container not started) is a
//! failed collector whose error says why (the pod's phase and its
//! conditions' reasons); the other pods go on.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::Api;

use super::Kube;
use crate::bundle::Bundle;
use crate::logcut::Cut;
use crate::manifest::FileRecord;
use crate::topology::Selection;
use crate::DumpOptions;

/// One container log to fetch.
struct LogSource {
    pod: String,
    node: String,
    container: String,
    previous: bool,
    /// Whether the container ever ran (else it has no log to give).
    started: bool,
}

impl LogSource {
    fn collector(&self, namespace: &str) -> String {
        let base = format!("logs/pod/{namespace}/{}/{}", self.pod, self.container);
        if self.previous {
            base + "/previous"
        } else {
            base
        }
    }

    fn archive_path(&self) -> String {
        format!(
            "logs/{}/{}-{}-{}{}.log",
            crate::log_group(&self.container),
            self.node,
            self.pod,
            self.container,
            if self.previous { "-previous" } else { "" }
        )
    }
}

/// Why a pod may not give logs: its phase and the reasons of its false
/// conditions and waiting containers.
fn pod_state(pod: &Pod) -> String {
    let Some(status) = &pod.status else {
        return "no status".into();
    };
    let mut notes = Vec::new();
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            let mut note = c.type_.clone();
            if let Some(reason) = &c.reason {
                note.push_str(&format!(": {reason}"));
            }
            if let Some(message) = &c.message {
                note.push_str(&format!(": {}", message.trim()));
            }
            notes.push(note);
        }
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            notes.push(format!(
                "container {} waiting: {}",
                cs.name,
                waiting.reason.as_deref().unwrap_or("unknown reason")
            ));
        }
    }
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if notes.is_empty() {
        phase.to_string()
    } else {
        format!("{phase} ({})", notes.join("; "))
    }
}

/// The logs one pod has: every container's current log, and the previous
/// one of containers that restarted.
fn sources_of(pod: &Pod) -> Vec<LogSource> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let node = spec
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "unscheduled".into());
    let status = pod.status.as_ref();
    let statuses: Vec<_> = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect();
    let init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.clone());
    let main = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone());
    let mut out = Vec::new();
    for container in init.chain(main) {
        let status = statuses.iter().find(|s| s.name == container);
        let restarted = status.is_some_and(|s| s.restart_count > 0);
        let started = status.is_some_and(|s| {
            let ran = |st: Option<&k8s_openapi::api::core::v1::ContainerState>| {
                st.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
            };
            ran(s.state.as_ref()) || ran(s.last_state.as_ref())
        });
        out.push(LogSource {
            pod: name.clone(),
            node: node.clone(),
            container: container.clone(),
            previous: false,
            started,
        });
        if restarted {
            out.push(LogSource {
                pod: name.clone(),
                node: node.clone(),
                container,
                previous: true,
                started: true,
            });
        }
    }
    out
}

/// Collects every pod's logs; returns the container names seen (for Loki).
pub(crate) async fn collect(
    bundle: &mut Bundle<'_>,
    kube: &Kube,
    opts: &DumpOptions,
    selection: &Selection,
) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let pods = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            let t = bundle.begin("logs/pod");
            bundle.end(
                "logs/pod",
                &kube.server,
                t,
                Err(format!(
                    "cannot list the pods of namespace {}: {e}",
                    kube.namespace
                )),
            );
            return Vec::new();
        }
    };
    let since_seconds = i64::try_from(opts.since.as_secs().max(1)).unwrap_or(i64::MAX);
    let mut containers = BTreeSet::new();
    let wanted = pods
        .iter()
        .flat_map(sources_of)
        .filter(|s| selection.everything || selection.nodes.contains(&s.node))
        .count();
    bundle.plan_more(wanted);
    for pod in &pods {
        let sources = sources_of(pod);
        for source in sources {
            containers.insert(source.container.clone());
            // A per-resource dump keeps the pods of the concerned nodes.
            if !selection.everything && !selection.nodes.contains(&source.node) {
                continue;
            }
            let name = source.collector(&kube.namespace);
            let t = bundle.begin(&name);
            let result = if source.started {
                fetch(bundle, &api, &source, since_seconds, opts.max_log_bytes).await
            } else {
                // The API server may answer an empty log for a container
                // that never ran: say why instead.
                Err(format!(
                    "container {} has no log: it has not started",
                    source.container
                ))
            };
            let result =
                result.map_err(|e| format!("{e}; pod {} is {}", source.pod, pod_state(pod)));
            bundle.end(&name, &kube.server, t, result);
        }
    }
    containers.into_iter().collect()
}

/// One log: API stream -> spool file -> newest `max_bytes` into the
/// archive.
async fn fetch(
    bundle: &mut Bundle<'_>,
    api: &Api<Pod>,
    source: &LogSource,
    since_seconds: i64,
    max_bytes: u64,
) -> Result<Vec<FileRecord>, String> {
    let params = LogParams {
        container: Some(source.container.clone()),
        previous: source.previous,
        since_seconds: Some(since_seconds),
        ..LogParams::default()
    };
    let what = if source.previous {
        "previous log"
    } else {
        "log"
    };
    let mut stream = api.log_stream(&source.pod, &params).await.map_err(|e| {
        format!(
            "cannot read the {what} of container {}: {e}",
            source.container
        )
    })?;
    let spool = tempfile::NamedTempFile::new().map_err(|e| format!("spool file: {e}"))?;
    {
        let mut writer = BufWriter::with_capacity(256 << 10, spool.as_file());
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| {
                format!(
                    "reading the {what} of container {} broke off: {e}",
                    source.container
                )
            })?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| format!("spool file: {e}"))?;
        }
        writer.flush().map_err(|e| format!("spool file: {e}"))?;
    }
    let path = source.archive_path();
    Ok(vec![bundle.log_file(
        &path,
        spool.path(),
        Cut::newest(max_bytes),
    )?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodSpec, PodStatus};

    fn pod(restarts: i32) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web-0".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![
                    Container {
                        name: "io-engine".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "side".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "side".into(),
                    restart_count: restarts,
                    state: Some(k8s_openapi::api::core::v1::ContainerState {
                        running: Some(Default::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn previous_logs_only_after_a_restart() {
        let paths: Vec<String> = sources_of(&pod(0))
            .iter()
            .map(|s| s.archive_path())
            .collect();
        assert_eq!(
            paths,
            [
                "logs/mayastor/node-a-web-0-io-engine.log",
                "logs/other/node-a-web-0-side.log"
            ]
        );
        let sources = sources_of(&pod(2));
        assert_eq!(sources.len(), 3);
        // io-engine has no status: never started.
        assert!(!sources[0].started && sources[1].started && sources[2].started);
        assert_eq!(
            sources[2].archive_path(),
            "logs/other/node-a-web-0-side-previous.log"
        );
        assert_eq!(
            sources[2].collector("mayastor"),
            "logs/pod/mayastor/web-0/side/previous"
        );
    }
}
