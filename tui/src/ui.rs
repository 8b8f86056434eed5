//! Rendering: [`draw`] paints an [`App`] into a frame and reads nothing
//! else, so tests render into ratatui's `TestBackend`.
//!
//! Every state is written out as text (`Online`, `Faulted`, `used 40%`,
//! `DISCONNECTED`); colours only repeat it. Layout: a header line with the
//! view tabs and the connection state, a banner while the API is
//! unreachable, a line while a guided upgrade is under way, the view, an events pane (except in the events view) and a
//! footer with keys or the last action's outcome. Wide terminals put lists
//! and details side by side.

use openapi::models::{ChildState, NodeStatus, Pool, PoolStatus, VolumeStatus};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use crate::app::{App, Connection, Dialog, Mode, NodeOp, View};
use crate::format::{self, short_id};
use crate::model::{self};

mod nodes;
mod pools;
mod upgrade;
mod volumes;

use nodes::{draw_nodes, nodes_table};
use pools::draw_pools;
use volumes::draw_volumes;
pub use volumes::topology_lines;

/// Widths from which lists and details sit side by side.
const WIDE: u16 = 140;

/// Paints the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let banner = u16::from(!matches!(app.connection, Connection::Connected { .. }));
    let events_pane = if app.view == View::Events || area.height < 16 {
        0
    } else if area.height < 32 {
        5
    } else {
        (area.height / 4).min(16)
    };
    let bundle_line = u16::from(app.bundle.is_some());
    let upgrade = app
        .snapshot
        .as_ref()
        .and_then(|s| s.upgrade.as_deref())
        .and_then(upgrade::line);
    let [header, banner_area, upgrade_area, body, events, bundle_area, footer] =
        Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(banner),
            Constraint::Length(u16::from(upgrade.is_some())),
            Constraint::Min(0),
            Constraint::Length(events_pane),
            Constraint::Length(bundle_line),
            Constraint::Length(1),
        ])
        .areas(area);

    draw_header(frame, header, app);
    if banner > 0 {
        draw_banner(frame, banner_area, app);
    }
    if let Some(line) = upgrade {
        frame.render_widget(line, upgrade_area);
    }
    match app.view {
        View::Overview => draw_overview(frame, body, app),
        View::Volumes => draw_volumes(frame, body, app),
        View::Pools => draw_pools(frame, body, app),
        View::Nodes => draw_nodes(frame, body, app),
        View::Events => draw_events(frame, body, app, true),
    }
    if events_pane > 0 {
        draw_events(frame, events, app, false);
    }
    if let Some(state) = &app.bundle {
        crate::bundle::draw(frame, bundle_area, state);
    }
    draw_footer(frame, footer, app);
    match &app.mode {
        Mode::Help => draw_help(frame, area),
        Mode::Dialog(d) => draw_dialog(frame, area, d),
        Mode::Normal | Mode::Filter => {}
    }
}

// ------------------------------------------------------------ styles --

fn good() -> Style {
    Style::new().fg(Color::Green)
}
fn warn() -> Style {
    Style::new().fg(Color::Yellow)
}
fn bad() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}
fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

fn node_style(s: NodeStatus) -> Style {
    match s {
        NodeStatus::Online => good(),
        NodeStatus::Offline => bad(),
        NodeStatus::Unknown => warn(),
    }
}
fn pool_style(s: PoolStatus) -> Style {
    match s {
        PoolStatus::Online => good(),
        PoolStatus::Degraded | PoolStatus::Unknown => warn(),
        PoolStatus::Faulted => bad(),
    }
}
fn volume_style(s: VolumeStatus) -> Style {
    match s {
        VolumeStatus::Online => good(),
        VolumeStatus::Degraded | VolumeStatus::Unknown | VolumeStatus::Shutdown => warn(),
        VolumeStatus::Faulted => bad(),
    }
}
fn child_style(s: ChildState) -> Style {
    match s {
        ChildState::Online => good(),
        ChildState::Degraded | ChildState::Unknown => warn(),
        ChildState::Faulted => bad(),
    }
}

fn selected_row() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

fn titled(title: String) -> Block<'static> {
    Block::bordered().title(title)
}

