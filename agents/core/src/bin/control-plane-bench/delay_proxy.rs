//! A TCP proxy that delays every chunk it forwards by a fixed time, in
//! both directions: put in front of one engine's gRPC port, it makes that
//! engine slow (each request and each answer arrives `delay` late) without
//! stopping the process, so everything else on the machine runs as usual.
//!
//! Chunks are delayed, not throttled: each is written `delay` after it was
//! read, in order, so a burst of calls is not serialised behind one
//! another. Every connection has one task per direction; stopping the
//! proxy (dropping it) closes the listener and every connection.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::mpsc,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// Most bytes read as one chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Most chunks in flight per direction before reading waits.
const QUEUE_CHUNKS: usize = 1024;

/// A running proxy; stops when dropped.
pub struct DelayProxy {
    pub listen: SocketAddr,
    stop: CancellationToken,
}

impl DelayProxy {
    /// Listens on `listen` and forwards every connection to `upstream`,
    /// each chunk `delay` late.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> std::io::Result<DelayProxy> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else {
                    continue;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = async {
                            tokio::join!(pipe(cr, sw, delay), pipe(sr, cw, delay))
                        } => {}
                    }
                });
            }
        });
        Ok(DelayProxy { listen, stop })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(QUEUE_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = Instant::now() + delay;
                    if tx
                        .send((due, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_arrive_late_in_order_and_intact() {
        let echo = TcpListener::bind("127.0.80.1:0").await.expect("bind echo");
        let upstream = echo.local_addr().expect("echo addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let delay = Duration::from_millis(150);
        let proxy = DelayProxy::start("127.0.80.1:0".parse().expect("addr"), upstream, delay)
            .await
            .expect("proxy");
        let mut c = TcpStream::connect(proxy.listen).await.expect("connect");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let started = std::time::Instant::now();
        c.write_all(&data).await.expect("write");
        let mut back = vec![0u8; data.len()];
        c.read_exact(&mut back).await.expect("read");
        // One delay on the way there and one on the way back.
        assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
        assert_eq!(back, data);
        // Two round trips overlap: they are delayed, not serialised.
        let started = std::time::Instant::now();
        c.write_all(b"a").await.expect("write");
        c.write_all(b"b").await.expect("write");
        let mut two = [0u8; 2];
        c.read_exact(&mut two).await.expect("read");
        assert_eq!(&two, b"ab");
        assert!(started.elapsed() < 4 * delay, "{:?}", started.elapsed());
        drop(proxy);
    }
}
