//! Metadata pages: sealing (header + checksum) and opening (validation).
//!
//! Page header, little endian, 48 bytes:
//! ```text
//!  0      8     10   11   12        16          24                 40      44      48
//!  +------+-----+----+----+---------+-----------+------------------+-------+-------+
//!  |magic |kind |copy|ver |index u32|gen u64    |pool uuid [16]    |crc32c |zero   |
//!  +------+-----+----+----+---------+-----------+------------------+-------+-------+
//! ```
//! The CRC32C covers the whole page with the crc field set to zero.

use uuid::Uuid;

use crate::FormatError;

/// Size of a metadata page.
pub const PAGE_SIZE: usize = 4096;
/// Size of the page header.
pub const PAGE_HEADER_SIZE: usize = 48;
/// Usable bytes per page.
pub const PAYLOAD_SIZE: usize = PAGE_SIZE - PAGE_HEADER_SIZE;
/// Page signature.
pub const MAGIC: [u8; 8] = *b"MAYAPOOL";
/// Page header format version.
pub const PAGE_VERSION: u8 = 1;

const CRC_OFFSET: usize = 40;

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Header = 1,
    ReplicaTable = 2,
    OwnerTable = 3,
}

impl PageKind {
    fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(PageKind::Header),
            2 => Some(PageKind::ReplicaTable),
            3 => Some(PageKind::OwnerTable),
            _ => None,
        }
    }
}

/// Decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub kind: PageKind,
    /// 0 for copy A, 1 for copy B.
    pub copy: u8,
    /// Index of the page within its copy (0 = header).
    pub index: u32,
    pub generation: u64,
    pub pool_uuid: Uuid,
}

/// Builds a page from its header fields and payload (at most
/// [`PAYLOAD_SIZE`] bytes, the rest is zero).
pub fn seal_page(hdr: &PageHeader, payload: &[u8]) -> [u8; PAGE_SIZE] {
    let mut page = [0u8; PAGE_SIZE];
    let n = payload.len().min(PAYLOAD_SIZE);
    page[..8].copy_from_slice(&MAGIC);
    page[8..10].copy_from_slice(&(hdr.kind as u16).to_le_bytes());
    page[10] = hdr.copy;
    page[11] = PAGE_VERSION;
    page[12..16].copy_from_slice(&hdr.index.to_le_bytes());
    page[16..24].copy_from_slice(&hdr.generation.to_le_bytes());
    page[24..40].copy_from_slice(hdr.pool_uuid.as_bytes());
    page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + n].copy_from_slice(&payload[..n]);
    let crc = crc32c::crc32c(&page);
    page[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    page
}

/// True when `page` starts with the pool signature (valid or not).
pub fn has_magic(page: &[u8]) -> bool {
    page.len() >= 8 && page[..8] == MAGIC
}

/// Validates a page and returns its header and payload. `disk_index` is
/// only used in error messages.
pub fn open_page(page: &[u8], disk_index: u64) -> Result<(PageHeader, &[u8]), FormatError> {
    let index = disk_index;
    if page.len() != PAGE_SIZE {
        return Err(FormatError::BadPage {
            index,
            reason: format!("page is {} bytes, expected {PAGE_SIZE}", page.len()),
        });
    }
    if !has_magic(page) {
        return Err(FormatError::NoMagic { index });
    }
    let stored = u32::from_le_bytes([page[40], page[41], page[42], page[43]]);
    let mut h = crc32c::crc32c(&page[..CRC_OFFSET]);
    h = crc32c::crc32c_append(h, &[0u8; 4]);
    let computed = crc32c::crc32c_append(h, &page[CRC_OFFSET + 4..]);
    if stored != computed {
        return Err(FormatError::Checksum {
            index,
            stored,
            computed,
        });
    }
    let kind_raw = u16::from_le_bytes([page[8], page[9]]);
    let kind = PageKind::from_u16(kind_raw).ok_or_else(|| FormatError::BadPage {
        index,
        reason: format!("unknown page kind {kind_raw}"),
    })?;
    let copy = page[10];
    if copy > 1 {
        return Err(FormatError::BadPage {
            index,
            reason: format!("unknown copy {copy}"),
        });
    }
    if page[11] != PAGE_VERSION {
        return Err(FormatError::Version(u32::from(page[11])));
    }
    let mut u = [0u8; 16];
    u.copy_from_slice(&page[24..40]);
    let hdr = PageHeader {
        kind,
        copy,
        index: u32::from_le_bytes([page[12], page[13], page[14], page[15]]),
        generation: u64::from_le_bytes([
            page[16], page[17], page[18], page[19], page[20], page[21], page[22], page[23],
        ]),
        pool_uuid: Uuid::from_bytes(u),
    };
    Ok((hdr, &page[PAGE_HEADER_SIZE..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> PageHeader {
        PageHeader {
            kind: PageKind::OwnerTable,
            copy: 1,
            index: 7,
            generation: 42,
            pool_uuid: Uuid::from_u128(0x1234),
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let page = seal_page(&hdr(), b"hello");
        let (h, p) = open_page(&page, 9).expect("valid page");
        assert_eq!(h, hdr());
        assert_eq!(&p[..5], b"hello");
        assert!(p[5..].iter().all(|b| *b == 0));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let page = seal_page(&hdr(), &[0xa5; PAYLOAD_SIZE]);
        for byte in 0..PAGE_SIZE {
            let mut p = page;
            p[byte] ^= 0x10;
            assert!(
                open_page(&p, 0).is_err(),
                "flip at byte {byte} not detected"
            );
        }
    }
}
