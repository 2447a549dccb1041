//! The runtime side of the session core: attach on the home shard (welcome, replay, 4002 for
//! the replaced login), client frames (`message`, `ack`, `ping`), routing a message to its
//! recipient's home shard and the `sent` answer back, and encoding the core's outbound items
//! into WebSocket frames.
//!
//! Every message for user `u` is committed on `shard_of(u)`: either right here (sender and
//! recipient share a home) or after one hop over the SPSC ring. Each ring is FIFO and each
//! sender's frames are handled in order, so a recipient sees one sender's messages in order.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::net::TcpStream;
use rtc_protocol::close;
use rtc_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use rtc_protocol::token::{sign_resume, ResumeClaims};
use rtc_protocol::ws::{self, Limits, OpCode};

use super::msg::{CommitReq, Handoff, Refused, SentReply, ShardMsg};
use super::{unix_ms, Shard};
use crate::conn::{handoff, ConnShared, ConnTask, Mode};
use crate::metrics::{Counter, Gauge};
use crate::session::{Attach, Commit, Event, Outbound, Resume, SessionCore, SessionError};

/// User slots `expire` looks at per sweep.
const EXPIRE_BUDGET: usize = 4096;
/// Most bytes of frames queued on a connection outside its write loop (`sent` answers from
/// other shards, drain); past it the connection is closed as a slow consumer.
pub const PENDING_MAX_BYTES: usize = 1 << 20;

/// The shard's session core and the scratch space used to drive it.
#[derive(Debug)]
pub struct SessionGlue {
    core: RefCell<SessionCore>,
    /// Items handed out by `poll_transmit`, reused.
    items: RefCell<Vec<Outbound>>,
    /// JSON of one server frame, reused.
    json: RefCell<Vec<u8>>,
    /// Last session-core counters folded into the shard metrics.
    seen: RefCell<crate::session::Counters>,
}

impl SessionGlue {
    /// The session core for shard `id`, bounded by the configuration.
    pub fn new(id: usize, config: &crate::config::Config) -> anyhow::Result<Self> {
        let core = SessionCore::new(id as u16, config.session_limits())
            .map_err(|e| anyhow::anyhow!("session limits: {e}"))?;
        Ok(Self {
            core: RefCell::new(core),
            items: RefCell::new(Vec::new()),
            json: RefCell::new(Vec::new()),
            seen: RefCell::new(Default::default()),
        })
    }

    /// The session core, mutably (the store path drives it too: `datapath.rs`).
    pub fn core_mut(&self) -> std::cell::RefMut<'_, SessionCore> {
        self.core.borrow_mut()
    }

    /// Periodic housekeeping (TTL, slow consumers).
    pub fn tick(&self, shard: &Shard) {
        self.core.borrow_mut().expire(unix_ms(), EXPIRE_BUDGET);
        run_events(shard);
    }

    /// Folds the core's counters and sizes into the shard metrics.
    pub fn publish_gauges(&self, m: &crate::metrics::ShardMetrics) {
        let core = self.core.borrow();
        let c = core.counters();
        let mut seen = self.seen.borrow_mut();
        m.add(
            Counter::DropOutboundFull,
            c.drops_buffer_full.saturating_sub(seen.drops_buffer_full),
        );
        m.add(
            Counter::DropSlowConsumer,
            c.slow_consumers.saturating_sub(seen.slow_consumers),
        );
        m.add(Counter::Close4002, c.replaced.saturating_sub(seen.replaced));
        m.add(
            Counter::DropLogFull,
            c.drops_log_full.saturating_sub(seen.drops_log_full),
        );
        m.add(
            Counter::DropEvicted,
            c.drops_evicted.saturating_sub(seen.drops_evicted),
        );
        m.add(
            Counter::DropExpired,
            c.drops_expired.saturating_sub(seen.drops_expired),
        );
        *seen = c.clone();
        m.set(Gauge::QueueDepth, core.gauges().log_entries);
    }

    /// Queues `drain` on `conn` (before its 4007 close).
    pub fn send_drain(&self, shard: &Shard, conn: &ConnShared) {
        let deadline = shard
            .node
            .drain_deadline_ms
            .load(std::sync::atomic::Ordering::Acquire);
        let left = deadline.saturating_sub(unix_ms());
        self.send_drain_with(shard, conn, "shutdown", left);
    }

    /// Queues `drain {deadlineMs, reason, resumeToken}` on `conn` (shutdown, or a ring change
    /// that moved its user: `cluster/`).
    pub fn send_drain_with(&self, shard: &Shard, conn: &ConnShared, reason: &str, left: u64) {
        let Some(user) = &conn.user else { return };
        let token = resume_token(shard, user);
        let mut pending = conn.pending.borrow_mut();
        encode(
            &self.json,
            &ServerFrame::Drain {
                deadline_ms: left,
                reason,
                resume_token: &token,
            },
            &mut pending,
        );
    }
}

