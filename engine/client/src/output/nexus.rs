//! Tables and JSON views of nexuses and their children.
//!
//! Tables follow upstream io-engine-client's `nexus list` and
//! `nexus children` (`NAME UUID SIZE STATE REBUILDS PATH [CHILDREN]`,
//! `NAME STATE REASON ...`): columns as wide as their widest value, one
//! space apart, numbers right-aligned.

use io_engine_api::v1;
use serde::Serialize;

use super::{col, render_table, Align, Column};
use mayastor_common::time as rfc3339;

use crate::units::human_size;

/// Lowercase name of a nexus state.
pub fn nexus_state_name(state: i32) -> &'static str {
    match v1::NexusState::try_from(state) {
        Ok(v1::NexusState::NexusOnline) => "online",
        Ok(v1::NexusState::NexusDegraded) => "degraded",
        Ok(v1::NexusState::NexusFaulted) => "faulted",
        Ok(v1::NexusState::NexusShutdown) => "shutdown",
        Ok(v1::NexusState::NexusUnknown) | Err(_) => "unknown",
    }
}

/// Lowercase name of a child state.
pub fn child_state_name(state: i32) -> &'static str {
    match v1::ChildState::try_from(state) {
        Ok(v1::ChildState::ChildOnline) => "online",
        Ok(v1::ChildState::ChildDegraded) => "degraded",
        Ok(v1::ChildState::ChildFaulted) => "faulted",
        Ok(v1::ChildState::ChildUnknown) | Err(_) => "unknown",
    }
}

/// Snake-case name of a child state reason (`none` when there is none).
pub fn child_reason_name(reason: i32) -> &'static str {
    use v1::ChildStateReason as R;
    match R::try_from(reason) {
        Ok(R::ChildReasonNone) => "none",
        Ok(R::ChildReasonIoFailure) => "io_failure",
        Ok(R::ChildReasonTimedOut) => "timed_out",
        Ok(R::ChildReasonCannotOpen) => "cannot_open",
        Ok(R::ChildReasonRebuildFailed) => "rebuild_failed",
        Ok(R::ChildReasonNoSpace) => "no_space",
        Ok(R::ChildReasonByClient) => "by_client",
        Ok(R::ChildReasonOutOfSync) => "out_of_sync",
        Err(_) => "unknown",
    }
}

/// Snake-case name of a reservation type.
pub fn reservation_name(resv_type: i32) -> &'static str {
    use v1::NvmeReservation as R;
    match R::try_from(resv_type) {
        Ok(R::ReservationNone) => "none",
        Ok(R::WriteExclusive) => "write_exclusive",
        Ok(R::ExclusiveAccess) => "exclusive_access",
        Ok(R::WriteExclusiveRegOnly) => "write_exclusive_reg_only",
        Ok(R::ExclusiveAccessRegOnly) => "exclusive_access_reg_only",
        Ok(R::WriteExclusiveAllRegs) => "write_exclusive_all_regs",
        Ok(R::ExclusiveAccessAllRegs) => "exclusive_access_all_regs",
        Err(_) => "unknown",
    }
}

/// A child's rebuild progress, `None` when it is not rebuilding.
fn rebuild_percent(child: &v1::Child) -> Option<u32> {
    u32::try_from(child.rebuild_progress).ok()
}

/// A wire timestamp in unix ms, `None` when 0 (never / not yet).
pub(crate) fn instant(unix_ms: i64) -> Option<i64> {
    (unix_ms != 0).then_some(unix_ms)
}

const NEXUS_COLUMNS: [Column; 7] = [
    col("NAME", 0, Align::Left, ""),
    col("UUID", 0, Align::Left, " "),
    col("SIZE", 0, Align::Right, " "),
    col("STATE", 0, Align::Left, " "),
    col("REBUILDS", 0, Align::Right, " "),
    col("PATH", 0, Align::Left, " "),
    col("CHILDREN", 0, Align::Left, " "),
];

