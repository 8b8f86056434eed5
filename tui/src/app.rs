//! The dashboard's state, free of I/O and clocks: [`App::apply`] takes a
//! [`Snapshot`] and the time it was taken, [`App::unreachable`] a failed
//! poll, [`App::on_key`] a key press (returning the [`Action`] to run, if
//! any) and [`App::action_done`] an action's outcome. Rendering reads it
//! (see [`crate::ui::draw`]).
//!
//! Selections are kept by id, so a list that changes between polls does
//! not move the cursor to another resource.

use std::collections::VecDeque;
use std::time::SystemTime;

use openapi::models::{Node, Pool, Volume, VolumeStatus};

mod keys;

use crate::bundle::{BundleState, BundleUpdate};
use crate::format::{self, short_id};
use crate::model;
use crate::rebuild::{Estimate, RebuildTracker};
use crate::snapshot::Snapshot;
use crate::stats::LiveRates;

/// Events kept in memory (the oldest are dropped first).
pub const MAX_EVENTS: usize = 1000;
/// Longest filter or label typed in.
const MAX_INPUT_CHARS: usize = 63;
/// Label proposed for a cordon.
pub const DEFAULT_CORDON_LABEL: &str = "tui";
/// Label proposed for a drain.
pub const DEFAULT_DRAIN_LABEL: &str = "tui-drain";

/// The dashboard's views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Volumes,
    Pools,
    Nodes,
    Events,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Overview,
        View::Volumes,
        View::Pools,
        View::Nodes,
        View::Events,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Volumes => "Volumes",
            View::Pools => "Pools",
            View::Nodes => "Nodes",
            View::Events => "Events",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    fn step(self, delta: isize) -> View {
        let n = View::ALL.len() as isize;
        View::ALL[((self.index() as isize + delta).rem_euclid(n)) as usize]
    }
}

/// How the last polls went.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// No poll has answered yet.
    Connecting,
    Connected {
        /// First successful poll after the last outage.
        since: SystemTime,
        /// Last successful poll.
        updated: SystemTime,
    },
    /// The last poll failed; the poller keeps retrying.
    Disconnected {
        since: SystemTime,
        error: String,
        /// Failed polls in a row.
        attempts: u32,
    },
}

/// One line of the events pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub at: SystemTime,
    pub text: String,
}

impl EventLine {
    /// `HH:MM:SS text`.
    pub fn line(&self) -> String {
        format!("{} {}", format::clock(self.at), self.text)
    }
}

/// What the dashboard asks the runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Poll now.
    Refresh,
    Scale {
        volume: String,
        replicas: u8,
    },
    Cordon {
        node: String,
        label: String,
    },
    Uncordon {
        node: String,
        label: String,
    },
    Drain {
        node: String,
        label: String,
    },
    /// Write a system support bundle in the background.
    Bundle,
}

impl Action {
    /// What the action does, e.g. `scale volume 1b4e28ba to 3 replicas`.
    pub fn describe(&self) -> String {
        match self {
            Action::Quit => "quit".into(),
            Action::Refresh => "refresh".into(),
            Action::Scale { volume, replicas } => {
                format!("scale volume {} to {replicas} replicas", short_id(volume))
            }
            Action::Cordon { node, label } => format!("cordon node {node} (label {label})"),
            Action::Uncordon { node, label } => format!("uncordon node {node} (label {label})"),
            Action::Drain { node, label } => format!("drain node {node} (label {label})"),
            Action::Bundle => "write a support bundle".into(),
        }
    }

    /// The line reported when the action succeeded.
    pub fn succeeded(&self) -> String {
        match self {
            Action::Quit | Action::Refresh => format!("{}: done", self.describe()),
            Action::Scale { volume, replicas } => {
                format!("volume {} scaled to {replicas} replicas", short_id(volume))
            }
            Action::Cordon { node, label } => format!("node {node} cordoned (label {label})"),
            Action::Uncordon { node, label } => format!("node {node} uncordoned (label {label})"),
            Action::Drain { node, label } => format!("node {node} drain started (label {label})"),
            Action::Bundle => "support bundle started".into(),
        }
    }
}

