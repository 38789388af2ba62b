//! The opt-in text search index (`StoreOptions::search_index`): a pg_trgm GIN on `message`,
//! `logs_message_trgm`, which `message ILIKE '%text%'` (the query API's `q`, `query`) reads
//! directly for a pattern of 3 characters or more.
//!
//! Why opt-in, and what it costs: docs/performance.md, "The search index study" (20M rows: a
//! rare search from seconds of scanning to 5 ms p50 in SQL; writes at 0.26x the COPY rate; 1.86
//! GiB and a 314 s build). `migrate()` builds it like the unique key, partition by partition
//! with `CREATE INDEX CONCURRENTLY` (`concurrent`): writes go on during the build, an interrupted
//! build resumes, and partitions created later get it from the parent.
//!
//! Turned off again (`SearchIndex::None` with the index present), it is **kept**, with a warning
//! at every `migrate()` naming the statement that drops it. Not dropped automatically: a
//! gateway and a consumer configured differently would then build and drop it in turn (minutes
//! of work and 2 GiB each time at 20M rows), and a mistaken setting would throw away a build
//! that took minutes; dropping is one statement an operator runs once, on purpose. The same
//! warning names an index an operator created by hand under this name.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tracing::warn;

use super::{concurrent, quote_ident, PgStore, Sql};
use crate::error::{from_postgres, StoreError};
use crate::SearchIndex;

/// The parent index's name.
pub(crate) const SEARCH_INDEX: &str = "logs_message_trgm";

/// Brings the search index in line with the store's options (see the module comment).
pub(super) async fn ensure(store: &PgStore, lock_timeout: &str) -> Result<(), StoreError> {
    let sql = store.sql();
    let present = {
        let client = store.client().await?;
        concurrent::validity(&client, &sql.table(SEARCH_INDEX)).await?
    };
    match (store.options().search_index, present) {
        (SearchIndex::Trigram, Some(true)) | (SearchIndex::None, None) => Ok(()),
        (SearchIndex::None, Some(_)) => {
            warn!(
                schema = %sql.schema,
                "postgres.search_index is \"none\" but the trigram search index {SEARCH_INDEX} \
                 is still there, and every write still maintains it (about a quarter of the \
                 write rate). If no process of this store is configured with \"trigram\", drop \
                 it: psql -c \"SET lock_timeout = '10s'; DROP INDEX {};\"",
                sql.table(SEARCH_INDEX)
            );
            Ok(())
        }
        (SearchIndex::Trigram, _) => build(store, lock_timeout).await,
    }
}

async fn build(store: &PgStore, lock_timeout: &str) -> Result<(), StoreError> {
    let sql = store.sql();
    // Dropped at the end of this function: the connection closes and the lock goes with it.
    let client = concurrent::locked_session(store, lock_timeout, "the search index").await?;
    if concurrent::validity(&client, &sql.table(SEARCH_INDEX)).await? == Some(true) {
        return Ok(());
    }
    // Under the build lock: two sessions creating the extension at once would collide.
    let extension_schema = extension(&client).await?;
    let index = concurrent::PartitionedIndex {
        name: SEARCH_INDEX,
        suffix: "message_trgm",
        kind: "INDEX",
        // The operator class qualified: the extension may live in a schema that is not on the
        // connection's search_path.
        definition: format!(
            "USING gin (message {}.gin_trgm_ops)",
            quote_ident(&extension_schema)
        ),
        what: "the trigram search index",
    };
    concurrent::build(&client, sql, &index, lock_timeout).await
}

/// Creates pg_trgm unless it is there; returns the schema it lives in.
async fn extension(client: &Client) -> Result<String, StoreError> {
    if let Some(schema) = extension_schema(client).await? {
        return Ok(schema);
    }
    if let Err(err) = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .await
    {
        return Err(extension_error(&err));
    }
    extension_schema(client).await?.ok_or_else(|| {
        StoreError::Schema("the pg_trgm extension was created but cannot be found".into())
    })
}

async fn extension_schema(client: &Client) -> Result<Option<String>, StoreError> {
    client
        .query_opt(
            "SELECT n.nspname::text FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_trgm'",
            &[],
        )
        .await
        .map(|row| row.map(|row| row.get(0)))
        .map_err(|err| from_postgres("looking up the pg_trgm extension", &err))
}

/// What an operator can do about a failed `CREATE EXTENSION pg_trgm`.
fn extension_error(err: &tokio_postgres::Error) -> StoreError {
    // A lost connection is an outage like any other, not a missing extension.
    let Some(db) = err.as_db_error() else {
        return from_postgres("creating the pg_trgm extension", err);
    };
    let advice = match err.code() {
        // "could not open extension control file": the server has no pg_trgm files.
        Some(code) if *code == SqlState::UNDEFINED_FILE => {
            "the PostgreSQL server does not have pg_trgm installed: it ships with PostgreSQL's \
             contrib modules (Debian and Ubuntu: in the postgresql-NN package itself; RHEL and \
             the PGDG RPMs: postgresql-contrib / postgresqlNN-contrib); managed services \
             (RDS, Cloud SQL, Azure) allow it, some only once it is on the allow-list \
             (azure.extensions)"
        }
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            "the role may not create it: pg_trgm is a trusted extension (PostgreSQL 13 and \
             later), which needs the CREATE privilege on the database; or have an \
             administrator run `CREATE EXTENSION pg_trgm;` in this database once"
        }
        _ => "have an administrator run `CREATE EXTENSION pg_trgm;` in this database once",
    };
    StoreError::Schema(format!(
        "postgres.search_index = \"trigram\" needs the pg_trgm extension, and creating it \
         failed ({}, SQLSTATE {}): {advice}; or set postgres.search_index = \"none\"",
        db.message(),
        db.code().code()
    ))
}

/// Whether `sql`'s search index is in place and valid (tests, benchmarks).
pub(super) async fn valid(client: &Client, sql: &Sql) -> Result<bool, StoreError> {
    Ok(concurrent::validity(client, &sql.table(SEARCH_INDEX)).await? == Some(true))
}
