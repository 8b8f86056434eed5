//! `upgrade`, `get upgrade-status` and `delete upgrade`: the plugin's side
//! of the guided upgrade (the roll-out itself is the `upgrade` crate).
//!
//! The platform follows from where the REST endpoint was found: a local
//! cluster's endpoint file names its state directory, and the new binaries
//! come from `--bin-dir` (default: this plugin's own directory). An
//! endpoint found through the kubeconfig (or given with `--rest`) means
//! the Helm chart's release in the namespace (`-n`): its workloads are
//! upgraded to the images tagged with this plugin's version
//! (`upgrade::platform::kubernetes`). There the REST API is reached at the
//! `api-rest` Service's cluster IP, which outlives the api-rest pod the
//! upgrade replaces.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use k8s_openapi::api::core::v1::Service;
use openapi::models::UpgradeStatus;
use openapi::{CoreApi, ErrorKind};
use openapi::{RestClient, RestClientOptions};
use upgrade::cli::UpgradeArgs;
use upgrade::platform::kubernetes::{workloads::ImageSettings, KubernetesPlatform, Timeouts};
use upgrade::platform::local::LocalPlatform;
use upgrade::platform::Platform;
use upgrade::progress::Progress;

use crate::cli::GlobalArgs;
use crate::discovery::{self, Endpoint, Source};
use crate::ops::Outcome;
use crate::table::{Table, NONE};

fn outcome(text: String, objects: &impl serde::Serialize) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        text,
        json: serde_json::to_string_pretty(objects)? + "\n",
        yaml: serde_yaml::to_string(objects)?,
    })
}

fn or_none(value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty())
        .map_or_else(|| NONE.to_string(), str::to_string)
}

/// The record as two tables: the upgrade, then its nodes.
pub fn status_tables(status: &UpgradeStatus) -> String {
    let mut head = Table::new(&[
        "FROM", "TO", "STAGE", "NODES", "STARTED", "FINISHED", "REASON",
    ]);
    head.push(vec![
        status.from_version.clone(),
        status.to_version.clone(),
        status.stage.to_string(),
        format!("{}/{}", status.upgraded_nodes(), status.nodes.len()),
        status.started_at.clone(),
        or_none(status.finished_at.as_deref()),
        or_none(status.reason.as_deref()),
    ]);
    let mut text = head.render();
    if !status.nodes.is_empty() {
        let mut nodes = Table::new(&["NODE", "STATE", "FROM", "STARTED", "FINISHED", "DURATION"]);
        for n in &status.nodes {
            let took = match (&n.started_at, &n.finished_at) {
                (Some(s), Some(f)) => upgrade::status::duration(s, f),
                _ => None,
            };
            nodes.push(vec![
                n.node.clone(),
                n.state.to_string(),
                or_none(Some(&n.from_version)),
                or_none(n.started_at.as_deref()),
                or_none(n.finished_at.as_deref()),
                or_none(took.as_deref()),
            ]);
        }
        text.push('\n');
        text.push_str(&nodes.render());
    }
    text
}

/// `get upgrade-status`.
pub async fn get_status(api: &dyn CoreApi) -> anyhow::Result<Outcome> {
    match api.get_upgrade_status().await {
        Ok(status) => outcome(status_tables(&status), &status),
        Err(e) if e.kind == ErrorKind::NotFound => {
            bail!("no upgrade is recorded (run `kubectl mayastor upgrade`)")
        }
        Err(e) => Err(anyhow!("cannot read the upgrade status: {}", e.message)),
    }
}

/// `delete upgrade [--force]`: an unfinished upgrade only with `--force`.
pub async fn delete(api: &dyn CoreApi, force: bool) -> anyhow::Result<Outcome> {
    let status = match api.get_upgrade_status().await {
        Ok(s) => s,
        Err(e) if e.kind == ErrorKind::NotFound => bail!("no upgrade is recorded"),
        Err(e) => bail!("cannot read the upgrade status: {}", e.message),
    };
    if !status.stage.is_finished() && !force {
        bail!(
            "the upgrade to {} is unfinished (stage {}); finish it with `kubectl mayastor upgrade`, or delete it anyway with --force",
            status.to_version,
            status.stage
        );
    }
    api.del_upgrade_status()
        .await
        .map_err(|e| anyhow!("cannot delete the upgrade status: {}", e.message))?;
    let text = format!(
        "upgrade to {} ({}) deleted\n",
        status.to_version, status.stage
    );
    outcome(text, &status)
}

