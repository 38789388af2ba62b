//! The PostgreSQL log store: a daily-partitioned `logs` table written by binary COPY, made
//! idempotent by a unique key on the Kafka coordinates.
//!
//! # Table
//! `logs` is `PARTITION BY RANGE (ts)` on the event timestamp, one partition per UTC day named
//! `logs_YYYYMMDD`, plus `logs_default` (a DEFAULT partition) for events outside the created days:
//! very old or far-future timestamps and late events for days before the store existed. Daily
//! partitions make retention a `DROP TABLE` (no `DELETE`, no vacuum debt) and let queries with a
//! time range skip whole days. Columns are in `COLUMNS`: fixed-width first (fewer alignment
//! bytes per row), level as text (`WHERE level = 'ERROR'` reads naturally in psql), identifiers
//! `COLLATE "C"` (byte-wise, fast index comparisons), attributes and tags as `jsonb`, the
//! fingerprint as `bigint` (`Fingerprint::as_i64`).
//!
//! # Idempotency
//! The unique index `logs_event_key` on `(ts, kafka_topic, kafka_partition, kafka_offset,
//! kafka_index)`: a Kafka record may hold several events (an OTLP export request), told apart by
//! `kafka_index`, their position in the record (0 for a one-event record). A unique key on a
//! partitioned table must contain the partition key; a replayed record always carries the same
//! event timestamps, so the key still identifies each event. `ts` comes first on purpose: the
//! same index then also serves the query API's order (`ts DESC, kafka_topic DESC, ...`) and its
//! keyset comparison, so no separate `(ts DESC)` index is needed and every COPY maintains one
//! index fewer. Databases created with the earlier four-column key are moved to this one by
//! `migrate()` without a long lock (`key`).
//!
//! # Writes (`copy`)
//! Fast path: one binary `COPY logs FROM STDIN` per batch, straight into the partitioned table
//! (PostgreSQL routes the rows), inside BEGIN/COMMIT: a write is reported only once COMMIT has
//! answered (an implicit transaction commits after the row count is sent, so a connection lost in
//! between would lose rows reported as written). A unique violation (23505) only happens when the
//! batch replays events already stored; then the COPY has written nothing, and the batch goes the
//! slow path: COPY into a temporary staging table, then `INSERT ... SELECT ... ON CONFLICT DO
//! NOTHING` in one transaction, reporting the rows skipped as duplicates.
//!
//! # Partitions and retention (`schema`)
//! `migrate()` and `maintain(now)` create the partitions for today and `partitions_ahead_days`
//! days after it, so the midnight switch never waits for DDL. `maintain` drops `logs_YYYYMMDD`
//! partitions whose day is more than `retention_days` before today, and deletes rows older than
//! that from `logs_default`. If the default partition already holds rows for a day whose
//! partition is being created (a client clock days ahead), `CREATE ... PARTITION OF` would
//! fail; those rows are moved into the new partition in the same transaction. DDL runs under a
//! per-schema advisory lock (several consumers may migrate or maintain at once) and a
//! `lock_timeout` (never queue every writer behind a long query).
//!
//! # Text
//! NUL cannot be stored in `text`, nor `\u0000` in `jsonb`: both are stored as U+FFFD
//! (`crate::sanitize`), so one odd record does not fail its batch.
//!
//! # Indexes (`schema`)
//! Besides the unique key: `(service, ts DESC)` and a partial `(level, ts DESC)` for every level
//! but INFO and DEBUG. No trigram index by default: it divides write throughput by four; it is
//! opt-in (`StoreOptions::search_index`, built concurrently by `search`). The shipped
//! set writes 125k–129k rows/s with batches of 500 and 156k–169k with batches of 5,000 on the
//! 2-core test machine (`examples/copy_bench.rs`; the table and the reasoning are in `schema.rs`).
//!
//! # Counting for the aggregates (`cells`)
//! One grouped statement per event-time range, planned for its own values so only the range's
//! partitions are read.
//!
//! # Connections
//! A deadpool pool with `RecyclingMethod::Verified`: a connection is checked with an empty query
//! before it is handed out, so connections killed by the server (`pg_terminate_backend`, a
//! restart) are replaced instead of failing the next write. A write that was already running on
//! a killed connection fails with [`StoreError::Unavailable`]; the consumer retries the batch and
//! the unique key makes the retry exact even if the first attempt had committed.
//!
//! # TLS (`sslmode`, `tls`)
//! libpq's `sslmode` (`disable`, `prefer` by default, `require`, `verify-ca`, `verify-full`),
//! `sslrootcert` (a CA file or `system`), `sslcert` and `sslkey`, from the URL's query string or
//! from [`StoreOptions::tls`] (the URL wins, parameter by parameter), with rustls. `sslmode`
//! says what is checked and why; `tls` builds the connector. Every pool goes through
//! [`PgStore::open`], so every connection gets the same settings.

