//! The data a shard hands the store and gets back: [`Request`], [`Reply`], [`Completion`],
//! [`StoreError`], [`Full`], and the counters.
//!
//! Everything here crosses a thread (shard → bridge → shard), so it owns its data (`Box<str>`,
//! `Box<[u8]>`): one allocation per field at submit time, none on the bridge.

use thiserror::Error;

/// One operation on a user's Redis state. Each becomes one command (mostly `EVALSHA` of one
/// of the store's scripts) in a pipelined round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The commit point: dedup check → next offset → append → trim → refresh TTLs, atomically.
    /// Answered with [`Reply::Commit`].
    Commit {
        /// Recipient (whose log and offsets).
        to: Box<str>,
        /// Sender.
        from: Box<str>,
        /// Sender's client message id; empty = never deduplicated.
        client_msg_id: Box<str>,
        /// Message id chosen by the committing node (its `MsgIdGen`); a duplicate answers the
        /// first commit's id instead.
        msg_id: u64,
        /// Raw JSON payload.
        payload: Box<[u8]>,
        /// Commit time, unix milliseconds (stored as the message `ts`; the age-trim clock).
        ts_ms: u64,
    },
    /// Cumulative ack: everything up to `up_to` (clamped to the head) leaves the log.
    /// Answered with [`Reply::Acked`].
    AckUpTo {
        /// The user acking.
        user: Box<str>,
        /// Highest offset received.
        up_to: u64,
    },
    /// Ack by message id: those entries leave the log (no longer replayed).
    /// Answered with [`Reply::AckedIds`].
    AckIds {
        /// The user acking.
        user: Box<str>,
        /// Message ids (at most `protocol::frames::MAX_ACK_IDS`; more is refused).
        msg_ids: Box<[u64]>,
    },
    /// Log entries after offset `after` (and after the acked offset), oldest first, at most
    /// `limit` (capped by `replay_batch_max`) and about `replay_max_bytes` of payload. Answered with [`Reply::Replay`].
    Replay {
        /// Whose log.
        user: Box<str>,
        /// The client's `lastOffset` (0 = from the start of the log).
        after: u64,
        /// Entries wanted (0 or more than `replay_batch_max` means `replay_batch_max`).
        limit: u32,
        /// Now, unix milliseconds (entries older than the TTL are trimmed first).
        now_ms: u64,
    },
    /// The user's head / acked / lost offsets without entries (reconciling a connected user
    /// against the log). Answered with [`Reply::Head`].
    Head {
        /// Whose log.
        user: Box<str>,
    },
    /// Trims the log to `buffer_max` entries and drops entries older than the TTL (bounded
    /// work per call). Answered with [`Reply::Trimmed`].
    Trim {
        /// Whose log.
        user: Box<str>,
        /// Now, unix milliseconds.
        now_ms: u64,
    },
    /// Records that `user` is connected here; answered with [`Reply::Session`] holding the
    /// record it replaced (e.g. a connection on another node to close).
    SetSession {
        /// The user.
        user: Box<str>,
        /// The new record.
        record: SessionRecord,
    },
    /// Heartbeat: refreshes the TTL if the record is still (node, conn)'s.
    /// Answered with [`Reply::Owned`] (false: someone else owns the user now, or it expired).
    RefreshSession {
        /// The user.
        user: Box<str>,
        /// This node's id.
        node: Box<str>,
        /// The connection that set the record.
        conn: u64,
    },
    /// Clean disconnect: deletes the record only if it is still (node, conn)'s
    /// (compare-and-delete). Answered with [`Reply::Owned`] (true: deleted).
    RemoveSession {
        /// The user.
        user: Box<str>,
        /// This node's id.
        node: Box<str>,
        /// The connection that set the record.
        conn: u64,
    },
    /// Reads the record. Answered with [`Reply::Session`].
    GetSession {
        /// The user.
        user: Box<str>,
    },
}

impl Request {
    /// Rough size on the wire (for the pipeline's byte budget).
    pub(crate) fn approx_bytes(&self) -> usize {
        const FIXED: usize = 128;
        FIXED
            + self.user().len()
            + match self {
                Request::Commit {
                    from,
                    client_msg_id,
                    payload,
                    ..
                } => from.len() + client_msg_id.len() + payload.len(),
                Request::AckIds { msg_ids, .. } => msg_ids.len() * 24,
                _ => 0,
            }
    }

    /// The user whose keys the request touches (the recipient for a commit).
    pub fn user(&self) -> &str {
        match self {
            Request::Commit { to, .. } => to,
            Request::AckUpTo { user, .. }
            | Request::AckIds { user, .. }
            | Request::Replay { user, .. }
            | Request::Head { user }
            | Request::Trim { user, .. }
            | Request::SetSession { user, .. }
            | Request::RefreshSession { user, .. }
            | Request::RemoveSession { user, .. }
            | Request::GetSession { user } => user,
        }
    }
}

