//! State changes derived by comparing two successive snapshots: nodes going
//! offline or being cordoned, pools changing state, volumes created,
//! deleted, scaled, moved or changing status, children faulting, and
//! rebuilds starting and finishing. Pure: the caller stamps the lines.

use openapi::models::{Child, Volume};

use crate::format::{short_id, size};
use crate::model::*;
use crate::snapshot::Snapshot;

/// One line per change from `old` to `new`, nodes first, then pools, then
/// volumes, each in id order.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    nodes(old, new, &mut out);
    pools(old, new, &mut out);
    volumes(old, new, &mut out);
    out
}

fn nodes(old: &Snapshot, new: &Snapshot, out: &mut Vec<String>) {
    for n in &new.nodes {
        let status = node_status_text(node_status(n));
        let Some(o) = old.nodes.iter().find(|o| o.id == n.id) else {
            out.push(format!("node {} registered ({status})", n.id));
            continue;
        };
        let was = node_status_text(node_status(o));
        if status != was {
            out.push(format!("node {} {status} (was {was})", n.id));
        }
        for label in cordon_labels(n) {
            if !cordon_labels(o).contains(label) {
                out.push(format!("node {} cordoned (label {label})", n.id));
            }
        }
        for label in cordon_labels(o) {
            if !cordon_labels(n).contains(label) {
                out.push(format!("node {} uncordoned (label {label})", n.id));
            }
        }
        let (drain, was_drain) = (drain_text(n), drain_text(o));
        if drain != was_drain {
            out.push(format!("node {} drain: {drain} (was {was_drain})", n.id));
        }
    }
    for o in &old.nodes {
        if new.node(&o.id).is_none() {
            out.push(format!("node {} removed", o.id));
        }
    }
}

fn pools(old: &Snapshot, new: &Snapshot, out: &mut Vec<String>) {
    for p in &new.pools {
        let status = pool_status_text(pool_status(p));
        let Some(o) = old.pools.iter().find(|o| o.id == p.id) else {
            out.push(format!(
                "pool {} created on {} ({status})",
                p.id,
                pool_node(p)
            ));
            continue;
        };
        let was = pool_status_text(pool_status(o));
        if status != was {
            out.push(format!(
                "pool {} on {} {status} (was {was})",
                p.id,
                pool_node(p)
            ));
        }
    }
    for o in &old.pools {
        if !new.pools.iter().any(|p| p.id == o.id) {
            out.push(format!("pool {} removed", o.id));
        }
    }
}

fn volumes(old: &Snapshot, new: &Snapshot, out: &mut Vec<String>) {
    for v in &new.volumes {
        let id = short_id(&v.spec.uuid);
        let Some(o) = old.volume(&v.spec.uuid) else {
            out.push(format!(
                "volume {id} created ({} replicas, {}, {})",
                v.spec.num_replicas,
                size(v.spec.size),
                volume_status_text(v.state.status)
            ));
            children(None, v, out);
            continue;
        };
        let (status, was) = (
            volume_status_text(v.state.status),
            volume_status_text(o.state.status),
        );
        if status != was {
            out.push(format!("volume {id} {status} (was {was})"));
        }
        if v.spec.num_replicas != o.spec.num_replicas {
            out.push(format!(
                "volume {id} scaled to {} replicas (was {})",
                v.spec.num_replicas, o.spec.num_replicas
            ));
        }
        match (target_node(o), target_node(v)) {
            (None, Some(node)) => out.push(format!("volume {id} published on {node}")),
            (Some(was), None) => out.push(format!("volume {id} unpublished (was on {was})")),
            (Some(was), Some(node)) if was != node => {
                out.push(format!("volume {id} target moved to {node} (was {was})"))
            }
            _ => {}
        }
        children(Some(o), v, out);
    }
    for o in &old.volumes {
        if new.volume(&o.spec.uuid).is_none() {
            out.push(format!("volume {} deleted", short_id(&o.spec.uuid)));
        }
    }
}

fn children(old: Option<&Volume>, new: &Volume, out: &mut Vec<String>) {
    let id = short_id(&new.spec.uuid);
    let old_children = old.map(crate::model::children).unwrap_or(&[]);
    for c in crate::model::children(new) {
        let name = child_name(new, c);
        let state = child_state_text(c.state);
        match old_children.iter().find(|o| o.uri == c.uri) {
            None => {
                out.push(format!("volume {id} {name} added ({state})"));
                if let Some(p) = c.rebuild_progress {
                    out.push(format!("volume {id} rebuild of {name} started ({p}%)"));
                }
            }
            Some(o) => child_changes(id, &name, o, c, out),
        }
    }
    if let Some(old) = old {
        for o in old_children {
            if !crate::model::children(new).iter().any(|c| c.uri == o.uri) {
                out.push(format!("volume {id} {} removed", child_name(old, o)));
            }
        }
    }
}

fn child_changes(id: &str, name: &str, o: &Child, c: &Child, out: &mut Vec<String>) {
    let (state, was) = (child_state_text(c.state), child_state_text(o.state));
    if state != was {
        let reason = match c.state_reason.as_str() {
            "" | "none" => String::new(),
            r => format!(": {r}"),
        };
        out.push(format!("volume {id} {name} {state}{reason} (was {was})"));
    }
    match (o.rebuild_progress, c.rebuild_progress) {
        (None, Some(p)) => out.push(format!("volume {id} rebuild of {name} started ({p}%)")),
        (Some(_), None) if c.state == openapi::models::ChildState::Online => {
            out.push(format!("volume {id} rebuild of {name} finished"))
        }
        (Some(p), None) => out.push(format!(
            "volume {id} rebuild of {name} stopped at {p}% ({state})"
        )),
        (Some(was), Some(p)) if p < was => {
            out.push(format!("volume {id} rebuild of {name} restarted ({p}%)"))
        }
        _ => {}
    }
}
