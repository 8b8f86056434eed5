//! Progress of a dump, one event per collector start and end.
//!
//! [`terminal`] gives an indicatif spinner line per collector when stderr
//! is a terminal, plain lines otherwise; the dashboard passes its own
//! [`Progress`] to show the same events in its status line.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

/// How a collector ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Collected; a short note (`12 files, 3.1 MiB`).
    Ok(String),
    /// Failed with this error; the dump goes on.
    Failed(String),
    /// Not applicable here (no Kubernetes, logs disabled, ...).
    Skipped(String),
}

/// Receives the dump's progress.
pub trait Progress: Send + Sync {
    fn started(&self, collector: &str);
    fn finished(&self, collector: &str, outcome: &Outcome);
    /// The collectors known so far, finished or not (it grows as the dump
    /// learns more: log files, pods); with [`Progress::finished`] calls it
    /// gives a gauge.
    fn planned(&self, _collectors: usize) {}
}

/// Discards everything.
pub struct Silent;

impl Progress for Silent {
    fn started(&self, _: &str) {}
    fn finished(&self, _: &str, _: &Outcome) {}
}

/// Spinners on a terminal, plain lines otherwise (both on stderr).
pub fn terminal() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Spinners::default())
    } else {
        Box::new(Lines)
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok(note) => format!("done ({note})"),
        Outcome::Failed(error) => format!("FAILED: {error}"),
        Outcome::Skipped(why) => format!("skipped ({why})"),
    }
}

/// Plain lines on stderr.
pub struct Lines;

impl Progress for Lines {
    fn started(&self, _: &str) {}
    fn finished(&self, collector: &str, outcome: &Outcome) {
        eprintln!("{collector}: {}", describe(outcome));
    }
}

/// One indicatif line per collector.
#[derive(Default)]
pub struct Spinners {
    multi: indicatif::MultiProgress,
    bars: Mutex<Vec<(String, indicatif::ProgressBar)>>,
}

impl Progress for Spinners {
    fn started(&self, collector: &str) {
        let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_prefix(collector.to_string());
        bar.set_message("collecting");
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((collector.to_string(), bar));
    }

    fn finished(&self, collector: &str, outcome: &Outcome) {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = bars.iter().rev().find(|(name, _)| name == collector) {
            bar.finish_with_message(describe(outcome));
        }
    }
}