/// Encodes `frame` as one WebSocket text frame appended to `out`.
fn encode(json: &RefCell<Vec<u8>>, frame: &ServerFrame<'_>, out: &mut Vec<u8>) {
    let mut j = json.borrow_mut();
    j.clear();
    frame.encode(&mut j);
    ws::encode_frame(OpCode::Text, true, &j, out);
}

fn error_frame(
    shard: &Shard,
    code: ErrorCode,
    message: &str,
    cmid: Option<&str>,
    out: &mut Vec<u8>,
) {
    encode(
        &shard.session.json,
        &ServerFrame::Error {
            code,
            message,
            client_msg_id: cmid,
        },
        out,
    );
}

fn resume_token(shard: &Shard, user: &str) -> String {
    let offset = shard.session.core.borrow().head_offset(user);
    let claims = ResumeClaims {
        user: user.to_owned(),
        node: shard.node.config.node_id.clone(),
        offset,
        expires_at: unix_ms() / 1000 + shard.node.config.resume_ttl_sec,
    };
    sign_resume(&shard.node.keys, &claims)
}

/// Acts on the session core's events: wake writable connections, close slow consumers.
pub fn run_events(shard: &Shard) {
    loop {
        let ev = shard.session.core.borrow_mut().poll_event();
        match ev {
            None => break,
            Some(Event::Writable(conn)) => shard.wake_conn(conn),
            Some(Event::Close { conn, reason }) => {
                shard.metrics.inc(Counter::Close4005);
                shard.close_conn(conn, reason.code());
            }
        }
    }
}

/// A handed-off connection arrived on its home shard.
pub fn adopt(shard: &Rc<Shard>, h: Handoff) {
    tracing::debug!(shard = shard.id, user = %h.user, "adopting handed-off connection");
    let stream = handoff::adopt_stream(h.fd);
    attach(
        shard,
        stream,
        &h.user,
        h.last_offset,
        h.reconnect,
        h.leftover,
        h.counted_ip,
        h.peer,
    );
}

/// Attaches an upgraded `/ws` connection of `user` (home = this shard) and starts its task.
#[allow(clippy::too_many_arguments)]
pub fn attach(
    shard: &Rc<Shard>,
    stream: TcpStream,
    user: &str,
    last_offset: Option<u64>,
    reconnect: bool,
    leftover: Vec<u8>,
    counted_ip: Option<std::net::IpAddr>,
    peer: Option<std::net::SocketAddr>,
) {
    let id = shard.next_conn_id();
    let user_rc: Rc<str> = Rc::from(user);
    // DEBUG, not INFO: an enabled span lives in the subscriber's registry for the connection's
    // whole life (~600 B measured per idle connection); at the default INFO level connections
    // cost nothing there, and `RUST_LOG=gateway=debug` brings the span back with its fields.
    let span = tracing::debug_span!("conn", id, user, shard = shard.id, peer = ?peer);
    let now = unix_ms();
    if reconnect {
        shard.metrics.inc(Counter::Reconnect);
    }
    let shared = Rc::new(ConnShared::new(
        id,
        Some(user_rc.clone()),
        shard.clock_s.get(),
    ));
    let limits = Limits {
        max_frame: shard.node.config.max_message_bytes,
        max_message: shard.node.config.max_message_bytes,
    };
    let mut task = ConnTask::new(
        shard.clone(),
        stream,
        shared.clone(),
        Mode::Session,
        limits,
        leftover,
        counted_ip,
        span.clone(),
    );
    shard.register(shared.clone());
    if let Some(link) = shard.store.clone() {
        // Store-backed: the replay comes from Redis, the task starts when it has (`datapath`).
        super::datapath::attach(shard, &link, task, shared, user_rc, last_offset);
        return;
    }
    let attached = shard
        .session
        .core
        .borrow_mut()
        .attach(user, id, last_offset, now);
    match attached {
        Ok(a) => {
            super::analytics::connected(shard, &shared, user, last_offset.is_some());
            welcome(shard, user, &a, task.out_mut());
            if let Some(old) = a.replaced {
                shard.close_conn(old, close::REPLACED);
            }
            match a.resume {
                Resume::Complete | Resume::Partial if last_offset.is_some() => {
                    shard.metrics.inc(Counter::ResumeSuccess)
                }
                _ => {}
            }
            if let Some((from, to)) = a.resume_gap {
                encode(
                    &shard.session.json,
                    &ServerFrame::Gap { from, to },
                    task.out_mut(),
                );
            }
            if a.resume == Resume::Ahead {
                shared.request_close(close::RESUME_FAILED);
            }
            tracing::debug!(parent: &span, replay = a.replay, "attached");
        }
        Err(e) => {
            tracing::warn!(parent: &span, user, error = %e, "attach refused");
            shared.request_close(close::TRY_AGAIN_LATER);
        }
    }
    run_events(shard);
    glommio::spawn_local(task).detach();
}

