//! The configuration sections. Every field is documented here and in
//! `config/logpipe.example.toml`; defaults live in the `Default` impls next to each struct, and
//! rules that span fields are checked in [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};

/// The whole configuration of a logpipe process (every role reads the sections it needs).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    pub gateway: GatewayConfig,
    pub limits: LimitsConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub retry: RetryConfig,
    pub dlq: DlqConfig,
}

/// Kafka cluster, topics, and client properties shared by every Kafka client logpipe creates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated (`host:port,host:port`). Empty: start the embedded
    /// in-process broker (librdkafka's mock cluster), which keeps nothing across restarts.
    pub brokers: String,
    /// `client.id` prefix; the role is appended (`logpipe-producer`).
    pub client_id: String,
    /// The topic the gateway writes to and the consumer reads.
    pub topic: String,
    /// Partitions of `topic` when logpipe creates it. Caps the consumer group's parallelism.
    pub partitions: i32,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Partitions of the dead-letter topic when logpipe creates it.
    pub dlq_partitions: i32,
    /// `retention.ms` of the dead-letter topic when logpipe creates it.
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
    /// Where `logpipe dlq replay` sends records replayed more than `dlq.max_replays` times,
    /// instead of looping them through the pipeline again. Created with `dlq_partitions`.
    pub parked_topic: String,
    /// `retention.ms` of the parked topic when logpipe creates it.
    #[serde(with = "humantime_serde")]
    pub parked_retention: Duration,
    /// Replication factor of the topics logpipe creates. `"auto"`: min(3, brokers in the
    /// cluster metadata), so 3 on a production cluster and 1 on a single broker or the embedded
    /// one. A number must not exceed the brokers in the cluster.
    pub replication_factor: Replicas,
    /// `min.insync.replicas` of the topics logpipe creates: with acks=all a write is acknowledged
    /// only once this many replicas have it. `"auto"`: the replication factor minus 1, at least 1
    /// (2 of 3 replicas: one broker may be down, and no acknowledged write rests on one copy).
    /// A number must not exceed the replication factor.
    pub min_insync_replicas: Replicas,
    /// Create missing topics at start-up (producer and consumer). `logpipe topics ensure` always does.
    pub create_topics: bool,
    /// Timeout of admin and metadata requests.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// librdkafka properties for every client (`security.protocol`, `sasl.*`, `ssl.*`, tuning).
    /// Env: `LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD` sets `sasl.password`.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            client_id: "logpipe".into(),
            topic: "application-logs".into(),
            partitions: 12,
            dlq_topic: "logs-dlq".into(),
            dlq_partitions: 3,
            dlq_retention: Duration::from_secs(7 * 24 * 3600),
            parked_topic: "logs-dlq-parked".into(),
            parked_retention: Duration::from_secs(30 * 24 * 3600),
            replication_factor: Replicas::Auto,
            min_insync_replicas: Replicas::Auto,
            create_topics: true,
            request_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// True when no brokers are configured and the embedded broker must be started.
    pub fn is_embedded(&self) -> bool {
        self.brokers.trim().is_empty()
    }

    /// The replication of logpipe's topics on a cluster of `brokers` brokers.
    pub fn replication_for(&self, brokers: usize) -> anyhow::Result<Replication> {
        Replication::resolve(self.replication_factor, self.min_insync_replicas, brokers)
    }

    /// The brokers, for an operator command that needs a cluster; without any, an error that
    /// says what `needs` them and what to set (`embedded`: why the embedded broker won't do).
    pub fn cluster_brokers(&self, needs: &str, embedded: &str) -> anyhow::Result<String> {
        ensure!(
            !self.is_embedded(),
            "no Kafka brokers configured: {needs}. Set --kafka-brokers, LOGPIPE_KAFKA_BROKERS or \
             kafka.brokers{embedded}"
        );
        Ok(self.brokers.clone())
    }
}

