//! What every logpipe HTTP service shares: the one JSON error shape ([`ApiError`]), request ids,
//! per-route request metrics, the operational routes (`/health/live`, `/health/ready`,
//! `/metrics`), the `[http]` limits (per request in `limits.rs`, per connection and shutdown in
//! `serve.rs`), and waiting for a service to be ready.

mod limits;
mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
pub use limits::RequestLimits;
use serde::Serialize;
pub use serve::{serve, serve_with};

use crate::config::HttpConfig;
use crate::telemetry::metrics::{
    method_label, render, HttpLabels, HttpMetrics, RouteLabels, SharedRegistry,
};

/// Header carrying the request id, in requests (optional) and every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The token of an `Authorization: Bearer TOKEN` header (scheme in any case), if the request has
/// one: the gateway's API keys and the producer's internal token both arrive this way.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The request id of the current request: the client's `X-Request-Id` when it is sane
/// (1-128 visible ASCII characters), otherwise a fresh UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::now_v7().to_string().into())))
    }
}

/// Middleware: assigns the request id and echoes it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::<str>::from)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string().into());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Middleware: counts requests by route template, method and status, and times them.
pub async fn track_metrics(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method()).to_string();
    let started = Instant::now();
    metrics.in_flight.inc();
    let response = next.run(request).await;
    metrics.in_flight.dec();
    metrics
        .duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The one error shape of every logpipe HTTP API:
/// `{"error": {"code": "...", "message": "...", "request_id": "..."}, ...details}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable (`payload_too_large`).
    pub code: &'static str,
    /// For people: what went wrong and what to do.
    pub message: String,
    pub request_id: Option<Arc<str>>,
    /// Extra top-level fields (e.g. `rejected` items of a batch).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// Sent as `Retry-After` (503, 429).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            details: None,
            retry_after: None,
        }
    }

    pub fn with_request_id(mut self, id: &RequestId) -> Self {
        self.request_id = Some(id.0.clone());
        self
    }

    pub fn with_details(mut self, details: serde_json::Map<String, serde_json::Value>) -> Self {
        self.details = Some(details);
        self
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; see docs/api.md for the API",
        )
    }
}

/// The body of every error answer: `error` and, for some errors, more top-level fields (a
/// batch's `rejected` items, a publish's `failed` ones).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse<'a> {
    error: ErrorBody<'a>,
    /// More fields, named by the error (`rejected`, `failed`, `accepted`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    details: serde_json::Map<String, serde_json::Value>,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// Stable and machine-readable, e.g. `payload_too_large`.
    code: &'a str,
    /// What went wrong and what to do next.
    message: &'a str,
    /// The request's id, also in the `X-Request-Id` header: quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
                request_id: self.request_id.as_deref(),
            },
            details: self.details.unwrap_or_default(),
        };
        let mut response = (self.status, Json(body)).into_response();
        set_retry_after(&mut response, self.retry_after);
        response
    }
}

/// Sets `Retry-After` to `after` in whole seconds (at least 1), when there is one: every error
/// answer of every protocol that asks clients to come back says when this way.
pub fn set_retry_after(response: &mut Response, after: Option<Duration>) {
    if let Some(after) = after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// Fallback for unknown routes, in the shared error shape.
pub async fn fallback(id: RequestId) -> ApiError {
    ApiError::not_found().with_request_id(&id)
}

/// A known route asked with a method it does not serve: 405 in the shared error shape (axum adds
/// the `Allow` header).
pub async fn method_not_allowed(id: RequestId) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; the Allow header lists the ones it takes",
    )
    .with_request_id(&id)
}

