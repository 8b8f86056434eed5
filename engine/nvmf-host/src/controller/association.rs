//! One association's life: its queues connected (Fabrics Connect, the
//! controller enabled through its properties), the keep-alive task, the
//! orderly shutdown, and the supervisor that reconnects a lost association
//! with backoff.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    cmd::{self, ControllerIdentity},
    error::HostError,
    options::ConnectOptions,
    queue::{Data, HostStats, Queue, QueueConfig, QueueError},
    slab::Completion,
};

/// Submits on one queue of an association under construction (no retry).
async fn setup_cmd(
    q: &Queue,
    what: &'static str,
    sqe: nvmf::Sqe,
    data: Data<'_>,
) -> Result<Completion, HostError> {
    match q.submit(sqe, data).await {
        Ok(c) => check(c, what),
        Err(QueueError::Timeout) => Err(HostError::Timeout { what }),
        Err(QueueError::Lost) => Err(HostError::Protocol(format!(
            "connection lost during {what}"
        ))),
        Err(QueueError::TooLarge) => Err(HostError::Invalid(what.into())),
        Err(e @ QueueError::ShortTransfer) => Err(HostError::Protocol(format!("{what}: {e}"))),
    }
}

async fn fabrics_connect(
    q: &Queue,
    opts: &ConnectOptions,
    qid: u16,
    depth: u16,
    cntlid: u16,
) -> Result<u16, HostError> {
    let data = cmd::connect_data(&opts.hostid, cntlid, &opts.subnqn, &opts.hostnqn);
    let c = setup_cmd(
        q,
        "fabrics connect",
        cmd::connect(qid, depth, if qid == 0 { opts.kato_ms } else { 0 }),
        Data::Write(&data),
    )
    .await?;
    Ok((c.dw0 & 0xffff) as u16)
}

async fn property_get(q: &Queue, offset: u32, size8: bool) -> Result<u64, HostError> {
    let c = setup_cmd(
        q,
        "property get",
        cmd::property_get(offset, size8),
        Data::None,
    )
    .await?;
    Ok(u64::from(c.dw0) | (u64::from(c.dw1) << 32))
}

async fn property_set(q: &Queue, offset: u32, value: u32) -> Result<(), HostError> {
    setup_cmd(
        q,
        "property set",
        cmd::property_set(offset, value),
        Data::None,
    )
    .await
    .map(|_| ())
}

/// Builds a whole association. Every queue shares `token`; on error the
/// token is cancelled, so nothing half-built stays connected.
pub(super) async fn establish(
    opts: &ConnectOptions,
    stats: &Arc<HostStats>,
) -> Result<(Arc<Association>, ControllerInfo), HostError> {
    let token = CancellationToken::new();
    // Cancelled on error and when this future is dropped half-way (the
    // supervisor's deadline, disconnect): nothing half-built stays open.
    let guard = token.clone().drop_guard();
    let r = establish_inner(opts, stats, token).await;
    if r.is_ok() {
        guard.disarm();
    }
    r
}

