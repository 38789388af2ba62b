//! The SQLite log store: the embedded default, with the same API and query semantics as
//! PostgreSQL.
//!
//! One table shaped like PostgreSQL's (no partitions), `STRICT` so types are enforced, with
//! timestamps as integer microseconds since the Unix epoch (exact, and they compare as numbers).
//! `UNIQUE (kafka_topic, kafka_partition, kafka_offset, kafka_index)` makes writes idempotent
//! (`kafka_index`: the event's position within its Kafka record; see `schema`, which also
//! migrates files written before it existed): a batch is one
//! `IMMEDIATE` transaction of `INSERT ... ON CONFLICT DO NOTHING` through one prepared
//! statement, and `changes()` (the count `execute` returns) tells inserted rows from
//! duplicates. `ON CONFLICT (coordinates) DO NOTHING` rather than `INSERT OR IGNORE`: `OR IGNORE`
//! would also silently skip a row breaking any other constraint.
//!
//! Two connections to one WAL database file (see `connections`): the writer, used for everything
//! but searches (SQLite allows one writer at a time anyway), and a read-only reader for
//! [`query`](SqliteStore::query), bounded in time, so the query API never delays the consumer.
//! Both are used only from `spawn_blocking` threads. Counting for the aggregates (`cells`)
//! reads on the reader too.
//!
//! The "in-memory" store is a database file in a private temporary directory, removed when the
//! last clone of the store is dropped: a true `:memory:` database cannot be opened by a second
//! connection (and a shared-cache one serialises the connections on one lock for the length of a
//! statement, so a scan would still block writes). It is written with `synchronous = OFF`
//! (nothing reads it after a restart); only a killed process leaves the directory behind.
//! File databases use `synchronous = FULL`: a committed batch survives a power cut, which the
//! consumer relies on when it commits offsets.

mod cells;
mod connections;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use logpipe_model::EnrichedLog;
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use connections::{Durability, Reader};
use rows::{stored_log, OwnedRow};

use crate::cells::{CellCount, CellQuery};
use crate::error::{from_sqlite, StoreError};
use crate::plan::QueryPlan;
use crate::retention;
use crate::types::{LogPage, LogQuery, Maintenance, WriteReport};
use crate::StoreOptions;

/// Readiness probes answer within this (a long write holds the connection).
const PING_TIMEOUT: Duration = Duration::from_secs(3);

const INSERT: &str = "INSERT INTO logs (ts, processed_at, kafka_ts, ingested_at, kafka_offset, \
     fingerprint, kafka_partition, severity_number, level, service, kafka_topic, host, trace_id, \
     span_id, request_id, message, template, attributes, tags, kafka_index) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
     ?20) ON CONFLICT (kafka_topic, kafka_partition, kafka_offset, kafka_index) DO NOTHING";

/// The columns read, in the order [`stored_log`] expects.
const SELECT_COLUMNS: &str = "ts, level, service, message, host, trace_id, span_id, attributes, \
     severity_number, fingerprint, template, kafka_topic, kafka_partition, kafka_offset, \
     kafka_ts, ingested_at, processed_at, request_id, tags, kafka_index";

/// The SQLite backend of [`LogStore`](crate::LogStore). Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// How long one [`query`](SqliteStore::query) may take, waiting for the reader included.
    /// None: unbounded. Per handle, so the query API's handle is bounded and the others are not.
    query_timeout: Option<Duration>,
}

struct Inner {
    /// Writes, migrations, retention, counts, pings. A std mutex: taken only on blocking threads
    /// and never held across an `.await`.
    writer: Mutex<Connection>,
    /// Searches only.
    reader: Reader,
    /// For `Debug`: the file path, or `temporary` and the path.
    location: String,
    options: StoreOptions,
    /// The temporary store's directory, removed on drop (after the connections, declared above).
    _temporary: Option<tempfile::TempDir>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .finish()
    }
}

impl SqliteStore {
    /// A private temporary database: gone when the store is dropped (see the module comment
    /// for why a file and not `:memory:`).
    pub fn open_in_memory(options: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let directory = tempfile::Builder::new()
            .prefix("logpipe-sqlite-")
            .tempdir()
            .map_err(|err| {
                StoreError::Unavailable(format!(
                    "creating a temporary directory for the embedded SQLite store: {err}; \
                     check that the temporary directory (TMPDIR) is writable"
                ))
            })?;
        let path = directory.path().join("logs.db");
        let writer = connections::open_writer(&path, Durability::None)?;
        let reader = connections::open_reader(&path)?;
        let location = format!("temporary {}", path.display());
        Ok(SqliteStore::new(
            writer,
            reader,
            location,
            options.clone(),
            Some(directory),
        ))
    }

    /// A database file, created if missing.
    pub async fn open_file(path: String, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let location = path.clone();
        let (writer, reader) = blocking(move || {
            let path = PathBuf::from(path);
            let writer = connections::open_writer(&path, Durability::Full)?;
            Ok((writer, connections::open_reader(&path)?))
        })
        .await?;
        Ok(SqliteStore::new(writer, reader, location, options, None))
    }

