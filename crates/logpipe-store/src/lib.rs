//! logpipe's durable log store: where the consumer writes [`EnrichedLog`] batches and where the
//! HTTP query API reads them back. PostgreSQL in production, bundled SQLite as the embedded
//! default, behind one API: [`LogStore`].
//!
//! The core promise: an event replayed by Kafka (same topic, partition and offset, and the same
//! index within its record, as a record may hold several events) never creates a second row.
//! Both backends make these coordinates unique and report replays as
//! [`WriteReport::duplicates`].
//!
//! # Map
//! - this file: [`LogStore`] (the backend enum every caller holds) and [`StoreOptions`].
//! - `types`: what goes in and out: [`WriteReport`], [`Maintenance`], [`LogQuery`], [`LogPage`],
//!   [`StoredLog`], [`KafkaPosition`].
//! - `error`: [`StoreError`], and the one place where backend errors are classified as an outage
//!   (retry later) or a rejection (this data cannot be stored).
//! - `cells`: [`CellQuery`] and [`CellCount`]: stored rows counted the way the aggregates count
//!   events (per minute, service, level, error fingerprint), below a cut per Kafka partition.
//! - `cursor`: the opaque keyset-pagination cursor, shared by both backends.
//! - `plan` (private): checks a [`LogQuery`] and turns the rows read into a [`LogPage`]; shared
//!   query semantics.
//! - `sanitize` (private): NUL bytes and other text PostgreSQL cannot hold.
//! - `retention` (private): day arithmetic shared by both backends' `maintain()`.
//! - `postgres`: [`PgStore`]: partitioned table, binary COPY, pool, TLS ([`PgTls`]).
//! - `sqlite`: [`SqliteStore`]: a writer and a read-only search connection on one WAL file, on
//!   the blocking thread pool.

mod cells;
mod cursor;
mod error;
mod plan;
pub mod postgres;
mod retention;
mod sanitize;
pub mod sqlite;
mod types;

use chrono::{DateTime, Utc};
use logpipe_model::EnrichedLog;

pub use cells::{CellCount, CellQuery};
pub use error::StoreError;
pub use postgres::{check_tls_settings, PgStore, PgTls, SslMode};
pub use sqlite::SqliteStore;
pub use types::{
    KafkaPosition, LogPage, LogQuery, Maintenance, StoredLog, WriteReport, DEFAULT_QUERY_LIMIT,
    MAX_QUERY_LIMIT,
};

/// How a store is run. The same options apply to both backends where they make sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Days of logs kept: [`LogStore::maintain`] removes rows whose day (UTC) is more than this
    /// many days before today's. 7 keeps today and the 7 full days before it.
    pub retention_days: u32,
    /// PostgreSQL: daily partitions created ahead of today, so writes never wait for DDL at
    /// midnight. Ignored by SQLite.
    pub partitions_ahead_days: u32,
    /// PostgreSQL schema holding the tables. Tests use one schema each. Ignored by SQLite.
    pub schema: String,
    /// PostgreSQL connections in the pool. SQLite always uses one writer and one reader.
    pub pool_size: usize,
    /// PostgreSQL: the server cancels any statement of this pool's connections that runs longer
    /// (`statement_timeout`). None: the server's setting. The query API's pool sets it, so no
    /// search can hold a connection for long. SQLite: bounds each [`LogStore::query`] (waiting
    /// for the read connection included; see [`SqliteStore::with_query_timeout`]).
    pub statement_timeout: Option<std::time::Duration>,
    /// PostgreSQL: `application_name` of the pool's connections, unless the URL sets one (it
    /// names them in `pg_stat_activity`). Ignored by SQLite.
    pub application_name: String,
    /// PostgreSQL: the index that serves text search (`LogQuery::text`). SQLite has none to offer
    /// (no pg_trgm); the application refuses [`SearchIndex::Trigram`] with SQLite at config
    /// check, and the SQLite store ignores it.
    pub search_index: SearchIndex,
    /// PostgreSQL: TLS settings (libpq's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`); the
    /// same parameters in the URL win. Ignored by SQLite.
    pub tls: PgTls,
}

/// The index text search (`message ILIKE '%text%'`) uses on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchIndex {
    /// No index: a search scans the rows of its time range and other filters. The default:
    /// every index costs every write.
    #[default]
    None,
    /// A pg_trgm GIN index on `message` (`gin_trgm_ops`), built concurrently by `migrate()`.
    /// Searches of 3 characters or more read the index; writes run at about a quarter of the
    /// rate (docs/performance.md, "The search index study").
    Trigram,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention_days: 7,
            partitions_ahead_days: 3,
            schema: "public".to_owned(),
            pool_size: 4,
            statement_timeout: None,
            application_name: "logpipe".to_owned(),
            search_index: SearchIndex::None,
            tls: PgTls::default(),
        }
    }
}