mod cells;
mod concurrent;
mod copy;
mod key;
mod query;
mod schema;
mod search;
mod sslmode;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use logpipe_model::{EnrichedLog, Fnv1a64};
use tokio_postgres::types::Type;

pub use sslmode::{check_tls_settings, PgTls, SslMode};

use crate::cells::{CellCount, CellQuery};
use crate::error::{from_pool, from_postgres, StoreError};
use crate::retention;
use crate::types::{LogPage, LogQuery, Maintenance, WriteReport};
use crate::StoreOptions;

/// Time allowed to open a TCP connection and log in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a caller waits for a free pooled connection before the store counts as unavailable.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the health check of a pooled connection.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Readiness probes answer within this.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// One column of `logs`. The DDL, the COPY statements and the SELECT list are all built from
/// [`COLUMNS`], so they cannot drift apart.
pub(crate) struct Column {
    pub name: &'static str,
    /// Type and constraint, as written in `CREATE TABLE`.
    pub ddl: &'static str,
    /// The type binary COPY encodes.
    pub ty: Type,
}

/// The columns of `logs`, in the order of a table created by this version (a table migrated from
/// the earlier schema has `kafka_index` last, where `ADD COLUMN` puts it; every statement names
/// its columns, so the order does not matter to them).
pub(crate) static COLUMNS: [Column; 20] = [
    column("ts", "timestamptz NOT NULL", Type::TIMESTAMPTZ),
    column("processed_at", "timestamptz NOT NULL", Type::TIMESTAMPTZ),
    column("kafka_ts", "timestamptz", Type::TIMESTAMPTZ),
    column("ingested_at", "timestamptz", Type::TIMESTAMPTZ),
    column("kafka_offset", "bigint NOT NULL", Type::INT8),
    column("fingerprint", "bigint NOT NULL", Type::INT8),
    column("kafka_partition", "integer NOT NULL", Type::INT4),
    column("kafka_index", "integer NOT NULL DEFAULT 0", Type::INT4),
    column("severity_number", "smallint NOT NULL", Type::INT2),
    column("level", "text COLLATE \"C\" NOT NULL", Type::TEXT),
    column("service", "text COLLATE \"C\" NOT NULL", Type::TEXT),
    column("kafka_topic", "text COLLATE \"C\" NOT NULL", Type::TEXT),
    column("host", "text", Type::TEXT),
    column("trace_id", "text", Type::TEXT),
    column("span_id", "text", Type::TEXT),
    column("request_id", "text", Type::TEXT),
    column("message", "text NOT NULL", Type::TEXT),
    column("template", "text NOT NULL", Type::TEXT),
    column("attributes", "jsonb", Type::JSONB),
    column("tags", "jsonb NOT NULL", Type::JSONB),
];

const fn column(name: &'static str, ddl: &'static str, ty: Type) -> Column {
    Column { name, ddl, ty }
}

