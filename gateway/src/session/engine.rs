//! [`SessionCore`]: the per-shard state machine (see the module docs for the contract).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::limits::{LimitsError, SessionLimits};
use super::types::{
    message_cost, Attach, CloseReason, Commit, ConnId, Counters, Event, Gauges, Message, MsgIdGen,
    Outbound, Placed, Resume, SessionError,
};
use super::user::{ConnState, DedupEntry, List, LogEntry, UserState, NIL};

/// Why a log entry leaves the log (for counting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trim {
    /// The client acked it: not a drop.
    Acked,
    /// The log was over `buffer_max` / `log_max_bytes`.
    LogFull,
    /// The offline byte cap.
    Evicted,
    /// The TTL.
    Expired,
    /// A cache entry dropped because the store has it (not a drop).
    Cached,
}

/// Head/tail of an intrusive doubly linked list through [`UserState::prev`]/`next`.
#[derive(Debug, Clone, Copy)]
struct ListHead {
    head: u32,
    tail: u32,
}

impl ListHead {
    const EMPTY: ListHead = ListHead {
        head: NIL,
        tail: NIL,
    };
}

/// The session state of the users whose home is one shard. Single-threaded, no I/O, no clock:
/// every time is a `now_ms` argument (unix milliseconds, expected non-decreasing).
#[derive(Debug)]
pub struct SessionCore {
    limits: SessionLimits,
    ids: MsgIdGen,
    /// User records; a `None` slot is on `free`.
    slots: Vec<Option<UserState>>,
    free: Vec<u32>,
    /// foldhash: fast, and seeded per process so user ids cannot be chosen to collide.
    by_user: HashMap<Rc<str>, u32, foldhash::fast::RandomState>,
    /// Connection ids are the runtime's own numbers: a multiply is hash enough.
    by_conn: HashMap<ConnId, u32, BuildHasherDefault<ConnIdHasher>>,
    offline_log: ListHead,
    idle: ListHead,
    offline_bytes: usize,
    log_entries: u64,
    log_bytes: usize,
    /// Highest head of any dropped record: a re-created record starts above it, so a user's
    /// offsets never go backwards even when its record was forgotten.
    offset_floor: u64,
    /// At most one `Writable` and one `Close` per connection are out at a time (flags on
    /// [`ConnState`]), so this is bounded by twice the connection count.
    events: VecDeque<Event>,
    counters: Counters,
    /// Next slot `expire` looks at (round robin under a budget).
    expire_cursor: usize,
}

/// Hasher for [`ConnId`] keys (runtime-chosen, never peer-chosen): one multiply by an odd
/// constant, which is a bijection, so distinct ids never collide in the full 64 bits.
#[derive(Debug, Default, Clone, Copy)]
struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Hash of a dedup key, so most non-matching entries are skipped with one integer compare.
fn dedup_hash(from: &str, client_msg_id: &str) -> u64 {
    // Fixed seed: deterministic, and the full strings are compared on a match, so a crafted
    // collision can only cost a string compare, never a wrong answer.
    foldhash::fast::FixedState::default().hash_one((from, client_msg_id))
}

impl SessionCore {
    /// A core for shard `shard_id` (top 16 bits of its message ids), counter starting at 0.
    pub fn new(shard_id: u16, limits: SessionLimits) -> Result<Self, LimitsError> {
        Self::with_msg_ids(MsgIdGen::new(shard_id, 0), limits)
    }

