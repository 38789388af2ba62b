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
use logpipe_aggregates::{Aggregates, Stats, StatsQuery};
use logpipe_model::Level;
use logpipe_store::{LogPage, LogQuery, LogStore, StoreError};
use serde::{Deserialize, Serialize};

use super::{schemas, GatewayState};
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

/// Longest `top_errors` list.
pub const MAX_TOP: usize = 100;

/// The filters of `GET /api/v1/logs`. Unknown parameters are refused.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsParams {
    /// Only this service's logs.
    service: Option<String>,
    /// Only this level (any letter case).
    #[param(schema_with = schemas::level_param)]
    level: Option<String>,
    /// From this time on: RFC 3339, or a duration ago (`15m`).
    #[param(schema_with = schemas::time_param)]
    since: Option<String>,
    /// Before this time: RFC 3339, or a duration ago.
    #[param(schema_with = schemas::time_param)]
    until: Option<String>,
    /// Messages containing this text (case-insensitive). Searches cover at most
    /// `gateway.query_max_range` (from `since`, default `gateway.query_default_range` before
    /// `until`) and `q` has at most `gateway.query_max_q_chars` characters.
    q: Option<String>,
    /// Rows per page.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (empty: the first page).
    cursor: Option<String>,
}

/// The filters of `GET /api/v1/stats`. Unknown parameters are refused.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Only this service's counts.
    service: Option<String>,
    /// Start of the range (default 15 minutes ago): RFC 3339, or a duration ago.
    #[param(schema_with = schemas::time_param)]
    since: Option<String>,
    /// End of the range (default a minute from now), after `since`.
    #[param(schema_with = schemas::time_param)]
    until: Option<String>,
    /// Length of `top_errors`.
    #[param(minimum = 1, maximum = 100)]
    top: Option<usize>,
}

/// A page of stored logs, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogsResponse {
    #[serde(flatten)]
    page: LogPage,
    request_id: String,
}

/// The aggregates over a range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsResponse {
    #[serde(flatten)]
    stats: Stats,
    request_id: String,
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
#[utoipa::path(
    get,
    path = "/api/v1/logs",
    tag = "query",
    operation_id = "query_logs",
    summary = "Stored logs, newest first",
    params(LogsParams),
    responses(
        (status = 200, description = "A page of logs; `next_cursor` is null on the last page", body = LogsResponse),
        schemas::QueryFailures,
    ),
)]
pub async fn logs(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    params: Params<LogsParams>,
) -> Result<Json<LogsResponse>, ApiError> {
    let page = query_logs(&state, params)
        .await
        .map_err(|e| e.with_request_id(&id))?;
    Ok(Json(LogsResponse {
        page,
        request_id: id.0.to_string(),
    }))
}

async fn query_logs(state: &GatewayState, params: Params<LogsParams>) -> Result<LogPage, ApiError> {
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
        cursor: p.cursor.filter(|c| !c.is_empty()),
    };
    backend
        .store
        .query(&query)
        .await
        .map_err(|e| store_error(e, state.retry_after))
}

/// `GET /api/v1/stats`.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    tag = "query",
    operation_id = "stats",
    summary = "Counts over a time range",
    params(StatsParams),
    responses(
        (status = 200, description = "Counts by level, service and minute, and the top errors", body = StatsResponse),
        schemas::QueryFailures,
    ),
)]
pub async fn stats(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    params: Params<StatsParams>,
) -> Result<Json<StatsResponse>, ApiError> {
    let stats = query_stats(&state, params)
        .await
        .map_err(|e| e.with_request_id(&id))?;
    Ok(Json(StatsResponse {
        stats,
        request_id: id.0.to_string(),
    }))
}

async fn query_stats(state: &GatewayState, params: Params<StatsParams>) -> Result<Stats, ApiError> {
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
    if let Some(top) = p.top.filter(|top| !(1..=MAX_TOP).contains(top)) {
        return Err(bad_request(format!(
            "`top` must be 1 to {MAX_TOP} (got {top})"
        )));
    }
    let query = StatsQuery {
        since,
        until,
        service: p.service,
        top_n: p.top.unwrap_or(10),
    };
    backend.aggregates.stats(&query).await.map_err(|e| {
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
    })
}
