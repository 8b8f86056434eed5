//! High availability in the Linux kernel: the nvme-vm guest (Debian's
//! kernel, native NVMe multipath on) runs `csi-node` and `agent-ha-node`;
//! a 3-node local cluster (127.0.156.x) and `agent-ha-cluster` run on the
//! host. A 3-replica volume published on node-1 is staged by csi-node as a
//! raw block device, fio writes it with crc32c checksums and then verifies
//! every block, and node-1's engine is SIGKILLed while fio writes. The
//! node agent sees the path stuck connecting and reports it; the cluster
//! agent has the core republish the volume on another node and the node
//! agent connects the new path through csi-node and deletes the old one.
//!
//! Checked: fio ends with status 0 and no verify error; the guest's path
//! list holds one live controller of the volume, at the new target, and
//! none at the old; the switch-over is Successful. The I/O pause (the
//! longest gap between two completions in fio's per-I/O latency log) is
//! printed.

//!
//! ```text
//!  guest 10.0.2.100:442i --guestfwd--> host 127.0.0.1:Ri --relay--> 127.0.156.i:8420 (engine i)
//!  guest 10.0.2.100:50052 --guestfwd--> host 127.0.0.1:Rc --relay--> agent-ha-cluster
//!  host 127.0.0.1:H --hostfwd--> guest :50053 (agent-ha-node's ReplacePath)
//! ```

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use common::{block_cap, Cluster};
use csi::v1::NodeStageVolumeRequest;
use node_kit::*;
use openapi::CoreApi;
use testkit::Proc;

const PREFIX: &str = "127.0.156";

