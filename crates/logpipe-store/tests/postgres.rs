//! PostgreSQL-only behaviour: recovering from killed connections, concurrent migrations from
//! separate processes' pools, rows moved out of the default partition, the index set, error
//! classification against a real server.

mod common;

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::Duration;
use common::{log_at, now, pg_admin, sample_logs, shared_tags, PgSchema};
use logpipe_model::EnrichedLog;
use logpipe_store::{LogStore, StoreError, StoreOptions, WriteReport};

/// Writes until the store accepts the batch, as the consumer does; only outages may fail.
async fn write_with_retry(store: &LogStore, batch: &[EnrichedLog]) -> WriteReport {
    for attempt in 1..=10 {
        match store.write(batch).await {
            Ok(report) => return report,
            Err(err) => {
                assert!(
                    matches!(err, StoreError::Unavailable(_)),
                    "attempt {attempt}: only Unavailable is acceptable, got {err}"
                );
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
        }
    }
    panic!("the store did not recover after its connections were killed");
}

#[tokio::test]
async fn the_pool_recovers_after_its_connections_are_killed() {
    let schema = PgSchema::new();
    let store = schema.open(&StoreOptions::default()).await;
    let admin = pg_admin().await;
    let at = now();

    store.write(&sample_logs(500, 0, at, 3)).await.unwrap();

    // Between writes: every pooled connection is dead when the next write asks for one.
    assert!(schema.terminate_connections(&admin).await >= 1);
    let first = store.write(&sample_logs(500, 500, at, 3)).await;
    eprintln!("write after killing idle connections: {first:?}");
    match first {
        Ok(report) => assert_eq!(report.inserted, 500),
        Err(err) => {
            assert!(
                matches!(err, StoreError::Unavailable(_)) && err.is_outage(),
                "{err}"
            );
            // The retry writes the batch exactly once, however far the first attempt got.
            let report = write_with_retry(&store, &sample_logs(500, 500, at, 3)).await;
            assert_eq!(report.inserted + report.duplicates, 500);
        }
    }

    // During a write: a large batch, its connection killed while it streams.
    let big = sample_logs(20_000, 1000, at, 3);
    let writer = tokio::spawn({
        let store = store.clone();
        let big = big.clone();
        async move { store.write(&big).await }
    });
    tokio::time::sleep(StdDuration::from_millis(15)).await;
    schema.terminate_connections(&admin).await;
    let during = writer.await.unwrap();
    eprintln!("write whose connection was killed mid-stream: {during:?}");
    match during {
        Ok(report) => assert_eq!(report.inserted, 20_000, "finished before the kill"),
        Err(err) => assert!(matches!(err, StoreError::Unavailable(_)), "{err}"),
    }
    let report = write_with_retry(&store, &big).await;
    assert_eq!(report.inserted + report.duplicates, 20_000);

    // Nothing lost, nothing doubled.
    assert_eq!(store.count().await.unwrap(), 21_000);
    let distinct: i64 = admin
        .query_one(
            &format!(
                "SELECT count(DISTINCT (kafka_topic, kafka_partition, kafka_offset)) FROM \"{}\".logs",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 21_000);
    assert!(store.ping().await);
}

#[tokio::test]
async fn concurrent_migrations_from_separate_pools() {
    let schema = PgSchema::new();
    let options = schema.options(&StoreOptions::default());
    let url = schema.url();
    let (a, b) = tokio::join!(
        LogStore::open(&url, &options),
        LogStore::open(&url, &options)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ra, rb, rc) = tokio::join!(a.migrate(), b.migrate(), a.migrate());
    ra.and(rb).and(rc).expect("concurrent migrations");
    a.write(&sample_logs(10, 0, now(), 1)).await.unwrap();
    assert_eq!(b.count().await.unwrap(), 10);
}

#[tokio::test]
async fn creating_a_partition_moves_its_rows_out_of_the_default_partition() {
    let schema = PgSchema::new();
    let options = StoreOptions {
        retention_days: 30,
        ..StoreOptions::default()
    };
    let store = schema.open(&options).await;
    let at = now();
    // Ten days ahead: no partition yet, so these land in logs_default.
    let future = at + Duration::days(10);
    let logs: Vec<EnrichedLog> = (0..50)
        .map(|offset| log_at(offset, future - Duration::seconds(offset), &shared_tags()))
        .collect();
    store.write(&logs).await.unwrap();
    let admin = pg_admin().await;
    let count_default = format!("SELECT count(*) FROM \"{}\".logs_default", schema.name);
    let default_rows: i64 = admin.query_one(&count_default, &[]).await.unwrap().get(0);
    assert!(default_rows >= 1);

    // Maintenance a week later creates that day's partition: its rows move in.
    let report = store.maintain(at + Duration::days(8)).await.unwrap();
    let day = future.date_naive();
    assert!(
        report
            .created
            .contains(&format!("logs_{}", day.format("%Y%m%d"))),
        "{report:?}"
    );
    let default_rows: i64 = admin.query_one(&count_default, &[]).await.unwrap().get(0);
    assert_eq!(default_rows, 0);
    assert_eq!(store.count().await.unwrap(), 50);
    // Still queryable, still de-duplicated.
    assert_eq!(store.write(&logs).await.unwrap().duplicates, 50);
    let page = common::first_thousand(&store).await;
    assert_eq!(page.logs.len(), 50);
}

#[tokio::test]
async fn schema_has_the_documented_indexes() {
    let schema = PgSchema::new();
    let _store = schema.open(&StoreOptions::default()).await;
    let admin = pg_admin().await;
    let indexes: BTreeSet<String> = admin
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'logs'",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for expected in ["logs_event_key", "logs_service_ts_idx", "logs_level_ts_idx"] {
        assert!(
            indexes.contains(expected),
            "{expected} missing from {indexes:?}"
        );
    }
    // A fresh database gets the current key directly: no earlier key, nothing left to build.
    assert!(!indexes.contains("logs_position_key"), "{indexes:?}");
    let key: String = admin
        .query_one(
            "SELECT pg_get_indexdef(to_regclass($1))",
            &[&format!("\"{}\".logs_event_key", schema.name)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        key.starts_with("CREATE UNIQUE INDEX")
            && key.ends_with("(ts, kafka_topic, kafka_partition, kafka_offset, kafka_index)"),
        "{key}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_outage() {
    // Port 1 on localhost: connection refused at once.
    let url = "postgres://postgres@127.0.0.1:1/test?connect_timeout=2";
    let err = LogStore::open(url, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_outage());
    assert!(!err.to_string().contains("password"));
}

#[tokio::test]
async fn a_missing_table_is_a_schema_problem_not_a_rejection() {
    let schema = PgSchema::new();
    // Opened but never migrated.
    let store = LogStore::open(&schema.url(), &schema.options(&StoreOptions::default()))
        .await
        .unwrap();
    let err = store.write(&sample_logs(1, 0, now(), 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    assert!(
        err.is_outage(),
        "the consumer must pause, not dead-letter the batch"
    );
}

#[tokio::test]
async fn migrating_an_existing_schema_does_not_wait_for_writers() {
    let schema = PgSchema::new();
    let store = schema.open(&StoreOptions::default()).await;
    // A writer in the middle of a COPY holds ROW EXCLUSIVE on `logs` until it commits.
    let mut writer = pg_admin().await;
    let tx = writer.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "LOCK TABLE \"{}\".logs IN ROW EXCLUSIVE MODE",
        schema.name
    ))
    .await
    .unwrap();
    // A consumer starting meanwhile migrates: with everything in place it takes no table lock.
    tokio::time::timeout(StdDuration::from_secs(5), store.migrate())
        .await
        .expect("migrate waited for the writer's lock")
        .unwrap();
    tx.rollback().await.unwrap();
}

/// A pool opened with a statement timeout and a name (the query API's) gets both on every
/// connection: the server cancels a longer statement, and `pg_stat_activity` tells its
/// connections from the writers'.
#[tokio::test]
async fn a_pool_can_bound_its_statements_and_name_its_connections() {
    let schema = PgSchema::new();
    let options = StoreOptions {
        pool_size: 1,
        statement_timeout: Some(StdDuration::from_millis(200)),
        application_name: "logpipe-query".into(),
        ..StoreOptions::default()
    };
    // The URL without `application_name`, so the pool's own name applies.
    let store = LogStore::open(&common::postgres_url(), &schema.options(&options))
        .await
        .expect("open");
    let LogStore::Postgres(pg) = &store else {
        panic!("a PostgreSQL store")
    };
    let client = pg.pool().get().await.unwrap();
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "200ms");
    let name: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "logpipe-query");
    let error = client
        .query_one("SELECT pg_sleep(2)", &[])
        .await
        .expect_err("cancelled after 200 ms");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{error}"
    );
}