    /// A core with the runtime's own message-id generator.
    pub fn with_msg_ids(ids: MsgIdGen, limits: SessionLimits) -> Result<Self, LimitsError> {
        limits.validate()?;
        Ok(Self {
            limits,
            ids,
            slots: Vec::new(),
            free: Vec::new(),
            by_user: HashMap::default(),
            by_conn: HashMap::default(),
            offline_log: ListHead::EMPTY,
            idle: ListHead::EMPTY,
            offline_bytes: 0,
            log_entries: 0,
            log_bytes: 0,
            offset_floor: 0,
            events: VecDeque::new(),
            counters: Counters::default(),
            expire_cursor: 0,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// Counters since creation.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Current sizes.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            users: self.by_user.len() as u64,
            connections: self.by_conn.len() as u64,
            log_entries: self.log_entries,
            log_bytes: self.log_bytes as u64,
            offline_log_bytes: self.offline_bytes as u64,
        }
    }

    /// Last offset assigned to `user` (`None`: no record on this shard).
    pub fn head_offset(&self, user: &str) -> Option<u64> {
        self.by_user.get(user).map(|&s| self.user(s).head)
    }

    /// Cumulative acked offset of `user`.
    pub fn acked_offset(&self, user: &str) -> Option<u64> {
        self.by_user.get(user).map(|&s| self.user(s).acked)
    }

    /// The user a connection is attached for.
    pub fn user_of(&self, conn: ConnId) -> Option<&Rc<str>> {
        self.by_conn.get(&conn).map(|&s| &self.user(s).id)
    }

    /// The connection attached for `user`.
    pub fn conn_of(&self, user: &str) -> Option<ConnId> {
        let slot = *self.by_user.get(user)?;
        self.user(slot).conn.as_ref().map(|c| c.id)
    }

    // ----- commit ---------------------------------------------------------------------------

    /// Commits a message for `to` (a user whose home is this shard): appends it to their log,
    /// which assigns the offset, and makes it visible to their connection if attached.
    ///
    /// A non-empty `client_msg_id` already committed from `from` to `to` (within the dedup
    /// memory: `dedup_max` pairs and the TTL) returns `Duplicate` with the first answer and
    /// appends nothing. An empty `client_msg_id` is never deduplicated.
    pub fn commit(
        &mut self,
        to: &str,
        from: Rc<str>,
        client_msg_id: &str,
        payload: Box<[u8]>,
        now_ms: u64,
    ) -> Result<Commit, SessionError> {
        let cost = message_cost(&from, &payload);
        let max = self.limits.max_message_cost();
        if cost > max {
            return Err(SessionError::TooLarge { cost, max });
        }
        let slot = self.get_or_create(to, now_ms)?;
        self.expire_user(slot, now_ms);

        let hash = dedup_hash(&from, client_msg_id);
        if !client_msg_id.is_empty() {
            let u = self.user(slot);
            if let Some(d) =
                u.dedup.iter().rev().find(|d| {
                    d.hash == hash && *d.from == *from && *d.client_msg_id == *client_msg_id
                })
            {
                let (msg_id, offset) = (d.msg_id, d.offset);
                self.counters.duplicates += 1;
                return Ok(Commit::Duplicate { msg_id, offset });
            }
        }

        let msg_id = self.ids.next_id();
        let dedup = (!client_msg_id.is_empty()).then(|| (hash, Box::<str>::from(client_msg_id)));
        let offset = self.append(slot, msg_id, None, from, payload, (now_ms, now_ms), dedup);
        self.counters.commits += 1;
        Ok(Commit::Committed { msg_id, offset })
    }

    /// Appends a message at `head + 1` (or at `at`, which must be `head + 1`) with room made
    /// in the log and offline budgets, makes it visible to the connection (drop-oldest on a
    /// full window) and remembers the dedup pair. Returns the offset.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        slot: u32,
        msg_id: u64,
        at: Option<u64>,
        from: Rc<str>,
        payload: Box<[u8]>,
        (ts_ms, now_ms): (u64, u64),
        dedup: Option<(u64, Box<str>)>,
    ) -> u64 {
        let cost = message_cost(&from, &payload);
        // Room in the user's own log first, then in the shard's offline budget.
        loop {
            let u = self.user(slot);
            if u.log.len() < self.limits.buffer_max
                && u.log_bytes + cost <= self.limits.log_max_bytes
            {
                break;
            }
            if !self.pop_front(slot, Trim::LogFull, now_ms) {
                break;
            }
        }
        let offline = self.user(slot).conn.is_none();
        if offline {
            self.make_offline_room(slot, cost, now_ms);
        }

        let limits = &self.limits;
        let u = self.slots[slot as usize]
            .as_mut()
            .expect("slot from get_or_create is live");
        if let Some(at) = at {
            u.head = at - 1;
        }
        u.head += 1;
        let offset = u.head;
        u.log.push_back(LogEntry {
            msg: Rc::new(Message {
                msg_id,
                offset,
                from: from.clone(),
                payload,
                ts_ms,
            }),
            acked: false,
        });
        u.log_bytes += cost;
        u.last_touch_ms = now_ms;
        self.log_entries += 1;
        self.log_bytes += cost;
        if offline {
            self.offline_bytes += cost;
        }
        if let Some((hash, client_msg_id)) = dedup {
            if u.dedup.len() >= limits.dedup_max {
                u.dedup.pop_front();
            }
            u.dedup.push_back(DedupEntry {
                hash,
                from,
                client_msg_id,
                msg_id,
                offset,
                at_ms: now_ms,
            });
        }

        if let Some(c) = u.conn.as_mut().filter(|c| !c.closing) {
            c.live_bytes += cost;
            let mut dropped = false;
            loop {
                let floor = c.window_floor();
                let count = u.head.saturating_sub(floor);
                if count == 0
                    || (count as usize <= limits.per_conn_buffer_size
                        && c.live_bytes <= limits.per_conn_buffer_bytes)
                {
                    break;
                }
                let oldest = floor + 1;
                let first = u.log.front().map_or(u.head + 1, |e| e.msg.offset);
                let Some(e) = u.log.get((oldest - first) as usize) else {
                    break;
                };
                c.live_bytes -= e.msg.cost();
                c.extend_skip(oldest);
                c.consecutive_drops = c.consecutive_drops.saturating_add(1);
                c.full_since_ms.get_or_insert(now_ms);
                self.counters.drops_buffer_full += 1;
                dropped = true;
            }
            if dropped && Self::is_slow(limits, c, now_ms) {
                Self::mark_slow(c, &mut self.events, &mut self.counters);
            } else if !c.closing && !c.notified {
                c.notified = true;
                self.events.push_back(Event::Writable(c.id));
            }
        } else if offline {
            // Most recently touched offline log goes to the tail (evicted last).
            self.unlink(slot);
            self.link_tail(slot, List::OfflineLog);
        }
        offset
    }

