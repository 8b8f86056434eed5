//! Progress display: a spinner per long step that leaves one `✓` line on
//! stdout when the step is done (so the record survives when stderr is not
//! a terminal and the spinner is hidden).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One long step.
pub struct Step {
    bar: ProgressBar,
}

impl Step {
    pub fn start(message: impl Into<String>) -> Step {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Step { bar }
    }

    pub fn message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    pub fn done(self, message: impl AsRef<str>) {
        self.bar.finish_and_clear();
        println!("✓ {}", message.as_ref());
    }

    /// Prints a line above the spinner.
    pub fn println(&self, line: impl AsRef<str>) {
        self.bar.suspend(|| println!("{}", line.as_ref()));
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A percentage bar (rebuild progress).
pub fn percent_bar(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(100);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos:>3}% ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
