//! The unique key that makes writes idempotent, `logs_event_key` on `(ts, kafka_topic,
//! kafka_partition, kafka_offset, kafka_index)`, and moving a database created with the earlier
//! key (the constraint `logs_position_key` on the first four columns, no `kafka_index`) to it.
//!
//! A fresh database gets the key with the table (`schema::migrate`, one transaction). An existing
//! table may be big and written to while it is migrated, so the key is moved without a long
//! exclusive lock, in steps that can each be interrupted and resumed by the next `migrate()`:
//! 1. `ADD COLUMN kafka_index ... DEFAULT 0` ([`add_index_column`], in the migration
//!    transaction): metadata only since PostgreSQL 11, and exact for the rows already stored,
//!    which were all written one event per record.
//! 2. ([`move_key`], outside any transaction) the parent index `ON ONLY logs`, created invalid;
//!    then per partition a `CREATE UNIQUE INDEX CONCURRENTLY` (writes go on), attached to the
//!    parent. Once every partition's index is attached, PostgreSQL marks the parent valid, and
//!    partitions created later get the index from it. An index left INVALID by an interrupted
//!    build is dropped (concurrently) and built again.
//! 3. The old constraint is dropped (a short exclusive lock, under the DDL lock timeout). Until
//!    then both keys hold; the old one is the stricter, so nothing stored can break the new one.
//!
//! Measured on the 2-core test machine with 4 million rows in today's partition: `migrate()` took
//! 3.5 s, and single-row inserts issued every 5 ms meanwhile waited at most 0.16 s; a plain
//! `CREATE UNIQUE INDEX` of the same key takes 1.7 s, all of it with writers locked out. (Rows in
//! `logs_default` add the existing cost of creating a partition, which scans it under an
//! exclusive lock: a second with 4 million rows there.)
//!
//! Step 2 runs on a connection of its own, taken out of the pool and closed at the end, under a
//! session advisory lock of its own (`Sql::key_lock_key`) taken by polling with
//! `pg_try_advisory_lock`. Not the DDL lock, and never a blocking wait: `CREATE INDEX
//! CONCURRENTLY` waits for every transaction holding an older snapshot, so a second migrator
//! blocked on a lock this session holds would be a deadlock. Closing the connection releases the
//! lock whatever happened, a cancelled `migrate()` included.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::info;

use super::{PgStore, Sql};
use crate::error::{from_postgres, StoreError};

/// The unique index that makes writes idempotent.
pub(super) const KEY_INDEX: &str = "logs_event_key";
/// Its columns. `ts` first: see "Idempotency" in the module comment of `postgres`.
pub(super) const KEY_COLUMNS: &str = "ts, kafka_topic, kafka_partition, kafka_offset, kafka_index";
/// The constraint of the earlier schema, on `(ts, kafka_topic, kafka_partition, kafka_offset)`.
const OLD_KEY: &str = "logs_position_key";
/// How often a migrator waiting for another one's index build checks again.
const POLL: Duration = Duration::from_millis(250);

fn failed(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |err| from_postgres(context, &err)
}

/// `CREATE UNIQUE INDEX logs_event_key ON logs (...)`: the key of a table created in the same
/// transaction (empty, so a plain build is instant).
pub(super) fn create_statement(sql: &Sql) -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {KEY_INDEX} ON {} ({KEY_COLUMNS})",
        sql.logs
    )
}

/// Step 1: adds `kafka_index` to a table created without it. Looks first, so a migrated table
/// takes no lock (`ALTER TABLE` would take an exclusive one before noticing).
pub(super) async fn add_index_column(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Sql,
) -> Result<(), StoreError> {
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_attribute \
             WHERE attrelid = to_regclass($1) AND attname = 'kafka_index' AND NOT attisdropped",
            &[&sql.logs],
        )
        .await
        .map_err(failed("looking up the logs table"))?
        .is_some();
    if !exists {
        tx.batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS kafka_index integer NOT NULL DEFAULT 0",
            sql.logs
        ))
        .await
        .map_err(failed("adding the kafka_index column"))?;
        info!(schema = %sql.schema, "added kafka_index to logs");
    }
    Ok(())
}

/// Whether the key still has to be moved: the new key missing or not yet valid, or the old one
/// still there. Reads the catalog only (no lock), as every consumer start asks.
async fn pending(client: &Client, sql: &Sql) -> Result<bool, StoreError> {
    client
        .query_one(
            "SELECT NOT COALESCE((SELECT indisvalid FROM pg_catalog.pg_index \
                                  WHERE indexrelid = to_regclass($1)), false) \
                    OR to_regclass($2) IS NOT NULL",
            &[&sql.table(KEY_INDEX), &sql.table(OLD_KEY)],
        )
        .await
        .map(|row| row.get(0))
        .map_err(failed("looking up the unique key"))
}

