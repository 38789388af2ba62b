//! A dependency's circuit breaker: closed while the dependency (store, aggregates, dead-letter
//! topic) answers; open from its first failure, which pauses the member's partitions through the
//! [`OutageFlags`], until a retried write succeeds. Between attempts the writer waits out an
//! exponential, jittered backoff; nothing goes to the dead-letter topic and nothing is committed
//! meanwhile, because an outage is not the records' fault.

use std::time::{Duration, Instant};

use crate::consumer::handoff::{Dependency, OutageFlags};
use crate::consumer::ConsumerMetrics;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `log_consumer_circuit_state` values.
const CLOSED: i64 = 0;
const OPEN: i64 = 1;
const HALF_OPEN: i64 = 2;

pub(super) struct Circuit {
    dependency: Dependency,
    opened: Option<Instant>,
    backoff: Duration,
    metrics: ConsumerMetrics,
    outages: OutageFlags,
}

impl Circuit {
    pub fn new(dependency: Dependency, metrics: ConsumerMetrics, outages: OutageFlags) -> Self {
        Circuit {
            dependency,
            opened: None,
            backoff: FIRST_BACKOFF,
            metrics,
            outages,
        }
    }

    /// The dependency failed: open (pausing the partitions), wait out the backoff, then let the
    /// caller probe again (half-open).
    pub async fn trip(&mut self, error: &str) {
        let name = self.dependency.as_str();
        self.metrics.outage(name);
        self.metrics.circuit(name, OPEN);
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
            self.outages.raise(self.dependency);
            tracing::warn!(dependency = name, %error, "{name} unavailable: circuit open, partitions paused; retrying with backoff (nothing goes to the DLQ and nothing is committed meanwhile)");
        } else {
            tracing::debug!(dependency = name, %error, retry_in = ?self.backoff, "{name} still unavailable");
        }
        tokio::time::sleep(jittered(self.backoff, 0.2)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.metrics.circuit(name, HALF_OPEN);
    }

    /// The dependency answered: close (resuming the partitions if it was open).
    pub fn succeeded(&mut self) {
        if let Some(since) = self.opened.take() {
            let name = self.dependency.as_str();
            self.outages.clear(self.dependency);
            self.metrics.circuit(name, CLOSED);
            tracing::info!(
                dependency = name,
                down_for_ms = since.elapsed().as_millis() as u64,
                "{name} available again: circuit closed, partitions resume"
            );
        }
        self.backoff = FIRST_BACKOFF;
    }
}

/// `base` spread by +/- `fraction` at random.
pub(super) fn jittered(base: Duration, fraction: f64) -> Duration {
    if fraction <= 0.0 || base.is_zero() {
        return base;
    }
    let factor = 1.0 + fraction * (2.0 * rand::random::<f64>() - 1.0);
    base.mul_f64(factor.max(0.0))
}
