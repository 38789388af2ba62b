//! The HTTP ingest gateway (`logpipe gateway`, :8080): takes log events from applications,
//! validates each one, and answers only after Kafka acknowledged the valid ones.
//!
//! - `POST /api/v1/logs`: one event (`application/json`). 202, 400 with the reason, 503.
//! - `POST /api/v1/logs/batch`: a JSON array or NDJSON; each invalid item is reported with its
//!   index (or line) and reason, the valid ones are accepted; all invalid is 400.
//! - `GET /api/v1/logs`, `GET /api/v1/stats`: the query API ([`query`]).
//! - `GET /dashboard`, `GET /api/v1/dashboard`: the live dashboard page and its data ([`dashboard`]).
//! - `GET /api/v1/openapi.json`: the OpenAPI document of this API ([`openapi`]).
//!
//! Limits (body size after gzip too, events per batch) answer 413, a wrong content type 415, a
//! saturated or unreachable producer 503 with `Retry-After`, and a request never waits longer than
//! `gateway.request_timeout`. [`router`] builds the whole app so tests drive it without a server.

pub mod auth;
pub mod body;
pub mod dashboard;
pub mod openapi;
pub mod query;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use logpipe_model::{
    ndjson_lines_at_most, split_json_array_at_most, LogEvent, Rejection, SplitError,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::GatewayConfig;
use crate::http::{ApiError, ErrorResponse, RequestId};
use crate::producer::service::publish_error_response;
use crate::producer::{Batch, PublishError, Upstream};
use crate::telemetry::metrics::{size_histogram, ReasonLabels};
use body::Framing;
pub use query::QueryBackend;

/// Gateway metrics beyond the HTTP ones (`gateway_*`).
#[derive(Clone)]
pub struct GatewayMetrics {
    pub accepted: Counter,
    pub rejected: Family<ReasonLabels, Counter>,
    pub batch_events: Histogram,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            accepted: Counter::default(),
            rejected: Family::default(),
            batch_events: size_histogram(),
        };
        registry.register(
            "gateway_events_accepted",
            "Events acknowledged by Kafka and answered 2xx",
            m.accepted.clone(),
        );
        registry.register(
            "gateway_events_rejected",
            "Events refused, by reason (validation codes, or the publish failure)",
            m.rejected.clone(),
        );
        // Every reason exists from the start, so `rate()` sees the first rejection.
        for code in reasons() {
            m.reject(code, 0);
        }
        registry.register(
            "gateway_batch_events",
            "Events per ingest request",
            m.batch_events.clone(),
        );
        m
    }

    /// The counts now, read from the metric handles (the dashboard's gateway section).
    pub fn figures(&self) -> GatewayFigures {
        let rejected_by_reason: BTreeMap<String, u64> = reasons()
            .map(|reason| {
                let labels = ReasonLabels {
                    reason: reason.to_string(),
                };
                let n = self.rejected.get(&labels).map_or(0, |c| c.get());
                (labels.reason, n)
            })
            .collect();
        GatewayFigures {
            accepted: self.accepted.get(),
            rejected: rejected_by_reason.values().sum(),
            rejected_by_reason,
        }
    }

    fn reject(&self, reason: &str, n: u64) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }
}

/// Why the gateway refuses events: the validation codes, and the publish failures.
fn reasons() -> impl Iterator<Item = &'static str> {
    Rejection::ALL_CODES
        .iter()
        .copied()
        .chain(PublishError::CODES)
        .chain(["timeout"])
}

/// The gateway's event counts since it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayFigures {
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

/// Everything a gateway request needs.
#[derive(Clone)]
pub struct GatewayState {
    pub upstream: Upstream,
    /// The stores the query API reads, when this gateway has them.
    pub query: Option<QueryBackend>,
    pub limits: logpipe_model::Limits,
    pub max_body_bytes: usize,
    pub max_batch_events: usize,
    pub request_timeout: Duration,
    pub retry_after: Duration,
    pub metrics: GatewayMetrics,
}

impl GatewayState {
    pub fn new(
        config: &GatewayConfig,
        limits: logpipe_model::Limits,
        upstream: Upstream,
        query: Option<QueryBackend>,
        metrics: GatewayMetrics,
    ) -> Self {
        Self {
            upstream,
            query,
            limits,
            max_body_bytes: config.max_body_bytes,
            max_batch_events: config.max_batch_events,
            request_timeout: config.request_timeout,
            retry_after: config.retry_after,
            metrics,
        }
    }
}

