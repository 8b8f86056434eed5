//! The `:authority` of gRPC calls on the unix socket, made acceptable to
//! the HTTP/2 server.
//!
//! gRPC-Go clients dialling a socket by its bare path (the kubelet before
//! Kubernetes 1.26, other older COs) send that path, e.g.
//! `/var/lib/kubelet/plugins/io.openebs.csi-mayastor/csi.sock`, as the
//! request's `:authority`. The HTTP/2 implementation under tonic refuses
//! it as a malformed header and resets the stream (PROTOCOL_ERROR), so the
//! kubelet could never call NodeGetInfo and register the driver. On a unix
//! socket the authority carries no meaning, so [`AuthorityFix`] rewrites
//! the value of every literal `:authority` header field the client sends
//! to `localhost` (what newer clients send) before the server parses it.
//!
//! How, on the client-to-server byte stream: the connection preface and
//! every frame pass through unchanged, except HEADERS frames that hold a
//! whole header block (END_HEADERS); in those, each HPACK representation is
//! walked (RFC 7541 section 6) and a literal field whose name is static
//! entry 1 (`:authority`) gets a plain-text value instead. The new value
//! is never longer than the least the original can decode to (Huffman
//! codes are at most 30 bits), so the server's HPACK dynamic table never
//! holds more bytes than the client's and both keep the same indices; a
//! frame therefore never grows. Anything that does not parse is passed on
//! untouched (the server then judges it as before).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The value written in place of a client's `:authority`.
const LOCALHOST: &[u8] = b"localhost";
/// The HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Where the parser is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes of the connection preface still to pass.
    Preface(usize),
    /// Waiting for a whole frame header.
    FrameHeader,
    /// Payload bytes of a frame passed through as they come.
    Passthrough(usize),
    /// A HEADERS frame collected whole (header and payload length).
    Headers(usize),
}

/// A server-side connection whose incoming `:authority` values are
/// rewritten (see the module documentation); writes go straight through.
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    state: State,
    /// Bytes read but not yet parsed.
    pending: Vec<u8>,
    /// Bytes parsed and ready for the server.
    ready: Vec<u8>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            state: State::Preface(PREFACE_LEN),
            pending: Vec::new(),
            ready: Vec::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves what can be decided from `pending` to `ready`.
    fn process(&mut self) {
        loop {
            match self.state {
                State::Preface(left) | State::Passthrough(left) => {
                    let n = left.min(self.pending.len());
                    self.ready.extend(self.pending.drain(..n));
                    if n < left {
                        self.state = match self.state {
                            State::Preface(_) => State::Preface(left - n),
                            _ => State::Passthrough(left - n),
                        };
                        return;
                    }
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    if self.pending.len() < FRAME_HEADER_LEN {
                        return;
                    }
                    let h = &self.pending[..FRAME_HEADER_LEN];
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    if h[3] == TYPE_HEADERS && h[4] & FLAG_END_HEADERS != 0 {
                        self.state = State::Headers(len);
                    } else {
                        self.ready.extend(self.pending.drain(..FRAME_HEADER_LEN));
                        self.state = State::Passthrough(len);
                    }
                }
                State::Headers(len) => {
                    if self.pending.len() < FRAME_HEADER_LEN + len {
                        return;
                    }
                    let frame: Vec<u8> = self.pending.drain(..FRAME_HEADER_LEN + len).collect();
                    match rewrite_headers_frame(&frame) {
                        Some(fixed) => self.ready.extend(fixed),
                        None => self.ready.extend(frame),
                    }
                    self.state = State::FrameHeader;
                }
            }
        }
    }
}

/// A HEADERS frame (header and payload) with its `:authority` literals
/// rewritten; `None` when there is nothing to change or it does not parse.
fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let flags = frame[4];
    let payload = &frame[FRAME_HEADER_LEN..];
    let mut start = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    let block = payload.get(start..end)?;
    let fixed = rewrite_block(block)?;
    let new_len = payload.len() - block.len() + fixed.len();
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + new_len);
    out.extend_from_slice(&[(new_len >> 16) as u8, (new_len >> 8) as u8, new_len as u8]);
    out.extend_from_slice(&frame[3..FRAME_HEADER_LEN]);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// An HPACK integer with an `n`-bit prefix at the start of `buf`: (value,
/// bytes used).
fn hpack_int(buf: &[u8], n: u32) -> Option<(usize, usize)> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(*buf.first()?) & mask;
    if value < mask {
        return Some((value, 1));
    }
    let mut shift = 0;
    for (i, b) in buf.iter().enumerate().skip(1) {
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    None
}

/// An HPACK string literal at the start of `buf`: (Huffman-coded, length
/// of its octets, bytes used in all).
fn hpack_string(buf: &[u8]) -> Option<(bool, usize, usize)> {
    let huffman = buf.first()? & 0x80 != 0;
    let (len, used) = hpack_int(buf, 7)?;
    let total = used.checked_add(len)?;
    (total <= buf.len()).then_some((huffman, len, total))
}

/// The least number of characters a string of `octets` bytes decodes to.
fn min_decoded_len(huffman: bool, octets: usize) -> usize {
    if huffman {
        // Codes are 5 to 30 bits; the last octet may hold up to 7 bits of
        // padding.
        (octets * 8).saturating_sub(7).div_ceil(30)
    } else {
        octets
    }
}

