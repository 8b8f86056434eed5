//! What a reconcile pass asks for next, and the one error policy.
//!
//! A pass returns an [`Action`] (run again after a delay, or wait for the
//! next resync) or a [`ReconcileError`] (some items failed). [`drive`]
//! turns that into the delay before the next pass: errors back off
//! exponentially per [`ErrorPolicy`] and the backoff resets after a pass
//! that succeeds. Modelled on kube-rs's controller runtime
//! (`Action::requeue` / `Action::await_change` and an `error_policy`).
//! Nothing here waits on a lock or calls an engine: it is pure timing,
//! tested under `tokio::time::pause`.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::CoreError;

/// What a reconciler asks for after a pass that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run again after this long (at most the period): something is
    /// under way (a wait that ends, a busy resource skipped).
    Requeue(Duration),
    /// Nothing left to do: run again at the reconciler's period, the
    /// periodic resync standing for a change notification.
    AwaitChange,
}

/// A pass in which some items failed (the others were reconciled).
#[derive(Debug, thiserror::Error)]
#[error("{failed} item(s) failed; first: {what}: {first}")]
pub struct ReconcileError {
    /// How many items failed.
    pub failed: usize,
    /// The first failed item (e.g. `volume <uuid>: cannot retire the
    /// replica`).
    pub what: String,
    #[source]
    pub first: CoreError,
}

/// The result of one pass.
pub type ReconcileResult = Result<Action, ReconcileError>;

/// Collects what the items of one pass asked for and how they failed.
#[derive(Debug, Default)]
pub struct Outcome {
    requeue: Option<Duration>,
    failed: usize,
    first: Option<(String, CoreError)>,
}

impl Outcome {
    /// Asks for a pass within `after` (the shortest ask wins).
    pub fn requeue(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |d| d.min(after)));
    }

    /// Records a failed item: `what` says which and what was tried.
    pub fn fail(&mut self, what: impl Into<String>, error: CoreError) {
        let what = what.into();
        debug!(item = %what, error = %error, "reconcile item failed");
        self.failed += 1;
        if self.first.is_none() {
            self.first = Some((what, error));
        }
    }

    /// The pass's result.
    pub fn finish(self) -> ReconcileResult {
        match self.first {
            Some((what, first)) => Err(ReconcileError {
                failed: self.failed,
                what,
                first,
            }),
            None => Ok(self.requeue.map_or(Action::AwaitChange, Action::Requeue)),
        }
    }
}

/// Delay before a pass after failed ones: `first` after one failure,
/// doubling with each further one, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorPolicy {
    pub first: Duration,
    pub max: Duration,
}

impl ErrorPolicy {
    /// The policy of a reconciler with `period`: half a period after the
    /// first failure (a transient error clears fast), up to four periods.
    pub fn for_period(period: Duration) -> Self {
        let first = (period / 2).max(Duration::from_millis(50));
        Self {
            first,
            max: (period * 4).max(first),
        }
    }