    // ----- store cache (REDIS_URL) ----------------------------------------------------------

    /// Next message id of this shard (the store's commit takes the id from the runtime).
    pub fn next_msg_id(&mut self) -> u64 {
        self.ids.next_id()
    }

    /// With a shared store the store's log is the commit point and this log caches its tail:
    /// places `msg`, which the store committed at `msg.offset` for `to`, and makes it visible
    /// to `to`'s connection like a commit would.
    ///
    /// - `offset <= head`: already here (or older than the cache) → [`Placed::Stale`].
    /// - `offset == head + 1` → [`Placed::Appended`].
    /// - `offset > head + 1`: the offsets between were committed elsewhere (another node).
    ///   The cached entries are dropped (not counted: the store keeps them), the head jumps,
    ///   and an attached connection is told the missing range as a `gap` (a resume replays it
    ///   from the store) → [`Placed::AfterHole`].
    pub fn insert_at(
        &mut self,
        to: &str,
        msg: Message,
        now_ms: u64,
    ) -> Result<Placed, SessionError> {
        let cost = msg.cost();
        let max = self.limits.max_message_cost();
        if cost > max {
            return Err(SessionError::TooLarge { cost, max });
        }
        if msg.offset == 0 {
            return Ok(Placed::Stale);
        }
        let slot = self.get_or_create(to, now_ms)?;
        self.expire_user(slot, now_ms);
        let head = self.user(slot).head;
        if msg.offset <= head {
            return Ok(Placed::Stale);
        }
        let placed = if msg.offset == head + 1 {
            Placed::Appended
        } else {
            while self.pop_one(slot, Trim::Cached) {}
            let hole = (head + 1, msg.offset - 1);
            let u = self.user_mut(slot);
            u.head = msg.offset - 1;
            if let Some(c) = u.conn.as_mut().filter(|c| !c.closing) {
                let from = (c.cursor + 1).max(hole.0);
                if c.skip_to == 0 {
                    c.skip_from = from;
                }
                c.skip_to = hole.1;
            }
            Placed::AfterHole {
                from: hole.0,
                to: hole.1,
            }
        };
        let offset = self.append(
            slot,
            msg.msg_id,
            Some(msg.offset),
            msg.from,
            msg.payload,
            (msg.ts_ms, now_ms),
            None,
        );
        debug_assert_eq!(offset, msg.offset);
        self.counters.commits += 1;
        Ok(placed)
    }

    /// Makes `user`'s cached log agree with the store before a connection attaches: drops the
    /// cached entries (uncounted: the store has them; the runtime replays from the store) and
    /// sets the head and acked offsets to the store's. Refused while a connection is attached
    /// (`ConnInUse`): the runtime syncs right before `attach`, which replaces it.
    pub fn sync_head(
        &mut self,
        user: &str,
        head: u64,
        acked: u64,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        let slot = self.get_or_create(user, now_ms)?;
        if let Some(c) = self.user(slot).conn.as_ref() {
            return Err(SessionError::ConnInUse(c.id));
        }
        while self.pop_one(slot, Trim::Cached) {}
        let u = self.user_mut(slot);
        u.head = head;
        u.acked = acked.min(head);
        u.last_touch_ms = now_ms;
        Ok(())
    }

