//! PostgreSQL DDL: `migrate()` (the table, its indexes, the first partitions; moving an older
//! table to the current unique key is in `key`) and `maintain()` (partitions ahead, retention).
//!
//! Concurrency: every transaction that changes DDL takes `pg_advisory_xact_lock` on the schema's
//! key first, so several consumers starting or maintaining at once take turns, and each re-checks
//! what exists after it got the lock. Maintenance transactions also set a `lock_timeout`: creating
//! or dropping a partition needs an exclusive lock on `logs`, and waiting behind a long query
//! would queue every writer behind it. A timed-out step fails as `Unavailable` and the next
//! maintenance run tries again.
//!
//! A day whose partition is created after the default partition already received rows for it
//! (a client clock running days ahead, or partitions not created for a while) would make
//! `CREATE TABLE ... PARTITION OF` fail. So creating a partition moves that day's rows out of the
//! default partition first and back in after, in the same transaction.

use chrono::{Days, NaiveDate};
use tracing::{info, warn};

use super::{key, search, PgStore, Sql, COLUMNS};
use crate::error::{from_postgres, StoreError};
use crate::retention;
use crate::types::Maintenance;

/// How long DDL waits for the table lock before giving up (see the module comment).
const LOCK_TIMEOUT: &str = "10s";

/// Converts a client error, adding what was being done.
fn failed(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |err| from_postgres(context, &err)
}

/// Creates the schema, table, default partition, indexes and today's and the ahead partitions,
/// whichever are missing; then moves a table created with the earlier unique key to the current
/// one (`key`) and builds the opt-in search index (`search`), both concurrently, outside this
/// transaction.
pub(super) async fn migrate(store: &PgStore) -> Result<(), StoreError> {
    create_missing(store).await?;
    key::move_key(store, LOCK_TIMEOUT).await?;
    search::ensure(store, LOCK_TIMEOUT).await
}

/// The transactional part of [`migrate`].
async fn create_missing(store: &PgStore) -> Result<(), StoreError> {
    let sql = store.sql();
    let mut client = store.client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(failed("starting the migration"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(failed("migrating"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .await
        .map_err(failed("waiting for the migration lock"))?;
    // `CREATE SCHEMA IF NOT EXISTS` still needs the CREATE privilege on the database, which a
    // role owning only its schema may lack: create only when missing.
    let schema_exists = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&sql.schema],
        )
        .await
        .map_err(failed("looking up the schema"))?
        .is_some();
    if !schema_exists {
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            super::quote_ident(&sql.schema)
        ))
        .await
        .map_err(failed("creating the schema"))?;
    }
    // Only what is missing: `CREATE INDEX IF NOT EXISTS` on an existing index still takes a
    // SHARE lock on `logs` (blocking writers) before it notices, and every consumer start
    // migrates.
    let mut table_created = false;
    for (name, statement) in schema_objects(sql) {
        // On an existing table, the key is built concurrently by `key::move_key` instead: a
        // plain build would lock out writers for as long as it reads the whole table.
        if name == key::KEY_INDEX && !table_created {
            continue;
        }
        let exists: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sql.table(name)])
            .await
            .map_err(failed("looking up the schema"))?
            .get(0);
        if !exists {
            tx.batch_execute(&statement)
                .await
                .map_err(failed("creating the logs table"))?;
            info!(schema = %sql.schema, object = name, "created");
            table_created |= name == "logs";
        }
    }
    if !table_created {
        key::add_index_column(&tx, sql).await?;
    }
    tx.commit()
        .await
        .map_err(failed("committing the migration"))?;
    // A transaction of its own: `ADD COLUMN` above holds an exclusive lock on `logs` until its
    // commit, and creating a partition scans the default partition, which may be big.
    let tx = locked_transaction(&mut client, sql).await?;
    let today = chrono::Utc::now().date_naive();
    for day in days_ahead(today, store.options().partitions_ahead_days) {
        create_partition(&tx, sql, day).await?;
    }
    tx.commit()
        .await
        .map_err(failed("committing the migration"))
}

/// The levels the partial level index covers: all but INFO and DEBUG, which make up the bulk of
/// the traffic. Queries inline the level as a literal so the planner can see that
/// `level = 'ERROR'` implies this predicate.
pub(super) const INDEXED_LEVELS: &str = "'TRACE', 'WARN', 'ERROR', 'FATAL'";

