//! The cross-node relay on the message path (`KAFKA_BROKERS`, with `REDIS_URL` and a control
//! ring): how a message reaches a recipient connected to another node.
//!
//! 1. The sender's node commits to Redis on `shard_of(to)` (`datapath.rs`) and answers `sent`.
//! 2. If the ring's owner of `to` is another node, that shard then produces the message once
//!    to the owner's delivery topic, keyed by `to` (one user's records keep their order). A
//!    full relay ring or a failed produce is counted (`drops{relay_ring_full}`,
//!    `drops{relay_produce_failed}`) and not retried: the message is in Redis, and the owner
//!    fetches it at its next hole or reconcile.
//! 3. The owner consumes it on the recipient's home shard. Connected here: at `head + 1` it is
//!    cached and delivered; at or below the head it is a repeat and skipped; above `head + 1`
//!    the missing offsets are read from Redis first (`Replay` after the cached head, which
//!    also brings this message), so the connection still gets every offset in order.
//!    Not connected here: skipped (its next attach replays from Redis).
//! 4. Reconcile: on every `RelayEvent::Restored` (after a loss, and once at start) each
//!    connected user of the shard, and every user right after its `welcome`, is checked
//!    against its Redis head (`Head`), and what the cache lacks is replayed from Redis. This
//!    covers records lost with a broker, failed produces, and messages committed between an
//!    attach's replay and its attach.
//!
//! 5. Anti-entropy: every [`SWEEP_INTERVAL`] each shard also checks up to [`SWEEP_BUDGET`]
//!    of its connected users (round robin) the same way. It bounds how long a message can
//!    stay undelivered when the relay drops records without reporting a loss — seen against
//!    tansu restarted with in-memory storage: after the restart each node's consumer was
//!    assigned only 4 of its topic's 8 partitions (`relay consumer assigned partitions=4`),
//!    so records on the other partitions were never consumed, with no `Lost` event.
//!
//! Delivery is at-least-once in per-recipient offset order: a repeat can reach the client
//! across connections (clients drop duplicates by offset), never out of order within one.

use std::rc::Rc;

use glommio::channels::shared_channel::ConnectedReceiver;
use rtc_protocol::relay::{DestKind, Envelope, EnvelopeKind};

use super::{datapath, Shard};
use crate::metrics::Counter;
use crate::relay::{ProduceRequest, RelayEvent, RelayInbound};

/// How often each shard runs its anti-entropy check.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Connected users one shard checks per sweep (one Redis `HMGET` each, pipelined).
pub const SWEEP_BUDGET: usize = 256;

/// The ring's owner of `user` when it is another node (`None`: this node, or no ring).
pub fn owner_elsewhere(shard: &Shard, user: &str) -> Option<String> {
    let me = shard.node.config.node_id.as_str();
    shard.placement.with_ring(|ring| {
        let owner = ring?.owner(user)?;
        (owner.id != me).then(|| owner.id.clone())
    })
}

/// Produces a committed message to `owner`'s delivery topic (once; failures are counted).
#[allow(clippy::too_many_arguments)]
pub fn produce(
    shard: &Shard,
    owner: &str,
    to: &str,
    from: &str,
    client_msg_id: &str,
    msg_id: u64,
    offset: u64,
    ts: u64,
    payload: &[u8],
) {
    let Some(relay) = shard.relay.as_ref() else {
        return;
    };
    let env = Envelope {
        kind: EnvelopeKind::Message,
        dest_kind: DestKind::User,
        dest: to,
        from,
        client_msg_id,
        msg_id,
        offset,
        ts,
        payload,
    };
    match ProduceRequest::envelope(owner, &env, offset) {
        Ok(req) => {
            if relay.try_send(req).is_err() {
                shard.metrics.inc(Counter::DropRelayRingFull);
            }
        }
        Err(e) => {
            shard.metrics.inc(Counter::DropRelayProduceFailed);
            tracing::warn!(shard = shard.id, error = %e, "relay envelope refused");
        }
    }
}

/// The shard's relay task: consumed records, produce failures, health events.
pub async fn run(shard: Rc<Shard>, rx: ConnectedReceiver<RelayInbound>) {
    while let Some(item) = rx.recv().await {
        match item {
            RelayInbound::Deliveries(batch) => {
                for d in &batch {
                    match d.envelope() {
                        Ok(env) => deliver(&shard, &env),
                        Err(e) => {
                            tracing::debug!(shard = shard.id, error = %e, "undecodable record")
                        }
                    }
                }
            }
            RelayInbound::ProduceFailed(failures) => {
                shard
                    .metrics
                    .add(Counter::DropRelayProduceFailed, failures.len() as u64);
            }
            RelayInbound::Event(RelayEvent::Lost { reason }) => {
                shard.metrics.inc(Counter::RelayLost);
                tracing::warn!(shard = shard.id, %reason, "relay lost; reconciling when restored");
            }
            RelayInbound::Event(RelayEvent::Restored) => reconcile_all(&shard),
        }
    }
}

fn deliver(shard: &Shard, env: &Envelope<'_>) {
    if env.kind != EnvelopeKind::Message || env.dest_kind != DestKind::User {
        return;
    }
    datapath::place(
        shard,
        env.dest,
        crate::session::Message {
            msg_id: env.msg_id,
            offset: env.offset,
            from: Rc::from(env.from),
            payload: env.payload.into(),
            ts_ms: env.ts,
        },
    );
}

/// Anti-entropy: checks up to [`SWEEP_BUDGET`] connected users per [`SWEEP_INTERVAL`],
/// round robin over the shard's connections.
pub async fn sweep(shard: Rc<Shard>) {
    let mut cursor = 0usize;
    loop {
        glommio::timer::sleep(SWEEP_INTERVAL).await;
        let Some(link) = shard.store.as_ref() else {
            return;
        };
        let users: Vec<Rc<str>> = {
            let conns = shard.conns.borrow();
            let n = conns.len();
            if n == 0 {
                continue;
            }
            cursor %= n;
            let picked: Vec<Rc<str>> = conns
                .values()
                .skip(cursor)
                .chain(conns.values().take(cursor))
                .take(SWEEP_BUDGET)
                .filter_map(|c| c.user.clone())
                .collect();
            cursor += SWEEP_BUDGET.min(n);
            picked
        };
        for user in users {
            datapath::reconcile(&shard, link, user);
        }
    }
}

/// Checks every connected user of the shard against its Redis head.
fn reconcile_all(shard: &Shard) {
    let Some(link) = shard.store.as_ref() else {
        return;
    };
    let users: Vec<Rc<str>> = shard
        .conns
        .borrow()
        .values()
        .filter_map(|c| c.user.clone())
        .collect();
    shard.metrics.inc(Counter::RelayReconcile);
    for user in users {
        datapath::reconcile(shard, link, user);
    }
}
