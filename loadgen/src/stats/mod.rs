//! What a worker counts, and the JSON lines it streams to the parent.
//!
//! A worker writes one [`WorkerLine::Tick`] per second (counter deltas, the interval's latency
//! histogram, its own RSS) and one [`WorkerLine::Done`] at the end (whole-run histograms and
//! totals). Counters are plain integers on the worker's single thread: nothing is shared
//! between workers, the parent only adds.

pub mod histogram;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::verify::VerifySummary;

/// Most distinct error kinds a worker keeps apart; further kinds count as `other`.
pub const MAX_ERROR_KINDS: usize = 64;

/// Event counters (a total, or the delta of one second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// TCP connects started.
    pub connect_attempts: u64,
    /// Connections that completed the WebSocket handshake (and the welcome, where there is one).
    pub connects: u64,
    /// Connections that ended (by us or by the server).
    pub disconnects: u64,
    /// Application messages written (direct messages or echo requests).
    pub sent: u64,
    /// `sent` acknowledgements received from the server (the commit point).
    pub acked: u64,
    /// Messages delivered to a recipient (or echoed back), counted once per message.
    pub delivered: u64,
    /// Deliveries the client dropped as duplicates by offset (expected after a resume).
    pub duplicates_dropped: u64,
    /// `gap` frames received (offsets the server dropped for a slow consumer).
    pub gaps: u64,
    /// Reconnects (after a churn disconnect or a lost connection).
    pub reconnects: u64,
    /// Reconnects that completed (`welcome`) presenting a resume token (the node accepted the
    /// connection; whether the token was still valid is the node's `resume_success` figure).
    pub resumes: u64,
    /// Server WebSocket pings answered with a pong.
    pub pings_answered: u64,
    /// Sends that were due but not written within the run (the server could not keep up).
    pub send_backlog: u64,
    /// Messages answered with an `error` frame (e.g. `unavailable` while Redis is down):
    /// refused, not committed, not retried (a later retry would arrive out of order).
    #[serde(default)]
    pub nacked: u64,
    /// Messages never answered: neither `sent` nor `error` by the end of the run (and, after
    /// a lost connection, not answered after being sent again either).
    #[serde(default)]
    pub unacked: u64,
    /// Messages written again on a new connection because the old one was lost before their
    /// `sent` arrived (same `clientMsgId`: the server deduplicates one that did commit).
    #[serde(default)]
    pub resent: u64,
    /// `drain` frames received (the node asked us to move; its 4007 close follows).
    #[serde(default)]
    pub drains: u64,
    /// `redirect` frames followed during a connect (4003: the node does not own the user).
    #[serde(default)]
    pub redirects: u64,
}

impl Counters {
    /// Adds `other` field by field.
    pub fn add(&mut self, o: &Counters) {
        self.connect_attempts += o.connect_attempts;
        self.connects += o.connects;
        self.disconnects += o.disconnects;
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.duplicates_dropped += o.duplicates_dropped;
        self.gaps += o.gaps;
        self.reconnects += o.reconnects;
        self.resumes += o.resumes;
        self.pings_answered += o.pings_answered;
        self.send_backlog += o.send_backlog;
        self.nacked += o.nacked;
        self.unacked += o.unacked;
        self.resent += o.resent;
        self.drains += o.drains;
        self.redirects += o.redirects;
    }

    /// `self - earlier`, field by field (counters only grow).
    pub fn since(&self, e: &Counters) -> Counters {
        Counters {
            connect_attempts: self.connect_attempts - e.connect_attempts,
            connects: self.connects - e.connects,
            disconnects: self.disconnects - e.disconnects,
            sent: self.sent - e.sent,
            acked: self.acked - e.acked,
            delivered: self.delivered - e.delivered,
            duplicates_dropped: self.duplicates_dropped - e.duplicates_dropped,
            gaps: self.gaps - e.gaps,
            reconnects: self.reconnects - e.reconnects,
            resumes: self.resumes - e.resumes,
            pings_answered: self.pings_answered - e.pings_answered,
            send_backlog: self.send_backlog.saturating_sub(e.send_backlog),
            nacked: self.nacked - e.nacked,
            unacked: self.unacked.saturating_sub(e.unacked),
            resent: self.resent - e.resent,
            drains: self.drains - e.drains,
            redirects: self.redirects - e.redirects,
        }
    }
}

/// Errors counted by kind (`connect_refused`, `http_503`, `close_4005`, …), bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    /// Counts one error of `kind`; past [`MAX_ERROR_KINDS`] kinds it counts as `other`.
    pub fn count(&mut self, kind: &str) {
        self.add_n(kind, 1);
    }

    /// Adds `n` errors of `kind`.
    pub fn add_n(&mut self, kind: &str, n: u64) {
        if let Some(v) = self.0.get_mut(kind) {
            *v += n;
        } else if self.0.len() < MAX_ERROR_KINDS {
            self.0.insert(kind.to_owned(), n);
        } else {
            *self.0.entry("other".to_owned()).or_insert(0) += n;
        }
    }

    /// Adds every kind of `other`.
    pub fn add(&mut self, other: &ErrorCounts) {
        for (k, v) in &other.0 {
            self.add_n(k, *v);
        }
    }

    /// All errors of all kinds.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `self - earlier` per kind (kinds with no new errors are left out).
    pub fn since(&self, earlier: &ErrorCounts) -> ErrorCounts {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let d = v - earlier.0.get(k).copied().unwrap_or(0);
            if d > 0 {
                out.insert(k.clone(), d);
            }
        }
        ErrorCounts(out)
    }
}

