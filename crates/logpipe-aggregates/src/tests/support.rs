//! Test helpers: building `EnrichedLog`s, a consumer-like `deliver`, an independent model of the
//! expected stats, and fixtures that run one scenario against either backend (each Redis test
//! under its own key prefix, deleted afterwards even when the scenario panics).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use logpipe_model::{
    minute_of, Cells, Cut, EnrichedLog, Fingerprint, KafkaCoordinates, Level, Limits, LogEvent,
};

use crate::{
    AggOptions, Aggregates, ApplyOutcome, BatchDelta, MinuteCount, Stats, StatsQuery, TopError,
    Totals,
};

pub const TOPIC: &str = "application-logs";

/// Minute 0 of every scenario. Fixed, so failures reproduce; the stores do not care how old it is.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

pub fn template_of(fingerprint: u64) -> String {
    format!("request {fingerprint} failed after <num> ms")
}

/// One enriched record at `minute` (after [`base_time`]), built the way the consumer builds them:
/// parsed from JSON. The second within the minute varies with the offset.
pub fn record(
    service: &str,
    level: Level,
    minute: i64,
    fingerprint: u64,
    topic: &str,
    partition: i32,
    offset: i64,
) -> EnrichedLog {
    let timestamp = base_time()
        + chrono::Duration::minutes(minute)
        + chrono::Duration::seconds(offset.rem_euclid(60));
    let json = format!(
        r#"{{"timestamp":"{}","level":"{}","service":"{service}","message":"request {fingerprint} failed after {offset} ms"}}"#,
        timestamp.to_rfc3339(),
        level.as_str()
    );
    let event =
        LogEvent::parse(json.as_bytes(), &Limits::DEFAULT, Utc::now()).expect("valid test event");
    EnrichedLog {
        severity_number: level.severity_number(),
        event,
        coordinates: KafkaCoordinates {
            topic: topic.into(),
            partition,
            offset,
            index: 0,
        },
        kafka_timestamp: None,
        fingerprint: Fingerprint(fingerprint),
        template: template_of(fingerprint),
        ingested_at: None,
        processed_at: Utc::now(),
        request_id: None,
        tags: Arc::new(BTreeMap::new()),
    }
}

pub const SERVICES: [&str; 3] = ["checkout", "payments", "search"];

/// `count` records spread over the services, all levels, `minutes` minutes and 4 fingerprints per
/// service, on `partitions` partitions of [`TOPIC`] with consecutive offsets from 0. Deterministic.
pub fn generate(count: usize, minutes: i64, partitions: i32) -> Vec<EnrichedLog> {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // xorshift64: enough variety for a test, no dependency.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut offsets = vec![0_i64; partitions as usize];
    (0..count)
        .map(|_| {
            let service_index = (next() % SERVICES.len() as u64) as usize;
            // Skewed towards errors so top-errors has something to rank.
            let level = Level::ALL[(next() % 8).min(5) as usize];
            let minute = (next() % minutes as u64) as i64;
            let fingerprint = 1000 * (service_index as u64 + 1) + next() % 4;
            let partition = (next() % partitions as u64) as i32;
            let offset = offsets[partition as usize];
            offsets[partition as usize] += 1;
            record(
                SERVICES[service_index],
                level,
                minute,
                fingerprint,
                TOPIC,
                partition,
                offset,
            )
        })
        .collect()
}

/// Does what the consumer does with a batch: read the watermarks, drop records at or below them,
/// cover each partition up to its highest offset in the batch, add the rest, apply once.
pub async fn deliver(store: &Aggregates, batch: &[EnrichedLog]) -> ApplyOutcome {
    let delta = build_delta(store, batch).await;
    store.apply(&delta).await.expect("apply")
}

