//! StorageClass parameters of `CreateVolume` (and `GetCapacity`): parsed
//! and validated in one place, before anything is created. A bad value is
//! a [`ParamError`] naming the parameter and the value; an unknown key is
//! refused too (a typo must not silently give a default), except the keys
//! Kubernetes adds itself (`csi.storage.k8s.io/...`).

use std::collections::{BTreeMap, HashMap};

use openapi::models::{AffinityGroup, LabelledTopology, Topology};

use crate::context as key;

/// A refused parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid StorageClass parameter {param}={value:?}: {why}")]
pub struct ParamError {
    pub param: String,
    pub value: String,
    pub why: String,
}

fn bad(param: &str, value: &str, why: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_owned(),
        value: value.to_owned(),
        why: why.into(),
    }
}

/// Filesystem of a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsType {
    #[default]
    Ext4,
    Xfs,
}

impl FsType {
    pub fn parse(text: &str) -> Option<FsType> {
        match text {
            "ext4" => Some(FsType::Ext4),
            "xfs" => Some(FsType::Xfs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

/// The validated parameters of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    pub replicas: u8,
    pub thin: bool,
    pub fs_type: FsType,
    pub io_timeout_s: Option<u32>,
    pub nvme_ctrl_loss_tmo_s: Option<u32>,
    pub nvme_keep_alive_tmo_s: Option<u32>,
    pub nvme_nr_io_queues: Option<u32>,
    /// `<namespace>/<pvc name without its ordinal>` when
    /// `stsAffinityGroup=true`.
    pub affinity_group: Option<String>,
    pub local: bool,
    /// Pool labels required by the parameters (the creator label is added
    /// by [`VolumeParams::topology`]).
    pub pool_inclusion: BTreeMap<String, String>,
    pub node_inclusion: BTreeMap<String, String>,
}

impl VolumeParams {
    /// Parses `params`; `Err` names the first bad parameter.
    pub fn parse(params: &HashMap<String, String>) -> Result<VolumeParams, ParamError> {
        // Sorted, so the error for several bad keys is always the same one.
        let sorted: BTreeMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut out = VolumeParams {
            replicas: 1,
            thin: false,
            fs_type: FsType::Ext4,
            io_timeout_s: None,
            nvme_ctrl_loss_tmo_s: None,
            nvme_keep_alive_tmo_s: None,
            nvme_nr_io_queues: None,
            affinity_group: None,
            local: false,
            pool_inclusion: BTreeMap::new(),
            node_inclusion: BTreeMap::new(),
        };
        let mut sts = false;
        for (&k, &v) in &sorted {
            match k {
                key::REPL => {
                    out.replicas = match v.parse::<u8>() {
                        Ok(n) if n > 0 => n,
                        _ => return Err(bad(k, v, "expected a replica count from 1 to 255")),
                    }
                }
                key::PROTOCOL => {
                    if v != "nvmf" {
                        return Err(bad(k, v, "the only protocol is nvmf"));
                    }
                }
                key::THIN => out.thin = boolean(k, v)?,
                key::FS_TYPE => {
                    out.fs_type =
                        FsType::parse(v).ok_or_else(|| bad(k, v, "expected ext4 or xfs"))?
                }
                key::IO_TIMEOUT => out.io_timeout_s = Some(seconds(k, v, 1)?),
                key::NVME_CTRL_LOSS_TMO => out.nvme_ctrl_loss_tmo_s = Some(seconds(k, v, 0)?),
                key::NVME_KEEP_ALIVE_TMO => out.nvme_keep_alive_tmo_s = Some(seconds(k, v, 1)?),
                key::NVME_NR_IO_QUEUES => out.nvme_nr_io_queues = Some(seconds(k, v, 1)?),
                key::STS_AFFINITY_GROUP => sts = boolean(k, v)?,
                key::LOCAL => out.local = boolean(k, v)?,
                key::POOL_AFFINITY_TOPOLOGY_LABEL => label_pairs(k, v, &mut out.pool_inclusion)?,
                key::NODE_AFFINITY_TOPOLOGY_LABEL => label_pairs(k, v, &mut out.node_inclusion)?,
                key::POOL_HAS_TOPOLOGY_KEY => label_keys(k, v, &mut out.pool_inclusion)?,
                key::NODE_HAS_TOPOLOGY_KEY => label_keys(k, v, &mut out.node_inclusion)?,
                k if k.starts_with(key::KUBERNETES_PREFIX) => {}
                _ => return Err(bad(k, v, "unknown parameter")),
            }
        }
        if sts {
            out.affinity_group = Some(sts_group(&sorted)?);
        }
        Ok(out)
    }

    /// The REST topology: the parameters' labels plus the pools the CSI
    /// driver may use (`pool_selector`).
    pub fn topology(&self, pool_selector: &BTreeMap<String, String>) -> Option<Topology> {
        let mut pool = self.pool_inclusion.clone();
        pool.extend(pool_selector.iter().map(|(k, v)| (k.clone(), v.clone())));
        let side = |inclusion: BTreeMap<String, String>| {
            (!inclusion.is_empty()).then_some(LabelledTopology {
                inclusion,
                exclusion: BTreeMap::new(),
            })
        };
        let topology = Topology {
            node_topology: side(self.node_inclusion.clone()),
            pool_topology: side(pool),
        };
        (topology.node_topology.is_some() || topology.pool_topology.is_some()).then_some(topology)
    }

    pub fn affinity(&self) -> Option<AffinityGroup> {
        self.affinity_group
            .as_ref()
            .map(|id| AffinityGroup { id: id.clone() })
    }

    /// The volume context returned to the CO: the normalised parameters the
    /// node needs (every value as accepted here).
    pub fn volume_context(&self) -> HashMap<String, String> {
        let mut ctx = HashMap::new();
        ctx.insert(key::PROTOCOL.to_owned(), "nvmf".to_owned());
        ctx.insert(key::REPL.to_owned(), self.replicas.to_string());
        ctx.insert(key::THIN.to_owned(), self.thin.to_string());
        ctx.insert(key::FS_TYPE.to_owned(), self.fs_type.as_str().to_owned());
        ctx.insert(key::LOCAL.to_owned(), self.local.to_string());
        for (k, v) in [
            (key::IO_TIMEOUT, self.io_timeout_s),
            (key::NVME_CTRL_LOSS_TMO, self.nvme_ctrl_loss_tmo_s),
            (key::NVME_KEEP_ALIVE_TMO, self.nvme_keep_alive_tmo_s),
            (key::NVME_NR_IO_QUEUES, self.nvme_nr_io_queues),
        ] {
            if let Some(v) = v {
                ctx.insert(k.to_owned(), v.to_string());
            }
        }
        ctx
    }
}

fn boolean(k: &str, v: &str) -> Result<bool, ParamError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(k, v, "expected true or false")),
    }
}

