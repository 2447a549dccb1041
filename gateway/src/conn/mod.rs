//! One upgraded WebSocket connection: a single hand-written future per connection that reads,
//! writes and reacts to requests from its shard.
//!
//! Why hand-written: an idle connection should cost a few hundred bytes. The task holds the
//! glommio stream (no receive buffer), the codec's [`MessageAssembler`] (no heap while no
//! message is half-received) and an output buffer that is allocated only while bytes wait for
//! the socket. Every read goes into the shard's shared scratch buffer and is decoded in place;
//! every poll reads as much as is there, answers it, and writes all queued output in one
//! `send` — no future or wake-up per frame.
//!
//! The shard talks to a connection through [`ConnShared`] (kept in the shard's connection
//! map): it can wake it (something was queued in the session core), ask for a ping, ask it to
//! close with a code, or abort it.
//!
//! # Layout
//! - this file — [`ConnShared`], [`ConnTask`] (the future) and its read/write loop.
//! - `handoff.rs` — moving a socket to its user's home shard (the one `unsafe`).

pub mod handoff;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rtc_protocol::close;
use rtc_protocol::ws::{self, Limits, Message, MessageAssembler, OpCode, Role};

use crate::metrics::Counter;
use crate::shard::Shard;

pub use rtc_protocol::close::CloseCode;

/// Stop reading from a peer while this many bytes wait to be written to it (its replies
/// would otherwise pile up without bound).
pub const READ_PAUSE_BYTES: usize = 256 * 1024;
/// Pull more from the session core only while less than this is waiting to be written:
/// one write then carries up to about this much (batching).
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Read/write rounds in one poll before yielding to the shard's other tasks.
const ROUNDS_PER_POLL: usize = 16;

const REQ_PING: u8 = 1;
const REQ_CLOSE: u8 = 2;
const REQ_ABORT: u8 = 4;
const NOT_CLOSING: u32 = u32::MAX;

/// What the shard keeps about a connection and uses to steer it.
pub struct ConnShared {
    /// Node-unique connection id (also the session core's connection id).
    pub id: u64,
    /// The user, for `/ws` connections (`None` on `/echo`).
    pub user: Option<Rc<str>>,
    /// Shard clock second of the last byte received (idle timeout).
    pub last_rx: Cell<u32>,
    /// A `drain` frame was queued (drain pacing skips it).
    pub drain_sent: Cell<bool>,
    /// WebSocket frames queued by the shard outside the connection's own loop (`sent` answers
    /// from other shards, `drain`); moved into the output on the next poll. Unallocated when
    /// empty; bounded by `shard::messaging::PENDING_MAX_BYTES`.
    pub pending: RefCell<Vec<u8>>,
    /// Unix ms when the user was attached (`welcome` sent); 0 = never attached. Feeds the
    /// analytics disconnect event (`shard::analytics`).
    pub attached_at_ms: Cell<u64>,
    waker: Cell<Option<Waker>>,
    requests: Cell<u8>,
    close_code: Cell<u16>,
    closing_since: Cell<u32>,
}

impl std::fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnShared")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("closing_since", &self.closing_since())
            .finish_non_exhaustive()
    }
}

impl ConnShared {
    /// A new connection record at shard clock `now_s`.
    pub fn new(id: u64, user: Option<Rc<str>>, now_s: u32) -> Self {
        Self {
            id,
            user,
            last_rx: Cell::new(now_s),
            drain_sent: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            attached_at_ms: Cell::new(0),
            waker: Cell::new(None),
            requests: Cell::new(0),
            close_code: Cell::new(0),
            closing_since: Cell::new(NOT_CLOSING),
        }
    }

