//! The store-backed data path (`REDIS_URL` set): the recipient's resume log in Redis is the
//! commit point, and each shard's session core caches its users' log tails for live delivery.
//!
//! # Who does what
//! - **Commit on the recipient's home shard.** A `message` still travels to `shard_of(to)`
//!   (locally or over the mesh, as without a store); that shard submits [`Request::Commit`].
//!   One shard's requests go to Redis in order on one lane and complete in order, so the
//!   cache sees this node's commits for a user in offset order. On the completion the message
//!   is placed in the cache at the Redis-assigned offset ([`SessionCore::insert_at`](crate::session::SessionCore::insert_at), which
//!   delivers it live; only users connected here are cached) and the sender gets `sent {clientMsgId, msgId, offset}` (the Redis
//!   offset). A duplicate retry gets the first answer and appends nothing.
//! - **Attach.** The connection is registered but its task is held (no frame read or written)
//!   while `SetSession` and `Replay` (after `max(lastOffset, acked)`, paged while `more`)
//!   complete; then the cache is reset to the store's head ([`SessionCore::sync_head`](crate::session::SessionCore::sync_head)), the
//!   core attaches at that head, and the task starts with `welcome`, an optional `gap`
//!   (offsets Redis trimmed unacked) and the replayed messages. A resume may thus land on any
//!   node. `lastOffset` above the store's head closes 4004 (as without a store).
//! - **Acks** go to Redis (`AckUpTo` / `AckIds`) as well as to the cache.
//! - **Sessions**: `SetSession` at attach, `RefreshSession` every `SESSION_REFRESH` per
//!   connected user (a refused refresh reads the record: another node's/connection's record
//!   → close 4002; no record, e.g. Redis restarted empty → set it again), `RemoveSession` on
//!   disconnect (compare-and-delete).
//! - **Redis unavailable**: `/readyz` 503 and new `/ws` handshakes 503 + `Retry-After` (the
//!   bridge's health flag); commits complete `Unavailable` → `error unavailable` to the sender
//!   (a retry with the same `clientMsgId` is deduplicated by Redis if the first one did land);
//!   an attach whose replay fails closes 1013. Everything recovers by itself when the bridge
//!   reconnects.
//!
//! Messages committed for a user by *another* node reach this cache through the relay
//! (`relaypath.rs`, `KAFKA_BROKERS`). Whenever a message lands above the cached `head + 1`
//! (offsets committed elsewhere are missing here) the missing range is read from Redis first
//! ([`fill`]), so a connection gets every offset in order; without a relay that happens at
//! the next local commit for the user (or its next resume).
//!
//! Counters: `rtc_socket_drops_total{reason="store_unavailable"}` (a request failed because
//! Redis was unavailable or erred), `{reason="store_queue_full"}` (the shard's outstanding
//! bound refused a request), handshakes `result="store_unavailable"`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use rtc_protocol::close;
use rtc_protocol::frames::{ErrorCode, ServerFrame};

use super::msg::{CommitReq, Refused, SentReply, ShardMsg};
use super::{messaging, unix_ms, Shard};
use crate::conn::{ConnShared, ConnTask};
use crate::metrics::Counter;
use crate::session::Message;
use crate::store::{Completion, Reply, Request, SessionRecord, StoreError, StoreHandle};

/// Completions taken per wake-up of the dispatcher.
const COMPLETION_BATCH: usize = 256;
/// How often each connected user's session record is refreshed (well inside the store's
/// `SESSION_TTL_SEC`, 3 refreshes per TTL by default).
pub const SESSION_REFRESH: Duration = Duration::from_secs(crate::store::SESSION_TTL_SEC / 3);
/// Session refreshes use at most 1/this of the shard's store queue at a time.
const REFRESH_QUEUE_SHARE_DIV: u64 = 4;
/// Pause of a refresh pass while its share of the store queue is in use.
const REFRESH_BACKOFF: Duration = Duration::from_millis(5);
/// Pages of one attach's replay (each at most `REPLAY_BATCH_MAX` entries and about
/// `REPLAY_MAX_BYTES`), which bounds what an attach holds before its task starts. Enough for a
/// full default log (`BUFFER_MAX` 1,000 entries); past it the rest is told as a `gap` (the
/// client resumes from its last offset to get it).
const REPLAY_MAX_PAGES: u32 = 8;

