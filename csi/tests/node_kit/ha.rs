//! The HA kernel tests' rig (with `node_kit` and `common`): a 3-node local
//! cluster's engines relayed into the nvme-vm guest, `agent-ha-cluster`
//! beside the core, the guest running `csi-node` and `agent-ha-node`, a
//! volume staged as a raw block device through node-1's forward, and fio
//! jobs in the guest with their logs.
//!
//! ```text
//!  guest 10.0.2.100:442i --guestfwd--> host 127.0.0.1:Ri --relay--> PREFIX.i:8420 (engine i)
//!  guest 10.0.2.100:50052 --guestfwd--> host 127.0.0.1:Rc --relay--> agent-ha-cluster
//!  host 127.0.0.1:H --hostfwd--> guest :50053 (agent-ha-node's ReplacePath)
//! ```

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use csi::v1::NodeStageVolumeRequest;
use openapi::{CoreApi, RestClient};
use testkit::Proc;

use super::*;
use crate::common::{block_cap, Cluster};

/// The guest's port forwarded to engine `i`.
pub fn guest_port(i: u32) -> u16 {
    4420 + i as u16
}

/// The guest's address of engine `i`'s target.
pub fn guest_addr(i: u32) -> String {
    format!("10.0.2.100:{}", guest_port(i))
}

fn stripped(bin: &str, dir: &Path) -> PathBuf {
    let out = dir.join(bin);
    let st = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(testkit::bin(bin, bin))
        .status()
        .unwrap();
    assert!(st.success(), "strip {bin}");
    out
}

/// The cluster agent, the relays and the guest with both node-side
/// agents; stopped when dropped.
pub struct HaRig {
    pub guest: Guest,
    pub ha: Proc,
    _relays: Vec<Relay>,
    _ha_relay: Relay,
    _dir: tempfile::TempDir,
}

impl HaRig {
    /// Starts `agent-ha-cluster` on `PREFIX.253`, the relays of the 3
    /// engines and the guest (native multipath checked on).
    pub async fn start(cluster: &Cluster) -> HaRig {
        let prefix = &cluster.prefix;
        let relays: Vec<Relay> = (1..=3)
            .map(|i| Relay::start(cluster.engine_nvmf(i)))
            .collect();
        let ha_ip = format!("{prefix}.253");
        let ha_ep = format!("{ha_ip}:{}", free_port(&ha_ip));
        let ha = Proc::spawn(
            "agent-ha-cluster",
            testkit::bin("agent-ha-cluster", "agent-ha-cluster"),
            [
                "--grpc-endpoint",
                &ha_ep,
                "--store",
                &format!("{prefix}.250:2379"),
                "--rest",
                &cluster.rest_url,
                "--lease-ttl",
                "3s",
                "--retry-delay",
                "500ms",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
        testkit::wait_port(&ha_ep, "agent-ha-cluster");
        let ha_relay = Relay::start(ha_ep.parse().unwrap());

        let dir = tempfile::tempdir().unwrap();
        let ha_node = stripped("agent-ha-node", dir.path());
        let ha_node_port = free_port("127.0.0.1");
        let map: Vec<String> = (1..=3)
            .map(|i| format!("--address-map {}={}", cluster.engine_nvmf(i), guest_addr(i)))
            .collect();
        let mut forwards: Vec<(u16, u16)> = (1..=3u32)
            .map(|i| (guest_port(i), relays[i as usize - 1].port))
            .collect();
        forwards.push((50052, ha_relay.port));
        let guest = Guest::start(GuestSetup {
            guest_forwards: forwards,
            host_forwards: vec![(ha_node_port, 50053)],
            copies: vec![ha_node],
            script: format!(
                "(agent-ha-node --node-name {GUEST_NODE} --grpc-endpoint 0.0.0.0:50053 \
                 --advertise-endpoint 127.0.0.1:{ha_node_port} --cluster-agent 10.0.2.100:50052 \
                 --csi-node 127.0.0.1:10199 --interval 500ms --path-failure-threshold 2s {} \
                 --log-format json > /tmp/ha-node.log 2>&1 &) ;",
                map.join(" ")
            ),
            ..Default::default()
        })
        .await;
        assert_eq!(
            guest
                .ok("cat /sys/module/nvme_core/parameters/multipath")
                .trim(),
            "Y"
        );
        HaRig {
            guest,
            ha,
            _relays: relays,
            _ha_relay: ha_relay,
            _dir: dir,
        }
    }

    /// Stages volume `id` as a raw block device through node-1's forward
    /// (short nvme timeouts); checks its one path is live there and
    /// returns the guest's device.
    pub async fn stage_on_node_1(&self, id: &uuid::Uuid) -> String {
        let nqn = format!("nqn.2019-05.io.openebs:{id}");
        let mut node = self.guest.node().await;
        let ctx = std::collections::HashMap::from([
            ("uri".to_owned(), format!("nvmf://{}/{nqn}", guest_addr(1))),
            ("nvmeCtrlLossTmo".to_owned(), "300".to_owned()),
            ("nvmeKeepAliveTmo".to_owned(), "5".to_owned()),
            ("nvmeReconnectDelay".to_owned(), "1".to_owned()),
            ("nvmeNrIoQueues".to_owned(), "1".to_owned()),
            ("ioTimeout".to_owned(), "60".to_owned()),
        ]);
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.to_string(),
            publish_context: ctx,
            staging_target_path: "/var/lib/kubelet/plugins/csi/ha/globalmount".into(),
            volume_capability: Some(block_cap()),
            secrets: Default::default(),
            volume_context: Default::default(),
        })
        .await
        .unwrap();
        let before = paths(&self.guest, &nqn);
        assert_eq!(before.len(), 1, "{before:?}");
        assert_eq!(
            (before[0].1.as_str(), before[0].2.as_str()),
            ("live", guest_addr(1).as_str())
        );
        self.guest
            .ok(&format!("nvme-dev-for-nqn {nqn} 30"))
            .trim()
            .to_owned()
    }

