//! The pure per-shard session core: users, offsets, resume logs, retry dedup, outbound
//! windows and the slow-consumer policy of the users whose **home shard** this is.
//!
//! One [`SessionCore`] per shard, used from that shard's thread only. It does no I/O, reads no
//! clock and draws no randomness (quinn style: `handle`-like calls with `now_ms` in,
//! `poll_*` out); the glommio runtime is the thin shell that owns sockets, encodes frames and
//! routes between shards. See `gateway/LIFECYCLE.md` for the connection state machine.
//!
//! # Layout
//! - `limits.rs` — [`SessionLimits`]: every bound, with a named default and `validate()`.
//! - `types.rs` — the data in and out: [`Message`], [`Commit`], [`Attach`], [`Outbound`],
//!   [`Event`], [`SessionError`], [`Counters`], [`Gauges`], [`MsgIdGen`].
//! - `user.rs` — per-user / per-connection state (private), sized for idle memory.
//! - `engine.rs` — [`SessionCore`], the state machine.
//!
//! # Model
//! For each user it is home for, the shard keeps: the **head** (last offset assigned; offsets
//! start at 1 and only grow), the **resume log** (unacked messages, contiguous offsets, at
//! most `buffer_max` entries / `log_max_bytes`, each living `resume_ttl_ms`), the cumulative
//! **acked** offset, a **dedup memory** of `(from, clientMsgId) → (msgId, offset)` and at most
//! one attached **connection**.
//!
//! A connection has no queue of its own: its outbound buffer is the window of the user's log
//! it has not been handed yet (a cursor), so a message is stored once whether or not the user
//! is connected, replay costs nothing, and an idle connection holds no allocation. The window
//! of *live* messages (committed after the attach) is bounded by `per_conn_buffer_size`
//! messages and `per_conn_buffer_bytes`; beyond that the oldest unsent live message is dropped
//! for this connection (still in the log: the client can resume it), `drops_buffer_full`
//! counts it and a [`Outbound::Gap`] tells the client in stream order. A connection that keeps
//! dropping without a completed write (more than `slow_consumer_max_drops` drops, or for
//! `slow_consumer_timeout_ms`) gets [`Event::Close`] with [`CloseReason::SlowConsumer`] (4005).
//!
//! # How the runtime drives it
//! | runtime sees | it calls | and then |
//! |---|---|---|
//! | a `message` for user `to` whose home is this shard (local sender, or from the SPSC ring / relay) | [`SessionCore::commit`]`(to, from, client_msg_id, payload, now)` | answers the sender `sent {clientMsgId, msgId, offset, to}` ([`Commit::sent`] gives it as data for another shard, [`Sent::frame`] the frame) — for `Committed` and `Duplicate` alike |
//! | an authenticated upgrade for `user` (`lastOffset` from the query) | [`SessionCore::attach`] | closes `replaced` with 4002, sends `welcome {offset: head_offset}`, then polls (a `Writable` is queued when there is a replay; the stream starts with a `gap` when `resume_gap` is set); may close 4004 on [`Resume::Ahead`] |
//! | `ack {upTo}` / `ack {msgIds}` | [`SessionCore::ack_up_to`] / [`SessionCore::ack_ids`] | — |
//! | [`Event::Writable`] or a finished write with more pending | [`SessionCore::poll_transmit`]`(conn, max_bytes, &mut out)` | encodes each [`Outbound`] (`item.frame().encode(buf)`: `message` / `gap`) into one write |
//! | a write completed | [`SessionCore::handle_written`] | polls again if it returned `true` |
//! | [`Event::Close`] | — | sends the close code, then [`SessionCore::detach`] |
//! | the socket closed (any reason, incl. idle timeout / drain) | [`SessionCore::detach`] | — |
//! | a timer, e.g. every second | [`SessionCore::expire`]`(now, budget)` | — |
//! | after any call above | [`SessionCore::poll_event`] until `None` | — |
//!
//! Errors ([`SessionError`]) are answers, not failures: `commit` → `TooLarge` is an `error`
//! frame `too_large` to the sender, `TooManyUsers` an `error` `unavailable`; `attach` →
//! `TooManyUsers` is a close 1013 TRY_AGAIN_LATER, `ConnInUse` a runtime bug.
//!
//! Counters: [`SessionCore::counters`] (monotonic, merge across shards with
//! [`Counters::merge`]), sizes: [`SessionCore::gauges`].
//!
//! # Delivery guarantees kept here
//! - Appending to the recipient's log is the commit point; offsets per user are strictly
//!   increasing (also across a dropped-and-recreated record: a shard-wide floor).
//! - Each connection sees its user's messages in commit order, each at most once per
//!   connection, with a `gap` wherever something was skipped (window drop, log trim).
//! - A resume from `lastOffset = n` replays exactly the unacked entries after `n` still in the
//!   log and reports `(n+1 ..= first kept - 1)` as `resume_gap` when some are gone (offsets the
//!   client acked are never reported missing).
//! - Offline logs are kept until the TTL, or until the shard's offline byte budget evicts
//!   the least recently touched ones (counted).
//!
//! User ids are taken as given: the runtime validates them (`protocol::user`) before calling.

mod engine;
mod limits;
mod types;
mod user;

#[cfg(test)]
mod tests;

pub use engine::SessionCore;
pub use limits::{
    LimitsError, SessionLimits, BUFFER_MAX, DEDUP_MAX, LOG_MAX_BYTES, MAX_OFFLINE_LOG_BYTES,
    MAX_USERS_PER_SHARD, MESSAGE_OVERHEAD, PER_CONN_BUFFER_BYTES, PER_CONN_BUFFER_SIZE,
    RESUME_TTL_SEC, SLOW_CONSUMER_MAX_DROPS, SLOW_CONSUMER_TIMEOUT_MS,
};
pub use types::{
    Attach, CloseReason, Commit, ConnId, Counters, Event, Gauges, Message, MsgIdGen, Outbound,
    Placed, Resume, Sent, SessionError, MSG_ID_COUNTER_BITS,
};