fn stripped(bin: &str, dir: &std::path::Path) -> PathBuf {
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

/// The volume's controllers in the guest: (name, state, address).
fn paths(g: &Guest, nqn: &str) -> Vec<(String, String, String)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ha_target_killed_fio_verifies_on_the_new_path() {
    let t0 = Instant::now();
    let cluster = Cluster::up(PREFIX, 3, "256MiB");
    let rest = cluster.rest();
    let relays: Vec<Relay> = (1..=3)
        .map(|i| Relay::start(cluster.engine_nvmf(i)))
        .collect();
    let guest_port = |i: u32| 4420 + i as u16;

    // The cluster agent beside the core.
    let ha_ip = format!("{PREFIX}.253");
    let ha_ep = format!("{ha_ip}:{}", free_port(&ha_ip));
    let ha = Proc::spawn(
        "agent-ha-cluster",
        testkit::bin("agent-ha-cluster", "agent-ha-cluster"),
        [
            "--grpc-endpoint",
            &ha_ep,
            "--store",
            &format!("{PREFIX}.250:2379"),
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

    let (id, _v) = create_published(&rest, 64 * MIB, 3, "node-1").await;
    let nqn = format!("nqn.2019-05.io.openebs:{id}");
    eprintln!("cluster and volume ready in {:.1?}", t0.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let ha_node = stripped("agent-ha-node", dir.path());
    let ha_node_port = free_port("127.0.0.1");
    let map: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                "--address-map {}=10.0.2.100:{}",
                cluster.engine_nvmf(i),
                guest_port(i)
            )
        })
        .collect();
    let mut forwards: Vec<(u16, u16)> = (1..=3u32)
        .map(|i| (guest_port(i), relays[i as usize - 1].port))
        .collect();
    forwards.push((50052, ha_relay.port));
    let g = Guest::start(GuestSetup {
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
        g.ok("cat /sys/module/nvme_core/parameters/multipath")
            .trim(),
        "Y"
    );

    // Staged as a raw block device through node-1's forward.
    let mut node = g.node().await;
    let mut ctx = std::collections::HashMap::from([
        (
            "uri".to_owned(),
            format!("nvmf://10.0.2.100:{}/{nqn}", guest_port(1)),
        ),
        ("nvmeCtrlLossTmo".to_owned(), "300".to_owned()),
        ("nvmeKeepAliveTmo".to_owned(), "5".to_owned()),
        ("nvmeReconnectDelay".to_owned(), "1".to_owned()),
        ("nvmeNrIoQueues".to_owned(), "1".to_owned()),
    ]);
    ctx.insert("ioTimeout".to_owned(), "60".to_owned());
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
    let old = format!("10.0.2.100:{}", guest_port(1));
    let before = paths(&g, &nqn);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (before[0].1.as_str(), before[0].2.as_str()),
        ("live", old.as_str())
    );

    // fio: sequential crc32c-checksummed writes of the whole volume, then
    // a verify pass; every completion logged.
    let dev = g
        .ok(&format!("nvme-dev-for-nqn {nqn} 30"))
        .trim()
        .to_owned();
    start_fio(&g, &dev, "ha");
    // fio writes for a few seconds (the multipath head keeps no I/O
    // statistics on this kernel, and fio writes its logs at the end).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (running, _) = g.sh("pidof fio");
    assert_eq!(
        running,
        0,
        "fio is not running: {}",
        g.ok("cat /tmp/ha.sh /tmp/ha.err /tmp/ha.out /tmp/ha.rc 2>&1; true")
    );
    assert!(cluster.kill_engine(1), "engine 1 was not running");
    let killed = Instant::now();
    eprintln!("engine node-1 SIGKILLed while fio writes");

    // fio finishes through the new path.
    let rc = wait_fio(&g, &nqn, &ha, "ha").await;
    let fio_out = g.ok("cat /tmp/ha.out");
    assert_eq!(rc, "0", "fio failed:\n{fio_out}");
    assert!(fio_out.contains("err= 0"), "{fio_out}");
    assert!(!fio_out.contains("verify: bad"), "{fio_out}");
    eprintln!("fio finished clean {:.1?} after the kill", killed.elapsed());

    // The path list: the new target live, the old one gone.
    let v = rest.get_volume(&id.to_string()).await.unwrap();
    let new_node = v.spec.target.as_ref().unwrap().node.clone();
    assert_ne!(new_node, "node-1");
    let i: u32 = new_node.strip_prefix("node-").unwrap().parse().unwrap();
    let new = format!("10.0.2.100:{}", guest_port(i));
    let after = paths(&g, &nqn);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        (after[0].1.as_str(), after[0].2.as_str()),
        ("live", new.as_str())
    );
    assert!(
        !ha.log_lines("switch-over ended").is_empty() && ha.logs().contains("Successful"),
        "{}",
        ha.logs()
    );

    let pause_ms = io_pause_ms(&g, "ha");
    eprintln!(
        "HA switch-over after SIGKILL: I/O pause {pause_ms} ms (longest gap between completions), accel {}",
        g.ok("echo ${NVMEVM_ACCEL:-?}").trim()
    );
    assert!(pause_ms > 0);
}

/// Starts fio in the background: crc32c-checksummed sequential writes of
/// 60 MiB of `dev`, then a verify pass; every completion logged to
/// `/tmp/NAME_lat.1.log`, the output in `/tmp/NAME.out`, the exit status
/// in `/tmp/NAME.rc`.
fn start_fio(g: &Guest, dev: &str, name: &str) {
    g.ok(&format!(
        "echo 'fio --name={name} --filename={dev} --ioengine=libaio --direct=1 \
         --rw=write --bs=4k --size=60M --iodepth=8 --verify=crc32c --do_verify=1 \
         --verify_fatal=1 --write_lat_log=/tmp/{name} --log_avg_msec=0 \
         --output=/tmp/{name}.out; echo $? > /tmp/{name}.rc' > /tmp/{name}.sh; \
         setsid sh /tmp/{name}.sh < /dev/null > /tmp/{name}.err 2>&1 &"
    ));
}

/// Waits for fio job `name` to end; its exit status.
async fn wait_fio(g: &Guest, nqn: &str, ha: &Proc, name: &str) -> String {
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
            ha.logs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The I/O pause of fio job `name`: the longest gap between two
/// completions, in ms.
fn io_pause_ms(g: &Guest, name: &str) -> u64 {
    g.ok(&format!(
        "awk -F, '{{print $1}}' /tmp/{name}_lat.1.log | sort -n | \
         awk 'NR>1 {{g=$1-p; if (g>m) m=g}} {{p=$1}} END {{print m+0}}'"
    ))
    .trim()
    .parse()
    .unwrap()
}
