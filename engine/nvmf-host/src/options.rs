//! Connection options and the `nvmf://` URI.
//!
//! Purpose: describe which remote controller to connect to and how
//! ([`ConnectOptions`]), and turn a nexus child URI
//! `nvmf://host:port/<subnqn>?hostnqn=...&uuid=...` into those options.
//!
//! Invariants:
//! - parsing is strict: unknown parameters, a missing NQN, a missing or
//!   malformed port, and duplicate parameters are refused with an error
//!   naming the offending part; `uuid=` is accepted and ignored (it names
//!   the replica for the nexus, not anything of the transport);
//! - parsing never panics; no percent-decoding is done (NQNs do not need
//!   it);
//! - the host part must be an IP address (v4, or v6 in brackets): the
//!   engine never resolves names on the data path.
//!
//! Threading model: plain values, no shared state.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use uuid::Uuid;

/// Default NVMe/TCP port of the io-engine (DESIGN.md section 2).
pub const DEFAULT_PORT: u16 = io_engine_api::names::NVMF_PORT;

/// Default number of I/O queues (further limited by the controller).
pub const DEFAULT_IO_QUEUES: u16 = 2;
/// Default depth of each I/O queue (further limited by CAP.MQES).
pub const DEFAULT_QUEUE_DEPTH: u16 = 32;
/// Default keep-alive timeout.
pub const DEFAULT_KATO_MS: u32 = 10_000;
/// Default per-command timeout.
pub const DEFAULT_IO_TIMEOUT_MS: u32 = 30_000;
/// Default controller-loss timeout (how long reconnects are attempted).
pub const DEFAULT_RECONNECT_TIMEOUT_MS: u32 = 10_000;

/// How to reach and set up one remote controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Target address (IP and TCP port).
    pub addr: SocketAddr,
    /// NQN of the subsystem to connect to.
    pub subnqn: String,
    /// Our host NQN (the target's allowed-hosts list refers to it).
    pub hostnqn: String,
    /// Our host identifier.
    pub hostid: Uuid,
    /// Wanted number of I/O queues; the controller may grant fewer.
    pub io_queues: u16,
    /// Wanted depth of each I/O queue; limited by CAP.MQES + 1.
    pub queue_depth: u16,
    /// Negotiate header digests (CRC32C over each PDU header).
    pub hdr_digest: bool,
    /// Negotiate data digests (CRC32C over each PDU's data).
    pub data_digest: bool,
    /// Keep-alive timeout sent in Connect; a Keep Alive command is sent
    /// every `kato_ms / 2`. 0 disables keep-alive.
    pub kato_ms: u32,
    /// A command not completed within this time makes the host drop the
    /// association and reconnect (the command is then retried).
    pub io_timeout_ms: u32,
    /// Controller-loss timeout: how long reconnects are attempted before
    /// every pending and new I/O fails.
    pub reconnect_timeout_ms: u32,
}

impl ConnectOptions {
    /// Options with the defaults for everything but the target.
    pub fn new(addr: SocketAddr, subnqn: impl Into<String>) -> Self {
        let hostid = Uuid::new_v4();
        Self {
            addr,
            subnqn: subnqn.into(),
            hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{hostid}"),
            hostid,
            io_queues: DEFAULT_IO_QUEUES,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            hdr_digest: false,
            data_digest: false,
            kato_ms: DEFAULT_KATO_MS,
            io_timeout_ms: DEFAULT_IO_TIMEOUT_MS,
            reconnect_timeout_ms: DEFAULT_RECONNECT_TIMEOUT_MS,
        }
    }

    /// Parses `nvmf://host:port/<subnqn>?hostnqn=...&uuid=...`.
    ///
    /// Also accepted: `hostid=<uuid>`, `io_queues=N`, `queue_depth=N`,
    /// `hdgst=true|false`, `ddgst=true|false`, `kato_ms=N`,
    /// `io_timeout_ms=N`, `reconnect_timeout_ms=N`. Without `hostnqn` a
    /// uuid-based host NQN is generated.
    pub fn from_uri(uri: &str) -> Result<Self, NvmfUriError> {
        parse_uri(uri)
    }
}

impl FromStr for ConnectOptions {
    type Err = NvmfUriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_uri(s)
    }
}

