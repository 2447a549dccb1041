//! The bridge thread: takes requests from its shards' lanes, writes them to Redis as one
//! pipeline per round trip (up to `pipeline_batch` commands), and routes each answer back to
//! the lane it came from, waking each shard once per round trip.
//!
//! It owns one synchronous Redis connection with read/write timeouts. When the connection
//! cannot be made or breaks, `healthy` turns false, everything queued or in flight completes
//! with `Unavailable` right away, and the bridge reconnects with exponential backoff
//! (`min(max, base·2^k)` plus up to `base` of jitter), failing new requests immediately while
//! it waits. A new connection loads the scripts again before `healthy` turns true.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, ConnectionLike, Value};
use rtc_protocol::frames::{MAX_ACK_IDS, MAX_CLIENT_MSG_ID_LEN};
use rtc_protocol::user::validate_user_id;

use super::config::{StoreConfig, MAX_OFFSET};
use super::handle::{AtomicBridgeCounters, BridgeShared};
use super::scripts::{key, ScriptId, Scripts, UserKeys};
use super::types::{
    CommitReply, Completion, LogEntry, LogHead, Reply, Request, SessionRecord, StoreError,
};

/// What reply shape a written command has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Commit,
    Acked,
    AckedIds,
    Replay,
    Head,
    Trimmed,
    Session,
    Owned,
}

/// A request of the current round trip.
#[derive(Debug)]
struct Item {
    lane: usize,
    tag: u64,
    request: Request,
    /// `None` while a command for it is in the pipeline.
    result: Option<Result<Reply, StoreError>>,
    kind: Kind,
}

/// One bridge thread's state.
pub(crate) struct Bridge {
    shared: Arc<BridgeShared>,
    config: Arc<StoreConfig>,
    client: Option<redis::Client>,
    scripts: Scripts,
    conn: Option<Connection>,
    /// The encoded pipeline, reused across round trips.
    buf: Vec<u8>,
    items: Vec<Item>,
    /// Lanes that got a completion this round trip (woken once each).
    touched: Vec<bool>,
    /// Lane the next batch starts with (round robin, so no shard starves the others).
    next_lane: usize,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("connected", &self.conn.is_some())
            .field("lanes", &self.shared.lanes.len())
            .finish()
    }
}

impl Bridge {
    pub(crate) fn new(shared: Arc<BridgeShared>, config: Arc<StoreConfig>) -> Self {
        let client = redis::Client::open(config.redis_url.as_str()).ok();
        let lanes = shared.lanes.len();
        Self {
            shared,
            client,
            scripts: Scripts::new(),
            conn: None,
            buf: Vec::with_capacity(64 * 1024),
            items: Vec::with_capacity(config.pipeline_batch),
            touched: vec![false; lanes],
            next_lane: 0,
            config,
        }
    }

