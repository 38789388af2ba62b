//! Migrating databases written before records could hold several events (no `kafka_index`, the
//! unique key on topic, partition and offset) to the current schema, on both backends: the old
//! rows stay as they were, with index 0, and still count as stored; events sharing a record
//! store; migrating again changes nothing. PostgreSQL: the key is rebuilt concurrently, resuming
//! after an interrupted run, and partitions created afterwards get it too.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use common::{event_at, now, pg_admin, positions, shared_tags, PgSchema};
use logpipe_model::EnrichedLog;
use logpipe_store::{LogQuery, LogStore, StoreOptions, WriteReport};

/// The earlier PostgreSQL schema, as `migrate()` created it (the generated DDL written out).
const OLD_PG_TABLE: &str = "
CREATE TABLE {schema}.logs (
    ts timestamptz NOT NULL,
    processed_at timestamptz NOT NULL,
    kafka_ts timestamptz,
    ingested_at timestamptz,
    kafka_offset bigint NOT NULL,
    fingerprint bigint NOT NULL,
    kafka_partition integer NOT NULL,
    severity_number smallint NOT NULL,
    level text COLLATE \"C\" NOT NULL,
    service text COLLATE \"C\" NOT NULL,
    kafka_topic text COLLATE \"C\" NOT NULL,
    host text,
    trace_id text,
    span_id text,
    request_id text,
    message text NOT NULL,
    template text NOT NULL,
    attributes jsonb,
    tags jsonb NOT NULL,
    CONSTRAINT logs_position_key UNIQUE (ts, kafka_topic, kafka_partition, kafka_offset)
) PARTITION BY RANGE (ts);
CREATE TABLE {schema}.logs_default PARTITION OF {schema}.logs DEFAULT;
CREATE INDEX logs_service_ts_idx ON {schema}.logs (service, ts DESC);
CREATE INDEX logs_level_ts_idx ON {schema}.logs (level, ts DESC)
    WHERE level IN ('TRACE', 'WARN', 'ERROR', 'FATAL');
CREATE TABLE {schema}.{today} PARTITION OF {schema}.logs FOR VALUES FROM ('{from}') TO ('{to}');
";

/// The earlier SQLite schema.
const OLD_SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs (
    ts              INTEGER NOT NULL,
    processed_at    INTEGER NOT NULL,
    kafka_ts        INTEGER,
    ingested_at     INTEGER,
    kafka_offset    INTEGER NOT NULL,
    fingerprint     INTEGER NOT NULL,
    kafka_partition INTEGER NOT NULL,
    severity_number INTEGER NOT NULL,
    level           TEXT NOT NULL,
    service         TEXT NOT NULL,
    kafka_topic     TEXT NOT NULL,
    host            TEXT,
    trace_id        TEXT,
    span_id         TEXT,
    request_id      TEXT,
    message         TEXT NOT NULL,
    template        TEXT NOT NULL,
    attributes      TEXT,
    tags            TEXT NOT NULL,
    UNIQUE (kafka_topic, kafka_partition, kafka_offset)
) STRICT;
CREATE INDEX IF NOT EXISTS logs_position_idx
    ON logs (ts, kafka_topic, kafka_partition, kafka_offset);
CREATE INDEX IF NOT EXISTS logs_service_ts_idx ON logs (service, ts);
CREATE INDEX IF NOT EXISTS logs_level_ts_idx ON logs (level, ts);
";

/// The columns both old schemas have, as old writers filled them.
const OLD_COLUMNS: &str = "ts, processed_at, kafka_offset, fingerprint, kafka_partition, \
     severity_number, level, service, kafka_topic, message, template, tags";

/// One-event records as an earlier release stored them (index 0), yesterday and today.
fn old_records(at: DateTime<Utc>) -> Vec<EnrichedLog> {
    let tags = shared_tags();
    (0..40)
        .map(|offset| {
            let timestamp = at - Duration::hours(offset % 2 * 24) - Duration::seconds(offset);
            event_at(offset, 0, timestamp, &tags)
        })
        .collect()
}

/// Further events of the same records: what a multi-event record replayed at those offsets
/// would add.
fn more_events_of(records: &[EnrichedLog]) -> Vec<EnrichedLog> {
    records
        .iter()
        .map(|log| {
            let mut log = log.clone();
            log.coordinates.index = 1;
            log
        })
        .collect()
}