/// What a submitted request was for.
enum Pending {
    /// A commit; the payload is kept to place the message in the cache.
    Commit(Box<CommitCtx>),
    /// An attach waiting for `SetSession` / `Replay`.
    Attach(Box<AttachCtx>),
    /// A refresh of `(user, conn)`'s record.
    Refresh { user: Rc<str>, conn: u64 },
    /// The record read after a refused refresh.
    Recheck { user: Rc<str>, conn: u64 },
    /// Offsets missing from a connected user's cache, read from Redis (`relaypath.rs`).
    Fill { user: Rc<str> },
    /// A connected user's Redis head, to compare with the cache (`relaypath.rs`).
    Reconcile { user: Rc<str> },
    /// Fire and forget (acks, removes, re-sets): errors are counted only.
    Ignore,
}

struct CommitCtx {
    req: CommitReq,
    msg_id: u64,
    ts_ms: u64,
}

struct AttachCtx {
    task: ConnTask,
    shared: Rc<ConnShared>,
    user: Rc<str>,
    last_offset: Option<u64>,
    /// Replay cursor (offset of the last entry read).
    after: u64,
    pages: u32,
    /// `message` frames of the replay so far (sent after `welcome`).
    frames: Vec<u8>,
    /// Gap told before the replay (offsets Redis trimmed unacked).
    gap: Option<(u64, u64)>,
}

/// A shard's link to the store: its handle and the requests in flight by tag.
pub struct StoreLink {
    handle: StoreHandle,
    pending: RefCell<HashMap<u64, Pending>>,
    next_tag: Cell<u64>,
}

impl std::fmt::Debug for StoreLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLink")
            .field("handle", &self.handle)
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

impl StoreLink {
    /// Wraps this shard's handle.
    pub fn new(handle: StoreHandle) -> Self {
        Self {
            handle,
            pending: RefCell::new(HashMap::new()),
            next_tag: Cell::new(1),
        }
    }

    /// Whether Redis is reachable (the bridge's flag).
    pub fn healthy(&self) -> bool {
        self.handle.healthy()
    }

    fn submit(&self, shard: &Shard, req: Request, p: Pending) -> Result<(), (Request, Pending)> {
        let tag = self.next_tag.get();
        match self.handle.try_submit(tag, req) {
            Ok(()) => {
                self.next_tag.set(tag + 1);
                self.pending.borrow_mut().insert(tag, p);
                Ok(())
            }
            Err(full) => {
                shard.metrics.inc(Counter::DropStoreQueueFull);
                Err((full.0, p))
            }
        }
    }
}

/// The shard's completion dispatcher: one task per shard (the lane keeps one waker).
pub async fn run(shard: Rc<Shard>) {
    let Some(link) = shard.store.clone() else {
        return;
    };
    let mut batch: Vec<Completion> = Vec::with_capacity(COMPLETION_BATCH);
    loop {
        link.handle.recv_batch(&mut batch, COMPLETION_BATCH).await;
        for c in batch.drain(..) {
            let p = link.pending.borrow_mut().remove(&c.tag);
            if let Err(e) = &c.result {
                if matches!(e, StoreError::Unavailable) {
                    shard.metrics.inc(Counter::DropStoreUnavailable);
                } else {
                    tracing::warn!(shard = shard.id, error = %e, "store request failed");
                }
            }
            match p {
                Some(Pending::Commit(ctx)) => commit_done(&shard, *ctx, c.result),
                Some(Pending::Attach(ctx)) => attach_step(&shard, &link, *ctx, c.result),
                Some(Pending::Refresh { user, conn }) => {
                    if let Ok(Reply::Owned(false)) = c.result {
                        let req = Request::GetSession {
                            user: Box::from(&*user),
                        };
                        let _ = link.submit(&shard, req, Pending::Recheck { user, conn });
                    }
                }
                Some(Pending::Recheck { user, conn }) => {
                    recheck_done(&shard, &link, &user, conn, c.result)
                }
                Some(Pending::Fill { user }) => fill_done(&shard, &link, user, c.result),
                Some(Pending::Reconcile { user }) => {
                    if let Ok(Reply::Head(h)) = c.result {
                        let cached = shard.session.core_mut().head_offset(&user).unwrap_or(0);
                        if h.head > cached {
                            fill(&shard, &link, user, cached);
                        }
                    }
                }
                Some(Pending::Ignore) | None => {}
            }
        }
    }
}

