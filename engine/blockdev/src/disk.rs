//! Opening files and block devices (shared by the uring and pread
//! backends), plus the few blocking syscalls both need.
//!
//! Purpose: one place that decides how a disk is opened (O_DIRECT or not),
//! how big it is and which block size it gets:
//! - open with `O_RDWR | O_CLOEXEC`, plus `O_DIRECT` unless
//!   `OpenOptions::buffered`; when O_DIRECT is refused (EINVAL at open, as
//!   on tmpfs, or at the first aligned read, as on some stacked file
//!   systems), reopen buffered;
//! - size: the file length, or `BLKGETSIZE64` for a block device;
//! - block size: the URI's `blk_size`, else the logical block size of a
//!   block device (`BLKSSZGET`), else 512. A block device opened with
//!   O_DIRECT refuses a block size below its logical block size; a regular
//!   file whose file system needs a coarser O_DIRECT alignment (statx
//!   `STATX_DIOALIGN`) is reopened buffered instead;
//! - `num_blocks = size / block_size` (a partial tail block is ignored);
//!   a disk smaller than one block is refused.
//!
//! Threading model: `open` runs the blocking syscalls on tokio's blocking
//! pool when a runtime is present, inline otherwise. Nothing here is on
//! the per-I/O path except the fallback syscalls, which callers run on
//! blocking threads.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::{FileExt, FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use crate::{BlockDevError, DiskUri, DmaBuf, OpenOptions, Result};

// ioctl numbers from <linux/fs.h>, for the asm-generic encoding used by
// x86, arm and riscv (`_IO(0x12, n)`, `_IOR(0x12, 114, size_t)`).
const BLKSSZGET: libc::Ioctl = 0x1268;
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;
const BLKZEROOUT: libc::Ioctl = 0x127f;

/// An opened disk, before a backend takes it over.
#[derive(Debug)]
pub(crate) struct OpenedDisk {
    pub file: File,
    pub path: PathBuf,
    /// Canonical URI (as the caller wrote it, canonicalised).
    pub uri: String,
    pub block_size: u32,
    pub num_blocks: u64,
    pub direct_io: bool,
    pub is_blkdev: bool,
}

/// Opens the file or block device named by an `aio://` or `uring://` URI.
pub(crate) async fn open(uri: &DiskUri, opts: &OpenOptions) -> Result<OpenedDisk> {
    let (path, blk_size) = match uri {
        DiskUri::Aio { path, blk_size } | DiskUri::Uring { path, blk_size } => {
            (path.clone(), *blk_size)
        }
        DiskUri::Malloc { name, .. } => {
            return Err(BlockDevError::Open {
                path: name.into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "a malloc disk is not a file"),
            })
        }
    };
    let uri = uri.to_string();
    let buffered = opts.buffered;
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let task_path = path.clone();
            rt.spawn_blocking(move || open_blocking(task_path, uri, blk_size, buffered))
                .await
                .map_err(|e| BlockDevError::Open {
                    path,
                    source: io::Error::other(format!("open task failed: {e}")),
                })?
        }
        Err(_) => open_blocking(path, uri, blk_size, buffered),
    }
}

fn open_file(path: &Path, direct: bool) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true);
    // std adds O_CLOEXEC itself.
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

