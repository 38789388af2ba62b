//! Search isolation of the SQLite store: the reader does not wait for the writer, and a search
//! stops at its budget with an outage error.

use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;

use super::{connections, SqliteStore};
use crate::{LogQuery, StoreError, StoreOptions};

/// A statement that runs for many seconds unless stopped.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
     WHERE x < 1000000000) SELECT count(*) FROM c";

/// Writes `rows` rows of one service straight through SQL (quicker than building logs).
fn seed(store: &SqliteStore, rows: i64) {
    let writer = store.inner.writer.lock().unwrap();
    writer
        .execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
             INSERT INTO logs (ts, processed_at, kafka_offset, fingerprint, kafka_partition, \
             severity_number, level, service, kafka_topic, message, template, tags) \
             SELECT x, x, x, 0, 0, 9, 'INFO', 'seed', 'logs', 'request ' || x || ' served', \
             'request <n> served', '{}' FROM c",
            [rows],
        )
        .unwrap();
}

async fn store() -> SqliteStore {
    let store = SqliteStore::open_in_memory(&StoreOptions::default()).unwrap();
    store.migrate().await.unwrap();
    store
}

fn count_query(connection: &rusqlite::Connection) -> Result<i64, StoreError> {
    connection
        .query_row("SELECT count(*) FROM logs", [], |row| row.get(0))
        .map_err(|err| crate::error::from_sqlite("counting", &err))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_does_not_wait_for_an_open_write_transaction() {
    let store = store().await;
    seed(&store, 10);
    // A second writer on the file (as another process would be): holding the store's own writer
    // lock across the `.await` below would be a lock held across an await point.
    let path = store
        .inner
        ._temporary
        .as_ref()
        .unwrap()
        .path()
        .join("logs.db");
    let mut writer = connections::open_writer(&path, connections::Durability::None).unwrap();
    let tx = writer
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("DELETE FROM logs", []).unwrap();
    // The writer holds the write lock and an uncommitted change; the reader sees the last commit
    // at once (far within the 5 s busy timeout it would otherwise wait for).
    let started = Instant::now();
    let seen = connections::read_within(
        &store.inner.reader,
        Some(Duration::from_secs(2)),
        count_query,
    )
    .await
    .unwrap();
    assert_eq!(seen, 10);
    assert!(started.elapsed() < Duration::from_millis(500));
    tx.commit().unwrap();
    let seen = connections::read_within(&store.inner.reader, None, count_query).await;
    assert_eq!(seen.unwrap(), 0, "the next search sees the commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_commits_while_a_search_runs() {
    let store = store().await;
    seed(&store, 10);
    let reader = store.inner.reader.clone();
    let search = tokio::spawn(async move {
        connections::read_within(&reader, Some(Duration::from_millis(1500)), |connection| {
            connection
                .query_row(ENDLESS, [], |row| row.get::<_, i64>(0))
                .map_err(|err| crate::error::from_sqlite("endless", &err))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    seed_more(&store).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a write waited {:?} for a search",
        started.elapsed()
    );
    assert!(!search.is_finished(), "the search was still running");
    assert!(search.await.unwrap().unwrap_err().is_outage());
    assert_eq!(store.count().await.unwrap(), 11);
}

/// One more committed row through the store's own write path (the writer connection).
async fn seed_more(store: &SqliteStore) {
    store
        .with_connection(|connection| {
            connection
                .execute(
                    "INSERT INTO logs (ts, processed_at, kafka_offset, fingerprint, \
                     kafka_partition, severity_number, level, service, kafka_topic, message, \
                     template, tags) VALUES (1, 1, 1, 0, 1, 9, 'INFO', 'x', 'logs', 'm', 'm', '{}')",
                    [],
                )
                .map_err(|err| crate::error::from_sqlite("inserting", &err))
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_past_its_budget_is_stopped_as_an_outage() {
    let store = store().await;
    seed(&store, 200_000);
    let bounded = store.with_query_timeout(Duration::from_millis(5));
    let search = LogQuery {
        text: Some("no such words anywhere".into()),
        ..LogQuery::default()
    };
    let started = Instant::now();
    let err = bounded.query(&search).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_outage());
    assert!(err.to_string().contains("budget"), "{err}");
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    // The handler is removed afterwards: the unbounded handle (the same reader) runs the same
    // search to the end.
    let page = store.query(&search).await.unwrap();
    assert!(page.logs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_the_reader_counts_towards_the_budget() {
    let store = store().await;
    let held = store.inner.reader.clone().lock_owned().await;
    let bounded = store.with_query_timeout(Duration::from_millis(100));
    let started = Instant::now();
    let err = bounded.query(&LogQuery::default()).await.unwrap_err();
    assert!(
        err.is_outage() && err.to_string().contains("budget"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    assert!(bounded.query(&LogQuery::default()).await.is_ok());
}

#[tokio::test]
async fn the_temporary_database_is_removed_with_the_store() {
    let store = store().await;
    let path = store.inner._temporary.as_ref().unwrap().path().to_owned();
    assert!(path.join("logs.db").exists());
    let clone = store.clone();
    drop(store);
    assert!(path.exists(), "a clone keeps it");
    drop(clone);
    assert!(!path.exists());
}
