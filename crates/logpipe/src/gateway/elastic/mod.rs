//! A subset of the Elasticsearch API, so Filebeat, Fluent Bit's `es` output, Logstash and the
//! Elasticsearch client libraries ship to logpipe unchanged: `POST|PUT /_bulk` and
//! `/{index}/_bulk` with `index` and `create` actions, and `GET /` (the product check).
//!
//! Answers as Elasticsearch does, so clients retry only what failed: 200 with one result per
//! action, `errors: true` when any failed; a document logpipe refuses is a per-item 400
//! (`document_parsing_exception`), an action it does not take (`update`, `delete`) a per-item
//! 400 (`illegal_argument_exception`), an event Kafka did not acknowledge while others were a
//! per-item 429 (`es_rejected_execution_exception`, which `helpers.bulk` and Beats retry). A
//! request of which Kafka took nothing is 503 with `Retry-After` (the clients' transports retry
//! it). Every answer on
//! these routes carries `X-Elastic-Product: Elasticsearch`, errors and 401 included: without it
//! the official clients refuse to talk to the server.
//!
//! - `bulk`: the NDJSON body to items.
//! - `document`: a document to an event's fields.
//! - `reply`: the answers' JSON shapes.

pub(crate) mod bulk;
pub(crate) mod document;
mod reply;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::ingest::{bounded, publish};
use super::metrics::Protocol;
use super::{auth, body, GatewayState};
use crate::http::{ApiError, RequestId};
use bulk::BulkError;
use reply::ItemResult;

/// The Elasticsearch routes, behind the API key check and with the product header on every
/// answer (the header layer wraps the key check, so a 401 carries it too).
pub fn router(keys: auth::ApiKeys) -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/", get(root))
        .route("/_bulk", post(bulk_all).put(bulk_all))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route_layer(axum::middleware::from_fn_with_state(
            keys,
            auth::require_api_key,
        ))
        .route_layer(axum::middleware::map_response(product_header))
}

async fn product_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

/// `GET /`: what Elasticsearch answers at its root. The version is the major the 9.x clients
/// ask to be compatible with; `build_flavor` `default` is what Beats and Logstash check.
async fn root() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "name": "logpipe",
        "cluster_name": "logpipe",
        "cluster_uuid": "logpipe",
        "version": {
            "number": "9.0.0",
            "build_flavor": "default",
            "build_type": "logpipe",
            "build_hash": concat!("logpipe-", env!("CARGO_PKG_VERSION")),
            "build_date": "2025-04-08T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "10.1.0",
            "minimum_wire_compatibility_version": "8.18.0",
            "minimum_index_compatibility_version": "8.0.0"
        },
        "tagline": "You Know, for Search"
    }))
}

async fn bulk_all(
    State(state): State<Arc<GatewayState>>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_request(state, id, headers, body, None).await
}

async fn bulk_index(
    State(state): State<Arc<GatewayState>>,
    Path(index): Path<String>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_request(state, id, headers, body, Some(index)).await
}

/// The content types Elasticsearch takes for a bulk body, 9.x's versioned ones included.
fn content_type_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = crate::gateway::body::media_type(headers);
    match essence.as_str() {
        ""
        | "application/json"
        | "application/x-ndjson"
        | "application/ndjson"
        | "application/vnd.elasticsearch+x-ndjson"
        | "application/vnd.elasticsearch+json" => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "media_type_header_exception",
            format!("Content-Type header [{raw}] is not supported; send application/x-ndjson"),
        )),
    }
}

async fn bulk_request(
    state: Arc<GatewayState>,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
    path_index: Option<String>,
) -> Response {
    let started = Instant::now();
    let received = chrono::Utc::now();
    let outcome = async {
        content_type_ok(&headers)?;
        let bytes = body::read(&headers, body, state.max_body_bytes).await?;
        let items = bulk::split(&bytes, path_index.as_deref(), state.max_batch_events).map_err(|e| {
            match e {
                BulkError::Malformed(reason) => {
                    state.metrics.reject(Protocol::Elasticsearch, "invalid_bulk", 1);
                    ApiError::new(StatusCode::BAD_REQUEST, "illegal_argument_exception", reason)
                }
                BulkError::TooMany(max) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_events",
                    format!("the bulk request holds more than {max} actions; lower the client's bulk size"),
                ),
            }
        })?;
        state
            .metrics
            .observe_batch(Protocol::Elasticsearch, items.len());
        let mut results = Vec::with_capacity(items.len());
        let mut events = Vec::new();
        for item in &items {
            let result =
                match reply::event(item, &state.elasticsearch_fields, &state.limits, received) {
                    Ok(event) => {
                        events.push(event);
                        ItemResult::Pending(events.len() - 1)
                    }
                    Err(failure) => {
                        state
                            .metrics
                            .reject(Protocol::Elasticsearch, failure.code, 1);
                        ItemResult::Failed(failure)
                    }
                };
            results.push(result);
        }
        let published = events.len();
        if published > 0 {
            if let Err(error) =
                publish(&state, &id, Protocol::Elasticsearch, events, received).await
            {
                // Events Kafka did not acknowledge, when others were, are retried per item
                // (429). When none was written, the whole request is the answer (503 +
                // Retry-After), which the clients' transports retry on their own.
                let failed = reply::failed_indexes(&error)
                    .filter(|failed| failed.len() < published)
                    .ok_or(error)?;
                for result in &mut results {
                    if let ItemResult::Pending(i) = result {
                        if failed.contains(i) {
                            *result = ItemResult::Failed(reply::Failure::unacknowledged());
                        }
                    }
                }
            }
        }
        Ok(reply::bulk_body(&items, results, started.elapsed()))
    };
    match bounded(&state, Protocol::Elasticsearch, outcome).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => reply::error(error, &id),
    }
}
