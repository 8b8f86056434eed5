//! Progress of the roll-out: a spinner line on stderr (indicatif; hidden
//! when stderr is not a terminal) for the wait at hand, e.g. `node 2 of 3
//! node-2: rebuilding volume 6d61...: 42%`, and one line on stdout per
//! finished step, which stays in logs and pipes.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// See the module header.
pub struct Progress {
    bar: ProgressBar,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Self { bar }
    }

    /// What is being waited for now.
    pub fn set(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// A finished step, printed above the spinner (or plainly).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.bar.is_hidden() {
            println!("{}", text.as_ref());
        } else {
            self.bar.println(text.as_ref());
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
