//! Prometheus metrics. Each role registers its own families into one shared [`Registry`]
//! (`GatewayMetrics::register`, `ProducerMetrics::register`), and every HTTP listener serves the
//! whole registry at `/metrics`. Names are stable and listed in docs/operations.md (Metrics); labels stay
//! low-cardinality (route templates, status codes, reason codes; never ids or raw paths).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::buckets::ReadableHistogram;

/// Latency buckets in seconds, from 0.5 ms to 10 s: ingest requests sit at the low end.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets for counts of events per request or batch.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Finer buckets for end-to-end latency (gateway receipt to stored), where the targets live
/// (tens of milliseconds), so quantiles estimated from buckets (`histogram_quantile`,
/// `logpipe loadgen`) are within a few milliseconds.
pub const E2E_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
    0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// End-to-end latency is read back in-process (dashboard, `/stats`), hence readable.
pub fn e2e_histogram() -> ReadableHistogram {
    ReadableHistogram::new(E2E_BUCKETS)
}

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

pub fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS.iter().copied())
}

/// A fresh registry with `logpipe_build_info`.
pub fn new_registry() -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "logpipe_build",
        "logpipe build information",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "rustc",
                option_env!("LOGPIPE_RUSTC")
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ]),
    );
    registry
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics");
    }
    out
}

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template (`/api/v1/logs/batch`), or `unmatched`.
    pub route: String,
    /// One of [`METHOD_LABELS`], from [`method_label`].
    pub method: String,
    pub status: u16,
}

/// The values of the `method` label: the methods an HTTP API uses, and `other`.
pub const METHOD_LABELS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];

/// The `method` label of a request. Any client can send any token as a method (`FOO1`), and
/// requests are counted before authentication, so an open set would let anyone create series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Labels carrying one low-cardinality reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Labels of per-route latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Metrics of an HTTP service (gateway, producer endpoint), labelled with a `service` prefix.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub in_flight: Gauge,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        };
        registry.register(
            format!("{prefix}_http_requests"),
            "HTTP requests by route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            format!("{prefix}_http_request_duration_seconds"),
            "HTTP request latency by route",
            metrics.duration.clone(),
        );
        registry.register(
            format!("{prefix}_http_requests_in_flight"),
            "HTTP requests being handled",
            metrics.in_flight.clone(),
        );
        metrics
    }
}

/// The frozen registry shared by every listener of the process.
pub type SharedRegistry = Arc<Registry>;

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn the_method_label_is_one_of_a_fixed_set() {
        for known in [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS] {
            assert_eq!(method_label(&known), known.as_str());
        }
        for odd in ["FOO1", "FOO2", "CONNECT", "TRACE", "get", "PROPFIND"] {
            let method = Method::from_bytes(odd.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{odd}");
        }
        for value in METHOD_LABELS {
            let method = Method::from_bytes(value.as_bytes()).unwrap();
            assert!(METHOD_LABELS.contains(&method_label(&method)));
        }
    }
}