/// A replica count in the config: `"auto"` (worked out from the cluster when topics are created)
/// or a number from 1. Written as `"auto"` or a bare number; a string holding a number is taken
/// too, since environment variables and `--set` arrive as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    Auto,
    Count(i32),
}

impl Serialize for Replicas {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Auto => serializer.serialize_str("auto"),
            Replicas::Count(n) => serializer.serialize_i32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Replicas;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a replica count from 1")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Replicas, E> {
                match i32::try_from(n) {
                    Ok(n) if n >= 1 => Ok(Replicas::Count(n)),
                    // The "broker default" of earlier versions: configs written then still load.
                    Ok(-1) => Ok(Replicas::Auto),
                    _ => Err(E::custom(format!(
                        "expected \"auto\" or a replica count from 1, got {n}"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Replicas, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Replicas, E> {
                let text = text.trim();
                if text.eq_ignore_ascii_case("auto") {
                    return Ok(Replicas::Auto);
                }
                match text.parse::<i64>() {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "expected \"auto\" or a replica count from 1, got `{text}`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl std::fmt::Display for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Replicas::Auto => f.write_str("auto"),
            Replicas::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The replication of a topic as logpipe creates it on a given cluster: `kafka.replication_factor`
/// and `kafka.min_insync_replicas` with `"auto"` worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replication {
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

impl Replication {
    /// `factor` and `min_insync` on a cluster whose metadata lists `brokers` brokers (a broker
    /// that is down is not listed). Errors name the key and say what to change.
    pub fn resolve(
        factor: Replicas,
        min_insync: Replicas,
        brokers: usize,
    ) -> anyhow::Result<Replication> {
        let brokers = i32::try_from(brokers).unwrap_or(i32::MAX);
        ensure!(
            brokers >= 1,
            "the cluster metadata lists no brokers; check `kafka.brokers` and that the cluster is up"
        );
        let replication_factor = match factor {
            Replicas::Auto => brokers.min(3),
            Replicas::Count(n) => {
                ensure!(
                    n <= brokers,
                    "config key `kafka.replication_factor`: {n} replicas, but the cluster lists only \
                     {brokers} broker(s); start the missing brokers, or lower it (or set it to \"auto\")"
                );
                n
            }
        };
        let min_insync_replicas = match min_insync {
            Replicas::Auto => (replication_factor - 1).max(1),
            Replicas::Count(n) => {
                ensure!(
                    n <= replication_factor,
                    "config key `kafka.min_insync_replicas`: {n}, but the replication factor is \
                     {replication_factor} on this cluster of {brokers} broker(s), so no acks=all write \
                     could ever succeed; lower it (or set it to \"auto\")"
                );
                n
            }
        };
        Ok(Replication {
            replication_factor,
            min_insync_replicas,
        })
    }
}

/// Compression codec of produced batches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// What becomes the Kafka record key, and so which events share a partition and keep their order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStrategy {
    /// The event's `service`: one service's logs stay in order.
    Service,
    /// The event's `trace_id` (events without one get no key): one trace stays in order.
    TraceId,
    /// No key: records spread evenly over partitions, no ordering.
    None,
}

/// The producer service (`logpipe producer`, :8081) and the in-process producer of `logpipe run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Listen address of the producer's internal HTTP endpoint (split mode).
    pub listen: SocketAddr,
    /// Compression codec (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub compression: Compression,
    /// `linger.ms`: how long librdkafka waits to fill a batch.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// `batch.num.messages`: records per produce batch.
    pub batch_max_messages: u32,
    /// `batch.size`: bytes per produce batch.
    pub batch_max_bytes: u32,
    /// Events in flight (queued in librdkafka or awaiting acknowledgement) at most. When full,
    /// callers wait up to `enqueue_timeout` and then get backpressure (HTTP 503), never a drop.
    pub max_in_flight: usize,
    /// How long a caller waits for room in the in-flight queue before it is told to retry.
    #[serde(with = "humantime_serde")]
    pub enqueue_timeout: Duration,
    /// `message.timeout.ms`: a record not acknowledged by then fails (and its request gets 503).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Record key: `service`, `trace_id` or `none`.
    pub key: KeyStrategy,
    /// librdkafka properties for logpipe's producers only (the producer service, the consumer's
    /// dead-letter writer, `dlq replay`); override `kafka.properties`.
    pub properties: BTreeMap<String, String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            compression: Compression::Lz4,
            // 1 ms: under load librdkafka batches whatever queues while a request is in
            // flight anyway; idle, each ms of linger is a ms of end-to-end latency.
            linger: Duration::from_millis(1),
            batch_max_messages: 10_000,
            batch_max_bytes: 1_000_000,
            max_in_flight: 100_000,
            enqueue_timeout: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(10),
            key: KeyStrategy::Service,
            properties: BTreeMap::new(),
        }
    }
}

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
    /// Static tags added to every stored log (`environment = "prod"`, `region = "eu-west-1"`).
    pub tags: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only; override `kafka.properties`.
    pub properties: BTreeMap<String, String>,
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
            tags: BTreeMap::new(),
            properties: BTreeMap::new(),
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

/// The HTTP ingest gateway (`logpipe gateway`, :8080).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Producer service URL in split mode (`logpipe gateway`). `logpipe run` calls the producer
    /// in-process and ignores this.
    pub producer_url: String,
    /// Largest request body accepted, in bytes, after gzip decompression too (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one batch request (413 beyond).
    pub max_batch_events: usize,
    /// Upper bound on one request's handling; beyond it the client gets 503, never a hang.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `Retry-After` sent with 503 responses.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// API keys; empty disables authentication. Clients send `Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`. Env: `LOGPIPE_GATEWAY_API_KEYS=key1,key2`.
    pub api_keys: Vec<String>,
    /// The consumers' `/metrics` URLs the dashboard reads in split mode (`logpipe gateway`),
    /// summed over all of them; empty shows consumer figures as not available. `logpipe run`
    /// reads its own consumer in-process and ignores this.
    pub consumer_metrics_urls: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            producer_url: "http://127.0.0.1:8081".into(),
            max_body_bytes: 10 * 1024 * 1024,
            max_batch_events: 10_000,
            request_timeout: Duration::from_secs(15),
            retry_after: Duration::from_secs(1),
            api_keys: Vec::new(),
            consumer_metrics_urls: vec!["http://127.0.0.1:8082/metrics".into()],
        }
    }
}

