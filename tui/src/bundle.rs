//! The support-bundle key (`b`): a system bundle (`kubectl mayastor dump
//! system`, the `supportability` crate) written in the background, its
//! progress as a gauge above the footer and the archive's path when done.
//!
//! ```text
//!  key b ──► App (state Running) ──► Action::Bundle ──► spawn(): a thread
//!  supportability::dump(.., &Reporter) ──► Update::Bundle(Progress{..})
//!                                      └─► Update::Bundle(Finished(..))
//! ```
//!
//! Invariants: one bundle at a time (the key is refused while one runs);
//! the reporter never blocks the dump (a progress update the full channel
//! cannot take is dropped: the next one carries the same counters), the
//! final outcome is always delivered.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Gauge;
use ratatui::Frame;
use supportability::progress::{Outcome, Progress};
use supportability::DumpOptions;
use tokio::sync::mpsc;

use crate::app::Update;

/// Where a bundle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleState {
    Running {
        /// Collectors finished.
        done: usize,
        /// Collectors known so far (grows as the dump learns more).
        planned: usize,
        /// The collector running now.
        current: String,
    },
    Done {
        path: PathBuf,
        /// Collectors that failed (the bundle is partial when > 0).
        failed: usize,
    },
    Failed(String),
}

impl BundleState {
    /// A bundle that was just asked for.
    pub fn starting() -> Self {
        BundleState::Running {
            done: 0,
            planned: 0,
            current: "starting".into(),
        }
    }

    pub fn running(&self) -> bool {
        matches!(self, BundleState::Running { .. })
    }

    /// The gauge's ratio, 0 to 1.
    pub fn ratio(&self) -> f64 {
        match self {
            BundleState::Running { done, planned, .. } if *planned > 0 => {
                (*done as f64 / *planned as f64).min(1.0)
            }
            BundleState::Running { .. } => 0.0,
            BundleState::Done { .. } | BundleState::Failed(_) => 1.0,
        }
    }

    /// The line shown (in the gauge while running).
    pub fn text(&self) -> String {
        match self {
            BundleState::Running {
                done,
                planned,
                current,
            } => format!("support bundle: {done}/{planned} collectors, {current}"),
            BundleState::Done { path, failed: 0 } => {
                format!("support bundle written: {}", path.display())
            }
            BundleState::Done { path, failed } => format!(
                "support bundle partially collected ({failed} collector(s) failed): {}",
                path.display()
            ),
            BundleState::Failed(e) => format!("support bundle failed: {e}"),
        }
    }
}

/// What the bundle task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleUpdate {
    Progress {
        done: usize,
        planned: usize,
        current: String,
    },
    /// The archive's path and the failed collectors' count, or why no
    /// archive was written.
    Finished(Result<(PathBuf, usize), String>),
}

/// Passes the dump's progress to the dashboard.
struct Reporter {
    updates: mpsc::Sender<Update>,
    done: AtomicUsize,
    planned: AtomicUsize,
    current: Mutex<String>,
}

impl Reporter {
    fn send(&self) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = self
            .updates
            .try_send(Update::Bundle(BundleUpdate::Progress {
                done: self.done.load(Ordering::SeqCst),
                planned: self.planned.load(Ordering::SeqCst),
                current,
            }));
    }
}

impl Progress for Reporter {
    fn started(&self, collector: &str) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = collector.to_string();
        self.send();
    }

    fn finished(&self, _: &str, _: &Outcome) {
        self.done.fetch_add(1, Ordering::SeqCst);
        self.send();
    }

    fn planned(&self, collectors: usize) {
        self.planned.store(collectors, Ordering::SeqCst);
        self.send();
    }
}

/// Writes a bundle described by `opts` on a thread of its own (with its
/// own single-threaded runtime: the dump's future is not `Send`); reports
/// through `updates`. Without options (the dashboard was started without
/// a way to make bundles), reports that at once.
pub fn spawn(opts: Option<DumpOptions>, updates: mpsc::Sender<Update>) {
    let reporter = Reporter {
        updates: updates.clone(),
        done: AtomicUsize::new(0),
        planned: AtomicUsize::new(0),
        current: Mutex::new(String::new()),
    };
    let run = move || {
        let opts = opts.ok_or_else(|| "support bundles are not available here".to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        runtime
            .block_on(supportability::dump(&opts, &reporter))
            .map(|summary| (summary.path, summary.manifest.failures().count()))
            .map_err(|e| e.to_string())
    };
    let on_error = updates.clone();
    let spawned = std::thread::Builder::new()
        .name("tui-bundle".into())
        .spawn(move || {
            let result = run();
            let _ = updates.blocking_send(Update::Bundle(BundleUpdate::Finished(result)));
        });
    if let Err(e) = spawned {
        let error = format!("cannot start its thread: {e}");
        let _ = on_error.try_send(Update::Bundle(BundleUpdate::Finished(Err(error))));
    }
}

/// The bundle's line: a gauge while it runs, its outcome after.
pub fn draw(frame: &mut Frame, area: Rect, state: &BundleState) {
    let text = state.text();
    match state {
        BundleState::Running { .. } => {
            let [label, gauge] =
                Layout::horizontal([Constraint::Length(16), Constraint::Min(0)]).areas(area);
            frame.render_widget(Line::from("bundle [b]"), label);
            let gauge_widget = Gauge::default()
                .gauge_style(Style::new().fg(Color::Cyan).bg(Color::DarkGray))
                .ratio(state.ratio())
                .label(text);
            frame.render_widget(gauge_widget, gauge);
        }
        BundleState::Done { failed: 0, .. } => {
            frame.render_widget(Line::styled(text, Style::new().fg(Color::Green)), area);
        }
        BundleState::Done { .. } => {
            frame.render_widget(Line::styled(text, Style::new().fg(Color::Yellow)), area);
        }
        BundleState::Failed(_) => {
            let style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
            frame.render_widget(Line::styled(text, style), area);
        }
    }
}
