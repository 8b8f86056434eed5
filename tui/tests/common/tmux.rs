//! The dashboard run for real in a detached tmux session: start it with a
//! command, send keys, read the pane with `capture-pane`; the session is
//! killed when the guard is dropped, however the test ends.

use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tmux ARGS`, its stdout.
pub fn tmux(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("tmux").args(args)).stdout).into_owned()
}

/// A detached tmux session running one command.
pub struct Session {
    pub name: String,
}

impl Session {
    /// Starts `command` (a shell line) in session `name` of `width` x
    /// `height` (a stale session of that name is killed first).
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Session {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", name])
            .output();
        tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        Session {
            name: name.to_string(),
        }
    }

    /// The pane as text.
    pub fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// `send-keys` to the pane.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.name.as_str()];
        args.extend_from_slice(keys);
        tmux(&args);
    }

    /// Captures the pane until `check` holds (at most `secs`).
    pub fn wait_screen(&self, what: &str, secs: u64, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {secs}s; screen:\n{s}"
            );
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}
