//! The producer's internal HTTP endpoint (`logpipe producer`, :8081), the gateway's upstream in
//! split mode.
//!
//! `POST /internal/v1/publish`: body is NDJSON of canonical events (what the gateway already
//! validated), `X-Request-Id` and `X-Logpipe-Ingest-Ms` headers carry what goes into the record
//! headers. With `producer.internal_token` set, only a caller sending it (the gateway) gets past
//! [`internal_auth::require_token`], so only the gateway sets those headers; without it the
//! endpoint listens on loopback only. The events are decoded again (cheap, and the endpoint must
//! not trust its network); more than `producer.max_request_events` is 413. The answer comes
//! after Kafka acknowledged every record: 200 `{"delivered": N}`, or 503 with the shared error
//! shape and `failed: [{index, reason}]`. Error bodies say what to do; the internal cause (broker
//! errors, addresses) goes to the log only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use logpipe_model::{ndjson_lines_at_most, LogEvent};
use serde_json::json;

use super::internal_auth::{require_token, InternalToken};
use super::{Batch, Producer, PublishError};
use crate::config::Config;
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
    max_events: usize,
}

/// The producer service's routes (without the shared layers): body limit from
/// `gateway.max_body_bytes`, token and event cap from `[producer]`.
pub fn router(producer: Arc<Producer>, config: &Config) -> Router {
    let token = InternalToken::new(config.producer.internal_token.expose());
    Router::new()
        .route(PUBLISH_PATH, post(publish))
        .layer(axum::extract::DefaultBodyLimit::max(
            config.gateway.max_body_bytes,
        ))
        // Outermost on the route: the token is checked before the body is read.
        .route_layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(ServiceState {
            producer,
            limits: config.limits.to_model(),
            retry_after: config.gateway.retry_after,
            max_events: config.producer.max_request_events,
        })
}

async fn publish(
    State(state): State<ServiceState>,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    // The gateway's receive time, never later than this clock: it becomes the records' Kafka
    // timestamp, which the broker refuses too far in the future.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ingest_ms = headers
        .get(INGEST_MS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(now_ms, |ms| ms.min(now_ms));
    // Counted while splitting: a request over the cap is refused at line `max_events + 1`.
    let Ok(lines) = ndjson_lines_at_most(&body, state.max_events) else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "the request holds more events than `producer.max_request_events` ({}); split it",
                state.max_events
            ),
        )
        .with_details(limit_detail(state.max_events))
        .with_request_id(&id));
    };
    // Nothing to send: answered at once (the gateway's readiness probe proves its token so).
    if lines.is_empty() {
        return Ok(Json(json!({"delivered": 0})));
    }
    let mut events = Vec::with_capacity(lines.len());
    let mut rejected = Vec::new();
    for (line, bytes) in lines {
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

/// The HTTP answer for a publish failure: 503 with `Retry-After` and the `failed` items listed,
/// or 413 for a batch that can never fit. The body names what to do; the internal cause (broker
/// errors, the producer service's address) is logged here and never sent.
pub fn publish_error_response(e: &PublishError, retry_after: std::time::Duration) -> ApiError {
    let message = match e {
        PublishError::Saturated => e.to_string(),
        PublishError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "publish failed: upstream unavailable");
            "Kafka is not reachable from logpipe right now; nothing was written. Retry after the \
             Retry-After delay"
                .into()
        }
        // The embedded broker's own guidance: sizes and what to configure, nothing internal.
        PublishError::BacklogFull(_) => e.to_string(),
        PublishError::Partial { .. } => e.to_string(),
        PublishError::TooLarge { limit, .. } => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.code(), e.to_string())
                .with_details(limit_detail(*limit));
        }
    };
    let mut error =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), message).retry_after(retry_after);
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

/// `{"limit": N}` beside a 413's error, so the gateway can name the producer's limit.
fn limit_detail(limit: usize) -> serde_json::Map<String, serde_json::Value> {
    let mut details = serde_json::Map::new();
    details.insert("limit".into(), limit.into());
    details
}
