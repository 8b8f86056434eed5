//! A deliberately small NVMe/TCP test client built on the `nvmf` codec:
//! ICReq, Connect, one command at a time (in-capsule or R2T writes, C2H
//! reads). Not an initiator; just enough to drive the target.

#![allow(dead_code, clippy::unwrap_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use nvmf::fabrics::{ConnectCmd, ConnectData, PropertyCmd};
use nvmf::nvme::{Cqe, SglDescriptor, Sqe};
use nvmf::pdu::{self, CapsuleCmd, DataPdu, Decoder, EncodeOpts, IcReq, Pdu};
use nvmf_target::{Target, TargetConfig};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

pub const HOST_A: &str = "nqn.2019-05.io.openebs:node-name:a";
pub const HOST_B: &str = "nqn.2019-05.io.openebs:node-name:b";
pub const NQN: &str = "nqn.2019-05.io.openebs:11111111-2222-3333-4444-555555555555";

/// Starts a target on `ip`:0 with a 64 MiB malloc namespace under [`NQN`]
/// open to `hosts`.
pub async fn start(ip: [u8; 4], hosts: &[&str]) -> (Target, CancellationToken) {
    let cfg = TargetConfig {
        listen: SocketAddr::from((ip, 0)),
        cntlid_min: 0x100,
        cntlid_max: 0x1ff,
        max_h2c_data_bytes: 32 * 1024,
        ..TargetConfig::default()
    };
    let t = Target::bind(cfg).await.unwrap();
    let dev = blockdev::open_uri("malloc:///m0?size_mb=64", &Default::default())
        .await
        .unwrap();
    t.add_subsystem(
        NQN,
        Arc::new(dev),
        uuid::Uuid::new_v4(),
        hosts.iter().map(|s| s.to_string()).collect(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let (t2, c2) = (t.clone(), cancel.clone());
    tokio::spawn(async move { t2.serve(c2).await });
    (t, cancel)
}

pub struct Client {
    pub s: TcpStream,
    pub rbuf: BytesMut,
    pub opts: EncodeOpts,
    pub dec: Decoder,
    pub next_cid: u16,
}

impl Client {
    /// TCP connect only (no ICReq).
    pub async fn raw(addr: SocketAddr) -> Result<Client> {
        let s = TcpStream::connect(addr).await?;
        Ok(Client {
            s,
            rbuf: BytesMut::new(),
            opts: EncodeOpts::default(),
            dec: Decoder::default(),
            next_cid: 1,
        })
    }

    /// TCP connect and ICReq/ICResp.
    pub async fn connect(addr: SocketAddr, hdgst: bool, ddgst: bool) -> Result<Client> {
        let mut c = Client::raw(addr).await?;
        let dgst = u8::from(hdgst) | (u8::from(ddgst) << 1);
        c.send(&Pdu::IcReq(IcReq {
            pfv: 0,
            hpda: 0,
            dgst,
            maxr2t: 0,
        }))
        .await?;
        match c.recv().await? {
            Some(Pdu::IcResp(r)) => {
                anyhow::ensure!(r.dgst == dgst && r.maxh2cdata >= 4096, "bad icresp {r:?}");
            }
            other => bail!("expected ICResp, got {other:?}"),
        }
        c.opts = EncodeOpts {
            hdgst,
            ddgst,
            pda: 0,
        };
        Ok(c)
    }

    pub async fn send(&mut self, p: &Pdu) -> Result<()> {
        let mut b = BytesMut::new();
        p.encode(&mut b, self.opts);
        self.s.write_all(&b).await?;
        Ok(())
    }

    pub async fn send_raw(&mut self, b: &[u8]) -> Result<()> {
        self.s.write_all(b).await?;
        Ok(())
    }

    /// Next PDU; `None` on EOF. Times out after 10 s.
    pub async fn recv(&mut self) -> Result<Option<Pdu>> {
        loop {
            if let Some(p) = self.dec.decode(&mut self.rbuf)? {
                return Ok(Some(p));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.rbuf))
                .await
                .context("recv timeout")??;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Runs one command. `out`: data to the controller (in-capsule when
    /// `in_capsule`, else via R2T). `in_len`: data expected from it.
    pub async fn cmd(
        &mut self,
        mut sqe: Sqe,
        out: Option<&[u8]>,
        in_capsule: bool,
        in_len: u32,
    ) -> Result<(Cqe, Vec<u8>)> {
        sqe.cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        let mut data = Bytes::new();
        match out {
            Some(o) if in_capsule => {
                sqe.dptr = SglDescriptor::in_capsule(o.len() as u32);
                data = Bytes::copy_from_slice(o);
            }
            Some(o) => sqe.dptr = SglDescriptor::transport(o.len() as u32),
            None => sqe.dptr = SglDescriptor::transport(in_len),
        }
        self.send(&Pdu::CapsuleCmd(CapsuleCmd { sqe, data }))
            .await?;
        let mut got = Vec::new();
        loop {
            match self.recv().await? {
                Some(Pdu::R2T(r)) => {
                    let o = out.context("r2t without data")?;
                    let (s, e) = (r.r2to as usize, (r.r2to + r.r2tl) as usize);
                    self.send(&Pdu::H2CData(DataPdu {
                        cccid: r.cccid,
                        ttag: r.ttag,
                        datao: r.r2to,
                        last: true,
                        success: false,
                        data: Bytes::copy_from_slice(&o[s..e]),
                    }))
                    .await?;
                }
                Some(Pdu::C2HData(d)) => {
                    anyhow::ensure!(d.datao as usize == got.len(), "c2h out of order");
                    got.extend_from_slice(&d.data);
                }
                Some(Pdu::CapsuleResp(r)) if r.cqe.cid == sqe.cid => return Ok((r.cqe, got)),
                Some(other) => bail!("unexpected {other:?}"),
                None => bail!("connection closed"),
            }
        }
    }

    pub async fn fabric_connect(
        &mut self,
        subnqn: &str,
        hostnqn: &str,
        qid: u16,
        cntlid: u16,
    ) -> Result<Cqe> {
        let c = ConnectCmd {
            recfmt: 0,
            qid,
            sqsize: 31,
            cattr: 0,
            kato_ms: if qid == 0 { 10_000 } else { 0 },
        };
        let d = ConnectData {
            hostid: host_id(hostnqn),
            cntlid,
            subnqn: subnqn.into(),
            hostnqn: hostnqn.into(),
        };
        Ok(self.cmd(c.to_sqe(0), Some(&d.to_bytes()), true, 0).await?.0)
    }

    pub async fn prop_get(&mut self, offset: u32, eight: bool) -> Result<u64> {
        let sqe = PropertyCmd {
            eight_bytes: eight,
            offset,
            value: 0,
        }
        .to_sqe(0, false);
        let (cqe, _) = self.cmd(sqe, None, false, 0).await?;
        anyhow::ensure!(
            cqe.status.is_success(),
            "property get {offset:#x}: {:?}",
            cqe.status
        );
        Ok(u64::from(cqe.dw0) | (u64::from(cqe.dw1) << 32))
    }

    pub async fn prop_set(&mut self, offset: u32, value: u64) -> Result<()> {
        let sqe = PropertyCmd {
            eight_bytes: false,
            offset,
            value,
        }
        .to_sqe(0, true);
        let (cqe, _) = self.cmd(sqe, None, false, 0).await?;
        anyhow::ensure!(
            cqe.status.is_success(),
            "property set {offset:#x}: {:?}",
            cqe.status
        );
        Ok(())
    }
}

pub fn host_id(nqn: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&crc32c::crc32c(nqn.as_bytes()).to_le_bytes());
    id
}

/// Admin + one I/O queue to [`NQN`] as `host`: `(admin, io, cntlid)`.
pub async fn open_controller(
    addr: SocketAddr,
    host: &str,
    hd: bool,
    dd: bool,
) -> Result<(Client, Client, u16)> {
    let mut a = Client::connect(addr, hd, dd).await?;
    let cqe = a.fabric_connect(NQN, host, 0, 0xffff).await?;
    anyhow::ensure!(cqe.status.is_success(), "admin connect: {:?}", cqe.status);
    let cntlid = cqe.dw0 as u16;
    a.prop_set(nvmf::fabrics::reg::CC, 1 | (6 << 16) | (4 << 20))
        .await?;
    let mut io = Client::connect(addr, hd, dd).await?;
    let cqe = io.fabric_connect(NQN, host, 1, cntlid).await?;
    anyhow::ensure!(cqe.status.is_success(), "io connect: {:?}", cqe.status);
    Ok((a, io, cntlid))
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn _unused(_: pdu::PduType) {}

/// Drains `c` until the target closes the connection; false when it is
/// still open after `within`.
pub async fn closed_within(c: &mut Client, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, async { while let Ok(Some(_)) = c.recv().await {} })
        .await
        .is_ok()
}
