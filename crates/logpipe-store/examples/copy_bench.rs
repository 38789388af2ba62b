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

#[path = "support/rows.rs"]
mod rows;

use std::time::Instant;

use logpipe_model::EnrichedLog;
use logpipe_store::{LogStore, StoreOptions};

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
    let logs = rows::generate(rows);
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
