//! The live dashboard on the gateway.
//!
//! - `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn as inline
//!   SVG, no CDN, works offline). Its Content-Security-Policy lets it talk to this origin only.
//! - `GET /api/v1/dashboard`: the snapshot the page polls (behind the API key check, like the
//!   query API, since it shows log messages). Counters are totals since each process started;
//!   the page turns successive snapshots into rates.
//!
//! Where the figures come from:
//! - gateway counters: this process's metrics registry;
//! - consumer figures (stored, DLQ, retries, rebalances, lag per partition, end-to-end latency):
//!   the same registry when the consumer runs in this process (`logpipe run`, `demo`), otherwise
//!   the `/metrics` of every URL in `gateway.consumer_metrics_urls`, summed (split mode). When
//!   neither answers, the snapshot says so (`consumer.available: false` and why) and the page
//!   shows "not available" instead of zeros;
//! - recent errors: the newest ERROR and FATAL rows of the log store, and the top error
//!   fingerprints of the aggregates, when this gateway has the stores (the query API's).
//!
//! Latency percentiles are estimated from the histogram buckets the way PromQL's
//! `histogram_quantile` does; the buckets are in the snapshot, so the page computes the
//! percentiles of recent records from the difference of two snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use logpipe_aggregates::StatsQuery;
use logpipe_model::Level;
use logpipe_store::{LogQuery, StoredLog};
use serde_json::{json, Map, Value};

use super::auth::{self, ApiKeys};
use super::QueryBackend;
use crate::config::redact::redact_url;
use crate::config::Config;
use crate::telemetry::metrics::{render, SharedRegistry};
use crate::telemetry::prom_text::{quantile, Samples};

/// The page.
pub const PAGE_PATH: &str = "/dashboard";
/// The snapshot the page polls.
pub const DATA_PATH: &str = "/api/v1/dashboard";

const PAGE: &str = include_str!("dashboard.html");
/// Rows of the recent-errors table.
const RECENT_ERRORS: usize = 10;
/// Rows of the top-fingerprints table, and the window they are counted over.
const TOP_ERRORS: usize = 5;
const TOP_WINDOW_MINUTES: i64 = 15;
/// Longest characters of a message shown.
const MESSAGE_CHARS: usize = 300;
/// Bound on each source (remote metrics, store, aggregates): a slow one shows as unavailable
/// instead of stalling the page.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumer metrics the dashboard reads (names as exposed, suffixes included).
const STORED: &str = "log_consumer_success_total";
const LATENCY: &str = "log_consumer_end_to_end_latency_seconds";

/// What the dashboard reads.
#[derive(Clone)]
pub struct DashboardState {
    registry: SharedRegistry,
    query: Option<QueryBackend>,
    consumer_urls: Vec<String>,
    http: reqwest::Client,
}

impl DashboardState {
    /// `registry` is the one this process serves at `/metrics` (consumer metrics included in
    /// `logpipe run`); `query` the stores of the query API, when the gateway has them.
    pub fn new(config: &Config, registry: SharedRegistry, query: Option<QueryBackend>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SOURCE_TIMEOUT)
            .connect_timeout(SOURCE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            registry,
            query,
            consumer_urls: config.gateway.consumer_metrics_urls.clone(),
            http,
        }
    }
}

/// `/dashboard` (open: the page holds no data) and `/api/v1/dashboard` (behind `keys`).
pub fn router(state: DashboardState, keys: ApiKeys) -> Router {
    let data = Router::new()
        .route(DATA_PATH, get(snapshot))
        .route_layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_api_key,
        ))
        .with_state(Arc::new(state));
    Router::new().route(PAGE_PATH, get(page)).merge(data)
}

async fn page() -> Response {
    // A fresh nonce per response: only the page's own script runs, and it may fetch only from
    // this origin.
    let nonce = format!("{:032x}", rand::random::<u128>());
    let html = PAGE.replacen("<script>", &format!("<script nonce=\"{nonce}\">"), 1);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        html,
    )
        .into_response()
}

