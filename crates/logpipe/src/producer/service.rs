//! The producer's internal HTTP endpoint (`logpipe producer`, :8081), the gateway's upstream in
//! split mode.
//!
//! `POST /internal/v1/publish`: body is NDJSON of canonical events (what the gateway already
//! validated), `X-Request-Id` and `X-Logpipe-Ingest-Ms` headers carry what goes into the record
//! headers. The events are decoded again (cheap, and the endpoint must not trust its network);
//! the answer comes after Kafka acknowledged every record: 200 `{"delivered": N}`, or 503 with the
//! shared error shape and `failed: [{index, reason}]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use logpipe_model::{ndjson_lines, LogEvent};
use serde_json::json;

use super::{Batch, Producer, PublishError};
use crate::http::{ApiError, RequestId};

/// Route of the internal publish endpoint.
pub const PUBLISH_PATH: &str = "/internal/v1/publish";
/// Header carrying the gateway's receive time (ms since the Unix epoch).
pub const INGEST_MS_HEADER: &str = "x-logpipe-ingest-ms";

#[derive(Clone)]
struct ServiceState {
    producer: Arc<Producer>,
    limits: logpipe_model::Limits,
    retry_after: std::time::Duration,
}

/// The producer service's routes (without the shared layers).
pub fn router(
    producer: Arc<Producer>,
    limits: logpipe_model::Limits,
    max_body_bytes: usize,
    retry_after: std::time::Duration,
) -> Router {
    Router::new()
        .route(PUBLISH_PATH, post(publish))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .with_state(ServiceState {
            producer,
            limits,
            retry_after,
        })
}

async fn publish(
    State(state): State<ServiceState>,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ingest_ms = headers
        .get(INGEST_MS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (line, bytes) in ndjson_lines(&body) {
        match LogEvent::decode(bytes, &state.limits) {
            Ok(event) => events.push(event),
            Err(reason) => rejected
                .push(json!({"line": line, "code": reason.code(), "reason": reason.to_string()})),
        }
    }
    if !rejected.is_empty() {
        // The gateway only forwards valid events; anything else is a caller bug. Nothing is sent.
        let mut details = serde_json::Map::new();
        details.insert("rejected".into(), rejected.into());
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_events",
            "the publish endpoint takes canonical events only (as the gateway writes them)",
        )
        .with_details(details)
        .with_request_id(&id));
    }
    let delivered = events.len();
    let batch = Batch {
        events,
        request_id: id.0.clone(),
        ingest_ms,
    };
    match state.producer.publish(&batch).await {
        Ok(()) => Ok(Json(json!({"delivered": delivered}))),
        Err(e) => Err(publish_error_response(&e, state.retry_after).with_request_id(&id)),
    }
}

/// The HTTP answer for a publish failure: always 503 with `Retry-After`, `failed` items listed.
pub fn publish_error_response(e: &PublishError, retry_after: std::time::Duration) -> ApiError {
    let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
        .retry_after(retry_after);
    if let PublishError::Partial { failed } = e {
        let mut details = serde_json::Map::new();
        details.insert(
            "failed".into(),
            failed
                .iter()
                .map(|(index, reason)| json!({"index": index, "reason": reason}))
                .collect::<Vec<_>>()
                .into(),
        );
        error = error.with_details(details);
    }
    error
}
