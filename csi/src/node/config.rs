//! The node's settings (from `csi-node`'s flags) and the connection
//! parameters of one volume, read from its publish context (set by the
//! controller from the StorageClass), falling back to the node's defaults.
//!
//! Publish context keys: `uri` (`nvmf://HOST:PORT/NQN[?...]`, required),
//! `ioTimeout`, `nvmeCtrlLossTmo`, `nvmeKeepAliveTmo`, `nvmeNrIoQueues`,
//! `nvmeReconnectDelay` (seconds, or a count for the queues). The volume
//! context is read for the same keys when the publish context lacks them.

use std::{collections::HashMap, time::Duration};

use super::error::NodeError;

/// The host NQN this node connects with, and the NQN of a volume's target.
pub use openapi::names::{host_nqn, volume_nqn};

/// Defaults of the NVMe/TCP connection (the `--nvme-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeDefaults {
    /// Seconds the kernel keeps reconnecting a lost controller.
    pub ctrl_loss_tmo_s: u32,
    /// Keep-alive timeout in seconds.
    pub keep_alive_tmo_s: u32,
    /// Seconds between reconnect attempts.
    pub reconnect_delay_s: u32,
    /// I/O queues; the kernel's default (one per CPU) when absent.
    pub nr_io_queues: Option<u32>,
    /// Block-layer I/O timeout in seconds; the kernel's (30 s) when absent.
    pub io_timeout_s: Option<u32>,
    /// How long to wait for the namespace's block device after connecting.
    pub device_wait: Duration,
}

impl Default for NvmeDefaults {
    fn default() -> Self {
        NvmeDefaults {
            ctrl_loss_tmo_s: 1980,
            keep_alive_tmo_s: 5,
            reconnect_delay_s: 2,
            nr_io_queues: None,
            io_timeout_s: None,
            device_wait: Duration::from_secs(20),
        }
    }
}

/// Settings of the node plugin.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Kubernetes node name: the CSI node id and the host NQN's suffix.
    pub node_name: String,
    pub nvme: NvmeDefaults,
}

impl NodeConfig {
    /// Checks the node name (it ends up in an NQN and in topology).
    pub fn new(node_name: &str, nvme: NvmeDefaults) -> Result<Self, String> {
        let ok = !node_name.is_empty()
            && node_name.len() <= 200
            && node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !ok {
            return Err(format!(
                "invalid node name {node_name:?}: letters, digits, '-', '.' and '_' only"
            ));
        }
        Ok(NodeConfig {
            node_name: node_name.to_owned(),
            nvme,
        })
    }

    pub fn host_nqn(&self) -> String {
        host_nqn(&self.node_name)
    }
}

/// Where and how to connect one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub nqn: String,
    pub ctrl_loss_tmo_s: u32,
    pub keep_alive_tmo_s: u32,
    pub reconnect_delay_s: u32,
    pub nr_io_queues: Option<u32>,
    pub io_timeout_s: Option<u32>,
}

/// Parses `nvmf://HOST:PORT/NQN[?query]` (also `nvmf+tcp://`) into host,
/// port and NQN.
pub fn parse_uri(uri: &str) -> Result<(String, u16, String), String> {
    let rest = uri
        .strip_prefix("nvmf://")
        .or_else(|| uri.strip_prefix("nvmf+tcp://"))
        .ok_or_else(|| format!("uri {uri:?} is not nvmf://HOST:PORT/NQN"))?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("uri {uri:?} has no NQN"))?;
    let nqn = path.split('?').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("uri {uri:?} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("uri {uri:?} has a bad port {port:?}"))?;
    if host.is_empty() || nqn.is_empty() || !nqn.starts_with("nqn.") {
        return Err(format!("uri {uri:?} is not nvmf://HOST:PORT/NQN"));
    }
    Ok((host.to_owned(), port, nqn.to_owned()))
}