async fn establish_inner(
    opts: &ConnectOptions,
    stats: &Arc<HostStats>,
    token: CancellationToken,
) -> Result<(Arc<Association>, ControllerInfo), HostError> {
    let timeout = Duration::from_millis(u64::from(opts.io_timeout_ms.max(1)));
    let mut qcfg = QueueConfig {
        addr: opts.addr,
        qid: 0,
        depth: ADMIN_QUEUE_DEPTH,
        hdr_digest: opts.hdr_digest,
        data_digest: opts.data_digest,
        in_capsule_bytes: ADMIN_IN_CAPSULE_BYTES,
        timeout,
        stats: stats.clone(),
    };
    let admin = Queue::open(&qcfg, token.clone()).await?;
    let cntlid = fabrics_connect(&admin, opts, 0, ADMIN_QUEUE_DEPTH, cmd::CNTLID_DYNAMIC).await?;

    let cap = property_get(&admin, cmd::reg::CAP, true).await?;
    let cc = property_get(&admin, cmd::reg::CC, false).await? as u32;
    if cc & 1 == 0 {
        property_set(&admin, cmd::reg::CC, cmd::CC_ENABLE).await?;
    }
    // CAP.TO in 500 ms units.
    let ready_wait = Duration::from_millis(500 * ((cap >> 24) & 0xff).max(1)).min(MAX_READY_WAIT);
    let deadline = Instant::now() + ready_wait;
    loop {
        let csts = property_get(&admin, cmd::reg::CSTS, false).await? as u32;
        if csts & cmd::CSTS_CFS != 0 {
            return Err(HostError::NotReady(
                "controller fatal status (CSTS.CFS)".into(),
            ));
        }
        if csts & cmd::CSTS_RDY != 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(HostError::NotReady(format!(
                "CSTS.RDY not set within {} ms",
                ready_wait.as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut idbuf = vec![0u8; cmd::IDENTIFY_BYTES];
    setup_cmd(
        &admin,
        "identify controller",
        cmd::identify_controller(),
        Data::Read(&mut idbuf),
    )
    .await?;
    let identity = ControllerIdentity::parse(&idbuf);

    let c = setup_cmd(
        &admin,
        "set features (number of queues)",
        cmd::set_num_queues(opts.io_queues),
        Data::None,
    )
    .await?;
    let granted = ((c.dw0 & 0xffff).min(c.dw0 >> 16) + 1).min(u32::from(u16::MAX));
    let io_queues = opts.io_queues.min(granted as u16).max(1);
    let mqes = (cap & 0xffff) as u16;
    let depth = opts.queue_depth.min(mqes.saturating_add(1)).max(2);

    qcfg.depth = depth;
    qcfg.in_capsule_bytes = identity
        .in_capsule_bytes()
        .max(cmd::CONNECT_DATA_BYTES as u32);
    let mut io = Vec::with_capacity(usize::from(io_queues));
    for qid in 1..=io_queues {
        qcfg.qid = qid;
        let q = Queue::open(&qcfg, token.clone()).await?;
        fabrics_connect(&q, opts, qid, depth, cntlid).await?;
        io.push(q);
    }
    let maxh2cdata = io
        .iter()
        .map(|q| q.negotiated().maxh2cdata)
        .min()
        .unwrap_or(0);
    let wire = admin.negotiated().wire;
    let info = ControllerInfo {
        identity: identity.clone(),
        cap,
        io_queues,
        queue_depth: depth,
        in_capsule_bytes: identity.in_capsule_bytes(),
        maxh2cdata,
        hdr_digest: wire.hdr_digest,
        data_digest: wire.data_digest,
        mdts_bytes: identity.mdts_bytes(cap),
    };
    let assoc = Arc::new(Association {
        token,
        admin,
        io,
        cntlid,
    });
    if opts.kato_ms > 0 {
        tokio::spawn(keep_alive(assoc.clone(), opts.kato_ms));
    }
    tracing::debug!(
        addr = %opts.addr,
        subnqn = %opts.subnqn,
        cntlid,
        io_queues,
        depth,
        "nvmf association established"
    );
    Ok((assoc, info))
}

/// Sends Keep Alive every `kato_ms / 2` until the association ends; a
/// failed or unanswered Keep Alive ends it.
async fn keep_alive(assoc: Arc<Association>, kato_ms: u32) {
    let period = Duration::from_millis(u64::from(kato_ms / 2).max(100));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = assoc.token.cancelled() => return,
            _ = tick.tick() => {}
        }
        match assoc.admin.submit(cmd::keep_alive(), Data::None).await {
            Ok(c) if c.is_success() => {}
            Ok(c) => {
                tracing::warn!(status = ?c.status, "keep alive failed, dropping the association");
                assoc.kill();
                return;
            }
            Err(_) => {
                assoc.kill();
                return;
            }
        }
    }
}

pub(super) async fn shutdown_controller(assoc: &Association) -> Result<(), HostError> {
    let cc = property_get(&assoc.admin, cmd::reg::CC, false).await? as u32;
    property_set(
        &assoc.admin,
        cmd::reg::CC,
        (cc & !cmd::CC_SHN_MASK) | cmd::CC_SHN_NORMAL,
    )
    .await?;
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    loop {
        let csts = property_get(&assoc.admin, cmd::reg::CSTS, false).await? as u32;
        if csts & cmd::CSTS_SHST_MASK == cmd::CSTS_SHST_COMPLETE {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HostError::Timeout {
                what: "controller shutdown (CSTS.SHST)",
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Watches the live association and rebuilds it when it dies. Holds only
/// a weak reference so dropping every `Controller` handle ends it.
pub(super) async fn supervisor(weak: std::sync::Weak<Inner>) {
    loop {
        let (assoc, shutdown) = {
            let Some(inner) = weak.upgrade() else { return };
            let assoc = match &*inner.state.borrow() {
                State::Live(a) => a.clone(),
                _ => return,
            };
            (assoc, inner.shutdown.clone())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = assoc.token.cancelled() => {}
        }
        drop(assoc);
        let Some(inner) = weak.upgrade() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let flipped = inner.state.send_if_modified(|s| {
            if matches!(s, State::Live(_)) {
                *s = State::Reconnecting;
                true
            } else {
                false
            }
        });
        if !flipped {
            return;
        }
        let opts = inner.opts.clone();
        let stats = inner.stats.clone();
        let limit = Duration::from_millis(u64::from(opts.reconnect_timeout_ms));
        let deadline = Instant::now() + limit;
        drop(inner);
        tracing::warn!(addr = %opts.addr, subnqn = %opts.subnqn, "nvmf controller connection lost, reconnecting");
        let mut attempts = 0u32;
        let outcome = loop {
            attempts += 1;
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(deadline - now, establish(&opts, &stats)) => r,
            };
            match attempt {
                Ok(Ok((a, _))) => break Some(a),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, attempts, "nvmf reconnect attempt failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep_until((Instant::now() + RECONNECT_BACKOFF).min(deadline)) => {}
                    }
                }
                Err(_) => break None,
            }
        };
        let Some(inner) = weak.upgrade() else {
            if let Some(a) = outcome {
                a.kill();
            }
            return;
        };
        match outcome {
            Some(a) => {
                if inner.shutdown.is_cancelled() {
                    a.kill();
                    return;
                }
                tracing::info!(addr = %opts.addr, subnqn = %opts.subnqn, cntlid = a.cntlid, attempts, "nvmf controller reconnected");
                let installed = inner.state.send_if_modified(|s| {
                    if matches!(s, State::Reconnecting) {
                        *s = State::Live(a.clone());
                        true
                    } else {
                        false
                    }
                });
                if !installed {
                    a.kill();
                    return;
                }
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                tracing::error!(addr = %opts.addr, subnqn = %opts.subnqn, timeout_ms = opts.reconnect_timeout_ms, "nvmf controller lost: reconnect timed out");
                inner.state.send_if_modified(|s| {
                    if matches!(s, State::Reconnecting) {
                        *s = State::Failed;
                        true
                    } else {
                        false
                    }
                });
                return;
            }
        }
    }
}
