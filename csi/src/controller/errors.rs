//! The one place REST errors become gRPC statuses (CSI codes), and the
//! checks of request fields every RPC shares.

use openapi::{ErrorKind, RestError};
use tonic::{Code, Status};

/// A REST error as the CSI code the CO expects.
pub fn rest_status(what: &str, error: RestError) -> Status {
    let code = match error.kind {
        ErrorKind::InvalidArgument | ErrorKind::Deserialize => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::ResourceExhausted | ErrorKind::CapacityLimitExceeded => Code::ResourceExhausted,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::FailedPrecondition
        | ErrorKind::NotShared
        | ErrorKind::NotPublished
        | ErrorKind::AlreadyPublished
        | ErrorKind::AlreadyShared
        | ErrorKind::InUse
        | ErrorKind::NotAcceptable => Code::FailedPrecondition,
        ErrorKind::Aborted | ErrorKind::Conflict | ErrorKind::Deleting => Code::Aborted,
        ErrorKind::Timeout | ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied | ErrorKind::Unauthorized => Code::PermissionDenied,
        ErrorKind::Internal | ErrorKind::FailedPersist => Code::Internal,
    };
    Status::new(code, format!("{what}: {}", error.message))
}

/// A required string field of a request.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// Volume ids are uuids (lower case); anything else names no volume.
pub fn volume_uuid(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id)
        .ok()
        .map(|u| u.hyphenated().to_string())
        .filter(|u| u == id)
}

/// Sizes are whole 512-byte sectors.
pub const SIZE_ALIGN_BYTES: u64 = 512;

/// `required_bytes` rounded up to a sector, checked against `limit_bytes`.
pub fn size_of_range(
    range: Option<&crate::v1::CapacityRange>,
    default_bytes: u64,
) -> Result<u64, Status> {
    let (required, limit) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if required < 0 || limit < 0 {
        return Err(Status::out_of_range(format!(
            "capacity range {required}..{limit} has a negative bound"
        )));
    }
    let (required, limit) = (required as u64, limit as u64);
    let size = if required > 0 {
        required.div_ceil(SIZE_ALIGN_BYTES) * SIZE_ALIGN_BYTES
    } else if limit > 0 {
        default_bytes.min(limit / SIZE_ALIGN_BYTES * SIZE_ALIGN_BYTES)
    } else {
        default_bytes
    };
    if size == 0 || (limit > 0 && size > limit) {
        return Err(Status::out_of_range(format!(
            "no size of whole {SIZE_ALIGN_BYTES}-byte sectors fits the capacity range {required}..{limit} bytes"
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::CapacityRange;

    #[test]
    fn sizes_round_up_to_sectors_within_the_limit() {
        let range = |r, l| CapacityRange {
            required_bytes: r,
            limit_bytes: l,
        };
        assert_eq!(size_of_range(None, 4096).ok(), Some(4096));
        assert_eq!(size_of_range(Some(&range(1, 0)), 4096).ok(), Some(512));
        assert_eq!(
            size_of_range(Some(&range(1000, 1024)), 4096).ok(),
            Some(1024)
        );
        assert_eq!(size_of_range(Some(&range(0, 2000)), 4096).ok(), Some(1536));
        for bad in [range(1000, 1000), range(-1, 0), range(0, 100)] {
            assert_eq!(
                size_of_range(Some(&bad), 4096).map_err(|s| s.code()),
                Err(Code::OutOfRange)
            );
        }
    }

    #[test]
    fn only_canonical_uuids_are_volume_ids() {
        let id = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a";
        assert_eq!(volume_uuid(id).as_deref(), Some(id));
        assert_eq!(volume_uuid(&id.to_uppercase()), None);
        assert_eq!(volume_uuid("not-a-uuid"), None);
        assert_eq!(volume_uuid(""), None);
    }
}
