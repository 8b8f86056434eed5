//! Opt-in polling (`io-engine --poll`, `io-bench --poll`): every runtime
//! thread stays busy and checks its sockets without sleeping, as SPDK's
//! reactors do, for dedicated cores.
//!
//! Why: by default a runtime thread with nothing to do sleeps in
//! `epoll_wait`, and the next packet must wake it. On a virtual machine
//! that wake-up (an interrupt to a halted virtual CPU) can cost tens of
//! microseconds, twice per round trip at queue depth 1
//! (`docs/performance.md`, *NVMe/TCP initiator fast path*). A polling
//! thread is never asleep, so no wake-up is needed.
//!
//! How: one task per runtime worker yields in a loop. Tokio polls its I/O
//! driver without blocking (`epoll_wait` with a zero timeout) before it
//! runs a task that yielded again, so each turn of the loop checks every
//! socket once and runs whatever became ready. The price is a whole core
//! per runtime thread, busy or not: polling is off by default, and the
//! engine's idle CPU is then zero.

use tokio_util::sync::CancellationToken;

/// Starts one polling task per worker of the current runtime; they stop
/// when `stop` is cancelled. Must be called from within the runtime.
pub fn spawn_pollers(stop: CancellationToken) {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    for _ in 0..workers.max(1) {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                tokio::task::yield_now().await;
            }
        });
    }
}