// ----- commit ------------------------------------------------------------------------------

/// Commits `req` (this shard is the recipient's home) to the store.
pub fn commit(shard: &Shard, link: &StoreLink, req: CommitReq) {
    let msg_id = shard.session.core_mut().next_msg_id();
    let ts_ms = unix_ms();
    let request = Request::Commit {
        to: req.to.clone(),
        from: req.from.clone(),
        client_msg_id: req.client_msg_id.clone(),
        msg_id,
        // A copy: the request crosses to the bridge thread, the original feeds the cache.
        payload: req.payload.clone(),
        ts_ms,
    };
    let ctx = CommitCtx { req, msg_id, ts_ms };
    if let Err((_, Pending::Commit(ctx))) =
        link.submit(shard, request, Pending::Commit(Box::new(ctx)))
    {
        refuse(shard, ctx.req, ErrorCode::Unavailable);
    }
}

fn commit_done(shard: &Shard, ctx: CommitCtx, result: Result<Reply, StoreError>) {
    let CommitCtx { req, msg_id, ts_ms } = ctx;
    let r = match result {
        Ok(Reply::Commit(r)) => r,
        Ok(_) => return refuse(shard, req, ErrorCode::Unavailable),
        Err(StoreError::TooLarge(_)) => return refuse(shard, req, ErrorCode::TooLarge),
        Err(_) => return refuse(shard, req, ErrorCode::Unavailable),
    };
    if !r.duplicate {
        debug_assert_eq!(r.msg_id, msg_id);
        if let Some(owner) = super::relaypath::owner_elsewhere(shard, &req.to) {
            super::relaypath::produce(
                shard,
                &owner,
                &req.to,
                &req.from,
                &req.client_msg_id,
                r.msg_id,
                r.offset,
                ts_ms,
                &req.payload,
            );
        }
        let msg = Message {
            msg_id: r.msg_id,
            offset: r.offset,
            from: Rc::from(&*req.from),
            payload: req.payload,
            ts_ms,
        };
        place(shard, &req.to, msg);
    }
    let reply = SentReply {
        sender: req.from,
        client_msg_id: req.client_msg_id,
        msg_id: r.msg_id,
        offset: r.offset,
        to: req.to,
    };
    if req.reply_to == shard.id {
        messaging::deliver_sent(shard, &reply);
    } else {
        // A full ring back is a counted drop; the sender's retry is deduplicated by Redis.
        let _ = shard.send_to(req.reply_to, ShardMsg::Sent(Box::new(reply)));
    }
}

/// Places a Redis-committed message in the cache of `to` when `to` is connected here (and
/// delivers it); an offline user's cache would be reset from Redis at its next attach anyway
/// (`sync_head`), so it is not kept. A message above `head + 1` means offsets committed
/// elsewhere are missing here: they (and this one) are read from Redis instead ([`fill`]),
/// so the connection gets every offset in order rather than a `gap`.
pub fn place(shard: &Shard, to: &str, msg: Message) {
    let head = {
        let core = shard.session.core_mut();
        if core.conn_of(to).is_none() {
            return;
        }
        core.head_offset(to).unwrap_or(0)
    };
    if msg.offset > head + 1 {
        if let Some(link) = shard.store.as_ref() {
            return fill(shard, link, Rc::from(to), head);
        }
    }
    place_read(shard, to, msg);
}