/// A node operation behind a confirmation dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    Cordon,
    Uncordon,
    Drain,
}

impl NodeOp {
    pub fn verb(self) -> &'static str {
        match self {
            NodeOp::Cordon => "Cordon",
            NodeOp::Uncordon => "Uncordon",
            NodeOp::Drain => "Drain",
        }
    }
}

/// An open confirmation dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    Scale {
        volume: String,
        current: u8,
        target: u8,
    },
    Node {
        op: NodeOp,
        node: String,
        label: String,
    },
}

/// Where key presses go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the filter.
    Filter,
    Help,
    Dialog(Dialog),
}

/// The outcome of the last action (or why none was started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// What the background tasks report to the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Polled {
        result: Result<Snapshot, String>,
        at: SystemTime,
    },
    ActionDone {
        action: Action,
        result: Result<(), String>,
        at: SystemTime,
    },
    /// The support bundle's progress or outcome.
    Bundle(BundleUpdate),
}

/// The dashboard's state (see the module header).
#[derive(Debug, Clone)]
pub struct App {
    /// REST endpoint shown in the header.
    pub endpoint: String,
    pub view: View,
    /// The last successful poll (kept while disconnected).
    pub snapshot: Option<Snapshot>,
    pub connection: Connection,
    /// Oldest first.
    pub events: VecDeque<EventLine>,
    /// Case-insensitive substring filter of the list views.
    pub filter: String,
    pub mode: Mode,
    pub message: Option<Message>,
    /// Actions sent and not yet answered.
    pub in_flight: usize,
    /// Lines scrolled back in the events view.
    pub events_scroll: usize,
    /// The last support bundle (key `b`), running or finished.
    pub bundle: Option<BundleState>,
    /// I/O rates between the last two polls.
    pub rates: LiveRates,
    selected_volume: Option<String>,
    selected_pool: Option<String>,
    selected_node: Option<String>,
    rebuilds: RebuildTracker,
}

