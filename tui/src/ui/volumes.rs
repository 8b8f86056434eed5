//! The volumes view: the volume list, its summary line and a volume's
//! replica topology with rebuild progress.

use openapi::models::{ReplicaTopology, Volume};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};
use ratatui::Frame;

use super::{child_style, dim, draw_list, filter_suffix, titled, volume_style, warn, WIDE};
use crate::app::{App, View};
use crate::format::{self, short_id};
use crate::model::{self, NONE};
use crate::stats::Rates;

pub(super) fn draw_volumes(frame: &mut Frame, area: Rect, app: &App) {
    let volumes = app.visible_volumes();
    let total = app.snapshot.as_ref().map_or(0, |s| s.volumes.len());
    let (list, detail) = if area.width >= WIDE {
        let [a, b] = Layout::horizontal([Constraint::Length(94), Constraint::Min(0)]).areas(area);
        (a, b)
    } else {
        let rows = (volumes.len() as u16 + 3).clamp(4, area.height.saturating_sub(6).max(4));
        let [a, b] = Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(area);
        (a, b)
    };

    let header = vec![
        "ID",
        "STATUS",
        "REPLICAS",
        "TARGET-NODE",
        "SIZE",
        "THIN",
        "IOPS",
    ];
    let rows: Vec<Row> = volumes
        .iter()
        .map(|v| {
            Row::new(vec![
                Cell::from(v.spec.uuid.clone()),
                Cell::from(model::volume_status_text(v.state.status))
                    .style(volume_style(v.state.status)),
                Cell::from(v.spec.num_replicas.to_string()),
                Cell::from(model::target_node(v).unwrap_or(NONE).to_string()),
                Cell::from(format::size(v.spec.size)),
                Cell::from(if v.spec.thin { "yes" } else { "no" }),
                Cell::from(iops(app.rates.volumes.get(&v.spec.uuid))),
            ])
        })
        .collect();
    draw_list(
        frame,
        list,
        header,
        rows,
        vec![
            Constraint::Min(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(4),
            Constraint::Length(6),
        ],
        format!("Volumes{}", filter_suffix(app, volumes.len(), total)),
        app.selected_index(View::Volumes),
    );

    let lines = match app.selected_volume() {
        Some(v) => topology_lines(app, v, detail.width >= 66),
        None => vec![Line::styled("no volume selected", dim())],
    };
    frame.render_widget(
        Paragraph::new(lines).block(titled("Replica topology".into())),
        detail,
    );
}

/// The replica topology of a volume as a tree: volume, nexus on its node,
/// children with state, reason and rebuild progress; replicas that are not
/// children of the nexus after it.
pub fn topology_lines(app: &App, v: &Volume, wide: bool) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::from(format!("volume {}", v.spec.uuid)),
        Line::from(vec![
            Span::styled(
                model::volume_status_text(v.state.status),
                volume_style(v.state.status),
            ),
            Span::raw(format!(
                " · {} replicas · {} · {} · self-heal {}",
                v.spec.num_replicas,
                format::size(v.spec.size),
                if v.spec.thin { "thin" } else { "thick" },
                if v.spec.policy.self_heal { "on" } else { "off" }
            )),
        ]),
    ];
    if let Some(rates) = app.rates.volumes.get(&v.spec.uuid) {
        lines.push(Line::from(format!("I/O {}", rates.line())));
    }

    let children = model::children(v);
    let in_nexus: Vec<&str> = children
        .iter()
        .filter_map(|c| model::child_replica(v, c).map(|(uuid, _)| uuid))
        .collect();
    let others: Vec<(&String, &ReplicaTopology)> = v
        .state
        .replica_topology
        .iter()
        .filter(|(uuid, _)| !in_nexus.contains(&uuid.as_str()))
        .collect();

    match &v.state.target {
        Some(nexus) => {
            let last = others.is_empty();
            lines.push(Line::from(vec![
                Span::raw(format!(
                    "{}nexus {} on {}: ",
                    if last { "└─ " } else { "├─ " },
                    short_id(&nexus.uuid),
                    nexus.node
                )),
                Span::raw(format!("{:?}", nexus.status)),
                Span::raw(match nexus.protocol {
                    openapi::models::Protocol::Nvmf => ", published nvmf",
                    openapi::models::Protocol::None => ", not shared",
                }),
            ]));
            let stem = if last { "   " } else { "│  " };
            if children.is_empty() {
                lines.push(Line::styled(format!("{stem}└─ no children"), dim()));
            }
            for (i, c) in children.iter().enumerate() {
                let last_child = i + 1 == children.len();
                let branch = if last_child { "└─ " } else { "├─ " };
                let place = match model::child_replica(v, c) {
                    Some((uuid, t)) => format!(
                        "replica {} on {} ({})",
                        short_id(uuid),
                        t.node.as_deref().unwrap_or(NONE),
                        t.pool.as_deref().unwrap_or(NONE)
                    ),
                    None => format!("child {}", c.uri),
                };
                let mut spans = vec![
                    Span::raw(format!("{stem}{branch}{place}: ")),
                    Span::styled(model::child_state_text(c.state), child_style(c.state)),
                ];
                if !matches!(c.state_reason.as_str(), "" | "none") {
                    spans.push(Span::raw(format!(", {}", c.state_reason)));
                }
                lines.push(Line::from(spans));
                if let Some(p) = c.rebuild_progress {
                    let indent = if last_child { "   " } else { "│  " };
                    let estimate = match app.rebuild_estimate(v, &c.uri) {
                        Some(e) => format!(
                            " {} ETA {}",
                            format::rate(e.bytes_per_sec),
                            e.eta
                                .map_or_else(|| "unknown".to_string(), format::duration)
                        ),
                        None => " (measuring rate)".to_string(),
                    };
                    lines.push(Line::from(vec![
                        Span::raw(format!("{stem}{indent}rebuild ")),
                        Span::styled(format::progress_bar(p, if wide { 20 } else { 10 }), warn()),
                        Span::raw(estimate),
                    ]));
                }
            }
        }
        None => {
            let branch = if others.is_empty() {
                "└─ "
            } else {
                "├─ "
            };
            lines.push(Line::styled(
                format!("{branch}no target (not published)"),
                dim(),
            ));
        }
    }
    for (i, (uuid, t)) in others.iter().enumerate() {
        let branch = if i + 1 == others.len() {
            "└─ "
        } else {
            "├─ "
        };
        lines.push(Line::from(vec![
            Span::raw(format!(
                "{branch}replica {} on {} ({}): ",
                short_id(uuid),
                t.node.as_deref().unwrap_or(NONE),
                t.pool.as_deref().unwrap_or(NONE)
            )),
            Span::raw(format!("{:?}", t.state)),
            Span::styled(
                if v.state.target.is_some() {
                    ", not a child"
                } else {
                    ""
                },
                dim(),
            ),
        ]));
    }
    lines
}

/// The IOPS column: reads and writes per second, or `-` without a rate.
pub(super) fn iops(rates: Option<&Rates>) -> String {
    rates.map_or_else(|| NONE.to_string(), |r| format::count(r.iops()))
}