/// Places a message read back from Redis: a hole before it is final (acked by id or trimmed
/// there), so the cache jumps it (`insert_at`'s gap).
fn place_read(shard: &Shard, to: &str, msg: Message) {
    let placed = {
        let mut core = shard.session.core_mut();
        if core.conn_of(to).is_none() {
            return;
        }
        core.insert_at(to, msg, unix_ms())
    };
    if let Err(e) = placed {
        // Committed in Redis (a resume replays it) but not cached here.
        tracing::debug!(shard = shard.id, error = %e, "store commit not cached");
    }
    messaging::run_events(shard);
}

/// Reads `user`'s log after `after` from Redis into the cache (connected users only).
pub fn fill(shard: &Shard, link: &StoreLink, user: Rc<str>, after: u64) {
    let req = Request::Replay {
        user: Box::from(&*user),
        after,
        limit: 0,
        now_ms: unix_ms(),
    };
    let _ = link.submit(shard, req, Pending::Fill { user });
}

/// Compares `user`'s Redis head with the cache and fills what is missing.
pub fn reconcile(shard: &Shard, link: &StoreLink, user: Rc<str>) {
    let req = Request::Head {
        user: Box::from(&*user),
    };
    let _ = link.submit(shard, req, Pending::Reconcile { user });
}

fn fill_done(shard: &Shard, link: &StoreLink, user: Rc<str>, result: Result<Reply, StoreError>) {
    let Ok(Reply::Replay { more, entries, .. }) = result else {
        return;
    };
    let mut last = 0;
    for e in entries {
        last = e.offset;
        let msg = Message {
            msg_id: e.msg_id,
            offset: e.offset,
            from: Rc::from(&*e.from),
            payload: e.payload,
            ts_ms: e.ts_ms,
        };
        place_read(shard, &user, msg);
    }
    if more && last > 0 && shard.session.core_mut().conn_of(&user).is_some() {
        fill(shard, link, user, last);
    }
}

fn refuse(shard: &Shard, req: CommitReq, code: ErrorCode) {
    let r = Refused {
        sender: req.from,
        client_msg_id: req.client_msg_id,
        code,
    };
    if req.reply_to == shard.id {
        messaging::deliver_refused(shard, &r);
    } else {
        let _ = shard.send_to(req.reply_to, ShardMsg::Refused(Box::new(r)));
    }
}

// ----- acks and sessions -------------------------------------------------------------------

/// Forwards a client's ack to the store (the cache is acked by the caller).
pub fn ack(shard: &Shard, link: &StoreLink, user: &str, up_to: Option<u64>, msg_ids: &[u64]) {
    if let Some(n) = up_to {
        let req = Request::AckUpTo {
            user: Box::from(user),
            up_to: n,
        };
        let _ = link.submit(shard, req, Pending::Ignore);
    }
    if !msg_ids.is_empty() {
        let req = Request::AckIds {
            user: Box::from(user),
            msg_ids: msg_ids.into(),
        };
        let _ = link.submit(shard, req, Pending::Ignore);
    }
}

/// A connection of `user` ended: deletes its session record if it is still this one's.
pub fn remove_session(shard: &Shard, link: &StoreLink, user: &str, conn: u64) {
    let req = Request::RemoveSession {
        user: Box::from(user),
        node: Box::from(shard.node.config.node_id.as_str()),
        conn,
    };
    let _ = link.submit(shard, req, Pending::Ignore);
}