/// Why an `nvmf://` URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NvmfUriError {
    #[error("uri must start with nvmf://: {0:?}")]
    Scheme(String),
    #[error("invalid host:port {0:?} (an IP address and a port are required)")]
    Authority(String),
    #[error("subsystem nqn missing in the uri path")]
    MissingNqn,
    #[error("invalid subsystem nqn {0:?}")]
    Nqn(String),
    #[error("unknown uri parameter {0:?}")]
    UnknownParam(String),
    #[error("duplicate uri parameter {0:?}")]
    DuplicateParam(String),
    #[error("invalid value {value:?} for uri parameter {key}")]
    BadValue { key: String, value: String },
}

const KNOWN_PARAMS: &[&str] = &[
    "hostnqn",
    "uuid",
    "hostid",
    "io_queues",
    "queue_depth",
    "hdgst",
    "ddgst",
    "kato_ms",
    "io_timeout_ms",
    "reconnect_timeout_ms",
];

fn parse_uri(uri: &str) -> Result<ConnectOptions, NvmfUriError> {
    let rest = uri
        .strip_prefix("nvmf://")
        .ok_or_else(|| NvmfUriError::Scheme(uri.to_string()))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = before_query
        .split_once('/')
        .ok_or(NvmfUriError::MissingNqn)?;
    let addr = parse_authority(authority)?;
    if path.is_empty() {
        return Err(NvmfUriError::MissingNqn);
    }
    // An NQN is at most 223 bytes, printable, with no '/' (we split on the
    // first one) and no whitespace.
    if path.len() > 223 || path.contains('/') || path.chars().any(|c| c.is_whitespace()) {
        return Err(NvmfUriError::Nqn(path.to_string()));
    }
    let mut opts = ConnectOptions::new(addr, path);
    let mut seen: Vec<&str> = Vec::new();
    let mut hostnqn_set = false;
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !KNOWN_PARAMS.contains(&key) {
            return Err(NvmfUriError::UnknownParam(key.to_string()));
        }
        if seen.contains(&key) {
            return Err(NvmfUriError::DuplicateParam(key.to_string()));
        }
        seen.push(key);
        let bad = || NvmfUriError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        };
        match key {
            "hostnqn" => {
                if value.is_empty() || value.len() > 223 {
                    return Err(bad());
                }
                opts.hostnqn = value.to_string();
                hostnqn_set = true;
            }
            "uuid" => {}
            "hostid" => opts.hostid = Uuid::parse_str(value).map_err(|_| bad())?,
            "io_queues" => opts.io_queues = parse_nonzero(value).ok_or_else(bad)?,
            "queue_depth" => {
                let d: u16 = parse_nonzero(value).ok_or_else(bad)?;
                if d < 2 {
                    return Err(bad());
                }
                opts.queue_depth = d;
            }
            "hdgst" => opts.hdr_digest = parse_bool(value).ok_or_else(bad)?,
            "ddgst" => opts.data_digest = parse_bool(value).ok_or_else(bad)?,
            "kato_ms" => opts.kato_ms = value.parse().map_err(|_| bad())?,
            "io_timeout_ms" => opts.io_timeout_ms = parse_nonzero(value).ok_or_else(bad)?,
            "reconnect_timeout_ms" => {
                opts.reconnect_timeout_ms = value.parse().map_err(|_| bad())?
            }
            _ => return Err(NvmfUriError::UnknownParam(key.to_string())),
        }
    }
    if !hostnqn_set {
        opts.hostnqn = format!("nqn.2014-08.org.nvmexpress:uuid:{}", opts.hostid);
    }
    Ok(opts)
}

fn parse_authority(authority: &str) -> Result<SocketAddr, NvmfUriError> {
    let bad = || NvmfUriError::Authority(authority.to_string());
    if let Ok(sa) = authority.parse::<SocketAddr>() {
        return Ok(sa);
    }
    // No port: the io-engine default.
    let host = authority
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(authority);
    if authority.contains(':') && !authority.starts_with('[') && host.parse::<IpAddr>().is_err() {
        return Err(bad());
    }
    host.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| bad())
}