async fn check_migrated(store: &LogStore, old: &[EnrichedLog]) {
    assert_eq!(store.count().await.unwrap(), 40);
    let page = common::first_thousand(store).await;
    assert_eq!(page.logs.len(), 40);
    for stored in &page.logs {
        let log = &old[stored.kafka.offset as usize];
        assert_eq!(stored.kafka.index, 0);
        assert_eq!(stored.timestamp, log.event.timestamp);
        assert_eq!(stored.message, log.event.message.as_str());
        assert_eq!(stored.kafka.partition, log.coordinates.partition);
    }
    // A replay of the old records is recognised.
    assert_eq!(
        store.write(old).await.unwrap(),
        WriteReport {
            inserted: 0,
            duplicates: 40
        }
    );
    // Events sharing those records store, once.
    let more = more_events_of(old);
    assert_eq!(store.write(&more).await.unwrap().inserted, 40);
    assert_eq!(store.write(&more).await.unwrap().duplicates, 40);
    assert_eq!(store.count().await.unwrap(), 80);
}

/// Creates the earlier schema in `schema` and fills it as an earlier release would have.
async fn create_old_pg(schema: &PgSchema, admin: &tokio_postgres::Client, old: &[EnrichedLog]) {
    let today = now().date_naive();
    let quoted = format!("\"{}\"", schema.name);
    let ddl = OLD_PG_TABLE
        .replace("{schema}", &quoted)
        .replace("{today}", &format!("logs_{}", today.format("%Y%m%d")))
        .replace("{from}", &format!("{today} 00:00:00+00"))
        .replace(
            "{to}",
            &format!("{} 00:00:00+00", today.succ_opt().unwrap()),
        );
    admin
        .batch_execute(&format!("CREATE SCHEMA {quoted}; {ddl}"))
        .await
        .unwrap();
    let insert = format!(
        "INSERT INTO {quoted}.logs ({OLD_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '{{}}')"
    );
    for log in old {
        admin
            .execute(
                &insert,
                &[
                    &log.event.timestamp,
                    &log.processed_at,
                    &log.coordinates.offset,
                    &log.fingerprint.as_i64(),
                    &log.coordinates.partition,
                    &i16::from(log.severity_number),
                    &log.event.level.as_str(),
                    &log.event.service.as_str(),
                    &&*log.coordinates.topic,
                    &log.event.message.as_str(),
                    &log.template,
                ],
            )
            .await
            .unwrap();
    }
}

/// Index names of `logs` and its partitions, with validity, and whether the old key remains.
async fn pg_keys(schema: &PgSchema, admin: &tokio_postgres::Client) -> (bool, BTreeSet<String>) {
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&format!("\"{}\".logs_event_key", schema.name)],
        )
        .await
        .unwrap()
        .get(0);
    let indexes = admin
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    (valid, indexes)
}

/// Partitions of `logs` with no index attached to the key.
async fn partitions_without_key(schema: &PgSchema, admin: &tokio_postgres::Client) -> Vec<String> {
    admin
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) \
             AND NOT EXISTS (SELECT 1 FROM pg_inherits ii \
                             JOIN pg_index x ON x.indexrelid = ii.inhrelid \
                             WHERE ii.inhparent = to_regclass($2) AND x.indrelid = c.oid)",
            &[
                &format!("\"{}\".logs", schema.name),
                &format!("\"{}\".logs_event_key", schema.name),
            ],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn an_old_postgres_schema_is_migrated_in_place() {
    let schema = PgSchema::new();
    let admin = pg_admin().await;
    let old = old_records(now());
    create_old_pg(&schema, &admin, &old).await;

    let store = schema.open(&StoreOptions::default()).await;
    let (valid, indexes) = pg_keys(&schema, &admin).await;
    assert!(valid, "the new key is valid");
    assert!(!indexes.contains("logs_position_key"), "{indexes:?}");
    assert!(partitions_without_key(&schema, &admin).await.is_empty());
    check_migrated(&store, &old).await;

    // Again: nothing to do, nothing changes.
    store.migrate().await.unwrap();
    assert_eq!(pg_keys(&schema, &admin).await, (true, indexes));
    assert_eq!(store.count().await.unwrap(), 80);

    // Partitions created later get the key from the parent.
    let report = store.maintain(now() + Duration::days(5)).await.unwrap();
    assert!(!report.created.is_empty(), "{report:?}");
    assert!(partitions_without_key(&schema, &admin).await.is_empty());
}