    fn new(
        writer: Connection,
        reader: Reader,
        location: String,
        options: StoreOptions,
        temporary: Option<tempfile::TempDir>,
    ) -> SqliteStore {
        SqliteStore {
            query_timeout: options.statement_timeout,
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                reader,
                location,
                options,
                _temporary: temporary,
            }),
        }
    }

    /// A handle on the same database whose [`query`](SqliteStore::query) stops after `timeout`
    /// with [`StoreError::Unavailable`]: the query API's handle.
    pub fn with_query_timeout(&self, timeout: Duration) -> SqliteStore {
        SqliteStore {
            inner: Arc::clone(&self.inner),
            query_timeout: Some(timeout),
        }
    }

    /// Runs `work` on the writer, on the blocking thread pool.
    async fn with_connection<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            // A panic while the lock was held cannot leave a transaction half done (rusqlite
            // rolls back a dropped transaction), so a poisoned lock is still a good connection.
            let mut connection = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.with_connection(schema::migrate).await
    }

    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Maintenance, StoreError> {
        let cutoff = retention::cutoff(now, self.inner.options.retention_days).timestamp_micros();
        let expired = self
            .with_connection(move |connection| {
                connection
                    .execute("DELETE FROM logs WHERE ts < ?1", [cutoff])
                    .map_err(|err| from_sqlite("deleting expired rows", &err))
            })
            .await?;
        Ok(Maintenance {
            expired_rows: expired as u64,
            ..Maintenance::default()
        })
    }

    pub async fn write(&self, logs: &[EnrichedLog]) -> Result<WriteReport, StoreError> {
        if logs.is_empty() {
            return Ok(WriteReport::default());
        }
        // Owned copies: the blocking thread cannot borrow the caller's batch.
        let rows: Vec<OwnedRow> = logs.iter().map(OwnedRow::new).collect();
        let total = rows.len() as u64;
        let inserted = self
            .with_connection(move |connection| {
                let context = "writing a batch";
                let fail = |err: rusqlite::Error| from_sqlite(context, &err);
                let tx = connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(fail)?;
                let mut inserted = 0u64;
                {
                    let mut insert = tx.prepare_cached(INSERT).map_err(fail)?;
                    for row in &rows {
                        inserted += row.insert(&mut insert).map_err(fail)? as u64;
                    }
                }
                tx.commit().map_err(fail)?;
                Ok(inserted)
            })
            .await?;
        Ok(WriteReport {
            inserted,
            duplicates: total.saturating_sub(inserted),
        })
    }

    pub async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let plan = QueryPlan::new(query)?;
        let (sql, params) = build_query(&plan);
        let reader = &self.inner.reader;
        let logs = connections::read_within(reader, self.query_timeout, move |connection| {
            let fail = |err: rusqlite::Error| from_sqlite("querying logs", &err);
            let mut statement = connection.prepare_cached(&sql).map_err(fail)?;
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(fail)?;
            let mut logs = Vec::new();
            while let Some(row) = rows.next().map_err(fail)? {
                logs.push(stored_log(row)?);
            }
            Ok(logs)
        })
        .await?;
        Ok(plan.page(logs))
    }

    /// See [`LogStore::count_cells`](crate::LogStore::count_cells). Runs on the read-only
    /// connection, within this handle's query budget (see
    /// [`with_query_timeout`](SqliteStore::with_query_timeout)), like a search.
    pub async fn count_cells(&self, query: &CellQuery) -> Result<CellCount, StoreError> {
        cells::count_cells(self, query).await
    }

    /// See [`LogStore::retention_cutoff`](crate::LogStore::retention_cutoff).
    pub fn retention_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        retention::cutoff(now, self.inner.options.retention_days)
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        self.with_connection(|connection| {
            connection
                .query_row("SELECT count(*) FROM logs", [], |row| row.get::<_, i64>(0))
                .map(|count| count.max(0) as u64)
                .map_err(|err| from_sqlite("counting rows", &err))
        })
        .await
    }

    pub async fn ping(&self) -> bool {
        let probe = self.with_connection(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|err| from_sqlite("ping", &err))
        });
        matches!(tokio::time::timeout(PING_TIMEOUT, probe).await, Ok(Ok(())))
    }
}

/// Runs blocking work on tokio's blocking pool. A panic in `work` is a bug and resumes here.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(StoreError::Unavailable(format!(
            "SQLite task did not finish: {err}"
        ))),
    }
}

/// The statement and its parameters for `plan`; the same shape as PostgreSQL's.
fn build_query(plan: &QueryPlan) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {SELECT_COLUMNS} FROM logs WHERE 1");
    let mut params = Vec::new();
    if let Some(service) = &plan.service {
        sql.push_str(" AND service = ?");
        params.push(Value::Text(service.clone()));
    }
    if let Some(level) = plan.level {
        sql.push_str(" AND level = ?");
        params.push(Value::Text(level.as_str().to_owned()));
    }
    if let Some(since) = plan.since {
        sql.push_str(" AND ts >= ?");
        params.push(Value::Integer(since.timestamp_micros()));
    }
    if let Some(until) = plan.until {
        sql.push_str(" AND ts < ?");
        params.push(Value::Integer(until.timestamp_micros()));
    }
    if let Some(pattern) = &plan.like_pattern {
        // SQLite's LIKE is case-insensitive for ASCII letters.
        sql.push_str(" AND message LIKE ? ESCAPE '\\'");
        params.push(Value::Text(pattern.clone()));
    }
    if let Some(after) = &plan.after {
        sql.push_str(
            " AND (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index) < (?, ?, ?, ?, ?)",
        );
        params.push(Value::Integer(after.timestamp_micros()));
        params.push(Value::Text(after.topic.clone()));
        params.push(Value::Integer(i64::from(after.partition)));
        params.push(Value::Integer(after.offset));
        params.push(Value::Integer(i64::from(after.index)));
    }
    sql.push_str(
        " ORDER BY ts DESC, kafka_topic DESC, kafka_partition DESC, kafka_offset DESC, \
         kafka_index DESC LIMIT ?",
    );
    params.push(Value::Integer(plan.fetch()));
    (sql, params)
}
