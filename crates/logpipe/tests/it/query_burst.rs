//! A burst of worst-case searches does not hold back ingest: on Apache Kafka, PostgreSQL and
//! Redis (started by `scripts/test.sh`), and on the embedded stack (`logpipe run`: the embedded
//! broker and SQLite). The store is seeded with enough rows that a `q` search is a real scan;
//! then steady ingest runs through the gateway twice, first alone (baseline), then beside clients
//! looping the widest non-matching `q` search the limits allow. Every event of both phases must
//! be stored, the group's committed offsets must keep moving, the consumer's store writes must
//! see no outage and no pause, and every search must answer 200 or 503 `store_unavailable`
//! within the request timeout. The figures are printed, not compared: the machine running the
//! test is shared.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use logpipe::app::Roles;
use logpipe::config::Config;
use logpipe::lag::LagReader;
use logpipe_model::{enrich, EnrichedLog, LogEvent, RecordMeta};
use logpipe_store::LogStore;
use serde_json::{json, Value};

use crate::support::{eventually, external_config, metrics_text, start, test_config, unique};

/// Rows written straight into the store before the phases: enough that a search scans a while.
const SEED_ROWS: usize = 150_000;
/// Ingest: this many events every [`TICK`] (200 events/s).
const EVENTS_PER_TICK: usize = 20;
const TICK: Duration = Duration::from_millis(100);
/// Length of each phase's ingest.
const PHASE: Duration = Duration::from_secs(15);
/// Concurrent search clients in the burst phase.
const SEARCHERS: usize = 8;
/// The longest the committed offsets may stand still while events flow.
const MAX_COMMIT_GAP: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_a_burst_of_worst_case_searches_does_not_hold_back_ingest() {
    burst_beside_ingest(external_config().await).await;
}

/// The same on the embedded stack, whose SQLite searches run on a connection of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_a_burst_of_worst_case_searches_does_not_hold_back_ingest() {
    burst_beside_ingest(test_config("")).await;
}

async fn burst_beside_ingest(config: Config) {
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let stores = app.stores.as_ref().unwrap();
    let (store, kind) = (stores.store.clone(), stores.store.kind());
    // The lag reader needs the brokers: the embedded broker's address is known only now.
    let mut config = config;
    config.kafka.brokers = app.bootstrap.clone().unwrap();

    let started = Instant::now();
    seed(&store, SEED_ROWS).await;
    println!(
        "{kind}: seeded {SEED_ROWS} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    eventually(
        Duration::from_secs(60),
        "the consumer owns partitions",
        || {
            let owned = app.assigned_partitions();
            async move { owned > 0 }
        },
    )
    .await;

    let baseline = phase(&config, &base, &store, 0).await;
    let burst = phase(&config, &base, &store, SEARCHERS).await;
    for (name, figures) in [("baseline", &baseline), ("burst", &burst)] {
        println!("{kind} {name}: {figures}");
    }
    for (name, figures) in [("baseline", &baseline), ("burst", &burst)] {
        assert_eq!(
            figures.outages, 0.0,
            "{name}: store outages in the consumer"
        );
        assert_eq!(figures.pauses, 0.0, "{name}: partition pauses");
        assert!(figures.commits_advanced > 0, "{name}: no offset committed");
        assert!(
            figures.longest_commit_gap <= MAX_COMMIT_GAP,
            "{name}: the committed offsets stood still for {:?}",
            figures.longest_commit_gap
        );
    }
    assert!(burst.searches > 0, "the burst ran searches");
    app.shutdown().await.unwrap();
}

/// Writes `rows` events of a service of their own over the last six days, in batches, through
/// the store's own write path.
async fn seed(store: &LogStore, rows: usize) {
    let now = Utc::now();
    let topic: Arc<str> = Arc::from(unique("burst-seed").as_str());
    let tags = Arc::new(BTreeMap::new());
    let spread = chrono::Duration::days(6).num_seconds() as usize;
    let log = |i: usize| {
        let ago = chrono::Duration::seconds((i * spread / rows) as i64);
        let json = json!({
            "timestamp": (now - ago).to_rfc3339(),
            "service": "burst-seed",
            "level": "INFO",
            "message": format!("request {i} served in {} ms by worker {}", i % 97, i % 13),
        });
        let event = LogEvent::parse_str(&json.to_string(), &Default::default(), now).unwrap();
        let meta = RecordMeta {
            topic: &topic,
            partition: 0,
            offset: i as i64,
            index: 0,
            kafka_timestamp_ms: None,
            ingest_header: None,
            request_id_header: None,
        };
        enrich(event, &meta, &tags, now)
    };
    for start in (0..rows).step_by(10_000) {
        let batch: Vec<EnrichedLog> = (start..rows.min(start + 10_000)).map(log).collect();
        let report = store.write(&batch).await.unwrap();
        assert_eq!(report.inserted, batch.len() as u64);
    }
}

/// What one phase measured.
#[derive(Debug)]
struct Figures {
    accepted: u64,
    /// Accepted events per second of the time from the first post to the last row stored.
    stored_per_second: f64,
    searches: usize,
    search_p50: Duration,
    search_p99: Duration,
    /// Searches answered 503 `store_unavailable`.
    unavailable: usize,
    /// Longest time the committed offsets stood still (measured once a second).
    longest_commit_gap: Duration,
    /// How far the committed offsets moved (summed over partitions).
    commits_advanced: i64,
    /// The consumer's store outages and partition pauses during the phase.
    outages: f64,
    pauses: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events accepted, {:.0} events/s stored; {} searches (p50 {:.3} s, p99 {:.3} s, \
             {} answered 503); committed offsets +{}, longest commit gap {:.1} s; store \
             outages {}, partition pauses {}",
            self.accepted,
            self.stored_per_second,
            self.searches,
            self.search_p50.as_secs_f64(),
            self.search_p99.as_secs_f64(),
            self.unavailable,
            self.commits_advanced,
            self.longest_commit_gap.as_secs_f64(),
            self.outages,
            self.pauses
        )
    }
}

