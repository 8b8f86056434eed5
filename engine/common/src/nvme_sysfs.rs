//! The kernel NVMe host's controllers as sysfs shows them: the one home of
//! that layout for the CSI node plugin and the HA node agent.
//!
//! ```text
//! <class>/nvmeC/{subsysnqn,state,address}    one controller (one path)
//! ```
//!
//! `<class>` is `/sys/class/nvme` on a node, or a made-up tree in tests.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The kernel's controller class directory.
pub const CLASS_NVME: &str = "/sys/class/nvme";

/// One NVMe controller of the kernel (one path to a subsystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `nvme3`.
    pub name: String,
    /// Subsystem NQN.
    pub nqn: String,
    /// `live`, `connecting`, `resetting`, `deleting`, `dead`, `new`, or
    /// `unknown` when sysfs does not say.
    pub state: String,
    /// `TRADDR:TRSVCID` of its target (empty when sysfs does not say).
    pub address: String,
}

impl Controller {
    /// The controller is connected and serving.
    pub fn live(&self) -> bool {
        self.state == "live"
    }
}

/// `TRADDR:TRSVCID` of a controller's `address` attribute
/// (`traddr=10.0.2.100,trsvcid=4420,src_addr=10.0.2.15`); empty when
/// either field is missing.
pub fn parse_address(attr: &str) -> String {
    let field = |k: &str| {
        attr.split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_owned())
    };
    match (field("traddr"), field("trsvcid")) {
        (Some(a), Some(p)) => format!("{a}:{p}"),
        _ => String::new(),
    }
}

/// A sysfs attribute without its trailing newline; `None` when it cannot
/// be read.
pub fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// `nvme<digits>`: a controller, not a namespace (`nvme0n1`) nor a
/// subsystem (`nvme-subsys0`).
pub fn is_ctrl_name(n: &str) -> bool {
    n.strip_prefix("nvme")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The entries of `dir` as (name, path), sorted by name; empty when it
/// cannot be read.
pub fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

/// Every controller under `class` (in any state) whose subsystem NQN
/// passes `keep`, sorted by name.
pub fn controllers(class: &Path, keep: impl Fn(&str) -> bool) -> Vec<Controller> {
    entries(class)
        .into_iter()
        .filter(|(n, _)| is_ctrl_name(n))
        .filter_map(|(name, p)| {
            let nqn = read_trim(&p.join("subsysnqn"))?;
            keep(&nqn).then(|| Controller {
                state: read_trim(&p.join("state")).unwrap_or_else(|| "unknown".into()),
                address: read_trim(&p.join("address"))
                    .map(|a| parse_address(&a))
                    .unwrap_or_default(),
                nqn,
                name,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_parse() {
        assert_eq!(
            parse_address("traddr=10.0.2.100,trsvcid=4420,src_addr=10.0.2.15"),
            "10.0.2.100:4420"
        );
        assert_eq!(parse_address("traddr=10.0.2.100"), "");
        assert!(is_ctrl_name("nvme0") && is_ctrl_name("nvme12"));
        assert!(!is_ctrl_name("nvme0n1") && !is_ctrl_name("nvme") && !is_ctrl_name("nvme-subsys0"));
    }

    #[test]
    fn controllers_are_read_from_a_tree() {
        let dir = std::env::temp_dir().join(format!("nvme-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ctrl = |name: &str, nqn: &str, state: Option<&str>| {
            let p = dir.join(name);
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("subsysnqn"), format!("{nqn}\n")).unwrap();
            if let Some(s) = state {
                fs::write(p.join("state"), format!("{s}\n")).unwrap();
            }
            fs::write(p.join("address"), "traddr=127.0.0.1,trsvcid=8420\n").unwrap();
        };
        ctrl("nvme2", "nqn.a", Some("connecting"));
        ctrl("nvme1", "nqn.a", Some("live"));
        ctrl("nvme3", "nqn.b", Some("live"));
        ctrl("nvme1n1", "nqn.a", Some("live"));
        ctrl("nvme4", "nqn.a", None);

        let got = controllers(&dir, |n| n == "nqn.a");
        let names: Vec<_> = got.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["nvme1", "nvme2", "nvme4"]);
        assert!(got[0].live() && !got[1].live());
        assert_eq!(got[2].state, "unknown");
        assert!(got
            .iter()
            .all(|c| c.address == "127.0.0.1:8420" && c.nqn == "nqn.a"));
        assert!(controllers(&dir.join("missing"), |_| true).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
