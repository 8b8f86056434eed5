//! Tables and JSON views of rebuild jobs.
//!
//! Tables follow upstream io-engine-client's `rebuild stats` and
//! `rebuild history`: columns as wide as their widest value, one space
//! apart, numbers right-aligned; times are RFC 3339 in UTC.

use io_engine_api::v1;
use serde::Serialize;

use super::{col, nexus::instant, render_table, Align, Column};
use mayastor_common::time as rfc3339;

use crate::units::human_size;

/// Lowercase name of a rebuild job state.
pub fn rebuild_state_name(state: i32) -> &'static str {
    use v1::RebuildJobState as S;
    match S::try_from(state) {
        Ok(S::RebuildInit) => "init",
        Ok(S::RebuildRunning) => "running",
        Ok(S::RebuildPaused) => "paused",
        Ok(S::RebuildStopped) => "stopped",
        Ok(S::RebuildFailed) => "failed",
        Ok(S::RebuildCompleted) => "completed",
        Ok(S::RebuildUnknown) | Err(_) => "unknown",
    }
}

fn blocks_remaining(s: &v1::RebuildStats) -> u64 {
    s.blocks_total.saturating_sub(s.blocks_recovered)
}

/// `unlimited` or e.g. `10.0 MiB/s`.
fn bandwidth(bytes_per_sec: u64) -> String {
    if bytes_per_sec == 0 {
        "unlimited".to_string()
    } else {
        format!("{}/s", human_size(bytes_per_sec))
    }
}

const PROGRESS_COLUMNS: [Column; 3] = [
    col("PROGRESS (%)", 0, Align::Right, ""),
    col("STATE", 0, Align::Left, " "),
    col("BLOCKS", 0, Align::Right, " "),
];

/// The `rebuild progress` table: percent, state, blocks done/total.
pub fn progress_table(s: &v1::RebuildStats) -> String {
    render_table(
        &PROGRESS_COLUMNS,
        &[vec![
            s.progress.to_string(),
            rebuild_state_name(s.state).to_string(),
            format!("{}/{}", s.blocks_recovered, s.blocks_total),
        ]],
    )
}

const STATS_COLUMNS: [Column; 10] = [
    col("STATE", 0, Align::Left, ""),
    col("TOTAL", 0, Align::Right, " "),
    col("RECOVERED", 0, Align::Right, " "),
    col("TRANSFERRED", 0, Align::Right, " "),
    col("REMAINING", 0, Align::Right, " "),
    col("PROGRESS (%)", 0, Align::Right, " "),
    col("BLK_SIZE", 0, Align::Right, " "),
    col("PARTIAL", 0, Align::Left, " "),
    col("MAX_BW", 0, Align::Left, " "),
    col("SOURCE", 0, Align::Left, " "),
];

/// The `rebuild stats` table (counts in blocks of BLK_SIZE bytes).
pub fn stats_table(s: &v1::RebuildStats) -> String {
    render_table(
        &STATS_COLUMNS,
        &[vec![
            rebuild_state_name(s.state).to_string(),
            s.blocks_total.to_string(),
            s.blocks_recovered.to_string(),
            s.blocks_transferred.to_string(),
            blocks_remaining(s).to_string(),
            s.progress.to_string(),
            s.block_size.to_string(),
            s.is_partial.to_string(),
            bandwidth(s.max_bandwidth),
            s.src_uri.clone(),
        ]],
    )
}

const HISTORY_COLUMNS: [Column; 7] = [
    col("CHILD", 0, Align::Left, ""),
    col("SOURCE", 0, Align::Left, " "),
    col("STATE", 0, Align::Left, " "),
    col("PARTIAL", 0, Align::Left, " "),
    col("BYTES", 0, Align::Right, " "),
    col("START", 0, Align::Left, " "),
    col("END", 0, Align::Left, " "),
];

/// The `rebuild history` table, in the order the engine returns it (oldest
/// first).
pub fn history_table(history: &v1::RebuildHistoryResponse) -> String {
    if history.records.is_empty() {
        return "No rebuild history\n".to_string();
    }
    let rows: Vec<Vec<String>> = history
        .records
        .iter()
        .map(|r| {
            vec![
                r.uri.clone(),
                r.src_uri.clone(),
                rebuild_state_name(r.state).to_string(),
                r.is_partial.to_string(),
                human_size(r.bytes_transferred),
                instant(r.start_time_ms).map_or_else(|| "-".to_string(), rfc3339::format_secs),
                instant(r.end_time_ms).map_or_else(|| "-".to_string(), rfc3339::format_secs),
            ]
        })
        .collect();
    render_table(&HISTORY_COLUMNS, &rows)
}

/// JSON view of a rebuild job.
#[derive(Debug, Serialize)]
pub struct RebuildStatsView<'a> {
    pub nexus_uuid: &'a str,
    /// The child being rebuilt.
    pub uri: &'a str,
    pub src_uri: &'a str,
    pub state: &'static str,
    pub is_partial: bool,
    pub progress_percent: u32,
    pub blocks_total: u64,
    pub blocks_recovered: u64,
    pub blocks_transferred: u64,
    pub blocks_remaining: u64,
    pub block_size_bytes: u64,
    pub bytes_transferred: u64,
    /// `null` when unlimited.
    pub max_bandwidth_bytes_per_sec: Option<u64>,
    pub start_time_ms: Option<i64>,
    /// RFC 3339, UTC.
    pub start_time: Option<String>,
    /// `null` while the job runs or is paused.
    pub end_time_ms: Option<i64>,
    pub end_time: Option<String>,
}

