//! The ring follower thread: long-polls `GET /v1/ring?since=V&wait=S` and hands every newer
//! snapshot to the shards' mailboxes. Control answers a long-poll as soon as its version
//! passes `V`, so a change reaches the shards within one round trip plus the shards' check
//! interval.
//!
//! The version rule ([`VersionGate`]): newer versions are applied at once; the same version
//! is ignored; an *older* version is applied only when control gives it twice in a row — a
//! control that lost its state (in-memory, restarted) starts counting again, while a single
//! stale answer (a lagging replica) must not roll the node back.

use std::sync::Arc;
use std::time::Duration;

use rtc_ring::Ring;

use super::client::ControlClient;
use crate::shard::Node;

/// Seconds control may hold a long-poll (control caps it at its `MAX_LONG_POLL_SEC`).
pub const LONG_POLL_WAIT_SEC: u64 = 25;
/// Extra time over the wait before a long-poll counts as failed.
const LONG_POLL_SLACK: Duration = Duration::from_secs(10);
/// Pause before asking again to confirm an older version.
const CONFIRM_DELAY: Duration = Duration::from_millis(500);
/// First retry delay after a failure (doubled per failure up to [`MAX_BACKOFF`]).
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest retry delay after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What to do with a snapshot of some version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the shards.
    Apply,
    /// Already applied.
    Skip,
    /// Older than the applied one, seen once: ask again before believing it.
    Confirm,
}

/// The follower's version rule (pure: versions in, verdicts out).
#[derive(Debug, Default, Clone)]
pub struct VersionGate {
    applied: Option<u64>,
    older_seen: Option<u64>,
}

impl VersionGate {
    /// The version last applied.
    pub fn applied(&self) -> Option<u64> {
        self.applied
    }

    /// Whether the next request should be a plain read that confirms an older version.
    pub fn confirming(&self) -> bool {
        self.older_seen.is_some()
    }

    /// Judges a snapshot of version `v` (and records it when it is to be applied).
    pub fn offer(&mut self, v: u64) -> Verdict {
        let verdict = match self.applied {
            None => Verdict::Apply,
            Some(a) if v > a => Verdict::Apply,
            Some(a) if v == a => Verdict::Skip,
            Some(_) if self.older_seen == Some(v) => Verdict::Apply,
            Some(_) => {
                self.older_seen = Some(v);
                return Verdict::Confirm;
            }
        };
        self.older_seen = None;
        if verdict == Verdict::Apply {
            self.applied = Some(v);
        }
        verdict
    }
}

/// Runs forever (the process exits around it).
pub fn run(node: &Arc<Node>) {
    let Some(control) = node.cluster.control.clone() else {
        return;
    };
    let mut backoff = MIN_BACKOFF;
    let mut warned = false;
    loop {
        let (applied, confirming) = node.cluster.gate_state();
        let path = match applied {
            Some(v) if !confirming => format!("/v1/ring?since={v}&wait={LONG_POLL_WAIT_SEC}"),
            _ => "/v1/ring".to_owned(),
        };
        let timeout = Duration::from_secs(LONG_POLL_WAIT_SEC) + LONG_POLL_SLACK;
        let ring = match fetch(&control, &path, timeout) {
            Ok(r) => r,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "fetching the ring from control failed; retrying");
                    warned = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if warned {
            tracing::info!("ring follower reaches control again");
            warned = false;
        }
        backoff = MIN_BACKOFF;
        if node.cluster.offer(ring, &node.config.node_id) == Verdict::Confirm {
            std::thread::sleep(CONFIRM_DELAY);
        }
    }
}

/// `GET path` → a ring snapshot.
pub fn fetch(control: &ControlClient, path: &str, timeout: Duration) -> Result<Ring, String> {
    let body = control.get(path, timeout).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&body).map_err(|e| e.to_string())?;
    Ring::from_json(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_applies_same_skips_older_needs_a_repeat() {
        let mut g = VersionGate::default();
        assert_eq!(g.offer(3), Verdict::Apply);
        assert_eq!(g.offer(3), Verdict::Skip);
        assert_eq!(g.offer(5), Verdict::Apply);
        assert_eq!(g.offer(2), Verdict::Confirm);
        assert!(g.confirming());
        // A different older version does not confirm the first.
        assert_eq!(g.offer(1), Verdict::Confirm);
        assert_eq!(g.offer(1), Verdict::Apply);
        assert_eq!(g.applied(), Some(1));
        assert!(!g.confirming());
        // A stale answer followed by the current one changes nothing.
        assert_eq!(g.offer(0), Verdict::Confirm);
        assert_eq!(g.offer(1), Verdict::Skip);
        assert!(!g.confirming());
        assert_eq!(g.offer(0), Verdict::Confirm);
    }
}