pub async fn build_delta(store: &Aggregates, batch: &[EnrichedLog]) -> BatchDelta {
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    for log in batch {
        let through = highest.entry(log.coordinates.partition).or_insert(-1);
        *through = (*through).max(log.coordinates.offset);
    }
    let partitions: Vec<i32> = highest.keys().copied().collect();
    let watermarks: HashMap<i32, i64> = store
        .watermarks(TOPIC, &partitions)
        .await
        .expect("watermarks")
        .into_iter()
        .collect();
    let mut delta = BatchDelta::new();
    for (&partition, &through) in &highest {
        let after = watermarks[&partition];
        delta.cover(TOPIC, partition, after, through.max(after));
    }
    for log in batch {
        if log.coordinates.offset > watermarks[&log.coordinates.partition] {
            delta.add(log);
        }
    }
    delta
}

/// A delta covering (after, through] of one partition with exactly `logs`, no watermark read.
pub fn delta_for(partition: i32, after: i64, through: i64, logs: &[EnrichedLog]) -> BatchDelta {
    let mut delta = BatchDelta::new();
    delta.cover(TOPIC, partition, after, through);
    for log in logs {
        delta.add(log);
    }
    delta
}

/// The stats a query should return, computed straight from the records (not through the code
/// under test). `minute_ttl_minutes` gives the clamp.
pub fn expected(logs: &[EnrichedLog], query: &StatsQuery, minute_ttl_minutes: i64) -> Stats {
    let minute_of = |t: DateTime<Utc>| t.timestamp().div_euclid(60) * 60;
    let until_minutes_end = {
        let floor = minute_of(query.until);
        if floor == query.until.timestamp() && query.until.timestamp_subsec_nanos() == 0 {
            floor
        } else {
            floor + 60
        }
    };
    let span = minute_ttl_minutes.min(1440);
    let first = minute_of(query.since).max(until_minutes_end - span * 60);
    let mut total = 0;
    let mut by_level: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut per_minute: BTreeMap<i64, u64> = BTreeMap::new();
    let mut errors: BTreeMap<(u64, String), u64> = BTreeMap::new();
    let mut all_time = Totals::default();
    for log in logs {
        let level = log.event.level.as_str().to_owned();
        let service = log.event.service.as_str().to_owned();
        all_time.total += 1;
        *all_time.by_level.entry(level.clone()).or_default() += 1;
        let minute = minute_of(log.event.timestamp);
        let in_range = minute >= first && minute < until_minutes_end;
        let wanted = query.service.as_ref().is_none_or(|s| *s == service);
        if !(in_range && wanted) {
            continue;
        }
        total += 1;
        *by_level.entry(level.clone()).or_default() += 1;
        *by_service
            .entry(service.clone())
            .or_default()
            .entry(level)
            .or_default() += 1;
        *per_minute.entry(minute).or_default() += 1;
        if log.event.level >= Level::Error {
            *errors.entry((log.fingerprint.0, service)).or_default() += 1;
        }
    }
    let mut top: Vec<((u64, String), u64)> = errors.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(query.top_n);
    Stats {
        since: DateTime::from_timestamp(first, 0).unwrap(),
        until: query.until,
        total,
        by_level,
        by_service,
        per_minute: per_minute
            .into_iter()
            .map(|(minute, count)| MinuteCount {
                minute: DateTime::from_timestamp(minute, 0).unwrap(),
                count,
            })
            .collect(),
        top_errors: top
            .into_iter()
            .map(|((fingerprint, service), count)| TopError {
                fingerprint: format!("{fingerprint:016x}"),
                count,
                template: template_of(fingerprint),
                service,
            })
            .collect(),
        all_time,
    }
}

/// What the log store would count of `logs`: those at or below their partition's cut (none
/// for a partition without one), with the templates of the errors. Straight from the records.
pub fn cells_of(logs: &[EnrichedLog], cuts: &[Cut]) -> Cells {
    let mut cells = Cells::default();
    for log in logs {
        let c = &log.coordinates;
        let counted = cuts.iter().any(|cut| {
            *cut.topic == *c.topic && cut.partition == c.partition && c.offset <= cut.through
        });
        if !counted {
            continue;
        }
        let (minute, service) = (minute_of(log.event.timestamp), log.event.service.as_str());
        cells.add_count(minute, service, log.event.level, 1);
        if log.event.level >= Level::Error {
            cells.add_error(minute, service, log.fingerprint, 1);
            cells
                .templates
                .insert(log.fingerprint, log.template.clone());
        }
    }
    cells
}