impl App {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            view: View::Overview,
            snapshot: None,
            connection: Connection::Connecting,
            events: VecDeque::new(),
            filter: String::new(),
            mode: Mode::Normal,
            message: None,
            in_flight: 0,
            events_scroll: 0,
            bundle: None,
            rates: LiveRates::default(),
            selected_volume: None,
            selected_pool: None,
            selected_node: None,
            rebuilds: RebuildTracker::default(),
        }
    }

    /// Applies a report of a background task.
    pub fn update(&mut self, update: Update) {
        match update {
            Update::Polled {
                result: Ok(snapshot),
                at,
            } => self.apply(snapshot, at),
            Update::Polled {
                result: Err(error),
                at,
            } => self.unreachable(error, at),
            Update::ActionDone { action, result, at } => self.action_done(&action, result, at),
            Update::Bundle(update) => self.bundle_update(update, SystemTime::now()),
        }
    }

    /// A successful poll taken at `now`: records the changes since the
    /// previous one as events and samples rebuild progress.
    pub fn apply(&mut self, snapshot: Snapshot, now: SystemTime) {
        if let (Connection::Disconnected { since, .. }, Some(_)) =
            (&self.connection, &self.snapshot)
        {
            let down = now.duration_since(*since).unwrap_or_default();
            self.push_event(
                now,
                format!("API reachable again (down for {})", format::duration(down)),
            );
        }
        let changes = match &self.snapshot {
            Some(old) => crate::events::diff(old, &snapshot),
            None => vec![format!(
                "connected to {}: {} nodes, {} pools, {} volumes",
                self.endpoint,
                snapshot.nodes.len(),
                snapshot.pools.len(),
                snapshot.volumes.len()
            )],
        };
        for change in changes {
            self.push_event(now, change);
        }

        let mut rebuilding = Vec::new();
        for v in &snapshot.volumes {
            for c in model::children(v) {
                if let Some(p) = c.rebuild_progress {
                    self.rebuilds.observe(&v.spec.uuid, &c.uri, p, now);
                    rebuilding.push((v.spec.uuid.clone(), c.uri.clone()));
                }
            }
        }
        self.rebuilds.retain(&rebuilding);
        self.rates = match &self.snapshot {
            Some(old) => LiveRates::between(old, &snapshot),
            None => LiveRates::default(),
        };

        self.connection = match self.connection {
            Connection::Connected { since, .. } => Connection::Connected {
                since,
                updated: now,
            },
            _ => Connection::Connected {
                since: now,
                updated: now,
            },
        };
        self.snapshot = Some(snapshot);
    }

    /// A failed poll at `now`; the data of the last good poll stays.
    pub fn unreachable(&mut self, error: String, now: SystemTime) {
        match &mut self.connection {
            Connection::Disconnected {
                error: last,
                attempts,
                ..
            } => {
                *attempts = attempts.saturating_add(1);
                *last = error;
            }
            _ => {
                self.push_event(now, format!("API unreachable: {error}"));
                self.connection = Connection::Disconnected {
                    since: now,
                    error,
                    attempts: 1,
                };
            }
        }
    }

    /// The outcome of an action sent earlier.
    pub fn action_done(&mut self, action: &Action, result: Result<(), String>, now: SystemTime) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let (text, error) = match result {
            Ok(()) => (action.succeeded(), false),
            Err(e) => (format!("{} failed: {e}", action.describe()), true),
        };
        self.push_event(now, text.clone());
        self.message = Some(Message { text, error });
    }

    /// The support bundle's progress, or its end (an event too).
    pub fn bundle_update(&mut self, update: BundleUpdate, now: SystemTime) {
        let state = match update {
            BundleUpdate::Progress {
                done,
                planned,
                current,
            } => {
                // A late progress line never hides the outcome.
                if !self.bundle.as_ref().is_some_and(BundleState::running) {
                    return;
                }
                BundleState::Running {
                    done,
                    planned,
                    current,
                }
            }
            BundleUpdate::Finished(Ok((path, failed))) => BundleState::Done { path, failed },
            BundleUpdate::Finished(Err(e)) => BundleState::Failed(e),
        };
        if !state.running() {
            self.push_event(now, state.text());
        }
        self.bundle = Some(state);
    }

    fn push_event(&mut self, at: SystemTime, text: String) {
        self.events.push_back(EventLine { at, text });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Whether the shown data is from a poll that did not just succeed.
    pub fn is_stale(&self) -> bool {
        !matches!(self.connection, Connection::Connected { .. })
    }

    /// Rate and time-to-go of a child's rebuild.
    pub fn rebuild_estimate(&self, volume: &Volume, child_uri: &str) -> Option<Estimate> {
        self.rebuilds
            .estimate(&volume.spec.uuid, child_uri, volume.spec.size)
    }

    // ---------------------------------------------------------- lists --

    fn matches(&self, haystack: &str) -> bool {
        self.filter.is_empty()
            || haystack
                .to_lowercase()
                .contains(&self.filter.to_lowercase())
    }

    /// Volumes passing the filter.
    pub fn visible_volumes(&self) -> Vec<&Volume> {
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        s.volumes
            .iter()
            .filter(|v| {
                self.matches(&format!(
                    "{} {} {}",
                    v.spec.uuid,
                    model::volume_status_text(v.state.status),
                    model::target_node(v).unwrap_or_default()
                ))
            })
            .collect()
    }

    /// Pools passing the filter.
    pub fn visible_pools(&self) -> Vec<&Pool> {
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        s.pools
            .iter()
            .filter(|p| {
                self.matches(&format!(
                    "{} {} {} {}",
                    p.id,
                    model::pool_node(p),
                    model::pool_status_text(model::pool_status(p)),
                    model::pool_disks(p)
                ))
            })
            .collect()
    }

    /// Nodes passing the filter.
    pub fn visible_nodes(&self) -> Vec<&Node> {
        let Some(s) = &self.snapshot else {
            return Vec::new();
        };
        s.nodes
            .iter()
            .filter(|n| {
                self.matches(&format!(
                    "{} {} {} {} {}",
                    n.id,
                    model::node_status_text(model::node_status(n)),
                    model::node_endpoint(n),
                    model::cordon_text(n),
                    model::drain_text(n)
                ))
            })
            .collect()
    }

    /// Events passing the filter, newest first.
    pub fn visible_events(&self) -> Vec<&EventLine> {
        self.events
            .iter()
            .rev()
            .filter(|e| self.matches(&e.text))
            .collect()
    }

    fn visible_ids(&self, view: View) -> Vec<String> {
        match view {
            View::Volumes => self
                .visible_volumes()
                .iter()
                .map(|v| v.spec.uuid.clone())
                .collect(),
            View::Pools => self.visible_pools().iter().map(|p| p.id.clone()).collect(),
            View::Nodes => self.visible_nodes().iter().map(|n| n.id.clone()).collect(),
            View::Overview | View::Events => Vec::new(),
        }
    }

    fn selection(&self, view: View) -> Option<&String> {
        match view {
            View::Volumes => self.selected_volume.as_ref(),
            View::Pools => self.selected_pool.as_ref(),
            View::Nodes => self.selected_node.as_ref(),
            View::Overview | View::Events => None,
        }
    }

    /// Row of the selected item among the visible ones of `view` (the first
    /// row when nothing or something no longer visible was selected).
    pub fn selected_index(&self, view: View) -> Option<usize> {
        let ids = self.visible_ids(view);
        if ids.is_empty() {
            return None;
        }
        Some(
            self.selection(view)
                .and_then(|sel| ids.iter().position(|id| id == sel))
                .unwrap_or(0),
        )
    }

    pub fn selected_volume(&self) -> Option<&Volume> {
        let i = self.selected_index(View::Volumes)?;
        self.visible_volumes().get(i).copied()
    }

    pub fn selected_pool(&self) -> Option<&Pool> {
        let i = self.selected_index(View::Pools)?;
        self.visible_pools().get(i).copied()
    }

    pub fn selected_node(&self) -> Option<&Node> {
        let i = self.selected_index(View::Nodes)?;
        self.visible_nodes().get(i).copied()
    }

    /// Selects the volume `uuid` (it must pass the filter to show).
    pub fn select_volume(&mut self, uuid: &str) {
        self.selected_volume = Some(uuid.to_string());
    }

    /// Selects the node `id`.
    pub fn select_node(&mut self, id: &str) {
        self.selected_node = Some(id.to_string());
    }

    fn move_selection(&mut self, delta: isize) {
        if self.view == View::Events {
            let max = self.visible_events().len().saturating_sub(1) as isize;
            self.events_scroll =
                (self.events_scroll as isize + delta).clamp(0, max.max(0)) as usize;
            return;
        }
        let ids = self.visible_ids(self.view);
        let Some(current) = self.selected_index(self.view) else {
            return;
        };
        let next = (current as isize + delta).clamp(0, ids.len() as isize - 1) as usize;
        let id = ids.get(next).cloned();
        match self.view {
            View::Volumes => self.selected_volume = id,
            View::Pools => self.selected_pool = id,
            View::Nodes => self.selected_node = id,
            View::Overview | View::Events => {}
        }
    }

    /// Volumes per status, in status order, for the overview.
    pub fn volume_counts(&self) -> Vec<(VolumeStatus, usize)> {
        let statuses = [
            VolumeStatus::Online,
            VolumeStatus::Degraded,
            VolumeStatus::Faulted,
            VolumeStatus::Shutdown,
            VolumeStatus::Unknown,
        ];
        let volumes = self
            .snapshot
            .as_ref()
            .map(|s| s.volumes.as_slice())
            .unwrap_or(&[]);
        statuses
            .iter()
            .map(|st| {
                (
                    *st,
                    volumes.iter().filter(|v| v.state.status == *st).count(),
                )
            })
            .collect()
    }
}
