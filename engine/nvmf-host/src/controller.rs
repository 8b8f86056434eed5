//! A connection to one remote NVMe-oF controller: association setup,
//! keep-alive, command retry and reconnect.
//!
//! Purpose: [`Controller::connect`] sets up an *association* (admin queue
//! plus I/O queues, see [`Association`]); `Controller::submit_io` sends
//! an I/O command on one of its queues (round robin), waiting while the
//! controller reconnects and retrying commands that were in flight on a
//! broken connection.
//!
//! Invariants:
//! - the controller is in exactly one `State`: `Live` (an association
//!   that may have just died), `Reconnecting`, `Failed` (the
//!   controller-loss timeout ran out: every pending and new I/O fails
//!   with [`HostError::ControllerLost`]) or `Closed` (after
//!   [`Controller::disconnect`]);
//! - one supervisor task per controller watches the live association and
//!   rebuilds it (all queues, new controller id) when it dies, for at most
//!   `reconnect_timeout_ms`;
//! - a command is retried only after a transport failure (lost
//!   connection, command timeout); a command that completed with an NVMe
//!   error status is returned as such, never retried. Block writes are
//!   idempotent, so replaying one that may have reached the media is safe;
//!   reservation commands are not all idempotent, so their callers learn
//!   whether a command was replayed (`submit_io_replayed`) and settle a
//!   replay's conflict with a Reservation Report ([`crate::reservation`]);
//! - a command that keeps timing out is failed after [`MAX_TIMEOUTS`]
//!   attempts, one whose connection keeps breaking after [`MAX_LOST`],
//!   instead of reconnecting forever;
//! - reads and writes are split by the caller ([`crate::namespace`]) and
//!   the pieces are sent one after the other.
//!
//! Hot path (`submit_io`): no allocation, no logs, no global lock: a
//! `watch` read of the per-controller state and an atomic round-robin
//! counter.
//!
//! Threading model: `Controller` is a cheap `Arc` handle, `Send + Sync`;
//! the supervisor and keep-alive tasks run on the tokio runtime, so
//! [`Controller::connect`] must be called from within one. Dropping the
//! last handle cancels every task and closes every socket.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    cmd::{self, ControllerIdentity, NamespaceIdentity},
    error::HostError,
    options::ConnectOptions,
    queue::{Data, HostStats, Queue, QueueConfig, QueueError},
    slab::Completion,
};

/// Depth of the admin queue (as Linux: 32).
pub const ADMIN_QUEUE_DEPTH: u16 = 32;
/// Largest in-capsule data on the admin queue (Connect needs 1024).
const ADMIN_IN_CAPSULE_BYTES: u32 = 8192;
/// Commands that time out this many times fail.
pub const MAX_TIMEOUTS: u32 = 3;
/// Commands whose connection broke under them this many times fail.
pub const MAX_LOST: u32 = 16;
/// Delay between reconnect attempts.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// Upper bound on waiting for CSTS.RDY (CAP.TO may ask for less).
const MAX_READY_WAIT: Duration = Duration::from_secs(30);
/// Waiting for CSTS.SHST after CC.SHN.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The host's own cap on bytes per command (besides MDTS).
pub const MAX_IO_BYTES: u64 = 1 << 20;

/// One association: the admin queue and the I/O queues of one controller
/// id, all sharing one cancellation token (any transport failure ends
/// the whole association).
#[derive(Debug)]
pub struct Association {
    token: CancellationToken,
    admin: Arc<Queue>,
    io: Vec<Arc<Queue>>,
    cntlid: u16,
}

impl Association {
    fn is_dead(&self) -> bool {
        self.token.is_cancelled()
    }

    fn kill(&self) {
        self.token.cancel();
    }
}

/// Lifecycle state of a controller.
#[derive(Debug, Clone)]
enum State {
    Live(Arc<Association>),
    Reconnecting,
    Failed,
    Closed,
}

