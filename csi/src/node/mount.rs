//! Mounts: what `/proc/self/mountinfo` says is mounted, and `mount(2)` /
//! `umount(2)` for the filesystem mounts, bind mounts and read-only
//! remounts of the node plugin.
//!
//! mountinfo line (proc(5)):
//!
//! ```text
//! 36 35 259:1 / /mnt/staging rw,noatime shared:1 - ext4 /dev/nvme0n1 rw
//! id parent maj:min root mount-point options [optional...] - fstype source super-options
//! ```

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::error::{NodeError, NodeResult};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u64,
    pub minor: u64,
    /// The mounted directory of the source filesystem (`/` for a whole
    /// filesystem, `/nvme0n1` for a device node bound from devtmpfs).
    pub root: String,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, ...).
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
}

impl MountEntry {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            if f.len() < 6 || g.len() < 2 {
                return None;
            }
            let (maj, min) = f[2].split_once(':')?;
            Some(MountEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                root: unescape(f[3]),
                mount_point: PathBuf::from(unescape(f[4])),
                options: f[5].split(',').map(str::to_owned).collect(),
                fs_type: g[0].to_owned(),
                source: unescape(g[1]),
            })
        })
        .collect()
}

/// The current mounts, in mount order.
pub fn mounts() -> NodeResult<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| NodeError::internal(format!("cannot read /proc/self/mountinfo: {e}")))?;
    Ok(parse_mountinfo(&text))
}

/// The topmost mount at `path`, if `path` is a mount point.
pub fn mount_at(all: &[MountEntry], path: &Path) -> Option<MountEntry> {
    all.iter().rev().find(|m| m.mount_point == path).cloned()
}

/// Mounts of the filesystem on block device `major:minor` (whole
/// filesystems and bind mounts of it), in mount order.
pub fn mounts_of_device(all: &[MountEntry], major: u64, minor: u64) -> Vec<MountEntry> {
    all.iter()
        .filter(|m| m.major == major && m.minor == minor)
        .cloned()
        .collect()
}

/// Bind mounts of the device node `/dev/NAME` (raw block volumes), in
/// mount order.
pub fn binds_of_device_node(all: &[MountEntry], name: &str) -> Vec<MountEntry> {
    let suffix = format!("/{name}");
    all.iter()
        .filter(|m| matches!(m.fs_type.as_str(), "devtmpfs" | "tmpfs") && m.root.ends_with(&suffix))
        .cloned()
        .collect()
}

/// Splits mount(8)-style options into flags and the filesystem's data
/// string.
pub fn split_options(opts: &[String]) -> (MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts.iter().flat_map(|o| o.split(',')).map(str::trim) {
        match o {
            "" | "rw" | "defaults" => {}
            "ro" => flags |= MsFlags::MS_RDONLY,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "lazytime" => flags |= MsFlags::MS_LAZYTIME,
            other => data.push(other.to_owned()),
        }
    }
    (flags, data)
}

fn sys_err(what: &str, e: nix::Error) -> NodeError {
    NodeError::internal(format!("{what}: {}", e.desc().to_lowercase()))
}

/// Mounts filesystem `fs_type` of `device` at `target` with mount(8)-style
/// `options`.
pub fn mount_fs(device: &Path, target: &Path, fs_type: &str, options: &[String]) -> NodeResult<()> {
    let (flags, data) = split_options(options);
    let data = data.join(",");
    nix::mount::mount(
        Some(device),
        target,
        Some(fs_type),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| {
        sys_err(
            &format!(
                "mount -t {fs_type} -o {data} {} {}",
                device.display(),
                target.display()
            ),
            e,
        )
    })
}

/// Bind-mounts `source` (directory or file) at `target`, read-only when
/// asked (a bind mount takes the flag only on a remount), with the extra
/// per-mount `options` (nosuid, noexec, ...).
pub fn bind(source: &Path, target: &Path, read_only: bool, options: &[String]) -> NodeResult<()> {
    let what = format!("mount --bind {} {}", source.display(), target.display());
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| sys_err(&what, e))?;
    let (mut flags, _) = split_options(options);
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    if !flags.is_empty() {
        let r = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        );
        if let Err(e) = r {
            // Leave nothing half done.
            let _ = unmount(target);
            return Err(sys_err(&format!("{what} (remount {flags:?})"), e));
        }
    }
    Ok(())
}

/// Unmounts `target`.
pub fn unmount(target: &Path) -> NodeResult<()> {
    nix::mount::umount2(target, MntFlags::empty())
        .map_err(|e| sys_err(&format!("umount {}", target.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=4k
36 22 259:1 / /mnt/stage\\040one rw,noatime shared:1 - ext4 /dev/nvme0n1 rw
37 22 259:1 / /pods/a/mount ro,relatime - ext4 /dev/nvme0n1 rw
38 22 0:5 /nvme1n1 /pods/b/dev rw,nosuid - devtmpfs udev rw
bad line
";

    #[test]
    fn mountinfo_lines_are_read() {
        let all = parse_mountinfo(INFO);
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].mount_point, PathBuf::from("/mnt/stage one"));
        assert_eq!(
            (all[1].major, all[1].minor, all[1].fs_type.as_str()),
            (259, 1, "ext4")
        );
        assert!(all[2].read_only() && !all[1].read_only());
        let of = mounts_of_device(&all, 259, 1);
        assert_eq!(of.len(), 2);
        assert_eq!(of[0].mount_point, PathBuf::from("/mnt/stage one"));
        let binds = binds_of_device_node(&all, "nvme1n1");
        assert_eq!(binds.len(), 1);
        assert_eq!(binds[0].mount_point, PathBuf::from("/pods/b/dev"));
        assert!(binds_of_device_node(&all, "nvme1n").is_empty());
        assert!(mount_at(&all, Path::new("/pods/a/mount")).is_some());
        assert!(mount_at(&all, Path::new("/pods")).is_none());
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = split_options(&["noatime,nouuid".into(), "ro".into(), "discard".into()]);
        assert!(f.contains(MsFlags::MS_NOATIME | MsFlags::MS_RDONLY));
        assert_eq!(d, vec!["nouuid".to_owned(), "discard".to_owned()]);
    }
}