/// Limits of the log event model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest `message`, in bytes.
    pub max_message_bytes: usize,
    /// Most keys in `attributes`.
    pub max_attributes: usize,
    /// Largest `attributes` object, in bytes of compact JSON.
    pub max_attributes_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = logpipe_model::Limits::default();
        Self {
            max_message_bytes: d.max_message_bytes,
            max_attributes: d.max_attributes,
            max_attributes_bytes: d.max_attributes_bytes,
        }
    }
}

impl LimitsConfig {
    pub fn to_model(&self) -> logpipe_model::Limits {
        logpipe_model::Limits {
            max_message_bytes: self.max_message_bytes,
            max_attributes: self.max_attributes,
            max_attributes_bytes: self.max_attributes_bytes,
        }
    }
}

/// Durable log store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`. Empty: embedded in-memory SQLite.
    pub url: String,
    /// Schema of the `logs` table.
    pub schema: String,
    /// Connections in the pool (per process).
    pub pool_size: usize,
    /// Daily partitions older than this are dropped.
    pub retention_days: u32,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: "public".into(),
            pool_size: 4,
            retention_days: 7,
            partitions_ahead_days: 3,
        }
    }
}

impl PostgresConfig {
    /// The log store's options.
    pub fn store_options(&self) -> logpipe_store::StoreOptions {
        logpipe_store::StoreOptions {
            retention_days: self.retention_days,
            partitions_ahead_days: self.partitions_ahead_days,
            schema: self.schema.clone(),
            pool_size: self.pool_size,
        }
    }
}