    /// The delay after `consecutive` failed passes (at least 1).
    pub fn delay(&self, consecutive: u32) -> Duration {
        let doublings = consecutive.saturating_sub(1).min(20);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// The delay before the next pass after `result`, given the count of
/// consecutive failures so far (updated).
pub fn next_delay(
    result: &ReconcileResult,
    period: Duration,
    policy: &ErrorPolicy,
    failures: &mut u32,
) -> Duration {
    match result {
        Ok(Action::Requeue(after)) => {
            *failures = 0;
            // The periodic resync comes at the period in any case.
            (*after).min(period)
        }
        Ok(Action::AwaitChange) => {
            *failures = 0;
            period
        }
        Err(_) => {
            *failures = failures.saturating_add(1);
            policy.delay(*failures)
        }
    }
}

/// Runs passes of one reconciler until `stop`, starting from the result
/// of a first pass already run; each result picks the delay before the
/// next pass.
pub async fn drive<F, Fut>(
    name: &'static str,
    period: Duration,
    first: ReconcileResult,
    stop: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ReconcileResult>,
{
    let policy = ErrorPolicy::for_period(period);
    let mut failures = 0;
    let mut result = first;
    loop {
        let delay = next_delay(&result, period, &policy, &mut failures);
        if let Err(e) = &result {
            warn!(
                reconciler = name,
                failed = e.failed,
                retry_in_ms = delay.as_millis() as u64,
                error = %e,
                "reconcile pass left work undone"
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        result = pass().await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use tokio::time::Instant;

    use super::*;

    fn failure() -> ReconcileResult {
        let mut o = Outcome::default();
        o.fail("volume v", CoreError::Internal("engine away".into()));
        o.finish()
    }

    #[test]
    fn outcome_is_shortest_requeue_or_first_error() {
        assert_eq!(Outcome::default().finish().ok(), Some(Action::AwaitChange));
        let mut o = Outcome::default();
        o.requeue(Duration::from_secs(5));
        o.requeue(Duration::from_secs(2));
        assert_eq!(
            o.finish().ok(),
            Some(Action::Requeue(Duration::from_secs(2)))
        );
        let mut o = Outcome::default();
        o.requeue(Duration::from_secs(1));
        o.fail(
            "volume a: cannot add a replica",
            CoreError::Internal("x".into()),
        );
        o.fail(
            "volume b: cannot add a replica",
            CoreError::Internal("y".into()),
        );
        let e = o.finish().expect_err("failed items make an error");
        assert_eq!(e.failed, 2);
        assert!(e.to_string().contains("volume a"), "{e}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = ErrorPolicy::for_period(Duration::from_secs(2));
        let delays: Vec<u64> = (1..=6).map(|n| p.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, vec![1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(p.delay(u32::MAX), p.max);
        // Tiny periods still wait a little.
        assert_eq!(
            ErrorPolicy::for_period(Duration::ZERO).first,
            Duration::from_millis(50)
        );
    }

    /// Runs [`drive`] over scripted results under paused time and returns
    /// when each pass ran, relative to the start.
    async fn passes_at(period: Duration, script: Vec<ReconcileResult>) -> Vec<Duration> {
        let start = Instant::now();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (s, t, st) = (script.clone(), seen.clone(), stop.clone());
        let first = s
            .lock()
            .expect("script")
            .pop_front()
            .expect("a first result");
        let driver = tokio::spawn(drive("test", period, first, stop.clone(), move || {
            let (s, t, st) = (s.clone(), t.clone(), st.clone());
            async move {
                t.lock().expect("seen").push(start.elapsed());
                let next = s.lock().expect("script").pop_front();
                match next {
                    Some(r) => r,
                    None => {
                        st.cancel();
                        Ok(Action::AwaitChange)
                    }
                }
            }
        }));
        driver.await.expect("driver");
        let seen = seen.lock().expect("seen").clone();
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn actions_and_errors_pick_the_delays() {
        let period = Duration::from_secs(4);
        let at = passes_at(
            period,
            vec![
                Ok(Action::AwaitChange),                     // -> +4 s
                Ok(Action::Requeue(Duration::from_secs(1))), // -> +1 s
                failure(),                                   // -> +2 s (half a period)
                failure(),                                   // -> +4 s
                failure(),                                   // -> +8 s
                failure(),                                   // -> +16 s (cap: 4 periods)
                failure(),                                   // -> +16 s
                Ok(Action::AwaitChange),                     // -> +4 s, backoff reset
                failure(),                                   // -> +2 s again
            ],
        )
        .await;
        let secs: Vec<u64> = at.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, vec![4, 5, 7, 11, 19, 35, 51, 55, 57]);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let started = Instant::now();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            s.cancel();
        });
        drive(
            "test",
            Duration::from_secs(3600),
            Ok(Action::AwaitChange),
            stop,
            || async { panic!("no pass may run after stop") },
        )
        .await;
        assert_eq!(started.elapsed().as_secs(), 3);
    }
}
