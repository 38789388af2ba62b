//! Test helpers: running one test body against both backends, a PostgreSQL schema per test, and
//! generated `EnrichedLog` batches.
//!
//! PostgreSQL tests read `LOGPIPE_TEST_POSTGRES_URL` and fail (never skip) without it. Each test
//! gets its own schema, `t_<pid>_<counter>_<nanos>`, created by `migrate()` and dropped when the
//! test ends (also when it panics), so tests run in parallel without seeing each other. The
//! store's connections carry the schema name as `application_name`, so a test can kill exactly
//! its own pool's connections.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use logpipe_model::{
    normalise_timestamp, EnrichedLog, Fingerprint, KafkaCoordinates, Level, LogEvent, RawValue,
};
use logpipe_store::{LogPage, LogQuery, LogStore, StoreOptions, StoredLog};

pub const TOPIC: &str = "application-logs";
pub const SERVICES: [&str; 3] = ["checkout-api", "payments", "search"];

/// The PostgreSQL URL tests use; panics with the way to get one.
pub fn postgres_url() -> String {
    match std::env::var("LOGPIPE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "LOGPIPE_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL \
             and sets LOGPIPE_TEST_POSTGRES_URL (or export \
             LOGPIPE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
}

/// A connection for inspecting the database behind the store's back.
pub async fn pg_admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to LOGPIPE_TEST_POSTGRES_URL");
    tokio::spawn(connection);
    client
}

/// A PostgreSQL schema owned by one test, dropped (with everything in it) on drop.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        PgSchema {
            name: format!(
                "t_{}_{}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nanos
            ),
        }
    }

    /// The store URL, with the schema name as the connections' `application_name`.
    pub fn url(&self) -> String {
        let url = postgres_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}application_name={}", self.name)
    }

    pub fn options(&self, base: &StoreOptions) -> StoreOptions {
        StoreOptions {
            schema: self.name.clone(),
            ..base.clone()
        }
    }

    /// Opens and migrates a store on this schema.
    pub async fn open(&self, base: &StoreOptions) -> LogStore {
        let store = LogStore::open(&self.url(), &self.options(base))
            .await
            .expect("opening the PostgreSQL store");
        store.migrate().await.expect("migrating PostgreSQL");
        store
    }

    /// Kills every connection of this schema's stores; returns how many.
    pub async fn terminate_connections(&self, admin: &tokio_postgres::Client) -> i64 {
        admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .expect("terminating backends")
            .get(0)
    }
}