/// Real-time aggregates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`. Empty: in-process aggregates.
    pub url: String,
    /// Prefix of every key logpipe writes.
    pub key_prefix: String,
    /// Per-minute counters expire after this.
    #[serde(with = "humantime_serde")]
    pub minute_ttl: Duration,
}

impl RedisConfig {
    /// The aggregates' options.
    pub fn agg_options(&self) -> logpipe_aggregates::AggOptions {
        logpipe_aggregates::AggOptions {
            key_prefix: self.key_prefix.clone(),
            minute_ttl: self.minute_ttl,
            ..logpipe_aggregates::AggOptions::default()
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "logpipe".into(),
            minute_ttl: Duration::from_secs(48 * 3600),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Process logs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Filter in `tracing` syntax: `info`, `logpipe=debug,rdkafka=warn`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The retry schedule of a record whose processing failed on its own (not an outage): attempt 1
/// runs at once, attempt n waits `base * multiplier^(n-2)` (at most `cap`, +/- `jitter`), and after
/// `attempts` failed attempts the record goes to the dead-letter topic as `exhausted`. The
/// defaults are the spec's: immediate, then 1 s, 2 s, 4 s.
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

/// The dead-letter tools (`logpipe dlq stats|show|replay`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// A record replayed this many times already goes to `kafka.parked_topic` on its next replay
    /// instead of back to its original topic.
    pub max_replays: u32,
    /// Consumer group `logpipe dlq replay` commits its progress under, so a second replay run
    /// does not republish what the first one already did.
    pub replay_group: String,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            max_replays: 3,
            replay_group: "logpipe-dlq-replay".into(),
        }
    }
}