/// The directory of this plugin's executable.
fn own_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| anyhow!("cannot find this program: {e}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find the directory of {}", exe.display()))
}

/// `mayastor-local` in the binaries directory, else beside the plugin.
fn launcher(bin_dir: &Path) -> anyhow::Result<PathBuf> {
    let candidates = [
        bin_dir.join("mayastor-local"),
        own_dir()?.join("mayastor-local"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "cannot find the mayastor-local launcher in {} or beside this plugin",
                bin_dir.display()
            )
        })
}

/// The Kubernetes platform of the release in `-n`, and the REST client
/// it is upgraded through: `--rest` when given, else the `api-rest`
/// Service's cluster IP.
async fn kubernetes(
    global: &GlobalArgs,
    endpoint: &Endpoint,
    args: &UpgradeArgs,
) -> anyhow::Result<(KubernetesPlatform, Option<RestClient>)> {
    if let Some(dir) = &args.bin_dir {
        bail!(
            "--bin-dir {} is for a local cluster; on Kubernetes the images tagged with this plugin's version ({}) are rolled out",
            dir.display(),
            mayastor_version::version()
        );
    }
    let target = mayastor_version::version();
    let images =
        ImageSettings::from_values(&args.set, &args.set_file, target).map_err(|e| anyhow!(e))?;
    let config = supportability::kubernetes::client_config(
        global.kube_config_path.as_deref(),
        global.timeout,
    )
    .await
    .map_err(|e| anyhow!("upgrade of a Kubernetes installation needs the Kubernetes API: {e}"))?;
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow!("cannot set up a Kubernetes client from the kubeconfig: {e}"))?;
    let namespace = &global.namespace;
    let rest = match endpoint.source {
        Source::Flag => None,
        _ => {
            let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), namespace);
            let service = services.get(discovery::SERVICE_NAME).await.map_err(|e| {
                anyhow!(
                    "cannot read Service {namespace}/{}: {e}",
                    discovery::SERVICE_NAME
                )
            })?;
            match discovery::endpoint_url(&service, None) {
                Some(url) => Some(
                    RestClient::new(
                        &url,
                        RestClientOptions {
                            timeout: global.timeout,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| anyhow!("invalid REST endpoint {url}: {}", e.message))?,
                ),
                None => None,
            }
        }
    };
    let timeouts = Timeouts {
        control_plane: args.control_plane_timeout,
        node: args.node_timeout,
    };
    let platform = KubernetesPlatform::connect(client, namespace, target, images, timeouts)
        .await
        .map_err(|e| anyhow!(e))?;
    Ok((platform, rest))
}

/// The local cluster's platform.
fn local(state_file: &Path, args: &UpgradeArgs) -> anyhow::Result<LocalPlatform> {
    let state_dir = state_file
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} has no directory", state_file.display()))?;
    if !args.set.is_empty() || !args.set_file.is_empty() {
        bail!("--set and --set-file are Helm values for Kubernetes; a local cluster takes none");
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => own_dir()?,
    };
    Ok(LocalPlatform::new(launcher(&bin_dir)?, state_dir, bin_dir)?)
}

/// `upgrade [...]`.
pub async fn run(
    api: &dyn CoreApi,
    global: &GlobalArgs,
    endpoint: &Endpoint,
    args: &UpgradeArgs,
) -> anyhow::Result<Outcome> {
    args.check_values().map_err(|e| anyhow!(e))?;
    let (platform, own_client): (Box<dyn Platform>, Option<RestClient>) = match &endpoint.source {
        Source::LocalCluster(file) => (Box::new(local(file, args)?), None),
        Source::Flag | Source::Kubernetes { .. } => {
            let (platform, rest) = kubernetes(global, endpoint, args).await?;
            (Box::new(platform), rest)
        }
    };
    let api: &dyn CoreApi = match &own_client {
        Some(client) => client,
        None => api,
    };
    let opts = upgrade::Options {
        dry_run: args.dry_run,
        skip_data_plane_restart: args.skip_data_plane_restart,
        skips: args.skips(),
        control_plane_timeout: args.control_plane_timeout,
        drain_timeout: args.drain_timeout,
        node_timeout: args.node_timeout,
        rebuild_timeout: args.rebuild_timeout,
    };
    let progress = Progress::new();
    let result = upgrade::run(api, platform.as_ref(), &opts, &progress).await;
    progress.finish();
    match result? {
        Some(status) => outcome(status_tables(&status), &status),
        None => outcome(String::new(), &serde_json::json!({ "dry_run": true })),
    }
}