/// The gateway's API routes, behind the API key check (health and metrics stay open).
pub fn router(state: GatewayState, keys: auth::ApiKeys) -> Router {
    let document = openapi::document(
        &state.limits,
        state.max_batch_events,
        state.query.as_ref().map(|q| q.limits.max_q_chars),
        keys.enabled(),
    );
    Router::new()
        .route("/api/v1/logs", post(ingest_one).get(query::logs))
        .route("/api/v1/logs/batch", post(ingest_batch))
        .route("/api/v1/stats", axum::routing::get(query::stats))
        .route_layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_api_key,
        ))
        // Our own reader enforces `max_body_bytes`; lift axum's default 2 MiB cap above it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::new(state))
        .merge(openapi::router(&document))
}

/// Where a rejected item was in the request.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// 0-based index in a JSON array.
    Index(usize),
    /// 1-based line in an NDJSON body.
    Line(usize),
}

/// An event of a batch that was refused, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedItem {
    #[serde(flatten)]
    position: Position,
    /// The rejection code (`invalid_level`, `message_too_large`, ...).
    code: &'static str,
    /// For people: which field broke which rule.
    reason: String,
}

/// The answer to an accepted ingest request: Kafka acknowledged every accepted event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted<'a> {
    /// Events acknowledged by Kafka.
    accepted: usize,
    /// Events of a batch refused for their content, with their position (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected: Vec<RejectedItem>,
    request_id: &'a str,
}

/// `POST /api/v1/logs`.
#[utoipa::path(
    post,
    path = "/api/v1/logs",
    tag = "ingest",
    operation_id = "ingest_event",
    summary = "Ingest one event",
    description = "Answers 202 only after Kafka acknowledged the event. The body may be gzip-compressed (`Content-Encoding: gzip`); its size limit applies before and after decompression.",
    request_body(content = openapi::EventBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored in Kafka", body = Accepted),
        (status = 400, description = "The event breaks a rule (`error.code` names it)", body = ErrorResponse),
        (status = 401, description = "An API key is required, or the key is not valid", body = ErrorResponse),
        (status = 403, description = "The API key lacks the `ingest` scope", body = ErrorResponse),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = ErrorResponse),
        (status = 415, description = "Content-Type is not `application/json`, or an unknown Content-Encoding", body = ErrorResponse),
        (status = 503, description = "Kafka or the producer is unavailable or saturated; retry after `Retry-After`", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn ingest_one(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = chrono::Utc::now();
    let outcome = async {
        body::framing(&headers, false)?;
        let bytes = body::read(&headers, body, state.max_body_bytes).await?;
        let event = LogEvent::parse(&bytes, &state.limits, received).map_err(|reason| {
            state.metrics.reject(reason.code(), 1);
            ApiError::new(StatusCode::BAD_REQUEST, reason.code(), reason.to_string())
        })?;
        publish(&state, &id, vec![event], received).await?;
        Ok::<_, ApiError>(Vec::new())
    };
    respond(&id, 1, bounded(&state, outcome).await)
}

/// `POST /api/v1/logs/batch`.
#[utoipa::path(
    post,
    path = "/api/v1/logs/batch",
    tag = "ingest",
    operation_id = "ingest_batch",
    summary = "Ingest a batch of events",
    description = "A JSON array of events (or NDJSON, one event per line, with `Content-Type: application/x-ndjson`). Each event is checked on its own: invalid ones are listed in `rejected` with their position and reason, the valid ones are stored, and the answer (202) comes only after Kafka acknowledged them. All invalid is 400. The body may be gzip-compressed.",
    request_body(content = openapi::BatchBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The valid events are stored in Kafka", body = Accepted),
        (status = 400, description = "Not a batch, or no event is valid (`rejected` lists why)", body = ErrorResponse),
        (status = 401, description = "An API key is required, or the key is not valid", body = ErrorResponse),
        (status = 403, description = "The API key lacks the `ingest` scope", body = ErrorResponse),
        (status = 413, description = "More events than `gateway.max_batch_events`, or a body larger than `gateway.max_body_bytes`", body = ErrorResponse),
        (status = 415, description = "Content-Type is not `application/json` or `application/x-ndjson`, or an unknown Content-Encoding", body = ErrorResponse),
        (status = 503, description = "Kafka or the producer is unavailable or saturated; retry after `Retry-After`", body = ErrorResponse, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn ingest_batch(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = chrono::Utc::now();
    let mut valid_count = 0;
    let outcome = async {
        let framing = body::framing(&headers, true)?;
        let bytes = body::read(&headers, body, state.max_body_bytes).await?;
        let items = split_items(&bytes, framing, state.max_batch_events)?;
        state.metrics.batch_events.observe(items.len() as f64);
        let mut events = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for (position, raw) in items {
            match LogEvent::parse(raw, &state.limits, received) {
                Ok(event) => {
                    events.push(event);
                    positions.push(position);
                }
                Err(reason) => {
                    state.metrics.reject(reason.code(), 1);
                    rejected.push(rejected_item(position, &reason));
                }
            }
        }
        if events.is_empty() {
            let mut details = serde_json::Map::new();
            details.insert("accepted".into(), 0.into());
            details.insert(
                "rejected".into(),
                serde_json::to_value(&rejected).unwrap_or_default(),
            );
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "all_events_invalid",
                format!(
                    "none of the {} events is valid; see `rejected`",
                    rejected.len()
                ),
            )
            .with_details(details));
        }
        valid_count = events.len();
        publish(&state, &id, events, received)
            .await
            .map_err(|mut e| {
                // Failed items are reported by their position in the request, not in the batch.
                if let Some(failed) = e.details.as_mut().and_then(|d| d.get_mut("failed")) {
                    if let Some(list) = failed.as_array_mut() {
                        for item in list {
                            let index = item["index"].as_u64().unwrap_or(0) as usize;
                            if let Some(position) = positions.get(index) {
                                let mut flat = serde_json::to_value(position).unwrap_or_default();
                                flat["reason"] = item["reason"].take();
                                *item = flat;
                            }
                        }
                    }
                }
                e
            })?;
        Ok(rejected)
    };
    let result = bounded(&state, outcome).await;
    respond(&id, valid_count, result)
}

/// Splits a batch body into items with their positions, enforcing `max_events` while it scans:
/// a body with more items is refused at item `max_events + 1`, before any vector grows past the
/// limit, however many items follow.
fn split_items(
    bytes: &[u8],
    framing: Framing,
    max_events: usize,
) -> Result<Vec<(Position, &[u8])>, ApiError> {
    let items: Vec<(Position, &[u8])> = match framing {
        Framing::Json => split_json_array_at_most(bytes, max_events)
            .map_err(|err| split_error(err, framing))?
            .into_iter()
            .enumerate()
            .map(|(i, raw)| (Position::Index(i), raw.get().as_bytes()))
            .collect(),
        Framing::Ndjson => ndjson_lines_at_most(bytes, max_events)
            .map_err(|err| split_error(err, framing))?
            .into_iter()
            .map(|(line, raw)| (Position::Line(line), raw))
            .collect(),
    };
    if items.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "the batch holds no events",
        ));
    }
    Ok(items)
}