/// The table, its default partition and its indexes, by name, in creation order.
///
/// # The index set, and what it costs
///
/// Every index is maintained by every COPY, so the set is the smallest that answers the query
/// API without scanning. `examples/copy_bench.rs`: 200,000 rows of about 260 bytes, 60% INFO,
/// 25% DEBUG; a 2-core machine shared with PostgreSQL 15 (`synchronous_commit = on`) and other
/// builds. Rows/s through `write()`, the range over two runs:
///
/// | index set                                      | batch 500 | batch 5000 | 5000, 2 writers |
/// |------------------------------------------------|----------:|-----------:|----------------:|
/// | unique key only                                | 163k–187k |  238k–261k |       277k–299k |
/// | + (service, ts)                                | 123k–131k |  159k–177k |       194k–234k |
/// | + (level, ts) WHERE not INFO/DEBUG: **kept**   | 125k–129k |  156k–169k |       197k–214k |
/// | ... with (level, ts) on every row instead      |  83k–100k |   99k–139k |       173k–192k |
/// | ... + pg_trgm GIN on message                   |   29k–30k |    34k     |        51k–54k  |
/// | raw binary COPY: one table, no index, no key   | 222k–223k |  342k–346k |               - |
///
/// Replaying a batch that is already stored (the staging-table path) runs at 134k–150k rows/s.
///
/// - The unique key `logs_event_key` on `(ts, kafka_topic, kafka_partition, kafka_offset,
///   kafka_index)` is required for idempotency and also serves time ranges, the page order and
///   the keyset cursor. (The table above was measured with the earlier four-column key. With
///   `kafka_index` added, `copy_bench` with the shipped set at batch 5000 read 68k–90k rows/s
///   against 53k–89k for the earlier key, run alternately on the same machine under a load
///   average of 6 to 11: no difference shows through the noise.)
/// - `(service, ts DESC)`: per-service views are the commonest filter; without it a quiet
///   service among busy ones means scanning everything newest-first (measured on 1M rows: one
///   page of a rare service read 180,000 rows without it; with it, an index scan of 60).
/// - `(level, ts DESC)` partial, without INFO and DEBUG: "show me the errors" must be fast even
///   when there are none in the window (a FATAL query over 1M rows: 123 ms scanning, 12 ms
///   with it), while INFO (and DEBUG, when enabled) are dense, so a newest-first scan finds a
///   page of them within a few pages of rows. Indexing every row costs a quarter of the write
///   throughput.
/// - No trigram index for `ILIKE '%text%'` by default: it divides write throughput by four to
///   five. Text search then scans newest-first within the other filters and the time range.
///   `postgres.search_index = "trigram"` (`StoreOptions::search_index`) adds it, built
///   concurrently after this set (`search`), for stores that search more than they save on
///   writes: at 5,000 events/s a rare search over 15 minutes reads 4.5M rows without it
///   (seconds) and takes milliseconds with it (docs/performance.md, "The search index study").
/// - `COLLATE "C"` on level, service and kafka_topic: byte-wise comparisons in every index descent
///   instead of the database locale's `strcoll` (also with a `C.UTF-8` database), and the same
///   order as SQLite's.
fn schema_objects(sql: &Sql) -> Vec<(&'static str, String)> {
    let columns = COLUMNS
        .iter()
        .map(|column| format!("    {} {}", column.name, column.ddl))
        .collect::<Vec<_>>()
        .join(",\n");
    let logs = &sql.logs;
    let default = &sql.default_partition;
    vec![
        (
            "logs",
            format!("CREATE TABLE IF NOT EXISTS {logs} (\n{columns}\n) PARTITION BY RANGE (ts)"),
        ),
        (
            "logs_default",
            format!("CREATE TABLE IF NOT EXISTS {default} PARTITION OF {logs} DEFAULT"),
        ),
        // A unique index rather than a constraint: the same shape as the key `key::move_key`
        // builds on an older table, where a constraint cannot be added to a partitioned table
        // from an existing index.
        (key::KEY_INDEX, key::create_statement(sql)),
        (
            "logs_service_ts_idx",
            format!("CREATE INDEX IF NOT EXISTS logs_service_ts_idx ON {logs} (service, ts DESC)"),
        ),
        (
            "logs_level_ts_idx",
            format!(
                "CREATE INDEX IF NOT EXISTS logs_level_ts_idx ON {logs} (level, ts DESC) \
                 WHERE level IN ({INDEXED_LEVELS})"
            ),
        ),
    ]
}

/// Partitions ahead, retention. Each step is its own short transaction.
pub(super) async fn maintain(
    store: &PgStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Maintenance, StoreError> {
    let sql = store.sql();
    let options = store.options();
    let mut client = store.client().await?;
    let mut report = Maintenance::default();

    for day in days_ahead(now.date_naive(), options.partitions_ahead_days) {
        let tx = locked_transaction(&mut client, sql).await?;
        if create_partition(&tx, sql, day).await? {
            report.created.push(partition_name(day));
        }
        tx.commit()
            .await
            .map_err(failed("committing a new partition"))?;
    }

    let first_kept = retention::first_kept_day(now, options.retention_days);
    for (name, day) in list_partitions(&client, sql).await? {
        if day >= first_kept {
            continue;
        }
        let tx = locked_transaction(&mut client, sql).await?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", sql.table(&name)))
            .await
            .map_err(failed("dropping an expired partition"))?;
        tx.commit()
            .await
            .map_err(failed("dropping an expired partition"))?;
        info!(partition = %name, "dropped log partition past the retention");
        report.dropped.push(name);
    }

    // Rows in the default partition are deleted one by one: it only holds the few events with
    // timestamps outside the daily partitions.
    let cutoff = retention::cutoff(now, options.retention_days);
    report.expired_rows = client
        .execute(
            &format!("DELETE FROM {} WHERE ts < $1", sql.default_partition),
            &[&cutoff],
        )
        .await
        .map_err(failed("deleting expired rows from the default partition"))?;
    Ok(report)
}

/// A transaction holding the schema's DDL lock, with the DDL lock timeout set.
async fn locked_transaction<'a>(
    client: &'a mut deadpool_postgres::Object,
    sql: &Sql,
) -> Result<deadpool_postgres::Transaction<'a>, StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(failed("starting maintenance"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .await
        .map_err(failed("waiting for the maintenance lock"))?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(failed("starting maintenance"))?;
    Ok(tx)
}

