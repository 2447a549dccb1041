//! The per-shard ring: who this node serves, where to send the others, and the paced
//! rebalance drain after a ring change.
//!
//! Each shard holds its own [`Ring`] copy in a [`ShardRing`] (only that shard's thread
//! touches it, so a `RefCell` suffices) and swaps it whole when [`run`] finds a new one in
//! the shard's mailbox. Admission reads it without a lock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::timer::sleep;
use rtc_protocol::close;
use rtc_protocol::token::{sign_connect, ConnectClaims};
use rtc_ring::Ring;

use crate::drain::DRAIN_TICK;
use crate::metrics::Counter;
use crate::shard::{unix_ms, Node, Shard};

/// How often a shard looks at its ring mailbox (one atomic load when nothing changed).
pub const RING_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Lifetime of the connect token put in a redirect URL, seconds.
pub const REDIRECT_TOKEN_TTL_SEC: u64 = 60;

/// What to do with a new handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// This node serves the user.
    Serve,
    /// Another node owns the user: send `redirect {wsUrl}` then close 4003.
    Redirect(String),
    /// A connect token for another node, and no ring to say where that is: 401.
    Refuse,
}

/// One shard's ring and rebalance state.
#[derive(Debug, Default)]
pub struct ShardRing {
    /// The ring this shard places users under; `None` until the first one arrives (and on a
    /// standalone node): every user is served.
    ring: RefCell<Option<Ring>>,
    /// The mailbox delivery counter last looked at.
    seen: Cell<u64>,
    /// Connections whose users the current ring moved to another node, in the order they
    /// will be drained. Bounded by the shard's open connections (a subset of them).
    moving: RefCell<VecDeque<u64>>,
}

impl ShardRing {
    /// The version of the ring held (0 = none).
    pub fn version(&self) -> u64 {
        self.ring.borrow().as_ref().map_or(0, Ring::version)
    }

    /// Runs `f` with the ring this shard holds (`None`: standalone, or none received yet) —
    /// e.g. to route a message by `ring.owner(user)`.
    pub fn with_ring<R>(&self, f: impl FnOnce(Option<&Ring>) -> R) -> R {
        f(self.ring.borrow().as_ref())
    }

    /// Connections still to be drained for the last ring change.
    pub fn moving(&self) -> usize {
        self.moving.borrow().len()
    }

    /// Decides a new handshake for `user`. `token_for_other` is true when the user came with
    /// a valid connect token that names another node.
    pub fn admit(&self, node: &Node, user: &str, token_for_other: bool) -> Admission {
        let ring = self.ring.borrow();
        let owner = ring.as_ref().and_then(|r| r.owner(user).map(|o| (r, o)));
        match owner {
            Some((_, o)) if o.id == node.config.node_id => Admission::Serve,
            Some((r, o)) => Admission::Redirect(redirect_url(node, r.version(), o, user)),
            // No ring, or no active node in it: nobody else to send the user to.
            None if token_for_other => Admission::Refuse,
            None => Admission::Serve,
        }
    }
}

/// The owner's public URL with a fresh connect token for it (when `RING_SECRET` is set, so
/// the owner can verify it) or `?userId=` (no-token mode).
pub fn redirect_url(node: &Node, ring_version: u64, owner: &rtc_ring::Node, user: &str) -> String {
    if node.config.ring_secret.is_empty() {
        return with_query(&owner.url, "userId", user);
    }
    let claims = ConnectClaims {
        user: user.to_owned(),
        node: owner.id.clone(),
        ring_version,
        expires_at: unix_ms() / 1000 + REDIRECT_TOKEN_TTL_SEC,
    };
    with_query(&owner.url, "token", &sign_connect(&node.keys, &claims))
}

/// `url` with `key=value` appended to its query. Values here are user ids (charset
/// `[A-Za-z0-9_.:@-]`) and base64url tokens: nothing needs escaping.
fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// The shard's cluster task: takes new rings from the mailbox, swaps them in, and drains the
/// users they moved away, paced at this shard's share of `DRAIN_RATE`.
pub async fn run(shard: Rc<Shard>) {
    let node = shard.node.clone();
    if !node.cluster.clustered() {
        return;
    }
    let Some(mailbox) = node.cluster.mailboxes.get(shard.id) else {
        return;
    };
    let rate = f64::from(node.config.drain_rate) / node.shards.max(1) as f64;
    let burst = (rate * DRAIN_TICK.as_secs_f64()).max(1.0);
    let mut budget = 0.0f64;
    let mut last = Instant::now();
    loop {
        let seq = mailbox.seq();
        if seq != shard.placement.seen.get() {
            shard.placement.seen.set(seq);
            if let Some(ring) = mailbox.take() {
                swap(&shard, ring);
            }
        }
        if node.is_draining() {
            // SIGTERM: `drain::pace` drains everyone; a second pacer would double the rate.
            shard.placement.moving.borrow_mut().clear();
        }
        if shard.placement.moving.borrow().is_empty() {
            budget = 0.0;
            sleep(RING_CHECK_INTERVAL).await;
            last = Instant::now();
            continue;
        }
        let now = Instant::now();
        budget = (budget + rate * now.duration_since(last).as_secs_f64()).min(burst);
        last = now;
        while budget >= 1.0 {
            let Some(id) = shard.placement.moving.borrow_mut().pop_front() else {
                break;
            };
            if drain_moved(&shard, id) {
                budget -= 1.0;
            }
        }
        sleep(DRAIN_TICK).await;
    }
}