    // ----- attach / detach ------------------------------------------------------------------

    /// Attaches connection `conn` for `user`, replacing any previous connection.
    ///
    /// `last_offset` is the client's resume point (`lastOffset`, the highest offset it has);
    /// it also acks up to there. `None` is a fresh connect: every unacked entry is replayed
    /// (offline delivery). The replay is read with [`poll_transmit`](Self::poll_transmit);
    /// a `Writable` event is emitted when there is one.
    pub fn attach(
        &mut self,
        user: &str,
        conn: ConnId,
        last_offset: Option<u64>,
        now_ms: u64,
    ) -> Result<Attach, SessionError> {
        if self.by_conn.contains_key(&conn) {
            return Err(SessionError::ConnInUse(conn));
        }
        let slot = self.get_or_create(user, now_ms)?;
        self.expire_user(slot, now_ms);

        let replaced = match self.user_mut(slot).conn.take() {
            Some(old) => {
                self.by_conn.remove(&old.id);
                self.counters.replaced += 1;
                Some(old.id)
            }
            None => {
                self.offline_bytes -= self.user(slot).log_bytes;
                self.unlink(slot);
                None
            }
        };

        let u = self.user(slot);
        let (head, prior_acked) = (u.head, u.acked);
        let gone_up_to = u.first_offset() - 1;
        let (resume, asked_from) = match last_offset {
            None => (Resume::Fresh, prior_acked),
            Some(n) if n > head => (Resume::Ahead, prior_acked),
            Some(n) => (Resume::Complete, n.max(prior_acked)),
        };
        let resume_gap = (gone_up_to > asked_from).then_some((asked_from + 1, gone_up_to));
        let resume = match (resume, resume_gap) {
            (Resume::Complete, Some(_)) => Resume::Partial,
            (r, _) => r,
        };
        match resume {
            Resume::Complete => self.counters.resumes_ok += 1,
            Resume::Partial | Resume::Ahead => self.counters.resumes_failed += 1,
            Resume::Fresh => {}
        }
        if let (Some(n), Resume::Complete | Resume::Partial) = (last_offset, resume) {
            self.ack_slot(slot, n, now_ms);
        }

        let u = self.slots[slot as usize]
            .as_mut()
            .expect("slot from get_or_create is live");
        let cursor = u.acked;
        let replay = u
            .log
            .iter()
            .filter(|e| !e.acked && e.msg.offset > cursor)
            .count() as u64;
        let mut c = ConnState::new(conn, cursor, head);
        if head > cursor {
            c.notified = true;
            self.events.push_back(Event::Writable(conn));
        }
        u.conn = Some(c);
        u.last_touch_ms = now_ms;
        let acked_offset = u.acked;
        self.by_conn.insert(conn, slot);
        Ok(Attach {
            replaced,
            head_offset: head,
            acked_offset,
            replay,
            resume,
            resume_gap,
        })
    }

    /// Detaches a connection (closed, replaced already handled by `attach`). Its user becomes
    /// offline: the log stays for resume, counted in the offline budget. Returns the user.
    pub fn detach(&mut self, conn: ConnId, now_ms: u64) -> Option<Rc<str>> {
        let slot = self.by_conn.remove(&conn)?;
        let u = self.user_mut(slot);
        u.conn = None;
        u.last_touch_ms = now_ms;
        let (bytes, empty, id) = (u.log_bytes, u.log.is_empty(), u.id.clone());
        self.offline_bytes += bytes;
        self.link_tail(slot, if empty { List::Idle } else { List::OfflineLog });
        self.make_offline_room(slot, 0, now_ms);
        Some(id)
    }

    // ----- acks -----------------------------------------------------------------------------

    /// Cumulative ack: the client has every offset up to `offset` (clamped to the head).
    /// Returns the user's acked offset, `None` if the user has no record here.
    pub fn ack_up_to(&mut self, user: &str, offset: u64, now_ms: u64) -> Option<u64> {
        let slot = *self.by_user.get(user)?;
        self.ack_slot(slot, offset, now_ms);
        Some(self.user(slot).acked)
    }