/// How users came back after connections lost without our asking (a node killed, drained
/// or redirecting; the network): wall-clock instants so workers' figures merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// Connections lost (each starts one reconnect).
    pub lost_connections: u64,
    /// When the first connection was lost (Unix ms; 0: none was).
    pub first_loss_unix_ms: u64,
    /// When the last user away came back, leaving nobody reconnecting (Unix ms; 0: never).
    pub all_back_unix_ms: u64,
    /// Longest single outage: connection lost → `welcome` on the new connection (ms).
    pub max_outage_ms: u64,
    /// Users that lost a connection and had not reconnected when they stopped trying (every
    /// attempt failed, or the run ended first).
    pub users_not_back: u64,
}

impl Recovery {
    /// Merges another worker's figures into this one.
    pub fn merge(&mut self, o: &Recovery) {
        self.lost_connections += o.lost_connections;
        if o.first_loss_unix_ms != 0
            && (self.first_loss_unix_ms == 0 || o.first_loss_unix_ms < self.first_loss_unix_ms)
        {
            self.first_loss_unix_ms = o.first_loss_unix_ms;
        }
        self.all_back_unix_ms = self.all_back_unix_ms.max(o.all_back_unix_ms);
        self.max_outage_ms = self.max_outage_ms.max(o.max_outage_ms);
        self.users_not_back += o.users_not_back;
    }

    /// First lost connection → every user connected again (ms), when everyone came back.
    pub fn all_resumed_ms(&self) -> Option<u64> {
        (self.lost_connections > 0 && self.users_not_back == 0 && self.all_back_unix_ms != 0).then(
            || {
                self.all_back_unix_ms
                    .saturating_sub(self.first_loss_unix_ms)
            },
        )
    }
}

/// One line a worker writes to its stdout (JSON, one per line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum WorkerLine {
    /// Per-second progress.
    Tick(Box<Tick>),
    /// The worker finished; whole-run figures.
    Done(Box<WorkerFinal>),
}

/// One second of one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tick {
    /// Worker index.
    pub worker: usize,
    /// Seconds since the run's common start (1 = the first second).
    pub sec: u64,
    /// Connections open at the end of the second.
    pub connected: u64,
    /// Counter deltas over the second.
    pub delta: Counters,
    /// Error deltas over the second.
    pub errors: ErrorCounts,
    /// Message latencies recorded during the second ([`histogram::encode`]).
    pub latency: String,
    /// The worker's resident memory (bytes).
    pub rss: u64,
}

/// A worker's whole-run figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerFinal {
    /// Worker index.
    pub worker: usize,
    /// Users this worker drove.
    pub users: u64,
    /// Totals.
    pub counters: Counters,
    /// Error totals.
    pub errors: ErrorCounts,
    /// End-to-end message latency in µs, measured from the scheduled send time.
    pub latency: String,
    /// Scheduled send → `sent` ack from the server, µs.
    pub ack_latency: String,
    /// TCP connect start → ready (welcome received, or 101 where there is no welcome), µs.
    pub handshake: String,
    /// Most connections open at once.
    pub peak_connected: u64,
    /// The worker's RSS before it opened any connection (bytes).
    pub rss_before: u64,
    /// The worker's RSS when its connections were all open (bytes).
    pub rss_connected: u64,
    /// Connections open when `rss_connected` was read.
    pub conns_at_rss: u64,
    /// Seconds from the worker's start (its first connect) to the last connect completed
    /// before the measured phase.
    pub ramp_secs: f64,
    /// Seconds the measured (send/hold) phase lasted.
    pub measure_secs: f64,
    /// Start of the measured phase, seconds after the worker started.
    pub measure_start_secs: f64,
    /// End of the measured phase, seconds after the worker started.
    pub measure_end_secs: f64,
    /// Recovery from lost connections.
    #[serde(default)]
    pub recovery: Recovery,
    /// Sequence verification, when `--verify` was given.
    pub verify: Option<VerifySummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_bounded() {
        let mut e = ErrorCounts::default();
        for i in 0..(MAX_ERROR_KINDS + 10) {
            e.count(&format!("k{i}"));
        }
        assert!(e.0.len() <= MAX_ERROR_KINDS + 1);
        assert_eq!(e.total(), (MAX_ERROR_KINDS + 10) as u64);
        assert_eq!(e.0.get("other"), Some(&10));
    }

    #[test]
    fn counter_delta_and_sum_agree() {
        let a = Counters {
            sent: 5,
            delivered: 3,
            ..Counters::default()
        };
        let mut b = a;
        b.add(&Counters {
            sent: 2,
            ..Counters::default()
        });
        assert_eq!(b.since(&a).sent, 2);
        assert_eq!(b.since(&a).delivered, 0);
    }
}
