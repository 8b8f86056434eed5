//! The nodes view: the node list and the selected node's details.

use openapi::models::Node;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row};
use ratatui::Frame;

use super::{dim, draw_list, filter_suffix, node_style, titled};
use crate::app::{App, View};
use crate::model::{self, NONE};

pub(super) fn nodes_table(
    frame: &mut Frame,
    area: Rect,
    nodes: &[&Node],
    selected: Option<usize>,
    full: bool,
    title: String,
) {
    let wide = full && area.width >= 110;
    let mut header = vec!["ID", "STATUS"];
    if wide {
        header.push("GRPC ENDPOINT");
    }
    header.extend(["CORDON", "DRAIN"]);
    if wide {
        header.push("VERSION");
    }
    let rows: Vec<Row> = nodes
        .iter()
        .map(|n| {
            let status = model::node_status(n);
            let mut cells = vec![
                Cell::from(n.id.clone()),
                Cell::from(model::node_status_text(status)).style(node_style(status)),
            ];
            if wide {
                cells.push(Cell::from(model::node_endpoint(n).to_string()));
            }
            cells.push(Cell::from(model::cordon_text(n)));
            cells.push(Cell::from(model::drain_text(n)));
            if wide {
                cells.push(Cell::from(model::node_version(n).to_string()));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Min(8), Constraint::Length(8)];
    if wide {
        widths.push(Constraint::Length(22));
    }
    widths.extend([Constraint::Fill(1), Constraint::Fill(1)]);
    if wide {
        widths.push(Constraint::Length(10));
    }
    draw_list(frame, area, header, rows, widths, title, selected);
}

pub(super) fn draw_nodes(frame: &mut Frame, area: Rect, app: &App) {
    let nodes = app.visible_nodes();
    let total = app.snapshot.as_ref().map_or(0, |s| s.nodes.len());
    let [list, detail] = Layout::vertical([Constraint::Min(4), Constraint::Length(5)]).areas(area);
    nodes_table(
        frame,
        list,
        &nodes,
        app.selected_index(View::Nodes),
        true,
        format!("Nodes{}", filter_suffix(app, nodes.len(), total)),
    );

    let lines = match (app.selected_node(), &app.snapshot) {
        (Some(n), Some(s)) => {
            let pools: Vec<&str> = s
                .pools
                .iter()
                .filter(|p| model::pool_node(p) == n.id)
                .map(|p| p.id.as_str())
                .collect();
            let targets = s
                .volumes
                .iter()
                .filter(|v| model::target_node(v) == Some(n.id.as_str()))
                .count();
            vec![
                Line::from(format!(
                    "{}: {} · grpc {} · version {}",
                    n.id,
                    model::node_status_text(model::node_status(n)),
                    model::node_endpoint(n),
                    model::node_version(n)
                )),
                Line::from(format!(
                    "cordon: {} · drain: {}",
                    model::cordon_text(n),
                    model::drain_text(n)
                )),
                Line::from(format!(
                    "pools: {} · volume targets: {targets}",
                    if pools.is_empty() {
                        NONE.to_string()
                    } else {
                        pools.join(",")
                    }
                )),
            ]
        }
        _ => vec![Line::styled("no node selected", dim())],
    };
    frame.render_widget(Paragraph::new(lines).block(titled("Node".into())), detail);
}