/// The cut of every partition of [`TOPIC`] in `logs`: its highest offset there.
pub fn cuts_of(logs: &[EnrichedLog]) -> Vec<Cut> {
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    for log in logs {
        let through = highest.entry(log.coordinates.partition).or_insert(-1);
        *through = (*through).max(log.coordinates.offset);
    }
    highest
        .into_iter()
        .map(|(partition, through)| Cut {
            topic: TOPIC.to_owned(),
            partition,
            through,
        })
        .collect()
}

/// Loses every key of the store, watermarks and lease included, as a Redis `FLUSHDB` (or a
/// restart without persistence) would: Redis deletes the test prefix's keys; memory clears.
pub async fn lose_everything(f: &Fixture) {
    match &f.store {
        Aggregates::Memory(memory) => memory.flush(),
        Aggregates::Redis(_) => delete_keys(&f.url, &f.options.key_prefix).await,
    }
}

/// A query over minutes [0, `minutes`) after [`base_time`].
pub fn query(minutes: i64, service: Option<&str>, top_n: usize) -> StatsQuery {
    StatsQuery {
        since: base_time(),
        until: base_time() + chrono::Duration::minutes(minutes),
        service: service.map(str::to_owned),
        top_n,
    }
}

/// What a scenario gets: the store, and how to open another one on the same backend and prefix.
pub struct Fixture {
    pub store: Aggregates,
    pub url: String,
    pub options: AggOptions,
}

impl Fixture {
    /// A second store on the same data with other options (Redis: same prefix; memory: same
    /// state).
    pub async fn reopen(&self, options: AggOptions) -> Aggregates {
        let options = AggOptions {
            key_prefix: self.options.key_prefix.clone(),
            ..options
        };
        match &self.store {
            Aggregates::Memory(memory) => Aggregates::Memory(memory.with_options(&options)),
            Aggregates::Redis(_) => Aggregates::open(&self.url, &options).await.expect("reopen"),
        }
    }

    pub fn is_redis(&self) -> bool {
        !self.url.is_empty()
    }
}

pub async fn run_memory<F, Fut>(scenario: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let options = AggOptions::default();
    let store = Aggregates::open("", &options).await.expect("open memory");
    scenario(Fixture {
        store,
        url: String::new(),
        options,
    })
    .await;
}

/// Runs the scenario on its own task so that its keys are deleted even if it panics.
pub async fn run_redis<F, Fut>(scenario: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = redis_url();
    let options = AggOptions {
        key_prefix: unique_prefix(),
        ..AggOptions::default()
    };
    let store = Aggregates::open(&url, &options).await.expect("open Redis");
    let prefix = options.key_prefix.clone();
    let outcome = tokio::spawn(scenario(Fixture {
        store,
        url: url.clone(),
        options,
    }))
    .await;
    delete_keys(&url, &prefix).await;
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("scenario task failed: {err}"),
        }
    }
}

pub const MISSING_REDIS: &str =
    "LOGPIPE_TEST_REDIS_URL is not set: run scripts/test.sh, which starts Redis and sets LOGPIPE_TEST_REDIS_URL";

/// The test Redis. Fails (never skips) when it is not configured.
pub fn redis_url() -> String {
    require_redis_url(std::env::var("LOGPIPE_TEST_REDIS_URL").ok())
}

pub fn require_redis_url(value: Option<String>) -> String {
    match value {
        Some(url) if !url.is_empty() => url,
        _ => panic!("{MISSING_REDIS}"),
    }
}

/// `t:<pid>:<counter>:<nanos>`: unique across the parallel test processes and within one.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t:{}:{}:{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain connection of its own (not the store's), for inspecting and cleaning up.
pub async fn raw_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Deletes every key under `prefix` (SCAN MATCH, then DEL).
pub async fn delete_keys(url: &str, prefix: &str) {
    let mut conn = raw_connection(url).await;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            let _: u64 = ::redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}