impl Config {
    /// Rules that span fields or need more than a type to check.
    pub fn validate(&self) -> anyhow::Result<()> {
        let k = &self.kafka;
        ensure!(
            !k.topic.is_empty(),
            "config key `kafka.topic`: must not be empty"
        );
        ensure!(
            k.partitions >= 1,
            "config key `kafka.partitions`: must be at least 1, got {}",
            k.partitions
        );
        ensure!(
            k.dlq_partitions >= 1,
            "config key `kafka.dlq_partitions`: must be at least 1, got {}",
            k.dlq_partitions
        );
        if let (Replicas::Count(factor), Replicas::Count(min_insync)) =
            (k.replication_factor, k.min_insync_replicas)
        {
            ensure!(
                min_insync <= factor,
                "config key `kafka.min_insync_replicas`: {min_insync} is more than \
                 `kafka.replication_factor` ({factor}), so no acks=all write could ever succeed; \
                 lower it or set it to \"auto\""
            );
        }
        for (key, topic) in [
            ("kafka.topic", &k.topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.parked_topic", &k.parked_topic),
        ] {
            ensure!(
                valid_topic_name(topic),
                "config key `{key}`: `{topic}` is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            );
        }
        ensure!(
            k.topic != k.dlq_topic && k.topic != k.parked_topic && k.dlq_topic != k.parked_topic,
            "config keys `kafka.topic`, `kafka.dlq_topic` and `kafka.parked_topic` must all differ"
        );
        let r = &self.retry;
        ensure!(
            (1..=100).contains(&r.attempts),
            "config key `retry.attempts`: 1 to 100, got {}",
            r.attempts
        );
        ensure!(
            r.multiplier >= 1.0 && r.multiplier.is_finite(),
            "config key `retry.multiplier`: at least 1.0, got {}",
            r.multiplier
        );
        ensure!(
            (0.0..=1.0).contains(&r.jitter),
            "config key `retry.jitter`: a fraction from 0.0 to 1.0, got {}",
            r.jitter
        );
        ensure!(
            r.cap >= r.base,
            "config key `retry.cap` must be at least `retry.base`"
        );
        ensure!(
            r.attempt_timeout >= Duration::from_millis(1),
            "config key `retry.attempt_timeout`: at least 1ms"
        );
        ensure!(
            !self.dlq.replay_group.is_empty(),
            "config key `dlq.replay_group`: must not be empty"
        );
        for broker in k
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            if !broker.contains(':') {
                bail!("config key `kafka.brokers`: `{broker}` has no port (expected host:port)");
            }
        }
        crate::kafka::check_properties("kafka.properties", &k.properties)?;
        crate::kafka::check_properties("producer.properties", &self.producer.properties)?;

        crate::kafka::check_properties("consumer.properties", &self.consumer.properties)?;
        let c = &self.consumer;
        ensure!(
            !c.group_id.is_empty(),
            "config key `consumer.group_id`: must not be empty"
        );
        for topic in &c.topics {
            ensure!(
                valid_topic_name(topic),
                "config key `consumer.topics`: `{topic}` is not a valid Kafka topic name"
            );
        }
        ensure!(
            (1..=64).contains(&c.concurrency),
            "config key `consumer.concurrency`: 1 to 64, got {}",
            c.concurrency
        );
        ensure!(
            (1..=256).contains(&c.workers),
            "config key `consumer.workers`: 1 to 256, got {}",
            c.workers
        );
        ensure!(
            (1..=100_000).contains(&c.batch_size),
            "config key `consumer.batch_size`: 1 to 100000, got {}",
            c.batch_size
        );
        ensure!(
            c.max_batch_size >= c.batch_size && c.max_batch_size <= 100_000,
            "config key `consumer.max_batch_size` ({}) must be between `consumer.batch_size` ({}) and 100000",
            c.max_batch_size,
            c.batch_size
        );
        ensure!(
            (1..=self.postgres.pool_size).contains(&c.store_streams),
            "config key `consumer.store_streams` ({}) must be between 1 and `postgres.pool_size` ({}): each stream holds a pooled connection",
            c.store_streams,
            self.postgres.pool_size
        );
        match c.group_protocol {
            GroupProtocol::Classic => {
                ensure!(
                    c.drain_timeout < c.session_timeout,
                    "config key `consumer.drain_timeout` ({}) must be below `consumer.session_timeout` ({}), or a revoke could outlive the session",
                    humantime::format_duration(c.drain_timeout),
                    humantime::format_duration(c.session_timeout)
                );
                ensure!(
                    c.session_timeout < c.max_poll_interval,
                    "config key `consumer.session_timeout` must be below `consumer.max_poll_interval`"
                );
                ensure!(
                    c.remote_assignor.is_empty(),
                    "config key `consumer.remote_assignor` (`{}`) only applies with `consumer.group_protocol = \"consumer\"`; with the classic protocol set `consumer.assignment_strategy`, or leave it empty",
                    c.remote_assignor
                );
            }
            GroupProtocol::Consumer => {
                // The session timeout is the broker's; the consumer checks drain_timeout against
                // it at start-up. Here only what the client itself bounds.
                ensure!(
                    c.drain_timeout < c.max_poll_interval,
                    "config key `consumer.drain_timeout` ({}) must be below `consumer.max_poll_interval` ({}), the rebalance timeout of the consumer protocol",
                    humantime::format_duration(c.drain_timeout),
                    humantime::format_duration(c.max_poll_interval)
                );
                ensure!(
                    c.remote_assignor.is_empty()
                        || REMOTE_ASSIGNORS.contains(&c.remote_assignor.as_str()),
                    "config key `consumer.remote_assignor`: `{}` is not a server-side assignor Kafka ships; use {}, or leave it empty for the broker's default",
                    c.remote_assignor,
                    REMOTE_ASSIGNORS
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(" or ")
                );
                for (section, properties) in [
                    ("kafka.properties", &k.properties),
                    ("consumer.properties", &c.properties),
                ] {
                    for (key, instead) in CLASSIC_ONLY_PROPERTIES {
                        ensure!(
                            !properties.contains_key(*key),
                            "config key `{section}.\"{key}\"`: not supported with `consumer.group_protocol = \"consumer\"` (librdkafka refuses it); remove it: {instead}"
                        );
                    }
                }
            }
        }
        for (section, properties) in [
            ("kafka.properties", &k.properties),
            ("consumer.properties", &c.properties),
        ] {
            for (key, instead) in [
                ("group.protocol", "set `consumer.group_protocol` instead"),
                (
                    "group.remote.assignor",
                    "set `consumer.remote_assignor` instead",
                ),
            ] {
                ensure!(
                    !properties.contains_key(key),
                    "config key `{section}.\"{key}\"`: cannot be set here; {instead}"
                );
            }
        }
        ensure!(
            c.max_uncommitted >= c.max_batch_size,
            "config key `consumer.max_uncommitted` ({}) must be at least `consumer.max_batch_size` ({})",
            c.max_uncommitted,
            c.max_batch_size
        );
        ensure!(
            self.postgres.retention_days >= 1,
            "config key `postgres.retention_days`: at least 1"
        );
        ensure!(
            (1..=64).contains(&self.postgres.pool_size),
            "config key `postgres.pool_size`: 1 to 64"
        );

        let p = &self.producer;
        ensure!(
            p.max_in_flight >= self.gateway.max_batch_events,
            "config key `producer.max_in_flight` ({}) must be at least `gateway.max_batch_events` ({}), or a full batch could never be sent",
            p.max_in_flight,
            self.gateway.max_batch_events
        );
        ensure!(
            p.delivery_timeout < self.gateway.request_timeout,
            "config key `producer.delivery_timeout` ({}) must be below `gateway.request_timeout` ({}) so a failed delivery is reported before the request gives up",
            humantime::format_duration(p.delivery_timeout),
            humantime::format_duration(self.gateway.request_timeout)
        );
        ensure!(
            p.delivery_timeout >= std::time::Duration::from_millis(100),
            "config key `producer.delivery_timeout`: at least 100ms"
        );

        let g = &self.gateway;
        ensure!(
            g.max_batch_events >= 1,
            "config key `gateway.max_batch_events`: must be at least 1"
        );
        ensure!(
            g.max_body_bytes >= 1024,
            "config key `gateway.max_body_bytes`: must be at least 1024"
        );
        ensure!(
            g.api_keys.iter().all(|key| key.len() >= 16),
            "config key `gateway.api_keys`: every key must be at least 16 characters"
        );
        url::Url::parse(&g.producer_url).map_err(|e| {
            anyhow::anyhow!(
                "config key `gateway.producer_url`: `{}` is not a URL: {e}",
                g.producer_url
            )
        })?;
        for raw in &g.consumer_metrics_urls {
            ensure!(
                matches!(url::Url::parse(raw), Ok(u) if u.scheme() == "http"),
                "config key `gateway.consumer_metrics_urls`: `{raw}` is not an http:// URL (like http://127.0.0.1:8082/metrics)"
            );
        }

        let l = &self.limits;
        ensure!(
            l.max_message_bytes >= 1,
            "config key `limits.max_message_bytes`: must be at least 1"
        );
        ensure!(
            l.max_message_bytes < g.max_body_bytes,
            "config key `limits.max_message_bytes` must be below `gateway.max_body_bytes`"
        );

        for (key, url, schemes) in [
            (
                "postgres.url",
                &self.postgres.url,
                &["postgres", "postgresql"][..],
            ),
            (
                "redis.url",
                &self.redis.url,
                &["redis", "rediss", "unix"][..],
            ),
        ] {
            if url.is_empty() {
                continue;
            }
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("config key `{key}`: not a URL: {e}"))?;
            ensure!(
                schemes.contains(&parsed.scheme()),
                "config key `{key}`: scheme `{}` is not one of {schemes:?}",
                parsed.scheme()
            );
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow::anyhow!("config key `log.level`: {e}"))?;
        Ok(())
    }
}

/// Kafka's own rule for topic names.
fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