    /// Acks by message id. Returns how many held, unacked entries this acked.
    pub fn ack_ids(&mut self, user: &str, msg_ids: &[u64], now_ms: u64) -> usize {
        let Some(&slot) = self.by_user.get(user) else {
            return 0;
        };
        let u = self.user_mut(slot);
        let mut n = 0;
        for id in msg_ids {
            // Ids come from one increasing counter in commit order, so the log is sorted by id.
            if let Ok(i) = u.log.binary_search_by_key(id, |e| e.msg.msg_id) {
                if !u.log[i].acked {
                    u.log[i].acked = true;
                    n += 1;
                }
            }
        }
        self.trim_acked_prefix(slot, now_ms);
        n
    }

    // ----- transmit -------------------------------------------------------------------------

    /// Moves the next items for `conn` into `out`, in order, until their cost reaches
    /// `max_bytes` (at least one item when anything is pending). Returns how many were added.
    ///
    /// Items handed out count as delivered. When this drains the connection, the next commit
    /// for it emits a new `Writable`; otherwise call again (e.g. after the write completes).
    pub fn poll_transmit(
        &mut self,
        conn: ConnId,
        max_bytes: usize,
        out: &mut Vec<Outbound>,
    ) -> usize {
        let Some(&slot) = self.by_conn.get(&conn) else {
            return 0;
        };
        let u = self.slots[slot as usize]
            .as_mut()
            .expect("by_conn names a live slot");
        let Some(c) = u.conn.as_mut() else {
            return 0;
        };
        if c.closing {
            return 0;
        }
        let (head, acked) = (u.head, u.acked);
        let first = u.log.front().map_or(head + 1, |e| e.msg.offset);
        let mut added = 0;
        let mut bytes = 0usize;
        while c.cursor < head && (added == 0 || bytes < max_bytes) {
            let next = c.cursor + 1;
            // Offsets that are gone from the log, or dropped from this connection's window.
            let mut gap_end = c.cursor;
            if next < first {
                gap_end = first - 1;
            }
            if c.skip_to != 0 && c.skip_from <= gap_end + 1 {
                gap_end = gap_end.max(c.skip_to);
                c.skip_from = 0;
                c.skip_to = 0;
            }
            if gap_end > c.cursor {
                // What the client acked is not missing, whatever became of it.
                let from = next.max(acked + 1);
                if from <= gap_end {
                    out.push(Outbound::Gap { from, to: gap_end });
                    self.counters.gaps += 1;
                    added += 1;
                }
                c.cursor = gap_end;
                continue;
            }
            let e = &u.log[(next - first) as usize];
            let cost = e.msg.cost();
            if next > c.replay_end {
                c.live_bytes -= cost;
            }
            c.cursor = next;
            if !e.acked {
                out.push(Outbound::Deliver(e.msg.clone()));
                self.counters.deliveries += 1;
                added += 1;
                bytes += cost;
            }
        }
        if c.cursor >= head {
            c.notified = false;
        }
        added
    }

    /// Whether `poll_transmit` would hand out something for `conn` now.
    pub fn has_pending(&self, conn: ConnId) -> bool {
        let Some(&slot) = self.by_conn.get(&conn) else {
            return false;
        };
        let u = self.user(slot);
        u.conn
            .as_ref()
            .is_some_and(|c| !c.closing && c.cursor < u.head)
    }

    /// The runtime finished a write for `conn`: the consumer is making progress, so the
    /// slow-consumer clocks restart. Returns whether more is pending (call `poll_transmit`).
    pub fn handle_written(&mut self, conn: ConnId, _now_ms: u64) -> bool {
        let Some(&slot) = self.by_conn.get(&conn) else {
            return false;
        };
        let u = self.user_mut(slot);
        let head = u.head;
        match u.conn.as_mut() {
            Some(c) => {
                c.consecutive_drops = 0;
                c.full_since_ms = None;
                !c.closing && c.cursor < head
            }
            None => false,
        }
    }

    /// Next asynchronous output, quinn-style; call until `None` after each batch of input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- time -----------------------------------------------------------------------------

