//! Write throughput of the PostgreSQL store: `write()` with batches of 500 and 5,000 under each
//! candidate index set, against raw binary COPY (same row encoding) into an unpartitioned table
//! without indexes. Prints rows/s; asserts nothing.
//!
//! ```text
//! cargo run --release -p logpipe-store --example copy_bench
//! ```
//!
//! Uses `LOGPIPE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and a
//! schema of its own, dropped at the end. `BENCH_ROWS` changes the row count (default 200,000);
//! `BENCH_KEEP=1` keeps the schema, filled and with the shipped indexes, for `EXPLAIN`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use logpipe_model::{
    normalise_timestamp, EnrichedLog, Fingerprint, KafkaCoordinates, Level, LogEvent, RawValue,
};
use logpipe_store::{LogStore, StoreOptions};

const SERVICES: [&str; 8] = [
    "checkout-api",
    "payments",
    "search",
    "inventory",
    "auth",
    "gateway",
    "notifications",
    "recommendations",
];
const MESSAGES: [&str; 6] = [
    "GET /api/v1/orders/{} completed in {} ms with status 200",
    "payment authorised for order {} amount {} EUR via card ending 4242",
    "cache miss for key user:{}:profile, loaded from database in {} ms",
    "Timeout talking to inventory-db after {} ms (attempt {} of 3)",
    "user {} logged in from 10.0.{}.17 using password authentication",
    "failed to deliver notification {} to device: upstream returned 503 after {} ms",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("LOGPIPE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(200_000);
    let schema = format!("bench_{}", std::process::id());
    let options = StoreOptions {
        schema: schema.clone(),
        ..StoreOptions::default()
    };
    let store = LogStore::open(&url, &options).await?;
    let LogStore::Postgres(pg) = &store else {
        return Err("the benchmark needs a PostgreSQL URL".into());
    };
    store.migrate().await?;
    let admin = pg.pool().get().await?;
    for setting in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "shared_buffers",
    ] {
        let row = admin.query_one(&format!("SHOW {setting}"), &[]).await?;
        println!("{setting} = {}", row.get::<_, String>(0));
    }
    let logs = generate(rows);
    let bytes: usize = logs
        .iter()
        .map(|log| log.event.message.len() + log.template.len() + 120)
        .sum();
    println!("{rows} rows, about {} bytes each\n", bytes / rows.max(1));

    let q = |table: &str| format!("\"{schema}\".{table}");
    // The indexes migrate() created, besides the unique key: re-created from their own
    // definitions below, so the "shipped" line measures exactly what ships.
    let shipped: Vec<(String, String)> = admin
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes \
             WHERE schemaname = $1 AND tablename = 'logs' AND indexname <> 'logs_event_key' \
             ORDER BY indexname DESC",
            &[&schema],
        )
        .await?
        .iter()
        // The definition of a partitioned index reads `ON ONLY logs`, which would create it on
        // the parent alone; without ONLY it cascades to every partition, as migrate() did.
        .map(|row| {
            (
                row.get(0),
                row.get::<_, String>(1).replacen(" ON ONLY ", " ON ", 1),
            )
        })
        .collect();
    for (name, definition) in &shipped {
        println!("shipped index {name}: {definition}");
        admin
            .batch_execute(&format!("DROP INDEX {}", q(name)))
            .await?;
    }
    println!();
    let logs_table = q("logs");
    let mut steps: Vec<(String, Vec<String>)> = vec![("unique key only".to_owned(), Vec::new())];
    let mut label = String::from("key");
    for (name, definition) in &shipped {
        label.push_str(&format!(" + {name}"));
        steps.push((label.clone(), vec![definition.clone()]));
    }
    if let Some(last) = steps.last_mut() {
        last.0.push_str(" (shipped)");
    }
    steps.push((
        "shipped, but (level, ts) on every row".to_owned(),
        vec![
            format!("DROP INDEX IF EXISTS {}", q("logs_level_ts_idx")),
            format!("CREATE INDEX logs_level_all_idx ON {logs_table} (level, ts DESC)"),
        ],
    ));
    steps.push((
        "... + pg_trgm GIN on message".to_owned(),
        vec![
            "CREATE EXTENSION IF NOT EXISTS pg_trgm".to_owned(),
            format!("CREATE INDEX logs_trgm_idx ON {logs_table} USING gin (message gin_trgm_ops)"),
        ],
    ));
    for (label, ddl) in steps {
        for statement in ddl {
            admin.batch_execute(&statement).await?;
        }
        for batch in [500, 5000] {
            admin
                .batch_execute(&format!("TRUNCATE {logs_table}"))
                .await?;
            let started = Instant::now();
            for chunk in logs.chunks(batch) {
                store.write(chunk).await?;
            }
            report(&format!("write(), {label}, batch {batch}"), rows, started);
        }
        // Two writers at once, as a consumer with several partitions in flight would run.
        admin
            .batch_execute(&format!("TRUNCATE {logs_table}"))
            .await?;
        let started = Instant::now();
        let (left, right) = logs.split_at(rows / 2);
        let (a, b) = tokio::join!(
            write_all(&store, left, 5000),
            write_all(&store, right, 5000)
        );
        a?;
        b?;
        report(
            &format!("write(), {label}, batch 5000, 2 writers"),
            rows,
            started,
        );
        println!();
    }

    // Replays: the slow path, every row a duplicate.
    let started = Instant::now();
    for chunk in logs.chunks(5000) {
        store.write(chunk).await?;
    }
    report("write() replaying stored rows, batch 5000", rows, started);
    println!();

    admin
        .batch_execute(&format!(
            "CREATE TABLE {raw} (LIKE {logs})",
            raw = q("raw_copy"),
            logs = q("logs")
        ))
        .await?;
    for batch in [500, 5000, rows] {
        admin
            .batch_execute(&format!("TRUNCATE {}", q("raw_copy")))
            .await?;
        let started = Instant::now();
        for chunk in logs.chunks(batch) {
            pg.copy_raw(&q("raw_copy"), chunk).await?;
        }
        report(
            &format!("raw binary COPY, unpartitioned, no indexes, batch {batch}"),
            rows,
            started,
        );
    }

    if std::env::var_os("BENCH_KEEP").is_some() {
        // Leave the shipped index set and the rows in place, for EXPLAIN by hand.
        admin
            .batch_execute(&format!(
                "DROP INDEX {}; DROP INDEX {}; TRUNCATE {logs_table}",
                q("logs_level_all_idx"),
                q("logs_trgm_idx")
            ))
            .await?;
        for (name, definition) in &shipped {
            admin
                .batch_execute(&format!("DROP INDEX IF EXISTS {}", q(name)))
                .await?;
            admin.batch_execute(definition).await?;
        }
        write_all(&store, &logs, 5000).await?;
        admin
            .batch_execute(&format!("ANALYZE {logs_table}"))
            .await?;
        println!("\nkept schema {schema} (drop it with DROP SCHEMA \"{schema}\" CASCADE)");
    } else {
        admin
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await?;
    }
    Ok(())
}

