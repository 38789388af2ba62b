//! The live dashboard on the gateway.
//!
//! - `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn as inline
//!   SVG, no CDN, works offline). Its Content-Security-Policy lets it talk to this origin only.
//! - `GET /api/v1/dashboard`: the snapshot the page polls (behind the API key check, like the
//!   query API, since it shows log messages). Counters are totals since each process started;
//!   the page turns successive snapshots into rates.
//!
//! Where the figures come from:
//! - gateway counters: read from this gateway's metric handles ([`GatewayMetrics::figures`]);
//! - consumer figures (stored, DLQ, retries, rebalances, lag per partition, end-to-end latency):
//!   read from the consumer's metric handles when it runs in this process (`logpipe run`,
//!   `demo`), otherwise the typed JSON `/stats` of every consumer in
//!   `gateway.consumer_metrics_urls` (each given by its `/metrics` URL or its base URL; `/stats`
//!   is fetched beside it), summed (split mode). When neither answers, the snapshot says so
//!   (`consumer.available: false` and why) and the page shows "not available" instead of zeros.
//!   Each consumer is listed in `consumer.instances` by its URL (secrets masked) and, when it
//!   did not answer, a short class (`unreachable`, `timeout`, `bad_status`, `bad_response`,
//!   `failed`); the detail goes to the gateway's log, never to the page;
//! - recent errors: the newest ERROR and FATAL rows of the log store, and the top error
//!   fingerprints of the aggregates, when this gateway has the stores (the query API's).
//!
//! Latency percentiles are estimated from the histogram buckets the way PromQL's
//! `histogram_quantile` does ([`Buckets::quantile`]); the buckets are in the snapshot, so the page computes the
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
use super::{GatewayMetrics, QueryBackend};
use crate::config::redact::redact_url;
use crate::config::Config;
use crate::consumer::ConsumerMetrics;
use crate::telemetry::buckets::Buckets;
use crate::telemetry::stats::{stats_url, ConsumerSnapshot};

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
/// Bound on each source (remote stats, store, aggregates): a slow one shows as unavailable
/// instead of stalling the page.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the dashboard reads.
#[derive(Clone)]
pub struct DashboardState {
    gateway: GatewayMetrics,
    consumer: Option<ConsumerMetrics>,
    query: Option<QueryBackend>,
    consumer_urls: Vec<String>,
    http: reqwest::Client,
}