    /// Periodic housekeeping: drops expired log and dedup entries, drops idle records whose
    /// TTL passed, and closes connections that stayed slow past `slow_consumer_timeout_ms`.
    /// Looks at up to `budget` user slots (round robin) so one call stays short; call it
    /// often enough that `slots / budget` calls fit in the TTL. Returns slots looked at.
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        // Idle records in last-touch order: drop from the head while their TTL has passed.
        while self.idle.head != NIL {
            let slot = self.idle.head;
            let u = self.user(slot);
            if now_ms.saturating_sub(u.last_touch_ms) < self.limits.resume_ttl_ms {
                break;
            }
            self.drop_record(slot);
        }
        let n = budget.min(self.slots.len());
        for _ in 0..n {
            if self.expire_cursor >= self.slots.len() {
                self.expire_cursor = 0;
            }
            let slot = self.expire_cursor as u32;
            self.expire_cursor += 1;
            if self.slots[slot as usize].is_none() {
                continue;
            }
            self.expire_user(slot, now_ms);
            let limits = &self.limits;
            let u = self.slots[slot as usize].as_mut().expect("checked above");
            if let Some(c) = u.conn.as_mut() {
                if !c.closing && Self::is_slow(limits, c, now_ms) {
                    Self::mark_slow(c, &mut self.events, &mut self.counters);
                }
            } else if u.log.is_empty()
                && now_ms.saturating_sub(u.last_touch_ms) >= limits.resume_ttl_ms
            {
                self.drop_record(slot);
            }
        }
        n
    }

    // ----- internals ------------------------------------------------------------------------

    fn user(&self, slot: u32) -> &UserState {
        self.slots[slot as usize]
            .as_ref()
            .expect("slot indices held by the core are live")
    }

    fn user_mut(&mut self, slot: u32) -> &mut UserState {
        self.slots[slot as usize]
            .as_mut()
            .expect("slot indices held by the core are live")
    }

    fn is_slow(limits: &SessionLimits, c: &ConnState, now_ms: u64) -> bool {
        c.consecutive_drops > limits.slow_consumer_max_drops
            || c.full_since_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= limits.slow_consumer_timeout_ms)
    }

    fn mark_slow(c: &mut ConnState, events: &mut VecDeque<Event>, counters: &mut Counters) {
        c.closing = true;
        c.live_bytes = 0;
        counters.slow_consumers += 1;
        events.push_back(Event::Close {
            conn: c.id,
            reason: CloseReason::SlowConsumer,
        });
    }

    fn get_or_create(&mut self, user: &str, now_ms: u64) -> Result<u32, SessionError> {
        if let Some(&slot) = self.by_user.get(user) {
            return Ok(slot);
        }
        if self.by_user.len() >= self.limits.max_users {
            if self.idle.head == NIL {
                return Err(SessionError::TooManyUsers);
            }
            self.drop_record(self.idle.head);
        }
        let id: Rc<str> = Rc::from(user);
        let state = UserState::new(id.clone(), self.offset_floor, now_ms);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(state);
                s
            }
            None => {
                self.slots.push(Some(state));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_user.insert(id, slot);
        self.link_tail(slot, List::Idle);
        Ok(slot)
    }

    fn drop_record(&mut self, slot: u32) {
        self.unlink(slot);
        if let Some(u) = self.slots[slot as usize].take() {
            debug_assert!(u.conn.is_none() && u.log.is_empty());
            self.offset_floor = self.offset_floor.max(u.head);
            self.by_user.remove(&u.id);
            self.free.push(slot);
            self.counters.users_dropped += 1;
        }
    }

    /// Removes the oldest log entry of `slot`, then any entries acked by id that this brings
    /// to the front. Returns false when the log was empty.
    fn pop_front(&mut self, slot: u32, why: Trim, now_ms: u64) -> bool {
        if !self.pop_one(slot, why) {
            return false;
        }
        self.trim_acked_prefix(slot, now_ms);
        true
    }

    /// Removes the oldest log entry of `slot`, keeping every budget and the connection's
    /// window consistent. Returns false when the log was empty.
    fn pop_one(&mut self, slot: u32, why: Trim) -> bool {
        let u = self.slots[slot as usize]
            .as_mut()
            .expect("slot indices held by the core are live");
        let Some(e) = u.log.pop_front() else {
            return false;
        };
        let cost = e.msg.cost();
        u.log_bytes -= cost;
        self.log_entries -= 1;
        self.log_bytes -= cost;
        if let Some(c) = u.conn.as_mut() {
            let offset = e.msg.offset;
            if !c.closing && offset > c.window_floor() {
                // An unsent live entry: the connection will tell the client the gap.
                c.live_bytes -= cost;
                c.extend_skip(offset);
            }
        }
        if !e.acked {
            match why {
                Trim::Acked | Trim::Cached => {}
                Trim::LogFull => self.counters.drops_log_full += 1,
                Trim::Evicted => self.counters.drops_evicted += 1,
                Trim::Expired => self.counters.drops_expired += 1,
            }
        }
        let now_empty = u.log.is_empty();
        if now_empty {
            // Release the ring buffer: an idle user holds no log allocation.
            u.log = VecDeque::new();
        }
        // Counted in the offline budget exactly while linked in an offline list (an attach
        // unlinks before its implicit ack trims).
        if u.list != List::Online {
            self.offline_bytes -= cost;
            if now_empty {
                self.unlink(slot);
                self.link_tail(slot, List::Idle);
            }
        }
        true
    }

    /// Applies a cumulative ack and trims what it covers.
    fn ack_slot(&mut self, slot: u32, offset: u64, now_ms: u64) {
        let u = self.user_mut(slot);
        let up_to = offset.min(u.head);
        if up_to > u.acked {
            u.acked = up_to;
        }
        self.trim_acked_prefix(slot, now_ms);
    }

    /// Trims entries at or below the acked offset, and entries acked by id that reached the
    /// front. Those advance the cumulative acked offset only when contiguous with it: an
    /// unacked entry that expired before them is still missing for the client.
    fn trim_acked_prefix(&mut self, slot: u32, _now_ms: u64) {
        loop {
            let u = self.user_mut(slot);
            let Some(front) = u.log.front_mut() else {
                break;
            };
            if front.msg.offset <= u.acked {
                front.acked = true;
            } else if front.acked {
                if front.msg.offset == u.acked + 1 {
                    u.acked = front.msg.offset;
                }
            } else {
                break;
            }
            self.pop_one(slot, Trim::Acked);
        }
    }

    /// Drops TTL-expired log and dedup entries of one user.
    fn expire_user(&mut self, slot: u32, now_ms: u64) {
        let ttl = self.limits.resume_ttl_ms;
        loop {
            let u = self.user(slot);
            match u.log.front() {
                Some(e) if now_ms.saturating_sub(e.msg.ts_ms) >= ttl => {
                    self.pop_front(slot, Trim::Expired, now_ms);
                }
                _ => break,
            }
        }
        let u = self.user_mut(slot);
        while u
            .dedup
            .front()
            .is_some_and(|d| now_ms.saturating_sub(d.at_ms) >= ttl)
        {
            u.dedup.pop_front();
        }
        if u.dedup.is_empty() && u.dedup.capacity() > 0 {
            u.dedup = VecDeque::new();
        }
    }

    /// Evicts offline logs, least recently touched first, until `extra` more bytes fit in the
    /// offline budget. `slot` (the user being written) goes last, and then only entry by entry.
    fn make_offline_room(&mut self, slot: u32, extra: usize, now_ms: u64) {
        while self.offline_bytes + extra > self.limits.max_offline_log_bytes {
            let mut victim = self.offline_log.head;
            if victim == slot {
                victim = self.user(slot).next;
            }
            if victim == NIL {
                if !self.pop_front(slot, Trim::Evicted, now_ms) {
                    break;
                }
                continue;
            }
            while self.pop_front(victim, Trim::Evicted, now_ms) {}
            self.counters.logs_evicted += 1;
        }
    }

    fn list_mut(&mut self, list: List) -> Option<&mut ListHead> {
        match list {
            List::Online => None,
            List::OfflineLog => Some(&mut self.offline_log),
            List::Idle => Some(&mut self.idle),
        }
    }

    fn unlink(&mut self, slot: u32) {
        let u = self.user_mut(slot);
        let (list, prev, next) = (u.list, u.prev, u.next);
        u.list = List::Online;
        u.prev = NIL;
        u.next = NIL;
        if list == List::Online {
            return;
        }
        if prev != NIL {
            self.user_mut(prev).next = next;
        }
        if next != NIL {
            self.user_mut(next).prev = prev;
        }
        let head = self.list_mut(list).expect("not Online");
        if head.head == slot {
            head.head = next;
        }
        if head.tail == slot {
            head.tail = prev;
        }
    }

    fn link_tail(&mut self, slot: u32, list: List) {
        debug_assert_eq!(self.user(slot).list, List::Online);
        let Some(head) = self.list_mut(list) else {
            return;
        };
        let old_tail = head.tail;
        head.tail = slot;
        if head.head == NIL {
            head.head = slot;
        }
        if old_tail != NIL {
            self.user_mut(old_tail).next = slot;
        }
        let u = self.user_mut(slot);
        u.list = list;
        u.prev = old_tail;
        u.next = NIL;
    }
}