/// The log store: one API over PostgreSQL or SQLite. Cheap to clone (both backends share their
/// connections), so the consumer and the HTTP API can hold the same store.
#[derive(Debug, Clone)]
pub enum LogStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl LogStore {
    /// Opens the store named by `url`:
    /// - `postgres://...` or `postgresql://...`: PostgreSQL (connects once to check the server is
    ///   reachable; [`StoreError::Unavailable`] when it is not);
    /// - `""` or `sqlite::memory:`: temporary SQLite, the embedded default: a database file in a
    ///   private temporary directory removed with the store (a file, so searches can have their
    ///   own connection). Nothing persists, on purpose: the embedded Kafka broker also restarts from offset 0, and rows left from a
    ///   previous run would have the same coordinates as new records and swallow them;
    /// - `sqlite://path/to/file.db`: a SQLite file (`sqlite:///abs/path.db` for an absolute path).
    ///
    /// Call [`migrate`](LogStore::migrate) before writing.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<LogStore, StoreError> {
        let url = url.trim();
        if url.is_empty() || url == "sqlite::memory:" {
            return Ok(LogStore::Sqlite(SqliteStore::open_in_memory(options)?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(LogStore::Postgres(PgStore::open(url, options).await?));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Schema(
                    "store URL `sqlite://` names no file: use sqlite://path/to/file.db or sqlite::memory:"
                        .into(),
                ));
            }
            let store = SqliteStore::open_file(path.to_owned(), options.clone()).await?;
            return Ok(LogStore::Sqlite(store));
        }
        // Only the scheme is echoed: the rest of a URL may hold a password.
        let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
        Err(StoreError::Schema(format!(
            "unsupported store URL scheme `{scheme}`: expected postgres://, postgresql://, \
             sqlite://path or sqlite::memory:"
        )))
    }

    /// `"postgres"` or `"sqlite"`, for logs and the demo summary.
    pub fn kind(&self) -> &'static str {
        match self {
            LogStore::Postgres(_) => "postgres",
            LogStore::Sqlite(_) => "sqlite",
        }
    }

    /// Whether concurrent [`write`](LogStore::write)s run in parallel: PostgreSQL writes each on
    /// its own pooled connection; SQLite has one writer and takes them one at a time.
    pub fn concurrent_writes(&self) -> bool {
        matches!(self, LogStore::Postgres(_))
    }

    /// Creates the schema if it is missing, or brings an older one up to date; idempotent and
    /// safe to run from several processes at once. PostgreSQL also creates today's partition and
    /// the ones ahead.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            LogStore::Postgres(store) => store.migrate().await,
            LogStore::Sqlite(store) => store.migrate().await,
        }
    }

    /// Periodic housekeeping as of `now`: creates partitions ahead, drops partitions and deletes
    /// rows older than the retention. Safe to run from several processes at once.
    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Maintenance, StoreError> {
        match self {
            LogStore::Postgres(store) => store.maintain(now).await,
            LogStore::Sqlite(store) => store.maintain(now).await,
        }
    }

    /// Writes a batch, all or nothing. Events whose Kafka coordinates are already stored are
    /// skipped and counted in [`WriteReport::duplicates`]. Only after `Ok` may the caller commit
    /// the batch's Kafka offsets.
    pub async fn write(&self, logs: &[EnrichedLog]) -> Result<WriteReport, StoreError> {
        match self {
            LogStore::Postgres(store) => store.write(logs).await,
            LogStore::Sqlite(store) => store.write(logs).await,
        }
    }

    /// One page of logs, newest first. See [`LogQuery`].
    pub async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        match self {
            LogStore::Postgres(store) => store.query(query).await,
            LogStore::Sqlite(store) => store.query(query).await,
        }
    }

    /// The stored rows of `query.from..query.until` (event time), counted the way the
    /// aggregates count events, below each partition's cut; see [`CellQuery`] and
    /// [`CellCount`]. One statement per call, bounded by event time: callers cover a long range
    /// in chunks (an hour holds a few million rows at most).
    pub async fn count_cells(&self, query: &CellQuery) -> Result<CellCount, StoreError> {
        match self {
            LogStore::Postgres(store) => store.count_cells(query).await,
            LogStore::Sqlite(store) => store.count_cells(query).await,
        }
    }

    /// Rows with an event time before this instant may be removed by
    /// [`maintain`](LogStore::maintain) as of `now`: the start of the first UTC day kept
    /// ([`StoreOptions::retention_days`]). Counts from before it are partial.
    pub fn retention_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            LogStore::Postgres(store) => store.retention_cutoff(now),
            LogStore::Sqlite(store) => store.retention_cutoff(now),
        }
    }

    /// Total rows stored. Counts every row, so it is slow on a big PostgreSQL table: for tests
    /// and the demo summary, not for dashboards.
    pub async fn count(&self) -> Result<u64, StoreError> {
        match self {
            LogStore::Postgres(store) => store.count().await,
            LogStore::Sqlite(store) => store.count().await,
        }
    }

    /// Whether the store answers a trivial query within a few seconds (readiness probe).
    pub async fn ping(&self) -> bool {
        match self {
            LogStore::Postgres(store) => store.ping().await,
            LogStore::Sqlite(store) => store.ping().await,
        }
    }
}