impl Drop for PgSchema {
    /// Drops the schema from a thread of its own: `Drop` cannot await, and this may run while a
    /// failed test unwinds inside the test's runtime.
    fn drop(&mut self) {
        let name = self.name.clone();
        let Ok(url) = std::env::var("LOGPIPE_TEST_POSTGRES_URL") else {
            return;
        };
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("cleanup connection");
                tokio::spawn(connection);
                // Never hang a failed test on a lock its own dead transaction still holds.
                let statement =
                    format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                if let Err(err) = client.batch_execute(&statement).await {
                    eprintln!("could not drop test schema {name}: {err}");
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Which backend a test body is running against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a test body gets: the migrated store and, for PostgreSQL, its schema name.
pub struct TestStore {
    pub store: LogStore,
    pub backend: Backend,
    pub schema: Option<String>,
}

/// Runs `body` against a fresh in-memory SQLite store, then against a fresh PostgreSQL schema.
pub async fn each_backend<F, Fut>(options: StoreOptions, body: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = LogStore::open("sqlite::memory:", &options)
        .await
        .expect("opening SQLite");
    store.migrate().await.expect("migrating SQLite");
    assert_eq!(store.kind(), "sqlite");
    body(TestStore {
        store,
        backend: Backend::Sqlite,
        schema: None,
    })
    .await;

    let schema = PgSchema::new();
    let store = schema.open(&options).await;
    assert_eq!(store.kind(), "postgres");
    body(TestStore {
        store,
        backend: Backend::Postgres,
        schema: Some(schema.name.clone()),
    })
    .await;
}

/// The tags every generated record shares, as a consumer's configuration would.
pub fn shared_tags() -> Arc<BTreeMap<String, String>> {
    Arc::new(BTreeMap::from([
        ("env".to_owned(), "test".to_owned()),
        ("region".to_owned(), "eu-west-1".to_owned()),
    ]))
}

/// Now, at the microsecond precision logpipe keeps.
pub fn now() -> DateTime<Utc> {
    normalise_timestamp(Utc::now())
}

/// One record with every field set. Deterministic in `offset`.
pub fn log_at(
    offset: i64,
    timestamp: DateTime<Utc>,
    tags: &Arc<BTreeMap<String, String>>,
) -> EnrichedLog {
    let i = offset.unsigned_abs() as usize;
    let level = Level::ALL[i % Level::ALL.len()];
    let message = if i % 5 == 0 {
        format!("Timeout talking to db after {i} ms")
    } else {
        format!("request {i} served")
    };
    let template = if i % 5 == 0 {
        "Timeout talking to db after <num> ms".to_owned()
    } else {
        "request <num> served".to_owned()
    };
    let attributes = (i % 2 == 0).then(|| {
        RawValue::from_string(format!(r#"{{"user_id":{i},"region":"eu"}}"#)).expect("attributes")
    });
    EnrichedLog {
        event: LogEvent {
            timestamp,
            level,
            service: SERVICES[i % SERVICES.len()].parse().expect("service"),
            message: message.parse().expect("message"),
            host: Some(format!("web-{}", i % 4).parse().expect("host")),
            trace_id: (i % 3 == 0).then(|| format!("{:032x}", i + 1).parse().expect("trace id")),
            span_id: (i % 3 == 0).then(|| format!("{:016x}", i + 1).parse().expect("span id")),
            attributes,
        },
        coordinates: KafkaCoordinates {
            topic: Arc::from(TOPIC),
            partition: (i % 3) as i32,
            offset,
            index: 0,
        },
        kafka_timestamp: Some(timestamp + Duration::milliseconds(1)),
        severity_number: level.severity_number(),
        // High bit set for odd offsets: checks the signed bigint round trip.
        fingerprint: Fingerprint((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        template,
        ingested_at: Some(timestamp + Duration::milliseconds(2)),
        processed_at: timestamp + Duration::milliseconds(3),
        request_id: Some(format!("req-{i}")),
        tags: Arc::clone(tags),
    }
}

/// `count` records with offsets from `first_offset`, spread over `days` days ending at `now`
/// (today, yesterday, ...), several services and every level.
pub fn sample_logs(
    count: usize,
    first_offset: i64,
    now: DateTime<Utc>,
    days: i64,
) -> Vec<EnrichedLog> {
    let tags = shared_tags();
    (0..count as i64)
        .map(|n| {
            let offset = first_offset + n;
            let timestamp =
                now - Duration::days(offset % days) - Duration::milliseconds(offset * 7);
            log_at(offset, timestamp, &tags)
        })
        .collect()
}

/// Every row matching `query`, page by page; checks that pages never repeat a row.
pub async fn walk(store: &LogStore, query: &LogQuery) -> Vec<StoredLog> {
    let mut all = Vec::new();
    let mut query = query.clone();
    loop {
        let LogPage { logs, next_cursor } = store.query(&query).await.expect("query");
        assert!(logs.len() <= query.limit as usize);
        all.extend(logs);
        match next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
        assert!(all.len() < 1_000_000, "pagination does not end");
    }
    all
}

/// The Kafka offsets of `logs`, in order.
pub fn offsets(logs: &[StoredLog]) -> Vec<i64> {
    logs.iter().map(|log| log.kafka.offset).collect()
}

/// The (offset, index) pairs of `logs`, in order.
pub fn positions(logs: &[StoredLog]) -> Vec<(i64, u32)> {
    logs.iter()
        .map(|log| (log.kafka.offset, log.kafka.index))
        .collect()
}

/// The event at `index` within the record at `offset`: [`log_at`] with its own message.
pub fn event_at(
    offset: i64,
    index: u32,
    timestamp: DateTime<Utc>,
    tags: &Arc<BTreeMap<String, String>>,
) -> EnrichedLog {
    let mut log = log_at(offset, timestamp, tags);
    log.coordinates.index = index;
    log.event.message = format!("event {index} of record {offset}")
        .parse()
        .expect("message");
    log
}

/// The offsets of `logs` in the store's page order: newest first, then coordinates descending.
pub fn expected_order(logs: &[&EnrichedLog]) -> Vec<i64> {
    let mut sorted: Vec<&EnrichedLog> = logs.to_vec();
    sorted.sort_by(|a, b| {
        (
            b.event.timestamp,
            &b.coordinates.topic,
            b.coordinates.partition,
            b.coordinates.offset,
            b.coordinates.index,
        )
            .cmp(&(
                a.event.timestamp,
                &a.coordinates.topic,
                a.coordinates.partition,
                a.coordinates.offset,
                a.coordinates.index,
            ))
    });
    sorted.iter().map(|log| log.coordinates.offset).collect()
}

/// The first page of up to 1,000 stored rows, newest first, with no filter.
pub async fn first_thousand(store: &LogStore) -> LogPage {
    store
        .query(&LogQuery {
            limit: 1000,
            ..LogQuery::default()
        })
        .await
        .unwrap()
}
