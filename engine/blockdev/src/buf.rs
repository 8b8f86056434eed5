//! Page-aligned I/O buffers.
//!
//! Purpose: O_DIRECT needs the memory of a transfer aligned to the device's
//! logical block size; [`DmaBuf`] is a zero-initialised heap buffer aligned
//! to [`DmaBuf::ALIGN`] (4096 bytes, enough for every block size this crate
//! supports).
//!
//! Invariants: `ptr` is a live allocation of `max(len, 1)` bytes with
//! alignment `ALIGN`, owned by the `DmaBuf` and freed exactly once in
//! `Drop`. A zero-length buffer still owns a one-byte allocation so that
//! `Drop` has a single path.
//!
//! Threading model: a plain owned buffer; `Send` and `Sync` like `Vec<u8>`.

use std::{
    alloc::{self, Layout},
    fmt,
    ops::{Deref, DerefMut},
    ptr::NonNull,
    slice,
};

/// A zero-initialised heap buffer aligned to 4096 bytes.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `DmaBuf` owns its allocation exclusively, like `Vec<u8>`; shared
// access only hands out `&[u8]`, mutable access needs `&mut self`.
unsafe impl Send for DmaBuf {}
// SAFETY: see `Send`; `&DmaBuf` only allows reads.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// Alignment of every buffer, in bytes.
    pub const ALIGN: usize = 4096;

    /// Allocates `len` zeroed bytes aligned to [`Self::ALIGN`].
    ///
    /// # Panics
    /// Like `Vec`, when `len` exceeds `isize::MAX` rounded down to the
    /// alignment; aborts (through `handle_alloc_error`) when memory is
    /// exhausted.
    pub fn new(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size (at least one byte).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout);
        };
        DmaBuf { ptr, len }
    }

    /// A copy of `data` in an aligned buffer.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut buf = Self::new(data.len());
        buf.copy_from_slice(data);
        buf
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len.max(1), Self::ALIGN)
            .expect("capacity overflow: DmaBuf length exceeds isize::MAX")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for DmaBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed at allocation)
        // bytes owned by `self`, alive as long as the borrow of `self`.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` guarantees exclusivity.
        unsafe { slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with exactly this
        // layout (the length never changes) and is freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

impl fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuf")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_writable() {
        for len in [0usize, 1, 511, 512, 4096, 4097, 1 << 20] {
            let mut b = DmaBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.is_empty(), len == 0);
            assert_eq!(b.as_ptr() as usize % DmaBuf::ALIGN, 0);
            assert!(b.iter().all(|&x| x == 0));
            b.fill(0xa5);
            assert!(b.iter().all(|&x| x == 0xa5));
        }
    }

    #[test]
    fn from_slice_copies() {
        let b = DmaBuf::from_slice(b"hello");
        assert_eq!(&b[..], b"hello");
        assert_eq!(format!("{b:?}"), "DmaBuf { len: 5, .. }");
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<DmaBuf>();
    }
}
