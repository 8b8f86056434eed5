//! The operations behind the commands, over any [`CoreApi`] (the REST
//! client in the binary). Each returns what to print; printing is the
//! caller's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use openapi::models::{DrainStatus, Node, ReplicaTopology, Volume};
use openapi::{CoreApi, ErrorKind, RestError};
use serde::Serialize;

use crate::cli::{GetCommand, LabelArgs, NodeSelection, OutputFormat};
use crate::views;

/// What a command prints: a table for `none`/`wide`, the objects for
/// `json`/`yaml`, or a message.
pub struct Outcome {
    /// Table or message text (ends with a newline).
    pub text: String,
    /// The objects as JSON, fields in the models' order.
    pub json: String,
    /// The objects as YAML.
    pub yaml: String,
}

impl Outcome {
    fn new(text: String, objects: &impl Serialize) -> anyhow::Result<Self> {
        Ok(Self {
            text,
            json: serde_json::to_string_pretty(objects)? + "\n",
            yaml: serde_yaml::to_string(objects)?,
        })
    }

    /// The text to print in `format`.
    pub fn render(&self, format: OutputFormat) -> &str {
        match format {
            OutputFormat::None | OutputFormat::Wide => &self.text,
            OutputFormat::Json => &self.json,
            OutputFormat::Yaml => &self.yaml,
        }
    }
}