/// `kafka_index` as stored (`integer`). Lossless in practice: a Kafka record is smaller than
/// 2 GiB (its size is an `int32`) and every event in it takes at least a byte, so an index never
/// reaches 2^31; the clamp only keeps a malformed value from wrapping negative.
pub(crate) fn index_column(index: u32) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// The types of [`COLUMNS`], as binary COPY wants them.
pub(crate) fn column_types() -> Vec<Type> {
    COLUMNS.iter().map(|column| column.ty.clone()).collect()
}

/// Quotes an SQL identifier: any schema name is safe to splice into a statement.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Names and statements that depend only on the schema, built once at open.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The schema name, unquoted.
    pub schema: String,
    /// `"schema"."logs"`
    pub logs: String,
    /// `"schema"."logs_default"`
    pub default_partition: String,
    /// `ts, processed_at, ...`, every column in table order.
    pub columns: String,
    /// Key for `pg_advisory_xact_lock`, per schema: DDL on one schema (migrate, partitions)
    /// runs one process at a time.
    pub lock_key: i64,
    /// Key for the session lock of the concurrent index builds (`concurrent`: the unique key,
    /// the search index), per schema.
    pub build_lock_key: i64,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let columns = COLUMNS
            .iter()
            .map(|column| column.name)
            .collect::<Vec<_>>()
            .join(", ");
        Sql {
            schema: schema.to_owned(),
            logs: Sql::qualify(schema, "logs"),
            default_partition: Sql::qualify(schema, "logs_default"),
            columns,
            lock_key: lock_key(schema),
            build_lock_key: build_lock_key(schema),
        }
    }

    /// `"schema"."table"`
    pub fn qualify(schema: &str, table: &str) -> String {
        format!("{}.{}", quote_ident(schema), quote_ident(table))
    }

    pub fn table(&self, table: &str) -> String {
        Sql::qualify(&self.schema, table)
    }
}

/// A stable 64-bit key for the schema (FNV-1a): the same in every process and every build.
fn lock_key(schema: &str) -> i64 {
    let mut hasher = Fnv1a64::new();
    hasher.write(b"logpipe-store:");
    hasher.write(schema.as_bytes());
    hasher.finish() as i64
}

/// The lock key of the concurrent index builds: a different key from [`lock_key`], so a build
/// never holds the lock other migrations and maintenance wait for (see `concurrent`). The
/// string is the one the unique-key move used alone, so older releases take the same lock.
fn build_lock_key(schema: &str) -> i64 {
    let mut hasher = Fnv1a64::new();
    hasher.write(b"logpipe-store-key:");
    hasher.write(schema.as_bytes());
    hasher.finish() as i64
}

/// The PostgreSQL backend of [`LogStore`](crate::LogStore). Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Sql,
    options: StoreOptions,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.sql.schema)
            .field("pool", &self.inner.pool.status())
            .finish()
    }
}