/// A whole number of at least `min`.
fn seconds(k: &str, v: &str, min: u32) -> Result<u32, ParamError> {
    match v.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(bad(k, v, format!("expected a whole number >= {min}"))),
    }
}

/// A label key: non-empty, no spaces, `=`, `:` or commas.
fn label_key(k: &str, v: &str, label: &str) -> Result<String, ParamError> {
    let ok = !label.is_empty()
        && label.len() <= 253
        && !label
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == ':' || c == ',');
    if ok {
        Ok(label.to_owned())
    } else {
        Err(bad(k, v, format!("{label:?} is not a label key")))
    }
}

fn entries(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

fn label_pairs(k: &str, v: &str, into: &mut BTreeMap<String, String>) -> Result<(), ParamError> {
    let mut any = false;
    for entry in entries(v) {
        let (name, value) = entry
            .split_once('=')
            .or_else(|| entry.split_once(':'))
            .ok_or_else(|| bad(k, v, format!("{entry:?} is not key=value")))?;
        let value = value.trim();
        if value.is_empty() || value.chars().any(char::is_whitespace) {
            return Err(bad(k, v, format!("{entry:?} has no single-word value")));
        }
        into.insert(label_key(k, v, name.trim())?, value.to_owned());
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(bad(k, v, "expected key=value pairs"))
    }
}

fn label_keys(k: &str, v: &str, into: &mut BTreeMap<String, String>) -> Result<(), ParamError> {
    let mut any = false;
    for entry in entries(v) {
        into.entry(label_key(k, v, entry)?).or_default();
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(bad(k, v, "expected label keys"))
    }
}

/// `<namespace>/<pvc name without its ordinal>`: `data-web-2` in `shop`
/// gives `shop/data-web`.
fn sts_group(params: &BTreeMap<&str, &str>) -> Result<String, ParamError> {
    let (Some(name), Some(ns)) = (params.get(key::PVC_NAME), params.get(key::PVC_NAMESPACE)) else {
        return Err(bad(
            key::STS_AFFINITY_GROUP,
            "true",
            "needs the PVC's name and namespace (run the provisioner with --extra-create-metadata)",
        ));
    };
    let base = match name.rsplit_once('-') {
        Some((base, ordinal))
            if !base.is_empty()
                && !ordinal.is_empty()
                && ordinal.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    };
    Ok(format!("{ns}/{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<VolumeParams, ParamError> {
        VolumeParams::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_every_parameter() {
        let d = parse(&[]).expect("empty is fine");
        assert_eq!((d.replicas, d.thin, d.fs_type), (1, false, FsType::Ext4));
        assert_eq!(d.topology(&BTreeMap::new()), None);

        let p = parse(&[
            ("repl", "3"),
            ("protocol", "nvmf"),
            ("thin", "true"),
            ("fsType", "xfs"),
            ("ioTimeout", "30"),
            ("nvmeCtrlLossTmo", "1980"),
            ("nvmeKeepAliveTmo", "5"),
            ("nvmeNrIoQueues", "2"),
            ("stsAffinityGroup", "true"),
            ("local", "true"),
            ("poolAffinityTopologyLabel", "zone=a\nrack: r1"),
            ("poolHasTopologyKey", "ssd"),
            ("nodeAffinityTopologyLabel", "tier=gold"),
            ("nodeHasTopologyKey", "fast, big"),
            ("csi.storage.k8s.io/pvc/name", "data-web-12"),
            ("csi.storage.k8s.io/pvc/namespace", "shop"),
            ("csi.storage.k8s.io/pv/name", "pvc-x"),
        ])
        .expect("all valid");
        assert_eq!(p.replicas, 3);
        assert!(p.thin && p.local);
        assert_eq!(p.fs_type, FsType::Xfs);
        assert_eq!(
            (
                p.io_timeout_s,
                p.nvme_ctrl_loss_tmo_s,
                p.nvme_keep_alive_tmo_s,
                p.nvme_nr_io_queues
            ),
            (Some(30), Some(1980), Some(5), Some(2))
        );
        assert_eq!(p.affinity_group.as_deref(), Some("shop/data-web"));
        let selector = BTreeMap::from([("openebs.io/created-by".into(), "x".into())]);
        let t = p.topology(&selector).expect("topology");
        let pools = t.pool_topology.expect("pool side").inclusion;
        assert_eq!(pools.get("zone").map(String::as_str), Some("a"));
        assert_eq!(pools.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(pools.get("ssd").map(String::as_str), Some(""));
        assert_eq!(
            pools.get("openebs.io/created-by").map(String::as_str),
            Some("x")
        );
        let nodes = t.node_topology.expect("node side").inclusion;
        assert_eq!(nodes.len(), 3);
        let ctx = p.volume_context();
        assert_eq!(ctx.get("ioTimeout").map(String::as_str), Some("30"));
        assert_eq!(ctx.get("fsType").map(String::as_str), Some("xfs"));
    }

    #[test]
    fn each_bad_value_names_its_parameter() {
        for (k, v) in [
            ("repl", "0"),
            ("repl", "three"),
            ("repl", "256"),
            ("protocol", "iscsi"),
            ("thin", "yes"),
            ("fsType", "btrfs"),
            ("ioTimeout", "0"),
            ("ioTimeout", "-1"),
            ("nvmeCtrlLossTmo", "soon"),
            ("nvmeKeepAliveTmo", "0"),
            ("nvmeNrIoQueues", "0"),
            ("stsAffinityGroup", "1"),
            ("local", "maybe"),
            ("poolAffinityTopologyLabel", "zone"),
            ("poolAffinityTopologyLabel", "a b=c"),
            ("nodeAffinityTopologyLabel", ""),
            ("poolHasTopologyKey", ""),
            ("nodeHasTopologyKey", "a=b"),
            ("rep1", "3"),
        ] {
            let err = parse(&[(k, v)]).expect_err(&format!("{k}={v} is refused"));
            assert_eq!((err.param.as_str(), err.value.as_str()), (k, v));
            let text = err.to_string();
            assert!(
                text.contains(k) && text.contains(&format!("{v:?}")),
                "{text}"
            );
        }
        let err = parse(&[("stsAffinityGroup", "true")]).expect_err("no pvc metadata");
        assert_eq!(err.param, "stsAffinityGroup");
        assert!(err.why.contains("--extra-create-metadata"), "{err}");
    }

    #[test]
    fn sts_group_drops_only_a_numeric_ordinal() {
        let group = |name: &str| {
            parse(&[
                ("stsAffinityGroup", "true"),
                ("csi.storage.k8s.io/pvc/name", name),
                ("csi.storage.k8s.io/pvc/namespace", "ns"),
            ])
            .expect("valid")
            .affinity_group
            .expect("group")
        };
        assert_eq!(group("www-web-0"), "ns/www-web");
        assert_eq!(group("www-web-x"), "ns/www-web-x");
        assert_eq!(group("plain"), "ns/plain");
        assert_eq!(group("-7"), "ns/-7");
    }
}
