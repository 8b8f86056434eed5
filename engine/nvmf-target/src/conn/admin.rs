//! Admin commands: Identify, Get Log Page (error, SMART, changed
//! namespaces, ANA, discovery), Set/Get Features, Keep Alive, Abort and
//! Async Event Request. A command that returns data has its lengths
//! checked (the transfer against MDTS, its own length field against the
//! transfer) before a page is built or a buffer allocated.

use std::sync::{atomic::Ordering, Arc};

use bytes::{Bytes, BytesMut};
use nvmf::admin::{self as adm, cns, fid, lid};
use nvmf::fabrics;
use nvmf::nvme::{admin_opc, sc, sc_cmd, sct, sgl, Cqe, Sqe, Status};

use super::{Conn, End};
use crate::io::{err, put_c2h, Done};
use crate::locks;
use crate::subsystem::{Controller, Subsystem};

impl Conn {
    pub(super) async fn admin(&mut self, sqe: Sqe, data: Bytes) -> Result<(), End> {
        let Some(q) = &self.q else {
            return self
                .complete(sqe.cid, err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR))
                .await;
        };
        let ctrl = q.ctrl.clone();
        let _ = data;
        // Every length the host supplies is checked before a page is built
        // or a buffer allocated: the transfer (SGL length) against MDTS and
        // the command's own length field against the transfer.
        if sqe.data_direction() == 2 {
            if let Err(s) = self.check_c2h_transfer(&sqe) {
                return self.complete(sqe.cid, s).await;
            }
        }
        let r: Result<(u32, Option<Vec<u8>>), Status> = match sqe.opcode {
            admin_opc::IDENTIFY => self.identify(&ctrl, &sqe).map(|d| (0, Some(d))),
            admin_opc::GET_LOG_PAGE => self.get_log(&ctrl, &sqe).map(|d| (0, Some(d))),
            admin_opc::SET_FEATURES => {
                set_features(&ctrl, &sqe, &self.inner.cfg).map(|v| (v, None))
            }
            admin_opc::GET_FEATURES => get_features(&ctrl, &sqe).map(|v| (v, None)),
            admin_opc::KEEP_ALIVE => Ok((0, None)),
            admin_opc::ABORT => Ok((1, None)),
            admin_opc::ASYNC_EVENT_REQUEST => {
                if self.parked_aers.len() >= 4 {
                    Err(err(sct::COMMAND_SPECIFIC, sc_cmd::AER_LIMIT_EXCEEDED))
                } else {
                    self.parked_aers.push(sqe.cid);
                    return self.send_ana_notice();
                }
            }
            _ => Err(err(sct::GENERIC, sc::INVALID_OPCODE)),
        };
        match r {
            Ok((dw0, page)) => {
                let mut buf = BytesMut::new();
                if let Some(page) = page {
                    if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID))
                            .await;
                    }
                    if sqe.dptr.len > self.inner.cfg.mdts_bytes {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID))
                            .await;
                    }
                    put_c2h(&mut buf, sqe.cid, &page, sqe.dptr.len, self.opts);
                }
                let mut cqe = Cqe::new(sqe.cid, Status::SUCCESS);
                cqe.dw0 = dw0;
                self.finish(Done { buf, cqe }).await
            }
            Err(s) => self.complete(sqe.cid, s).await,
        }
    }

    /// Checks the data a controller-to-host admin command asks for: a
    /// transport SGL of at most MDTS, and for Get Log Page a NUMD that
    /// fits in it (a log page is never built larger than the transfer).
    fn check_c2h_transfer(&self, sqe: &Sqe) -> Result<(), Status> {
        if sqe.dptr.len == 0 {
            return Ok(());
        }
        if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
            return Err(err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID));
        }
        if sqe.dptr.len > self.inner.cfg.mdts_bytes {
            return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
        }
        if sqe.opcode == admin_opc::GET_LOG_PAGE {
            let g = adm::GetLogPageCmd::from_sqe(sqe);
            if g.len_bytes > u64::from(sqe.dptr.len) {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
        }
        Ok(())
    }

    fn identify(&self, ctrl: &Controller, sqe: &Sqe) -> Result<Vec<u8>, Status> {
        let id = adm::IdentifyCmd::from_sqe(sqe);
        let cfg = &self.inner.cfg;
        let subsys = ctrl.subsys.as_ref();
        match id.cns {
            cns::CONTROLLER => {
                let mdts = (cfg.mdts_bytes / 4096).trailing_zeros() as u8;
                let mut c = adm::IdentifyController {
                    serial: cfg.serial.clone(),
                    model: cfg.model.clone(),
                    firmware: cfg.firmware.clone(),
                    mdts,
                    cntlid: ctrl.cntlid,
                    ver: fabrics::VS_1_3,
                    ctratt: 1,
                    cntrltype: 2,
                    aerl: 3,
                    lpa: 1 << 2,
                    kas: 10,
                    maxcmd: cfg.max_queue_depth,
                    sgls: adm::sgls::SUPPORTED | adm::sgls::OFFSET,
                    subnqn: nvmf::DISCOVERY_NQN.into(),
                    ioccsz: (64 + cfg.in_capsule_data_bytes) / 16,
                    iorcsz: 1,
                    msdbd: 1,
                    ..Default::default()
                };
                if let Some(s) = subsys {
                    c.cntrltype = 1;
                    c.subnqn = s.nqn.clone();
                    c.oaes = (1 << 8) | (1 << 11);
                    c.cmic = (1 << 1) | (1 << 3);
                    c.anatt = 10;
                    c.anacap = 1;
                    c.anagrpmax = 1;
                    c.nanagrpid = 1;
                    c.nn = 1;
                    c.mnan = 1;
                    c.oncs = adm::oncs::DSM | adm::oncs::WRITE_ZEROES | adm::oncs::RESERVATIONS;
                    c.vwc = true;
                }
                Ok(c.to_bytes())
            }
            cns::NAMESPACE => {
                let s = subsys.ok_or(err(sct::GENERIC, sc::INVALID_NAMESPACE))?;
                if sqe.nsid == 0xffff_ffff {
                    return Ok(vec![0u8; adm::IDENTIFY_BYTES]);
                }
                if sqe.nsid != 1 {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                let info = s.dev.info();
                Ok(adm::IdentifyNamespace {
                    nsze: info.num_blocks,
                    ncap: info.num_blocks,
                    nuse: info.num_blocks,
                    shared: true,
                    rescap: 0x7e,
                    dlfeat: 0x09,
                    anagrpid: crate::ANA_GROUP,
                    nguid: *s.uuid.as_bytes(),
                    eui64: [0; 8],
                    lbads: info.block_size.trailing_zeros() as u8,
                }
                .to_bytes())
            }
            cns::ACTIVE_NS_LIST => {
                let active: &[u32] = if subsys.is_some() { &[1] } else { &[] };
                if sqe.nsid >= 0xffff_fffe {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                Ok(adm::active_ns_list(active, sqe.nsid))
            }
            cns::NS_DESCRIPTORS => {
                let s = subsys.ok_or(err(sct::GENERIC, sc::INVALID_NAMESPACE))?;
                if sqe.nsid != 1 {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                Ok(adm::ns_descriptor_list(
                    s.uuid.as_bytes(),
                    s.uuid.as_bytes(),
                ))
            }
            cns::CS_CONTROLLER if id.csi == 0 => Ok(vec![0u8; adm::IDENTIFY_BYTES]),
            _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
        }
    }

    fn get_log(&self, ctrl: &Controller, sqe: &Sqe) -> Result<Vec<u8>, Status> {
        let g = adm::GetLogPageCmd::from_sqe(sqe);
        let page = match (g.lid, ctrl.subsys.as_ref()) {
            (lid::ERROR, _) => vec![0u8; adm::ERROR_LOG_ENTRY_BYTES],
            (lid::SMART, _) => {
                let c = &self.inner.counters;
                adm::SmartLog {
                    temperature_k: 300,
                    available_spare: 100,
                    spare_threshold: 10,
                    data_units_read: c.read_bytes.load(Ordering::Relaxed) / 512_000,
                    data_units_written: c.write_bytes.load(Ordering::Relaxed) / 512_000,
                    host_reads: c.reads.load(Ordering::Relaxed),
                    host_writes: c.writes.load(Ordering::Relaxed),
                    ..Default::default()
                }
                .to_bytes()
            }
            (lid::CHANGED_NS_LIST, Some(_)) => vec![0u8; 4096],
            (lid::ANA, Some(s)) => s.ana.log_page(g.lsp & 1 != 0),
            (lid::DISCOVERY, None) => self.discovery_log(&ctrl.host.hostnqn),
            _ => return Err(err(sct::COMMAND_SPECIFIC, sc_cmd::INVALID_LOG_PAGE)),
        };
        // `len_bytes` was checked against the transfer (<= MDTS) before
        // the page was built; the window is a slice, zero padding is added
        // by the C2HData encoder up to the transfer length.
        g.window(&page)
            .map(<[u8]>::to_vec)
            .ok_or(err(sct::GENERIC, sc::INVALID_FIELD))
    }

    fn discovery_log(&self, hostnqn: &str) -> Vec<u8> {
        let subs: Vec<Arc<Subsystem>> = locks::read("subsystems", &self.inner.subsystems)
            .values()
            .filter(|s| s.allows(hostnqn))
            .cloned()
            .collect();
        let mut entries: Vec<adm::DiscoveryEntry> = subs
            .iter()
            .map(|s| adm::DiscoveryEntry {
                trtype: adm::disc::TRTYPE_TCP,
                adrfam: if self.local.is_ipv4() {
                    adm::disc::ADRFAM_IPV4
                } else {
                    adm::disc::ADRFAM_IPV6
                },
                subtype: adm::disc::SUBTYPE_NVME,
                treq: 0,
                portid: 1,
                cntlid: 0xffff,
                asqsz: 32,
                trsvcid: self.local.port().to_string(),
                subnqn: s.nqn.clone(),
                traddr: self.local.ip().to_string(),
            })
            .collect();
        entries.sort_by(|a, b| a.subnqn.cmp(&b.subnqn));
        adm::discovery_log(self.inner.genctr.load(Ordering::Relaxed), &entries)
    }
}

fn set_features(ctrl: &Controller, sqe: &Sqe, cfg: &crate::TargetConfig) -> Result<u32, Status> {
    if sqe.cdw10 & (1 << 31) != 0 {
        return Err(err(sct::COMMAND_SPECIFIC, sc_cmd::FEATURE_NOT_SAVEABLE));
    }
    let f = (sqe.cdw10 & 0xff) as u8;
    match f {
        fid::NUMBER_OF_QUEUES => {
            let nsqr = sqe.cdw11 & 0xffff;
            let ncqr = sqe.cdw11 >> 16;
            if nsqr == 0xffff || ncqr == 0xffff {
                return Err(err(sct::GENERIC, sc::INVALID_FIELD));
            }
            let max = u32::from(cfg.max_io_queues) - 1;
            let n = nsqr.min(ncqr).min(max);
            ctrl.nr_io_queues.store(n + 1, Ordering::Relaxed);
            Ok(n | (n << 16))
        }
        fid::KEEP_ALIVE_TIMER => {
            let v = if sqe.cdw11 == 0 {
                0
            } else {
                sqe.cdw11.max(cfg.keep_alive_min_ms)
            };
            ctrl.kato_ms.store(v, Ordering::Relaxed);
            Ok(0)
        }
        fid::ASYNC_EVENT_CONFIG => {
            ctrl.aec.store(sqe.cdw11, Ordering::Relaxed);
            Ok(0)
        }
        fid::ARBITRATION
        | fid::POWER_MANAGEMENT
        | fid::TEMPERATURE_THRESHOLD
        | fid::ERROR_RECOVERY
        | fid::VOLATILE_WRITE_CACHE
        | fid::INTERRUPT_COALESCING
        | fid::WRITE_ATOMICITY => Ok(0),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}

fn get_features(ctrl: &Controller, sqe: &Sqe) -> Result<u32, Status> {
    let f = (sqe.cdw10 & 0xff) as u8;
    match f {
        fid::NUMBER_OF_QUEUES => {
            let n = ctrl.nr_io_queues.load(Ordering::Relaxed).saturating_sub(1);
            Ok(n | (n << 16))
        }
        fid::KEEP_ALIVE_TIMER => Ok(ctrl.kato_ms.load(Ordering::Relaxed)),
        fid::ASYNC_EVENT_CONFIG => Ok(ctrl.aec.load(Ordering::Relaxed)),
        fid::VOLATILE_WRITE_CACHE => Ok(u32::from(ctrl.subsys.is_some())),
        fid::ARBITRATION
        | fid::POWER_MANAGEMENT
        | fid::TEMPERATURE_THRESHOLD
        | fid::ERROR_RECOVERY
        | fid::INTERRUPT_COALESCING
        | fid::WRITE_ATOMICITY => Ok(0),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}