/// Where a user is connected: the value of `PREFIX:{user}:sess`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Node id.
    pub node: Box<str>,
    /// Shard on that node.
    pub shard: u32,
    /// The node's connection id (tells a reconnect on the same node from the old connection).
    pub conn: u64,
    /// Connect time, unix milliseconds.
    pub connected_at_ms: u64,
}

/// The answer to a [`Request::Commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReply {
    /// The message id (the first commit's, for a duplicate).
    pub msg_id: u64,
    /// The recipient offset (the first commit's, for a duplicate).
    pub offset: u64,
    /// A retry of an already committed `(from, clientMsgId)`: nothing was appended.
    pub duplicate: bool,
}

/// One resume-log entry read back from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Recipient offset.
    pub offset: u64,
    /// Message id.
    pub msg_id: u64,
    /// Sender.
    pub from: Box<str>,
    /// Raw JSON payload.
    pub payload: Box<[u8]>,
    /// Commit time, unix milliseconds.
    pub ts_ms: u64,
}

/// A user's log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogHead {
    /// Last offset assigned (0: nothing yet, or the keys expired).
    pub head: u64,
    /// Cumulative acked offset.
    pub acked: u64,
    /// Highest offset dropped unacked by a trim (log full or TTL): a resume from below it
    /// has a gap `(max(lastOffset, acked) + 1 ..= lost)`.
    pub lost: u64,
}

/// A successful answer; which variant follows from the request (documented there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// For `Commit`.
    Commit(CommitReply),
    /// For `AckUpTo`: the cumulative acked offset after the ack.
    Acked(u64),
    /// For `AckIds`: how many entries were removed.
    AckedIds(u32),
    /// For `Replay`: the head and up to `limit` entries (and about `replay_max_bytes`).
    Replay {
        /// Log position.
        head: LogHead,
        /// The batch was cut (count or bytes): ask again after the last entry's offset.
        more: bool,
        /// Entries, oldest first, contiguous except where acked by id or trimmed.
        entries: Vec<LogEntry>,
    },
    /// For `Head`.
    Head(LogHead),
    /// For `Trim`: entries removed.
    Trimmed(u32),
    /// For `SetSession` (the replaced record) and `GetSession` (the record).
    Session(Option<SessionRecord>),
    /// For `RefreshSession` / `RemoveSession`: whether the record was (node, conn)'s.
    Owned(bool),
}

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// Redis is not reachable (or the connection broke during this request, so a commit's
    /// outcome is unknown: a retry with the same `clientMsgId` is safe). The node answers
    /// handshakes with 503 + Retry-After and senders with `error unavailable`.
    #[error("redis unavailable")]
    Unavailable,
    /// The user id is not a valid user id (it would break the key layout).
    #[error("invalid user id")]
    BadUser,
    /// The request exceeds a store bound (payload size, ack ids).
    #[error("request exceeds the store limit `{0}`")]
    TooLarge(&'static str),
    /// The request is malformed (a caller bug, e.g. an empty node id).
    #[error("bad store request: {0}")]
    BadRequest(&'static str),
    /// Redis answered with an error (a script or data-type problem; counted as an error).
    #[error("redis error: {0}")]
    Redis(String),
    /// Redis answered something the store did not expect (a store bug or a foreign key).
    #[error("unexpected reply from redis: {0}")]
    BadReply(&'static str),
}

/// A finished request, delivered to the shard that submitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The tag the shard gave at submit time (its correlation id).
    pub tag: u64,
    /// The answer.
    pub result: Result<Reply, StoreError>,
}

/// `try_submit` refused the request: the shard's outstanding-request bound is reached. The
/// request is handed back so the caller applies (and counts) its drop policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("store queue full")]
pub struct Full(pub Request);

/// Counters of one shard's handle (plain numbers, read on the shard).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandleCounters {
    /// Requests accepted by `try_submit`.
    pub submitted: u64,
    /// Completions received by the shard.
    pub completed: u64,
    /// Requests refused with `Full`.
    pub queue_full: u64,
    /// Completions that carried an error (any [`StoreError`]).
    pub errors: u64,
    /// Of those, `Unavailable`.
    pub unavailable: u64,
}

impl HandleCounters {
    /// Adds `other` into `self` (aggregation across shards).
    pub fn merge(&mut self, other: &HandleCounters) {
        self.submitted += other.submitted;
        self.completed += other.completed;
        self.queue_full += other.queue_full;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
    }
}

/// Counters of the bridge threads (summed over all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounters {
    /// Round trips (pipelines) written.
    pub batches: u64,
    /// Commands executed (sum of batch sizes).
    pub commands: u64,
    /// Commands answered with a Redis error (or an unexpected reply).
    pub errors: u64,
    /// Requests failed with `Unavailable` (Redis down or the connection broke).
    pub unavailable: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Failed connect attempts.
    pub connect_failures: u64,
    /// Times the scripts were loaded again after `NOSCRIPT`.
    pub script_reloads: u64,
}