/// The `nexus list` table; `children` adds the CHILDREN column (child URIs,
/// comma-separated).
pub fn nexus_table(nexuses: &[v1::Nexus], children: bool) -> String {
    if nexuses.is_empty() {
        return "No nexus found\n".to_string();
    }
    let columns = if children {
        &NEXUS_COLUMNS[..]
    } else {
        &NEXUS_COLUMNS[..6]
    };
    let rows: Vec<Vec<String>> = nexuses
        .iter()
        .map(|n| {
            let mut row = vec![
                n.name.clone(),
                n.uuid.clone(),
                human_size(n.size),
                nexus_state_name(n.state).to_string(),
                n.rebuilds.to_string(),
                n.device_uri.clone(),
                n.children
                    .iter()
                    .map(|c| c.uri.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ];
            row.truncate(columns.len());
            row
        })
        .collect();
    render_table(columns, &rows)
}

const CHILD_COLUMNS: [Column; 6] = [
    col("NAME", 0, Align::Left, ""),
    col("STATE", 0, Align::Left, " "),
    col("REASON", 0, Align::Left, " "),
    col("REBUILD%", 0, Align::Right, " "),
    col("DIRTY_LOG", 0, Align::Left, " "),
    col("LAST_FAULTED_AT", 0, Align::Left, " "),
];

/// The `nexus children` table; `wide` adds DIRTY_LOG and LAST_FAULTED_AT.
/// REASON and REBUILD% show `-` when there is none.
pub fn child_table(children: &[v1::Child], wide: bool) -> String {
    if children.is_empty() {
        return "The nexus has no children\n".to_string();
    }
    let columns = if wide {
        &CHILD_COLUMNS[..]
    } else {
        &CHILD_COLUMNS[..4]
    };
    let rows: Vec<Vec<String>> = children
        .iter()
        .map(|c| {
            let reason = match child_reason_name(c.reason) {
                "none" => "-",
                name => name,
            };
            let mut row = vec![
                c.uri.clone(),
                child_state_name(c.state).to_string(),
                reason.to_string(),
                rebuild_percent(c).map_or_else(|| "-".to_string(), |p| p.to_string()),
                c.has_dirty_log.to_string(),
                instant(c.faulted_at_ms).map_or_else(|| "-".to_string(), rfc3339::format_secs),
            ];
            row.truncate(columns.len());
            row
        })
        .collect();
    render_table(columns, &rows)
}

/// JSON view of a nexus child.
#[derive(Debug, Serialize)]
pub struct ChildView<'a> {
    pub uri: &'a str,
    pub uuid: &'a str,
    pub state: &'static str,
    pub reason: &'static str,
    /// `null` when the child is not rebuilding.
    pub rebuild_progress_percent: Option<u32>,
    pub has_dirty_log: bool,
    /// `null` when never faulted.
    pub faulted_at_ms: Option<i64>,
    /// RFC 3339, UTC; `null` when never faulted.
    pub faulted_at: Option<String>,
}

impl<'a> From<&'a v1::Child> for ChildView<'a> {
    fn from(c: &'a v1::Child) -> Self {
        let faulted_at_ms = instant(c.faulted_at_ms);
        Self {
            uri: &c.uri,
            uuid: &c.uuid,
            state: child_state_name(c.state),
            reason: child_reason_name(c.reason),
            rebuild_progress_percent: rebuild_percent(c),
            has_dirty_log: c.has_dirty_log,
            faulted_at_ms,
            faulted_at: faulted_at_ms.map(rfc3339::format_millis),
        }
    }
}

/// JSON view of a nexus.
#[derive(Debug, Serialize)]
pub struct NexusView<'a> {
    pub uuid: &'a str,
    /// The volume uuid.
    pub name: &'a str,
    pub size_bytes: u64,
    pub state: &'static str,
    pub children: Vec<ChildView<'a>>,
    /// `""` when unpublished.
    pub device_uri: &'a str,
    pub nqn: &'a str,
    pub rebuilds: u32,
    pub allowed_hosts: &'a [String],
    pub min_cntlid: u32,
    pub max_cntlid: u32,
    pub nexus_info_key: &'a str,
    pub resv_key: u64,
    pub resv_type: &'static str,
}