fn welcome(shard: &Shard, user: &str, a: &Attach, out: &mut Vec<u8>) {
    welcome_at(shard, user, a.head_offset, out);
}

/// Queues `gap {from, to}` on `out`.
pub fn encode_gap(shard: &Shard, from: u64, to: u64, out: &mut Vec<u8>) {
    encode(&shard.session.json, &ServerFrame::Gap { from, to }, out);
}

/// Queues `welcome` with `head` as the user's last assigned offset.
pub fn welcome_at(shard: &Shard, user: &str, head: u64, out: &mut Vec<u8>) {
    let token = resume_token(shard, user);
    encode(
        &shard.session.json,
        &ServerFrame::Welcome {
            user,
            node_id: &shard.node.config.node_id,
            shard: shard.id as u32,
            resume_token: &token,
            ping_interval_ms: shard.node.config.ping_interval_sec * 1000,
            offset: head,
            ring_version: shard.placement.version(),
        },
        out,
    );
}

/// A text message from `conn`'s client. Answers (`sent`, `error`, `pong`) go to `out`.
/// Returns `false` for a bad frame (counted toward the error limit).
pub fn on_text(shard: &Rc<Shard>, conn: &ConnShared, text: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(user) = conn.user.clone() else {
        return true;
    };
    let frame = match ClientFrame::parse(text) {
        Ok(f) => f,
        Err(e) => {
            shard.metrics.inc(Counter::DropBadFrame);
            error_frame(shard, e.code(), &e.to_string(), None, out);
            return false;
        }
    };
    let now = unix_ms();
    match frame {
        ClientFrame::Message {
            to,
            client_msg_id,
            payload,
        } => {
            shard.metrics.inc(Counter::Received);
            let home = rtc_ring::shard_of(&to, shard.node.shards);
            if let (Some(link), true) = (shard.store.as_ref(), home == shard.id) {
                let req = CommitReq {
                    from: Box::from(&*user),
                    to: Box::from(&*to),
                    client_msg_id: Box::from(&*client_msg_id),
                    payload: payload.into(),
                    reply_to: shard.id,
                };
                super::datapath::commit(shard, link, req);
            } else if home == shard.id {
                let r = shard.session.core.borrow_mut().commit(
                    &to,
                    user.clone(),
                    &client_msg_id,
                    payload.into(),
                    now,
                );
                match r {
                    Ok(c) => sent_frame(shard, &client_msg_id, &c, &to, out),
                    Err(e) => commit_error(shard, &e, &client_msg_id, out),
                }
                run_events(shard);
            } else {
                let req = CommitReq {
                    from: Box::from(&*user),
                    to: Box::from(&*to),
                    client_msg_id: Box::from(&*client_msg_id),
                    payload: payload.into(),
                    reply_to: shard.id,
                };
                if shard
                    .send_to(home, ShardMsg::Commit(Box::new(req)))
                    .is_err()
                {
                    error_frame(
                        shard,
                        ErrorCode::Unavailable,
                        "recipient shard busy, retry",
                        Some(&client_msg_id),
                        out,
                    );
                }
            }
        }
        ClientFrame::Ack { up_to, msg_ids } => {
            if let Some(link) = shard.store.as_ref() {
                super::datapath::ack(shard, link, &user, up_to, &msg_ids);
            }
            let mut core = shard.session.core.borrow_mut();
            if let Some(n) = up_to {
                core.ack_up_to(&user, n, now);
            }
            if !msg_ids.is_empty() {
                core.ack_ids(&user, &msg_ids, now);
            }
        }
        ClientFrame::Ping { nonce } => {
            encode(
                &shard.session.json,
                &ServerFrame::Pong { nonce, ts: now },
                out,
            );
        }
    }
    true
}

fn sent_frame(shard: &Shard, cmid: &str, c: &Commit, to: &str, out: &mut Vec<u8>) {
    encode(
        &shard.session.json,
        &ServerFrame::Sent {
            client_msg_id: cmid,
            msg_id: c.msg_id(),
            offset: c.offset(),
            to,
        },
        out,
    );
}