/// Refreshes the session record of every connected user of the shard.
pub async fn refresh_loop(shard: Rc<Shard>) {
    let Some(link) = shard.store.clone() else {
        return;
    };
    // Background refreshes may fill this much of the store queue; the rest stays free for the
    // commits and attaches users wait on. A shard with more users than the queue holds would
    // otherwise refuse its users' messages (and let some refreshes fall) once per interval.
    let refresh_limit = (link.handle.capacity() as u64 / REFRESH_QUEUE_SHARE_DIV).max(1);
    loop {
        glommio::timer::sleep(SESSION_REFRESH).await;
        let conns: Vec<Rc<ConnShared>> = shard.conns.borrow().values().cloned().collect();
        for c in conns {
            while link.handle.outstanding() >= refresh_limit {
                glommio::timer::sleep(REFRESH_BACKOFF).await;
            }
            let Some(user) = c.user.clone() else { continue };
            if c.closing_since().is_some() {
                continue;
            }
            let req = Request::RefreshSession {
                user: Box::from(&*user),
                node: Box::from(shard.node.config.node_id.as_str()),
                conn: c.id,
            };
            let _ = link.submit(&shard, req, Pending::Refresh { user, conn: c.id });
        }
    }
}

fn record(shard: &Shard, conn: u64) -> SessionRecord {
    SessionRecord {
        node: Box::from(shard.node.config.node_id.as_str()),
        shard: shard.id as u32,
        conn,
        connected_at_ms: unix_ms(),
    }
}

fn recheck_done(
    shard: &Shard,
    link: &StoreLink,
    user: &Rc<str>,
    conn: u64,
    result: Result<Reply, StoreError>,
) {
    match result {
        Ok(Reply::Session(Some(r)))
            if (&*r.node != shard.node.config.node_id.as_str() || r.conn != conn) =>
        {
            // The user connected elsewhere since: this connection is the replaced one.
            shard.metrics.inc(Counter::Close4002);
            shard.close_conn(conn, close::REPLACED);
        }
        Ok(Reply::Session(None)) if shard.conns.borrow().contains_key(&conn) => {
            let req = Request::SetSession {
                user: Box::from(&**user),
                record: record(shard, conn),
            };
            let _ = link.submit(shard, req, Pending::Ignore);
        }
        _ => {}
    }
}

// ----- attach ------------------------------------------------------------------------------

/// Starts attaching `shared` (registered, its task not yet running): session record, then the
/// replay from Redis; [`attach_step`] finishes.
pub fn attach(
    shard: &Shard,
    link: &StoreLink,
    task: ConnTask,
    shared: Rc<ConnShared>,
    user: Rc<str>,
    last_offset: Option<u64>,
) {
    let set = Request::SetSession {
        user: Box::from(&*user),
        record: record(shard, shared.id),
    };
    let _ = link.submit(shard, set, Pending::Ignore);
    if let Some(n) = last_offset {
        // A resume acks what the client has (as the in-memory core does).
        ack(shard, link, &user, Some(n), &[]);
    }
    let ctx = AttachCtx {
        task,
        shared,
        user,
        last_offset,
        after: last_offset.unwrap_or(0),
        pages: 0,
        frames: Vec::new(),
        gap: None,
    };
    replay_next(shard, link, ctx);
}

fn replay_next(shard: &Shard, link: &StoreLink, ctx: AttachCtx) {
    let req = Request::Replay {
        user: Box::from(&*ctx.user),
        after: ctx.after,
        limit: 0,
        now_ms: unix_ms(),
    };
    if let Err((_, Pending::Attach(ctx))) = link.submit(shard, req, Pending::Attach(Box::new(ctx)))
    {
        fail_attach(*ctx);
    }
}

/// The replay could not be read: the connection closes 1013 (try again later) without a
/// `welcome` (it never attached).
fn fail_attach(ctx: AttachCtx) {
    ctx.shared.request_close(close::TRY_AGAIN_LATER);
    glommio::spawn_local(ctx.task).detach();
}

