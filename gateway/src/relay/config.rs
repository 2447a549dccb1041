//! [`RelayConfig`]: every relay knob, its default and its environment variable.

use std::time::Duration;

use super::RelayStartError;

/// Default broker list (`KAFKA_BROKERS`).
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// Default topic/group prefix (`KAFKA_TOPIC_PREFIX`).
pub const DEFAULT_PREFIX: &str = "rtc";
/// Default partitions per delivery topic (`KAFKA_PARTITIONS`): enough to spread a node's users
/// over a few consumer fetchers, few enough that an in-memory broker stays small.
pub const DEFAULT_PARTITIONS: i32 = 8;
/// Default shard → relay ring capacity, in produce requests (one ring per shard).
pub const DEFAULT_OUTBOUND_RING: usize = 4096;
/// Default relay → shard ring capacity, in batches (one ring per shard).
pub const DEFAULT_INBOUND_RING: usize = 256;
/// Default most records one consumer poll batch takes before handing them to the shards.
pub const DEFAULT_CONSUME_BATCH: usize = 512;
/// Default librdkafka producer queue bound (`queue.buffering.max.messages`).
pub const DEFAULT_PRODUCER_QUEUE: usize = 100_000;
/// Default time a produce may take before it is reported failed (`message.timeout.ms`).
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 5_000;
/// Default consumer group session timeout (`KAFKA_SESSION_TIMEOUT_MS`).
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 6_000;
/// Default consumer `fetch.wait.max.ms`: how long the broker may hold an empty fetch.
pub const DEFAULT_FETCH_WAIT_MS: u64 = 5;
/// Default producer `linger.ms`: 0 — send as soon as the previous request returns.
pub const DEFAULT_LINGER_MS: u64 = 0;
/// Default producer requests in flight per broker (`KAFKA_MAX_IN_FLIGHT`,
/// `max.in.flight.requests.per.connection`): 1 — while one produce request is out, new
/// records collect into the next one in librdkafka's queue, not in a saturated broker's
/// (see the module doc's measurements).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
/// Most requests in flight the idempotent producer allows (librdkafka's limit).
pub const MAX_IN_FLIGHT_IDEMPOTENT: u32 = 5;
/// Default librdkafka statistics interval (`KAFKA_STATS_MS`; 0 = off).
pub const DEFAULT_STATS_MS: u64 = 0;
/// Most extra librdkafka settings one `KAFKA_*_EXTRA` variable may carry.
pub const MAX_EXTRA_SETTINGS: usize = 32;
/// Default time the relay stays lost (broker reachable or not) before it throws its
/// librdkafka clients away and builds new ones.
pub const DEFAULT_RECREATE_AFTER_MS: u64 = 8_000;
/// Default longest `Relay::start` keeps trying to create the topics.
pub const DEFAULT_START_TIMEOUT_MS: u64 = 20_000;
/// Longest node id (it is part of topic and group names; Kafka topics are ≤ 249 bytes).
pub const MAX_NODE_ID_LEN: usize = 64;
/// Longest prefix, for the same reason.
pub const MAX_PREFIX_LEN: usize = 64;

/// Producer acknowledgement level (`KAFKA_ACKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=all`: every in-sync replica has the record. With it the producer is idempotent
    /// (`enable.idempotence=true`): retries cannot duplicate or reorder a user's records.
    All,
    /// `acks=1`: the leader has it. Idempotence needs `all`, so it is off here.
    Leader,
    /// `acks=0`: fire and forget (no delivery failure is ever seen). Idempotence off.
    None,
}

impl Acks {
    /// Parses `all`/`-1`, `1`, `0`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "all" | "-1" => Some(Acks::All),
            "1" => Some(Acks::Leader),
            "0" => Some(Acks::None),
            _ => None,
        }
    }

    /// The librdkafka `acks` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