    /// Wakes the connection's task (output was queued for it, or a request was made).
    pub fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn set_waker(&self, cx: &Context<'_>) {
        let w = self.waker.take();
        self.waker.set(match w {
            Some(w) if w.will_wake(cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        });
    }

    /// Queues a WebSocket ping.
    pub fn request_ping(&self) {
        self.requests.set(self.requests.get() | REQ_PING);
        self.wake();
    }

    /// Closes with `code` after the output already queued (first request wins).
    pub fn request_close(&self, code: CloseCode) {
        if self.requests.get() & REQ_CLOSE == 0 && self.closing_since.get() == NOT_CLOSING {
            self.close_code.set(code);
            self.requests.set(self.requests.get() | REQ_CLOSE);
            self.wake();
        }
    }

    /// Drops the connection now (the peer did not finish the closing handshake in time).
    pub fn abort(&self) {
        self.requests.set(self.requests.get() | REQ_ABORT);
        self.wake();
    }

    /// Shard clock second at which this side sent its close frame, if it did.
    pub fn closing_since(&self) -> Option<u32> {
        let s = self.closing_since.get();
        (s != NOT_CLOSING).then_some(s)
    }
}

/// What the connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/echo`: every data message is sent back.
    Echo,
    /// `/ws`: JSON frames through the session core.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Normal operation.
    Open,
    /// We sent a close frame: wait for the peer's (or EOF, or the grace period).
    CloseSent,
    /// Done: write what is queued, then drop the socket.
    Finished,
}

/// The per-connection future. Dropping it closes the socket and unregisters the connection.
#[derive(Debug)]
pub struct ConnTask {
    stream: TcpStream,
    shared: Rc<ConnShared>,
    shard: Rc<Shard>,
    asm: MessageAssembler,
    /// Bytes waiting for the socket; unallocated when nothing waits.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes the client sent right behind its request head (processed first).
    pending_in: Vec<u8>,
    mode: Mode,
    phase: Phase,
    /// Peer IP counted in the per-IP limit (released on drop).
    counted_ip: Option<IpAddr>,
    /// Bad frames so far (close 4008 past `MAX_FRAME_ERRORS`).
    pub errors: u32,
    span: tracing::Span,
}

impl ConnTask {
    /// A task for an upgraded connection already registered with `shard`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shard: Rc<Shard>,
        stream: TcpStream,
        shared: Rc<ConnShared>,
        mode: Mode,
        limits: Limits,
        pending_in: Vec<u8>,
        counted_ip: Option<IpAddr>,
        span: tracing::Span,
    ) -> Self {
        Self {
            stream,
            shared,
            shard,
            asm: MessageAssembler::new(Role::Server, limits),
            out: Vec::new(),
            out_pos: 0,
            pending_in,
            mode,
            phase: Phase::Open,
            counted_ip,
            errors: 0,
            span,
        }
    }

    /// Queues output produced before the task first runs (welcome, replay).
    pub fn out_mut(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Sends a close frame with `code` and waits for the peer's.
    fn start_close(&mut self, code: CloseCode) {
        if self.phase != Phase::Open {
            return;
        }
        ws::encode_close(code, close::reason(code), &mut self.out);
        self.phase = Phase::CloseSent;
        self.shared.closing_since.set(self.shard.clock_s.get());
        tracing::debug!(parent: &self.span, code, "closing");
    }

    /// Fails the connection: close frame with `code`, then drop it once written.
    fn fail(&mut self, code: CloseCode) {
        let counter = match code {
            close::PROTOCOL_ERROR => Some(Counter::Close1002),
            close::INVALID_PAYLOAD => Some(Counter::Close1007),
            close::MESSAGE_TOO_BIG => Some(Counter::Close1009),
            close::TOO_MANY_ERRORS => Some(Counter::Close4008),
            _ => None,
        };
        if let Some(c) = counter {
            self.shard.metrics.inc(c);
        }
        if self.phase == Phase::Open {
            ws::encode_close(code, close::reason(code), &mut self.out);
        }
        tracing::debug!(parent: &self.span, code, "failing connection");
        self.phase = Phase::Finished;
    }

    fn apply_requests(&mut self) -> bool {
        let req = self.shared.requests.replace(0);
        if req & REQ_ABORT != 0 {
            return false;
        }
        {
            let mut pending = self.shared.pending.borrow_mut();
            if !pending.is_empty() {
                if self.phase == Phase::Open {
                    if self.out.is_empty() {
                        std::mem::swap(&mut self.out, &mut pending);
                    } else {
                        self.out.extend_from_slice(&pending);
                    }
                }
                *pending = Vec::new();
            }
        }
        if req & REQ_PING != 0 && self.phase == Phase::Open {
            ws::encode_frame(OpCode::Ping, true, b"", &mut self.out);
        }
        if req & REQ_CLOSE != 0 {
            let code = self.shared.close_code.get();
            self.start_close(code);
        }
        true
    }

    /// Decodes and answers everything in `input` (unmasked in place).
    fn process(&mut self, input: &mut [u8]) {
        self.shared.last_rx.set(self.shard.clock_s.get());
        let mut pos = 0;
        while pos < input.len() && self.phase != Phase::Finished {
            let feed = match self.asm.feed(&mut input[pos..]) {
                Ok(f) => f,
                Err(e) => {
                    let code = e.close_code();
                    self.fail(code);
                    return;
                }
            };
            pos += feed.consumed;
            let Some(msg) = feed.message else {
                if feed.consumed == 0 {
                    break;
                }
                continue;
            };
            match msg {
                Message::Text(t) if self.phase == Phase::Open => match self.mode {
                    Mode::Echo => ws::encode_frame(OpCode::Text, true, t.as_bytes(), &mut self.out),
                    Mode::Session => {
                        let ok = crate::shard::messaging::on_text(
                            &self.shard,
                            &self.shared,
                            t.as_bytes(),
                            &mut self.out,
                        );
                        if !ok {
                            self.errors += 1;
                            if self.errors >= self.shard.node.config.max_frame_errors {
                                self.fail(close::TOO_MANY_ERRORS);
                            }
                        }
                    }
                },
                Message::Binary(b) if self.phase == Phase::Open => match self.mode {
                    Mode::Echo => ws::encode_frame(OpCode::Binary, true, b, &mut self.out),
                    // The /ws protocol is JSON text frames only.
                    Mode::Session => {
                        self.shard.metrics.inc(Counter::Close1002);
                        ws::encode_close(
                            close::UNSUPPORTED_DATA,
                            close::reason(close::UNSUPPORTED_DATA),
                            &mut self.out,
                        );
                        self.phase = Phase::Finished;
                    }
                },
                Message::Text(_) | Message::Binary(_) => {} // closing: data is discarded
                Message::Ping(p) => {
                    if self.phase == Phase::Open {
                        ws::encode_frame(OpCode::Pong, true, p, &mut self.out);
                    }
                }
                Message::Pong(_) => {}
                Message::Close(frame) => {
                    if self.phase == Phase::Open {
                        // Echo the peer's status code (RFC 6455 §5.5.1).
                        let code = frame.map_or(close::NORMAL, |f| f.code);
                        ws::encode_close(code, "", &mut self.out);
                    }
                    self.phase = Phase::Finished;
                }
            }
        }
    }
}

