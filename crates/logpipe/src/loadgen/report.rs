//! What a `logpipe loadgen` run reports (printed as a table, or as JSON with `--json`).

use serde::Serialize;

/// What a run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    pub events_sent: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    /// Requests answered 5xx or not answered (network error, timeout).
    pub requests_failed: u64,
    /// Requests answered 4xx as a whole (all invalid, too large, unauthorized).
    pub requests_refused: u64,
    pub elapsed_s: f64,
    pub accepted_per_s: f64,
    pub latency_ms: Percentiles,
    /// Requests that started later than scheduled because all slots were busy.
    pub late_starts: u64,
    /// What the consumer stored during the run (and the settle wait), from its `/stats`.
    pub consumer: Option<ConsumerSide>,
}

/// The consumer's side of a run, read from its `/stats` before and after.
#[derive(Debug, Default, Serialize)]
pub struct ConsumerSide {
    pub metrics_url: String,
    /// Records the consumer stored (`log_consumer_success_total` delta).
    pub stored: u64,
    /// Records it sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Gateway receipt → stored, estimated from the histogram buckets of the run (as
    /// Prometheus' `histogram_quantile`), in ms. None when nothing was stored.
    pub e2e_latency_ms: Option<Percentiles>,
}

/// Latency percentiles and maximum, in ms.
#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}
