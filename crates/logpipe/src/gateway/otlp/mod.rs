//! OpenTelemetry OTLP/HTTP logs: `POST /v1/logs`, what OTLP exporters (the SDKs, the
//! Collector's `otlphttp` exporter) send.
//!
//! - Body: an `ExportLogsServiceRequest` as protobuf (`application/x-protobuf`) or OTLP/JSON
//!   (`application/json`: hex ids, 64-bit integers as strings or numbers, enums as integers),
//!   gzip-compressed or not (`Content-Encoding`), within `gateway.max_body_bytes`. Anything
//!   else is 415.
//! - Each record is mapped ([`map`]) and checked by the event model on its own; the valid ones
//!   go to Kafka through [`ingest::publish`], and the answer (200, `ExportLogsServiceResponse`
//!   in the request's encoding) comes only once Kafka acknowledged them. Refused records are
//!   counted in `partial_success.rejected_log_records` with the reasons in `error_message`,
//!   which also reports attributes dropped for the limits.
//! - Failures answer a `google.rpc.Status` in the request's encoding, as the OTLP/HTTP spec
//!   asks: 400 for a body that does not decode, 413 for more records than
//!   `gateway.max_batch_events` (or a body over the size limit), and 503 with `Retry-After` when
//!   Kafka or the producer cannot take the records: a status OTLP exporters retry, so an outage
//!   loses nothing. (401 and 403 of the API key check keep the gateway's own error shape.)

pub(crate) mod map;
mod value;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

use super::ingest::{bounded, publish};
use super::metrics::Protocol;
use super::{body, GatewayState};
use crate::http::{ApiError, RequestId};

/// The OTLP route, as served on `gateway.listen` and on `gateway.otlp_listen`.
pub const PATH: &str = "/v1/logs";

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding named by `Content-Type` (parameters such as `charset` are ignored).
    pub fn of(headers: &HeaderMap) -> Option<Encoding> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = value.split(';').next()?.trim();
        if mime.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if mime.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Result<ExportLogsServiceRequest, ApiError> {
        let decoded = match self {
            Encoding::Protobuf => {
                ExportLogsServiceRequest::decode(bytes).map_err(|e| e.to_string())
            }
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        };
        decoded.map_err(|detail| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_otlp",
                format!(
                    "the body is not an OTLP ExportLogsServiceRequest in {}: {detail}",
                    self.content_type()
                ),
            )
        })
    }

    /// An answer with `message` in this encoding.
    fn respond<M: Message + serde::Serialize>(self, status: StatusCode, message: &M) -> Response {
        let body = match self {
            Encoding::Protobuf => message.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
        };
        (status, [(header::CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP asks for on every 4xx and 5xx answer. It is not one
/// of the OTLP messages opentelemetry-proto generates; two fields of a well-known message are
/// derived here rather than adding a googleapis crate for one type. `details` (field 3) is left
/// out: OTLP does not use it.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub(crate) struct Status {
    /// The gRPC code matching the HTTP status (OTLP lets servers omit it).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong and what to do next.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `POST /v1/logs`.
pub(crate) async fn export_logs(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = chrono::Utc::now();
    let Some(encoding) = Encoding::of(&headers) else {
        let error = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "OTLP/HTTP takes Content-Type application/x-protobuf or application/json",
        );
        return failure(Encoding::Json, error, &id);
    };
    let outcome = async {
        let bytes = body::read(&headers, body, state.max_body_bytes).await?;
        let request = encoding.decode(&bytes)?;
        let records = map::count_records(&request);
        if records > state.max_batch_events {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!(
                    "the request holds {records} log records, more than the limit of {max}; \
                     export smaller batches (the SDK's max_export_batch_size, the Collector's \
                     sending_queue batch size) of at most {max}",
                    max = state.max_batch_events
                ),
            ));
        }
        state.metrics.observe_batch(Protocol::Otlp, records);
        let cx = map::Context {
            limits: &state.limits,
            default_service: &state.otlp_default_service,
            received,
        };
        let mut mapped = map::map_request(request, &cx);
        for (code, (n, _)) in &mapped.rejected {
            state.metrics.reject(Protocol::Otlp, code, *n);
        }
        let events = std::mem::take(&mut mapped.events);
        if !events.is_empty() {
            publish(&state, &id, Protocol::Otlp, events, received).await?;
            // Counted once stored: a refused request is retried and would count twice.
            state
                .metrics
                .drop_attributes(Protocol::Otlp, mapped.dropped_attributes);
        }
        Ok(mapped)
    };
    match bounded(&state, Protocol::Otlp, outcome).await {
        Ok(mapped) => {
            let warning = mapped.warning(&state.limits);
            let rejected = mapped.rejected_count();
            if !warning.is_empty() {
                tracing::debug!(request_id = %id.0, rejected, dropped_attributes = mapped.dropped_attributes, "OTLP export partly refused: {warning}");
            }
            let partial = rejected > 0 || !warning.is_empty();
            let response = ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected as i64,
                    error_message: warning,
                }),
            };
            encoding.respond(StatusCode::OK, &response)
        }
        Err(error) => failure(encoding, error, &id),
    }
}

/// A failure as OTLP/HTTP wants it: the HTTP status, a `Status` body in the request's encoding,
/// and `Retry-After` when retrying later will help.
fn failure(encoding: Encoding, error: ApiError, id: &RequestId) -> Response {
    let status = Status {
        code: grpc_code(error.status),
        message: format!("{} (request {}): {}", error.code, id.0, error.message),
    };
    let mut response = encoding.respond(error.status, &status);
    crate::http::set_retry_after(&mut response, error.retry_after);
    response
}

/// The gRPC code of an HTTP status, as the gRPC-HTTP mapping pairs them.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        429 => 8,             // RESOURCE_EXHAUSTED
        502..=504 => 14,      // UNAVAILABLE
        _ => 2,               // UNKNOWN
    }
}

/// The gateway's routes as served on `gateway.otlp_listen`: only [`PATH`] and the health and
/// metrics routes answer; every other path is 404, so the OTLP port does not expose the query
/// API or the dashboard.
pub fn port_router(gateway: Router) -> Router {
    gateway.layer(axum::middleware::from_fn(only_otlp))
}

async fn only_otlp(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == PATH || path.starts_with("/health/") || path == "/metrics" {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "this port (gateway.otlp_listen) serves only POST /v1/logs and health; the rest of the API is on gateway.listen",
    )
    .into_response()
}