impl Future for ConnTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.set_waker(cx);
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = false;
            if !this.apply_requests() {
                return Poll::Ready(());
            }
            if this.phase == Phase::Open
                && this.mode == Mode::Session
                && this.queued() < WRITE_BATCH_BYTES
            {
                let before = this.out.len();
                crate::shard::messaging::pull(&this.shard, &this.shared, &mut this.out);
                progress |= this.out.len() != before;
            }
            if this.queued() > 0 {
                match Pin::new(&mut this.stream).poll_write(cx, &this.out[this.out_pos..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(n)) => {
                        this.out_pos += n;
                        if this.out_pos == this.out.len() {
                            // Release the buffer: an idle connection holds no output memory.
                            this.out = Vec::new();
                            this.out_pos = 0;
                            if this.mode == Mode::Session {
                                crate::shard::messaging::written(&this.shard, &this.shared);
                            }
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if this.phase == Phase::Finished {
                if this.queued() == 0 {
                    return Poll::Ready(());
                }
                if !progress {
                    return Poll::Pending;
                }
                continue;
            }
            if this.queued() < READ_PAUSE_BYTES {
                if !this.pending_in.is_empty() {
                    let mut input = std::mem::take(&mut this.pending_in);
                    this.process(&mut input);
                    progress = true;
                } else {
                    let shard = this.shard.clone();
                    let mut buf = shard.read_buf.borrow_mut();
                    match Pin::new(&mut this.stream).poll_read(cx, &mut buf[..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Ready(Ok(n)) => {
                            this.process(&mut buf[..n]);
                            progress = true;
                        }
                        Poll::Pending => {}
                    }
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Used up this poll's rounds with more to do: let the shard's other tasks run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for ConnTask {
    fn drop(&mut self) {
        if self.mode == Mode::Session {
            crate::shard::messaging::detach(&self.shard, &self.shared);
        }
        self.shard.unregister(self.shared.id);
        if let Some(ip) = self.counted_ip {
            self.shard.node.per_ip.release(ip);
        }
        tracing::debug!(parent: &self.span, "connection closed");
    }
}