async fn snapshot(State(state): State<Arc<DashboardState>>) -> Response {
    let now = Utc::now();
    let local = Samples::parse(&render(&state.registry));
    let (consumer, (recent, top)) = tokio::join!(consumer(&state, &local), errors(&state));
    let body = json!({
        "generated_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "generated_at_ms": now.timestamp_millis(),
        "gateway": gateway(&local),
        "consumer": consumer,
        "recent_errors": recent,
        "top_errors": top,
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn count(v: f64) -> u64 {
    v.max(0.0).round() as u64
}

fn counts(map: BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    map.into_iter().map(|(k, v)| (k, count(v))).collect()
}

fn gateway(m: &Samples) -> Value {
    let rejected = counts(m.by_label("gateway_events_rejected_total", "reason"));
    json!({
        "accepted": count(m.sum("gateway_events_accepted_total")),
        "rejected": rejected.values().sum::<u64>(),
        "rejected_by_reason": rejected,
    })
}

/// The consumer section: from this process, or from the configured consumers' `/metrics`.
async fn consumer(state: &DashboardState, local: &Samples) -> Value {
    if local.has(STORED) {
        let mut out = consumer_figures(local);
        out.insert("available".into(), true.into());
        out.insert("source".into(), "in-process".into());
        return Value::Object(out);
    }
    if state.consumer_urls.is_empty() {
        return json!({
            "available": false,
            "source": "none",
            "message": "no consumer runs in this process and gateway.consumer_metrics_urls is empty",
        });
    }
    let fetches = state.consumer_urls.iter().map(|url| async move {
        let result = async {
            let response = state.http.get(url).send().await?.error_for_status()?;
            response.text().await
        }
        .await;
        let outcome = match result {
            Ok(text) => {
                let samples = Samples::parse(&text);
                if samples.has(STORED) {
                    Ok(samples)
                } else {
                    Err(
                        "answered without consumer metrics (is this a consumer's /metrics?)"
                            .to_string(),
                    )
                }
            }
            Err(e) => Err(e.without_url().to_string()),
        };
        (redact_url(url), outcome)
    });
    let mut merged = Samples::default();
    let mut instances = Vec::new();
    let mut up = 0;
    for (url, outcome) in futures::future::join_all(fetches).await {
        match outcome {
            Ok(samples) => {
                up += 1;
                merged.extend(samples);
                instances.push(json!({"url": url, "up": true}));
            }
            Err(error) => instances.push(json!({"url": url, "up": false, "error": error})),
        }
    }
    if up == 0 {
        return json!({
            "available": false,
            "source": "remote",
            "instances": instances,
            "message": "no consumer answered at gateway.consumer_metrics_urls",
        });
    }
    let mut out = consumer_figures(&merged);
    out.insert("available".into(), true.into());
    out.insert("source".into(), "remote".into());
    out.insert("instances".into(), instances.into());
    Value::Object(out)
}

fn consumer_figures(m: &Samples) -> Map<String, Value> {
    let dlq = counts(m.by_label("log_consumer_dlq_records_total", "class"));
    let mut lag: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for s in m.named("log_consumer_partition_lag") {
        let (Some(topic), Some(Ok(partition))) = (
            s.label("topic"),
            s.label("partition").map(str::parse::<i32>),
        ) else {
            continue;
        };
        // Two processes may both report a partition for a moment around a rebalance.
        let entry = lag.entry((topic.to_string(), partition)).or_insert(0);
        *entry = (*entry).max(s.value as i64);
    }
    let mut circuits = BTreeMap::new();
    for s in m.named("log_consumer_circuit_state") {
        if let Some(dependency) = s.label("dependency") {
            let worst = circuits.entry(dependency.to_string()).or_insert(0i64);
            *worst = (*worst).max(s.value as i64);
        }
    }
    let circuits: BTreeMap<String, &str> = circuits
        .into_iter()
        .map(|(k, v)| {
            let state = match v {
                0 => "closed",
                1 => "open",
                _ => "half-open",
            };
            (k, state)
        })
        .collect();
    let mut out = Map::new();
    out.insert("stored".into(), count(m.sum(STORED)).into());
    out.insert(
        "duplicates".into(),
        count(m.sum("log_consumer_duplicates_total")).into(),
    );
    out.insert(
        "retries".into(),
        count(m.sum("log_consumer_retries_total")).into(),
    );
    out.insert(
        "failed_by_reason".into(),
        json!(counts(m.by_label("log_consumer_failed_total", "reason"))),
    );
    out.insert("dlq_total".into(), dlq.values().sum::<u64>().into());
    out.insert("dlq".into(), json!(dlq));
    out.insert(
        "rebalances".into(),
        json!(counts(
            m.by_label("log_consumer_rebalance_events_total", "kind")
        )),
    );
    out.insert(
        "assigned_partitions".into(),
        count(m.sum("log_consumer_assigned_partitions")).into(),
    );
    out.insert("lag_total".into(), lag.values().sum::<i64>().into());
    out.insert(
        "lag_max".into(),
        lag.values().copied().max().unwrap_or(0).into(),
    );
    out.insert(
        "lag".into(),
        lag.into_iter()
            .map(|((topic, partition), lag)| {
                json!({"topic": topic, "partition": partition, "lag": lag})
            })
            .collect::<Vec<_>>()
            .into(),
    );
    out.insert("circuits".into(), json!(circuits));
    out.insert("latency".into(), latency(m, LATENCY));
    out
}

/// Count, mean and estimated percentiles (ms) of a histogram, with its cumulative buckets
/// (`le` in seconds; `null` is `+Inf`).
fn latency(m: &Samples, name: &str) -> Value {
    let buckets = m.buckets(name);
    let count_all = m.sum(&format!("{name}_count"));
    let sum = m.sum(&format!("{name}_sum"));
    let ms = |q: f64| quantile(q, &buckets).map(|s| (s * 1e6).round() / 1e3);
    json!({
        "count": count(count_all),
        "mean_ms": (count_all > 0.0).then(|| (sum / count_all * 1e6).round() / 1e3),
        "p50_ms": ms(0.5),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "buckets": buckets
            .iter()
            .map(|(le, n)| json!({"le": le.is_finite().then_some(*le), "count": count(*n)}))
            .collect::<Vec<_>>(),
    })
}

/// The newest ERROR and FATAL logs, and the most frequent error fingerprints.
async fn errors(state: &DashboardState) -> (Value, Value) {
    let Some(backend) = &state.query else {
        let off = json!({
            "available": false,
            "message": "this gateway has no shared stores: set postgres.url and redis.url, or use `logpipe run`",
        });
        return (off.clone(), off);
    };
    tokio::join!(recent_errors(backend), top_errors(backend))
}

async fn recent_errors(backend: &QueryBackend) -> Value {
    let query = |level| LogQuery {
        level: Some(level),
        limit: RECENT_ERRORS as u32,
        ..LogQuery::default()
    };
    let (error, fatal) = (query(Level::Error), query(Level::Fatal));
    let both = async { tokio::try_join!(backend.store.query(&error), backend.store.query(&fatal)) };
    match tokio::time::timeout(SOURCE_TIMEOUT, both).await {
        Ok(Ok((error, fatal))) => {
            let mut rows: Vec<StoredLog> = error.logs.into_iter().chain(fatal.logs).collect();
            rows.sort_by_key(|log| std::cmp::Reverse(log.timestamp));
            rows.truncate(RECENT_ERRORS);
            let rows: Vec<Value> = rows.iter().map(error_row).collect();
            json!({"available": true, "rows": rows})
        }
        Ok(Err(e)) => json!({"available": false, "message": format!("log store: {e}")}),
        Err(_) => json!({"available": false, "message": "log store: no answer within 2 s"}),
    }
}

fn error_row(log: &StoredLog) -> Value {
    let mut message: String = log.message.chars().take(MESSAGE_CHARS).collect();
    if message.len() < log.message.len() {
        message.push('…');
    }
    json!({
        "timestamp": log.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        "level": log.level,
        "service": log.service,
        "message": message,
        "fingerprint": log.fingerprint,
        "partition": log.kafka.partition,
        "offset": log.kafka.offset,
    })
}

async fn top_errors(backend: &QueryBackend) -> Value {
    let now = Utc::now();
    let query = StatsQuery {
        since: now - chrono::Duration::minutes(TOP_WINDOW_MINUTES),
        until: now + chrono::Duration::minutes(1),
        service: None,
        top_n: TOP_ERRORS,
    };
    match tokio::time::timeout(SOURCE_TIMEOUT, backend.aggregates.stats(&query)).await {
        Ok(Ok(stats)) => json!({
            "available": true,
            "window_minutes": TOP_WINDOW_MINUTES,
            "rows": stats.top_errors,
        }),
        Ok(Err(e)) => json!({"available": false, "message": format!("aggregates: {e}")}),
        Err(_) => json!({"available": false, "message": "aggregates: no answer within 2 s"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_figures_sum_processes_and_estimate_percentiles() {
        let a = "\
log_consumer_success_total 10
log_consumer_dlq_records_total{class=\"poison\"} 1
log_consumer_dlq_records_total{class=\"exhausted\"} 0
log_consumer_rebalance_events_total{kind=\"assign\"} 1
log_consumer_partition_lag{topic=\"t\",partition=\"0\"} 5
log_consumer_circuit_state{dependency=\"store\"} 0
log_consumer_end_to_end_latency_seconds_bucket{le=\"0.01\"} 5
log_consumer_end_to_end_latency_seconds_bucket{le=\"0.1\"} 10
log_consumer_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 10
log_consumer_end_to_end_latency_seconds_count 10
log_consumer_end_to_end_latency_seconds_sum 0.3
";
        let b = "\
log_consumer_success_total 5
log_consumer_dlq_records_total{class=\"poison\"} 2
log_consumer_rebalance_events_total{kind=\"assign\"} 2
log_consumer_partition_lag{topic=\"t\",partition=\"1\"} 7
log_consumer_circuit_state{dependency=\"store\"} 1
log_consumer_end_to_end_latency_seconds_bucket{le=\"0.01\"} 0
log_consumer_end_to_end_latency_seconds_bucket{le=\"0.1\"} 10
log_consumer_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 10
log_consumer_end_to_end_latency_seconds_count 10
log_consumer_end_to_end_latency_seconds_sum 1.0
";
        let mut m = Samples::parse(a);
        m.extend(Samples::parse(b));
        let f = Value::Object(consumer_figures(&m));
        assert_eq!(f["stored"], 15);
        assert_eq!(f["dlq_total"], 3);
        assert_eq!(f["dlq"]["poison"], 3);
        assert_eq!(f["rebalances"]["assign"], 3);
        assert_eq!(f["lag_total"], 12);
        assert_eq!(f["lag_max"], 7);
        assert_eq!(f["lag"][1], json!({"topic": "t", "partition": 1, "lag": 7}));
        assert_eq!(f["circuits"]["store"], "open");
        let l = &f["latency"];
        assert_eq!(l["count"], 20);
        assert_eq!(l["mean_ms"], 65.0);
        // 5 of 20 at or below 10 ms, all 20 at or below 100 ms: the median is in (10, 100].
        assert_eq!(l["p50_ms"], 40.0);
        assert_eq!(l["buckets"][2], json!({"le": null, "count": 20}));
    }
}