/// A named readiness condition (`kafka`, `producer`), evaluated on each `/health/ready`.
pub type ReadyCheck = (&'static str, Arc<dyn Fn() -> bool + Send + Sync>);

/// State of the operational routes.
#[derive(Clone)]
pub struct Ops {
    pub registry: SharedRegistry,
    pub checks: Arc<Vec<ReadyCheck>>,
}

/// `/health/live`, `/health/ready` and `/metrics`.
pub fn ops_routes(ops: Ops) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// The answer of the health routes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `live`, `ready` or `not_ready`.
    status: &'static str,
    /// Each readiness condition (`kafka`, `producer`): `up` or `down`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    checks: BTreeMap<&'static str, &'static str>,
}

/// `GET /health/live`.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "live",
    summary = "Liveness: the process runs",
    responses((status = 200, description = "Live", body = Health)),
)]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "live",
        checks: BTreeMap::new(),
    })
}

/// `GET /health/ready`.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    summary = "Readiness: Kafka (or the producer) is reachable",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready; `checks` names what is down", body = Health),
    ),
)]
pub async fn ready(State(ops): State<Ops>) -> (StatusCode, Json<Health>) {
    let checks: BTreeMap<&'static str, &'static str> = ops
        .checks
        .iter()
        .map(|(name, check)| (*name, if check() { "up" } else { "down" }))
        .collect();
    let all = checks.values().all(|state| *state == "up");
    let (status, word) = if all {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    (
        status,
        Json(Health {
            status: word,
            checks,
        }),
    )
}

async fn metrics(State(ops): State<Ops>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&ops.registry),
    )
        .into_response()
}

/// A panicking handler answers 500 in the shared shape (the cause is logged, never sent).
fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred and was logged; it is safe to retry",
    )
    .into_response()
}

/// Wraps a service router with the shared layers: request ids, metrics, the request timeout,
/// panic guard, fallback, ops routes, and the in-flight limit on the service's own routes (the
/// ops routes stay exempt so an overloaded service still reports health and metrics).
pub fn with_common_layers(
    router: Router,
    ops: Ops,
    metrics: HttpMetrics,
    http: &HttpConfig,
) -> Router {
    let request_limits = RequestLimits::new(http);
    router
        .layer(axum::middleware::from_fn_with_state(
            request_limits.clone(),
            limits::shed_load,
        ))
        .merge(ops_routes(ops))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(fallback)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            request_limits,
            limits::bound_request,
        ))
        .layer(axum::middleware::from_fn_with_state(metrics, track_metrics))
        .layer(axum::middleware::from_fn(request_id))
}

/// Polls `{base}/health/ready` until it answers 2xx; an error once `timeout` has passed.
pub async fn wait_ready(base: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{base} did not become ready within {}",
            humantime::format_duration(timeout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Binds `addr`, saying what to do when the port is taken.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "{what} cannot listen on {addr}: {e}; choose another address with --listen or the config file"
        )
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn app() -> (Router, HttpMetrics) {
        let mut registry = crate::telemetry::metrics::new_registry();
        let metrics = HttpMetrics::register(&mut registry, "test");
        let ops = Ops {
            registry: Arc::new(registry),
            checks: Arc::new(vec![(
                "always",
                Arc::new(|| true) as Arc<dyn Fn() -> bool + Send + Sync>,
            )]),
        };
        let router = Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("kaboom");
                }
                "never"
            }),
        );
        (
            with_common_layers(router, ops, metrics.clone(), &HttpConfig::default()),
            metrics,
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_error_shape_with_a_request_id() {
        let (app, metrics) = app();
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["error"]["code"], "internal");
        assert!(
            !body.to_string().contains("kaboom"),
            "the panic message is not leaked"
        );
        let counted = metrics
            .requests
            .get_or_create(&HttpLabels {
                route: "/boom".into(),
                method: "GET".into(),
                status: 500,
            })
            .get();
        assert_eq!(counted, 1);
    }

    #[tokio::test]
    async fn readiness_reports_each_check() {
        let (app, _) = app();
        let response = app
            .oneshot(Request::get("/health/ready").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["checks"]["always"], "up");
    }
}