    /// The thread body: runs until the store shuts down.
    pub(crate) fn run(mut self) {
        let _ = self.shared.thread.set(std::thread::current());
        let mut attempt: u32 = 0;
        let mut next_connect = Instant::now();
        let mut connected_once = false;
        let mut last_round_trip = Instant::now();
        let health_every = Duration::from_millis(self.config.health_interval_ms);
        loop {
            if self.shared.shutdown.load(Ordering::Acquire) {
                self.fail_queued();
                return;
            }
            if self.conn.is_none() {
                if Instant::now() >= next_connect {
                    match self.connect() {
                        Ok(conn) => {
                            self.conn = Some(conn);
                            if connected_once {
                                AtomicBridgeCounters::add(&self.shared.counters.reconnects, 1);
                                tracing::info!(attempts = attempt, "redis store reconnected");
                            }
                            connected_once = true;
                            attempt = 0;
                            last_round_trip = Instant::now();
                            self.shared.healthy.store(true, Ordering::Release);
                        }
                        Err(e) => {
                            AtomicBridgeCounters::add(&self.shared.counters.connect_failures, 1);
                            self.shared.healthy.store(false, Ordering::Release);
                            if attempt == 0 {
                                tracing::warn!(error = %e, "redis store cannot connect; retrying with backoff");
                            }
                            attempt = attempt.saturating_add(1);
                            next_connect = Instant::now() + self.backoff(attempt);
                        }
                    }
                }
                if self.conn.is_none() {
                    self.fail_queued();
                    self.sleep(next_connect.saturating_duration_since(Instant::now()));
                    continue;
                }
            }
            if self.collect() == 0 {
                let idle = last_round_trip.elapsed();
                if idle >= health_every {
                    if !self.ping() {
                        next_connect = Instant::now();
                    }
                    last_round_trip = Instant::now();
                } else {
                    self.sleep(health_every - idle);
                }
                continue;
            }
            if !self.execute() {
                // The connection broke mid round trip: try again at once, then back off.
                next_connect = Instant::now();
            }
            last_round_trip = Instant::now();
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.reconnect_base_ms;
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let jitter = jitter_unit() * base as f64;
        Duration::from_millis(exp.min(self.config.reconnect_max_ms) + jitter as u64)
    }

    fn connect(&mut self) -> redis::RedisResult<Connection> {
        let Some(client) = &self.client else {
            return Err((redis::ErrorKind::InvalidClientConfig, "bad REDIS_URL").into());
        };
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(self.config.connect_timeout_ms))?;
        let io = Some(Duration::from_millis(self.config.io_timeout_ms));
        conn.set_read_timeout(io)?;
        conn.set_write_timeout(io)?;
        load_scripts(&mut conn, &self.scripts)?;
        Ok(conn)
    }

    fn ping(&mut self) -> bool {
        let ok = match &mut self.conn {
            Some(conn) => redis::cmd("PING").query::<String>(conn).is_ok(),
            None => false,
        };
        if !ok {
            self.disconnect("health check failed");
        }
        ok
    }

    fn disconnect(&mut self, why: &str) {
        if self.conn.take().is_some() {
            tracing::warn!(reason = why, "redis store disconnected");
        }
        self.shared.healthy.store(false, Ordering::Release);
    }