impl<'a> From<&'a v1::Nexus> for NexusView<'a> {
    fn from(n: &'a v1::Nexus) -> Self {
        Self {
            uuid: &n.uuid,
            name: &n.name,
            size_bytes: n.size,
            state: nexus_state_name(n.state),
            children: n.children.iter().map(ChildView::from).collect(),
            device_uri: &n.device_uri,
            nqn: &n.nqn,
            rebuilds: n.rebuilds,
            allowed_hosts: &n.allowed_hosts,
            min_cntlid: n.min_cntlid,
            max_cntlid: n.max_cntlid,
            nexus_info_key: &n.nexus_info_key,
            resv_key: n.resv_key,
            resv_type: reservation_name(n.resv_type),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const NEXUS: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    const VOLUME: &str = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
    const R1: &str = "11111111-1111-4111-8111-111111111111";
    const R2: &str = "22222222-2222-4222-8222-222222222222";

    fn child(uri: &str, state: v1::ChildState, reason: v1::ChildStateReason) -> v1::Child {
        v1::Child {
            uri: uri.into(),
            uuid: R1.into(),
            state: state.into(),
            reason: reason.into(),
            rebuild_progress: -1,
            has_dirty_log: false,
            faulted_at_ms: 0,
        }
    }

    fn local(r: &str) -> String {
        format!("bdev:///{r}?uuid={r}")
    }

    fn remote(r: &str) -> String {
        format!("nvmf://10.0.0.2:8420/nqn.2019-05.io.openebs:{r}?uuid={r}")
    }

    fn nexus() -> v1::Nexus {
        v1::Nexus {
            uuid: NEXUS.into(),
            name: VOLUME.into(),
            size: 64 * MIB,
            state: v1::NexusState::NexusDegraded.into(),
            children: vec![
                child(
                    &local(R1),
                    v1::ChildState::ChildOnline,
                    v1::ChildStateReason::ChildReasonNone,
                ),
                v1::Child {
                    rebuild_progress: 42,
                    has_dirty_log: true,
                    faulted_at_ms: 1_700_000_000_123,
                    ..child(
                        &remote(R2),
                        v1::ChildState::ChildDegraded,
                        v1::ChildStateReason::ChildReasonOutOfSync,
                    )
                },
            ],
            device_uri: format!("nvmf://10.0.0.1:8420/nqn.2019-05.io.openebs:{VOLUME}"),
            rebuilds: 1,
            allowed_hosts: vec!["nqn.2019-05.io.openebs:node-name:n1".into()],
            nqn: format!("nqn.2019-05.io.openebs:{VOLUME}"),
            min_cntlid: 1,
            max_cntlid: 0xffef,
            nexus_info_key: String::new(),
            resv_key: 7,
            resv_type: v1::NvmeReservation::ExclusiveAccess.into(),
        }
    }

    fn published_uri_len() -> usize {
        nexus().device_uri.len()
    }

    #[test]
    fn nexus_list_table() {
        let published = nexus();
        let unpublished = v1::Nexus {
            uuid: R1.into(),
            name: R2.into(),
            size: 1 << 30,
            state: v1::NexusState::NexusOnline.into(),
            device_uri: String::new(),
            rebuilds: 0,
            children: vec![published.children[0].clone()],
            ..published.clone()
        };
        assert_eq!(
            nexus_table(&[published.clone(), unpublished.clone()], false),
            format!(
                "NAME                                 UUID                                     SIZE STATE    REBUILDS PATH\n\
                 {VOLUME} {NEXUS} 64.0 MiB degraded        1 nvmf://10.0.0.1:8420/nqn.2019-05.io.openebs:{VOLUME}\n\
                 {R2} {R1}  1.0 GiB online          0\n"
            )
        );
        let wide = nexus_table(&[published, unpublished], true);
        let lines: Vec<&str> = wide.lines().collect();
        let path_width = published_uri_len();
        assert!(
            lines[0].ends_with(&format!("PATH{} CHILDREN", " ".repeat(path_width - 4))),
            "{wide}"
        );
        assert!(
            lines[1].ends_with(&format!(" {},{}", local(R1), remote(R2))),
            "{wide}"
        );
        // The CHILDREN column lines up although PATH is empty on that row.
        let at = lines[0].find("CHILDREN").unwrap();
        assert_eq!(lines[2].find("bdev:///"), Some(at));
        assert_eq!(nexus_table(&[], false), "No nexus found\n");
    }

    #[test]
    fn children_table() {
        let n = nexus();
        let faulted = v1::Child {
            faulted_at_ms: 1_700_000_000_000,
            ..child(
                "bdev:///x",
                v1::ChildState::ChildFaulted,
                v1::ChildStateReason::ChildReasonIoFailure,
            )
        };
        let mut children = n.children.clone();
        children.push(faulted);
        let r1 = local(R1);
        let r2 = remote(R2);
        assert_eq!(
            child_table(&children, false),
            format!(
                "NAME{:pad$} STATE    REASON      REBUILD%\n\
                 {r1}{:pad1$} online   -                  -\n\
                 {r2} degraded out_of_sync       42\n\
                 bdev:///x{:pad3$} faulted  io_failure         -\n",
                "",
                "",
                "",
                pad = r2.len() - 4,
                pad1 = r2.len() - r1.len(),
                pad3 = r2.len() - 9,
            )
        );
        let wide = child_table(&children, true);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(
            lines[0].ends_with("REBUILD% DIRTY_LOG LAST_FAULTED_AT"),
            "{wide}"
        );
        assert!(lines[1].ends_with("       - false     -"), "{wide}");
        assert!(
            lines[2].ends_with("      42 true      2023-11-14T22:13:20Z"),
            "{wide}"
        );
        assert!(
            lines[3].ends_with("       - false     2023-11-14T22:13:20Z"),
            "{wide}"
        );
        assert_eq!(child_table(&[], false), "The nexus has no children\n");
    }

    #[test]
    fn nexus_json() {
        let n = nexus();
        let json = serde_json::to_value(NexusView::from(&n)).unwrap();
        assert_eq!(json["uuid"], NEXUS);
        assert_eq!(json["name"], VOLUME);
        assert_eq!(json["size_bytes"], 64 * MIB);
        assert_eq!(json["state"], "degraded");
        assert_eq!(json["rebuilds"], 1);
        assert_eq!(json["resv_type"], "exclusive_access");
        assert_eq!(json["max_cntlid"], 0xffef);
        assert_eq!(json["nqn"], format!("nqn.2019-05.io.openebs:{VOLUME}"));
        let online = &json["children"][0];
        assert_eq!(online["state"], "online");
        assert_eq!(online["reason"], "none");
        assert!(online["rebuild_progress_percent"].is_null());
        assert!(online["faulted_at_ms"].is_null());
        assert!(online["faulted_at"].is_null());
        let rebuilding = &json["children"][1];
        assert_eq!(rebuilding["state"], "degraded");
        assert_eq!(rebuilding["reason"], "out_of_sync");
        assert_eq!(rebuilding["rebuild_progress_percent"], 42);
        assert_eq!(rebuilding["has_dirty_log"], true);
        assert_eq!(rebuilding["faulted_at_ms"], 1_700_000_000_123_i64);
        assert_eq!(rebuilding["faulted_at"], "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn unknown_enum_values_are_named_unknown() {
        assert_eq!(nexus_state_name(99), "unknown");
        assert_eq!(child_state_name(-1), "unknown");
        assert_eq!(child_reason_name(99), "unknown");
        assert_eq!(reservation_name(99), "unknown");
        assert_eq!(nexus_state_name(4), "shutdown");
    }
}
