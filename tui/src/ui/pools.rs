//! The pools view: the pool list with capacity figures and the selected
//! pool's usage gauge.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Gauge, Paragraph, Row};
use ratatui::Frame;

use super::volumes::iops;
use super::{dim, draw_list, filter_suffix, pct, pool_style, titled};
use crate::app::{App, View};
use crate::format;
use crate::model::{self, NONE};

pub(super) fn draw_pools(frame: &mut Frame, area: Rect, app: &App) {
    let pools = app.visible_pools();
    let total = app.snapshot.as_ref().map_or(0, |s| s.pools.len());
    let [list, detail] = Layout::vertical([Constraint::Min(4), Constraint::Length(5)]).areas(area);
    let header = vec![
        "ID",
        "NODE",
        "STATUS",
        "TOTAL",
        "USED",
        "COMMITTED",
        "IOPS",
        "DISK",
    ];
    let rows: Vec<Row> = pools
        .iter()
        .map(|p| {
            let status = model::pool_status(p);
            let (total, used, committed) = match &p.state {
                Some(s) => (
                    format::size(s.capacity),
                    format::size(s.used),
                    format::size(s.committed),
                ),
                None => (NONE.into(), NONE.into(), NONE.into()),
            };
            Row::new(vec![
                Cell::from(p.id.clone()),
                Cell::from(model::pool_node(p).to_string()),
                Cell::from(model::pool_status_text(status)).style(pool_style(status)),
                Cell::from(total),
                Cell::from(used),
                Cell::from(committed),
                Cell::from(iops(app.rates.pools.get(&p.id))),
                Cell::from(model::pool_disks(p)),
            ])
        })
        .collect();
    draw_list(
        frame,
        list,
        header,
        rows,
        vec![
            Constraint::Min(8),
            Constraint::Min(8),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Fill(2),
        ],
        format!("Pools{}", filter_suffix(app, pools.len(), total)),
        app.selected_index(View::Pools),
    );

    let Some(p) = app.selected_pool() else {
        frame.render_widget(
            Paragraph::new("no pool selected").block(titled("Capacity".into())),
            detail,
        );
        return;
    };
    let block = titled(format!("Capacity of {}", p.id));
    let inner = block.inner(detail);
    frame.render_widget(block, detail);
    let [used_area, committed_area, io_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let io = match app.rates.pools.get(&p.id) {
        Some(rates) => Line::from(format!("I/O {}", rates.line())),
        None => Line::styled("I/O: no rate yet", dim()),
    };
    frame.render_widget(io, io_area);
    match &p.state {
        Some(s) => {
            for (area, what, value) in [
                (used_area, "used", s.used),
                (committed_area, "committed", s.committed),
            ] {
                let p = format::percent(value, s.capacity);
                frame.render_widget(
                    Gauge::default()
                        .ratio(p.map_or(0.0, |p| p.min(100) as f64 / 100.0))
                        .label(format!(
                            "{what} {} ({} of {})",
                            pct(p),
                            format::size(value),
                            format::size(s.capacity)
                        ))
                        .gauge_style(Style::new().fg(Color::Blue).bg(Color::Black)),
                    area,
                );
            }
        }
        None => frame.render_widget(Line::styled("no state reported", dim()), used_area),
    }
}