    /// Waits for fio job `name` to end; its exit status.
    pub async fn wait_fio(&self, nqn: &str, name: &str) -> String {
        let g = &self.guest;
        let start = Instant::now();
        loop {
            let (code, out) = g.sh(&format!("cat /tmp/{name}.rc"));
            if code == 0 {
                return out.trim().to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(420),
                "fio did not finish: paths {:?}\n{}\n{}",
                paths(g, nqn),
                g.ok("tail -30 /tmp/ha-node.log; true"),
                self.ha.logs()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits for fio job `name` and checks it ended clean (status 0, no
    /// error, no verify failure); its output.
    pub async fn fio_clean(&self, nqn: &str, name: &str) -> String {
        let rc = self.wait_fio(nqn, name).await;
        let out = self.guest.ok(&format!("cat /tmp/{name}.out"));
        assert_eq!(rc, "0", "fio {name} failed:\n{out}");
        assert!(out.contains("err= 0"), "{out}");
        assert!(!out.contains("verify: bad"), "{out}");
        out
    }
}

/// Checks volume `id` moved off node-1 and the guest holds one path of
/// it, live at the new target (the old one gone); the new target's node.
pub async fn moved_off_node_1(rest: &RestClient, g: &Guest, id: &uuid::Uuid) -> String {
    let v = rest.get_volume(&id.to_string()).await.unwrap();
    let new_node = v.spec.target.as_ref().unwrap().node.clone();
    assert_ne!(new_node, "node-1");
    let i: u32 = new_node.strip_prefix("node-").unwrap().parse().unwrap();
    let after = paths(g, &format!("nqn.2019-05.io.openebs:{id}"));
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (after[0].1.as_str(), after[0].2.as_str()),
        ("live", guest_addr(i).as_str())
    );
    new_node
}

/// The volume's controllers in the guest: (name, state, address).
pub fn paths(g: &Guest, nqn: &str) -> Vec<(String, String, String)> {
    let out = g.ok(&format!(
        "for c in /sys/class/nvme/nvme*; do [ \"$(cat $c/subsysnqn 2>/dev/null)\" = '{nqn}' ] && \
         echo \"$(basename $c) $(cat $c/state) $(cat $c/address | tr -d ' ')\"; done; true"
    ));
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (n, s, a) = (f.next()?, f.next()?, f.next()?);
            let field = |k: &str| {
                a.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
            };
            Some((
                n.to_owned(),
                s.to_owned(),
                format!("{}:{}", field("traddr")?, field("trsvcid")?),
            ))
        })
        .collect()
}

/// Starts fio in the background: crc32c-checksummed sequential writes of
/// the first `mib` MiB of `dev`, then a verify pass; every completion
/// logged to `/tmp/NAME_lat.1.log`, the output in `/tmp/NAME.out`, the
/// exit status in `/tmp/NAME.rc`. `extra`: more fio options.
pub fn start_fio(g: &Guest, dev: &str, name: &str, mib: u32, extra: &str) {
    g.ok(&format!(
        "rm -f /tmp/{name}.rc; echo 'fio --name={name} --filename={dev} --ioengine=libaio --direct=1 \
         --rw=write --bs=4k --size={mib}M --iodepth=8 --verify=crc32c --do_verify=1 \
         --verify_fatal=1 --write_lat_log=/tmp/{name} --log_avg_msec=0 {extra} \
         --output=/tmp/{name}.out; echo $? > /tmp/{name}.rc' > /tmp/{name}.sh; \
         setsid sh /tmp/{name}.sh < /dev/null > /tmp/{name}.err 2>&1 &"
    ));
}

/// Checks fio job `name` is running (a few seconds after its start).
pub fn assert_fio_running(g: &Guest, name: &str) {
    let (running, _) = g.sh("pidof fio");
    assert_eq!(
        running,
        0,
        "fio is not running: {}",
        g.ok(&format!(
            "cat /tmp/{name}.sh /tmp/{name}.err /tmp/{name}.out /tmp/{name}.rc 2>&1; true"
        ))
    );
}

/// The I/O pause of fio job `name`: the longest gap between two
/// completions, in ms.
pub fn io_pause_ms(g: &Guest, name: &str) -> u64 {
    g.ok(&format!(
        "awk -F, '{{print $1}}' /tmp/{name}_lat.1.log | sort -n | \
         awk 'NR>1 {{g=$1-p; if (g>m) m=g}} {{p=$1}} END {{print m+0}}'"
    ))
    .trim()
    .parse()
    .unwrap()
}