/// Relay configuration. `Default` is a working single broker on `127.0.0.1:9092`.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Bootstrap brokers, comma separated (`KAFKA_BROKERS`).
    pub brokers: String,
    /// Prefix of every topic and group name (`KAFKA_TOPIC_PREFIX`).
    pub prefix: String,
    /// This node's id: names its delivery topic and consumer group.
    pub node_id: String,
    /// Partitions of each delivery topic created by this node (`KAFKA_PARTITIONS`).
    pub partitions: i32,
    /// Replication factor of the topics this node creates (`KAFKA_REPLICATION`).
    pub replication: i32,
    /// Producer acks (`KAFKA_ACKS`, default `all`, which also turns idempotence on).
    pub acks: Acks,
    /// Producer `linger.ms` (≤ 1: latency first; the rings already batch under load).
    pub linger_ms: u64,
    /// Producer `max.in.flight.requests.per.connection` (`KAFKA_MAX_IN_FLIGHT`, 1..=5).
    pub max_in_flight: u32,
    /// Producer `message.timeout.ms`: a produce not acknowledged by then is a failure the
    /// sender hears about.
    pub message_timeout_ms: u64,
    /// librdkafka producer queue bound (`queue.buffering.max.messages`).
    pub producer_queue: usize,
    /// Consumer `session.timeout.ms` (`KAFKA_SESSION_TIMEOUT_MS`). Only matters to group
    /// membership, which the relay no longer uses (it assigns itself its partitions); kept
    /// so existing configurations stay valid. Before that: the first group join waited
    /// about half of it.
    pub session_timeout_ms: u64,
    /// Consumer `fetch.wait.max.ms` (`KAFKA_FETCH_WAIT_MS`).
    pub fetch_wait_ms: u64,
    /// librdkafka `statistics.interval.ms` of the relay's producer and consumer
    /// (`KAFKA_STATS_MS`, 0 = off): each interval logs one line per client with request
    /// counts and latency windows (produce queue, request queue, broker round trip) —
    /// how to see where relay time goes.
    pub stats_ms: u64,
    /// Extra librdkafka producer settings applied last (`KAFKA_PRODUCER_EXTRA`,
    /// `key=value,key=value`), for tuning without a rebuild. The relay's own invariants
    /// (`linger.ms` ≤ 1, idempotence with `acks=all`) are checked after them.
    pub producer_extra: Vec<(String, String)>,
    /// Extra librdkafka consumer settings applied last (`KAFKA_CONSUMER_EXTRA`).
    pub consumer_extra: Vec<(String, String)>,
    /// Shard → relay ring capacity (produce requests), per shard.
    pub outbound_ring: usize,
    /// Relay → shard ring capacity (batches), per shard.
    pub inbound_ring: usize,
    /// Most records per consumer batch.
    pub consume_batch: usize,
    /// Lost for this long → rebuild the librdkafka clients.
    pub recreate_after: Duration,
    /// Longest `Relay::start` keeps trying to create the topics before it fails.
    pub start_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            brokers: DEFAULT_BROKERS.to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            node_id: "node-1".to_string(),
            partitions: DEFAULT_PARTITIONS,
            replication: 1,
            acks: Acks::All,
            linger_ms: DEFAULT_LINGER_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            message_timeout_ms: DEFAULT_MESSAGE_TIMEOUT_MS,
            producer_queue: DEFAULT_PRODUCER_QUEUE,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            stats_ms: DEFAULT_STATS_MS,
            producer_extra: Vec::new(),
            consumer_extra: Vec::new(),
            outbound_ring: DEFAULT_OUTBOUND_RING,
            inbound_ring: DEFAULT_INBOUND_RING,
            consume_batch: DEFAULT_CONSUME_BATCH,
            recreate_after: Duration::from_millis(DEFAULT_RECREATE_AFTER_MS),
            start_timeout: Duration::from_millis(DEFAULT_START_TIMEOUT_MS),
        }
    }
}