fn commit_error(shard: &Shard, e: &SessionError, cmid: &str, out: &mut Vec<u8>) {
    let code = match e {
        SessionError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::Unavailable,
    };
    error_frame(shard, code, &e.to_string(), Some(cmid), out);
}

/// A commit request from another shard (this is the recipient's home).
pub fn commit_remote(shard: &Rc<Shard>, c: CommitReq) {
    if let Some(link) = shard.store.as_ref() {
        return super::datapath::commit(shard, link, c);
    }
    let from: Rc<str> = Rc::from(c.from);
    let r = shard.session.core.borrow_mut().commit(
        &c.to,
        from.clone(),
        &c.client_msg_id,
        c.payload,
        unix_ms(),
    );
    run_events(shard);
    let reply = match r {
        Ok(commit) => ShardMsg::Sent(Box::new(SentReply {
            sender: Box::from(&*from),
            client_msg_id: c.client_msg_id,
            msg_id: commit.msg_id(),
            offset: commit.offset(),
            to: c.to,
        })),
        Err(e) => ShardMsg::Refused(Box::new(Refused {
            sender: Box::from(&*from),
            client_msg_id: c.client_msg_id,
            code: match e {
                SessionError::TooLarge { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::Unavailable,
            },
        })),
    };
    // A full ring back is a counted drop: the sender did not get `sent` and retries with
    // the same clientMsgId, which the dedup memory answers without a second commit.
    let _ = shard.send_to(c.reply_to, reply);
}

fn queue_pending(shard: &Shard, user: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let Some(id) = shard.session.core.borrow().conn_of(user) else {
        return;
    };
    let conn = shard.conns.borrow().get(&id).cloned();
    let Some(conn) = conn else { return };
    let over = {
        let mut p = conn.pending.borrow_mut();
        f(&mut p);
        p.len() > PENDING_MAX_BYTES
    };
    if over {
        shard.metrics.inc(Counter::DropSlowConsumer);
        conn.pending.borrow_mut().clear();
        conn.request_close(close::SLOW_CONSUMER);
    }
    conn.wake();
}

/// `sent` from the recipient's shard, for a sender whose home is this shard.
pub fn deliver_sent(shard: &Shard, s: &SentReply) {
    queue_pending(shard, &s.sender, |out| {
        encode(
            &shard.session.json,
            &ServerFrame::Sent {
                client_msg_id: &s.client_msg_id,
                msg_id: s.msg_id,
                offset: s.offset,
                to: &s.to,
            },
            out,
        );
    });
}

/// A refused commit from the recipient's shard.
pub fn deliver_refused(shard: &Shard, r: &Refused) {
    queue_pending(shard, &r.sender, |out| {
        error_frame(
            shard,
            r.code,
            "message not committed, retry",
            Some(&r.client_msg_id),
            out,
        );
    });
}

/// Moves the connection's next outbound items into `out` as WebSocket frames. Returns a close
/// code when the connection must close.
pub fn pull(shard: &Shard, conn: &ConnShared, out: &mut Vec<u8>) {
    let mut items = shard.session.items.borrow_mut();
    items.clear();
    let n = shard.session.core.borrow_mut().poll_transmit(
        conn.id,
        crate::conn::WRITE_BATCH_BYTES,
        &mut items,
    );
    if n == 0 {
        return;
    }
    let now = unix_ms();
    for item in items.drain(..) {
        encode(&shard.session.json, &item.frame(), out);
        if let Outbound::Deliver(m) = &item {
            shard.metrics.inc(Counter::Delivered);
            // Commit and write happen on this same shard (the recipient's home); the commit
            // time is the message's unix-ms `ts`, so the resolution is 1 ms.
            let ms = now.saturating_sub(m.ts_ms);
            shard
                .metrics
                .observe_latency(std::time::Duration::from_millis(ms));
        }
    }
}

/// The connection finished a write: the consumer makes progress.
pub fn written(shard: &Shard, conn: &ConnShared) {
    shard
        .session
        .core
        .borrow_mut()
        .handle_written(conn.id, unix_ms());
}

/// The connection is gone.
pub fn detach(shard: &Shard, conn: &ConnShared) {
    if let Some(user) = conn.user.as_ref() {
        super::analytics::disconnected(shard, conn, user);
        if let Some(link) = shard.store.as_ref() {
            super::datapath::remove_session(shard, link, user, conn.id);
        }
    }
    shard.session.core.borrow_mut().detach(conn.id, unix_ms());
    run_events(shard);
}