/// Fixed facts about the controller, learnt at the first connect.
#[derive(Debug, Clone)]
pub struct ControllerInfo {
    /// Identify Controller fields the host uses.
    pub identity: ControllerIdentity,
    /// CAP register.
    pub cap: u64,
    /// Granted number of I/O queues.
    pub io_queues: u16,
    /// Depth of each I/O queue.
    pub queue_depth: u16,
    /// Writes up to this size go in-capsule.
    pub in_capsule_bytes: u32,
    /// MAXH2CDATA of the I/O queues.
    pub maxh2cdata: u32,
    /// Header digests negotiated.
    pub hdr_digest: bool,
    /// Data digests negotiated.
    pub data_digest: bool,
    /// MDTS in bytes (`None`: unlimited).
    pub mdts_bytes: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    opts: ConnectOptions,
    state: watch::Sender<State>,
    rr: AtomicUsize,
    shutdown: CancellationToken,
    info: ControllerInfo,
    stats: Arc<HostStats>,
}

/// Handle to a connected controller. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    /// Connects: admin queue, controller enable, identify, I/O queues.
    pub async fn connect(opts: ConnectOptions) -> Result<Controller, HostError> {
        if opts.queue_depth < 2 || opts.io_queues == 0 {
            return Err(HostError::Invalid(
                "queue_depth must be at least 2 and io_queues at least 1".into(),
            ));
        }
        let stats = Arc::new(HostStats::default());
        let (assoc, info) = establish(&opts, &stats).await?;
        let (state, _) = watch::channel(State::Live(assoc));
        let inner = Arc::new(Inner {
            opts,
            state,
            rr: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            info,
            stats,
        });
        tokio::spawn(supervisor(Arc::downgrade(&inner)));
        Ok(Controller { inner })
    }

    /// Connects to the controller named by an `nvmf://` URI.
    pub async fn connect_uri(uri: &str) -> Result<Controller, HostError> {
        Self::connect(ConnectOptions::from_uri(uri)?).await
    }

    /// The options this controller was connected with.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.opts
    }

    /// Facts learnt at connect time.
    pub fn info(&self) -> &ControllerInfo {
        &self.inner.info
    }

    /// Counters of this controller's queues (across reconnects).
    pub fn stats(&self) -> &HostStats {
        &self.inner.stats
    }

    /// Controller id of the current association (`None` while not live).
    pub fn cntlid(&self) -> Option<u16> {
        match &*self.inner.state.borrow() {
            State::Live(a) if !a.is_dead() => Some(a.cntlid),
            _ => None,
        }
    }

    /// Whether the controller currently has a live association.
    pub fn is_live(&self) -> bool {
        self.cntlid().is_some()
    }

    /// Whether the controller is lost for good: its connection broke and
    /// it could not reconnect within the reconnect timeout (every later
    /// command fails).
    pub fn is_lost(&self) -> bool {
        matches!(&*self.inner.state.borrow(), State::Failed)
    }

    /// Identifies namespace `nsid` (1-based).
    pub async fn identify_namespace(&self, nsid: u32) -> Result<NamespaceIdentity, HostError> {
        if nsid == 0 || nsid > self.inner.info.identity.nn {
            return Err(HostError::NoNamespace { nsid });
        }
        let mut buf = vec![0u8; cmd::IDENTIFY_BYTES];
        let c = self
            .submit_admin(
                "identify namespace",
                cmd::identify_namespace(nsid),
                Data::Read(&mut buf),
            )
            .await?;
        check(c, "identify namespace")?;
        NamespaceIdentity::parse(&buf).ok_or(HostError::NoNamespace { nsid })
    }

    /// Drops the current association (as if the connection broke): the
    /// controller reconnects. For tests and drills.
    pub fn reset(&self) {
        if let State::Live(a) = &*self.inner.state.borrow() {
            a.kill();
        }
    }

    /// Shuts the controller down (CC.SHN, wait for CSTS.SHST) and closes
    /// every connection. Pending and later I/O fail with
    /// [`HostError::Disconnected`].
    pub async fn disconnect(&self) -> Result<(), HostError> {
        self.inner.shutdown.cancel();
        let prev = self.inner.state.send_replace(State::Closed);
        let State::Live(assoc) = prev else {
            return Ok(());
        };
        if assoc.is_dead() {
            return Ok(());
        }
        let result = shutdown_controller(&assoc).await;
        assoc.kill();
        result
    }

    /// Waits for a live association; fails when the controller is lost
    /// or closed.
    async fn live(&self) -> Result<Arc<Association>, HostError> {
        let mut rx = self.inner.state.subscribe();
        let state = rx
            .wait_for(|s| match s {
                State::Live(a) => !a.is_dead(),
                State::Reconnecting => false,
                State::Failed | State::Closed => true,
            })
            .await
            .map_err(|_| self.disconnected())?;
        match &*state {
            State::Live(a) => Ok(a.clone()),
            State::Failed => Err(self.lost()),
            _ => Err(self.disconnected()),
        }
    }

    fn lost(&self) -> HostError {
        HostError::ControllerLost {
            subnqn: self.inner.opts.subnqn.clone(),
            addr: self.inner.opts.addr,
            after_ms: self.inner.opts.reconnect_timeout_ms,
        }
    }

    fn disconnected(&self) -> HostError {
        HostError::Disconnected {
            subnqn: self.inner.opts.subnqn.clone(),
            addr: self.inner.opts.addr,
        }
    }

    /// Sends an I/O command, retrying it across reconnects.
    ///
    /// `data` is reborrowed for each attempt; write data is shared, not
    /// copied, between attempts.
    pub(crate) async fn submit_io(
        &self,
        what: &'static str,
        sqe: nvmf::Sqe,
        mut data: Data<'_>,
    ) -> Result<Completion, HostError> {
        self.submit(what, sqe, &mut data, false)
            .await
            .map(|(c, _)| c)
    }

    /// As [`Controller::submit_io`], and says whether the command was
    /// sent more than once (an earlier attempt was lost to a transport
    /// failure and may or may not have been executed).
    pub(crate) async fn submit_io_replayed(
        &self,
        what: &'static str,
        sqe: nvmf::Sqe,
        mut data: Data<'_>,
    ) -> Result<(Completion, bool), HostError> {
        self.submit(what, sqe, &mut data, false).await
    }

    async fn submit_admin(
        &self,
        what: &'static str,
        sqe: nvmf::Sqe,
        mut data: Data<'_>,
    ) -> Result<Completion, HostError> {
        self.submit(what, sqe, &mut data, true)
            .await
            .map(|(c, _)| c)
    }

    async fn submit(
        &self,
        what: &'static str,
        sqe: nvmf::Sqe,
        data: &mut Data<'_>,
        admin: bool,
    ) -> Result<(Completion, bool), HostError> {
        let mut timeouts = 0;
        let mut lost = 0;
        loop {
            let assoc = self.live().await?;
            let queue = if admin {
                &assoc.admin
            } else {
                let n = self.inner.rr.fetch_add(1, Ordering::Relaxed);
                &assoc.io[n % assoc.io.len()]
            };
            let attempt = match data {
                Data::None => Data::None,
                Data::Read(buf) => Data::Read(buf),
                Data::Write(b) => Data::Write(b.clone()),
            };
            match queue.submit(sqe, attempt).await {
                Ok(c) => return Ok((c, timeouts + lost > 0)),
                Err(QueueError::Lost) => {
                    lost += 1;
                    assoc.kill();
                    if lost >= MAX_LOST {
                        return Err(HostError::Unstable {
                            subnqn: self.inner.opts.subnqn.clone(),
                            addr: self.inner.opts.addr,
                            what,
                            attempts: lost,
                        });
                    }
                }
                Err(QueueError::ShortTransfer) => {
                    // The controller broke the protocol: start afresh.
                    assoc.kill();
                    return Err(HostError::Protocol(format!(
                        "{what}: {}",
                        QueueError::ShortTransfer
                    )));
                }
                Err(QueueError::Timeout) => {
                    timeouts += 1;
                    assoc.kill();
                    if timeouts >= MAX_TIMEOUTS {
                        return Err(HostError::Unresponsive {
                            subnqn: self.inner.opts.subnqn.clone(),
                            addr: self.inner.opts.addr,
                            what,
                            attempts: timeouts,
                        });
                    }
                }
                Err(QueueError::TooLarge) => {
                    return Err(HostError::Invalid(format!("{what}: buffer too large")))
                }
            }
        }
    }
}

/// Turns a non-success completion into an error.
pub(crate) fn check(c: Completion, op: &'static str) -> Result<Completion, HostError> {
    if c.is_success() {
        Ok(c)
    } else {
        Err(HostError::Status {
            op,
            status: c.status,
        })
    }
}

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
        Data::Write(Bytes::from(data)),
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
async fn establish(
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

async fn shutdown_controller(assoc: &Association) -> Result<(), HostError> {
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
async fn supervisor(weak: std::sync::Weak<Inner>) {
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

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let State::Live(a) = &*self.state.borrow() {
            a.kill();
        }
    }
}