fn open_blocking(
    path: PathBuf,
    uri: String,
    blk_size: Option<u32>,
    buffered: bool,
) -> Result<OpenedDisk> {
    let open_err = |source: io::Error| BlockDevError::Open {
        path: path.clone(),
        source,
    };
    let invalid = |msg: String| open_err(io::Error::new(io::ErrorKind::InvalidInput, msg));

    let mut direct = !buffered;
    let mut file = match open_file(&path, direct) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            direct = false;
            open_file(&path, false).map_err(open_err)?
        }
        other => other.map_err(open_err)?,
    };

    let meta = file.metadata().map_err(open_err)?;
    let is_blkdev = meta.file_type().is_block_device();
    if !is_blkdev && !meta.is_file() {
        return Err(invalid("not a regular file or a block device".into()));
    }
    let (size_bytes, logical) = if is_blkdev {
        (
            blkdev_size(file.as_raw_fd()).map_err(open_err)?,
            Some(blkdev_logical_block_size(file.as_raw_fd()).map_err(open_err)?),
        )
    } else {
        (meta.len(), None)
    };
    let block_size = blk_size.or(logical).unwrap_or(512);
    if block_size != 512 && block_size != 4096 {
        return Err(invalid(format!(
            "unsupported logical block size {block_size}"
        )));
    }

    if direct {
        if let Some(logical) = logical {
            if block_size < logical {
                return Err(invalid(format!(
                    "blk_size {block_size} is smaller than the device's logical block size {logical} (O_DIRECT)"
                )));
            }
        } else {
            let (dio_mem, dio_offset) = dio_alignment(&file).unwrap_or((512, 512));
            if dio_offset > block_size || dio_mem as usize > DmaBuf::ALIGN {
                tracing::warn!(
                    path = %path.display(), block_size, dio_offset_align = dio_offset, dio_mem_align = dio_mem,
                    "file system needs a coarser O_DIRECT alignment than this disk can use, using buffered I/O"
                );
                direct = false;
            }
        }
    }
    if direct && size_bytes >= u64::from(block_size) && !probe_direct_read(&file, block_size) {
        tracing::warn!(path = %path.display(), "O_DIRECT reads fail on this file, using buffered I/O");
        direct = false;
    }
    if !direct && file_has_direct_flag(&file) {
        file = open_file(&path, false).map_err(open_err)?;
    }

    let num_blocks = size_bytes / u64::from(block_size);
    if num_blocks == 0 {
        return Err(BlockDevError::TooSmall { path });
    }
    Ok(OpenedDisk {
        file,
        path,
        uri,
        block_size,
        num_blocks,
        direct_io: direct,
        is_blkdev,
    })
}

fn file_has_direct_flag(file: &File) -> bool {
    // SAFETY: F_GETFL on a valid, owned descriptor has no memory effects.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_DIRECT != 0
}

/// Reads the first block with an aligned buffer to check that O_DIRECT
/// really works on this file.
fn probe_direct_read(file: &File, block_size: u32) -> bool {
    let mut buf = DmaBuf::new(block_size as usize);
    loop {
        match file.read_at(&mut buf, 0) {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e.raw_os_error() != Some(libc::EINVAL),
        }
    }
}

/// `(memory alignment, offset alignment)` O_DIRECT needs on this file,
/// when the kernel reports it.
fn dio_alignment(file: &File) -> Option<(u32, u32)> {
    // SAFETY: `statx` is plain old data; all-zeroes is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is valid, the path is an empty C string used
    // with AT_EMPTY_PATH, and `stx` is a valid out-pointer.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

fn blkdev_size(fd: RawFd) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // to a live local.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn blkdev_logical_block_size(fd: RawFd) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points to
    // a live local.
    if unsafe { libc::ioctl(fd, BLKSSZGET, &mut size as *mut libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative logical block size"))
}

/// `fallocate(2)` on a descriptor.
pub(crate) fn fallocate(fd: RawFd, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: fallocate takes plain integers; the descriptor is owned
        // by the caller for the duration of the call.
        if unsafe { libc::fallocate(fd, mode, offset, len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `BLKZEROOUT` on a block device.
pub(crate) fn blkzeroout(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64 (start, length) through the pointer,
    // which points to a live local array.
    if unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether an error from a zeroing/deallocation primitive means "this
/// primitive is not available here, try the next one".
pub(crate) fn is_unsupported(errno: i32) -> bool {
    errno == libc::EOPNOTSUPP
        || errno == libc::ENOTTY
        || errno == libc::EINVAL
        || errno == libc::ENOSYS
}

/// fallocate mode that zeroes a range and keeps the size.
pub(crate) const ZERO_RANGE: libc::c_int = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
/// fallocate mode that deallocates a range (reads back zeroes) and keeps
/// the size. On block devices it succeeds only when the device guarantees
/// zeroes.
pub(crate) const PUNCH_HOLE: libc::c_int = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;

/// Largest zero buffer the write-zeroes fallback writes at once.
pub(crate) const ZERO_BUF_BYTES: u64 = 1 << 20;
