//! Errors of the NVMe/TCP host and NVMe status names.
//!
//! Purpose: one [`HostError`] for the crate; [`status_name`] gives the
//! spec name of a completion status so every failure message says what
//! the controller answered ("LBA out of range", "reservation conflict").
//!
//! Threading model: plain values.

use std::{io, net::SocketAddr};

use blockdev::BlockDevError;

use nvmf::{
    nvme::{sc, sc_cmd, sc_media, sct},
    Status,
};

use crate::options::NvmfUriError;

/// Errors of the NVMe/TCP host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{what} timed out")]
    Timeout { what: &'static str },
    #[error("nvme/tcp protocol error: {0}")]
    Protocol(String),
    #[error("{op} failed: {} (sct {:#x} sc {:#04x}{})", status_name(*.status), .status.sct, .status.sc, if .status.dnr { ", dnr" } else { "" })]
    Status { op: &'static str, status: Status },
    #[error("controller {subnqn} at {addr} lost: reconnect timed out after {after_ms} ms")]
    ControllerLost {
        subnqn: String,
        addr: SocketAddr,
        after_ms: u32,
    },
    #[error("controller {subnqn} at {addr}: {what} kept timing out ({attempts} attempts)")]
    Unresponsive {
        subnqn: String,
        addr: SocketAddr,
        what: &'static str,
        attempts: u32,
    },
    #[error("controller {subnqn} at {addr}: connection lost {attempts} times during {what}")]
    Unstable {
        subnqn: String,
        addr: SocketAddr,
        what: &'static str,
        attempts: u32,
    },
    #[error("controller {subnqn} at {addr} is disconnected")]
    Disconnected { subnqn: String, addr: SocketAddr },
    #[error("controller is not ready: {0}")]
    NotReady(String),
    #[error("namespace {nsid} does not exist or is inactive")]
    NoNamespace { nsid: u32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Uri(#[from] NvmfUriError),
}

impl HostError {
    /// The NVMe status the controller answered, if this is a status error.
    pub fn status(&self) -> Option<Status> {
        match self {
            HostError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the controller refused the command because another host
    /// holds a reservation (this host is fenced off).
    pub fn is_reservation_conflict(&self) -> bool {
        self.status()
            .is_some_and(|s| s.sct == sct::GENERIC && s.sc == sc::RESERVATION_CONFLICT)
    }

    /// The [`HostError`] inside a block-layer error of a
    /// [`crate::Namespace`] (read, write, flush, ...), if any.
    pub fn from_blockdev(e: &BlockDevError) -> Option<&HostError> {
        match e {
            BlockDevError::Io { source, .. } => source.get_ref()?.downcast_ref::<HostError>(),
            _ => None,
        }
    }
}

/// Spec name of a completion status.
pub fn status_name(s: Status) -> &'static str {
    match (s.sct, s.sc) {
        (sct::GENERIC, sc::SUCCESS) => "success",
        (sct::GENERIC, sc::INVALID_OPCODE) => "invalid command opcode",
        (sct::GENERIC, sc::INVALID_FIELD) => "invalid field in command",
        (sct::GENERIC, sc::CID_CONFLICT) => "command id conflict",
        (sct::GENERIC, sc::DATA_TRANSFER_ERROR) => "data transfer error",
        (sct::GENERIC, 0x05) => "commands aborted due to power loss notification",
        (sct::GENERIC, sc::INTERNAL) => "internal error",
        (sct::GENERIC, sc::ABORT_REQUESTED) => "command abort requested",
        (sct::GENERIC, sc::ABORTED_SQ_DELETION) => "command aborted due to sq deletion",
        (sct::GENERIC, 0x09) => "command aborted due to failed fused command",
        (sct::GENERIC, 0x0a) => "command aborted due to missing fused command",
        (sct::GENERIC, sc::INVALID_NAMESPACE) => "invalid namespace or format",
        (sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR) => "command sequence error",
        (sct::GENERIC, 0x0d) => "invalid sgl segment descriptor",
        (sct::GENERIC, 0x0e) => "invalid number of sgl descriptors",
        (sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID) => "data sgl length invalid",
        (sct::GENERIC, 0x10) => "metadata sgl length invalid",
        (sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID) => "sgl descriptor type invalid",
        (sct::GENERIC, sc::SGL_OFFSET_INVALID) => "sgl offset invalid",
        (sct::GENERIC, 0x12) => "invalid use of controller memory buffer",
        (sct::GENERIC, 0x13) => "prp offset invalid",
        (sct::GENERIC, 0x14) => "atomic write unit exceeded",
        (sct::GENERIC, 0x15) => "operation denied",
        (sct::GENERIC, sc::HOST_ID_INCONSISTENT_FORMAT) => "host identifier inconsistent format",
        (sct::GENERIC, sc::KEEP_ALIVE_EXPIRED) => "keep alive timer expired",
        (sct::GENERIC, sc::KEEP_ALIVE_INVALID) => "keep alive timeout invalid",
        (sct::GENERIC, sc::ABORTED_PREEMPT_ABORT) => "command aborted due to preempt and abort",
        (sct::GENERIC, 0x1c) => "sanitize failed",
        (sct::GENERIC, 0x1d) => "sanitize in progress",
        (sct::GENERIC, 0x20) => "namespace is write protected",
        (sct::GENERIC, 0x21) => "command interrupted",
        (sct::GENERIC, sc::TRANSIENT_TRANSPORT_ERROR) => "transient transport error",
        (sct::GENERIC, sc::LBA_OUT_OF_RANGE) => "LBA out of range",
        (sct::GENERIC, sc::CAPACITY_EXCEEDED) => "capacity exceeded",
        (sct::GENERIC, sc::NAMESPACE_NOT_READY) => "namespace not ready",
        (sct::GENERIC, sc::RESERVATION_CONFLICT) => "reservation conflict",
        (sct::GENERIC, 0x84) => "format in progress",
        (sct::COMMAND_SPECIFIC, sc_cmd::INVALID_QUEUE_ID) => "invalid queue identifier",
        (sct::COMMAND_SPECIFIC, sc_cmd::INVALID_QUEUE_SIZE) => "invalid queue size",
        (sct::COMMAND_SPECIFIC, sc_cmd::ABORT_LIMIT_EXCEEDED) => "abort command limit exceeded",
        (sct::COMMAND_SPECIFIC, sc_cmd::AER_LIMIT_EXCEEDED) => {
            "asynchronous event request limit exceeded"
        }
        (sct::COMMAND_SPECIFIC, sc_cmd::INVALID_LOG_PAGE) => "invalid log page",
        (sct::COMMAND_SPECIFIC, sc_cmd::FEATURE_NOT_SAVEABLE) => "feature identifier not saveable",
        (sct::COMMAND_SPECIFIC, 0x0e) => "feature not changeable",
        (sct::COMMAND_SPECIFIC, 0x0f) => "feature not namespace specific",
        (sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INCOMPATIBLE_FORMAT) => {
            "connect: incompatible format (or conflicting attributes)"
        }
        (sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_CONTROLLER_BUSY) => {
            "connect: controller busy (or invalid protection information)"
        }
        (sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INVALID_PARAMETERS) => {
            "connect: invalid parameters (or attempted write to read only range)"
        }
        (sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_RESTART_DISCOVERY) => "connect: restart discovery",
        (sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INVALID_HOST) => "connect: invalid host",
        (sct::MEDIA, sc_media::WRITE_FAULT) => "write fault",
        (sct::MEDIA, sc_media::UNRECOVERED_READ_ERROR) => "unrecovered read error",
        (sct::MEDIA, 0x82) => "end-to-end guard check error",
        (sct::MEDIA, 0x83) => "end-to-end application tag check error",
        (sct::MEDIA, 0x84) => "end-to-end reference tag check error",
        (sct::MEDIA, 0x85) => "compare failure",
        (sct::MEDIA, 0x86) => "access denied",
        (sct::MEDIA, 0x87) => "deallocated or unwritten logical block",
        (sct::PATH, 0x00) => "internal path error",
        (sct::PATH, 0x01) => "asymmetric access persistent loss",
        (sct::PATH, 0x02) => "asymmetric access inaccessible",
        (sct::PATH, 0x03) => "asymmetric access transition",
        (sct::PATH, 0x60) => "controller pathing error",
        (sct::PATH, 0x70) => "host pathing error",
        (sct::PATH, 0x71) => "command aborted by host",
        (7, _) => "vendor specific",
        _ => "unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_name_the_status() {
        let e = HostError::Status {
            op: "write",
            status: Status::dnr(sct::GENERIC, sc::LBA_OUT_OF_RANGE),
        };
        assert_eq!(
            e.to_string(),
            "write failed: LBA out of range (sct 0x0 sc 0x80, dnr)"
        );
        let e = HostError::Status {
            op: "read",
            status: Status::retry(sct::GENERIC, sc::RESERVATION_CONFLICT),
        };
        assert_eq!(
            e.to_string(),
            "read failed: reservation conflict (sct 0x0 sc 0x83)"
        );
        assert_eq!(status_name(Status::retry(5, 1)), "unknown status");
        assert!(e.is_reservation_conflict());
        assert_eq!(
            status_name(Status::dnr(sct::GENERIC, 0x18)),
            "host identifier inconsistent format"
        );
        assert_eq!(
            status_name(Status::dnr(sct::GENERIC, 0x19)),
            "keep alive timer expired"
        );
    }

    #[test]
    fn host_error_is_found_inside_a_blockdev_error() {
        let e = BlockDevError::Io {
            op: "write",
            offset_bytes: 0,
            source: io::Error::other(HostError::Status {
                op: "write",
                status: Status::dnr(sct::GENERIC, sc::RESERVATION_CONFLICT),
            }),
        };
        let h = HostError::from_blockdev(&e).unwrap();
        assert!(h.is_reservation_conflict());
        assert!(HostError::from_blockdev(&BlockDevError::Closed).is_none());
        let plain = BlockDevError::Io {
            op: "read",
            offset_bytes: 0,
            source: io::Error::other("x"),
        };
        assert!(HostError::from_blockdev(&plain).is_none());
    }
}
