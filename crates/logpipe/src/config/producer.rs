//! `[producer]`: the producer service and the in-process producer: compression, record keys,
//! batching and delivery bounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

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
    /// Listen address of the producer's internal HTTP endpoint (split mode). Loopback by default;
    /// any other address needs `internal_token`, or `logpipe producer` refuses to start.
    pub listen: SocketAddr,
    /// Shared secret of the internal endpoint: the gateway sends it as `Authorization: Bearer
    /// TOKEN` and the producer answers 401 without it. Required when `listen` is not a loopback
    /// address; set the same value for the gateway and the producer (at least 16 characters).
    /// Env: `LOGPIPE_PRODUCER_INTERNAL_TOKEN`. Empty (default) means no check, loopback only.
    /// Never printed.
    pub internal_token: Secret,
    /// A file holding `internal_token` instead (trailing newline trimmed), read at start-up: a
    /// mounted Kubernetes or Docker secret. Not with `internal_token`.
    pub internal_token_file: PathBuf,
    /// Most events one internal publish request may carry (413 beyond). At least
    /// `gateway.max_batch_events`, so every batch the gateway accepts fits.
    pub max_request_events: usize,
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
    /// Env: `LOGPIPE_PRODUCER_PROPERTY_LINGER_MS` sets `linger.ms`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are read from files at start-up, like
    /// `kafka.property_files`; for the producers only.
    pub property_files: BTreeMap<String, PathBuf>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            // Loopback: the endpoint is internal, and anything wider needs `internal_token`.
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            internal_token: Secret::default(),
            internal_token_file: PathBuf::new(),
            // The gateway's default `max_batch_events`.
            max_request_events: 10_000,
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
            property_files: BTreeMap::new(),
        }
    }
}