impl PgStore {
    /// Builds the pool and connects once, so an unreachable server is reported now
    /// ([`StoreError::Unavailable`]) rather than at the first write.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PgStore, StoreError> {
        if options.schema.is_empty() {
            return Err(StoreError::Schema(
                "the PostgreSQL schema name is empty".into(),
            ));
        }
        let (url, url_tls) = sslmode::split_url(url)
            .map_err(|err| StoreError::Schema(format!("invalid PostgreSQL URL: {err}")))?;
        let plan = sslmode::plan(url_tls, &options.tls)
            .map_err(|err| StoreError::Schema(format!("PostgreSQL TLS settings: {err}")))?;
        let connector = tls::connector(&plan)
            .map_err(|err| StoreError::Schema(format!("PostgreSQL TLS settings: {err}")))?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError::Schema(format!("invalid PostgreSQL URL: {err}")))?;
        config.ssl_mode(match plan.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            // The verify modes need TLS; what they check is the connector's business.
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        // Settings the URL can override: it names the connection in pg_stat_activity.
        if config.get_application_name().is_none() {
            config.application_name(&options.application_name);
        }
        if let Some(timeout) = options.statement_timeout {
            config.options(format!(
                "-c statement_timeout={}",
                timeout.as_millis().max(1)
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Notices a silently dropped connection (a failover, a NAT timeout, a powered-off host)
        // within about a minute, so a write stuck on it fails as Unavailable instead of hanging
        // for the system default of two hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|err| StoreError::Schema(format!("building the connection pool: {err}")))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&options.schema),
                options: options.clone(),
            }),
        };
        drop(store.client().await?);
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        schema::migrate(self).await
    }

    pub async fn maintain(&self, now: DateTime<Utc>) -> Result<Maintenance, StoreError> {
        schema::maintain(self, now).await
    }

    pub async fn write(&self, logs: &[EnrichedLog]) -> Result<WriteReport, StoreError> {
        copy::write(self, logs).await
    }

    pub async fn query(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        query::query(self, query).await
    }

    /// See [`LogStore::count_cells`](crate::LogStore::count_cells).
    pub async fn count_cells(&self, query: &CellQuery) -> Result<CellCount, StoreError> {
        cells::count_cells(self, query).await
    }

    /// See [`LogStore::retention_cutoff`](crate::LogStore::retention_cutoff).
    pub fn retention_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        retention::cutoff(now, self.options().retention_days)
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = format!("SELECT count(*) FROM {}", self.inner.sql.logs);
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(|err| from_postgres("counting rows", &err))?;
        let count: i64 = row.get(0);
        Ok(count.max(0) as u64)
    }

    pub async fn ping(&self) -> bool {
        let probe = async {
            let client = self.client().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        matches!(tokio::time::timeout(PING_TIMEOUT, probe).await, Ok(Some(_)))
    }

    /// `EXPLAIN` of the statement [`query`](PgStore::query) runs for `query`, planned the same
    /// way (with its parameters). Not part of the API: tests check that a search uses the
    /// trigram index.
    #[doc(hidden)]
    pub async fn explain(&self, query: &LogQuery) -> Result<String, StoreError> {
        query::explain(self, query).await
    }

    /// Whether the trigram search index is in place and valid. Not part of the API.
    #[doc(hidden)]
    pub async fn search_index_valid(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        search::valid(&client, self.sql()).await
    }

    /// The pool. Public for benchmarks and tests that inspect the database directly.
    #[doc(hidden)]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Binary COPY of `logs` into `table` with the store's own row encoding, bypassing
    /// partitions, indexes and de-duplication: the baseline of `examples/copy_bench.rs`. Not
    /// part of the API.
    #[doc(hidden)]
    pub async fn copy_raw(&self, table: &str, logs: &[EnrichedLog]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        copy::copy_raw(&client, table, logs)
            .await
            .map_err(|err| from_postgres("raw COPY", &err))
    }

    /// A pooled connection, already checked to be alive.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(from_pool)
    }

    fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    fn options(&self) -> &StoreOptions {
        &self.inner.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_stored_as_integers() {
        assert_eq!(index_column(0), 0);
        assert_eq!(index_column(7), 7);
        assert_eq!(index_column(u32::MAX), i32::MAX);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("logs"), "\"logs\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(Sql::qualify("t_1", "logs"), "\"t_1\".\"logs\"");
    }

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_ne!(lock_key("public"), lock_key("t_1"));
        assert_eq!(lock_key("public"), lock_key("public"));
        // Fixed: processes of different releases migrating the same schema must take the same
        // lock. FNV-1a 64 of "logpipe-store:public", computed independently.
        assert_eq!(lock_key("public"), -7_109_939_689_728_538_052);
        assert_ne!(build_lock_key("public"), lock_key("public"));
        assert_ne!(build_lock_key("public"), build_lock_key("t_1"));
    }
}
