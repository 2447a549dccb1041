//! Draining the node on SIGTERM (or SIGINT):
//!
//! 0. A clustered node first asks control to drain it (`cluster::on_sigterm`).
//! 1. The main thread sets the node's drain flag ([`Node::start_drain`]): `/readyz` answers
//!    503 and every new handshake gets 503 + `Retry-After`.
//! 2. Each shard ([`pace`]) sends every client a `drain` frame (deadline, reason, resume token)
//!    then closes it 4007, at its share of `DRAIN_RATE` per second — paced, so the clients'
//!    reconnect storm toward the new owner is spread out too.
//! 3. The main thread ([`wait_and_drain`]) exits the process once no client is left, at
//!    `DRAIN_TIMEOUT_SEC`, or at a second signal.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use glommio::timer::sleep;
use rtc_protocol::close;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::metrics::Counter;
use crate::shard::{Node, Shard};

/// Drain pacing tick.
pub const DRAIN_TICK: Duration = Duration::from_millis(10);
/// How long after the last close the process lingers so the shards flush the close frames.
const FLUSH_GRACE: Duration = Duration::from_millis(100);

/// Blocks the main thread until SIGTERM/SIGINT, drains, and returns the exit code.
pub fn wait_and_drain(node: &Node) -> anyhow::Result<i32> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let first = signals.forever().next();
    tracing::info!(signal = ?first, "draining");
    crate::cluster::on_sigterm(node);
    node.start_drain();
    let deadline = Instant::now() + Duration::from_secs(node.config.drain_timeout_sec);
    loop {
        if node.live.load(Ordering::Acquire) == 0 {
            tracing::info!("drained: no client left");
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                left = node.live.load(Ordering::Acquire),
                "drain deadline reached"
            );
            break;
        }
        if signals.pending().next().is_some() {
            tracing::warn!("second signal: exiting without waiting for the drain");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(FLUSH_GRACE);
    Ok(0)
}

/// After SIGTERM: every client gets `drain` then close 4007, paced at this shard's share of
/// `DRAIN_RATE`.
pub async fn pace(shard: Rc<Shard>) {
    while !shard.node.is_draining() {
        sleep(Duration::from_millis(20)).await;
    }
    let per_tick = f64::from(shard.node.config.drain_rate) / shard.node.shards as f64
        * DRAIN_TICK.as_secs_f64();
    let mut budget = 0.0f64;
    loop {
        budget = (budget + per_tick).min(per_tick.max(1.0) * 10.0);
        let mut victims = Vec::new();
        {
            let conns = shard.conns.borrow();
            for c in conns.values() {
                if budget < 1.0 {
                    break;
                }
                if c.closing_since().is_none() && !c.drain_sent.get() {
                    victims.push(c.clone());
                    budget -= 1.0;
                }
            }
        }
        for c in victims {
            c.drain_sent.set(true);
            shard.session.send_drain(&shard, &c);
            shard.metrics.inc(Counter::Close4007);
            c.request_close(close::DRAINED);
        }
        sleep(DRAIN_TICK).await;
    }
}