impl<'a> From<&'a v1::RebuildStats> for RebuildStatsView<'a> {
    fn from(s: &'a v1::RebuildStats) -> Self {
        let start_time_ms = instant(s.start_time_ms);
        let end_time_ms = instant(s.end_time_ms);
        Self {
            nexus_uuid: &s.nexus_uuid,
            uri: &s.uri,
            src_uri: &s.src_uri,
            state: rebuild_state_name(s.state),
            is_partial: s.is_partial,
            progress_percent: s.progress,
            blocks_total: s.blocks_total,
            blocks_recovered: s.blocks_recovered,
            blocks_transferred: s.blocks_transferred,
            blocks_remaining: blocks_remaining(s),
            block_size_bytes: s.block_size,
            bytes_transferred: s.bytes_transferred,
            max_bandwidth_bytes_per_sec: (s.max_bandwidth != 0).then_some(s.max_bandwidth),
            start_time_ms,
            start_time: start_time_ms.map(rfc3339::format_millis),
            end_time_ms,
            end_time: end_time_ms.map(rfc3339::format_millis),
        }
    }
}

/// JSON view of a nexus's rebuild history.
#[derive(Debug, Serialize)]
pub struct RebuildHistoryView<'a> {
    pub nexus_uuid: &'a str,
    pub records: Vec<RebuildStatsView<'a>>,
}

impl<'a> From<&'a v1::RebuildHistoryResponse> for RebuildHistoryView<'a> {
    fn from(h: &'a v1::RebuildHistoryResponse) -> Self {
        Self {
            nexus_uuid: &h.nexus_uuid,
            records: h.records.iter().map(RebuildStatsView::from).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NEXUS: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    const CHILD: &str = "nvmf://10.0.0.2:8420/nqn.2019-05.io.openebs:r2?uuid=r2";
    const SOURCE: &str = "bdev:///r1?uuid=r1";

    fn running() -> v1::RebuildStats {
        v1::RebuildStats {
            nexus_uuid: NEXUS.into(),
            uri: CHILD.into(),
            src_uri: SOURCE.into(),
            state: v1::RebuildJobState::RebuildRunning.into(),
            blocks_total: 131_072,
            blocks_recovered: 55_050,
            blocks_transferred: 55_050,
            block_size: 512,
            bytes_transferred: 55_050 * 512,
            progress: 42,
            is_partial: false,
            start_time_ms: 1_700_000_000_123,
            end_time_ms: 0,
            max_bandwidth: 0,
        }
    }

    #[test]
    fn progress_line() {
        assert_eq!(
            progress_table(&running()),
            "PROGRESS (%) STATE         BLOCKS\n\
             \x20         42 running 55050/131072\n"
        );
    }

    #[test]
    fn stats_line() {
        let limited = v1::RebuildStats {
            max_bandwidth: 10 << 20,
            ..running()
        };
        assert_eq!(
            stats_table(&limited),
            format!(
                "STATE    TOTAL RECOVERED TRANSFERRED REMAINING PROGRESS (%) BLK_SIZE PARTIAL MAX_BW     SOURCE\n\
                 running 131072     55050       55050     76022           42      512 false   10.0 MiB/s {SOURCE}\n"
            )
        );
        assert!(stats_table(&running()).contains(" unlimited "));
    }

    #[test]
    fn history_rows() {
        let done = v1::RebuildStats {
            state: v1::RebuildJobState::RebuildCompleted.into(),
            blocks_recovered: 131_072,
            blocks_transferred: 2048,
            bytes_transferred: 1 << 20,
            progress: 100,
            is_partial: true,
            end_time_ms: 1_700_000_060_999,
            ..running()
        };
        let stopped = v1::RebuildStats {
            state: v1::RebuildJobState::RebuildStopped.into(),
            bytes_transferred: 512,
            end_time_ms: 1_700_000_001_000,
            ..running()
        };
        let history = v1::RebuildHistoryResponse {
            nexus_uuid: NEXUS.into(),
            records: vec![done, stopped],
        };
        let pad = " ".repeat(CHILD.len() - "CHILD".len());
        assert_eq!(
            history_table(&history),
            format!(
                "CHILD{pad} SOURCE             STATE     PARTIAL   BYTES START                END\n\
                 {CHILD} {SOURCE} completed true    1.0 MiB 2023-11-14T22:13:20Z 2023-11-14T22:14:20Z\n\
                 {CHILD} {SOURCE} stopped   false     512 B 2023-11-14T22:13:20Z 2023-11-14T22:13:21Z\n"
            )
        );
        let running_row = v1::RebuildHistoryResponse {
            nexus_uuid: NEXUS.into(),
            records: vec![running()],
        };
        assert!(history_table(&running_row)
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(" -"));
        let empty = v1::RebuildHistoryResponse {
            nexus_uuid: NEXUS.into(),
            records: vec![],
        };
        assert_eq!(history_table(&empty), "No rebuild history\n");
    }

    #[test]
    fn stats_json() {
        let s = running();
        let json = serde_json::to_value(RebuildStatsView::from(&s)).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(json["progress_percent"], 42);
        assert_eq!(json["blocks_remaining"], 131_072 - 55_050);
        assert_eq!(json["block_size_bytes"], 512);
        assert!(json["max_bandwidth_bytes_per_sec"].is_null());
        assert_eq!(json["start_time"], "2023-11-14T22:13:20.123Z");
        assert!(json["end_time_ms"].is_null());
        assert!(json["end_time"].is_null());
        let history = v1::RebuildHistoryResponse {
            nexus_uuid: NEXUS.into(),
            records: vec![s.clone()],
        };
        let json = serde_json::to_value(RebuildHistoryView::from(&history)).unwrap();
        assert_eq!(json["nexus_uuid"], NEXUS);
        assert_eq!(json["records"][0]["uri"], CHILD);
        assert_eq!(rebuild_state_name(99), "unknown");
    }
}
