//! The query API on the gateway: `GET /api/v1/logs` (stored logs, newest first, filters, cursor
//! pagination) and `GET /api/v1/stats` (aggregates over a time range). Both read the same stores
//! the consumer writes: PostgreSQL and Redis, or the embedded ones inside `logpipe run`.
//!
//! Times (`since`, `until`) take RFC 3339 (`2026-11-25T12:00:00Z`) or a duration meaning "that
//! long ago" (`15m`, `2h`); [`range`] parses them without overflow and bounds a `q` search in
//! time and length.

mod range;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use logpipe_aggregates::{Aggregates, StatsQuery};
use logpipe_model::Level;
use logpipe_store::{LogQuery, LogStore, StoreError};
use serde::Deserialize;

use super::GatewayState;
use crate::config::GatewayConfig;
use crate::http::{ApiError, RequestId};
use range::parse_time;
pub use range::QueryLimits;

/// The stores the query API reads.
#[derive(Clone)]
pub struct QueryBackend {
    pub store: Arc<LogStore>,
    pub aggregates: Aggregates,
    pub limits: QueryLimits,
}

impl QueryBackend {
    /// The stores, with the `q` bounds of `gateway`.
    pub fn new(store: Arc<LogStore>, aggregates: Aggregates, gateway: &GatewayConfig) -> Self {
        Self {
            store,
            aggregates,
            limits: QueryLimits::from_config(gateway),
        }
    }
}

/// Most rows one page returns.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    service: Option<String>,
    level: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    service: Option<String>,
    since: Option<String>,
    until: Option<String>,
    top: Option<usize>,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn backend(state: &GatewayState) -> Result<&QueryBackend, ApiError> {
    state.query.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "query_unavailable",
            "this gateway has no shared stores: set postgres.url and redis.url, or use `logpipe run`",
        )
    })
}

fn store_error(e: StoreError, retry_after: Duration) -> ApiError {
    match e {
        StoreError::InvalidQuery(m) => bad_request(m),
        e if e.is_outage() => {
            // The cause (addresses, server text) stays in the gateway's log.
            tracing::warn!(error = %e, "log query: the store is unavailable or cancelled the query");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the log store did not answer: it is unreachable, or the search ran longer than `postgres.query_statement_timeout` (narrow it with since/until, service or level); retry later",
            )
            .retry_after(retry_after)
        }
        e => {
            tracing::error!(error = %e, "log query failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the log query failed; see the gateway log",
            )
        }
    }
}

type Params<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// `GET /api/v1/logs`.
pub async fn logs(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    params: Params<LogsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut body = query_logs(&state, params)
        .await
        .map_err(|e| e.with_request_id(&id))?;
    body["request_id"] = serde_json::Value::String(id.0.to_string());
    Ok(Json(body))
}

async fn query_logs(
    state: &GatewayState,
    params: Params<LogsParams>,
) -> Result<serde_json::Value, ApiError> {
    let backend = backend(state)?;
    let Query(p) = params.map_err(|e| bad_request(e.body_text()))?;
    let now = Utc::now();
    let level = p
        .level
        .as_deref()
        .map(|l| {
            l.parse::<Level>().map_err(|_| {
                bad_request(format!(
                    "unknown level `{l}`; use TRACE, DEBUG, INFO, WARN, ERROR or FATAL"
                ))
            })
        })
        .transpose()?;
    let since = p
        .since
        .as_deref()
        .map(|t| parse_time("since", t, now))
        .transpose()?;
    let until = p
        .until
        .as_deref()
        .map(|t| parse_time("until", t, now))
        .transpose()?;
    let text = p.q.filter(|q| !q.is_empty());
    // A substring scan: bounded in time and length, whatever the client asks.
    let since = match &text {
        Some(q) => {
            backend.limits.check_text(q)?;
            Some(backend.limits.text_window(since, until, now)?)
        }
        None => since,
    };
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_request(format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let query = LogQuery {
        service: p.service,
        level,
        since,
        until,
        text,
        limit,
        cursor: p.cursor,
    };
    let page = backend
        .store
        .query(&query)
        .await
        .map_err(|e| store_error(e, state.retry_after))?;
    Ok(serde_json::json!({"logs": page.logs, "next_cursor": page.next_cursor}))
}

/// `GET /api/v1/stats`.
pub async fn stats(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    params: Params<StatsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut body = query_stats(&state, params)
        .await
        .map_err(|e| e.with_request_id(&id))?;
    body["request_id"] = serde_json::Value::String(id.0.to_string());
    Ok(Json(body))
}

async fn query_stats(
    state: &GatewayState,
    params: Params<StatsParams>,
) -> Result<serde_json::Value, ApiError> {
    let backend = backend(state)?;
    let Query(p) = params.map_err(|e| bad_request(e.body_text()))?;
    let now = Utc::now();
    let since = match p.since.as_deref() {
        Some(t) => parse_time("since", t, now)?,
        None => now - chrono::Duration::minutes(15),
    };
    let until = match p.until.as_deref() {
        Some(t) => parse_time("until", t, now)?,
        None => now + chrono::Duration::minutes(1),
    };
    if until <= since {
        return Err(bad_request("`until` must be after `since`"));
    }
    let query = StatsQuery {
        since,
        until,
        service: p.service,
        top_n: p.top.unwrap_or(10).clamp(1, 100),
    };
    let stats = backend.aggregates.stats(&query).await.map_err(|e| {
        if e.is_outage() {
            tracing::warn!(error = %e, "stats query: the aggregates are unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "aggregates_unavailable",
                "the aggregates store did not answer; retry later",
            )
            .retry_after(state.retry_after)
        } else {
            tracing::error!(error = %e, "stats query failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the stats query failed; see the gateway log",
            )
        }
    })?;
    Ok(serde_json::to_value(&stats).unwrap_or_default())
}