    /// Parks until `timeout` passes or a shard submits something.
    fn sleep(&self, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        self.shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.shared.any_queued() || self.shared.shutdown.load(Ordering::Acquire) {
            self.shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        std::thread::park_timeout(timeout);
        self.shared.sleeping.store(false, Ordering::SeqCst);
    }

    /// Completes everything queued with `Unavailable` (Redis down, or shutting down).
    fn fail_queued(&mut self) {
        let failed: u64 = self.shared.lanes.iter().map(|l| l.fail_all()).sum();
        if failed > 0 {
            AtomicBridgeCounters::add(&self.shared.counters.unavailable, failed);
        }
    }

    /// Takes up to `pipeline_batch` requests (and about `pipeline_max_bytes`), round robin
    /// over the lanes, each lane in FIFO order. Returns how many.
    fn collect(&mut self) -> usize {
        let lanes = self.shared.lanes.len();
        let max = self.config.pipeline_batch;
        let max_bytes = self.config.pipeline_max_bytes;
        let chunk = (max / lanes).max(1);
        let start = self.next_lane;
        self.next_lane = (self.next_lane + 1) % lanes;
        let mut bytes = 0usize;
        loop {
            let before = self.items.len();
            for k in 0..lanes {
                let lane_idx = (start + k) % lanes;
                let lane = &self.shared.lanes[lane_idx];
                for _ in 0..chunk {
                    if self.items.len() >= max || bytes >= max_bytes {
                        return self.items.len();
                    }
                    let Some((tag, request)) = lane.requests.pop() else {
                        break;
                    };
                    bytes += request.approx_bytes();
                    self.items.push(Item {
                        lane: lane_idx,
                        tag,
                        request,
                        result: None,
                        kind: Kind::Owned,
                    });
                }
            }
            if self.items.len() == before {
                return self.items.len();
            }
        }
    }

    /// Runs the collected batch as one pipeline (plus one retry of `NOSCRIPT` answers after
    /// reloading the scripts) and delivers the completions. Returns false if the connection
    /// broke.
    fn execute(&mut self) -> bool {
        let mut ok = self.round_trip(false);
        if ok && self.items.iter().any(|i| i.result.is_none()) {
            // Some answers were NOSCRIPT: the script cache was flushed under us.
            AtomicBridgeCounters::add(&self.shared.counters.script_reloads, 1);
            let reloaded = match &mut self.conn {
                Some(conn) => load_scripts(conn, &self.scripts).is_ok(),
                None => false,
            };
            ok = reloaded && self.round_trip(true);
            if !reloaded {
                self.disconnect("reloading scripts failed");
            }
        }
        // Anything still unanswered is unknown: the connection broke.
        let mut unavailable = 0u64;
        let mut errors = 0u64;
        for item in &mut self.items {
            let result = item.result.take().unwrap_or(Err(StoreError::Unavailable));
            match &result {
                Err(StoreError::Unavailable) => unavailable += 1,
                Err(StoreError::Redis(_) | StoreError::BadReply(_)) => errors += 1,
                _ => {}
            }
            let lane = &self.shared.lanes[item.lane];
            // Room is guaranteed by the shard's outstanding bound.
            let _ = lane.done.push(Completion {
                tag: item.tag,
                result,
            });
            self.touched[item.lane] = true;
        }
        self.items.clear();
        for (i, touched) in self.touched.iter_mut().enumerate() {
            if std::mem::take(touched) {
                self.shared.lanes[i].waker.wake();
            }
        }
        let c = &self.shared.counters;
        AtomicBridgeCounters::add(&c.unavailable, unavailable);
        AtomicBridgeCounters::add(&c.errors, errors);
        ok
    }

    /// Writes every unanswered item (on a retry: only those) as one pipeline and reads the
    /// answers. Items answered `NOSCRIPT` stay unanswered. Returns false if the connection
    /// broke (the unanswered items then stay unanswered too).
    fn round_trip(&mut self, retry: bool) -> bool {
        self.buf.clear();
        let mut sent = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter_mut().enumerate() {
            if item.result.is_some() {
                continue;
            }
            match encode(&self.config, &self.scripts, &item.request, &mut self.buf) {
                Ok(Encoded::Command(kind)) => {
                    item.kind = kind;
                    sent.push(i);
                }
                Ok(Encoded::Answer(reply)) => item.result = Some(Ok(reply)),
                Err(e) => item.result = Some(Err(e)),
            }
        }
        if sent.is_empty() {
            return true;
        }
        let Some(conn) = &mut self.conn else {
            return false;
        };
        let c = &self.shared.counters;
        AtomicBridgeCounters::add(&c.batches, 1);
        AtomicBridgeCounters::add(&c.commands, sent.len() as u64);
        match conn.req_packed_commands(&self.buf, 0, sent.len()) {
            Ok(replies) if replies.len() == sent.len() => {
                for (&i, value) in sent.iter().zip(replies) {
                    let item = &mut self.items[i];
                    match value {
                        Value::ServerError(e) if e.code() == "NOSCRIPT" && !retry => {}
                        Value::ServerError(e) => {
                            item.result = Some(Err(server_error(e.code(), e.details())))
                        }
                        v => item.result = Some(decode(item.kind, v)),
                    }
                }
                true
            }
            Ok(_) => {
                self.disconnect("pipeline answer count mismatch");
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis round trip failed");
                self.disconnect("round trip failed");
                false
            }
        }
    }
}

/// `SCRIPT LOAD`s every script and checks Redis computed the hash we will `EVALSHA`.
fn load_scripts(conn: &mut Connection, scripts: &Scripts) -> redis::RedisResult<()> {
    for s in &scripts.all {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&s.source)
            .query(conn)?;
        if !sha.eq_ignore_ascii_case(&s.sha) {
            return Err((redis::ErrorKind::ResponseError, "script hash mismatch").into());
        }
    }
    Ok(())
}

/// A Redis error answer as a completion error: transient server states are `Unavailable`.
fn server_error(code: &str, details: Option<&str>) -> StoreError {
    match code {
        "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY" => {
            StoreError::Unavailable
        }
        code => StoreError::Redis(format!("{code} {}", details.unwrap_or(""))),
    }
}

