//! The plain data the session core takes and gives: messages, results, events, errors.

use std::rc::Rc;

use rtc_protocol::close::{self, CloseCode};
use rtc_protocol::frames::ServerFrame;
use thiserror::Error;

use super::limits::MESSAGE_OVERHEAD;

/// A connection id chosen by the runtime (unique on the shard while the connection lives).
pub type ConnId = u64;

/// One committed message as stored in the recipient's resume log.
///
/// Shared (`Rc`) between the log and whatever the runtime is encoding, so handing it out for
/// transmission copies nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// Node-unique message id (see [`MsgIdGen`]).
    pub msg_id: u64,
    /// The recipient's offset for this message (monotonic per user).
    pub offset: u64,
    /// Sending user.
    pub from: Rc<str>,
    /// Raw JSON of the payload value, as the sender wrote it.
    pub payload: Box<[u8]>,
    /// Commit time, unix milliseconds (the `ts` of the `message` frame; also the TTL clock).
    pub ts_ms: u64,
}

impl Message {
    /// Bytes this message counts for in log, offline and window budgets.
    pub fn cost(&self) -> usize {
        message_cost(&self.from, &self.payload)
    }
}

/// Budget cost of a message with this sender and payload.
pub(super) fn message_cost(from: &str, payload: &[u8]) -> usize {
    MESSAGE_OVERHEAD + from.len() + payload.len()
}

/// Where [`SessionCore::insert_at`](super::SessionCore::insert_at) put a store-committed
/// message in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// At `head + 1`: delivered like a fresh commit.
    Appended,
    /// At or below the head: already cached (a repeat), nothing changed.
    Stale,
    /// After offsets committed elsewhere: `from..=to` are not cached (the connection gets a
    /// `gap` for them; a resume replays them from the store).
    AfterHole {
        /// First missing offset.
        from: u64,
        /// Last missing offset.
        to: u64,
    },
}

/// Node-unique message ids: the shard id in the top 16 bits, a per-shard counter below.
///
/// Message ids only need to be unique per node (clients dedup by msgId within a session and by
/// offset across them); the runtime may start the counter anywhere, e.g. from a boot value.
#[derive(Debug, Clone)]
pub struct MsgIdGen {
    shard: u16,
    next: u64,
}

/// Bits of a message id taken by the per-shard counter.
pub const MSG_ID_COUNTER_BITS: u32 = 48;

impl MsgIdGen {
    /// Ids for shard `shard`, counter starting at `start` (wraps within 48 bits).
    pub fn new(shard: u16, start: u64) -> Self {
        Self { shard, next: start }
    }

    /// The next id. Strictly increasing until the 48-bit counter wraps (after 2.8e14 ids).
    pub fn next_id(&mut self) -> u64 {
        let mask = (1u64 << MSG_ID_COUNTER_BITS) - 1;
        let id = (u64::from(self.shard) << MSG_ID_COUNTER_BITS) | (self.next & mask);
        self.next = self.next.wrapping_add(1);
        id
    }
}

/// The outcome of [`SessionCore::commit`](super::SessionCore::commit).
///
/// Either way the runtime answers the sender with `sent {clientMsgId, msgId, offset, to}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Appended to the recipient's log (the commit point) with this id and offset.
    Committed {
        /// Assigned message id.
        msg_id: u64,
        /// Assigned recipient offset.
        offset: u64,
    },
    /// A retry of a `(from, clientMsgId)` already committed: nothing appended, same answer.
    Duplicate {
        /// The id given at the first commit.
        msg_id: u64,
        /// The offset given at the first commit.
        offset: u64,
    },
}

impl Commit {
    /// The message id, committed or duplicate.
    pub fn msg_id(&self) -> u64 {
        match *self {
            Commit::Committed { msg_id, .. } | Commit::Duplicate { msg_id, .. } => msg_id,
        }
    }

    /// The recipient offset, committed or duplicate.
    pub fn offset(&self) -> u64 {
        match *self {
            Commit::Committed { offset, .. } | Commit::Duplicate { offset, .. } => offset,
        }
    }

    /// The `sent` acknowledgement as data, to route back to the sender's shard.
    pub fn sent(&self, sender: Rc<str>, client_msg_id: Box<str>, to: Rc<str>) -> Sent {
        Sent {
            sender,
            client_msg_id,
            msg_id: self.msg_id(),
            offset: self.offset(),
            to,
        }
    }
}

/// A `sent` acknowledgement to deliver to the sender (who may live on another shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The user who sent the message (route to their home shard).
    pub sender: Rc<str>,
    /// The sender's client message id, echoed.
    pub client_msg_id: Box<str>,
    /// Assigned message id.
    pub msg_id: u64,
    /// Recipient offset.
    pub offset: u64,
    /// The recipient.
    pub to: Rc<str>,
}

impl Sent {
    /// The `sent` frame for the sender's connection.
    pub fn frame(&self) -> ServerFrame<'_> {
        ServerFrame::Sent {
            client_msg_id: &self.client_msg_id,
            msg_id: self.msg_id,
            offset: self.offset,
            to: &self.to,
        }
    }
}

/// How an attach related to the client's `lastOffset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `lastOffset`: a fresh connect; every unacknowledged log entry is replayed.
    Fresh,
    /// Everything after `lastOffset` (and not acked) was still in the log and is replayed.
    Complete,
    /// Part of what was asked is gone (expired, evicted, pushed out of a full log): the
    /// `resume_gap` range; the rest is replayed.
    Partial,
    /// `lastOffset` is beyond anything this shard assigned to the user (state lost, or the
    /// client is confused): treated as a fresh connect. The runtime may close with
    /// 4004 RESUME_FAILED instead.
    Ahead,
}

