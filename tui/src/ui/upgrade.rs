//! The upgrade line: while a guided upgrade (`kubectl mayastor upgrade`)
//! is under way or stopped, one line under the header with its versions,
//! stage and the node at hand (`node k of N`), from the record the upgrade
//! keeps in the store. A finished upgrade (`Successful`,
//! `ValidationFailed`) shows nothing.

use openapi::models::{NodeUpgradeState, UpgradeStage, UpgradeStatus};
use ratatui::text::Line;

use super::{bad, warn};

/// The line for `record`, or `None` when it is finished.
pub(super) fn line(record: &UpgradeStatus) -> Option<Line<'static>> {
    if record.stage.is_finished() {
        return None;
    }
    let mut text = format!(
        "upgrade {} → {}: {}",
        record.from_version, record.to_version, record.stage
    );
    let total = record.nodes.len();
    // The node at hand: the first one not Upgraded (the roll-out goes in
    // the recorded order).
    let at = record
        .nodes
        .iter()
        .position(|n| n.state != NodeUpgradeState::Upgraded);
    if let Some(k) = at {
        let n = &record.nodes[k];
        text.push_str(&format!(
            ", node {} of {total} ({} {})",
            k + 1,
            n.node,
            n.state
        ));
    } else if total > 0 {
        text.push_str(&format!(", {total} of {total} nodes upgraded"));
    }
    if record.stage == UpgradeStage::Failed {
        if let Some(reason) = &record.reason {
            text.push_str(&format!(": {reason}"));
        }
        return Some(Line::styled(text, bad()));
    }
    Some(Line::styled(text, warn()))
}