/// Today and the `ahead` days after it.
fn days_ahead(today: NaiveDate, ahead: u32) -> impl Iterator<Item = NaiveDate> {
    (0..=u64::from(ahead)).map_while(move |n| today.checked_add_days(Days::new(n)))
}

/// `logs_YYYYMMDD`
pub(crate) fn partition_name(day: NaiveDate) -> String {
    format!("logs_{}", day.format("%Y%m%d"))
}

/// The day of a `logs_YYYYMMDD` name; `None` for `logs_default` and anything else.
fn partition_day(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("logs_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// The daily partitions of `logs`, with their days.
async fn list_partitions(
    client: &tokio_postgres::Client,
    sql: &Sql,
) -> Result<Vec<(String, NaiveDate)>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1)",
            &[&sql.logs],
        )
        .await
        .map_err(failed("listing partitions"))?;
    let mut partitions: Vec<(String, NaiveDate)> = rows
        .iter()
        .filter_map(|row| {
            let name: String = row.get(0);
            partition_day(&name).map(|day| (name, day))
        })
        .collect();
    partitions.sort_by_key(|(_, day)| *day);
    Ok(partitions)
}

/// Creates the partition for `day` unless it exists, moving that day's rows out of the default
/// partition first (see the module comment). Runs inside the caller's locked transaction.
/// Returns whether it created the partition.
async fn create_partition(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Sql,
    day: NaiveDate,
) -> Result<bool, StoreError> {
    let name = partition_name(day);
    let partition = sql.table(&name);
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&partition])
        .await
        .map_err(failed("looking up a partition"))?
        .get(0);
    if exists {
        return Ok(false);
    }
    let from = retention::day_start(day);
    let to = retention::day_start(day.succ_opt().unwrap_or(NaiveDate::MAX));
    let stranded: bool = tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE ts >= $1 AND ts < $2)",
                sql.default_partition
            ),
            &[&from, &to],
        )
        .await
        .map_err(failed("checking the default partition"))?
        .get(0);
    let (logs, default, columns) = (&sql.logs, &sql.default_partition, &sql.columns);
    let mut moved = 0;
    if stranded {
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE logpipe_moving (LIKE {logs}) ON COMMIT DROP"
        ))
        .await
        .map_err(failed("moving rows out of the default partition"))?;
        moved = tx
            .execute(
                &format!(
                    "WITH moved AS (DELETE FROM {default} WHERE ts >= $1 AND ts < $2 \
                     RETURNING {columns}) \
                     INSERT INTO logpipe_moving ({columns}) SELECT {columns} FROM moved"
                ),
                &[&from, &to],
            )
            .await
            .map_err(failed("moving rows out of the default partition"))?;
    }
    let bound = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S+00").to_string();
    tx.batch_execute(&format!(
        "CREATE TABLE {partition} PARTITION OF {logs} FOR VALUES FROM ('{}') TO ('{}')",
        bound(from),
        bound(to)
    ))
    .await
    .map_err(failed("creating a partition"))?;
    if stranded {
        // Dropped now rather than at commit: `migrate` creates several partitions in one
        // transaction and the next one may need the name again.
        tx.batch_execute(&format!(
            "INSERT INTO {logs} ({columns}) SELECT {columns} FROM logpipe_moving; \
             DROP TABLE logpipe_moving;"
        ))
        .await
        .map_err(failed("moving rows into a new partition"))?;
        warn!(
            partition = %name,
            rows = moved,
            "moved rows from the default partition into a new daily partition"
        );
    }
    info!(partition = %name, "created log partition");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
        assert_eq!(partition_name(day), "logs_20260309");
        assert_eq!(partition_day("logs_20260309"), Some(day));
        for other in [
            "logs_default",
            "logs_2026030",
            "logs_2026030x",
            "logs_20261399",
            "x",
        ] {
            assert_eq!(partition_day(other), None, "{other}");
        }
    }

    #[test]
    fn days_ahead_includes_today() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 30).unwrap();
        let days: Vec<String> = days_ahead(today, 2).map(partition_name).collect();
        assert_eq!(days, ["logs_20261230", "logs_20261231", "logs_20270101"]);
    }
}
