//! The terminal side of [`crate::run`]: raw mode and the alternate screen,
//! the event loop of the UI thread, and the guarantees that the terminal
//! is given back in its normal state on every way out: quit, error
//! (a drop guard), panic on the UI thread (a panic hook, chained to the
//! one installed before) and SIGTERM, SIGHUP or SIGINT (caught by the
//! runtime, which asks the loop to stop).

use std::io::{self, IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use anyhow::Context;
use openapi::{CoreApi, RestClient, RestClientOptions};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::{mpsc, Notify};

use crate::app::{Action, App};
use crate::poller;
use crate::Options;

/// How long the UI thread waits for a key before looking at updates.
const KEY_WAIT: Duration = Duration::from_millis(100);
/// Redraw at least this often (the header shows the time of the last poll).
const REDRAW_EVERY: Duration = Duration::from_secs(1);

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Puts the terminal back: leaves the alternate screen, shows the cursor,
/// ends raw mode. Harmless when already done.
pub fn restore() {
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Raw mode + alternate screen for as long as it lives, plus a panic hook
/// that restores the terminal when the UI thread panics.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Arc<PanicHook>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        let previous_hook: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let ui_thread: ThreadId = thread::current().id();
        let chained = Arc::clone(&previous_hook);
        std::panic::set_hook(Box::new(move |info| {
            if thread::current().id() == ui_thread {
                restore();
            }
            chained(info);
        }));
        let setup = || -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode().context("cannot switch the terminal to raw mode")?;
            execute!(io::stdout(), EnterAlternateScreen)
                .context("cannot switch to the alternate screen")?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => Ok(Self {
                terminal,
                previous_hook,
            }),
            Err(e) => {
                restore();
                let _ = std::panic::take_hook();
                let previous = Arc::clone(&previous_hook);
                std::panic::set_hook(Box::new(move |info| previous(info)));
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        // Put the previous hook back (ours captured the UI thread).
        let _ = std::panic::take_hook();
        let previous = Arc::clone(&self.previous_hook);
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }
}

/// See [`crate::run`].
pub fn run(opts: Options) -> anyhow::Result<()> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!("the dashboard needs an interactive terminal");
    }
    if opts.interval.is_zero() {
        anyhow::bail!("the poll interval must be longer than zero");
    }
    let client = RestClient::new(
        &opts.rest,
        RestClientOptions {
            timeout: opts.timeout,
            ..RestClientOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("invalid REST endpoint {}: {}", opts.rest, e.message))?;
    let api: Arc<dyn CoreApi> = Arc::new(client);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tui-poller")
        .build()
        .context("cannot start the tokio runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    runtime.block_on(watch_signals(Arc::clone(&stop)))?;

    let (tx, rx) = mpsc::channel(poller::UPDATES);
    let refresh = Arc::new(Notify::new());
    let poller = poller::spawn_poller(
        runtime.handle(),
        Arc::clone(&api),
        opts.interval,
        tx.clone(),
        Arc::clone(&refresh),
    );

    let result = TerminalGuard::enter().and_then(|mut guard| {
        let mut app = App::new(opts.rest.clone());
        event_loop(
            &mut guard.terminal,
            &mut app,
            rx,
            &stop,
            |action| match action {
                Action::Bundle => crate::bundle::spawn(opts.bundle.clone(), tx.clone()),
                action => poller::spawn_action(
                    runtime.handle(),
                    Arc::clone(&api),
                    action,
                    tx.clone(),
                    Arc::clone(&refresh),
                ),
            },
            &refresh,
        )
    });
    poller.abort();
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}

/// How often the runtime checks that the controlling terminal still exists.
const TTY_CHECK: Duration = Duration::from_millis(500);
/// How long the UI thread has to stop by itself once asked.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Sets `stop` on SIGTERM, SIGHUP or SIGINT, or when the terminal goes
/// away (its window closed, its tmux session killed). A UI thread that
/// does not stop within [`STOP_GRACE`] (reading a terminal that is gone
/// can keep it busy) is not waited for: the terminal is restored as far as
/// it still can be and the process exits.
async fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ] {
        let mut s = signal(kind).context("cannot watch signals")?;
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if s.recv().await.is_some() {
                stop_or_exit(&stop).await;
            }
        });
    }
    // (Only a process that has a controlling terminal can lose it.)
    if std::fs::File::open("/dev/tty").is_ok() {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TTY_CHECK).await;
                if std::fs::File::open("/dev/tty").is_err() {
                    stop_or_exit(&stop).await;
                    return;
                }
            }
        });
    }
    Ok(())
}

async fn stop_or_exit(stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(STOP_GRACE).await;
    restore();
    std::process::exit(0);
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    mut rx: mpsc::Receiver<crate::app::Update>,
    stop: &AtomicBool,
    mut act: impl FnMut(Action),
    refresh: &Notify,
) -> anyhow::Result<()> {
    let mut dirty = true;
    let mut drawn = Instant::now();
    loop {
        while let Ok(update) = rx.try_recv() {
            app.update(update);
            dirty = true;
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if dirty || drawn.elapsed() >= REDRAW_EVERY {
            terminal.draw(|frame| crate::ui::draw(frame, app))?;
            dirty = false;
            drawn = Instant::now();
        }
        if !event::poll(KEY_WAIT)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) => {
                dirty = true;
                match app.on_key(key) {
                    Some(Action::Quit) => return Ok(()),
                    Some(Action::Refresh) => refresh.notify_one(),
                    Some(action) => act(action),
                    None => {}
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}