/// Steps 2 and 3 (see the module comment), when pending.
pub(super) async fn move_key(store: &PgStore, lock_timeout: &str) -> Result<(), StoreError> {
    let sql = store.sql();
    {
        let client = store.client().await?;
        if !pending(&client, sql).await? {
            return Ok(());
        }
    }
    // Out of the pool: dropped at the end of this function, the connection closes and the
    // session lock goes with it.
    let client = deadpool_postgres::Object::take(store.client().await?);
    client
        .batch_execute(&format!("SET lock_timeout = '{lock_timeout}'"))
        .await
        .map_err(failed("moving the unique key"))?;
    let mut waiting = false;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&sql.key_lock_key])
            .await
            .map_err(failed("waiting for the key migration lock"))?
            .get(0);
        if locked {
            break;
        }
        if !waiting {
            info!(schema = %sql.schema, "another process is building the unique key; waiting");
            waiting = true;
        }
        tokio::time::sleep(POLL).await;
    }
    if !pending(&client, sql).await? {
        return Ok(());
    }
    info!(schema = %sql.schema, "building the unique key {KEY_INDEX} partition by partition");
    client
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {KEY_INDEX} ON ONLY {} ({KEY_COLUMNS})",
            sql.logs
        ))
        .await
        .map_err(failed("creating the unique key"))?;
    for partition in partitions_without_key(&client, sql).await? {
        index_partition(&client, sql, &partition, lock_timeout).await?;
    }
    let valid: bool = client
        .query_one(
            "SELECT COALESCE((SELECT indisvalid FROM pg_catalog.pg_index \
                              WHERE indexrelid = to_regclass($1)), false)",
            &[&sql.table(KEY_INDEX)],
        )
        .await
        .map_err(failed("looking up the unique key"))?
        .get(0);
    if !valid {
        return Err(StoreError::Schema(format!(
            "the unique key {KEY_INDEX} of {} is still not valid after indexing every \
             partition (a partition was probably created or dropped meanwhile); run the \
             migration again",
            sql.logs
        )));
    }
    drop_old_key(&client, sql).await?;
    info!(schema = %sql.schema, "unique key {KEY_INDEX} in place");
    Ok(())
}

/// Partitions of `logs` with no index attached to the key yet.
async fn partitions_without_key(client: &Client, sql: &Sql) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits ii \
                             JOIN pg_catalog.pg_index x ON x.indexrelid = ii.inhrelid \
                             WHERE ii.inhparent = to_regclass($2) AND x.indrelid = c.oid) \
             ORDER BY c.relname",
            &[&sql.logs, &sql.table(KEY_INDEX)],
        )
        .await
        .map_err(failed("listing partitions"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Builds `<partition>_event_key` concurrently (again, if an earlier build left it invalid) and
/// attaches it to the key. A partition dropped meanwhile (retention) is skipped.
async fn index_partition(
    client: &Client,
    sql: &Sql,
    partition: &str,
    lock_timeout: &str,
) -> Result<(), StoreError> {
    let index = format!("{partition}_event_key");
    let qualified = sql.table(&index);
    let valid: Option<bool> = client
        .query_opt(
            "SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass($1)",
            &[&qualified],
        )
        .await
        .map_err(failed("looking up a partition's key"))?
        .map(|row| row.get(0));
    // One statement per call: CONCURRENTLY refuses to run inside a (multi-statement) transaction.
    let statements = match valid {
        Some(true) => vec![],
        Some(false) => vec![
            format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
            build(sql, &index, partition),
        ],
        None => vec![build(sql, &index, partition)],
    };
    let attach = format!(
        "ALTER INDEX {} ATTACH PARTITION {qualified}",
        sql.table(KEY_INDEX)
    );
    // The concurrent steps wait without a lock timeout: their lock blocks no writer, and they
    // also wait for every older transaction to end, which a timeout would turn into a failure.
    let steps = statements
        .iter()
        .map(|statement| (statement, false))
        .chain([(&attach, true)]);
    for (statement, bounded) in steps {
        let result = if bounded {
            client.batch_execute(statement).await
        } else {
            unbounded(client, statement, lock_timeout).await
        };
        match result {
            Ok(()) => {}
            Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(()),
            Err(err) => return Err(from_postgres("building a partition's unique key", &err)),
        }
    }
    info!(partition, index = %index, "built and attached the unique key");
    Ok(())
}

/// Runs one statement with the session's lock timeout lifted.
async fn unbounded(
    client: &Client,
    statement: &str,
    lock_timeout: &str,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("SET lock_timeout = 0").await?;
    let result = client.batch_execute(statement).await;
    client
        .batch_execute(&format!("SET lock_timeout = '{lock_timeout}'"))
        .await?;
    result
}

fn build(sql: &Sql, index: &str, partition: &str) -> String {
    format!(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({KEY_COLUMNS})",
        super::quote_ident(index),
        sql.table(partition)
    )
}

/// Step 3, under the DDL lock like every other schema change.
async fn drop_old_key(client: &Client, sql: &Sql) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&sql.table(OLD_KEY)])
        .await
        .map_err(failed("looking up the old unique key"))?
        .get(0);
    if !exists {
        return Ok(());
    }
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); \
             ALTER TABLE {} DROP CONSTRAINT IF EXISTS {OLD_KEY}; COMMIT;",
            sql.lock_key, sql.logs
        ))
        .await
        .map_err(failed("dropping the old unique key"))?;
    info!(schema = %sql.schema, "dropped the old unique key {OLD_KEY}");
    Ok(())
}
