//! The HTTP ingest gateway (`logpipe gateway`, :8080): takes log events from applications,
//! validates each one, and answers only after Kafka acknowledged the valid ones.
//!
//! - `POST /api/v1/logs`: one event (`application/json`). 202, 400 with the reason, 503.
//! - `POST /api/v1/logs/batch`: a JSON array or NDJSON; each invalid item is reported with its
//!   index (or line) and reason, the valid ones are accepted; all invalid is 400.
//! - `GET /api/v1/logs`, `GET /api/v1/stats`: the query API ([`query`]).
//! - `GET /dashboard`, `GET /api/v1/dashboard`: the live dashboard page and its data ([`dashboard`]).
//! - `POST /v1/logs`: OpenTelemetry OTLP/HTTP logs, protobuf or JSON ([`otlp`]); also served
//!   on `gateway.otlp_listen` (:4318) when set.
//! - `GET /api/v1/openapi.json`: the OpenAPI document of this API ([`openapi`]).
//! - `POST /loki/api/v1/push`: Grafana Loki's push API ([`loki`]).
//! - `POST|PUT /_bulk`, `/{index}/_bulk`, `GET /`: an Elasticsearch subset ([`elastic`]).
//!
//! Limits (body size after gzip too, events per batch) answer 413, a wrong content type 415, a
//! saturated or unreachable producer 503 with `Retry-After`, and a request never waits longer than
//! `gateway.request_timeout`. [`router`] builds the whole app so tests drive it without a server.

pub mod auth;
pub mod body;
pub mod dashboard;
pub mod elastic;
pub mod ingest;
pub mod loki;
pub mod metrics;
pub mod openapi;
pub mod otlp;
pub mod query;
pub mod schemas;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;

use crate::config::{ElasticsearchFields, GatewayConfig};
use crate::producer::Upstream;
pub use metrics::{GatewayFigures, GatewayMetrics, Protocol};
pub use query::QueryBackend;

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
    /// How a Loki stream names its service.
    pub loki: loki::map::Settings,
    /// Where an Elasticsearch document keeps each event field.
    pub elasticsearch_fields: ElasticsearchFields,
    /// The service of OTLP records without `service.name`.
    pub otlp_default_service: logpipe_model::ServiceName,
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
            loki: loki::map::Settings {
                service_labels: config.loki_service_labels.clone(),
                default_service: config.loki_default_service.clone(),
            },
            elasticsearch_fields: config.elasticsearch_fields.clone(),
            otlp_default_service: config.otlp_default_service.clone(),
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
        .route("/api/v1/logs", post(ingest::ingest_one).get(query::logs))
        .route("/api/v1/logs/batch", post(ingest::ingest_batch))
        .route("/api/v1/stats", axum::routing::get(query::stats))
        .route("/loki/api/v1/push", post(loki::push))
        .route(otlp::PATH, post(otlp::export_logs))
        .route_layer(axum::middleware::from_fn_with_state(
            keys.clone(),
            auth::require_api_key,
        ))
        .merge(elastic::router(keys))
        // Our own reader enforces `max_body_bytes`; lift axum's default 2 MiB cap above it.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Arc::new(state))
        .merge(openapi::router(&document))
}