fn parse_nonzero<T: FromStr + PartialEq + Default>(value: &str) -> Option<T> {
    value.parse::<T>().ok().filter(|v| *v != T::default())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_nexus_child_uri() {
        let o: ConnectOptions =
            "nvmf://10.1.2.3:8420/nqn.2019-05.io.openebs:7b0c?uuid=7b0c&hostnqn=nqn.2019-05.io.openebs:node-name:n1"
                .parse()
                .unwrap();
        assert_eq!(o.addr, "10.1.2.3:8420".parse().unwrap());
        assert_eq!(o.subnqn, "nqn.2019-05.io.openebs:7b0c");
        assert_eq!(o.hostnqn, "nqn.2019-05.io.openebs:node-name:n1");
        assert_eq!(o.io_queues, DEFAULT_IO_QUEUES);
        assert_eq!(o.queue_depth, DEFAULT_QUEUE_DEPTH);
        assert_eq!(o.kato_ms, DEFAULT_KATO_MS);
        assert!(!o.hdr_digest && !o.data_digest);
    }

    #[test]
    fn default_port_ipv6_and_tuning_params() {
        let o = ConnectOptions::from_uri("nvmf://127.0.0.1/nqn.x").unwrap();
        assert_eq!(o.addr.port(), DEFAULT_PORT);
        assert!(o.hostnqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:"));
        assert!(o.hostnqn.ends_with(&o.hostid.to_string()));
        let o = ConnectOptions::from_uri(
            "nvmf://[::1]:4420/nqn.y?hdgst=true&ddgst=1&io_queues=4&queue_depth=64&kato_ms=0&reconnect_timeout_ms=500&io_timeout_ms=100",
        )
        .unwrap();
        assert_eq!(o.addr, "[::1]:4420".parse().unwrap());
        assert!(o.hdr_digest && o.data_digest);
        assert_eq!((o.io_queues, o.queue_depth, o.kato_ms), (4, 64, 0));
        assert_eq!((o.reconnect_timeout_ms, o.io_timeout_ms), (500, 100));
        let o = ConnectOptions::from_uri("nvmf://[::1]/nqn.y").unwrap();
        assert_eq!(o.addr.port(), DEFAULT_PORT);
        let id = "4a5d3f2e-0000-4000-8000-000000000001";
        let o = ConnectOptions::from_uri(&format!("nvmf://1.2.3.4:1/n?hostid={id}")).unwrap();
        assert_eq!(o.hostid.to_string(), id);
        assert_eq!(o.hostnqn, format!("nqn.2014-08.org.nvmexpress:uuid:{id}"));
    }

    #[test]
    fn refuses_bad_uris() {
        let cases = [
            ("bdev:///x", "Scheme"),
            ("nvmf://1.2.3.4:8420", "MissingNqn"),
            ("nvmf://1.2.3.4:8420/", "MissingNqn"),
            ("nvmf://host.example:8420/nqn", "Authority"),
            ("nvmf://1.2.3.4:99999/nqn", "Authority"),
            ("nvmf://1.2.3.4:x/nqn", "Authority"),
            ("nvmf://1.2.3.4:1/a/b", "Nqn"),
            ("nvmf://1.2.3.4:1/nqn?foo=1", "UnknownParam"),
            ("nvmf://1.2.3.4:1/nqn?uuid=a&uuid=b", "DuplicateParam"),
            ("nvmf://1.2.3.4:1/nqn?hostnqn=", "BadValue"),
            ("nvmf://1.2.3.4:1/nqn?io_queues=0", "BadValue"),
            ("nvmf://1.2.3.4:1/nqn?queue_depth=1", "BadValue"),
            ("nvmf://1.2.3.4:1/nqn?hdgst=maybe", "BadValue"),
            ("nvmf://1.2.3.4:1/nqn?hostid=nope", "BadValue"),
        ];
        for (uri, want) in cases {
            let err = ConnectOptions::from_uri(uri).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{uri}: {err:?}");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in [
            "",
            "nvmf://",
            "nvmf:///",
            "nvmf://[/x",
            "nvmf://[::1/x",
            "nvmf://:/x?&&=",
            "nvmf://1.2.3.4/x?==",
        ] {
            let _ = ConnectOptions::from_uri(s);
        }
    }
}
