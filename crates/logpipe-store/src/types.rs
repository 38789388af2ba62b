//! The values that cross the store's API: write and maintenance reports, the query and its page,
//! and [`StoredLog`], the row as the HTTP API returns it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use logpipe_model::Level;
use serde::{Deserialize, Serialize};

/// What one [`write`](crate::LogStore::write) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Rows added.
    pub inserted: u64,
    /// Events skipped because a row with their Kafka coordinates (topic, partition, offset and
    /// index) was already stored (a replay).
    /// `inserted + duplicates` is the batch length.
    pub duplicates: u64,
}

/// What one [`maintain`](crate::LogStore::maintain) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// PostgreSQL partitions created (`logs_YYYYMMDD`). Always empty for SQLite.
    pub created: Vec<String>,
    /// PostgreSQL partitions dropped because their day is past the retention. Always empty for
    /// SQLite.
    pub dropped: Vec<String>,
    /// Rows past the retention deleted one by one: from PostgreSQL's default partition (events
    /// with timestamps outside the daily partitions), or from SQLite's table.
    pub expired_rows: u64,
}

/// The largest page a query may ask for.
pub const MAX_QUERY_LIMIT: u32 = 1000;
/// The page size of [`LogQuery::default`].
pub const DEFAULT_QUERY_LIMIT: u32 = 100;

/// A search over stored logs. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Exact service name.
    pub service: Option<String>,
    /// Exact level.
    pub level: Option<Level>,
    /// Event timestamp at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Event timestamp before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the message (`%` and `_` match themselves). Case folding
    /// is the database's: PostgreSQL `ILIKE` (the database locale), SQLite `LIKE` (ASCII only).
    pub text: Option<String>,
    /// Page size, 1 to [`MAX_QUERY_LIMIT`]; anything else is [`StoreError::InvalidQuery`]
    /// (the HTTP API clamps before calling).
    ///
    /// [`StoreError::InvalidQuery`]: crate::StoreError::InvalidQuery
    pub limit: u32,
    /// Where to continue: [`LogPage::next_cursor`] of the previous page, unchanged.
    pub cursor: Option<String>,
}

impl Default for LogQuery {
    /// Everything, newest first, [`DEFAULT_QUERY_LIMIT`] per page.
    fn default() -> Self {
        LogQuery {
            service: None,
            level: None,
            since: None,
            until: None,
            text: None,
            limit: DEFAULT_QUERY_LIMIT,
            cursor: None,
        }
    }
}

/// One page of results: newest first (event timestamp descending, then Kafka topic, partition,
/// offset and index descending, so the order is total and pages never overlap or skip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    pub logs: Vec<StoredLog>,
    /// Pass back as [`LogQuery::cursor`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A stored log as the query API returns it. Field names are the JSON names of
/// `GET /api/v1/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredLog {
    pub timestamp: DateTime<Utc>,
    /// Serialises upper-case (`"ERROR"`).
    #[schema(schema_with = logpipe_model::level_schema)]
    pub level: Level,
    pub service: String,
    /// As sent, except that NUL characters are stored as U+FFFD (see `sanitize`).
    pub message: String,
    pub host: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// The client's attributes object.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
    /// OpenTelemetry severity number of `level`.
    pub severity_number: u8,
    /// 16 hex digits, as [`logpipe_model::Fingerprint`] displays.
    pub fingerprint: String,
    /// The message with its variable parts masked.
    pub template: String,
    pub kafka: KafkaPosition,
    /// When the gateway received the event, when known.
    pub ingested_at: Option<DateTime<Utc>>,
    /// When the consumer processed it.
    pub processed_at: DateTime<Utc>,
    /// The ingest request id, when known.
    pub request_id: Option<String>,
    /// Static tags from the consumer's configuration.
    pub tags: BTreeMap<String, String>,
}

/// Where a stored log came from in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KafkaPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The event's position within its record: 0 for a record holding one event, 0.. for a
    /// record holding many (an OTLP export request). With topic, partition and offset, unique
    /// per stored event.
    pub index: u32,
    /// The Kafka record timestamp, when the record had one.
    pub timestamp: Option<DateTime<Utc>>,
}
