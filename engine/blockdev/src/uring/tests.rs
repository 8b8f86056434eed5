//! Unit tests of the io_uring backend on temporary files.

use std::{
    future::Future,
    task::{Context, Waker},
};

use super::*;

async fn open_tmp(size: u64, uri_extra: &str) -> Option<(tempfile::NamedTempFile, UringDevice)> {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(size).unwrap();
    let uri: DiskUri = format!("uring://{}{uri_extra}", f.path().display())
        .parse()
        .unwrap();
    match UringDevice::open(&uri, &OpenOptions::default()).await {
        Ok(d) => Some((f, d)),
        Err(BlockDevError::UringUnavailable(e)) => {
            eprintln!("skipping: io_uring unavailable: {e}");
            None
        }
        Err(e) => panic!("open failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_and_stats() {
    let Some((_f, d)) = open_tmp(1 << 20, "").await else {
        return;
    };
    let data = vec![0x5au8; 8192];
    d.write_at(4096, &data).await.unwrap();
    let mut back = vec![0u8; 8192];
    d.read_at(4096, &mut back).await.unwrap();
    assert_eq!(back, data);
    d.flush().await.unwrap();
    let s = d.stats();
    assert!(s.submitted >= 3, "{s:?}");
    assert_eq!(s.submitted, s.completed);
    assert_eq!(s.errors, 0);
}

/// Waits until the device completed one more SQE than `before`.
async fn one_more_completion(d: &UringDevice, before: UringStats) {
    for _ in 0..500 {
        if d.stats().completed > before.completed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the leaked i/o did not complete within 5 s: {:?}",
        d.stats()
    );
}

/// Safe code that leaks a submitted I/O future (`mem::forget`) ends
/// the borrow of its buffer while the kernel still works: the kernel
/// must never read or write that buffer afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_io_future_never_touches_the_callers_buffer() {
    let Some((_f, d)) = open_tmp(1 << 20, "").await else {
        return;
    };
    const LEN: usize = 256 << 10;
    d.write_at(0, &vec![0x55u8; LEN]).await.unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    // Aligned buffers: nothing would need a bounce copy, so the
    // kernel gets the caller's memory unless the device stages it.
    let mut buf = DmaBuf::new(LEN);
    buf.fill(0xaa);
    let before = d.stats();
    let mut read = Box::pin(d.read_at(0, &mut buf));
    assert!(read.as_mut().poll(&mut cx).is_pending(), "read submitted");
    std::mem::forget(read);
    one_more_completion(&d, before).await;
    assert!(
        buf.iter().all(|&b| b == 0xaa),
        "the kernel wrote into a buffer the caller got back"
    );

    let mut data = DmaBuf::new(LEN);
    data.fill(0x11);
    let before = d.stats();
    let mut write = Box::pin(d.write_at(LEN as u64, &data));
    assert!(write.as_mut().poll(&mut cx).is_pending(), "write submitted");
    std::mem::forget(write);
    // The caller reuses its buffer at once.
    data.fill(0x22);
    one_more_completion(&d, before).await;
    let mut back = vec![0u8; LEN];
    d.read_at(LEN as u64, &mut back).await.unwrap();
    assert!(
        back.iter().all(|&b| b == 0x11),
        "the kernel read a buffer after the caller got it back"
    );
}

#[tokio::test]
async fn misaligned_buffers_are_copied() {
    let Some((_f, d)) = open_tmp(1 << 20, "?blk_size=512").await else {
        return;
    };
    // A buffer that starts 1 byte past an aligned address.
    let mut backing = DmaBuf::new(4096 + 1);
    backing[1..].fill(0x42);
    d.write_at(512, &backing[1..1025]).await.unwrap();
    let mut out = DmaBuf::new(1024 + 1);
    d.read_at(512, &mut out[1..]).await.unwrap();
    assert!(out[1..].iter().all(|&b| b == 0x42));
}

#[tokio::test]
async fn zeroing_falls_back_to_writing_zero_buffers() {
    let Some((_f, d)) = open_tmp(4 << 20, "?blk_size=4096").await else {
        return;
    };
    d.write_at(0, &vec![0xaau8; 4 << 20]).await.unwrap();
    d.zero_range_unsupported.store(true, Ordering::Relaxed);
    d.punch_unsupported.store(true, Ordering::Relaxed);
    let before = d.stats().submitted;
    // 2 MiB + 8 KiB: more than one zero buffer.
    d.write_zeroes(4096, (2 << 20) + 8192).await.unwrap();
    d.unmap(3 << 20, 4096).await.unwrap();
    assert!(
        d.stats().submitted - before >= 4,
        "zero buffers were written"
    );
    let mut back = vec![0u8; 4 << 20];
    d.read_at(0, &mut back).await.unwrap();
    let zeroed = |i: usize| {
        (4096..4096 + (2 << 20) + 8192).contains(&i) || (3 << 20..(3 << 20) + 4096).contains(&i)
    };
    for (i, &b) in back.iter().enumerate() {
        assert_eq!(b, if zeroed(i) { 0 } else { 0xaa }, "byte {i}");
    }
}

#[test]
fn progress_classifies_results() {
    let mut r = 0;
    assert_eq!(
        progress("read", 0, 0, 0, 4096, 4096, 4096, &mut r).unwrap(),
        4096
    );
    assert_eq!(
        progress("read", 0, 0, 0, 4096, 4096, 512, &mut r).unwrap(),
        512
    );
    assert_eq!(
        progress("read", 0, 0, 0, 4096, 4096, -libc::EAGAIN, &mut r).unwrap(),
        0
    );
    assert_eq!(r, 1);
    assert!(matches!(
        progress("read", 0, 512, 512, 4096, 3584, 0, &mut r),
        Err(BlockDevError::Short {
            done_bytes: 512,
            ..
        })
    ));
    let e = progress("write", 0, 8192, 0, 4096, 4096, -libc::EIO, &mut r).unwrap_err();
    assert!(
        matches!(
            e,
            BlockDevError::Io {
                op: "write",
                offset_bytes: 8192,
                ..
            }
        ),
        "{e}"
    );
    r = MAX_RETRIES;
    assert!(progress("read", 0, 0, 0, 4096, 4096, -libc::EINTR, &mut r).is_err());
}
