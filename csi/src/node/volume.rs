//! What a request says about a volume, checked: its id (a uuid, whose
//! target NQN follows), its access type and mode, and the device behind a
//! path.

use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor, SFlag};

use super::{
    config::volume_nqn,
    error::{NodeError, NodeResult},
    filesystem::FsType,
    pb::{self, volume_capability::access_mode::Mode, volume_capability::AccessType},
};

/// A checked volume id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId {
    pub uuid: uuid::Uuid,
    /// The NQN of its target.
    pub nqn: String,
}

impl VolumeId {
    /// The id must be present and a uuid (the control plane's volume ids).
    pub fn parse(id: &str) -> NodeResult<Self> {
        if id.is_empty() {
            return Err(NodeError::invalid("volume id is missing"));
        }
        let uuid = uuid::Uuid::parse_str(id)
            .map_err(|_| NodeError::invalid(format!("volume id {id:?} is not a uuid")))?;
        Ok(VolumeId {
            nqn: volume_nqn(uuid),
            uuid,
        })
    }
}

/// A path field that must be present and absolute.
pub fn required_path(field: &str, value: &str) -> NodeResult<PathBuf> {
    if value.is_empty() {
        return Err(NodeError::invalid(format!("{field} is missing")));
    }
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(NodeError::invalid(format!(
            "{field} {value:?} is not an absolute path"
        )));
    }
    Ok(p)
}

/// The `volume_path` of NodeGetVolumeStats and NodeExpandVolume: missing
/// is INVALID_ARGUMENT; a relative path cannot be where the volume is
/// (NOT_FOUND, as the CSI spec says for a volume not at that path).
pub fn volume_path(volume_id: &str, value: &str) -> NodeResult<PathBuf> {
    if value.is_empty() {
        return Err(NodeError::invalid("volume_path is missing"));
    }
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(NodeError::NotFound(format!(
            "volume {volume_id} is not at {value:?} (not an absolute path)"
        )));
    }
    Ok(p)
}

/// How the volume is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The raw block device.
    Block,
    /// A filesystem, with extra mount(8) options.
    Mount { fs: FsType, flags: Vec<String> },
}

/// A checked volume capability: the access type and whether the mode is
/// read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub access: Access,
    pub read_only_mode: bool,
}

impl Capability {
    /// Single-node modes only (the volume is attached to one node).
    pub fn parse(cap: Option<&pb::VolumeCapability>) -> NodeResult<Self> {
        let cap = cap.ok_or_else(|| NodeError::invalid("volume capability is missing"))?;
        let mode = cap
            .access_mode
            .as_ref()
            .ok_or_else(|| NodeError::invalid("volume capability has no access mode"))?
            .mode;
        let read_only_mode = match Mode::try_from(mode) {
            Ok(
                Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter,
            ) => false,
            Ok(Mode::SingleNodeReaderOnly) => true,
            Ok(m) => {
                return Err(NodeError::invalid(format!(
                    "access mode {} is not supported (single-node modes only)",
                    m.as_str_name()
                )))
            }
            Err(_) => return Err(NodeError::invalid(format!("access mode {mode} is unknown"))),
        };
        let access = match &cap.access_type {
            Some(AccessType::Block(_)) => Access::Block,
            Some(AccessType::Mount(m)) => {
                if !m.volume_mount_group.is_empty() {
                    return Err(NodeError::invalid(
                        "volume_mount_group is not supported (capability VOLUME_MOUNT_GROUP is not offered)",
                    ));
                }
                Access::Mount {
                    fs: FsType::parse(&m.fs_type)?,
                    flags: m.mount_flags.clone(),
                }
            }
            None => return Err(NodeError::invalid("volume capability has no access type")),
        };
        Ok(Capability {
            access,
            read_only_mode,
        })
    }
}

/// The device number behind `path`: a block device node's own number, or
/// the number of the filesystem `path` is on; and whether `path` is a block
/// device node.
pub fn device_number(path: &Path) -> NodeResult<(u64, u64, bool)> {
    let st = nix::sys::stat::stat(path).map_err(|e| {
        NodeError::internal(format!(
            "stat {}: {}",
            path.display(),
            e.desc().to_lowercase()
        ))
    })?;
    let is_block = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFBLK;
    let dev = if is_block { st.st_rdev } else { st.st_dev };
    Ok((major(dev), minor(dev), is_block))
}

/// The file a raw block volume is bound to inside its staging directory.
pub fn block_staging_file(staging: &Path, volume: &VolumeId) -> PathBuf {
    staging.join(volume.uuid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(mode: Mode, t: Option<AccessType>) -> pb::VolumeCapability {
        pb::VolumeCapability {
            access_mode: Some(AccessMode { mode: mode as i32 }),
            access_type: t,
        }
    }

    #[test]
    fn ids_and_paths_are_checked() {
        assert!(VolumeId::parse("").is_err());
        assert!(VolumeId::parse("vol-1").is_err());
        let u = uuid::Uuid::new_v4();
        assert_eq!(
            VolumeId::parse(&u.to_string()).map(|v| v.nqn).ok(),
            Some(format!("nqn.2019-05.io.openebs:{u}"))
        );
        assert!(required_path("target_path", "").is_err());
        assert!(required_path("target_path", "rel/x").is_err());
        assert!(required_path("target_path", "/x").is_ok());
    }

    #[test]
    fn capabilities_are_checked() {
        let mount = |fs: &str| {
            Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                mount_flags: vec![],
                volume_mount_group: String::new(),
            }))
        };
        assert!(Capability::parse(None).is_err());
        let c = Capability::parse(Some(&cap(Mode::SingleNodeWriter, mount("")))).expect("ok");
        assert_eq!(
            c.access,
            Access::Mount {
                fs: FsType::Ext4,
                flags: vec![]
            }
        );
        let c = Capability::parse(Some(&cap(
            Mode::SingleNodeReaderOnly,
            Some(AccessType::Block(BlockVolume {})),
        )))
        .expect("ok");
        assert!(c.read_only_mode && c.access == Access::Block);
        for bad in [
            cap(Mode::MultiNodeMultiWriter, mount("ext4")),
            cap(Mode::Unknown, mount("ext4")),
            cap(Mode::SingleNodeWriter, mount("btrfs")),
            cap(Mode::SingleNodeWriter, None),
        ] {
            assert!(matches!(
                Capability::parse(Some(&bad)),
                Err(NodeError::InvalidArgument(_))
            ));
        }
    }
}