impl RelayConfig {
    /// Defaults overridden by `KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`, `KAFKA_ACKS`,
    /// `KAFKA_PARTITIONS`, `KAFKA_REPLICATION`, `KAFKA_SESSION_TIMEOUT_MS`,
    /// `KAFKA_FETCH_WAIT_MS`, `KAFKA_LINGER_MS`, `KAFKA_MAX_IN_FLIGHT`, `KAFKA_STATS_MS`, `KAFKA_PRODUCER_EXTRA`,
    /// `KAFKA_CONSUMER_EXTRA`.
    pub fn from_env(node_id: &str) -> Result<Self, RelayStartError> {
        let mut c = Self {
            node_id: node_id.to_string(),
            ..Self::default()
        };
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("KAFKA_BROKERS") {
            c.brokers = v;
        }
        if let Some(v) = var("KAFKA_TOPIC_PREFIX") {
            c.prefix = v;
        }
        if let Some(v) = var("KAFKA_ACKS") {
            c.acks =
                Acks::parse(&v).ok_or(RelayStartError::Config("KAFKA_ACKS must be all, 1 or 0"))?;
        }
        if let Some(v) = var("KAFKA_PARTITIONS") {
            c.partitions = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_PARTITIONS must be a number"))?;
        }
        if let Some(v) = var("KAFKA_REPLICATION") {
            c.replication = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_REPLICATION must be a number"))?;
        }
        if let Some(v) = var("KAFKA_FETCH_WAIT_MS") {
            c.fetch_wait_ms = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_FETCH_WAIT_MS must be a number"))?;
        }
        if let Some(v) = var("KAFKA_LINGER_MS") {
            c.linger_ms = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_LINGER_MS must be 0 or 1"))?;
        }
        if let Some(v) = var("KAFKA_MAX_IN_FLIGHT") {
            c.max_in_flight = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_MAX_IN_FLIGHT must be 1..=5"))?;
        }
        if let Some(v) = var("KAFKA_STATS_MS") {
            c.stats_ms = v
                .parse()
                .map_err(|_| RelayStartError::Config("KAFKA_STATS_MS must be a number"))?;
        }
        if let Some(v) = var("KAFKA_PRODUCER_EXTRA") {
            c.producer_extra = parse_extra(&v).ok_or(RelayStartError::Config(
                "KAFKA_PRODUCER_EXTRA must be key=value[,key=value…]",
            ))?;
        }
        if let Some(v) = var("KAFKA_CONSUMER_EXTRA") {
            c.consumer_extra = parse_extra(&v).ok_or(RelayStartError::Config(
                "KAFKA_CONSUMER_EXTRA must be key=value[,key=value…]",
            ))?;
        }
        if let Some(v) = var("KAFKA_SESSION_TIMEOUT_MS") {
            c.session_timeout_ms = v.parse().map_err(|_| {
                RelayStartError::Config("KAFKA_SESSION_TIMEOUT_MS must be a number")
            })?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every knob; names are checked because they become topic and group names.
    pub fn validate(&self) -> Result<(), RelayStartError> {
        let name_ok = |s: &str, max: usize| {
            !s.is_empty()
                && s.len() <= max
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if self.brokers.trim().is_empty() {
            return Err(RelayStartError::Config("brokers must not be empty"));
        }
        if !name_ok(&self.prefix, MAX_PREFIX_LEN) {
            return Err(RelayStartError::Config(
                "prefix must be 1..=64 bytes of [A-Za-z0-9._-]",
            ));
        }
        if !name_ok(&self.node_id, MAX_NODE_ID_LEN) {
            return Err(RelayStartError::Config(
                "node id must be 1..=64 bytes of [A-Za-z0-9._-]",
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(RelayStartError::Config("partitions must be 1..=1024"));
        }
        if !(1..=16).contains(&self.replication) {
            return Err(RelayStartError::Config("replication must be 1..=16"));
        }
        if self.linger_ms > 1 {
            return Err(RelayStartError::Config(
                "linger_ms must be 0 or 1 (latency first)",
            ));
        }
        // librdkafka refuses more than 5 with idempotence; the same bound keeps acks=1/0
        // from piling up one tiny request per record.
        if !(1..=MAX_IN_FLIGHT_IDEMPOTENT).contains(&self.max_in_flight) {
            return Err(RelayStartError::Config("max_in_flight must be 1..=5"));
        }
        if self.message_timeout_ms == 0 || self.message_timeout_ms > 300_000 {
            return Err(RelayStartError::Config(
                "message_timeout_ms must be 1..=300000",
            ));
        }
        if !(1..=10_000_000).contains(&self.producer_queue) {
            return Err(RelayStartError::Config(
                "producer_queue must be 1..=10000000",
            ));
        }
        if !(1_000..=300_000).contains(&self.session_timeout_ms) {
            return Err(RelayStartError::Config(
                "session_timeout_ms must be 1000..=300000",
            ));
        }
        if self.stats_ms != 0 && !(100..=3_600_000).contains(&self.stats_ms) {
            return Err(RelayStartError::Config(
                "stats_ms must be 0 (off) or 100..=3600000",
            ));
        }
        for (k, v) in self.producer_extra.iter() {
            let bad = match k.as_str() {
                "linger.ms" | "queue.buffering.max.ms" => {
                    v.parse::<f64>().map_or(true, |l| l > 1.0)
                }
                "enable.idempotence" => self.acks == Acks::All && v != "true",
                "acks"
                | "request.required.acks"
                | "max.in.flight.requests.per.connection"
                | "max.in.flight" => true,
                _ => false,
            };
            if bad {
                return Err(RelayStartError::Config(
                    "producer_extra may not raise linger.ms above 1, set acks or max.in.flight (KAFKA_ACKS, KAFKA_MAX_IN_FLIGHT) or turn idempotence off with acks=all",
                ));
            }
        }
        if self.producer_extra.len() > MAX_EXTRA_SETTINGS
            || self.consumer_extra.len() > MAX_EXTRA_SETTINGS
        {
            return Err(RelayStartError::Config(
                "too many extra librdkafka settings",
            ));
        }
        if self.fetch_wait_ms > 500 {
            return Err(RelayStartError::Config("fetch_wait_ms must be ≤ 500"));
        }
        for (v, what) in [
            (self.outbound_ring, "outbound_ring must be 1..=1048576"),
            (self.inbound_ring, "inbound_ring must be 1..=1048576"),
            (self.consume_batch, "consume_batch must be 1..=1048576"),
        ] {
            if !(1..=1 << 20).contains(&v) {
                return Err(RelayStartError::Config(what));
            }
        }
        if self.start_timeout.is_zero() {
            return Err(RelayStartError::Config("start_timeout must be > 0"));
        }
        if self.recreate_after < Duration::from_secs(1) {
            return Err(RelayStartError::Config("recreate_after must be ≥ 1 s"));
        }
        Ok(())
    }

    /// This node's delivery topic.
    pub fn delivery_topic(&self) -> String {
        delivery_topic(&self.prefix, &self.node_id)
    }
}

/// Parses `key=value,key=value` (whitespace around items ignored); `None` when malformed or
/// longer than [`MAX_EXTRA_SETTINGS`].
pub fn parse_extra(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || out.len() >= MAX_EXTRA_SETTINGS {
            return None;
        }
        out.push((k.to_string(), v.to_string()));
    }
    Some(out)
}

/// `<prefix>.deliver.<node>`: where messages for `node`'s users are produced.
pub fn delivery_topic(prefix: &str, node: &str) -> String {
    format!("{prefix}.deliver.{node}")
}

/// `<prefix>-node-<node>`: the group id `node`'s consumer commits its offsets under (the
/// consumer assigns itself its partitions; it joins no group).
pub fn group_id(prefix: &str, node: &str) -> String {
    format!("{prefix}-node-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_names_follow_the_scheme() {
        let c = RelayConfig::default();
        c.validate().unwrap();
        assert_eq!(c.delivery_topic(), "rtc.deliver.node-1");
        assert_eq!(group_id("rtc", "b"), "rtc-node-b");
    }

    #[test]
    fn validate_refuses_bad_knobs() {
        let bad = [
            RelayConfig {
                node_id: "a b".into(),
                ..RelayConfig::default()
            },
            RelayConfig {
                prefix: String::new(),
                ..RelayConfig::default()
            },
            RelayConfig {
                partitions: 0,
                ..RelayConfig::default()
            },
            RelayConfig {
                linger_ms: 5,
                ..RelayConfig::default()
            },
            RelayConfig {
                outbound_ring: 0,
                ..RelayConfig::default()
            },
            RelayConfig {
                session_timeout_ms: 10,
                ..RelayConfig::default()
            },
            RelayConfig {
                max_in_flight: 0,
                ..RelayConfig::default()
            },
            RelayConfig {
                max_in_flight: 6,
                ..RelayConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn extra_settings_parse_and_keep_the_invariants() {
        assert_eq!(
            parse_extra(" fetch.min.bytes=1, queued.min.messages = 10 ,"),
            Some(vec![
                ("fetch.min.bytes".into(), "1".into()),
                ("queued.min.messages".into(), "10".into())
            ])
        );
        assert_eq!(parse_extra("novalue"), None);
        assert_eq!(parse_extra("=1"), None);
        for bad in ["linger.ms=5", "acks=1", "enable.idempotence=false"] {
            let c = RelayConfig {
                producer_extra: parse_extra(bad).unwrap(),
                ..RelayConfig::default()
            };
            assert!(c.validate().is_err(), "{bad}");
        }
        let ok = RelayConfig {
            producer_extra: parse_extra("linger.ms=1,batch.num.messages=100").unwrap(),
            ..RelayConfig::default()
        };
        ok.validate().unwrap();
    }

    #[test]
    fn acks_parse() {
        assert_eq!(Acks::parse("all"), Some(Acks::All));
        assert_eq!(Acks::parse("-1"), Some(Acks::All));
        assert_eq!(Acks::parse("1"), Some(Acks::Leader));
        assert_eq!(Acks::parse("0"), Some(Acks::None));
        assert_eq!(Acks::parse("2"), None);
    }
}
