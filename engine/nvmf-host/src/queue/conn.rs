//! The connection task of a queue: reads in batches and delivers every
//! PDU under one lock, flushes what submitters could not write at once,
//! and runs the command-timeout watchdog. Ends (closing the queue and
//! failing its waiters) on any transport or protocol error, or when the
//! association is cancelled.

use super::*;

/// The connection task's own state.
pub(super) struct Conn {
    pub(super) rd: OwnedReadHalf,
    pub(super) rbuf: BytesMut,
    pub(super) sh: Arc<Shared>,
    pub(super) timeout: Duration,
    pub(super) depth: u16,
}

pub(super) async fn conn_task(mut c: Conn) {
    let token = c.sh.token.clone();
    tokio::select! {
        _ = token.cancelled() => {}
        r = conn_loop(&mut c) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "nvmf queue connection closed");
            }
        }
    }
    token.cancel();
    let mut wake = Vec::new();
    {
        let mut st = lock(&c.sh.st);
        st.slab.close(&mut wake);
        st.pending.clear();
        // Dropping the write half sends FIN: the controller sees the
        // connection end now, not when the last handle goes.
        st.wr = None;
    }
    c.sh.permits.close();
    wake_all(&mut wake);
}

/// Watchdog period for a command timeout: a quarter of it, within
/// 5 ms..=1 s.
fn watchdog_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

async fn conn_loop(c: &mut Conn) -> Result<(), String> {
    let period = watchdog_period(c.timeout);
    // A command submitted at tick t fails at the first tick > t + limit,
    // i.e. after timeout ..= timeout + period.
    let limit = (c.timeout.as_nanos() / period.as_nanos().max(1)).max(1) as u64;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wake: Vec<Waker> = Vec::with_capacity(usize::from(c.depth) + 1);
    let mut blocked = false;
    loop {
        if c.rbuf.capacity() - c.rbuf.len() < READ_MIN_ROOM {
            c.rbuf.reserve(READ_BUF_BYTES);
        }
        tokio::select! {
            biased;
            r = c.rd.readable() => {
                r.map_err(|e| format!("read: {e}"))?;
                match c.rd.try_read_buf(&mut c.rbuf) {
                    Ok(0) => return Err("connection closed by the controller".into()),
                    Ok(_) => {
                        if deliver(c, &mut wake)? {
                            // Let the woken submitters run (they append to
                            // `pending` while corked), then send the burst.
                            tokio::task::yield_now().await;
                            blocked = !c.sh.flush_some()?;
                        }
                    }
                    Err(e) if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            _ = c.sh.flush.notified(), if !blocked => {
                blocked = !c.sh.flush_some()?;
            }
            r = c.rd.as_ref().writable(), if blocked => {
                r.map_err(|e| format!("write: {e}"))?;
                blocked = !c.sh.flush_some()?;
            }
            _ = tick.tick() => {
                let now = c.sh.tick.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(deadline) = now.checked_sub(limit + 1) {
                    let n = lock(&c.sh.st).slab.expire(deadline, &mut wake);
                    if n > 0 {
                        wake_all(&mut wake);
                    }
                }
            }
        }
    }
}

/// Decodes every whole PDU in the receive buffer and hands them to their
/// commands under one lock, then wakes the submitters. `Ok(true)` when it
/// woke more than one and corked the queue (the caller must flush).
fn deliver(c: &mut Conn, wake: &mut Vec<Waker>) -> Result<bool, String> {
    let mut freed = 0;
    let result = {
        let mut st = lock(&c.sh.st);
        let mut r = Ok(());
        loop {
            match wire::decode(&mut c.rbuf, &c.sh.wire) {
                Ok(Some(pdu)) => match handle_pdu(&c.sh, &mut st.slab, pdu, wake) {
                    Ok(f) => freed += usize::from(f),
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        // A read's data and its response wake the same submitter twice.
        wake.dedup_by(|a, b| a.will_wake(b));
        let cork = r.is_ok() && wake.len() > 1;
        st.corked |= cork;
        r.map(|()| cork)
    };
    if freed > 0 {
        c.sh.permits.add_permits(freed);
    }
    wake_all(wake);
    result
}

/// One received PDU; `Ok(true)` when it freed an abandoned CID.
fn handle_pdu(
    sh: &Shared,
    slab: &mut Slab,
    pdu: RxPdu,
    wake: &mut Vec<Waker>,
) -> Result<bool, String> {
    match pdu {
        RxPdu::Resp { cid, completion } => {
            let (w, freed) = slab.complete(cid, completion).map_err(|e| e.to_string())?;
            wake.extend(w);
            Ok(freed)
        }
        RxPdu::C2h {
            cid,
            offset,
            data,
            success,
        } => {
            sh.stats.c2h_pdus.fetch_add(1, Ordering::Relaxed);
            wake.extend(
                slab.push_data(cid, offset, data)
                    .map_err(|e| e.to_string())?,
            );
            if success {
                let (w, freed) = slab
                    .complete(cid, Completion::default())
                    .map_err(|e| e.to_string())?;
                wake.extend(w);
                return Ok(freed);
            }
            Ok(false)
        }
        RxPdu::R2t {
            cid,
            ttag,
            offset,
            len,
        } => {
            if len == 0 || offset.checked_add(len).is_none() {
                return Err(format!("R2T with a bad range ({offset}+{len})"));
            }
            let w = slab
                .push_r2t(cid, R2tRequest { ttag, offset, len })
                .map_err(|e| format!("R2T: {e}"))?;
            wake.extend(w);
            Ok(false)
        }
        RxPdu::Term { fes } => Err(format!(
            "controller terminated the connection (fatal error status {fes:#x})"
        )),
        other => Err(format!("unexpected {} PDU", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_period_is_bounded() {
        assert_eq!(
            watchdog_period(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            watchdog_period(Duration::from_millis(300)),
            Duration::from_millis(75)
        );
        assert_eq!(
            watchdog_period(Duration::from_millis(1)),
            Duration::from_millis(5)
        );
    }
}