/// A list in a titled box: a bold header, and the selected row reversed
/// and marked `> `.
fn draw_list<'a>(
    frame: &mut Frame,
    area: Rect,
    header: Vec<&'a str>,
    rows: Vec<Row<'a>>,
    widths: Vec<Constraint>,
    title: String,
    selected: Option<usize>,
) {
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(titled(title))
        .row_highlight_style(selected_row())
        .highlight_symbol(if selected.is_some() { "> " } else { "" });
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

/// ` (3 of 5, filter: abc)` or ``.
fn filter_suffix(app: &App, shown: usize, total: usize) -> String {
    if app.filter.is_empty() {
        format!(" ({total})")
    } else {
        format!(" ({shown} of {total}, filter: {})", app.filter)
    }
}

// ------------------------------------------------ header and footer --

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        if *v == app.view {
            spans.push(Span::styled(
                format!("[{} {}]", i + 1, v.title()),
                Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        } else {
            spans.push(Span::raw(format!(" {} {} ", i + 1, v.title())));
        }
    }
    let status = match &app.connection {
        Connection::Connecting => Span::styled("connecting...", warn()),
        Connection::Connected { updated, .. } => Span::styled(
            format!("connected, updated {}", format::clock(*updated)),
            good(),
        ),
        Connection::Disconnected { .. } => Span::styled(
            "DISCONNECTED, retrying",
            bad().add_modifier(Modifier::REVERSED),
        ),
    };
    let [tabs, right] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(status.width() as u16),
    ])
    .areas(area);
    frame.render_widget(Line::from(spans), tabs);
    frame.render_widget(Line::from(status), right);
}

