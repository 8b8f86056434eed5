//! Fabrics commands: Connect (admin and I/O queues, host and subsystem
//! checks, controller-ID allocation), Property Get/Set, and the controller
//! teardown when its queue ends.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc, Mutex,
};

use bytes::{Bytes, BytesMut};
use nvmf::fabrics::{self, cc, csts, fctype, reg, ConnectCmd, ConnectData, PropertyCmd};
use nvmf::nvme::{sc, sc_cmd, sct, Cqe, Sqe, Status};
use tokio::time::Instant;

use super::{Conn, End, Queue};
use crate::io::{err, Done, IoCtx};
use crate::locks;
use crate::subsystem::{Controller, HostKey};

impl Conn {
    pub(super) async fn fabrics(&mut self, sqe: Sqe, data: Bytes) -> Result<(), End> {
        match sqe.fctype() {
            fctype::CONNECT => {
                let (status, dw0) = if self.q.is_some() {
                    (err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR), 0)
                } else {
                    match self.connect(&sqe, &data) {
                        Ok(cntlid) => (Status::SUCCESS, u32::from(cntlid)),
                        Err((s, dw0)) => (s, dw0),
                    }
                };
                if !status.is_success() {
                    self.inner
                        .counters
                        .error_completions
                        .fetch_add(1, Ordering::Relaxed);
                }
                let mut cqe = Cqe::new(sqe.cid, status);
                cqe.dw0 = dw0;
                self.finish(Done {
                    buf: BytesMut::new(),
                    cqe,
                })
                .await
            }
            fctype::PROPERTY_GET | fctype::PROPERTY_SET => {
                let Some(q) = &self.q else {
                    return self
                        .complete(sqe.cid, err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR))
                        .await;
                };
                if q.qid != 0 {
                    return self
                        .complete(sqe.cid, err(sct::GENERIC, sc::INVALID_FIELD))
                        .await;
                }
                let p = PropertyCmd::from_sqe(&sqe);
                let ctrl = q.ctrl.clone();
                let r = if sqe.fctype() == fctype::PROPERTY_GET {
                    self.property_get(&ctrl, &p)
                } else {
                    property_set(&ctrl, &p).map(|()| 0)
                };
                match r {
                    Ok(v) => {
                        let mut cqe = Cqe::new(sqe.cid, Status::SUCCESS);
                        cqe.dw0 = v as u32;
                        cqe.dw1 = (v >> 32) as u32;
                        self.finish(Done {
                            buf: BytesMut::new(),
                            cqe,
                        })
                        .await
                    }
                    Err(s) => self.complete(sqe.cid, s).await,
                }
            }
            fctype::DISCONNECT => {
                self.complete(sqe.cid, Status::SUCCESS).await?;
                Err(End::Closed)
            }
            _ => {
                self.complete(sqe.cid, err(sct::GENERIC, sc::INVALID_OPCODE))
                    .await
            }
        }
    }

    fn property_get(&self, ctrl: &Controller, p: &PropertyCmd) -> Result<u64, Status> {
        let cfg = &self.inner.cfg;
        let v = match p.offset {
            reg::CAP => fabrics::cap(cfg.max_queue_depth - 1, 30),
            reg::VS => u64::from(fabrics::VS_1_3),
            reg::CC => u64::from(ctrl.cc.load(Ordering::Acquire)),
            reg::CSTS => u64::from(ctrl.csts.load(Ordering::Acquire)),
            reg::NSSR => 0,
            _ => return Err(err(sct::GENERIC, sc::INVALID_FIELD)),
        };
        Ok(v)
    }

    fn connect(&mut self, sqe: &Sqe, data: &Bytes) -> Result<u16, (Status, u32)> {
        let ip = |s: u8, in_data: bool, off: u16| {
            (
                err(sct::COMMAND_SPECIFIC, s),
                fabrics::invalid_params_dw0(in_data, off),
            )
        };
        let inval = sc_cmd::CONNECT_INVALID_PARAMETERS;
        let cmd = ConnectCmd::from_sqe(sqe);
        if cmd.recfmt != 0 {
            return Err((
                err(sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INCOMPATIBLE_FORMAT),
                0,
            ));
        }
        let cd = ConnectData::from_bytes(data).map_err(|e| ip(inval, true, e.offset()))?;
        let cfg = &self.inner.cfg;
        if cmd.sqsize == 0 || cmd.sqsize > cfg.max_queue_depth - 1 {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_SQSIZE_OFFSET));
        }
        let host = HostKey {
            hostid: cd.hostid,
            hostnqn: cd.hostnqn.clone(),
        };
        let discovery = cd.subnqn == nvmf::DISCOVERY_NQN;
        let subsys = if discovery {
            None
        } else {
            let s = self
                .inner
                .subsystem(&cd.subnqn)
                .ok_or_else(|| ip(inval, true, fabrics::CONNECT_DATA_SUBNQN_OFFSET))?;
            if !s.allows(&cd.hostnqn) {
                return Err(ip(
                    sc_cmd::CONNECT_INVALID_HOST,
                    true,
                    fabrics::CONNECT_DATA_HOSTNQN_OFFSET,
                ));
            }
            Some(s)
        };
        let flow_disabled = cmd.cattr & fabrics::CATTR_DISABLE_SQ_FLOW != 0;
        if cmd.qid == 0 {
            if cd.cntlid != fabrics::CNTLID_DYNAMIC && cd.cntlid != 0xfffe {
                return Err(ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET));
            }
            let cntlid = self.inner.alloc_cntlid(subsys.as_deref()).ok_or((
                err(sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_CONTROLLER_BUSY),
                0,
            ))?;
            let kato = if cmd.kato_ms == 0 {
                0
            } else {
                cmd.kato_ms.max(cfg.keep_alive_min_ms)
            };
            let parent = subsys
                .as_ref()
                .map(|s| s.cancel.child_token())
                .unwrap_or_default();
            let ctrl = Arc::new(Controller {
                cntlid,
                host: host.clone(),
                subsys: subsys.clone(),
                kato_ms: AtomicU32::new(kato),
                cc: AtomicU32::new(0),
                csts: AtomicU32::new(0),
                aec: AtomicU32::new(0),
                io_queues: Mutex::new(Default::default()),
                nr_io_queues: AtomicU32::new(u32::from(cfg.max_io_queues)),
                cancel: parent,
            });
            let guard = subsys.as_ref().map(|s| {
                locks::lock("controllers", &s.ctrls).insert(cntlid, ctrl.clone());
                s.attach()
            });
            // The admin queue reports the subsystem's ANA changes from now.
            self.ana_rx = subsys.as_ref().map(|s| s.ana.subscribe());
            self.inner
                .counters
                .controllers_created
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %self.peer, subnqn = %cd.subnqn, hostnqn = %cd.hostnqn, cntlid, "nvmf controller created");
            self.last_admin = Instant::now();
            self.q = Some(Queue {
                ctrl,
                qid: 0,
                sqsize: cmd.sqsize,
                sq_head: 1,
                flow_disabled,
                io: None,
                _guard: guard,
            });
            return Ok(cntlid);
        }
        let Some(s) = subsys else {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        };
        if cmd.qid > cfg.max_io_queues {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        }
        let found = locks::lock("controllers", &s.ctrls)
            .get(&cd.cntlid)
            .cloned();
        let ctrl = found.ok_or_else(|| ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET))?;
        if ctrl.host.hostnqn != cd.hostnqn {
            return Err(ip(inval, true, fabrics::CONNECT_DATA_HOSTNQN_OFFSET));
        }
        if ctrl.cancel.is_cancelled() {
            return Err(ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET));
        }
        let fresh = locks::lock("i/o queues", &ctrl.io_queues).insert(cmd.qid);
        if !fresh {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        }
        let io = Arc::new(IoCtx {
            inner: self.inner.clone(),
            subsys: s.clone(),
            host: ctrl.host.clone(),
            cntlid: ctrl.cntlid,
            opts: self.opts,
        });
        tracing::debug!(peer = %self.peer, cntlid = ctrl.cntlid, qid = cmd.qid, "nvmf i/o queue connected");
        let cntlid = ctrl.cntlid;
        let guard = s.attach();
        self.q = Some(Queue {
            ctrl,
            qid: cmd.qid,
            sqsize: cmd.sqsize,
            sq_head: 1,
            flow_disabled,
            io: Some(io),
            _guard: Some(guard),
        });
        Ok(cntlid)
    }

    pub(super) fn teardown(&mut self) {
        let Some(q) = self.q.take() else { return };
        if q.qid != 0 {
            locks::lock("i/o queues", &q.ctrl.io_queues).remove(&q.qid);
            return;
        }
        q.ctrl.cancel.cancel();
        if let Some(s) = &q.ctrl.subsys {
            locks::lock("controllers", &s.ctrls).remove(&q.ctrl.cntlid);
        }
        self.inner
            .free_cntlid(q.ctrl.subsys.as_deref(), q.ctrl.cntlid);
        tracing::info!(peer = %self.peer, cntlid = q.ctrl.cntlid, "nvmf controller destroyed");
    }
}

fn property_set(ctrl: &Controller, p: &PropertyCmd) -> Result<(), Status> {
    match p.offset {
        reg::CC => {
            let v = p.value as u32;
            ctrl.cc.store(v, Ordering::Release);
            let mut st = ctrl.csts.load(Ordering::Acquire);
            if v & cc::EN != 0 {
                st |= csts::RDY;
            } else {
                st &= !csts::RDY;
            }
            if v & cc::SHN_MASK != 0 {
                st = (st & !csts::SHST_MASK) | csts::SHST_COMPLETE;
            } else {
                st &= !csts::SHST_MASK;
            }
            ctrl.csts.store(st, Ordering::Release);
            Ok(())
        }
        reg::NSSR => Ok(()),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}