impl DashboardState {
    /// `gateway` is this gateway's metrics; `consumer` the consumer's metrics when one runs in this process; `query` the stores of
    /// the query API, when the gateway has them.
    pub fn new(
        config: &Config,
        gateway: GatewayMetrics,
        consumer: Option<ConsumerMetrics>,
        query: Option<QueryBackend>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(SOURCE_TIMEOUT)
            .connect_timeout(SOURCE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            gateway,
            consumer,
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
    let (consumer, (recent, top)) = tokio::join!(consumer(&state), errors(&state));
    let body = json!({
        "generated_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "generated_at_ms": now.timestamp_millis(),
        "gateway": state.gateway.figures(),
        "consumer": consumer,
        "recent_errors": recent,
        "top_errors": top,
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The consumer section: from this process, or from the configured consumers' `/stats`.
async fn consumer(state: &DashboardState) -> Value {
    if let Some(metrics) = &state.consumer {
        let mut out = consumer_figures(&metrics.snapshot());
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
            let response = state
                .http
                .get(stats_url(url))
                .send()
                .await?
                .error_for_status()?;
            response.json::<ConsumerSnapshot>().await
        }
        .await;
        let shown = redact_url(url);
        let outcome = result.map_err(|e| {
            let class = failure_class(&e);
            // The detail (addresses, library messages) is for the operator's log, not the page.
            tracing::warn!(url = %shown, class, error = %e.without_url(), "dashboard: a consumer's /stats did not answer");
            class
        });
        (shown, outcome)
    });
    let mut merged = ConsumerSnapshot::default();
    let mut instances = Vec::new();
    let mut up = 0;
    for (url, outcome) in futures::future::join_all(fetches).await {
        match outcome {
            Ok(snapshot) => {
                up += 1;
                merged.add(&snapshot);
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

/// A short, stable name for why a consumer's `/stats` did not answer.
fn failure_class(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "unreachable"
    } else if e.is_status() {
        "bad_status"
    } else if e.is_decode() || e.is_body() {
        // Something answered, but not with a consumer's stats: a wrong address, most likely.
        "bad_response"
    } else {
        "failed"
    }
}

fn consumer_figures(s: &ConsumerSnapshot) -> Map<String, Value> {
    let circuits: BTreeMap<&str, &str> = s
        .circuits
        .iter()
        .map(|(k, v)| {
            let state = match v {
                0 => "closed",
                1 => "open",
                _ => "half-open",
            };
            (k.as_str(), state)
        })
        .collect();
    let lags = || s.partition_lag.iter().map(|p| p.lag);
    let mut out = Map::new();
    out.insert("stored".into(), s.stored.into());
    out.insert("duplicates".into(), s.duplicates.into());
    out.insert("retries".into(), s.retries.into());
    out.insert("failed_by_reason".into(), json!(s.failed_by_reason));
    out.insert("dlq_total".into(), s.dead_lettered_total().into());
    out.insert("dlq".into(), json!(s.dead_lettered));
    out.insert("rebalances".into(), json!(s.rebalances));
    out.insert(
        "assigned_partitions".into(),
        s.assigned_partitions.max(0).into(),
    );
    out.insert("lag_total".into(), lags().sum::<i64>().into());
    out.insert("lag_max".into(), lags().max().unwrap_or(0).into());
    out.insert("lag".into(), json!(s.partition_lag));
    out.insert("circuits".into(), json!(circuits));
    out.insert("latency".into(), latency(&s.e2e_latency));
    out
}

/// Count, mean and estimated percentiles (ms) of a histogram, with its cumulative buckets
/// (`le` in seconds; `null` is `+Inf`).
fn latency(h: &Buckets) -> Value {
    let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
    json!({
        "count": h.count,
        "mean_ms": h.mean().map(ms),
        "p50_ms": h.quantile(0.5).map(ms),
        "p95_ms": h.quantile(0.95).map(ms),
        "p99_ms": h.quantile(0.99).map(ms),
        "buckets": h.buckets,
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
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard: the log store query failed");
            json!({"available": false, "message": "log store: query failed (see the gateway log)"})
        }
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
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard: the aggregates query failed");
            json!({"available": false, "message": "aggregates: query failed (see the gateway log)"})
        }
        Err(_) => json!({"available": false, "message": "aggregates: no answer within 2 s"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::buckets::Bucket;
    use crate::telemetry::stats::PartitionLag;

    fn snapshot(
        stored: u64,
        poison: u64,
        lag: (i32, i64),
        circuit: i64,
        e2e: [u64; 2],
        sum: f64,
    ) -> ConsumerSnapshot {
        let count = e2e[1];
        ConsumerSnapshot {
            stored,
            dead_lettered: [("poison".into(), poison), ("exhausted".into(), 0)].into(),
            rebalances: [("assign".into(), 1)].into(),
            partition_lag: vec![PartitionLag {
                topic: "t".into(),
                partition: lag.0,
                lag: lag.1,
            }],
            circuits: [("store".into(), circuit)].into(),
            e2e_latency: Buckets {
                buckets: vec![
                    Bucket {
                        le: Some(0.01),
                        count: e2e[0],
                    },
                    Bucket {
                        le: Some(0.1),
                        count: e2e[1],
                    },
                    Bucket { le: None, count },
                ],
                count,
                sum,
            },
            ..Default::default()
        }
    }

    #[test]
    fn consumer_figures_sum_processes_and_estimate_percentiles() {
        let mut m = snapshot(10, 1, (0, 5), 0, [5, 10], 0.3);
        let mut other = snapshot(5, 2, (1, 7), 1, [0, 10], 1.0);
        other.rebalances.insert("assign".into(), 2);
        m.add(&other);
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
