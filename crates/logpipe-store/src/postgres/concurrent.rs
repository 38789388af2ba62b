//! Building an index on the partitioned `logs` table while it is written to: the machinery the
//! unique-key move (`key`) and the trigram search index (`search`) share.
//!
//! A plain `CREATE INDEX` on `logs` locks writers out for as long as it reads every partition
//! (minutes on a big store), so instead:
//! 1. the parent index `ON ONLY logs`, created invalid and empty;
//! 2. per partition a `CREATE INDEX CONCURRENTLY` (writes go on), attached to the parent. Once
//!    every partition's index is attached, PostgreSQL marks the parent valid, and partitions
//!    created later (`CREATE TABLE ... PARTITION OF`) get the index from it. An index left
//!    INVALID by an interrupted build is dropped (concurrently) and built again, so a run cut
//!    short anywhere is resumed by the next one.
//!
//! The build runs on a connection of its own, taken out of the pool and closed at the end, under
//! a session advisory lock (`Sql::build_lock_key`) taken by polling with `pg_try_advisory_lock`.
//! Not the DDL lock, and never a blocking wait: `CREATE INDEX CONCURRENTLY` waits for every
//! transaction holding an older snapshot, so a second migrator blocked on a lock this session
//! holds would be a deadlock. Closing the connection releases the lock whatever happened, a
//! cancelled `migrate()` included.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::info;

use super::{PgStore, Sql};
use crate::error::{from_postgres, StoreError};

/// How often a migrator waiting for another one's index build checks again.
const POLL: Duration = Duration::from_millis(250);

/// An index of `logs`, as built partition by partition.
pub(super) struct PartitionedIndex<'a> {
    /// The parent index's name (`logs_event_key`).
    pub name: &'a str,
    /// Each partition's index is `<partition>_<suffix>`.
    pub suffix: &'a str,
    /// `"UNIQUE INDEX"` or `"INDEX"`.
    pub kind: &'a str,
    /// What follows `ON <table>`: `(a, b)`, `USING gin (message ...)`.
    pub definition: String,
    /// What the log lines call it.
    pub what: &'a str,
}

fn failed(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |err| from_postgres(context, &err)
}

/// Whether `index` (qualified) exists and is valid: `None` when it does not exist.
pub(super) async fn validity(client: &Client, index: &str) -> Result<Option<bool>, StoreError> {
    client
        .query_opt(
            "SELECT indisvalid FROM pg_catalog.pg_index WHERE indexrelid = to_regclass($1)",
            &[&index],
        )
        .await
        .map(|row| row.map(|row| row.get(0)))
        .map_err(failed("looking up an index"))
}

/// A connection out of the pool holding the build lock, with the DDL lock timeout set. Dropping
/// it closes the connection and releases the lock.
pub(super) async fn locked_session(
    store: &PgStore,
    lock_timeout: &str,
    what: &str,
) -> Result<deadpool_postgres::ClientWrapper, StoreError> {
    let sql = store.sql();
    let client = deadpool_postgres::Object::take(store.client().await?);
    client
        .batch_execute(&format!("SET lock_timeout = '{lock_timeout}'"))
        .await
        .map_err(failed("building an index"))?;
    let mut waiting = false;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&sql.build_lock_key])
            .await
            .map_err(failed("waiting for the index build lock"))?
            .get(0);
        if locked {
            return Ok(client);
        }
        if !waiting {
            info!(schema = %sql.schema, "another process is building an index; waiting to build {what}");
            waiting = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Steps 1 and 2 of the module comment, on a session from [`locked_session`]. Fails unless the
/// parent index is valid at the end.
pub(super) async fn build(
    client: &Client,
    sql: &Sql,
    index: &PartitionedIndex<'_>,
    lock_timeout: &str,
) -> Result<(), StoreError> {
    info!(schema = %sql.schema, "building {} {} partition by partition", index.what, index.name);
    client
        .batch_execute(&format!(
            "CREATE {} IF NOT EXISTS {} ON ONLY {} {}",
            index.kind,
            super::quote_ident(index.name),
            sql.logs,
            index.definition
        ))
        .await
        .map_err(failed("creating a partitioned index"))?;
    for partition in partitions_without(client, sql, index.name).await? {
        index_partition(client, sql, index, &partition, lock_timeout).await?;
    }
    if validity(client, &sql.table(index.name)).await? != Some(true) {
        return Err(StoreError::Schema(format!(
            "the {} {} of {} is still not valid after indexing every partition (a partition \
             was probably created or dropped meanwhile); run the migration again",
            index.what, index.name, sql.logs
        )));
    }
    info!(schema = %sql.schema, "{} {} in place", index.what, index.name);
    Ok(())
}

/// Partitions of `logs` with no index attached to `parent` yet.
async fn partitions_without(
    client: &Client,
    sql: &Sql,
    parent: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_inherits i \
             JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits ii \
                             JOIN pg_catalog.pg_index x ON x.indexrelid = ii.inhrelid \
                             WHERE ii.inhparent = to_regclass($2) AND x.indrelid = c.oid) \
             ORDER BY c.relname",
            &[&sql.logs, &sql.table(parent)],
        )
        .await
        .map_err(failed("listing partitions"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Builds `<partition>_<suffix>` concurrently (again, if an earlier build left it invalid) and
/// attaches it to the parent. A partition dropped meanwhile (retention) is skipped.
async fn index_partition(
    client: &Client,
    sql: &Sql,
    index: &PartitionedIndex<'_>,
    partition: &str,
    lock_timeout: &str,
) -> Result<(), StoreError> {
    let name = format!("{partition}_{}", index.suffix);
    let qualified = sql.table(&name);
    let create = format!(
        "CREATE {} CONCURRENTLY IF NOT EXISTS {} ON {} {}",
        index.kind,
        super::quote_ident(&name),
        sql.table(partition),
        index.definition
    );
    // One statement per call: CONCURRENTLY refuses to run inside a (multi-statement) transaction.
    let statements = match validity(client, &qualified).await? {
        Some(true) => vec![],
        Some(false) => vec![
            format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"),
            create,
        ],
        None => vec![create],
    };
    let attach = format!(
        "ALTER INDEX {} ATTACH PARTITION {qualified}",
        sql.table(index.name)
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
            Err(err) => return Err(from_postgres("building a partition's index", &err)),
        }
    }
    info!(partition, index = %name, "built and attached {}", index.what);
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
