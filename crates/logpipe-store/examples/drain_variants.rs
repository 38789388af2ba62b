//! Store-side variants of the drain's write, measured against each other in the same invocation:
//! `write()` the way a draining consumer calls it (rounds of 5,000 rows, written as two
//! concurrent COPYs of 2,500), on the shipped schema and on variants of it, interleaved over
//! several rounds so that a change in the machine's load hits every variant alike. Also the
//! reference of `scripts/bench-drain.sh`: one raw binary COPY, server-side, of the same rows into
//! a table with the same columns and indexes. Prints rows/s and the ratio to the shipped line;
//! asserts nothing.
//!
//! ```text
//! cargo run --release -p logpipe-store --example drain_variants
//! ```
//!
//! `LOGPIPE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`; a superuser:
//! `CHECKPOINT`, `SET wal_compression`, server-side `COPY`), `BENCH_ROWS` (default 200,000),
//! `BENCH_ROUNDS` (default 5). Schemas of its own (`drainvar_<pid>_*`), dropped at the end, and a
//! file in /tmp, removed.
//!
//! The variants, each one change from "shipped":
//! - `key (ts, bigint)`: the unique key narrowed to `(ts, pos)`, `pos` one 8-byte integer
//!   packing partition, offset and index (a generated column here; the topic left out, as a
//!   one-topic store could), against the shipped five columns with the topic's text;
//! - `key only`: without the two secondary indexes (what each costs per row);
//! - `synchronous_commit=off`, `wal_compression=lz4`: session settings a user can put in the
//!   consumer's PostgreSQL URL (`?options=-c%20synchronous_commit%3Doff`), no code change;
//! - `one stream`: the round as one COPY of 5,000 instead of two concurrent ones;
//! - `rounds of 20,000`: `consumer.max_batch_size = 20000` (fewer commits and Redis updates,
//!   more memory).

#[path = "support/rows.rs"]
mod rows;

use std::time::Instant;

use logpipe_model::EnrichedLog;
use logpipe_store::{LogStore, StoreOptions};

/// Rows per round (a backlog round of the consumer: `consumer.max_batch_size`).
const ROUND: usize = 5000;

struct Variant {
    label: &'static str,
    /// Appended to the URL's query string (session settings).
    url_options: &'static str,
    /// Run on the variant's schema after `migrate()`; `{logs}` is the qualified table.
    ddl: &'static [&'static str],
    /// Concurrent COPYs per round.
    streams: usize,
    /// Rows per round.
    round: usize,
}

