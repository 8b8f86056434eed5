//! The kernel NVMe/TCP host: `nvme connect` (nvme-cli) to attach a
//! volume's target, sysfs to find its controllers and namespace block
//! device, to set the I/O timeout, to rescan after a resize and to delete
//! the controllers on disconnect.
//!
//! sysfs layout used (native multipath on or off):
//!
//! ```text
//! /sys/class/nvme/nvmeC/{subsysnqn,state,address,rescan_controller,delete_controller}
//! /sys/class/nvme/nvmeC/nvmeScCnN/queue/io_timeout      path device (multipath)
//! /sys/class/nvme-subsystem/nvme-subsysS/{subsysnqn,nvmeC,nvmeSnN}
//! /sys/class/nvme/nvmeC/nvmeCnN                           namespace (no multipath)
//! /sys/dev/block/MAJ:MIN -> .../nvme-subsysS/nvmeSnN | .../nvmeC/nvmeCnN
//! ```

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use mayastor_common::nvme_sysfs::Controller;
use mayastor_common::nvme_sysfs::{self, entries, read_trim, CLASS_NVME};

use super::{
    config::ConnectParams,
    error::{NodeError, NodeResult},
    exec,
};

const CLASS_SUBSYS: &str = "/sys/class/nvme-subsystem";
const NVME_CONNECT_LIMIT: Duration = Duration::from_secs(60);

/// Whether the kernel's NVMe/TCP host is there; tries `modprobe nvme_tcp`
/// once when it is not loaded.
pub async fn ensure_nvme_tcp() -> bool {
    if Path::new("/sys/module/nvme_tcp").exists() {
        return true;
    }
    let _ = exec::run("modprobe", &["nvme_tcp"], Duration::from_secs(10)).await;
    Path::new("/sys/module/nvme_tcp").exists()
}

/// The message for a host without `nvme_tcp`.
pub const NO_NVME_TCP: &str =
    "the kernel NVMe/TCP host (module nvme_tcp) is not available on this node: volumes cannot be staged";

/// `nvme<digits>n<digits>` (a namespace block device, not a path device
/// `nvmeXcYnZ` nor a char device `ngXnY`).
fn is_ns_name(n: &str) -> bool {
    let Some(rest) = n.strip_prefix("nvme") else {
        return false;
    };
    let Some((a, b)) = rest.split_once('n') else {
        return false;
    };
    !a.is_empty()
        && !b.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.bytes().all(|c| c.is_ascii_digit())
}

/// Every controller of subsystem `nqn` (in any state).
pub fn controllers(nqn: &str) -> Vec<Controller> {
    nvme_sysfs::controllers(Path::new(CLASS_NVME), |n| n == nqn)
}

/// A number attribute of controller `name` (`ctrl_loss_tmo`,
/// `reconnect_delay`, `kato`, `queue_count`).
pub fn controller_number(name: &str, attr: &str) -> Option<u32> {
    read_trim(&Path::new(CLASS_NVME).join(name).join(attr))?
        .parse()
        .ok()
}

/// The block-layer I/O timeout in seconds of the first path device of
/// `nqn` that has one.
pub fn io_timeout_s(nqn: &str) -> Option<u32> {
    for c in controllers(nqn) {
        for (n, p) in entries(&Path::new(CLASS_NVME).join(&c.name)) {
            if n.starts_with("nvme") && n.contains('n') {
                if let Some(ms) = read_trim(&p.join("queue/io_timeout")) {
                    if let Ok(ms) = ms.parse::<u64>() {
                        return u32::try_from(ms / 1000).ok();
                    }
                }
            }
        }
    }
    None
}

/// Whether `nqn` has a controller that is, or is becoming, usable (not
/// being deleted).
pub fn connected(nqn: &str) -> bool {
    controllers(nqn)
        .iter()
        .any(|c| !matches!(c.state.as_str(), "deleting" | "deleting (no IO)" | "dead"))
}

/// Connects to the volume's target with `nvme connect`.
pub async fn connect(p: &ConnectParams, host_nqn: &str) -> NodeResult<()> {
    run_connect(p, host_nqn, false).await
}

/// Connects one more path of a connected volume (native multipath: the
/// new controller joins the volume's subsystem); fails unless a controller
/// at `p.host:p.port` exists afterwards.
pub async fn connect_path(p: &ConnectParams, host_nqn: &str) -> NodeResult<Controller> {
    run_connect(p, host_nqn, true).await?;
    let want = format!("{}:{}", p.host, p.port);
    controllers(&p.nqn)
        .into_iter()
        .find(|c| c.address == want)
        .ok_or_else(|| {
            NodeError::internal(format!(
                "nvme connect to {want} {} left no controller there (controllers: {})",
                p.nqn,
                describe(&controllers(&p.nqn))
            ))
        })
}

async fn run_connect(p: &ConnectParams, host_nqn: &str, only_address: bool) -> NodeResult<()> {
    let port = p.port.to_string();
    let loss = p.ctrl_loss_tmo_s.to_string();
    let kato = p.keep_alive_tmo_s.to_string();
    let delay = p.reconnect_delay_s.to_string();
    let queues = p.nr_io_queues.map(|q| q.to_string());
    let mut args = vec![
        "connect",
        "--transport=tcp",
        "--traddr",
        &p.host,
        "--trsvcid",
        &port,
        "--nqn",
        &p.nqn,
        "--hostnqn",
        host_nqn,
        "--ctrl-loss-tmo",
        &loss,
        "--keep-alive-tmo",
        &kato,
        "--reconnect-delay",
        &delay,
    ];
    if let Some(q) = &queues {
        args.extend(["--nr-io-queues", q]);
    }
    let out = exec::run("nvme", &args, NVME_CONNECT_LIMIT).await?;
    if !out.success() {
        // A racing connect (another stage after a restart) is fine; for a
        // further path (`only_address`), only that path counts.
        if connected(&p.nqn) && !only_address {
            return Ok(());
        }
        return Err(NodeError::internal(format!(
            "nvme connect to {}:{} {} failed: {}",
            p.host,
            p.port,
            p.nqn,
            out.last_line()
        )));
    }
    Ok(())
}