/// Swaps `ring` in and lists the connected users it moved away (users it gave back simply
/// are not on the new list).
fn swap(shard: &Shard, ring: Ring) {
    let me = shard.node.config.node_id.as_str();
    let mut moving: Vec<u64> = shard
        .conns
        .borrow()
        .values()
        .filter(|c| c.closing_since().is_none() && !c.drain_sent.get())
        .filter(|c| {
            c.user
                .as_deref()
                .and_then(|u| ring.owner(u))
                .is_some_and(|o| o.id != me)
        })
        .map(|c| c.id)
        .collect();
    moving.sort_unstable();
    let before = shard.placement.moving.borrow().len();
    tracing::debug!(
        shard = shard.id,
        version = ring.version(),
        moving = moving.len(),
        before,
        "ring swapped"
    );
    *shard.placement.moving.borrow_mut() = moving.into();
    if let Some(v) = shard.node.cluster.shard_versions.get(shard.id) {
        v.store(ring.version(), std::sync::atomic::Ordering::Release);
    }
    *shard.placement.ring.borrow_mut() = Some(ring);
}

/// Sends `drain` + 4007 to connection `id` if it is still open and its user still belongs
/// elsewhere. Returns whether it did.
fn drain_moved(shard: &Shard, id: u64) -> bool {
    let Some(conn) = shard.conns.borrow().get(&id).cloned() else {
        return false;
    };
    if conn.closing_since().is_some() || conn.drain_sent.get() {
        return false;
    }
    let Some(user) = conn.user.as_deref() else {
        return false;
    };
    if matches!(
        shard.placement.admit(&shard.node, user, false),
        Admission::Serve
    ) {
        return false;
    }
    conn.drain_sent.set(true);
    // The connection closes right after the frame: nothing is left to wait for.
    shard.session.send_drain_with(shard, &conn, "rebalance", 0);
    shard.metrics.inc(Counter::RebalanceDrain);
    shard.metrics.inc(Counter::Close4007);
    conn.request_close(close::DRAINED);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rtc_ring::{Diff, Node as RingNode};

    fn node(id: &str, secret: &str) -> Node {
        let config = Config {
            node_id: id.into(),
            ring_secret: secret.into(),
            ..Config::default()
        };
        Node::new(config, ([127, 0, 0, 1], 9000).into(), 1)
    }

    fn two_nodes() -> Ring {
        Ring::new(rtc_ring::DEFAULT_VNODES_PER_WEIGHT)
            .apply_all(&[
                Diff::AddNode(RingNode::new("a", 1, "ws://a:1/ws")),
                Diff::AddNode(RingNode::new("b", 1, "ws://b:2/ws")),
            ])
            .expect("ring")
    }

    fn user_of(ring: &Ring, id: &str) -> String {
        (0..10_000)
            .map(|i| format!("u{i}"))
            .find(|u| ring.owner(u).is_some_and(|n| n.id == id))
            .expect("a user")
    }

    #[test]
    fn without_a_ring_everyone_is_served_but_foreign_tokens() {
        let n = node("a", "");
        let r = ShardRing::default();
        assert_eq!(r.version(), 0);
        assert_eq!(r.admit(&n, "anyone", false), Admission::Serve);
        assert_eq!(r.admit(&n, "anyone", true), Admission::Refuse);
    }

    #[test]
    fn owned_users_are_served_others_redirected() {
        let ring = two_nodes();
        let (mine, theirs) = (user_of(&ring, "a"), user_of(&ring, "b"));
        let n = node("a", "");
        let r = ShardRing::default();
        *r.ring.borrow_mut() = Some(ring.clone());
        assert_eq!(r.version(), ring.version());
        assert_eq!(r.admit(&n, &mine, false), Admission::Serve);
        // A token for another node, for a user this ring gives us: served.
        assert_eq!(r.admit(&n, &mine, true), Admission::Serve);
        assert_eq!(
            r.admit(&n, &theirs, false),
            Admission::Redirect(format!("ws://b:2/ws?userId={theirs}"))
        );
    }

    #[test]
    fn redirect_carries_a_connect_token_for_the_owner() {
        let secret = "placement-test-secret-0123456789";
        let ring = two_nodes();
        let theirs = user_of(&ring, "b");
        let n = node("a", secret);
        let r = ShardRing::default();
        *r.ring.borrow_mut() = Some(ring.clone());
        let Admission::Redirect(url) = r.admit(&n, &theirs, false) else {
            panic!("expected a redirect");
        };
        let token = url.strip_prefix("ws://b:2/ws?token=").expect("token query");
        let keys = rtc_protocol::token::TokenKeys::new(secret.as_bytes(), None);
        let claims = rtc_protocol::token::verify_connect(&keys, token, unix_ms() / 1000)
            .expect("the owner can verify it");
        assert_eq!(claims.node, "b");
        assert_eq!(claims.user, theirs);
        assert_eq!(claims.ring_version, ring.version());
    }

    #[test]
    fn query_is_appended() {
        assert_eq!(
            with_query("ws://a/ws", "userId", "u1"),
            "ws://a/ws?userId=u1"
        );
        assert_eq!(
            with_query("ws://a/ws?x=1", "token", "t"),
            "ws://a/ws?x=1&token=t"
        );
    }
}