/// The header block with every literal `:authority` value replaced;
/// `None` when none is there or the block does not parse.
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut changed = false;
    let mut i = 0;
    while i < block.len() {
        let rest = &block[i..];
        let b = rest[0];
        if b & 0x80 != 0 {
            // Indexed header field.
            let (_, used) = hpack_int(rest, 7)?;
            out.extend_from_slice(&rest[..used]);
            i += used;
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            let (_, used) = hpack_int(rest, 5)?;
            out.extend_from_slice(&rest[..used]);
            i += used;
            continue;
        }
        // A literal: with incremental indexing (6-bit prefix), without
        // indexing or never indexed (4-bit prefix).
        let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
        let (index, mut used) = hpack_int(rest, prefix)?;
        if index == 0 {
            let (_, _, name_used) = hpack_string(&rest[used..])?;
            used += name_used;
        }
        let (huffman, octets, value_used) = hpack_string(&rest[used..])?;
        let keep = LOCALHOST.len().min(min_decoded_len(huffman, octets));
        if index == 1 && keep > 0 {
            out.extend_from_slice(&rest[..used]);
            // A plain (non-Huffman) string shorter than 127 octets.
            out.push(keep as u8);
            out.extend_from_slice(&LOCALHOST[..keep]);
            changed = true;
        } else {
            out.extend_from_slice(&rest[..used + value_used]);
        }
        i += used + value_used;
    }
    changed.then_some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // End of stream: whatever is left goes as it is.
                    this.eof = true;
                    this.ready.append(&mut this.pending);
                }
                Poll::Ready(Ok(())) => {
                    this.pending.extend_from_slice(read.filled());
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame of stream 1 holding `block`.
    fn headers_frame(block: &[u8], flags: u8) -> Vec<u8> {
        let len = block.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            TYPE_HEADERS,
            flags,
        ];
        f.extend_from_slice(&[0, 0, 0, 1]);
        f.extend_from_slice(block);
        f
    }

    fn literal(first: u8, value: &[u8], huffman: bool) -> Vec<u8> {
        let mut v = vec![first, value.len() as u8 | if huffman { 0x80 } else { 0 }];
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost() {
        // :method POST (indexed 3), :authority literal with incremental
        // indexing, :path literal without indexing (name index 4).
        let path = b"/var/lib/kubelet/plugins/io.openebs.csi-mayastor/csi.sock";
        let mut block = vec![0x83];
        block.extend(literal(0x41, path, false));
        block.extend(literal(0x04, b"/csi.v1.Node/NodeGetInfo", false));
        let fixed = rewrite_block(&block).expect("rewritten");
        let mut want = vec![0x83];
        want.extend(literal(0x41, b"localhost", false));
        want.extend(literal(0x04, b"/csi.v1.Node/NodeGetInfo", false));
        assert_eq!(fixed, want);

        // Without indexing, never indexed, and a 6-bit index of 1.
        for first in [0x01, 0x11] {
            let fixed = rewrite_block(&literal(first, path, false)).expect("rewritten");
            assert_eq!(fixed, literal(first, b"localhost", false));
        }
    }

    #[test]
    fn a_huffman_value_is_replaced_by_no_more_than_it_decodes_to() {
        // 40 octets decode to at least 11 characters: the whole name.
        let fixed = rewrite_block(&literal(0x41, &[0xaa; 40], true)).expect("rewritten");
        assert_eq!(fixed, literal(0x41, b"localhost", false));
        // 7 octets (e.g. "localhost" itself) decode to at least 2.
        let fixed = rewrite_block(&literal(0x41, &[0xaa; 7], true)).expect("rewritten");
        assert_eq!(fixed, literal(0x41, b"lo", false));
        // A raw value shorter than the name keeps its length.
        let fixed = rewrite_block(&literal(0x41, b"a:1", false)).expect("rewritten");
        assert_eq!(fixed, literal(0x41, b"loc", false));
        for n in 0..200 {
            assert!(min_decoded_len(true, n) <= n.max(1));
        }
    }

    #[test]
    fn other_blocks_are_left_alone() {
        // Indexed fields and another literal only.
        let mut block = vec![0x83, 0x86, 0xbe];
        block.extend(literal(0x40 | 4, b"/x", false));
        assert_eq!(rewrite_block(&block), None);
        // Truncated: not parsed, not changed.
        assert_eq!(rewrite_block(&[0x41, 0x10, b'a']), None);
        assert_eq!(rewrite_block(&[0x7f]), None);
    }

    #[test]
    fn frames_are_rewritten_in_the_stream_and_the_rest_passes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
            let block = literal(0x41, b"/run/csi/csi.sock", false);
            // Padded (2 bytes) and with priority.
            let mut padded = vec![2];
            padded.extend_from_slice(&[0, 0, 0, 0, 16]);
            padded.extend_from_slice(&block);
            padded.extend_from_slice(&[0, 0]);
            let headers = headers_frame(&padded, FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY);
            // A HEADERS frame without END_HEADERS passes as it is.
            let open = headers_frame(&block, 0);
            let data = [0, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c'];
            let mut sent = preface.to_vec();
            for part in [&settings[..], &headers, &open, &data] {
                sent.extend_from_slice(part);
            }

            let (mut client, server) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                // Byte by byte: every split of frames is seen.
                for b in sent {
                    client.write_all(&[b]).await.expect("write");
                }
            });
            let mut fixed = AuthorityFix::new(server);
            let mut got = Vec::new();
            fixed.read_to_end(&mut got).await.expect("read");
            writer.await.expect("writer");

            let mut want_block = vec![2, 0, 0, 0, 0, 16];
            want_block.extend(literal(0x41, b"localhost", false));
            want_block.extend_from_slice(&[0, 0]);
            let mut want = preface.to_vec();
            want.extend_from_slice(&settings);
            want.extend(headers_frame(
                &want_block,
                FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            ));
            want.extend_from_slice(&open);
            want.extend_from_slice(&data);
            assert_eq!(got, want);
        });
    }
}
