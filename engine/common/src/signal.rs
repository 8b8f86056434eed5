//! Graceful shutdown on SIGTERM or SIGINT.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// A future that completes on the first SIGTERM or SIGINT. The handlers are
/// installed when this is called (so a signal that arrives before the
/// future is polled is not lost); it fails only outside a tokio runtime or
/// when the handlers cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Cancels `token` on the first SIGTERM or SIGINT; a second signal exits
/// the process at once with code 130 (an operator who insists). Fails only
/// when the handlers cannot be installed.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            received += 1;
            if received == 1 {
                tracing::info!(signal = name, "shutting down");
                token.cancel();
            } else {
                tracing::warn!(signal = name, "second signal during shutdown; exiting now");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}
