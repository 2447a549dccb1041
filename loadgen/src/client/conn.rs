//! One client WebSocket connection with no read buffer of its own.
//!
//! Every read goes into one worker-wide scratch buffer (the worker is single-threaded); the
//! frames found there are handed to the caller by reference and only the bytes of an
//! unfinished frame are copied into the connection (`pending`). The outbound buffer holds only
//! bytes the socket did not take yet and is freed once it has drained. An idle connection thus
//! costs its socket registration, this struct and its task: a few hundred bytes.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};

use rtc_protocol::http;
use rtc_protocol::ws::{
    decode_frame, encode_close_masked, encode_frame_masked, parse_close_payload, Decoded, OpCode,
    Role, WsError,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::{TcpSocket, TcpStream};

/// Size of the worker-wide read buffer.
pub const SCRATCH_BYTES: usize = 256 * 1024;
/// Largest frame a connection accepts (bytes of an unfinished frame it may hold).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Largest HTTP response head accepted during the upgrade.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// Longest a clean close may take (flushing what is queued, then the close frame).
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Reads per wake-up before yielding to other connections (fairness under load).
const READS_PER_WAKE: usize = 16;
/// An emptied outbound buffer bigger than this is freed rather than kept.
const OUT_KEEP_BYTES: usize = 512;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// Why a connection failed; [`ConnError::kind`] names it for the error table.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The TCP connect failed.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The server answered the upgrade with another status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The upgrade response was malformed (or its accept key wrong).
    #[error("bad handshake: {0}")]
    Handshake(http::HttpError),
    /// Something loadgen needs before dialing failed (name resolution, control's answer).
    #[error("setup: {0}")]
    Setup(&'static str),
    /// A socket read or write failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The server closed the TCP connection without a close frame.
    #[error("connection closed by peer")]
    Eof,
    /// The server sent a close frame (with this code, if any).
    #[error("closed by server ({0:?})")]
    Closed(Option<u16>),
    /// The server broke RFC 6455.
    #[error("protocol: {0}")]
    Protocol(#[from] WsError),
    /// A frame was larger than [`MAX_FRAME_BYTES`] (or fragmented, which loadgen does not need).
    #[error("frame too large or fragmented")]
    Unsupported,
    /// A step did not finish within its deadline.
    #[error("timeout: {0}")]
    Timeout(&'static str),
    /// The server sent something the scenario did not expect.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// Nodes kept redirecting the user (their rings disagree during a change).
    #[error("too many redirects")]
    RedirectLoop,
}

impl ConnError {
    /// Short name used as the key of the error table.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "connect_refused".into(),
                io::ErrorKind::AddrNotAvailable => "connect_addr_not_available".into(),
                io::ErrorKind::AddrInUse => "connect_addr_in_use".into(),
                io::ErrorKind::TimedOut => "connect_timeout".into(),
                _ if e.raw_os_error() == Some(24) => "connect_too_many_files".into(),
                _ => "connect_other".into(),
            },
            ConnError::Status(s) => format!("http_{s}"),
            ConnError::Handshake(_) => "handshake".into(),
            ConnError::Setup(_) => "setup".into(),
            ConnError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionReset => "reset".into(),
                io::ErrorKind::BrokenPipe => "broken_pipe".into(),
                _ => "io_other".into(),
            },
            ConnError::Eof => "eof".into(),
            ConnError::Closed(Some(c)) => format!("close_{c}"),
            ConnError::Closed(None) => "close".into(),
            ConnError::Protocol(_) => "ws_protocol".into(),
            ConnError::Unsupported => "ws_unsupported".into(),
            ConnError::Timeout(what) => format!("timeout_{what}"),
            ConnError::Unexpected(_) => "unexpected_frame".into(),
            ConnError::RedirectLoop => "redirect_loop".into(),
        }
    }
}

/// A frame from the server, borrowed from the read buffer.
#[derive(Debug)]
pub enum Event<'a> {
    /// A text message.
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
}

/// The outbound side: masked frames waiting for the socket.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    /// xorshift state for masking keys (RFC 6455 wants them unpredictable to intermediaries;
    /// a per-connection PRNG is plenty for a load generator).
    mask_state: u32,
    /// Pings answered (the worker adds this to its counters).
    pub pongs: u64,
}

impl Writer {
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_ne_bytes()
    }

    /// Queues a text frame.
    pub fn text(&mut self, payload: &[u8]) {
        let m = self.next_mask();
        encode_frame_masked(OpCode::Text, true, payload, m, &mut self.out);
    }

    fn pong(&mut self, payload: &[u8]) {
        let m = self.next_mask();
        encode_frame_masked(OpCode::Pong, true, payload, m, &mut self.out);
        self.pongs += 1;
    }

    fn close(&mut self, code: u16) {
        let m = self.next_mask();
        encode_close_masked(code, "", m, &mut self.out);
    }

    /// Bytes not yet taken by the socket.
    pub fn backlog(&self) -> usize {
        self.out.len()
    }
}