/// A REST failure, tagged with what was being done.
#[derive(Debug)]
pub struct ApiFailure {
    pub doing: String,
    pub error: RestError,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.error.message.trim_end_matches('.');
        write!(f, "{}: {message} ({})", self.doing, self.error.kind)
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// Whether the endpoint itself could not be reached (as opposed to an
    /// answer from the server).
    pub fn is_transport(&self) -> bool {
        let message = &self.error.message;
        matches!(self.error.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
            && (message.starts_with("cannot connect to")
                || message.starts_with("no answer from")
                || message.contains("failed before an answer arrived"))
    }
}

fn failed(doing: impl Into<String>) -> impl FnOnce(RestError) -> anyhow::Error {
    let doing = doing.into();
    move |error| anyhow::Error::new(ApiFailure { doing, error })
}

/// Every volume, page by page.
async fn all_volumes(api: &dyn CoreApi) -> anyhow::Result<Vec<Volume>> {
    api.all_volumes(500)
        .await
        .map_err(failed("cannot list volumes"))
}

async fn replica_index(
    api: &dyn CoreApi,
    format: OutputFormat,
) -> anyhow::Result<Option<views::ReplicaIndex>> {
    if format != OutputFormat::Wide {
        return Ok(None);
    }
    let replicas = api
        .get_replicas()
        .await
        .map_err(failed("cannot list replicas"))?;
    Ok(Some(views::index_replicas(replicas)))
}

/// `get ...`
pub async fn get(
    api: &dyn CoreApi,
    what: &GetCommand,
    format: OutputFormat,
) -> anyhow::Result<Outcome> {
    let wide = format == OutputFormat::Wide;
    match what {
        GetCommand::Volumes => {
            let volumes = all_volumes(api).await?;
            let replicas = replica_index(api, format).await?;
            Outcome::new(
                views::volumes(&volumes, replicas.as_ref()).render(),
                &volumes,
            )
        }
        GetCommand::Volume { id } => {
            let volume = get_volume(api, id).await?;
            let replicas = replica_index(api, format).await?;
            Outcome::new(
                views::volumes(std::slice::from_ref(&volume), replicas.as_ref()).render(),
                &volume,
            )
        }
        GetCommand::Pools => {
            let mut pools = api.get_pools().await.map_err(failed("cannot list pools"))?;
            pools.sort_by(|a, b| natural_cmp(&a.id, &b.id));
            Outcome::new(views::pools(&pools, wide).render(), &pools)
        }
        GetCommand::Pool { id } => {
            let pool = api
                .get_pool(id)
                .await
                .map_err(failed(format!("cannot get pool {id}")))?;
            Outcome::new(
                views::pools(std::slice::from_ref(&pool), wide).render(),
                &pool,
            )
        }
        GetCommand::Nodes => {
            let nodes = list_nodes(api).await?;
            Outcome::new(views::nodes(&nodes, wide).render(), &nodes)
        }
        GetCommand::Node { id } => {
            let node = get_node(api, id).await?;
            Outcome::new(
                views::nodes(std::slice::from_ref(&node), wide).render(),
                &node,
            )
        }
        GetCommand::VolumeReplicaTopologies => {
            let volumes = all_volumes(api).await?;
            let replicas = replica_index(api, format).await?;
            let objects: BTreeMap<&str, &BTreeMap<String, ReplicaTopology>> = volumes
                .iter()
                .map(|v| (v.spec.uuid.as_str(), &v.state.replica_topology))
                .collect();
            Outcome::new(
                views::replica_topologies(&volumes, replicas.as_ref()).render(),
                &objects,
            )
        }
        GetCommand::VolumeReplicaTopology { id } => {
            let volume = get_volume(api, id).await?;
            let replicas = replica_index(api, format).await?;
            Outcome::new(
                views::replica_topology(&volume, replicas.as_ref()).render(),
                &volume.state.replica_topology,
            )
        }
        GetCommand::RebuildHistory { id } => {
            let history = api.get_rebuild_history(id).await.map_err(failed(format!(
                "cannot get the rebuild history of volume {id}"
            )))?;
            Outcome::new(views::rebuild_history(&history).render(), &history)
        }
        GetCommand::Cordon(selection) => {
            let nodes = select_nodes(api, selection, views::is_cordoned).await?;
            Outcome::new(views::cordon_nodes(&nodes).render(), &nodes)
        }
        GetCommand::UpgradeStatus => crate::upgrades::get_status(api).await,
        GetCommand::Drain(selection) => {
            let nodes = select_nodes(api, selection, views::is_draining_or_drained).await?;
            Outcome::new(views::drain_nodes(&nodes).render(), &nodes)
        }
    }
}

async fn get_volume(api: &dyn CoreApi, id: &str) -> anyhow::Result<Volume> {
    api.get_volume(id)
        .await
        .map_err(failed(format!("cannot get volume {id}")))
}

async fn get_node(api: &dyn CoreApi, id: &str) -> anyhow::Result<Node> {
    api.get_node(id)
        .await
        .map_err(failed(format!("cannot get node {id}")))
}

async fn list_nodes(api: &dyn CoreApi) -> anyhow::Result<Vec<Node>> {
    let mut nodes = api.get_nodes().await.map_err(failed("cannot list nodes"))?;
    nodes.sort_by(|a, b| natural_cmp(&a.id, &b.id));
    Ok(nodes)
}

/// Orders names with numbers as people do: `node-2` before `node-10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let order = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if order.is_ne() {
            return order;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// `nodes`: those `keep` selects; `node <id>`: that node whatever its state.
async fn select_nodes(
    api: &dyn CoreApi,
    selection: &NodeSelection,
    keep: fn(&Node) -> bool,
) -> anyhow::Result<Vec<Node>> {
    Ok(match selection {
        NodeSelection::Nodes => list_nodes(api).await?.into_iter().filter(keep).collect(),
        NodeSelection::Node { id } => vec![get_node(api, id).await?],
    })
}

/// Parses a replica count: a whole number from 1 to 255.
pub fn parse_replica_count(text: &str) -> anyhow::Result<u8> {
    match text.trim().parse::<u8>() {
        Ok(0) => bail!("invalid replica count 0: a volume needs at least 1 replica"),
        Ok(count) => Ok(count),
        Err(_) => bail!("invalid replica count '{text}': expected a whole number from 1 to 255"),
    }
}

/// `scale volume <id> <n>`
pub async fn scale_volume(api: &dyn CoreApi, id: &str, count: &str) -> anyhow::Result<Outcome> {
    let count = parse_replica_count(count)?;
    let volume = api
        .put_volume_replica_count(id, count)
        .await
        .map_err(failed(format!(
            "cannot scale volume {id} to {count} replicas"
        )))?;
    Outcome::new(format!("Volume {id} Scaled Successfully 🚀\n"), &volume)
}

/// `cordon node <id> <label>`
pub async fn cordon(api: &dyn CoreApi, id: &str, label: &str) -> anyhow::Result<Outcome> {
    let node = api
        .put_node_cordon(id, label)
        .await
        .map_err(failed(format!("cannot cordon node {id}")))?;
    Outcome::new(format!("Node {id} cordoned successfully\n"), &node)
}

/// `uncordon node <id> <label>`
pub async fn uncordon(api: &dyn CoreApi, id: &str, label: &str) -> anyhow::Result<Outcome> {
    let node = api
        .del_node_cordon(id, label)
        .await
        .map_err(failed(format!("cannot uncordon node {id}")))?;
    let mut text = format!("Node {id} successfully uncordoned");
    if let Some(spec) = node.spec.as_ref().filter(|_| views::is_cordoned(&node)) {
        let state = &spec.cordon_drain_state;
        let others: Vec<&str> = state
            .cordon_labels
            .iter()
            .chain(&state.drain_labels)
            .map(String::as_str)
            .collect();
        text.push_str(&format!(" (still cordoned by: {})", others.join(", ")));
    }
    text.push('\n');
    Outcome::new(text, &node)
}

/// How often a drain's progress is polled.
const DRAIN_POLL: Duration = Duration::from_millis(500);

/// `drain node <id> <label>`: starts the drain, then waits (calling
/// `tick` on every poll) until the node is drained or `timeout` passes.
pub async fn drain(
    api: &dyn CoreApi,
    id: &str,
    label: &str,
    timeout: Option<Duration>,
    tick: &dyn Fn(&str),
) -> anyhow::Result<Outcome> {
    let mut node = api
        .put_node_drain(id, label)
        .await
        .map_err(failed(format!("cannot drain node {id}")))?;
    let started = Instant::now();
    loop {
        let status = node
            .spec
            .as_ref()
            .and_then(|s| s.cordon_drain_state.drain_status);
        if status == Some(DrainStatus::Drained) {
            return Outcome::new(format!("Node {id} successfully drained\n"), &node);
        }
        if let Some(limit) = timeout {
            if started.elapsed() >= limit {
                return Err(anyhow!(
                    "node {id} is still draining after {}; the drain goes on, follow it with 'kubectl mayastor get drain node {id}'",
                    human_duration(limit)
                ));
            }
        }
        tick(&format!(
            "Draining node {id} ({}s)",
            started.elapsed().as_secs()
        ));
        tokio::time::sleep(DRAIN_POLL).await;
        node = get_node(api, id).await?;
    }
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A parsed `key=value` or `key-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    Set { key: String, value: String },
    Remove { key: String },
}

fn valid_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
}

fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .split('.')
                    .all(|part| valid_name(part) && !part.contains('_'))
                && valid_name(name)
        }
        None => valid_name(key),
    }
}

/// Parses a label argument with kubectl's rules for keys and values.
pub fn parse_label(text: &str) -> anyhow::Result<LabelChange> {
    const FORM: &str = "expected key=value to set a label or key- to remove one";
    if let Some((key, value)) = text.split_once('=') {
        if !valid_key(key) {
            bail!("invalid label key '{key}' in '{text}': a key is [prefix/]name, the name up to 63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit");
        }
        if !value.is_empty() && !valid_name(value) {
            bail!("invalid label value '{value}' in '{text}': up to 63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit");
        }
        return Ok(LabelChange::Set {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(key) = text.strip_suffix('-') {
        if valid_key(key) {
            return Ok(LabelChange::Remove {
                key: key.to_string(),
            });
        }
    }
    bail!("invalid label '{text}': {FORM}")
}

/// Which resource `label` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labelled {
    Node,
    Pool,
}

/// `label node|pool <id> key=value|key-`
pub async fn label(api: &dyn CoreApi, what: Labelled, args: &LabelArgs) -> anyhow::Result<Outcome> {
    let change = parse_label(&args.label)?;
    let id = args.id.as_str();
    let (noun, title) = match what {
        Labelled::Node => ("node", "Node"),
        Labelled::Pool => ("pool", "Pool"),
    };
    let current: BTreeMap<String, String> = match what {
        Labelled::Node => get_node(api, id)
            .await?
            .spec
            .map(|s| s.labels)
            .unwrap_or_default(),
        Labelled::Pool => api
            .get_pool(id)
            .await
            .map_err(failed(format!("cannot get pool {id}")))?
            .spec
            .map(|s| s.labels)
            .ok_or_else(|| {
                anyhow!("pool {id} is not managed by the control plane; it takes no labels")
            })?,
    };
    let (key, value) = match &change {
        LabelChange::Set { key, value } => {
            if let Some(existing) = current.get(key) {
                if existing != value && !args.overwrite {
                    bail!("'{key}' already has a value ({existing}) on {noun} {id}, and --overwrite is false");
                }
            }
            (key.as_str(), Some(value.as_str()))
        }
        LabelChange::Remove { key } => {
            if !current.contains_key(key) {
                bail!("{noun} {id} has no label '{key}'");
            }
            (key.as_str(), None)
        }
    };
    let doing = format!("cannot label {noun} {id}");
    let message = |labels: Option<&BTreeMap<String, String>>| {
        format!(
            "{title} {id} labelled successfully. Current labels: {:?}\n",
            labels.cloned().unwrap_or_default()
        )
    };
    match what {
        Labelled::Node => {
            let node = api
                .label_node(id, key, value)
                .await
                .map_err(failed(doing))?;
            Outcome::new(message(node.spec.as_ref().map(|s| &s.labels)), &node)
        }
        Labelled::Pool => {
            let pool = api
                .label_pool(id, key, value)
                .await
                .map_err(failed(doing))?;
            Outcome::new(message(pool.spec.as_ref().map(|s| &s.labels)), &pool)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut ids = vec!["node-10", "node-2", "node-1", "a", "node-02x", ""];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["", "a", "node-1", "node-2", "node-02x", "node-10"]);
    }

    #[test]
    fn replica_counts() {
        assert_eq!(parse_replica_count("3").expect("valid"), 3);
        for bad in ["0", "-1", "256", "two", ""] {
            assert!(parse_replica_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("zone=a").expect("valid"),
            LabelChange::Set {
                key: "zone".into(),
                value: "a".into()
            }
        );
        assert_eq!(
            parse_label("openebs.io/created-by=operator-diskpool").expect("valid"),
            LabelChange::Set {
                key: "openebs.io/created-by".into(),
                value: "operator-diskpool".into()
            }
        );
        assert_eq!(
            parse_label("empty=").expect("valid"),
            LabelChange::Set {
                key: "empty".into(),
                value: String::new()
            }
        );
        assert_eq!(
            parse_label("zone-").expect("valid"),
            LabelChange::Remove { key: "zone".into() }
        );
        for bad in [
            "zone", "=v", "k=v=w", "-", "k=-v", "a/b/c=v", "k k=v", "=", "/x=1",
        ] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
    }
}
