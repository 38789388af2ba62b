//! The consumer end to end, shared by the embedded and the external tests: events posted to the
//! gateway become exactly one row each and exact aggregates; a second consumer group reprocessing
//! the topic from the earliest offset changes nothing; one key's records are processed in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use logpipe::app::{App, Stores};
use logpipe::config::Config;
use logpipe::consumer::{ConsumerMetrics, ConsumerService};
use logpipe::telemetry::metrics::new_registry;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::support::{eventually, unique};

const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// `n` events over `services` services; attribute `seq` is unique, `key_seq` counts per service.
pub fn generate(n: usize, services: usize, run: &str) -> Vec<Value> {
    let mut per_service = vec![0u64; services];
    (0..n)
        .map(|i| {
            let s = i % services;
            per_service[s] += 1;
            json!({
                "service": format!("{run}-svc-{s}"),
                "level": LEVELS[(i * 7) % LEVELS.len()],
                "message": format!("request {i} failed after {} ms", i % 97),
                "attributes": {"seq": i, "key_seq": per_service[s]},
            })
        })
        .collect()
}

/// Posts in batches; returns how many were accepted.
pub async fn post_all(base: &str, events: &[Value], batch: usize) -> u64 {
    let client = reqwest::Client::new();
    let mut accepted = 0;
    for chunk in events.chunks(batch) {
        let response = client
            .post(format!("{base}/api/v1/logs/batch"))
            .json(&chunk)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "ingest failed");
        accepted += response.json::<Value>().await.unwrap()["accepted"]
            .as_u64()
            .unwrap();
    }
    accepted
}

/// Every stored log through the query API, following cursors.
pub async fn all_logs(base: &str, service_prefix: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut cursor: Option<String> = None;
    let mut logs = Vec::new();
    loop {
        let mut url = format!("{base}/api/v1/logs?limit=1000&since=2000-01-01T00:00:00Z");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let rows = page["logs"]
            .as_array()
            .unwrap_or_else(|| panic!("no logs in {page}"));
        logs.extend(
            rows.iter()
                .filter(|r| r["service"].as_str().unwrap().starts_with(service_prefix))
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(c) if !rows.is_empty() => cursor = Some(c.to_string()),
            _ => return logs,
        }
    }
}

/// Stats over the last hour from the API.
pub async fn stats(base: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/stats?since=1h&top=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Checks the rows and aggregates against the events: exactly once each, exact counts, and
/// per-key order (offset order = posting order, processed_at never goes back).
pub async fn assert_exact(base: &str, run: &str, events: &[Value]) {
    let logs = all_logs(base, run).await;
    let seqs: Vec<u64> = logs
        .iter()
        .map(|l| l["attributes"]["seq"].as_u64().unwrap())
        .collect();
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "no duplicates");
    assert_eq!(seqs.len(), events.len(), "no loss");

    let mut by_level: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        *by_level
            .entry(e["level"].as_str().unwrap().to_string())
            .or_default() += 1;
        *by_service
            .entry(e["service"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let s = stats(base).await;
    for (level, n) in &by_level {
        assert_eq!(
            s["by_level"][level].as_u64().unwrap_or(0),
            *n,
            "level {level}: {s}"
        );
    }
    for (service, n) in &by_service {
        let counted: u64 = s["by_service"][service]
            .as_object()
            .unwrap_or_else(|| panic!("service {service} missing in {s}"))
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(counted, *n, "service {service}");
    }
    assert!(
        !s["top_errors"].as_array().unwrap().is_empty(),
        "top errors listed: {s}"
    );

    let mut by_key: HashMap<&str, Vec<&Value>> = HashMap::new();
    for l in &logs {
        by_key
            .entry(l["service"].as_str().unwrap())
            .or_default()
            .push(l);
    }
    for (service, mut rows) in by_key {
        rows.sort_by_key(|r| {
            (
                r["kafka"]["partition"].as_i64(),
                r["kafka"]["offset"].as_i64(),
            )
        });
        let partitions: HashSet<i64> = rows
            .iter()
            .map(|r| r["kafka"]["partition"].as_i64().unwrap())
            .collect();
        assert_eq!(partitions.len(), 1, "{service}: one key, one partition");
        let key_seqs: Vec<u64> = rows
            .iter()
            .map(|r| r["attributes"]["key_seq"].as_u64().unwrap())
            .collect();
        assert!(
            key_seqs.windows(2).all(|w| w[0] < w[1]),
            "{service}: stored in order"
        );
        let processed: Vec<&str> = rows
            .iter()
            .map(|r| r["processed_at"].as_str().unwrap())
            .collect();
        assert!(
            processed.windows(2).all(|w| w[0] <= w[1]),
            "{service}: processed in order: {processed:?}"
        );
    }
}

/// The whole flow against `config` (embedded or external).
pub async fn exactly_once_flow(config: Config) {
    let run = unique("r");
    let app = crate::support::start(config.clone(), logpipe::app::Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(3000, 12, &run);
    let accepted = post_all(&base, &events, 250).await;
    assert_eq!(accepted, 3000);
    let stores = app.stores.clone().unwrap();
    wait_for_rows(&run, &base, 3000).await;
    assert_exact(&base, &run, &events).await;

    // A second group from the earliest offset: every record is read and processed again.
    reprocess_from_earliest(&config, &app, &stores, 3000).await;
    assert_exact(&base, &run, &events).await;
    app.shutdown().await.unwrap();
}

pub async fn wait_for_rows(run: &str, base: &str, n: usize) {
    eventually(
        Duration::from_secs(90),
        &format!("{n} rows stored"),
        || async { all_logs(base, run).await.len() >= n },
    )
    .await;
}

async fn reprocess_from_earliest(config: &Config, app: &App, stores: &Stores, n: u64) {
    let mut replay = config.clone();
    replay.consumer.group_id = unique("it-replay");
    let mut registry = new_registry();
    let metrics = ConsumerMetrics::register(&mut registry);
    let stop = CancellationToken::new();
    let service = ConsumerService::start(
        &replay,
        app.bootstrap.as_deref().unwrap(),
        Arc::clone(&stores.store),
        stores.aggregates.clone(),
        Vec::new(),
        metrics.clone(),
        stop.clone(),
    )
    .unwrap();
    eventually(
        Duration::from_secs(90),
        "the replay group reprocessed everything",
        || {
            let m = metrics.clone();
            async move { m.success.get() >= n }
        },
    )
    .await;
    assert_eq!(
        metrics.duplicates.get(),
        n,
        "every replayed record was recognised as stored"
    );
    assert_eq!(service.stats.stored(), 0, "the replay inserted nothing");
    stop.cancel();
    service.wait().await;
}