fn draw_banner(frame: &mut Frame, area: Rect, app: &App) {
    let text = match &app.connection {
        Connection::Connecting => format!("connecting to {}...", app.endpoint),
        Connection::Disconnected {
            since,
            error,
            attempts,
        } => {
            let data = if app.snapshot.is_none() {
                "no data yet"
            } else {
                "last data kept"
            };
            format!(
                "API unreachable since {} ({attempts} failed polls); {data}; {error}",
                format::clock(*since)
            )
        }
        Connection::Connected { .. } => return,
    };
    let style = match app.connection {
        Connection::Connecting => warn(),
        _ => bad(),
    };
    frame.render_widget(Line::styled(text, style), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = if app.mode == Mode::Filter {
        Line::from(format!("filter: {}_   (Enter keep, Esc clear)", app.filter))
    } else if let Some(m) = &app.message {
        if m.error {
            Line::styled(format!("error: {}", m.text), bad())
        } else {
            Line::from(m.text.clone())
        }
    } else {
        let keys = match app.view {
            View::Volumes => "s scale  ",
            View::Nodes => "c cordon  u uncordon  d drain  ",
            _ => "",
        };
        Line::styled(
            format!("q quit  ? help  tab views  / filter  b bundle  {keys}"),
            dim(),
        )
    };
    frame.render_widget(line, area);
}

// ---------------------------------------------------------- overview --

fn draw_overview(frame: &mut Frame, area: Rect, app: &App) {
    let (nodes, pools) = app
        .snapshot
        .as_ref()
        .map(|s| (s.nodes.iter().collect(), s.pools.iter().collect()))
        .unwrap_or((Vec::new(), Vec::new()));
    let [top, volumes] = Layout::vertical([Constraint::Min(0), Constraint::Length(4)]).areas(area);
    let (nodes_area, pools_area) = if area.width >= WIDE {
        let [a, b] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([
            Constraint::Length(nodes.len() as u16 + 3),
            Constraint::Min(0),
        ])
        .areas(top);
        (a, b)
    };
    nodes_table(
        frame,
        nodes_area,
        &nodes,
        None,
        false,
        format!("Nodes ({})", nodes.len()),
    );
    pool_gauges(frame, pools_area, &pools);
    volume_summary(frame, volumes, app);
}

fn pool_gauges(frame: &mut Frame, area: Rect, pools: &[&Pool]) {
    let block = titled(format!("Pools ({}): capacity", pools.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if pools.is_empty() {
        frame.render_widget(Line::styled("no pools", dim()), inner);
        return;
    }
    let name_width = (inner.width / 3).clamp(12, 40);
    for (i, p) in pools.iter().enumerate() {
        if i as u16 >= inner.height {
            break;
        }
        let row = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        let [name, gauge] =
            Layout::horizontal([Constraint::Length(name_width), Constraint::Min(0)]).areas(row);
        let status = model::pool_status(p);
        frame.render_widget(
            Line::from(vec![
                Span::raw(format!("{} ", p.id)),
                Span::styled(model::pool_status_text(status), pool_style(status)),
            ]),
            name,
        );
        let (ratio, label) = match &p.state {
            Some(s) => {
                let used = format::percent(s.used, s.capacity);
                let committed = format::percent(s.committed, s.capacity);
                (
                    used.map_or(0.0, |u| u.min(100) as f64 / 100.0),
                    format!(
                        "used {} · committed {} · total {}",
                        pct(used),
                        pct(committed),
                        format::size(s.capacity)
                    ),
                )
            }
            None => (0.0, "no state reported".to_string()),
        };
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(Style::new().fg(Color::Blue).bg(Color::Black)),
            gauge,
        );
    }
}

fn pct(p: Option<u64>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{p}%"))
}

fn volume_summary(frame: &mut Frame, area: Rect, app: &App) {
    let counts = app.volume_counts();
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let mut spans = vec![Span::raw(format!("{total} volumes: "))];
    for (i, (status, n)) in counts.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        let style = if *n > 0 { volume_style(*status) } else { dim() };
        spans.push(Span::styled(
            format!("{} {n}", model::volume_status_text(*status)),
            style,
        ));
    }
    let rebuilding = app
        .snapshot
        .as_ref()
        .map(|s| {
            s.volumes
                .iter()
                .flat_map(model::children)
                .filter(|c| c.rebuild_progress.is_some())
                .count()
        })
        .unwrap_or(0);
    let second = Line::from(format!("rebuilds running: {rebuilding}"));
    frame.render_widget(
        Paragraph::new(vec![Line::from(spans), second]).block(titled("Volumes".into())),
        area,
    );
}

// ------------------------------------------------------------ events --

fn draw_events(frame: &mut Frame, area: Rect, app: &App, full: bool) {
    let (events, title) = if full {
        let all = app.visible_events();
        let total = app.events.len();
        let title = format!(
            "Events, newest first, UTC{}",
            filter_suffix(app, all.len(), total)
        );
        (all.into_iter().skip(app.events_scroll).collect(), title)
    } else {
        (
            app.events.iter().rev().collect::<Vec<_>>(),
            "Events (newest first, UTC)".to_string(),
        )
    };
    let lines: Vec<Line> = events
        .iter()
        .take(area.height as usize)
        .map(|e| Line::from(e.line()))
        .collect();
    let paragraph = Paragraph::new(lines).block(titled(title));
    // The events view wraps long lines; the pane keeps one line per event.
    let paragraph = if full {
        paragraph.wrap(Wrap { trim: false })
    } else {
        paragraph
    };
    frame.render_widget(paragraph, area);
}

// ----------------------------------------------------------- popups --

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Lines of the help popup.
pub const HELP: &[&str] = &[
    "tab / shift-tab, left / right, 1-5   switch view",
    "up / down (k / j), pgup / pgdn       select",
    "/                                    filter the list",
    "esc                                  clear filter and message",
    "r                                    refresh now",
    "s      (volumes)                     scale the volume",
    "c / u  (nodes)                       cordon / uncordon",
    "d      (nodes)                       drain the node",
    "b                                    write a support bundle",
    "?                                    close this help",
    "q, ctrl-c                            quit",
    "Actions ask for confirmation: Enter confirms, Esc cancels.",
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let rect = popup(area, 66, HELP.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let lines: Vec<Line> = HELP.iter().map(|l| Line::from(*l)).collect();
    frame.render_widget(Paragraph::new(lines).block(titled("Help".into())), rect);
}

fn draw_dialog(frame: &mut Frame, area: Rect, dialog: &Dialog) {
    let (title, lines) = match dialog {
        Dialog::Scale {
            volume,
            current,
            target,
        } => (
            "Confirm: scale volume",
            vec![
                format!("Scale volume {}", short_id(volume)),
                format!("replicas: {current} -> {target}"),
                "up/down, +/- or a digit change the count".to_string(),
                "Enter or y: confirm    Esc or n: cancel".to_string(),
            ],
        ),
        Dialog::Node { op, node, label } => (
            match op {
                NodeOp::Cordon => "Confirm: cordon node",
                NodeOp::Uncordon => "Confirm: uncordon node",
                NodeOp::Drain => "Confirm: drain node",
            },
            vec![
                format!("{} node {node}", op.verb()),
                format!("label: {label}_"),
                match op {
                    NodeOp::Drain => "moves volume targets off the node".to_string(),
                    NodeOp::Cordon => "no new replicas or targets on the node".to_string(),
                    NodeOp::Uncordon => "removes this cordon label".to_string(),
                },
                "type to edit the label; Enter: confirm    Esc: cancel".to_string(),
            ],
        ),
    };
    let rect = popup(area, 60, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let lines: Vec<Line> = lines.into_iter().map(Line::from).collect();
    frame.render_widget(
        Paragraph::new(lines).block(titled(title.to_string()).border_style(warn())),
        rect,
    );
}