/// A cheap jitter source in [0, 1) (the bridge is a shell, not a pure core: the clock's
/// nanoseconds, mixed, are random enough to spread reconnects of many nodes).
fn jitter_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = (u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

/// How a request is answered.
enum Encoded {
    /// A command was appended to the pipeline; its answer has this shape.
    Command(Kind),
    /// Answered without Redis (e.g. an empty ack list).
    Answer(Reply),
}

fn check_user(user: &str) -> Result<(), StoreError> {
    validate_user_id(user).map_err(|_| StoreError::BadUser)
}

fn evalsha(scripts: &Scripts, id: ScriptId, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(scripts.sha(id)).arg(keys.len());
    for k in keys {
        cmd.arg(k.as_str());
    }
    cmd
}

/// Appends the command for `request` to `buf`.
fn encode(
    config: &StoreConfig,
    scripts: &Scripts,
    request: &Request,
    buf: &mut Vec<u8>,
) -> Result<Encoded, StoreError> {
    check_user(request.user())?;
    let prefix = config.key_prefix.as_str();
    let ttl = config.resume_ttl_sec;
    let min_ts = |now_ms: u64| now_ms.saturating_sub(config.resume_ttl_ms());
    let (cmd, kind) = match request {
        Request::Commit {
            to,
            from,
            client_msg_id,
            msg_id,
            payload,
            ts_ms,
        } => {
            check_user(from)?;
            if payload.len() > config.max_payload_bytes {
                return Err(StoreError::TooLarge("max_payload_bytes"));
            }
            if client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
                return Err(StoreError::TooLarge("client_msg_id"));
            }
            // Length-prefixed sender: "(from, clientMsgId)" pairs cannot run into each other.
            let dedup = if client_msg_id.is_empty() {
                String::new()
            } else {
                format!("{}:{from}{client_msg_id}", from.len())
            };
            let keys = UserKeys::new(prefix, to);
            let mut cmd = evalsha(scripts, ScriptId::Commit, &keys.keys);
            cmd.arg(dedup)
                .arg(msg_id.to_string())
                .arg(&**from)
                .arg(&**payload)
                .arg(ts_ms.min(&MAX_OFFSET))
                .arg(config.buffer_max)
                .arg(ttl)
                .arg(config.dedup_max)
                .arg(min_ts(*ts_ms).min(MAX_OFFSET));
            (cmd, Kind::Commit)
        }
        Request::AckUpTo { user, up_to } => {
            let keys = UserKeys::new(prefix, user);
            let mut cmd = evalsha(scripts, ScriptId::AckUpTo, &keys.keys);
            cmd.arg((*up_to).min(MAX_OFFSET)).arg(ttl);
            (cmd, Kind::Acked)
        }
        Request::AckIds { user, msg_ids } => {
            if msg_ids.is_empty() {
                return Ok(Encoded::Answer(Reply::AckedIds(0)));
            }
            if msg_ids.len() > MAX_ACK_IDS {
                return Err(StoreError::TooLarge("msg_ids"));
            }
            let keys = UserKeys::new(prefix, user);
            let mut cmd = evalsha(scripts, ScriptId::AckIds, &keys.keys);
            cmd.arg(ttl);
            for id in msg_ids.iter() {
                cmd.arg(id.to_string());
            }
            (cmd, Kind::AckedIds)
        }
        Request::Replay {
            user,
            after,
            limit,
            now_ms,
        } => {
            let max = config.replay_batch_max;
            let limit = match *limit as usize {
                0 => max,
                n => n.min(max),
            };
            let keys = UserKeys::new(prefix, user);
            let mut cmd = evalsha(scripts, ScriptId::Replay, &keys.keys);
            cmd.arg((*after).min(MAX_OFFSET))
                .arg(limit)
                .arg(config.buffer_max)
                .arg(min_ts(*now_ms).min(MAX_OFFSET))
                .arg(ttl)
                .arg(config.replay_max_bytes);
            (cmd, Kind::Replay)
        }
        Request::Head { user } => {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(key(prefix, user, "meta"))
                .arg("head")
                .arg("acked")
                .arg("lost");
            (cmd, Kind::Head)
        }
        Request::Trim { user, now_ms } => {
            let keys = UserKeys::new(prefix, user);
            let mut cmd = evalsha(scripts, ScriptId::Trim, &keys.keys);
            cmd.arg(config.buffer_max)
                .arg(min_ts(*now_ms).min(MAX_OFFSET));
            (cmd, Kind::Trimmed)
        }
        Request::SetSession { user, record } => {
            if record.node.is_empty() {
                return Err(StoreError::BadRequest("empty node id"));
            }
            let k = [key(prefix, user, "sess")];
            let mut cmd = evalsha(scripts, ScriptId::SessionSet, &k);
            cmd.arg(&*record.node)
                .arg(record.shard)
                .arg(record.conn.to_string())
                .arg(record.connected_at_ms.to_string())
                .arg(config.session_ttl_sec);
            (cmd, Kind::Session)
        }
        Request::RefreshSession { user, node, conn } => {
            if node.is_empty() {
                return Err(StoreError::BadRequest("empty node id"));
            }
            let k = [key(prefix, user, "sess")];
            let mut cmd = evalsha(scripts, ScriptId::SessionRefresh, &k);
            cmd.arg(&**node)
                .arg(conn.to_string())
                .arg(config.session_ttl_sec);
            (cmd, Kind::Owned)
        }
        Request::RemoveSession { user, node, conn } => {
            if node.is_empty() {
                return Err(StoreError::BadRequest("empty node id"));
            }
            let k = [key(prefix, user, "sess")];
            let mut cmd = evalsha(scripts, ScriptId::SessionRemove, &k);
            cmd.arg(&**node).arg(conn.to_string());
            (cmd, Kind::Owned)
        }
        Request::GetSession { user } => {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(key(prefix, user, "sess"))
                .arg("node")
                .arg("shard")
                .arg("conn")
                .arg("at");
            (cmd, Kind::Session)
        }
    };
    cmd.write_packed_command(buf);
    Ok(Encoded::Command(kind))
}