fn split_error(err: SplitError, framing: Framing) -> ApiError {
    match err {
        SplitError::TooMany { max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "the batch holds more than the limit of {max} events; split it into batches of at most {max}"
            ),
        ),
        SplitError::Invalid(reason) => {
            let hint = match framing {
                Framing::Json => "; the batch route takes a JSON array of events, or NDJSON with Content-Type application/x-ndjson",
                Framing::Ndjson => "",
            };
            ApiError::new(StatusCode::BAD_REQUEST, reason.code(), format!("{reason}{hint}"))
        }
    }
}

fn rejected_item(position: Position, reason: &Rejection) -> RejectedItem {
    RejectedItem {
        position,
        code: reason.code(),
        reason: reason.to_string(),
    }
}

async fn publish(
    state: &GatewayState,
    id: &RequestId,
    events: Vec<LogEvent>,
    received: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let n = events.len();
    let batch = Batch {
        events,
        request_id: id.0.clone(),
        ingest_ms: received.timestamp_millis(),
    };
    match state.upstream.publish(batch).await {
        Ok(()) => {
            state.metrics.accepted.inc_by(n as u64);
            Ok(())
        }
        Err(e) => {
            let failed = match &e {
                PublishError::Partial { failed } => failed.len(),
                _ => n,
            };
            state.metrics.reject(e.code(), failed as u64);
            state.metrics.accepted.inc_by((n - failed) as u64);
            Err(publish_error_response(&e, state.retry_after))
        }
    }
}

/// Bounds a request by `request_timeout`: past it the client gets 503, never a hang.
async fn bounded<T>(
    state: &GatewayState,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(state.request_timeout, work)
        .await
        .unwrap_or_else(|_| {
            state.metrics.reject("timeout", 1);
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took longer than the gateway's limit; Kafka may be slow or unreachable. It is safe to retry",
            )
            .retry_after(state.retry_after))
        })
}

fn respond(
    id: &RequestId,
    accepted: usize,
    result: Result<Vec<RejectedItem>, ApiError>,
) -> Response {
    match result {
        Ok(rejected) => (
            StatusCode::ACCEPTED,
            Json(Accepted {
                accepted,
                rejected,
                request_id: &id.0,
            }),
        )
            .into_response(),
        Err(error) => error.with_request_id(id).into_response(),
    }
}