/// An open client connection (after the HTTP upgrade).
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes of an unfinished frame only; empty (no allocation) between frames.
    pending: Vec<u8>,
    /// What we owe the server.
    pub writer: Writer,
}

/// Where and how to connect.
#[derive(Debug, Clone, Copy)]
pub struct Dial<'a> {
    /// Server address.
    pub addr: SocketAddr,
    /// Local address to bind (for `--source-ips`), or `None`.
    pub source: Option<IpAddr>,
    /// `Host` header value.
    pub host: &'a str,
    /// Request target (`/ws?userId=…`).
    pub path_and_query: &'a str,
    /// Seed for the handshake key and masks (distinct per connection).
    pub seed: u64,
}

impl Conn {
    /// Connects, sends the upgrade request and checks the `101` response.
    pub async fn open(d: Dial<'_>) -> Result<Conn, ConnError> {
        let socket = if d.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ConnError::Connect)?;
        if let Some(ip) = d.source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ConnError::Connect)?;
        }
        let mut stream = socket.connect(d.addr).await.map_err(ConnError::Connect)?;
        stream.set_nodelay(true)?;
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&splitmix(d.seed).to_le_bytes());
        random[8..].copy_from_slice(&splitmix(d.seed ^ 0x5555).to_le_bytes());
        let key = http::ws_key_from_random(random);
        let mut req = Vec::with_capacity(256);
        http::write_upgrade_request(d.host, d.path_and_query, &key, None, &mut req);
        stream.write_all(&req).await?;
        let mut head = Vec::with_capacity(1024);
        let end = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnError::Eof);
            }
            head.extend_from_slice(&chunk[..n]);
            match http::parse_response(&head) {
                Ok(http::Parsed::Complete(r)) => {
                    r.check_upgrade(&key).map_err(|e| match e {
                        http::HttpError::UnexpectedStatus(s) => ConnError::Status(s),
                        other => ConnError::Handshake(other),
                    })?;
                    break r.head_len;
                }
                Ok(http::Parsed::Incomplete) if head.len() <= MAX_RESPONSE_HEAD => {}
                Ok(http::Parsed::Incomplete) => {
                    return Err(ConnError::Handshake(http::HttpError::HeadTooLarge))
                }
                Err(e) => return Err(ConnError::Handshake(e)),
            }
        };
        let pending = head[end..].to_vec();
        Ok(Conn {
            stream,
            pending,
            writer: Writer {
                out: Vec::new(),
                mask_state: (splitmix(d.seed) as u32) | 1,
                pongs: 0,
            },
        })
    }

    /// Waits until the socket is readable (or writable while bytes are queued), then reads what is there and hands every complete
    /// text/binary message to `on` (pings are answered, a close frame ends with
    /// [`ConnError::Closed`]). Cancel-safe: the only await is the readiness wait.
    pub async fn read<F>(&mut self, mut on: F) -> Result<(), ConnError>
    where
        F: FnMut(Event<'_>, &mut Writer) -> Result<(), ConnError>,
    {
        // Frames already buffered (bytes that came with the upgrade response) first.
        if !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            let used = decode_all(&mut pending, &mut self.writer, &mut on)?;
            pending.drain(..used);
            // Keep no allocation once the buffered frames are consumed.
            self.pending = if pending.is_empty() {
                Vec::new()
            } else {
                pending
            };
            if used > 0 {
                // Those frames may be all the server sends for now: hand them over before
                // waiting for more.
                return self.try_flush();
            }
        }
        // Wait for input, or for room to write when bytes are queued: one future per
        // connection serves both directions.
        let interest = if self.has_backlog() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = self.stream.ready(interest).await?;
        if ready.is_writable() {
            self.try_flush()?;
        }
        if !(ready.is_readable() || ready.is_read_closed()) {
            return Ok(());
        }
        let result = SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                match self.stream.try_read(&mut scratch) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => {
                        if self.pending.is_empty() {
                            let used = decode_all(&mut scratch[..n], &mut self.writer, &mut on)?;
                            self.stash(&scratch[used..n])?;
                        } else {
                            self.stash(&scratch[..n])?;
                            let mut pending = std::mem::take(&mut self.pending);
                            let used = decode_all(&mut pending, &mut self.writer, &mut on)?;
                            pending.drain(..used);
                            self.pending = if pending.is_empty() {
                                Vec::new()
                            } else {
                                pending
                            };
                        }
                        if n < scratch.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(ConnError::Io(e)),
                }
            }
            Ok(())
        });
        self.try_flush()?;
        result
    }

    /// Puts already-decoded server frames (re-encoded, unmasked) back in front of whatever is
    /// buffered: the next [`Conn::read`] hands them out first. For a reader that stopped at a
    /// frame (the `welcome`) while the same read carried more (a resume's replay).
    pub fn unread(&mut self, frames: Vec<u8>) {
        if frames.is_empty() {
            return;
        }
        let rest = std::mem::take(&mut self.pending);
        self.pending = frames;
        self.pending.extend_from_slice(&rest);
    }

    fn stash(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        if self.pending.len() + bytes.len() > MAX_FRAME_BYTES + rtc_protocol::ws::MAX_HEADER_LEN {
            return Err(ConnError::Unsupported);
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes what the socket takes now without waiting.
    pub fn try_flush(&mut self) -> Result<(), ConnError> {
        let out = &mut self.writer.out;
        while !out.is_empty() {
            match self.stream.try_write(out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
        if out.capacity() > OUT_KEEP_BYTES {
            *out = Vec::new();
        }
        Ok(())
    }

    /// Whether bytes are waiting for the socket.
    pub fn has_backlog(&self) -> bool {
        !self.writer.out.is_empty()
    }

    /// Waits until the socket takes more bytes, then writes. Cancel-safe.
    pub async fn flush_some(&mut self) -> Result<(), ConnError> {
        self.stream.writable().await?;
        self.try_flush()
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.try_flush()?;
        while self.has_backlog() {
            self.flush_some().await?;
        }
        Ok(())
    }

    /// Sends a close frame (1000) and shuts the socket down; errors are ignored (we are leaving).
    /// (Boxed so its state is not part of every idle connection's task; bounded by
    /// [`CLOSE_TIMEOUT`] so a server that stopped reading cannot hold the run.)
    pub async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, Box::pin(self.close_inner())).await;
    }

    async fn close_inner(mut self) {
        self.writer.close(1000);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Allocates the worker-wide read buffer now (so memory figures taken before the first
/// connection include it).
pub fn init_scratch() {
    SCRATCH.with(|s| s.borrow().len());
}

/// Decodes every complete frame at the start of `buf` (unmasked server frames; `buf` is
/// mutable because the codec's contract allows unmasking in place). Returns bytes consumed.
fn decode_all<F>(buf: &mut [u8], w: &mut Writer, on: &mut F) -> Result<usize, ConnError>
where
    F: FnMut(Event<'_>, &mut Writer) -> Result<(), ConnError>,
{
    let mut at = 0;
    loop {
        let h = match decode_frame(&buf[at..], Role::Client)? {
            Decoded::Frame(h) => h,
            Decoded::Incomplete { needed } => {
                if buf.len() - at + needed > MAX_FRAME_BYTES + rtc_protocol::ws::MAX_HEADER_LEN {
                    return Err(ConnError::Unsupported);
                }
                return Ok(at);
            }
        };
        let start = at + h.header_len;
        let end = start + h.payload_len as usize;
        let payload = &buf[start..end];
        if !h.fin || h.opcode == OpCode::Continuation {
            return Err(ConnError::Unsupported);
        }
        match h.opcode {
            OpCode::Text => on(Event::Text(payload), w)?,
            OpCode::Binary => on(Event::Binary(payload), w)?,
            OpCode::Ping => w.pong(payload),
            OpCode::Pong => {}
            OpCode::Close => {
                let code = parse_close_payload(payload)?.map(|c| c.code);
                w.close(1000);
                return Err(ConnError::Closed(code));
            }
            OpCode::Continuation => return Err(ConnError::Unsupported),
        }
        at = end;
    }
}

/// SplitMix64: spreads a counter into well-mixed bits (handshake keys, masks, jitter).
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_protocol::ws::encode_frame;

    #[test]
    fn decodes_frames_and_answers_pings() {
        let mut buf = Vec::new();
        encode_frame(OpCode::Text, true, b"hello", &mut buf);
        encode_frame(OpCode::Ping, true, b"p", &mut buf);
        encode_frame(OpCode::Binary, true, b"\x01\x02", &mut buf);
        let whole = buf.len();
        encode_frame(OpCode::Text, true, b"unfinished", &mut buf);
        buf.truncate(buf.len() - 3);
        let mut w = Writer {
            mask_state: 7,
            ..Writer::default()
        };
        let mut seen = Vec::new();
        let used = decode_all(&mut buf, &mut w, &mut |e, _| {
            seen.push(format!("{e:?}"));
            Ok(())
        })
        .expect("decodes");
        assert_eq!(used, whole);
        assert_eq!(seen.len(), 2);
        assert_eq!(w.pongs, 1);
        assert!(w.backlog() > 0);
    }

    #[test]
    fn close_frame_ends_with_its_code() {
        let mut buf = Vec::new();
        rtc_protocol::ws::encode_close(4005, "slow", &mut buf);
        let mut w = Writer::default();
        let r = decode_all(&mut buf, &mut w, &mut |_, _| Ok(()));
        assert!(matches!(r, Err(ConnError::Closed(Some(4005)))));
        assert_eq!(ConnError::Closed(Some(4005)).kind(), "close_4005");
    }
}
