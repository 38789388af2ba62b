//! `POST /loki/api/v1/push`: Grafana Loki's push API, so Promtail, Grafana Alloy, Fluent Bit's
//! `loki` output and Loki client libraries ship to logpipe unchanged. Both body formats:
//! snappy-compressed protobuf (`application/x-protobuf`, also taken when no Content-Type is sent,
//! as Loki does) and JSON (`application/json`, gzip allowed).
//!
//! Answers as Loki does, in plain text: 204 once Kafka acknowledged every event; 400 naming the
//! refused entries. A push with some refused entries still stores the valid ones (Loki writes the
//! valid entries too): clients do not retry a 400, so refusing the whole push would lose the good
//! lines, and storing them and then asking for a retry would duplicate them. 413 for a push past
//! `gateway.max_body_bytes` or `gateway.max_batch_events`; 503 with `Retry-After` while Kafka
//! cannot take the events (Promtail and Alloy retry 429 and 5xx).
//!
//! - `labels`: the selector string of a protobuf stream.
//! - `proto` / `push`: the two body formats, decoded to the same [`push::Stream`]s.
//! - `map`: a stream entry to a [`LogEvent`](logpipe_model::LogEvent).

mod labels;
pub mod map;
pub mod proto;
pub mod push;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ingest::{bounded, publish};
use super::metrics::Protocol;
use super::{body, GatewayState};
use crate::http::{ApiError, RequestId};

/// Refused entries named in a 400, at most; the count covers the rest.
const NAMED_REJECTIONS: usize = 20;

enum Format {
    Protobuf,
    Json,
}

fn format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = crate::gateway::body::media_type(headers);
    match essence.as_str() {
        "" | "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type application/x-protobuf (snappy) or application/json, got {raw}"),
        )),
    }
}

/// `POST /loki/api/v1/push`.
pub(crate) async fn push(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = chrono::Utc::now();
    let outcome = async {
        let format = format(&headers)?;
        let bytes = body::read(&headers, body, state.max_body_bytes).await?;
        let bad = |reason: String| {
            state.metrics.reject(Protocol::Loki, "invalid_push", 1);
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_push", reason)
        };
        let streams = match format {
            Format::Protobuf => proto::decode(&bytes, state.max_body_bytes).map_err(bad)?,
            Format::Json => push::decode_json(&bytes).map_err(bad)?,
        };
        let total: usize = streams.iter().map(|s| s.entries.len()).sum();
        if total > state.max_batch_events {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!(
                    "the push holds {total} entries, more than the limit of {}; lower the client's batch size",
                    state.max_batch_events
                ),
            ));
        }
        state.metrics.observe_batch(Protocol::Loki, total);
        let tenant = headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let (events, rejected) = map::events(streams, &state.loki, tenant, &state.limits, received);
        for r in &rejected {
            state.metrics.reject(Protocol::Loki, r.code, 1);
        }
        let stored = events.len();
        if stored > 0 {
            publish(&state, &id, Protocol::Loki, events, received).await?;
        }
        Ok((stored, rejected))
    };
    match bounded(&state, Protocol::Loki, outcome).await {
        Ok((_, rejected)) if rejected.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Ok((stored, rejected)) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            rejection_text(stored, &rejected),
        )
            .into_response(),
        Err(error) => text_error(error, &id),
    }
}

/// The 400 body for refused entries: how many were stored, then the refused ones by position.
fn rejection_text(stored: usize, rejected: &[map::Rejected]) -> String {
    let mut text = format!(
        "{} entries were refused and not stored ({stored} others were stored; do not resend them):\n",
        rejected.len()
    );
    for r in rejected.iter().take(NAMED_REJECTIONS) {
        let _ = writeln!(
            text,
            "stream {} entry {}: {}: {}",
            r.stream, r.entry, r.code, r.reason
        );
    }
    if rejected.len() > NAMED_REJECTIONS {
        let _ = writeln!(text, "... and {} more", rejected.len() - NAMED_REJECTIONS);
    }
    text
}

/// Loki answers errors in plain text; the status and `Retry-After` stay those of the error.
fn text_error(error: ApiError, id: &RequestId) -> Response {
    let mut response = (
        error.status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{} (request {})\n", error.message, id.0),
    )
        .into_response();
    crate::http::set_retry_after(&mut response, error.retry_after);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_named_and_bounded() {
        let rejected: Vec<_> = (0..25)
            .map(|i| map::Rejected {
                stream: 0,
                entry: i,
                code: "empty_message",
                reason: "blank".into(),
            })
            .collect();
        let text = rejection_text(3, &rejected);
        assert!(text.starts_with("25 entries were refused"), "{text}");
        assert!(text.contains("(3 others were stored"), "{text}");
        assert!(text.contains("stream 0 entry 19: empty_message"), "{text}");
        assert!(!text.contains("entry 20:"), "{text}");
        assert!(text.ends_with("... and 5 more\n"), "{text}");
    }

    #[test]
    fn errors_keep_status_and_retry_after() {
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "x", "busy")
            .retry_after(std::time::Duration::from_millis(1500));
        let response = text_error(error, &RequestId("r1".into()));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            format(&h)
        };
        assert!(matches!(format(&HeaderMap::new()), Ok(Format::Protobuf)));
        assert!(matches!(
            with("application/json; charset=utf-8"),
            Ok(Format::Json)
        ));
        assert!(with("text/plain").is_err());
    }
}
