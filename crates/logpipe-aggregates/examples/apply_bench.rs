//! Measures `Aggregates::apply`: 2,000 deltas of 500 records (12 partitions, 20 services,
//! 5 levels, 50 fingerprints), applied one after another as one consumer does; then the same
//! volume by 4 consumers at once (3 partitions each, 500 deltas each), against Redis; then the
//! sequential run against the in-process store.
//! Prints deltas/s, records/s, client-side latency, and the Lua script's own time from Redis'
//! `INFO commandstats`. Prints, never asserts.
//!
//! `cargo run --release -p logpipe-aggregates --example apply_bench`
//! Redis from `LOGPIPE_BENCH_REDIS_URL`, else `LOGPIPE_TEST_REDIS_URL`, else
//! redis://127.0.0.1:6379. Keys go under a unique prefix and are deleted at the end.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logpipe_aggregates::{AggOptions, Aggregates, ApplyOutcome, BatchDelta};
use logpipe_model::{EnrichedLog, Fingerprint, KafkaCoordinates, Level, Limits, LogEvent};

const DELTAS: usize = 2_000;
const RECORDS_PER_DELTA: usize = 500;
const PARTITIONS: i32 = 12;
const SERVICES: usize = 20;
const FINGERPRINTS: u64 = 50;
const LEVELS: [Level; 5] = [
    Level::Debug,
    Level::Info,
    Level::Warn,
    Level::Error,
    Level::Fatal,
];
const TOPIC: &str = "application-logs";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("LOGPIPE_BENCH_REDIS_URL")
        .or_else(|_| std::env::var("LOGPIPE_TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!(
        "bench:{}:{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let options = AggOptions {
        key_prefix: prefix.clone(),
        ..AggOptions::default()
    };
    let templates = Templates::new();

    println!(
        "{DELTAS} deltas x {RECORDS_PER_DELTA} records, {PARTITIONS} partitions, {SERVICES} services, {} levels, {FINGERPRINTS} fingerprints",
        LEVELS.len()
    );
    let started = Instant::now();
    let deltas = build_deltas(&templates, DELTAS, 0..PARTITIONS, 0);
    let build = started.elapsed();
    println!(
        "building deltas (BatchDelta::add): {:.0} ns/record",
        build.as_nanos() as f64 / (DELTAS * RECORDS_PER_DELTA) as f64
    );

    let redis = Aggregates::open(&url, &options).await?;
    let mut admin = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    println!("\n== Redis ({url})");
    let before = script_stats(&mut admin).await?;
    let report = sequential(&redis, &deltas).await?;
    let after = script_stats(&mut admin).await?;
    report.print("1 consumer, sequential");
    print_script_time(before, after);

    // Continue each partition's offsets after the sequential run's last delta.
    let next_offset = DELTAS as i64 * RECORDS_PER_DELTA.div_ceil(PARTITIONS as usize) as i64;
    let consumers = 4;
    let width = PARTITIONS / consumers;
    let per_consumer: Vec<Vec<BatchDelta>> = (0..consumers)
        .map(|c| {
            let partitions = c * width..(c + 1) * width;
            build_deltas(
                &templates,
                DELTAS / consumers as usize,
                partitions,
                next_offset,
            )
        })
        .collect();
    let before = script_stats(&mut admin).await?;
    let report = concurrent(&redis, per_consumer).await?;
    let after = script_stats(&mut admin).await?;
    report.print("4 consumers, 3 partitions each");
    print_script_time(before, after);
    let stats_started = Instant::now();
    let stats = redis
        .stats(&logpipe_aggregates::StatsQuery {
            since: Utc::now() - chrono::Duration::hours(24),
            until: Utc::now() + chrono::Duration::minutes(5),
            service: None,
            top_n: 10,
        })
        .await?;
    println!(
        "  stats over 24 h (1,440 minutes pipelined): {:?}, total {}",
        stats_started.elapsed(),
        stats.total
    );
    delete_keys(&mut admin, &prefix).await?;

    println!("\n== in-process store");
    let memory = Aggregates::open("", &options).await?;
    sequential(&memory, &deltas)
        .await?
        .print("1 consumer, sequential");
    Ok(())
}

/// 50 fingerprints, each owned by one service, each with its template.
struct Templates {
    events: Vec<EnrichedLog>,
}

impl Templates {
    fn new() -> Self {
        let events = (0..FINGERPRINTS)
            .map(|fp| {
                let service = format!("service-{:02}", fp as usize % SERVICES);
                let json = format!(
                    r#"{{"level":"ERROR","service":"{service}","message":"operation {fp} failed after 12 ms"}}"#
                );
                let event = LogEvent::parse(json.as_bytes(), &Limits::DEFAULT, Utc::now())
                    .expect("valid bench event");
                EnrichedLog {
                    severity_number: 17,
                    event,
                    coordinates: KafkaCoordinates {
                        topic: TOPIC.into(),
                        partition: 0,
                        offset: 0,
                        index: 0,
                    },
                    kafka_timestamp: None,
                    fingerprint: Fingerprint(0x5eed_0000_0000_0000 | fp),
                    template: format!("operation {fp} failed after <num> ms"),
                    ingested_at: None,
                    processed_at: Utc::now(),
                    request_id: None,
                    tags: Arc::new(BTreeMap::new()),
                }
            })
            .collect();
        Templates { events }
    }
}

