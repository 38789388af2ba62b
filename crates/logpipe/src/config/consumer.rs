//! `[consumer]` and `[retry]`: the consumer group (protocol, assignment, batching, workers,
//! bounds on uncommitted work, record formats: see `formats.rs`) and the retry schedule of
//! records that fail on their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{JsonFields, KafkaConfig, RecordFormat};

/// Partition assignment strategy of the consumer group.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentStrategy {
    /// Incremental rebalances: only the partitions that move stop (KIP-429).
    CooperativeSticky,
    Range,
    Roundrobin,
}

impl AssignmentStrategy {
    /// The librdkafka `partition.assignment.strategy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::Roundrobin => "roundrobin",
        }
    }
}

/// The consumer group protocol (`group.protocol`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup: the group leader (a member) assigns with `assignment_strategy`; the
    /// session timeout is the client's `session_timeout`.
    #[default]
    Classic,
    /// KIP-848 (Kafka 4.0+): the broker assigns (`remote_assignor`), incrementally; session
    /// timeout and heartbeat interval are broker settings (`group.consumer.session.timeout.ms`,
    /// `group.consumer.heartbeat.interval.ms`).
    Consumer,
}

impl GroupProtocol {
    /// The librdkafka `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// Server-side assignors Kafka ships for the `consumer` protocol; "" lets the broker choose.
pub const REMOTE_ASSIGNORS: &[&str] = &["uniform", "range"];

/// librdkafka properties that only the classic protocol accepts: with `group.protocol=consumer`
/// librdkafka refuses to create a consumer that sets any of them. Each with what replaces it.
pub const CLASSIC_ONLY_PROPERTIES: &[(&str, &str)] = &[
    (
        "partition.assignment.strategy",
        "set `consumer.remote_assignor` instead",
    ),
    (
        "session.timeout.ms",
        "the broker's `group.consumer.session.timeout.ms` applies",
    ),
    (
        "heartbeat.interval.ms",
        "the broker's `group.consumer.heartbeat.interval.ms` applies",
    ),
    (
        "group.protocol.type",
        "the consumer protocol has no such setting",
    ),
];

/// The consumer group (`logpipe consumer`, :8082, and inside `logpipe run`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Listen address (health, metrics).
    pub listen: SocketAddr,
    /// Consumer group id.
    pub group_id: String,
    /// Topics to consume; empty means `[kafka.topic]`. Offsets are tracked per topic-partition.
    pub topics: Vec<String>,
    /// `classic` (default) or `consumer` (KIP-848, Kafka 4.0+).
    pub group_protocol: GroupProtocol,
    /// `cooperative-sticky` (default), `range` or `roundrobin`. Classic protocol only.
    pub assignment_strategy: AssignmentStrategy,
    /// Server-side assignor with `group_protocol = "consumer"`: `uniform`, `range`, or empty for
    /// the broker's default (the first of its `group.consumer.assignors`, `uniform` out of the box).
    pub remote_assignor: String,
    /// Group members in this process (the spec's 3 "consumer instances", like Spring's
    /// container concurrency). Each has its own Kafka consumer and pipeline.
    pub concurrency: usize,
    /// Decode/enrich workers per member (the spec's 10 threads). Records with the same key go to
    /// the same worker, in order.
    pub workers: usize,
    /// Records in a batch written to the stores at once.
    pub batch_size: usize,
    /// While the writer is still busy with earlier batches (a backlog), a batch may grow up to
    /// this many records, so a backlog drains in fewer, larger writes. Must be >= `batch_size`.
    pub max_batch_size: usize,
    /// Concurrent COPY streams a member writes a large batch with (PostgreSQL only; SQLite
    /// writes one at a time). A batch of at least `2 x batch_size` records, which only forms
    /// under a backlog, is split into up to this many parts of at least `batch_size` records,
    /// each written in its own transaction on its own connection, so the server works on two
    /// while the member encodes. At most `postgres.pool_size`.
    pub store_streams: usize,
    /// While the writer is busy, a batch is written when it is full or this long after its first
    /// record, whichever first. An idle writer takes a batch at once (no record waits for
    /// batch-mates then), so this only bounds the wait under load.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// `session.timeout.ms`. Classic protocol only: with `consumer` the session timeout is the
    /// broker's `group.consumer.session.timeout.ms` (45 s by default) and this is not used.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` (with the `consumer` protocol also the rebalance timeout: how long
    /// the broker waits for a member to release revoked partitions).
    #[serde(with = "humantime_serde")]
    pub max_poll_interval: Duration,
    /// On revoke and shutdown, how long in-flight work may take to finish before the partitions
    /// are released anyway (uncommitted records are then re-read by the next owner). Must be
    /// below the session timeout: `session_timeout` with the classic protocol (checked), the
    /// broker's `group.consumer.session.timeout.ms` with `consumer` (read at start-up, a warning
    /// if not).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Records a member holds between fetch and commit at most (waiting for a retry, behind a
    /// retrying record of their key, or stored but behind their partition's commit point). At
    /// the bound the member stops taking records and its partitions pause until it drains.
    pub max_uncommitted: usize,
    /// How the value of a record becomes a log event, on every consumed topic without an entry
    /// in `formats`: `logpipe` (the canonical JSON event; a record without `timestamp` gets the
    /// Kafka record's timestamp), `raw` (the value is the message), `json` (any JSON object,
    /// fields by `json_fields`), or `otlp_proto` / `otlp_json` (an OTLP export request: one
    /// event per log record). See [`RecordFormat`].
    pub format: RecordFormat,
    /// Per-topic format, overriding `format` (`"shipper-logs" = "raw"`); every topic named must be
    /// consumed.
    pub formats: BTreeMap<String, RecordFormat>,
    /// The service of `raw` records (and of OTLP log records whose resource has no
    /// `service.name`); empty: the topic's name (cut to 128 characters).
    pub raw_service: String,
    /// `raw` records (and OTLP log records without `service.name`) take their service from the
    /// record key when the key is a valid service name (otherwise `raw_service` applies).
    pub raw_service_from_key: bool,
    /// Where `json` records keep each event field (`[consumer.json_fields]`).
    pub json_fields: JsonFields,
    /// Static tags added to every stored log (`environment = "prod"`, `region = "eu-west-1"`).
    pub tags: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only; override `kafka.properties`.
    /// Env: `LOGPIPE_CONSUMER_PROPERTY_FETCH_WAIT_MAX_MS` sets `fetch.wait.max.ms`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are read from files at start-up, like
    /// `kafka.property_files`; for the consumer only.
    pub property_files: BTreeMap<String, PathBuf>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            group_id: "log-processor-group".into(),
            topics: Vec::new(),
            group_protocol: GroupProtocol::Classic,
            assignment_strategy: AssignmentStrategy::CooperativeSticky,
            remote_assignor: String::new(),
            // One member per process serves a 2-core machine best: the spec's 3 x 10 threads
            // would only add context switches. Set concurrency = 3, workers = 10 for the spec.
            concurrency: 1,
            workers: 2,
            batch_size: 500,
            max_batch_size: 5000,
            store_streams: 2,
            batch_linger: Duration::from_millis(50),
            session_timeout: Duration::from_secs(30),
            max_poll_interval: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(10),
            max_uncommitted: 200_000,
            format: RecordFormat::Logpipe,
            formats: BTreeMap::new(),
            raw_service: String::new(),
            raw_service_from_key: false,
            json_fields: JsonFields::default(),
            tags: BTreeMap::new(),
            properties: BTreeMap::new(),
            property_files: BTreeMap::new(),
        }
    }
}

