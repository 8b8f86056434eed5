//! The Linux kernel NVMe/TCP host against our target (issue acceptance):
//! a Debian kernel in QEMU (`../shared/tools/nvme-vm`) discovers and
//! connects to a replica shared by the real `io-engine` on the host's
//! loopback, runs ext4 (files written, disconnect, reconnect, checksums
//! verified) and a 30 s fio randrw with crc32c verification; once plain and
//! once with header and data digests. A host NQN outside the replica's
//! allowed hosts is refused at Connect.
//!
//! Our target runs on the host; the guest reaches it through the harness's
//! guest forward (guest 10.0.2.100:4420 -> host 127.0.0.1:<port>).

mod common;

use std::{path::PathBuf, process::Command};

use common::{free_port, ok, Engine};

fn nvme_vm() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/nvme-vm");
    assert!(
        dir.join("run").exists(),
        "the NVMe/TCP VM harness is missing at {} (it ships in ../shared beside the project)",
        dir.display()
    );
    dir
}

const HOSTNQN: &str = "nqn.2019-05.io.openebs:node-name:kernel-host";
const DENIED: &str = "nqn.2019-05.io.openebs:node-name:intruder";

fn run_guest(port: u16, nqn: &str, connect_opts: &str, denied: bool) -> (bool, String) {
    let vm = nvme_vm();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vm/kernel-host.sh");
    let mut cmd = Command::new(vm.join("run"));
    cmd.args(["-t", "600", "-g", &format!("4420:{port}")])
        .args(["-e", &format!("TARGET_NQN={nqn}")])
        .args(["-e", &format!("HOSTNQN={HOSTNQN}")])
        .args(["-e", &format!("CONNECT_OPTS={connect_opts}")])
        .args(["-e", "FIO_RUNTIME=30"]);
    if denied {
        cmd.args(["-e", &format!("DENIED_HOSTNQN={DENIED}")]);
    }
    let out = cmd.arg(&script).output().expect("run nvme-vm");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains("RESULT kernel_host=ok"),
        text,
    )
}

#[test]
fn linux_kernel_host_runs_ext4_and_fio_verify_on_a_shared_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(320 << 20))
        .expect("disk");
    let port = free_port("127.0.0.1");
    let nvmf = format!("127.0.0.1:{port}");
    let engine = Engine::start("127.0.1.60", 0, "node-kernel", &["--nvmf-endpoint", &nvmf]);
    ok(engine.client(&[
        "pool",
        "create",
        "tpool",
        &format!("aio://{}", disk.display()),
    ]));
    ok(engine.client(&["replica", "create", "tpool", "vol", "--size", "256"]));
    let uri = ok(engine.client(&[
        "replica",
        "share",
        "tpool",
        "vol",
        "--allowed-host",
        HOSTNQN,
    ]));
    let uri = uri.trim();
    assert!(
        uri.starts_with(&format!("nvmf://{nvmf}/nqn.2019-05.io.openebs:")),
        "{uri}"
    );
    let nqn = uri
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("nqn in uri")
        .to_string();

    for (label, opts, denied) in [
        ("plain", "", true),
        ("digests", "--hdr-digest --data-digest", false),
    ] {
        let (passed, log) = run_guest(port, &nqn, opts, denied);
        assert!(
            passed,
            "kernel host run '{label}' failed:\n{log}\n---- io-engine log ----\n{}",
            engine.logs()
        );
        eprintln!("kernel host run '{label}' passed:");
        for line in log.lines().filter(|l| {
            l.starts_with("RESULT")
                || l.contains("READ:")
                || l.contains("WRITE:")
                || l.contains("err=")
        }) {
            eprintln!("  {}", line.trim());
        }
    }
    let check = ok(engine.client(&["pool", "check", "tpool"]));
    assert!(check.contains("is clean"), "{check}");
    assert!(!engine.logs().contains("panicked"), "{}", engine.logs());
}