/// `count` deltas as a consumer owning `partitions` builds them: 500 records spread evenly over
/// the partitions with consecutive offsets from `first_offset`, event times over the last ~30
/// minutes (about two minutes per delta).
fn build_deltas(
    templates: &Templates,
    count: usize,
    partitions: std::ops::Range<i32>,
    first_offset: i64,
) -> Vec<BatchDelta> {
    let mut rng =
        0x2545_f491_4f6c_dd1d_u64 ^ (first_offset as u64) ^ ((partitions.start as u64) << 32);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let now = Utc::now();
    let width = partitions.len();
    let per_partition = RECORDS_PER_DELTA.div_ceil(width) as i64;
    (0..count)
        .map(|d| {
            let mut delta = BatchDelta::new();
            let after = first_offset + d as i64 * per_partition - 1;
            for partition in partitions.clone() {
                delta.cover(TOPIC, partition, after, after + per_partition);
            }
            let minute =
                DateTime::<Utc>::from_timestamp(now.timestamp() - 1800 + d as i64 % 1800, 0)
                    .unwrap_or(now);
            for i in 0..RECORDS_PER_DELTA {
                let mut log = templates.events[(next() % FINGERPRINTS) as usize].clone();
                log.event.level = LEVELS[(next() % LEVELS.len() as u64) as usize];
                log.event.timestamp = minute + chrono::Duration::seconds((next() % 120) as i64);
                log.coordinates.partition = partitions.start + (i % width) as i32;
                log.coordinates.offset = after + 1 + (i / width) as i64;
                delta.add(&log);
            }
            delta
        })
        .collect()
}

struct Report {
    deltas: usize,
    records: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(mut self, label: &str) {
        self.latencies.sort();
        let at = |q: f64| self.latencies[((self.latencies.len() - 1) as f64 * q) as usize];
        let secs = self.elapsed.as_secs_f64();
        println!(
            "  {label}: {:.0} deltas/s, {:.0} records/s; apply latency p50 {:?}, p99 {:?}, max {:?}",
            self.deltas as f64 / secs,
            self.records as f64 / secs,
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

async fn sequential(store: &Aggregates, deltas: &[BatchDelta]) -> Result<Report, Box<dyn Error>> {
    let mut latencies = Vec::with_capacity(deltas.len());
    let mut records = 0;
    let started = Instant::now();
    for delta in deltas {
        let t = Instant::now();
        match store.apply(delta).await? {
            ApplyOutcome::Applied { records: n } => records += n,
            ApplyOutcome::Conflict { partitions } => {
                return Err(format!("unexpected conflict {partitions:?}").into())
            }
        }
        latencies.push(t.elapsed());
    }
    Ok(Report {
        deltas: deltas.len(),
        records,
        elapsed: started.elapsed(),
        latencies,
    })
}

/// One task per consumer, each applying its own deltas (its own partitions) in sequence.
async fn concurrent(
    store: &Aggregates,
    per_consumer: Vec<Vec<BatchDelta>>,
) -> Result<Report, Box<dyn Error>> {
    let started = Instant::now();
    let tasks: Vec<_> = per_consumer
        .into_iter()
        .map(|deltas| {
            let store = store.clone();
            tokio::spawn(
                async move { sequential(&store, &deltas).await.map_err(|e| e.to_string()) },
            )
        })
        .collect();
    let mut total = Report {
        deltas: 0,
        records: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let report = task.await??;
        total.deltas += report.deltas;
        total.records += report.records;
        total.latencies.extend(report.latencies);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// The script's server-side time between two `script_stats` readings.
fn print_script_time(before: (u64, u64), after: (u64, u64)) {
    let (calls, usec) = (after.0 - before.0, after.1 - before.1);
    if calls > 0 {
        println!(
            "  Lua script (Redis INFO commandstats, EVALSHA): {calls} calls, {:.0} us/call server-side",
            usec as f64 / calls as f64
        );
    }
}

/// (calls, usec) of EVALSHA from `INFO commandstats`.
async fn script_stats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(u64, u64), Box<dyn Error>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let line = info
        .lines()
        .find(|line| line.starts_with("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |name: &str| -> u64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("calls"), field("usec")))
}

async fn delete_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Result<(), Box<dyn Error>> {
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let _: u64 = redis::cmd("DEL").arg(&keys).query_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