/// Consumers starting together on an old database: one builds the key, the others wait for it
/// (none deadlocks with the concurrent builds), and all come back migrated.
#[tokio::test]
async fn concurrent_migrations_of_an_old_postgres_schema() {
    let schema = PgSchema::new();
    let admin = pg_admin().await;
    let old = old_records(now());
    create_old_pg(&schema, &admin, &old).await;
    let options = schema.options(&StoreOptions::default());
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(LogStore::open(&schema.url(), &options).await.unwrap());
    }
    let results = futures::future::join_all(stores.iter().map(LogStore::migrate)).await;
    for result in results {
        result.expect("concurrent migration");
    }
    let (valid, indexes) = pg_keys(&schema, &admin).await;
    assert!(valid);
    assert!(!indexes.contains("logs_position_key"), "{indexes:?}");
    check_migrated(&stores[2], &old).await;
}

#[tokio::test]
async fn an_interrupted_postgres_migration_resumes() {
    let schema = PgSchema::new();
    let admin = pg_admin().await;
    let old = old_records(now());
    create_old_pg(&schema, &admin, &old).await;
    let q = format!("\"{}\"", schema.name);
    let today = format!("logs_{}", now().date_naive().format("%Y%m%d"));
    // As a run stopped part-way leaves it: the column added, the parent key created, one
    // partition's index built but not attached, and a concurrent build of another that failed
    // and left an INVALID index (this one fails on purpose: `kafka_topic` is not unique).
    admin
        .batch_execute(&format!(
            "ALTER TABLE {q}.logs ADD COLUMN kafka_index integer NOT NULL DEFAULT 0; \
             CREATE UNIQUE INDEX logs_event_key ON ONLY {q}.logs \
                 (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index); \
             CREATE UNIQUE INDEX {today}_event_key ON {q}.{today} \
                 (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index);"
        ))
        .await
        .unwrap();
    let failed = admin
        .batch_execute(&format!(
            "CREATE UNIQUE INDEX CONCURRENTLY logs_default_event_key ON {q}.logs_default (kafka_topic)"
        ))
        .await;
    assert!(
        failed.is_err(),
        "the build must fail to leave an INVALID index"
    );
    let invalid: bool = admin
        .query_one(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&format!("{q}.logs_default_event_key")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(invalid);

    let store = schema.open(&StoreOptions::default()).await;
    let (valid, indexes) = pg_keys(&schema, &admin).await;
    assert!(valid);
    assert!(!indexes.contains("logs_position_key"), "{indexes:?}");
    assert!(partitions_without_key(&schema, &admin).await.is_empty());
    // The invalid index was rebuilt on the key's columns.
    let definition: String = admin
        .query_one(
            "SELECT pg_get_indexdef(to_regclass($1))",
            &[&format!("{q}.logs_default_event_key")],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        definition.contains("(ts, kafka_topic, kafka_partition, kafka_offset, kafka_index)"),
        "{definition}"
    );
    check_migrated(&store, &old).await;
}

#[tokio::test]
async fn an_old_sqlite_file_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let old = old_records(now());
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection.execute_batch(OLD_SQLITE_SCHEMA).unwrap();
        let insert = format!(
            "INSERT INTO logs ({OLD_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, '{{}}')"
        );
        for log in &old {
            connection
                .execute(
                    &insert,
                    rusqlite::params![
                        log.event.timestamp.timestamp_micros(),
                        log.processed_at.timestamp_micros(),
                        log.coordinates.offset,
                        log.fingerprint.as_i64(),
                        log.coordinates.partition,
                        log.severity_number,
                        log.event.level.as_str(),
                        log.event.service.as_str(),
                        &*log.coordinates.topic,
                        log.event.message.as_str(),
                        log.template,
                    ],
                )
                .unwrap();
        }
    }
    let url = format!("sqlite://{}", path.display());
    let store = LogStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let schema_sql = || {
        let connection = rusqlite::Connection::open(&path).unwrap();
        let sql: Vec<String> = connection
            .prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'logs' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        sql
    };
    let migrated = schema_sql();
    let joined = migrated.join("\n");
    assert!(
        joined.contains("UNIQUE (kafka_topic, kafka_partition, kafka_offset, kafka_index)"),
        "{joined}"
    );
    assert!(
        joined.contains("(ts, kafka_topic, kafka_partition, kafka_offset, kafka_index)"),
        "the position index includes the index: {joined}"
    );
    assert!(!joined.contains("logs_rebuild"), "{joined}");
    check_migrated(&store, &old).await;

    // Again, and after reopening: nothing changes.
    store.migrate().await.unwrap();
    drop(store);
    let store = LogStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(schema_sql(), migrated);
    assert_eq!(store.count().await.unwrap(), 80);
    let page = store.query(&LogQuery::default()).await.unwrap();
    assert!(positions(&page.logs).iter().any(|&(_, index)| index == 1));
}
