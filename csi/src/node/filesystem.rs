//! Filesystems on a volume's device: which one is there (`blkid`), making
//! one only where there is none (`mkfs.ext4`, `mkfs.xfs`), and growing it
//! (`resize2fs`, `xfs_growfs`).
//!
//! Invariant: a device is formatted only when `blkid` positively reports
//! no signature at all (exit code 2); any other answer (a filesystem, a
//! partition table, a probe error) leaves it untouched.

use std::{path::Path, time::Duration};

use super::{
    error::{NodeError, NodeResult},
    exec,
};

/// The filesystems a volume can be formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    /// From the capability's `fs_type` (empty means ext4, the default).
    pub fn parse(s: &str) -> NodeResult<Self> {
        match s {
            "" | "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            other => Err(NodeError::invalid(format!(
                "filesystem type {other:?} is not supported (ext4 or xfs)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }

    /// Options every mount of this filesystem gets: XFS refuses a second
    /// mount of the same filesystem uuid (a clone, a snapshot) without
    /// `nouuid`.
    pub fn mount_options(self) -> &'static [&'static str] {
        match self {
            FsType::Ext4 => &[],
            FsType::Xfs => &["nouuid"],
        }
    }
}

const PROBE_LIMIT: Duration = Duration::from_secs(30);
const MKFS_LIMIT: Duration = Duration::from_secs(300);
const GROW_LIMIT: Duration = Duration::from_secs(300);

/// What `blkid` found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Nothing at all: safe to format.
    Empty,
    /// A filesystem (`TYPE`), with its uuid when it has one.
    Filesystem {
        fs_type: String,
        uuid: Option<String>,
    },
    /// Something else (a partition table, ...): never formatted.
    Other(String),
}

/// Parses `blkid -p -o export` output.
pub fn parse_export(text: &str) -> Signature {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
    };
    match (get("TYPE"), get("PTTYPE")) {
        (Some(t), _) => Signature::Filesystem {
            fs_type: t,
            uuid: get("UUID"),
        },
        (None, Some(pt)) => Signature::Other(format!("a {pt} partition table")),
        (None, None) => Signature::Other("an unknown signature".to_owned()),
    }
}

/// Probes `device` with low-level `blkid` (no cache).
pub async fn probe(device: &Path) -> NodeResult<Signature> {
    let dev = device.to_string_lossy();
    let out = exec::run("blkid", &["-p", "-o", "export", &dev], PROBE_LIMIT).await?;
    match out.code {
        Some(0) => Ok(parse_export(&out.stdout)),
        // blkid: 2 = no signature could be found.
        Some(2) => Ok(Signature::Empty),
        _ => Err(NodeError::internal(format!(
            "blkid -p {dev} failed: {}",
            out.last_line()
        ))),
    }
}

/// Makes filesystem `fs` on `device`, which `blkid` found empty.
pub async fn make(device: &Path, fs: FsType) -> NodeResult<()> {
    let dev = device.to_string_lossy();
    match fs {
        // No discard pass: a fresh volume reads as zeroes already.
        FsType::Ext4 => {
            exec::run_ok("mkfs.ext4", &["-q", "-E", "nodiscard", &dev], MKFS_LIMIT).await
        }
        FsType::Xfs => exec::run_ok("mkfs.xfs", &["-q", "-K", &dev], MKFS_LIMIT).await,
    }
    .map(|_| ())
}

/// Grows the filesystem `fs_type` mounted at `mount_point` from `device` to
/// the device's size (online).
pub async fn grow(fs_type: &str, device: &Path, mount_point: &Path) -> NodeResult<()> {
    match fs_type {
        "ext4" | "ext3" | "ext2" => {
            exec::run_ok("resize2fs", &[&device.to_string_lossy()], GROW_LIMIT).await
        }
        "xfs" => exec::run_ok("xfs_growfs", &[&mount_point.to_string_lossy()], GROW_LIMIT).await,
        other => Err(NodeError::FailedPrecondition(format!(
            "cannot grow a {other} filesystem"
        ))),
    }
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkid_export_is_read() {
        assert_eq!(
            parse_export("DEVNAME=/dev/x\nUUID=abc\nBLOCK_SIZE=4096\nTYPE=ext4\n"),
            Signature::Filesystem {
                fs_type: "ext4".into(),
                uuid: Some("abc".into())
            }
        );
        assert!(matches!(parse_export("PTTYPE=gpt\n"), Signature::Other(_)));
        assert!(matches!(
            parse_export("DEVNAME=/dev/x\n"),
            Signature::Other(_)
        ));
    }

    #[test]
    fn fs_types() {
        assert_eq!(FsType::parse("").ok(), Some(FsType::Ext4));
        assert_eq!(FsType::parse("xfs").ok(), Some(FsType::Xfs));
        assert!(FsType::parse("btrfs").is_err());
        assert_eq!(FsType::Xfs.mount_options(), &["nouuid"]);
    }
}
