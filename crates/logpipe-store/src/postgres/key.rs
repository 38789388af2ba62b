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
//! Step 2 is `concurrent::build`, which says how it runs beside other migrators.

use tokio_postgres::Client;
use tracing::info;

use super::{concurrent, PgStore, Sql};
use crate::error::{from_postgres, StoreError};

/// The unique index that makes writes idempotent.
pub(super) const KEY_INDEX: &str = "logs_event_key";
/// Its columns. `ts` first: see "Idempotency" in the module comment of `postgres`.
pub(super) const KEY_COLUMNS: &str = "ts, kafka_topic, kafka_partition, kafka_offset, kafka_index";
/// The constraint of the earlier schema, on `(ts, kafka_topic, kafka_partition, kafka_offset)`.
const OLD_KEY: &str = "logs_position_key";

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
    // Dropped at the end of this function: the connection closes and the lock goes with it.
    let client = concurrent::locked_session(store, lock_timeout, "the unique key").await?;
    if !pending(&client, sql).await? {
        return Ok(());
    }
    let index = concurrent::PartitionedIndex {
        name: KEY_INDEX,
        suffix: "event_key",
        kind: "UNIQUE INDEX",
        definition: format!("({KEY_COLUMNS})"),
        what: "the unique key",
    };
    concurrent::build(&client, sql, &index, lock_timeout).await?;
    drop_old_key(&client, sql).await
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
