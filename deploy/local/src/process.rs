//! Child processes of the launcher: started in their own process group
//! (so a Ctrl-C on the launcher's terminal does not reach them), with
//! stdout and stderr appended to their log file, and found again later by
//! PID plus start time.
//!
//! Signals go through `kill(2)` only for a PID whose start time still
//! matches the record (see [`ProcRecord::is_alive`]).

use std::{
    fmt, fs,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context};

/// A process the launcher started: its PID and its start time in clock
/// ticks since boot (field 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcRecord {
    pub pid: u32,
    pub start_ticks: u64,
}

impl fmt::Display for ProcRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.pid, self.start_ticks)
    }
}

/// What `/proc/<pid>/stat` says about a process.
struct Stat {
    state: char,
    start_ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields
    // that follow start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

impl ProcRecord {
    /// `PID START-TIME`.
    pub fn parse(text: &str) -> Option<ProcRecord> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_ticks = parts.next()?.parse().ok()?;
        Some(ProcRecord { pid, start_ticks })
    }

    /// The record of a running process.
    pub fn of(pid: u32) -> Option<ProcRecord> {
        stat(pid).map(|s| ProcRecord {
            pid,
            start_ticks: s.start_ticks,
        })
    }

    /// Whether this very process still runs (not a zombie, not a recycled
    /// PID).
    pub fn is_alive(&self) -> bool {
        stat(self.pid)
            .is_some_and(|s| s.start_ticks == self.start_ticks && !matches!(s.state, 'Z' | 'X'))
    }

    /// Sends `signal` if the process is still the recorded one.
    pub fn signal(&self, signal: Signal) -> bool {
        if !self.is_alive() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        let sig = match signal {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a
        // positive PID whose start time was just checked.
        unsafe { libc::kill(pid, sig) == 0 }
    }
}

/// The signals the launcher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends SIGTERM to each process, waits up to `grace` for all to exit,
/// then SIGKILLs the rest and waits for them. Returns those that needed
/// SIGKILL.
pub fn stop_all(procs: &[ProcRecord], grace: Duration) -> Vec<ProcRecord> {
    for p in procs {
        p.signal(Signal::Term);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter().any(ProcRecord::is_alive) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stubborn: Vec<ProcRecord> = procs.iter().copied().filter(ProcRecord::is_alive).collect();
    for p in &stubborn {
        p.signal(Signal::Kill);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && stubborn.iter().any(ProcRecord::is_alive) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stubborn
}

/// A process started by this launcher command.
pub struct Spawned {
    pub record: ProcRecord,
    pub child: Child,
    pub log: PathBuf,
}

/// Starts `program` with `args`, output appended to `log`.
pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Spawned> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = writeln!(
        file,
        "==== mayastor-local: starting {name} at unix time {since_epoch}: {} {}",
        program.display(),
        args.join(" ")
    );
    let err = file
        .try_clone()
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .env("NO_COLOR", "1")
        .process_group(0);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {name} ({})", program.display()))?;
    let Some(record) = ProcRecord::of(child.id()) else {
        let status = child.wait().ok();
        bail!(
            "{name} exited at once ({}); see {}",
            status.map_or_else(|| "unknown status".into(), |s| s.to_string()),
            log.display()
        );
    };
    Ok(Spawned {
        record,
        child,
        log: log.to_path_buf(),
    })
}

impl Spawned {
    /// `Some(description)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for it: {e}")),
        }
    }

    /// Stops it (SIGTERM, SIGKILL after `grace`) and reaps it.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_none() {
            stop_all(&[self.record], grace);
        }
        let _ = self.child.wait();
    }
}

/// The last non-empty line of a log, without terminal escapes.
pub fn last_log_line(log: &Path) -> Option<String> {
    let text = fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .rev()
        .map(strip_escapes)
        .map(|l| l.trim().to_owned())
        .find(|l| !l.is_empty() && !l.starts_with("==== mayastor-local"))
}

fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in '@'..='~'.
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Finds `name` beside the launcher's own executable, else on `PATH`.
pub fn find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| is_executable(p))
        .with_context(|| {
            format!(
                "cannot find the `{name}` binary beside {} or on PATH (build it with `cargo build --bin {name}`)",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "mayastor-local".into())
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let me = ProcRecord::of(std::process::id()).expect("own stat");
        assert!(me.is_alive());
        let text = me.to_string();
        assert_eq!(ProcRecord::parse(&text), Some(me));
        let recycled = ProcRecord {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!recycled.is_alive());
        assert!(!recycled.signal(Signal::Term));
        assert_eq!(ProcRecord::parse("12"), None);
        assert_eq!(ProcRecord::parse("x 1"), None);
    }

    #[test]
    fn stops_a_child_and_sees_it_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("sleep.log");
        let mut s = spawn("sleep", Path::new("/bin/sleep"), &["30".to_string()], &log)
            .expect("spawn sleep");
        assert!(s.record.is_alive());
        assert!(s.exited().is_none());
        s.stop(Duration::from_secs(5));
        assert!(!s.record.is_alive());
        assert!(fs::read_to_string(&log)
            .expect("log")
            .contains("starting sleep"));
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\u{1b}[2mx\u{1b}[0m y"), "x y");
    }
}
