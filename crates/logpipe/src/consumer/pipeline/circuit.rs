//! A dependency's circuit breaker: closed while the dependency (store, aggregates, dead-letter
//! topic) answers; open from its first failure, which pauses the member's partitions through the
//! [`OutageFlags`], until a retried write succeeds. Between attempts the writer waits out an
//! exponential, jittered backoff; nothing goes to the dead-letter topic and nothing is committed
//! meanwhile, because an outage is not the records' fault.

use std::time::{Duration, Instant};

use crate::consumer::handoff::{Dependency, OutageFlags};
use crate::consumer::ConsumerMetrics;
use crate::retry::{Backoff, Waits};

/// Waits between attempts while a dependency is down: 100 ms doubling to 5 s, +/-20 %.
const OUTAGE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(5), 0.2);

/// `log_consumer_circuit_state` values.
const CLOSED: i64 = 0;
const OPEN: i64 = 1;
const HALF_OPEN: i64 = 2;

pub(super) struct Circuit {
    dependency: Dependency,
    opened: Option<Instant>,
    waits: Waits,
    metrics: ConsumerMetrics,
    outages: OutageFlags,
}

impl Circuit {
    pub fn new(dependency: Dependency, metrics: ConsumerMetrics, outages: OutageFlags) -> Self {
        Circuit {
            dependency,
            opened: None,
            waits: OUTAGE_BACKOFF.waits(),
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
            tracing::debug!(dependency = name, %error, retry_in = ?self.waits.peek(), "{name} still unavailable");
        }
        tokio::time::sleep(self.waits.next_wait()).await;
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
        self.waits.reset();
    }
}
