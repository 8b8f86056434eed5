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
//!
//! This module holds the handle and command submission; `association` the
//! set-up, keep-alive, shutdown and reconnection of an association.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    cmd::{self, ControllerIdentity, NamespaceIdentity},
    error::HostError,
    options::ConnectOptions,
    queue::{Data, HostStats, Queue, QueueError},
    slab::Completion,
};

mod association;

use association::{establish, shutdown_controller, supervisor};

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
        // Fast path (every I/O): one read of the current state.
        if let State::Live(a) = &*self.inner.state.borrow() {
            if !a.is_dead() {
                return Ok(a.clone());
            }
        }
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
    /// `data` is reborrowed for each attempt; write data is sent from the
    /// caller's buffer by every attempt (never copied).
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
                Data::Write(b) => Data::Write(b),
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

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let State::Live(a) = &*self.state.borrow() {
            a.kill();
        }
    }
}
