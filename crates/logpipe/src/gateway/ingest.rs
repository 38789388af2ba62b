//! logpipe's own ingest API: `POST /api/v1/logs` (one event) and `POST /api/v1/logs/batch` (a
//! JSON array or NDJSON, each item checked on its own), and what every ingest protocol shares:
//! [`publish`] (answer only after Kafka acknowledged) and [`bounded`] (never longer than
//! `gateway.request_timeout`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use logpipe_model::{
    ndjson_lines_at_most, split_json_array_at_most, LogEvent, Rejection, SplitError,
};
use serde::Serialize;

use super::body::{self, Framing};
use super::metrics::Protocol;
use super::{schemas, GatewayState};
use crate::http::{ApiError, ErrorResponse, RequestId};
use crate::producer::service::publish_error_response;
use crate::producer::{Batch, PublishError};

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
    request_body(content = schemas::EventBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored in Kafka", body = Accepted),
        (status = 400, description = "The event breaks a rule (`error.code` names it)", body = ErrorResponse),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = ErrorResponse),
        (status = 415, description = "Content-Type is not `application/json`, or an unknown Content-Encoding", body = ErrorResponse),
        schemas::IngestFailures,
    ),
)]
pub(crate) async fn ingest_one(
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
            state.metrics.reject(Protocol::Logpipe, reason.code(), 1);
            ApiError::new(StatusCode::BAD_REQUEST, reason.code(), reason.to_string())
        })?;
        publish(&state, &id, Protocol::Logpipe, vec![event], received).await?;
        Ok::<_, ApiError>(Vec::new())
    };
    respond(&id, 1, bounded(&state, Protocol::Logpipe, outcome).await)
}

/// `POST /api/v1/logs/batch`.
#[utoipa::path(
    post,
    path = "/api/v1/logs/batch",
    tag = "ingest",
    operation_id = "ingest_batch",
    summary = "Ingest a batch of events",
    description = "A JSON array of events (or NDJSON, one event per line, with `Content-Type: application/x-ndjson`). Each event is checked on its own: invalid ones are listed in `rejected` with their position and reason, the valid ones are stored, and the answer (202) comes only after Kafka acknowledged them. All invalid is 400. The body may be gzip-compressed.",
    request_body(content = schemas::BatchBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The valid events are stored in Kafka", body = Accepted),
        (status = 400, description = "Not a batch, or no event is valid (`rejected` lists why)", body = ErrorResponse),
        (status = 413, description = "More events than `gateway.max_batch_events`, or a body larger than `gateway.max_body_bytes`", body = ErrorResponse),
        (status = 415, description = "Content-Type is not `application/json` or `application/x-ndjson`, or an unknown Content-Encoding", body = ErrorResponse),
        schemas::IngestFailures,
    ),
)]
pub(crate) async fn ingest_batch(
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
        state.metrics.observe_batch(Protocol::Logpipe, items.len());
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
                    state.metrics.reject(Protocol::Logpipe, reason.code(), 1);
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
        publish(&state, &id, Protocol::Logpipe, events, received)
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
    let result = bounded(&state, Protocol::Logpipe, outcome).await;
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

/// Hands `events` to Kafka through the upstream and counts the outcome under `protocol`: every
/// ingest protocol ends here, so each answers only after Kafka acknowledged its events.
pub(crate) async fn publish(
    state: &GatewayState,
    id: &RequestId,
    protocol: Protocol,
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
            state.metrics.accept(protocol, n as u64);
            Ok(())
        }
        Err(e) => {
            let failed = match &e {
                PublishError::Partial { failed } => failed.len(),
                _ => n,
            };
            state.metrics.reject(protocol, e.code(), failed as u64);
            state.metrics.accept(protocol, (n - failed) as u64);
            Err(publish_error_response(&e, state.retry_after))
        }
    }
}

/// Bounds a request by `request_timeout`: past it the client gets 503, never a hang.
pub(crate) async fn bounded<T>(
    state: &GatewayState,
    protocol: Protocol,
    work: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(state.request_timeout, work)
        .await
        .unwrap_or_else(|_| {
            state.metrics.reject(protocol, "timeout", 1);
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