impl ConnectParams {
    /// Reads the parameters of `volume` from its publish context (then its
    /// volume context), with `defaults` for what neither sets. The URI's
    /// NQN must be the volume's.
    pub fn from_context(
        volume: &uuid::Uuid,
        publish: &HashMap<String, String>,
        volume_ctx: &HashMap<String, String>,
        defaults: &NvmeDefaults,
    ) -> Result<Self, NodeError> {
        let get = |k: &str| publish.get(k).or_else(|| volume_ctx.get(k));
        let uri = get("uri").ok_or_else(|| {
            NodeError::invalid(format!(
                "volume {volume}: the publish context has no \"uri\" (the controller sets it)"
            ))
        })?;
        let (host, port, nqn) = parse_uri(uri).map_err(NodeError::invalid)?;
        let want = volume_nqn(volume);
        if nqn != want {
            return Err(NodeError::invalid(format!(
                "volume {volume}: uri {uri:?} names NQN {nqn}, expected {want}"
            )));
        }
        let num = |k: &str, min: u32| -> Result<Option<u32>, NodeError> {
            match get(k) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if n >= min => Ok(Some(n)),
                    _ => Err(NodeError::invalid(format!(
                        "volume {volume}: {k}={v:?} is not a whole number >= {min}"
                    ))),
                },
            }
        };
        Ok(ConnectParams {
            host,
            port,
            nqn,
            ctrl_loss_tmo_s: num("nvmeCtrlLossTmo", 0)?.unwrap_or(defaults.ctrl_loss_tmo_s),
            keep_alive_tmo_s: num("nvmeKeepAliveTmo", 1)?.unwrap_or(defaults.keep_alive_tmo_s),
            reconnect_delay_s: num("nvmeReconnectDelay", 1)?.unwrap_or(defaults.reconnect_delay_s),
            nr_io_queues: num("nvmeNrIoQueues", 1)?.or(defaults.nr_io_queues),
            io_timeout_s: num("ioTimeout", 1)?.or(defaults.io_timeout_s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_uri("nvmf://10.0.2.100:4420/nqn.2019-05.io.openebs:x?uuid=1"),
            Ok(("10.0.2.100".into(), 4420, "nqn.2019-05.io.openebs:x".into()))
        );
        assert_eq!(
            parse_uri("nvmf://[::1]:8420/nqn.a:b").map(|u| u.0),
            Ok("::1".into())
        );
        for bad in [
            "",
            "iscsi://h:1/nqn.a",
            "nvmf://h/nqn.a",
            "nvmf://h:0/nqn.a",
            "nvmf://h:x/nqn.a",
            "nvmf://:1/nqn.a",
            "nvmf://h:1/",
            "nvmf://h:1/notnqn",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_overrides_defaults_and_checks_values() {
        let v = uuid::Uuid::new_v4();
        let mut publish = HashMap::new();
        publish.insert("uri".to_owned(), format!("nvmf://h:1/{}", volume_nqn(v)));
        publish.insert("nvmeCtrlLossTmo".to_owned(), "60".to_owned());
        let mut vctx = HashMap::new();
        vctx.insert("ioTimeout".to_owned(), "45".to_owned());
        let d = NvmeDefaults::default();
        let p = ConnectParams::from_context(&v, &publish, &vctx, &d).expect("valid");
        assert_eq!((p.ctrl_loss_tmo_s, p.io_timeout_s), (60, Some(45)));
        assert_eq!(p.keep_alive_tmo_s, d.keep_alive_tmo_s);

        publish.insert("nvmeNrIoQueues".to_owned(), "0".to_owned());
        assert!(ConnectParams::from_context(&v, &publish, &vctx, &d).is_err());
        publish.remove("nvmeNrIoQueues");
        let other = uuid::Uuid::new_v4();
        assert!(ConnectParams::from_context(&other, &publish, &vctx, &d).is_err());
        assert!(ConnectParams::from_context(&v, &HashMap::new(), &vctx, &d).is_err());
    }

    #[test]
    fn node_names_are_checked() {
        assert!(NodeConfig::new("node-1.example", NvmeDefaults::default()).is_ok());
        for bad in ["", "a b", "a/b", "a:b"] {
            assert!(NodeConfig::new(bad, NvmeDefaults::default()).is_err());
        }
    }
}