/// Runs steady ingest for [`PHASE`] beside `searchers` search clients; waits until every accepted
/// event is stored.
async fn phase(config: &Config, base: &str, store: &LogStore, searchers: usize) -> Figures {
    let rows_before = store.count().await.unwrap();
    let (outages_before, pauses_before) = consumer_troubles(base).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let searching: Vec<_> = (0..searchers)
        .map(|_| tokio::spawn(search_loop(base.to_owned(), config.clone(), stop.clone())))
        .collect();
    let sampler = tokio::spawn(commit_sampler(config.clone(), stop.clone()));
    let accepted = ingest(base).await;
    stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    let mut unavailable = 0;
    for task in searching {
        let (times, refused) = task.await.unwrap();
        latencies.extend(times);
        unavailable += refused;
    }
    let (longest_commit_gap, commits_advanced) = sampler.await.unwrap();
    eventually(
        Duration::from_secs(30),
        "every accepted event is stored",
        || async { store.count().await.unwrap() >= rows_before + accepted },
    )
    .await;
    let stored_in = started.elapsed();
    assert_eq!(
        store.count().await.unwrap(),
        rows_before + accepted,
        "every accepted event stored once"
    );
    let (outages_after, pauses_after) = consumer_troubles(base).await;
    latencies.sort();
    let quantile = |q: f64| {
        let at = (latencies.len() as f64 * q) as usize;
        latencies
            .get(at.min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        accepted,
        stored_per_second: accepted as f64 / stored_in.as_secs_f64(),
        searches: latencies.len(),
        search_p50: quantile(0.50),
        search_p99: quantile(0.99),
        unavailable,
        longest_commit_gap,
        commits_advanced,
        outages: outages_after - outages_before,
        pauses: pauses_after - pauses_before,
    }
}

/// Posts [`EVENTS_PER_TICK`] events every [`TICK`] for [`PHASE`]; returns how many were accepted.
async fn ingest(base: &str) -> u64 {
    let client = reqwest::Client::new();
    let service = unique("burst");
    let mut tick = tokio::time::interval(TICK);
    let end = Instant::now() + PHASE;
    let mut accepted = 0;
    while Instant::now() < end {
        tick.tick().await;
        let events: Vec<Value> = (0..EVENTS_PER_TICK)
            .map(|i| json!({"service": service, "level": "INFO", "message": format!("event {accepted} {i}")}))
            .collect();
        let response = client
            .post(format!("{base}/api/v1/logs/batch"))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "ingest refused");
        accepted += response.json::<Value>().await.unwrap()["accepted"]
            .as_u64()
            .unwrap();
    }
    accepted
}

/// Loops the widest `q` search the limits allow, for a string no row holds, until `stop`.
/// Returns the latencies and how many answered 503 `store_unavailable`.
async fn search_loop(
    base: String,
    config: Config,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    static N: AtomicU64 = AtomicU64::new(0);
    // The client gives up a little after the gateway's own bound: a hang fails the test.
    let limit = config.gateway.request_timeout + Duration::from_secs(2);
    let client = reqwest::Client::builder().timeout(limit).build().unwrap();
    // The widest range allowed, an hour short of the maximum so "now" moving on cannot exceed it.
    let since = format!("{}h", config.gateway.query_max_range.as_secs() / 3600 - 1);
    let (mut latencies, mut unavailable) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let needle = format!("nomatch{:x}", n.wrapping_mul(2_654_435_761));
        let started = Instant::now();
        let response = client
            .get(format!(
                "{base}/api/v1/logs?q={needle}&since={since}&limit=100"
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("a search did not answer within {limit:?}: {e}"));
        latencies.push(started.elapsed());
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        match status.as_u16() {
            200 => assert_eq!(body["logs"], json!([]), "a search for {needle} found rows"),
            503 => {
                assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
                unavailable += 1;
            }
            other => panic!("a search answered {other}: {body}"),
        }
    }
    (latencies, unavailable)
}

/// Samples the group's committed offsets every second until `stop`; returns the longest time
/// their sum stood still (to the second: the time between the samples that saw it move) and how
/// far it moved.
async fn commit_sampler(config: Config, stop: Arc<AtomicBool>) -> (Duration, i64) {
    let topics = std::slice::from_ref(&config.kafka.topic);
    let reader = LagReader::new(&config, &config.consumer.group_id, topics).unwrap();
    let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
    let mut moved_at = Instant::now();
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(snapshot) = reader.snapshot().await else {
            continue;
        };
        let committed: i64 = snapshot
            .offsets
            .values()
            .filter_map(|offsets| offsets.committed)
            .sum();
        first.get_or_insert(committed);
        longest = longest.max(moved_at.elapsed());
        if last != Some(committed) {
            last = Some(committed);
            moved_at = Instant::now();
        }
    }
    let advanced = last.unwrap_or_default() - first.unwrap_or_default();
    (longest, advanced)
}

/// The consumer's store outages and partition pauses (all reasons) so far, from `/metrics`.
async fn consumer_troubles(base: &str) -> (f64, f64) {
    let text = metrics_text(base).await;
    assert!(
        text.contains("log_consumer_success_total"),
        "the gateway's /metrics holds the consumer's series"
    );
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    (
        sum("log_consumer_dependency_outages_total{dependency=\"store\"}"),
        sum("log_consumer_partition_pauses_total"),
    )
}