#[cfg(test)]
impl SessionCore {
    /// Asserts every bound and bookkeeping invariant (tests only).
    pub(super) fn check_invariants(&self) {
        let l = &self.limits;
        let (mut entries, mut bytes, mut offline) = (0u64, 0usize, 0usize);
        let mut users = 0;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(u) = s else { continue };
            users += 1;
            assert_eq!(self.by_user.get(&u.id), Some(&(i as u32)));
            assert!(u.log.len() <= l.buffer_max, "log over buffer_max");
            assert!(u.log_bytes <= l.log_max_bytes, "log over log_max_bytes");
            assert!(u.dedup.len() <= l.dedup_max, "dedup over dedup_max");
            assert!(u.acked <= u.head);
            let sum: usize = u.log.iter().map(|e| e.msg.cost()).sum();
            assert_eq!(sum, u.log_bytes);
            for (k, e) in u.log.iter().enumerate() {
                assert_eq!(e.msg.offset, u.first_offset() + k as u64, "log contiguous");
                assert!(e.msg.offset > u.acked, "acked entries are trimmed");
            }
            if let Some(front) = u.log.front() {
                assert!(!front.acked, "acked prefix is trimmed");
            }
            assert!(u
                .log
                .iter()
                .zip(u.log.iter().skip(1))
                .all(|(a, b)| a.msg.msg_id < b.msg.msg_id));
            entries += u.log.len() as u64;
            bytes += u.log_bytes;
            match &u.conn {
                Some(c) => {
                    assert_eq!(u.list, List::Online);
                    assert_eq!(self.by_conn.get(&c.id), Some(&(i as u32)));
                    assert!(c.cursor <= u.head);
                    if !c.closing {
                        let floor = c.window_floor();
                        let count = u.head.saturating_sub(floor);
                        assert!(count as usize <= l.per_conn_buffer_size, "window count");
                        assert!(c.live_bytes <= l.per_conn_buffer_bytes, "window bytes");
                        let live: usize = u
                            .log
                            .iter()
                            .filter(|e| e.msg.offset > floor)
                            .map(|e| e.msg.cost())
                            .sum();
                        assert_eq!(live, c.live_bytes, "window bytes bookkeeping");
                        assert!(c.skip_to == 0 || c.skip_from <= c.skip_to);
                    }
                }
                None => {
                    offline += u.log_bytes;
                    let want = if u.log.is_empty() {
                        List::Idle
                    } else {
                        List::OfflineLog
                    };
                    assert_eq!(u.list, want);
                }
            }
        }
        assert_eq!(users, self.by_user.len());
        assert!(users <= l.max_users);
        assert_eq!(entries, self.log_entries);
        assert_eq!(bytes, self.log_bytes);
        assert_eq!(offline, self.offline_bytes);
        assert!(offline <= l.max_offline_log_bytes, "offline budget");
        // Lists are well linked and hold exactly their members.
        for (list, head) in [
            (List::OfflineLog, self.offline_log),
            (List::Idle, self.idle),
        ] {
            let (mut at, mut prev, mut n) = (head.head, NIL, 0);
            while at != NIL {
                let u = self.user(at);
                assert_eq!(u.list, list);
                assert_eq!(u.prev, prev);
                prev = at;
                at = u.next;
                n += 1;
            }
            assert_eq!(head.tail, prev);
            let members = self
                .slots
                .iter()
                .flatten()
                .filter(|u| u.list == list)
                .count();
            assert_eq!(n, members);
        }
    }

    /// Heap held by a user's log and dedup buffers (tests only).
    pub(super) fn idle_heap_bytes(&self, user: &str) -> Option<usize> {
        let u = self.user(*self.by_user.get(user)?);
        Some(
            u.log.capacity() * std::mem::size_of::<LogEntry>()
                + u.dedup.capacity() * std::mem::size_of::<DedupEntry>(),
        )
    }

    /// Size of the per-user record (tests only).
    pub(super) fn user_state_size() -> (usize, usize) {
        (
            std::mem::size_of::<Option<UserState>>(),
            std::mem::size_of::<ConnState>(),
        )
    }
}
