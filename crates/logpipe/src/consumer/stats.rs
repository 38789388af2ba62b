//! The consumer's figures as typed data, read straight from the metric handles: the snapshot
//! served at `/stats` ([`ConsumerMetrics::snapshot`], [`stats_routes`]) that the dashboard and
//! `logpipe loadgen` read, and the figures the demo reads in-process ([`ConsumerStats`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::routing::get;
use axum::{Json, Router};
use hdrhistogram::Histogram as Hdr;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::metrics::{
    ClassLabels, ConsumerMetrics, DependencyLabels, KindLabels, PartitionLabels, DEPENDENCIES,
    DLQ_CLASSES, REBALANCE_KINDS,
};
use crate::telemetry::metrics::ReasonLabels;
use crate::telemetry::stats::{ConsumerSnapshot, PartitionLag, STATS_PATH};

impl ConsumerMetrics {
    /// The figures now, read from the metric handles.
    pub fn snapshot(&self) -> ConsumerSnapshot {
        let (reasons, partitions) = {
            let seen = self.seen();
            (seen.reasons.clone(), seen.partitions.clone())
        };
        let failed_by_reason = counters(
            &self.failed,
            reasons
                .into_iter()
                .map(|r| (r.clone(), ReasonLabels { reason: r }))
                .collect::<Vec<_>>(),
        );
        let dead_lettered = counters(
            &self.dead_letters,
            DLQ_CLASSES
                .map(|c| (c.to_string(), ClassLabels { class: c.into() }))
                .into(),
        );
        let rebalances = counters(
            &self.rebalances,
            REBALANCE_KINDS
                .map(|k| (k.to_string(), KindLabels { kind: k.into() }))
                .into(),
        );
        let partition_lag = partitions
            .into_iter()
            .filter_map(|(topic, partition)| {
                let labels = PartitionLabels {
                    topic: topic.clone(),
                    partition,
                };
                let lag = self.partition_lag.get(&labels)?.get();
                Some(PartitionLag {
                    topic,
                    partition,
                    lag,
                })
            })
            .collect();
        let circuits = DEPENDENCIES
            .map(|d| {
                let labels = DependencyLabels {
                    dependency: d.into(),
                };
                (
                    d.to_string(),
                    self.circuits.get(&labels).map_or(0, |g| g.get()),
                )
            })
            .into();
        ConsumerSnapshot {
            stored: self.success.get(),
            duplicates: self.duplicates.get(),
            retries: self.retries.get(),
            failed_by_reason,
            dead_lettered,
            rebalances,
            assigned_partitions: self.assigned.get(),
            partition_lag,
            circuits,
            e2e_latency: self.e2e_latency.buckets(),
        }
    }
}

/// The counts of `family` for the given label sets, by name.
fn counters<S>(family: &Family<S, Counter>, keys: Vec<(String, S)>) -> BTreeMap<String, u64>
where
    S: Clone + std::hash::Hash + Eq,
{
    keys.into_iter()
        .map(|(name, labels)| {
            let n = family.get(&labels).map_or(0, |c| c.get());
            (name, n)
        })
        .collect()
}

/// `GET /stats`: [`ConsumerMetrics::snapshot`] as JSON, beside `/metrics`.
pub fn stats_routes(metrics: ConsumerMetrics) -> Router {
    Router::new().route(
        STATS_PATH,
        get(move || {
            let snapshot = metrics.snapshot();
            async move { Json(snapshot) }
        }),
    )
}

/// Figures the demo reads in-process: records inserted (replays the store already held left out)
/// and exact end-to-end latency percentiles.
#[derive(Default)]
pub struct ConsumerStats {
    stored: AtomicU64,
    /// End-to-end latency in microseconds.
    latency: Mutex<Option<Hdr<u64>>>,
}

impl ConsumerStats {
    pub fn add_stored(&self, n: u64) {
        self.stored.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    pub fn record_latency(&self, seconds: f64) {
        let mut guard = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = guard.get_or_insert_with(|| {
            Hdr::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
        });
        let _ = h.record(((seconds * 1e6) as u64).max(1));
    }

    /// (p50, p95, p99) end-to-end latency in milliseconds, when any was recorded.
    pub fn latency_ms(&self) -> Option<(f64, f64, f64)> {
        let guard = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = guard.as_ref()?;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some((ms(0.50), ms(0.95), ms(0.99)))
    }
}
