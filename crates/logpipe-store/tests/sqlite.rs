//! SQLite-only behaviour and store URLs: file databases persist, in-memory ones do not, and
//! unusable URLs are refused without echoing secrets.

mod common;

use common::{now, sample_logs};
use logpipe_store::{LogStore, StoreError, StoreOptions};

#[tokio::test]
async fn a_file_database_keeps_its_rows_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logs.db").display());
    let batch = sample_logs(100, 0, now(), 2);
    {
        let store = LogStore::open(&url, &StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(store.kind(), "sqlite");
        store.migrate().await.unwrap();
        assert_eq!(store.write(&batch).await.unwrap().inserted, 100);
    }
    let store = LogStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 100);
    // The coordinates are remembered: a replay after a restart is still recognised.
    assert_eq!(store.write(&batch).await.unwrap().duplicates, 100);
    assert!(
        dir.path().join("logs.db-wal").exists(),
        "file databases use WAL"
    );
}

#[tokio::test]
async fn in_memory_stores_start_empty_and_share_one_connection() {
    for url in ["", "sqlite::memory:"] {
        let store = LogStore::open(url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.count().await.unwrap(), 0, "{url:?}");
        // A clone is the same database (one shared connection), not a new empty one.
        let clone = store.clone();
        clone.write(&sample_logs(5, 0, now(), 1)).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 5);
    }
}

#[tokio::test]
async fn unusable_urls_are_refused() {
    for url in ["mysql://root:secret@db/logs", "sqlite://", "http://x"] {
        let err = LogStore::open(url, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Schema(_)), "{url}: {err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    let err = LogStore::open(
        "sqlite:///nonexistent-dir/sub/logs.db",
        &StoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_outage(),
        "a file that cannot be opened is an outage: {err}"
    );
}

#[tokio::test]
async fn writing_before_migrating_is_a_schema_problem() {
    let store = LogStore::open("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    let err = store.write(&sample_logs(1, 0, now(), 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    assert!(err.is_outage());
}