fn attach_step(
    shard: &Shard,
    link: &StoreLink,
    mut ctx: AttachCtx,
    result: Result<Reply, StoreError>,
) {
    let Ok(Reply::Replay {
        head,
        more,
        entries,
    }) = result
    else {
        tracing::debug!(shard = shard.id, user = %ctx.user, "attach: replay from the store failed");
        return fail_attach(ctx);
    };
    if ctx.pages == 0 {
        let asked_from = ctx.after.max(head.acked);
        if head.lost > asked_from {
            ctx.gap = Some((asked_from + 1, head.lost));
        }
    }
    ctx.pages += 1;
    let mut json = Vec::new();
    for e in &entries {
        json.clear();
        ServerFrame::Deliver {
            msg_id: e.msg_id,
            offset: e.offset,
            from: &e.from,
            payload: &e.payload,
            ts: e.ts_ms,
        }
        .encode(&mut json);
        rtc_protocol::ws::encode_frame(
            rtc_protocol::ws::OpCode::Text,
            true,
            &json,
            &mut ctx.frames,
        );
        shard.metrics.inc(Counter::Delivered);
        ctx.after = ctx.after.max(e.offset);
    }
    if more && !entries.is_empty() {
        if ctx.pages < REPLAY_MAX_PAGES {
            return replay_next(shard, link, ctx);
        }
        if head.head > ctx.after {
            let mut json = Vec::new();
            ServerFrame::Gap {
                from: ctx.after + 1,
                to: head.head,
            }
            .encode(&mut json);
            rtc_protocol::ws::encode_frame(
                rtc_protocol::ws::OpCode::Text,
                true,
                &json,
                &mut ctx.frames,
            );
        }
    }
    finish_attach(
        shard,
        ctx,
        head.head.max(ctx_after_head(&entries)),
        head.acked,
    );
}

fn ctx_after_head(entries: &[crate::store::LogEntry]) -> u64 {
    entries.last().map_or(0, |e| e.offset)
}

fn finish_attach(shard: &Shard, mut ctx: AttachCtx, head: u64, acked: u64) {
    let now = unix_ms();
    let replaced = {
        let mut core = shard.session.core_mut();
        // A previous connection of the user here is replaced: detach it so the cache can be
        // reset to the store's view, then attach the new one at the store's head.
        let old = core.conn_of(&ctx.user);
        if let Some(old) = old {
            core.detach(old, now);
        }
        old
    };
    let attached = {
        let mut core = shard.session.core_mut();
        core.sync_head(&ctx.user, head, acked, now)
            .and_then(|()| core.attach(&ctx.user, ctx.shared.id, Some(head), now))
    };
    if let Some(old) = replaced {
        shard.metrics.inc(Counter::Close4002);
        shard.close_conn(old, close::REPLACED);
    }
    match attached {
        Ok(_) => {
            super::analytics::connected(shard, &ctx.shared, &ctx.user, ctx.last_offset.is_some());
            let out = ctx.task.out_mut();
            messaging::welcome_at(shard, &ctx.user, head, out);
            if let Some((from, to)) = ctx.gap {
                messaging::encode_gap(shard, from, to, out);
            }
            out.extend_from_slice(&ctx.frames);
            if ctx.last_offset.is_some_and(|n| n > head) {
                ctx.shared.request_close(close::RESUME_FAILED);
            } else if ctx.last_offset.is_some() {
                shard.metrics.inc(Counter::ResumeSuccess);
            }
        }
        Err(e) => {
            tracing::warn!(shard = shard.id, user = %ctx.user, error = %e, "attach refused");
            ctx.shared.request_close(close::TRY_AGAIN_LATER);
        }
    }
    messaging::run_events(shard);
    if shard.relay.is_some() {
        // Messages committed by other nodes between the replay and now reached no cache.
        if let Some(link) = shard.store.as_ref() {
            reconcile(shard, link, ctx.user.clone());
        }
    }
    glommio::spawn_local(ctx.task).detach();
}