/// The namespace block device (`nvme0n1`) of subsystem `nqn`, if any.
pub fn find_device(nqn: &str) -> Option<String> {
    for (_, subsys) in entries(Path::new(CLASS_SUBSYS)) {
        if read_trim(&subsys.join("subsysnqn")).as_deref() != Some(nqn) {
            continue;
        }
        if let Some((n, _)) = entries(&subsys).into_iter().find(|(n, _)| is_ns_name(n)) {
            return Some(n);
        }
    }
    // Without native multipath the namespace sits under its controller.
    for c in controllers(nqn) {
        if let Some((n, _)) = entries(&Path::new(CLASS_NVME).join(&c.name))
            .into_iter()
            .find(|(n, _)| is_ns_name(n))
        {
            return Some(n);
        }
    }
    None
}

/// Waits (bounded) for the namespace of `nqn` to appear as a block device
/// node; its path.
pub async fn wait_device(nqn: &str, limit: Duration) -> NodeResult<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(n) = find_device(nqn) {
            let dev = Path::new("/dev").join(&n);
            if dev.exists() {
                return Ok(dev);
            }
        }
        if start.elapsed() >= limit {
            let ctrls = controllers(nqn);
            return Err(NodeError::DeadlineExceeded(format!(
                "no namespace block device for {nqn} within {limit:?} (controllers: {})",
                describe(&ctrls)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `nvme0 live, nvme1 connecting` (or `none`).
pub fn describe(ctrls: &[Controller]) -> String {
    if ctrls.is_empty() {
        return "none".to_owned();
    }
    ctrls
        .iter()
        .map(|c| format!("{} {}", c.name, c.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets the block layer's I/O timeout of every path device of `nqn` (with
/// native multipath, requests time out on the paths, not the head).
pub fn set_io_timeout(nqn: &str, secs: u32) -> NodeResult<()> {
    let ms = (u64::from(secs) * 1000).to_string();
    let mut set = 0;
    for c in controllers(nqn) {
        for (n, p) in entries(&Path::new(CLASS_NVME).join(&c.name)) {
            if !n.starts_with("nvme") || !n.contains('n') {
                continue;
            }
            let f = p.join("queue/io_timeout");
            if f.exists() {
                fs::write(&f, &ms)
                    .map_err(|e| NodeError::internal(format!("cannot set {}: {e}", f.display())))?;
                set += 1;
            }
        }
    }
    if set == 0 {
        return Err(NodeError::internal(format!(
            "no device of {nqn} has an I/O timeout to set"
        )));
    }
    Ok(())
}

/// Asks every controller of `nqn` to rescan its namespaces (a grown
/// volume's new size).
pub fn rescan(nqn: &str) {
    for c in controllers(nqn) {
        let f = Path::new(CLASS_NVME)
            .join(&c.name)
            .join("rescan_controller");
        if let Err(e) = fs::write(&f, "1") {
            tracing::warn!(controller = %c.name, error = %e, "rescan failed");
        }
    }
}

/// Deletes every controller of `nqn` and waits (bounded) until they are
/// gone. Nothing to do when none is connected.
pub async fn disconnect(nqn: &str, limit: Duration) -> NodeResult<()> {
    for c in controllers(nqn) {
        let f = Path::new(CLASS_NVME)
            .join(&c.name)
            .join("delete_controller");
        // The controller may vanish between the listing and the write.
        if let Err(e) = fs::write(&f, "1") {
            if f.exists() {
                return Err(NodeError::internal(format!(
                    "cannot delete controller {} of {nqn}: {e}",
                    c.name
                )));
            }
        }
    }
    let start = Instant::now();
    loop {
        let left = controllers(nqn);
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(NodeError::DeadlineExceeded(format!(
                "controllers of {nqn} still there after {limit:?}: {}",
                describe(&left)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What sysfs says about a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// `nvme0n1`.
    pub name: String,
    /// The NQN of its subsystem, for an NVMe namespace.
    pub nqn: Option<String>,
}

/// The block device with number `major:minor`, if the kernel still has it.
pub fn block_device(major: u64, minor: u64) -> Option<BlockDevice> {
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let real = fs::canonicalize(&link).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    // The parent is the subsystem (multipath) or the controller.
    let nqn = real.parent().and_then(|p| read_trim(&p.join("subsysnqn")));
    Some(BlockDevice { name, nqn })
}

/// Size in bytes of block device `name` (`/sys/block/NAME/size` sectors).
pub fn size_bytes(name: &str) -> Option<u64> {
    read_trim(&Path::new("/sys/block").join(name).join("size"))?
        .parse::<u64>()
        .ok()
        .map(|s| s * 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_namespaces() {
        assert!(is_ns_name("nvme0n1") && is_ns_name("nvme10n22"));
        for n in [
            "nvme0c0n1",
            "ng0n1",
            "nvme0",
            "nvme0n",
            "nvmen1",
            "nvme-subsys0",
        ] {
            assert!(!is_ns_name(n), "{n}");
        }
    }
}