/// The outcome of [`SessionCore::attach`](super::SessionCore::attach).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// The user's previous connection, now detached: close it with 4002 REPLACED.
    pub replaced: Option<ConnId>,
    /// Last offset assigned to the user (the `offset` of `welcome`).
    pub head_offset: u64,
    /// Cumulative acked offset after the attach (a resume acks up to `lastOffset`).
    pub acked_offset: u64,
    /// Messages waiting for the new connection (the replay), read with `poll_transmit`.
    pub replay: u64,
    /// What became of the resume.
    pub resume: Resume,
    /// Inclusive offset range asked for (or unacked, on a fresh connect) that is gone. For the
    /// runtime's decisions and logs only: the connection's stream already starts with the
    /// same [`Outbound::Gap`], so do not send it a second time.
    pub resume_gap: Option<(u64, u64)>,
}

/// One item for the runtime to encode and write to a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A `message` frame.
    Deliver(Rc<Message>),
    /// A `gap {from, to}` frame: these offsets were dropped from this connection's stream
    /// (still resumable while in the log).
    Gap {
        /// First missed offset.
        from: u64,
        /// Last missed offset (inclusive).
        to: u64,
    },
}

impl Outbound {
    /// The frame to encode for this item (`message` or `gap`).
    pub fn frame(&self) -> ServerFrame<'_> {
        match self {
            Outbound::Deliver(m) => ServerFrame::Deliver {
                msg_id: m.msg_id,
                offset: m.offset,
                from: &m.from,
                payload: &m.payload,
                ts: m.ts_ms,
            },
            Outbound::Gap { from, to } => ServerFrame::Gap {
                from: *from,
                to: *to,
            },
        }
    }
}

/// Why the core wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection fell too far behind: close 4005 SLOW_CONSUMER.
    SlowConsumer,
}

impl CloseReason {
    /// The WebSocket close code (`protocol::close`).
    pub fn code(self) -> CloseCode {
        match self {
            CloseReason::SlowConsumer => close::SLOW_CONSUMER,
        }
    }
}

/// Asynchronous output of the core, read with [`SessionCore::poll_event`](super::SessionCore::poll_event).
///
/// Events may name a connection that was detached since: ignore those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The connection went from nothing to send to something to send: call `poll_transmit`.
    Writable(ConnId),
    /// Close the connection with `reason.code()`, then `detach` it. Nothing more is queued for it.
    Close {
        /// Connection to close.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Errors of the session core (all are the caller's input, none is fatal).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// `attach` with a connection id already attached.
    #[error("connection {0} is already attached")]
    ConnInUse(ConnId),
    /// The shard holds `max_users` records and none is idle enough to drop.
    #[error("too many users on this shard")]
    TooManyUsers,
    /// The message costs more than a log or a connection window may hold
    /// ([`SessionLimits::max_message_cost`](super::SessionLimits::max_message_cost)).
    #[error("message of {cost} bytes exceeds the session limit of {max}")]
    TooLarge {
        /// The message's cost.
        cost: usize,
        /// The largest cost accepted.
        max: usize,
    },
}

/// Per-shard counters (monotonic). The runtime sums them across shards into Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages appended to a log.
    pub commits: u64,
    /// Retries answered from the dedup memory.
    pub duplicates: u64,
    /// `message` items handed to the runtime for writing.
    pub deliveries: u64,
    /// `gap` items handed to the runtime.
    pub gaps: u64,
    /// Messages dropped from a connection's window (drop-oldest); still in the log.
    pub drops_buffer_full: u64,
    /// Unacked log entries dropped because the log was full (count or bytes).
    pub drops_log_full: u64,
    /// Unacked log entries dropped by the offline byte cap.
    pub drops_evicted: u64,
    /// Whole offline logs evicted by the offline byte cap.
    pub logs_evicted: u64,
    /// Unacked log entries dropped by the TTL.
    pub drops_expired: u64,
    /// Attaches with a `lastOffset` whose range was whole.
    pub resumes_ok: u64,
    /// Attaches with a `lastOffset` that was partly gone or ahead of the head.
    pub resumes_failed: u64,
    /// Connections replaced by a newer one for the same user.
    pub replaced: u64,
    /// Connections closed as slow consumers.
    pub slow_consumers: u64,
    /// Idle user records dropped (TTL passed, or room needed for a new user).
    pub users_dropped: u64,
}

impl Counters {
    /// Adds `other` into `self` (aggregation across shards).
    pub fn merge(&mut self, other: &Counters) {
        self.commits += other.commits;
        self.duplicates += other.duplicates;
        self.deliveries += other.deliveries;
        self.gaps += other.gaps;
        self.drops_buffer_full += other.drops_buffer_full;
        self.drops_log_full += other.drops_log_full;
        self.drops_evicted += other.drops_evicted;
        self.logs_evicted += other.logs_evicted;
        self.drops_expired += other.drops_expired;
        self.resumes_ok += other.resumes_ok;
        self.resumes_failed += other.resumes_failed;
        self.replaced += other.replaced;
        self.slow_consumers += other.slow_consumers;
        self.users_dropped += other.users_dropped;
    }
}

/// Current sizes of one shard's session state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// User records held.
    pub users: u64,
    /// Attached connections.
    pub connections: u64,
    /// Log entries held, all users.
    pub log_entries: u64,
    /// Log bytes held, all users.
    pub log_bytes: u64,
    /// Log bytes of users not connected (capped by `max_offline_log_bytes`).
    pub offline_log_bytes: u64,
}