// ----- decoding -------------------------------------------------------------------------------

/// An integer answer (Redis returns Lua numbers as integers, hash fields as strings).
fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// An optional number: `Nil` (missing field) is 0.
fn num_or_zero(v: &Value) -> Option<u64> {
    match v {
        Value::Nil => Some(0),
        v => num(v),
    }
}

fn text(v: Value) -> Option<Box<str>> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok().map(String::into_boxed_str),
        Value::SimpleString(s) => Some(s.into_boxed_str()),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Box<[u8]>> {
    match v {
        Value::BulkString(b) => Some(b.into_boxed_slice()),
        Value::SimpleString(s) => Some(s.into_bytes().into_boxed_slice()),
        _ => None,
    }
}

fn array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

fn decode(kind: Kind, v: Value) -> Result<Reply, StoreError> {
    let bad = StoreError::BadReply;
    match kind {
        Kind::Commit => {
            let a = array(v).ok_or(bad("commit: not an array"))?;
            let [dup, msg_id, offset] =
                <[Value; 3]>::try_from(a).map_err(|_| bad("commit: arity"))?;
            Ok(Reply::Commit(CommitReply {
                duplicate: num(&dup).ok_or(bad("commit: dup"))? == 1,
                msg_id: num(&msg_id).ok_or(bad("commit: msg id"))?,
                offset: num(&offset).ok_or(bad("commit: offset"))?,
            }))
        }
        Kind::Acked => Ok(Reply::Acked(num(&v).ok_or(bad("ack: not a number"))?)),
        Kind::AckedIds => Ok(Reply::AckedIds(
            num(&v).ok_or(bad("ack ids: not a number"))? as u32,
        )),
        Kind::Trimmed => Ok(Reply::Trimmed(
            num(&v).ok_or(bad("trim: not a number"))? as u32
        )),
        Kind::Owned => Ok(Reply::Owned(
            num(&v).ok_or(bad("owned: not a number"))? == 1,
        )),
        Kind::Head => {
            let a = array(v).ok_or(bad("head: not an array"))?;
            Ok(Reply::Head(log_head(&a).ok_or(bad("head: fields"))?))
        }
        Kind::Replay => {
            let a = array(v).ok_or(bad("replay: not an array"))?;
            if a.len() < 4 || (a.len() - 4) % 5 != 0 {
                return Err(bad("replay: arity"));
            }
            let head = log_head(&a[..3]).ok_or(bad("replay: head"))?;
            let more = num(&a[3]).ok_or(bad("replay: more"))? == 1;
            let mut entries = Vec::with_capacity((a.len() - 4) / 5);
            let mut it = a.into_iter().skip(4);
            while let (Some(off), Some(mid), Some(from), Some(payload), Some(ts)) =
                (it.next(), it.next(), it.next(), it.next(), it.next())
            {
                entries.push(LogEntry {
                    offset: num(&off).ok_or(bad("replay: offset"))?,
                    msg_id: num(&mid).ok_or(bad("replay: msg id"))?,
                    from: text(from).ok_or(bad("replay: from"))?,
                    payload: bytes(payload).ok_or(bad("replay: payload"))?,
                    ts_ms: num(&ts).ok_or(bad("replay: ts"))?,
                });
            }
            Ok(Reply::Replay {
                head,
                more,
                entries,
            })
        }
        Kind::Session => {
            let a = array(v).ok_or(bad("session: not an array"))?;
            let [node, shard, conn, at] =
                <[Value; 4]>::try_from(a).map_err(|_| bad("session: arity"))?;
            if node == Value::Nil {
                return Ok(Reply::Session(None));
            }
            Ok(Reply::Session(Some(SessionRecord {
                node: text(node).ok_or(bad("session: node"))?,
                shard: num_or_zero(&shard).ok_or(bad("session: shard"))? as u32,
                conn: num_or_zero(&conn).ok_or(bad("session: conn"))?,
                connected_at_ms: num_or_zero(&at).ok_or(bad("session: at"))?,
            })))
        }
    }
}

