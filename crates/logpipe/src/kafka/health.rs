//! Kafka reachability: a background probe that asks the cluster for the main topic's metadata
//! every few seconds through an existing client, and a cheap flag readers check on every request
//! (readiness, and the producer's fail-fast when the broker is gone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::retry;

/// Shared flag: was Kafka reachable at the last probe?
#[derive(Debug, Clone, Default)]
pub struct KafkaHealth {
    up: Arc<AtomicBool>,
}

impl KafkaHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("Kafka is reachable");
            } else {
                tracing::warn!("Kafka is unreachable: requests get 503 until it is back");
            }
        }
    }

    /// Runs `probe` (a blocking metadata request through an existing client) every `interval`
    /// on the blocking pool, until `stop`. The first probe runs at once.
    pub fn spawn_monitor(
        &self,
        probe: impl Fn() -> bool + Send + Sync + 'static,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let health = self.clone();
        let probe = Arc::new(probe);
        retry::spawn_every(interval, stop, move || {
            let (health, probe) = (health.clone(), probe.clone());
            async move {
                let up = tokio::task::spawn_blocking(move || probe())
                    .await
                    .unwrap_or(false);
                health.set(up);
            }
        })
    }
}

/// A probe through any rdkafka client: metadata of `topic` within `timeout`.
pub fn metadata_probe<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> bool {
    client
        .fetch_metadata(Some(topic), timeout)
        .map(|m| m.topics().iter().any(|t| t.error().is_none()))
        .unwrap_or(false)
}
