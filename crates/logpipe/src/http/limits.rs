//! Per-request limits of every logpipe HTTP service, answered in the shared error shape: a
//! request that takes longer than `http.request_timeout` gets 503 `request_timeout`, and a
//! request arriving while `http.max_in_flight_requests` are being handled gets 503 `overloaded`
//! at once. Both carry `Retry-After`, which every logpipe client (and most log shippers) honour.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::{ApiError, RequestId};
use crate::config::HttpConfig;

/// `Retry-After` of the limit answers: both clear as soon as any request finishes.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// State of [`bound_request`] and [`shed_load`].
#[derive(Clone)]
pub struct RequestLimits {
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl RequestLimits {
    pub fn new(config: &HttpConfig) -> Self {
        Self {
            timeout: config.request_timeout,
            slots: Arc::new(Semaphore::new(config.max_in_flight_requests)),
        }
    }
}

/// Middleware: the request (its body read included) must finish within the request timeout.
pub async fn bound_request(
    State(limits): State<RequestLimits>,
    id: RequestId,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout = %humantime::format_duration(limits.timeout),
                "request exceeded http.request_timeout"
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                format!(
                    "the request did not finish within {}; retry later, or send a smaller batch",
                    humantime::format_duration(limits.timeout)
                ),
            )
            .with_request_id(&id)
            .retry_after(RETRY_AFTER)
            .into_response()
        }
    }
}

/// Middleware: at most `max_in_flight_requests` requests at once; the next one is refused
/// instead of queued, so an overloaded service answers fast and clients back off.
pub async fn shed_load(
    State(limits): State<RequestLimits>,
    id: RequestId,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_slot) = limits.slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is handling as many requests as it allows (http.max_in_flight_requests); \
             retry after the Retry-After delay",
        )
        .with_request_id(&id)
        .retry_after(RETRY_AFTER)
        .into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn limited(config: &HttpConfig, handler_sleep: Duration) -> Router {
        let limits = RequestLimits::new(config);
        Router::new()
            .route(
                "/work",
                get(move || async move {
                    tokio::time::sleep(handler_sleep).await;
                    "done"
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                limits.clone(),
                bound_request,
            ))
            .layer(axum::middleware::from_fn_with_state(limits, shed_load))
    }

    async fn error_code(response: Response) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        body["error"]["code"].as_str().unwrap().to_string()
    }

    fn get_work() -> Request {
        Request::get("/work").body(Body::empty()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_gets_503_request_timeout_with_retry_after() {
        let config = HttpConfig {
            request_timeout: Duration::from_secs(2),
            ..HttpConfig::default()
        };
        let app = limited(&config, Duration::from_secs(5));
        let response = app.oneshot(get_work()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(error_code(response).await, "request_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_within_the_timeout_is_untouched() {
        let app = limited(&HttpConfig::default(), Duration::from_secs(1));
        let response = app.oneshot(get_work()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_in_flight_limit_requests_get_503_overloaded_at_once() {
        let config = HttpConfig {
            max_in_flight_requests: 2,
            ..HttpConfig::default()
        };
        let app = limited(&config, Duration::from_secs(3));
        let busy: Vec<_> = (0..2)
            .map(|_| tokio::spawn(app.clone().oneshot(get_work())))
            .collect();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        let refused = app.clone().oneshot(get_work()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(error_code(refused).await, "overloaded");
        for task in busy {
            assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        // The slots are given back: the next request is served.
        let after = app.oneshot(get_work()).await.unwrap();
        assert_eq!(after.status(), StatusCode::OK);
    }
}
