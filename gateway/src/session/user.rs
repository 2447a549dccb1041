//! Per-user and per-connection state (private to the session core).
//!
//! Memory is the design constraint here: an offline user with nothing pending is one
//! [`UserState`] (no heap besides its id), a connection is a [`ConnState`] inline in its user
//! (no queue: the outbound window is a cursor into the user's resume log).

use std::collections::VecDeque;
use std::rc::Rc;

use super::types::{ConnId, Message};

/// "No slot" in the intrusive lists.
pub(super) const NIL: u32 = u32::MAX;

/// Which intrusive list of the core a user is linked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum List {
    /// Connected: in no list.
    Online,
    /// Offline with a non-empty log: ordered by last touch, evicted from the head.
    OfflineLog,
    /// Offline with an empty log: the record is dropped when its TTL passes or room is needed.
    Idle,
}

/// One resume-log slot.
#[derive(Debug)]
pub(super) struct LogEntry {
    pub msg: Rc<Message>,
    /// Acked by msgId while something older is still unacked (trimmed once it reaches the front).
    pub acked: bool,
}

/// One remembered `(from, clientMsgId)` → first commit's answer.
#[derive(Debug)]
pub(super) struct DedupEntry {
    /// Cheap first comparison before the string compares.
    pub hash: u64,
    pub from: Rc<str>,
    pub client_msg_id: Box<str>,
    pub msg_id: u64,
    pub offset: u64,
    /// Commit time: entries older than the TTL are forgotten.
    pub at_ms: u64,
}

/// The attached connection of a user.
///
/// Its outbound "buffer" is the window `(floor, head]` of the user's log: nothing is copied
/// or queued per connection. Offsets `(cursor, replay_end]` are the replay (not bounded by the
/// window, the log bounds them); later offsets are live and bounded by count and bytes with
/// drop-oldest, dropped ones being the range `skip`.
#[derive(Debug)]
pub(super) struct ConnState {
    pub id: ConnId,
    /// Highest offset handed to the runtime (or jumped over as a gap).
    pub cursor: u64,
    /// The user's head at attach: offsets up to it are replay.
    pub replay_end: u64,
    /// Inclusive live range dropped from this connection and not yet told (0 = none; offsets
    /// start at 1).
    pub skip_from: u64,
    pub skip_to: u64,
    /// Bytes of live entries in the window.
    pub live_bytes: usize,
    /// Time of the first drop since the last completed write.
    pub full_since_ms: Option<u64>,
    /// Drops since the last completed write.
    pub consecutive_drops: u32,
    /// A `Writable` event is out and `poll_transmit` has not drained the connection since.
    pub notified: bool,
    /// A `Close` event is out: nothing more is sent.
    pub closing: bool,
}

impl ConnState {
    pub fn new(id: ConnId, cursor: u64, replay_end: u64) -> Self {
        Self {
            id,
            cursor,
            replay_end,
            skip_from: 0,
            skip_to: 0,
            live_bytes: 0,
            full_since_ms: None,
            consecutive_drops: 0,
            notified: false,
            closing: false,
        }
    }

    /// Offsets above this are in the live window.
    pub fn window_floor(&self) -> u64 {
        self.cursor.max(self.replay_end).max(self.skip_to)
    }

    /// Records `offset` (the oldest of the window) as dropped from this connection.
    pub fn extend_skip(&mut self, offset: u64) {
        if self.skip_to == 0 {
            self.skip_from = offset;
        }
        self.skip_to = offset;
    }
}

/// Everything the shard knows about one user it is home for.
#[derive(Debug)]
pub(super) struct UserState {
    pub id: Rc<str>,
    /// Last offset assigned (0 = none yet).
    pub head: u64,
    /// Cumulative acked offset: the client has everything up to here.
    pub acked: u64,
    /// Unacked messages, contiguous offsets `(head - len, head]`.
    pub log: VecDeque<LogEntry>,
    pub log_bytes: usize,
    /// Recent `(from, clientMsgId)` commits, oldest first.
    pub dedup: VecDeque<DedupEntry>,
    /// Last commit, attach or detach: orders offline logs for eviction.
    pub last_touch_ms: u64,
    pub prev: u32,
    pub next: u32,
    pub list: List,
    pub conn: Option<ConnState>,
}

impl UserState {
    pub fn new(id: Rc<str>, head: u64, now_ms: u64) -> Self {
        Self {
            id,
            head,
            acked: head,
            log: VecDeque::new(),
            log_bytes: 0,
            dedup: VecDeque::new(),
            last_touch_ms: now_ms,
            prev: NIL,
            next: NIL,
            list: List::Online,
            conn: None,
        }
    }

    /// Lowest offset still in the log (`head + 1` when empty): everything below is gone.
    pub fn first_offset(&self) -> u64 {
        self.log.front().map_or(self.head + 1, |e| e.msg.offset)
    }
}