impl ConsumerConfig {
    /// The topics this group consumes.
    pub fn topics(&self, kafka: &KafkaConfig) -> Vec<String> {
        if self.topics.is_empty() {
            vec![kafka.topic.clone()]
        } else {
            self.topics.clone()
        }
    }
}

/// The retry schedule of a record whose processing failed on its own (not an outage): attempt 1
/// runs at once, attempt n waits `base * multiplier^(n-2)` (at most `cap`, +/- `jitter`), and after
/// `attempts` failed attempts the record goes to the dead-letter topic as `exhausted`. The
/// defaults: immediate, then 1 s, 2 s, 4 s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Each later wait is the previous one times this.
    pub multiplier: f64,
    /// Longest wait.
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Random spread of each wait, as a fraction (0.1 = +/-10 %), so retries of many records do
    /// not land at the same instant.
    pub jitter: f64,
    /// An attempt of a processing step that takes longer than this fails (and is retried).
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_secs(1),
            multiplier: 2.0,
            cap: Duration::from_secs(30),
            jitter: 0.1,
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `attempt` (2 or more), without jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        // Attempt 1 runs at once; the wait before attempt n is the schedule's (n-1)-th.
        crate::retry::Backoff::new(self.base, self.multiplier, self.cap, self.jitter)
            .delay(attempt.saturating_sub(1))
    }
}