const VARIANTS: [Variant; 7] = [
    Variant {
        label: "shipped",
        url_options: "",
        ddl: &[],
        streams: 2,
        round: ROUND,
    },
    Variant {
        label: "key (ts, bigint) instead of 5 columns",
        url_options: "",
        ddl: &[
            "ALTER TABLE {logs} ADD COLUMN pos bigint GENERATED ALWAYS AS \
             ((kafka_partition::bigint << 48) | (kafka_offset << 8) | kafka_index) STORED",
            "DROP INDEX {schema}.logs_event_key",
            "CREATE UNIQUE INDEX logs_pos_key ON {logs} (ts, pos)",
        ],
        streams: 2,
        round: ROUND,
    },
    Variant {
        label: "key only (no service, level indexes)",
        url_options: "",
        ddl: &[
            "DROP INDEX {schema}.logs_service_ts_idx",
            "DROP INDEX {schema}.logs_level_ts_idx",
        ],
        streams: 2,
        round: ROUND,
    },
    Variant {
        label: "synchronous_commit=off (session)",
        url_options: "options=-c%20synchronous_commit%3Doff",
        ddl: &[],
        streams: 2,
        round: ROUND,
    },
    Variant {
        label: "wal_compression=lz4 (session)",
        url_options: "options=-c%20wal_compression%3Dlz4",
        ddl: &[],
        streams: 2,
        round: ROUND,
    },
    Variant {
        label: "one stream (one COPY of 5000 per round)",
        url_options: "",
        ddl: &[],
        streams: 1,
        round: ROUND,
    },
    Variant {
        label: "rounds of 20,000 (two COPYs of 10,000)",
        url_options: "",
        ddl: &[],
        streams: 2,
        round: 4 * ROUND,
    },
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("LOGPIPE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = env("BENCH_ROWS", 200_000);
    let rounds = env("BENCH_ROUNDS", 5);
    let logs = rows::generate(rows);
    let prefix = format!("drainvar_{}", std::process::id());

    let mut stores = Vec::new();
    for (i, variant) in VARIANTS.iter().enumerate() {
        let schema = format!("{prefix}_{i}");
        let sep = if url.contains('?') { '&' } else { '?' };
        let variant_url = if variant.url_options.is_empty() {
            url.clone()
        } else {
            format!("{url}{sep}{}", variant.url_options)
        };
        let options = StoreOptions {
            schema: schema.clone(),
            ..StoreOptions::default()
        };
        let store = LogStore::open(&variant_url, &options).await?;
        store.migrate().await?;
        stores.push((store, schema));
    }
    let LogStore::Postgres(pg) = &stores[0].0 else {
        return Err("the benchmark needs a PostgreSQL URL".into());
    };
    let admin = pg.pool().get().await?;
    for ((_, schema), variant) in stores.iter().zip(&VARIANTS) {
        for statement in variant.ddl {
            let statement = statement
                .replace("{logs}", &format!("\"{schema}\".logs"))
                .replace("{schema}", &format!("\"{schema}\""));
            admin.batch_execute(&statement).await?;
        }
    }
    for setting in [
        "server_version",
        "synchronous_commit",
        "wal_compression",
        "shared_buffers",
        "max_wal_size",
    ] {
        let row = admin.query_one(&format!("SHOW {setting}"), &[]).await?;
        println!("{setting} = {}", row.get::<_, String>(0));
    }
    println!(
        "{rows} rows, rounds of {ROUND}; {rounds} interleaved runs of every variant; load average before: {}",
        load_average()
    );

    // The reference: the shipped schema's rows, exported once, copied server-side in one COPY.
    let reference_schema = format!("{prefix}_ref");
    let file = format!("/tmp/{prefix}.bin");
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len() + 1];
    for run in 0..rounds {
        // Rotated each run, so no variant always runs first (after the reference's COPY) or last.
        let order = (0..VARIANTS.len()).map(|i| (i + run) % VARIANTS.len());
        for i in order {
            let ((store, schema), variant) = (&stores[i], &VARIANTS[i]);
            admin
                .batch_execute(&format!("TRUNCATE \"{schema}\".logs; CHECKPOINT"))
                .await?;
            let started = Instant::now();
            for round in logs.chunks(variant.round) {
                write_round(store, round, variant.streams).await?;
            }
            let rate = rows as f64 / started.elapsed().as_secs_f64();
            eprintln!("  run {run}: {:<44} {rate:>9.0} rows/s", variant.label);
            results[i].push(rate);
        }
        if run == 0 {
            admin
                .batch_execute(&format!(
                    "CREATE SCHEMA \"{reference_schema}\"; \
                     CREATE TABLE \"{reference_schema}\".t (LIKE \"{s}\".logs INCLUDING ALL); \
                     COPY (SELECT * FROM \"{s}\".logs) TO '{file}' (FORMAT binary)",
                    s = stores[0].1
                ))
                .await?;
        }
        admin
            .batch_execute(&format!("TRUNCATE \"{reference_schema}\".t; CHECKPOINT"))
            .await?;
        let started = Instant::now();
        admin
            .batch_execute(&format!(
                "COPY \"{reference_schema}\".t FROM '{file}' (FORMAT binary)"
            ))
            .await?;
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "  run {run}: {:<44} {rate:>9.0} rows/s",
            "raw binary COPY (bench-drain's reference)"
        );
        results[VARIANTS.len()].push(rate);
    }

    // Each variant against "shipped" of the same run (the machine's load moves between runs),
    // then the median over the runs: a ratio, not a rate, is what carries over.
    println!(
        "\n{:<46} {:>30} {:>16}",
        "variant", "rows/s per run", "/ shipped (min–max)"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let labels = VARIANTS
        .iter()
        .map(|v| v.label)
        .chain(["raw binary COPY, one statement (reference)"]);
    for (label, rates) in labels.zip(&results) {
        let per_run = rates
            .iter()
            .map(|r| format!("{:.0}k", r / 1000.0))
            .collect::<Vec<_>>()
            .join(" ");
        let mut ratios: Vec<f64> = rates.iter().zip(&results[0]).map(|(r, s)| r / s).collect();
        let mid = median(&mut ratios);
        println!(
            "{label:<46} {per_run:>30} {mid:>6.2} ({:.2}–{:.2})",
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    println!("(load average after: {})", load_average());

    admin
        .batch_execute(&format!("DROP SCHEMA \"{reference_schema}\" CASCADE"))
        .await?;
    for (_, schema) in &stores {
        admin
            .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await?;
    }
    let _ = std::fs::remove_file(&file);
    Ok(())
}

/// One consumer round: `streams` concurrent writes of equal parts.
async fn write_round(
    store: &LogStore,
    round: &[EnrichedLog],
    streams: usize,
) -> Result<(), logpipe_store::StoreError> {
    let part = round.len().div_ceil(streams.max(1)).max(1);
    for result in futures::future::join_all(round.chunks(part).map(|p| store.write(p))).await {
        result?;
    }
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
