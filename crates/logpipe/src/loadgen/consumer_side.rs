//! The consumer's side of a `logpipe loadgen` run: what it stored, dead-lettered, and the
//! end-to-end latency of the run, from its `/stats` before and after.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::report::{ConsumerSide, Percentiles};
use crate::telemetry::stats::{stats_url, ConsumerSnapshot};

/// The consumer's figures now, from its `/stats` (beside `url`, its `/metrics`).
pub async fn consumer_snapshot(client: &reqwest::Client, url: &str) -> Option<ConsumerSnapshot> {
    let response = client.get(stats_url(url)).send().await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// Waits (up to `settle`) until the consumer stored what was accepted, then measures.
pub async fn consumer_side(
    client: &reqwest::Client,
    url: &str,
    before: &ConsumerSnapshot,
    accepted: u64,
    settle: Duration,
    progress: &ProgressBar,
) -> Option<ConsumerSide> {
    let deadline = Instant::now() + settle;
    let mut after = consumer_snapshot(client, url).await?;
    let stored = |after: &ConsumerSnapshot| after.stored.saturating_sub(before.stored);
    while stored(&after) < accepted && Instant::now() < deadline {
        progress.set_message(format!(
            "waiting for the consumer: {} / {accepted} stored",
            stored(&after)
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = consumer_snapshot(client, url).await?;
    }
    let run = after.e2e_latency.since(&before.e2e_latency);
    let q = |p| run.quantile(p).map(|s| s * 1000.0);
    let e2e_latency_ms = match (q(0.5), q(0.95), q(0.99)) {
        (Some(p50), Some(p95), Some(p99)) => Some(Percentiles {
            p50,
            p95,
            p99,
            max: q(1.0).unwrap_or(p99),
        }),
        _ => None,
    };
    Some(ConsumerSide {
        metrics_url: url.to_string(),
        stored: stored(&after),
        dead_lettered: after
            .dead_lettered_total()
            .saturating_sub(before.dead_lettered_total()),
        e2e_latency_ms,
    })
}