fn log_head(a: &[Value]) -> Option<LogHead> {
    match a {
        [head, acked, lost] => Some(LogHead {
            head: num_or_zero(head)?,
            acked: num_or_zero(acked)?,
            lost: num_or_zero(lost)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_commit_and_session_shapes() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"18446744073709551615".to_vec()),
            Value::Int(7),
        ]);
        assert_eq!(
            decode(Kind::Commit, v),
            Ok(Reply::Commit(CommitReply {
                msg_id: u64::MAX,
                offset: 7,
                duplicate: true
            }))
        );
        let none = Value::Array(vec![Value::Nil, Value::Nil, Value::Nil, Value::Nil]);
        assert_eq!(decode(Kind::Session, none), Ok(Reply::Session(None)));
        assert!(matches!(
            decode(Kind::Replay, Value::Array(vec![Value::Int(1)])),
            Err(StoreError::BadReply(_))
        ));
    }

    #[test]
    fn refuses_bad_users_and_oversized_requests_before_redis() {
        let config = StoreConfig {
            max_payload_bytes: 4,
            ..StoreConfig::default()
        };
        let scripts = Scripts::new();
        let mut buf = Vec::new();
        let bad_user = Request::Head {
            user: "a{b}".into(),
        };
        assert!(matches!(
            encode(&config, &scripts, &bad_user, &mut buf),
            Err(StoreError::BadUser)
        ));
        let big = Request::Commit {
            to: "bob".into(),
            from: "alice".into(),
            client_msg_id: "c1".into(),
            msg_id: 1,
            payload: b"12345".to_vec().into_boxed_slice(),
            ts_ms: 1,
        };
        assert!(matches!(
            encode(&config, &scripts, &big, &mut buf),
            Err(StoreError::TooLarge("max_payload_bytes"))
        ));
        let many = Request::AckIds {
            user: "bob".into(),
            msg_ids: vec![1; MAX_ACK_IDS + 1].into_boxed_slice(),
        };
        assert!(matches!(
            encode(&config, &scripts, &many, &mut buf),
            Err(StoreError::TooLarge("msg_ids"))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let shared = Arc::new(BridgeShared::new(vec![]));
        let config = Arc::new(StoreConfig {
            reconnect_base_ms: 10,
            reconnect_max_ms: 100,
            ..StoreConfig::default()
        });
        let b = Bridge::new(shared, config);
        let d1 = b.backoff(1).as_millis();
        let d10 = b.backoff(10).as_millis();
        assert!((10..20).contains(&d1), "{d1}");
        assert!((100..110).contains(&d10), "{d10}");
    }
}