async fn write_all(
    store: &LogStore,
    logs: &[EnrichedLog],
    batch: usize,
) -> Result<(), logpipe_store::StoreError> {
    for chunk in logs.chunks(batch) {
        store.write(chunk).await?;
    }
    Ok(())
}

fn report(label: &str, rows: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label:<72} {:>9.0} rows/s ({seconds:.2} s)",
        rows as f64 / seconds
    );
}

/// A production-like mix: 60% INFO, 25% DEBUG, 8% WARN, 5% ERROR, 1.5% TRACE, 0.5% FATAL.
fn level_of(i: usize) -> Level {
    match i * 7919 % 1000 {
        0..600 => Level::Info,
        600..850 => Level::Debug,
        850..930 => Level::Warn,
        930..980 => Level::Error,
        980..995 => Level::Trace,
        _ => Level::Fatal,
    }
}

/// Realistic rows: eight services, six message shapes with numbers, the level mix above, attributes on two thirds,
/// trace ids on half, timestamps over the last few minutes (today's partition).
fn generate(rows: usize) -> Vec<EnrichedLog> {
    let now = normalise_timestamp(Utc::now());
    let tags = Arc::new(BTreeMap::from([
        ("env".to_owned(), "prod".to_owned()),
        ("region".to_owned(), "eu-west-1".to_owned()),
    ]));
    let topic: Arc<str> = Arc::from("application-logs");
    (0..rows)
        .map(|i| {
            let shape = MESSAGES[i % MESSAGES.len()];
            let message = shape
                .replacen("{}", &(i * 7919 % 100_000).to_string(), 1)
                .replacen("{}", &(i % 977).to_string(), 1);
            let template = shape.replace("{}", "<num>");
            let level = level_of(i);
            let timestamp = now - Duration::milliseconds((rows - i) as i64);
            EnrichedLog {
                event: LogEvent {
                    timestamp,
                    level,
                    service: SERVICES[i % SERVICES.len()].parse().expect("service"),
                    message: message.parse().expect("message"),
                    host: Some(format!("web-{}", i % 16).parse().expect("host")),
                    trace_id: (i % 2 == 0).then(|| {
                        format!("{:032x}", i as u128 * 0x9E37_79B9 + 1)
                            .parse()
                            .expect("trace")
                    }),
                    span_id: (i % 2 == 0).then(|| {
                        format!("{:016x}", i as u64 * 0x9E37 + 1)
                            .parse()
                            .expect("span")
                    }),
                    attributes: (i % 3 != 0).then(|| {
                        RawValue::from_string(format!(
                            r#"{{"user_id":{},"region":"eu","plan":"pro"}}"#,
                            i % 5000
                        ))
                        .expect("attributes")
                    }),
                },
                coordinates: KafkaCoordinates {
                    topic: Arc::clone(&topic),
                    partition: (i % 12) as i32,
                    offset: (i / 12) as i64,
                    index: 0,
                },
                kafka_timestamp: Some(timestamp),
                severity_number: level.severity_number(),
                fingerprint: Fingerprint((i % MESSAGES.len()) as u64 * 0x9E37_79B9_7F4A_7C15),
                template,
                ingested_at: Some(timestamp),
                processed_at: now,
                request_id: Some(format!("req-{:08x}", i / 50)),
                tags: Arc::clone(&tags),
            }
        })
        .collect()
}
