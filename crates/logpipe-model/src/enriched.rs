//! A log event after the consumer has read it from Kafka and enriched it: the row the log store
//! writes and the unit the aggregates count. Built by `enrich` (pure functions); the stores only
//! read it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::LogEvent;

/// Hash of a message with its variable parts (numbers, ids, addresses, quoted strings) masked,
/// so that "timeout after 31 ms" and "timeout after 7 ms" group together. Shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The value as stored in a signed 64-bit column (PostgreSQL `bigint`, SQLite `INTEGER`).
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub fn from_i64(value: i64) -> Self {
        Fingerprint(value as u64)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

/// Where a record lives in Kafka. Unique per record, so it is the key that makes replays
/// idempotent in the stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaCoordinates {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// An event with everything enrichment added.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichedLog {
    pub event: LogEvent,
    pub coordinates: KafkaCoordinates,
    /// The Kafka record timestamp (producer create time), when the record has one.
    pub kafka_timestamp: Option<DateTime<Utc>>,
    /// OpenTelemetry severity number of `event.level` (INFO = 9, ERROR = 17).
    pub severity_number: u8,
    /// Groups similar messages; see [`Fingerprint`].
    pub fingerprint: Fingerprint,
    /// The message with its variable parts masked (`timeout after <num> ms`): what the top-errors
    /// list shows for a fingerprint.
    pub template: String,
    /// When the gateway received the event (from the `logpipe-ingest-ms` header).
    pub ingested_at: Option<DateTime<Utc>>,
    /// When the consumer processed it.
    pub processed_at: DateTime<Utc>,
    /// The ingest request id (from the `logpipe-request-id` header).
    pub request_id: Option<String>,
    /// Static tags from configuration (environment, region, ...), shared by every record.
    pub tags: Arc<BTreeMap<String, String>>,
}

impl EnrichedLog {
    /// End-to-end latency so far: ingest → processing, in milliseconds (when the ingest time is
    /// known and not in the future).
    pub fn latency_ms(&self) -> Option<f64> {
        let ingested = self.ingested_at?;
        let micros = (self.processed_at - ingested).num_microseconds()?;
        (micros >= 0).then(|| micros as f64 / 1000.0)
    }
}
