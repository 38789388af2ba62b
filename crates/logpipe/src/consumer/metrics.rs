//! The consumer's metrics: the Prometheus families every member and pipeline updates
//! ([`ConsumerMetrics`], served at `/metrics`), the same figures as typed data
//! ([`ConsumerMetrics::snapshot`], served at `/stats` by [`stats_routes`]), and the figures the
//! demo reads in-process ([`ConsumerStats`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::{Json, Router};

use hdrhistogram::Histogram as Hdr;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::buckets::ReadableHistogram;
use crate::telemetry::metrics::{e2e_histogram, latency_histogram, size_histogram, ReasonLabels};
use crate::telemetry::stats::{ConsumerSnapshot, PartitionLag, STATS_PATH};

/// Rebalance kinds, dependencies behind a circuit, and dead-letter classes: every one exists from
/// the start, so `rate()` sees the first event and the snapshot lists it at zero.
const REBALANCE_KINDS: [&str; 3] = ["assign", "revoke", "error"];
const DEPENDENCIES: [&str; 3] = ["store", "aggregates", "dlq"];
const DLQ_CLASSES: [&str; 2] = ["poison", "exhausted"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub dependency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: String,
}

/// Consumer metrics. `log_consumer_success_total`, `log_consumer_processing_time` (seconds) and
/// `kafka_consumer_fetch_manager_records_lag_max` keep the spec's names so its queries work as
/// written.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub success: Counter,
    pub failed: Family<ReasonLabels, Counter>,
    pub duplicates: Counter,
    pub processing_time: Histogram,
    pub batch_size: Histogram,
    pub store_seconds: Histogram,
    pub aggregate_seconds: Histogram,
    pub e2e_latency: ReadableHistogram,
    pub rebalances: Family<KindLabels, Counter>,
    pub commits: Family<ResultLabels, Counter>,
    pub outages: Family<DependencyLabels, Counter>,
    pub circuits: Family<DependencyLabels, Gauge>,
    pub retries: Counter,
    pub dead_letters: Family<ClassLabels, Counter>,
    pub pauses: Family<ReasonLabels, Counter>,
    pub resumes: Counter,
    pub skipped_offsets: Counter,
    pub lag_max: Family<MemberLabels, Gauge>,
    pub partition_lag: Family<PartitionLabels, Gauge>,
    pub assigned: Gauge,
    /// The label sets of `failed` and `partition_lag` seen so far (`prometheus_client` cannot
    /// list a family's series), for [`snapshot`](Self::snapshot).
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    reasons: std::collections::BTreeSet<String>,
    partitions: std::collections::BTreeSet<(String, i32)>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            success: Counter::default(),
            failed: Family::default(),
            duplicates: Counter::default(),
            processing_time: latency_histogram(),
            batch_size: size_histogram(),
            store_seconds: latency_histogram(),
            aggregate_seconds: latency_histogram(),
            e2e_latency: e2e_histogram(),
            rebalances: Family::default(),
            commits: Family::default(),
            outages: Family::default(),
            circuits: Family::default(),
            retries: Counter::default(),
            dead_letters: Family::default(),
            pauses: Family::default(),
            resumes: Counter::default(),
            skipped_offsets: Counter::default(),
            lag_max: Family::default(),
            partition_lag: Family::default(),
            assigned: Gauge::default(),
            seen: Arc::default(),
        };
        for kind in REBALANCE_KINDS {
            m.rebalance_count(kind);
        }
        for dependency in DEPENDENCIES {
            m.circuit(dependency, 0);
        }
        for class in DLQ_CLASSES {
            let _ = m.dead_letters.get_or_create(&ClassLabels {
                class: class.into(),
            });
        }
        registry.register(
            "log_consumer_success",
            "Records durably stored and counted",
            m.success.clone(),
        );
        registry.register(
            "log_consumer_failed",
            "Records that could not be processed, by reason",
            m.failed.clone(),
        );
        registry.register(
            "log_consumer_duplicates",
            "Replayed records the store already held (not written again)",
            m.duplicates.clone(),
        );
        registry.register(
            "log_consumer_processing_time",
            "Seconds from fetch to durable in the log store, per record",
            m.processing_time.clone(),
        );
        registry.register(
            "log_consumer_batch_size",
            "Records per batch",
            m.batch_size.clone(),
        );
        registry.register(
            "log_consumer_store_write_seconds",
            "Log store write latency per batch",
            m.store_seconds.clone(),
        );
        registry.register(
            "log_consumer_aggregate_write_seconds",
            "Aggregates update latency per batch",
            m.aggregate_seconds.clone(),
        );
        registry.register(
            "log_consumer_end_to_end_latency_seconds",
            "Seconds from gateway receipt to durable in the log store, per record",
            m.e2e_latency.clone(),
        );
        registry.register(
            "log_consumer_rebalance_events",
            "Rebalance events by kind (assign, revoke, error)",
            m.rebalances.clone(),
        );
        registry.register(
            "log_consumer_commits",
            "Offset commits by result",
            m.commits.clone(),
        );
        registry.register(
            "log_consumer_dependency_outages",
            "Store, aggregates or dead-letter calls that failed as an outage (retried), by dependency",
            m.outages.clone(),
        );
        registry.register(
            "log_consumer_circuit_state",
            "Circuit of each dependency: 0 closed (healthy), 1 open (outage, partitions paused), 2 half-open (probing)",
            m.circuits.clone(),
        );
        registry.register(
            "log_consumer_retries",
            "Failed record attempts scheduled for another try",
            m.retries.clone(),
        );
        registry.register(
            "log_consumer_dlq_records",
            "Records written to the dead-letter topic, by class (poison, exhausted)",
            m.dead_letters.clone(),
        );
        registry.register(
            "log_consumer_partition_pauses",
            "Times a member paused its partitions, by reason (outage, backpressure)",
            m.pauses.clone(),
        );
        registry.register(
            "log_consumer_partition_resumes",
            "Times a member resumed its paused partitions",
            m.resumes.clone(),
        );
        registry.register(
            "log_consumer_skipped_offsets",
            "Offsets missing between consecutive fetched records of a partition. Non-zero on a \
             topic without transactions or compaction means the broker skipped records the \
             consumer never saw",
            m.skipped_offsets.clone(),
        );
        registry.register(
            "kafka_consumer_fetch_manager_records_lag_max",
            "Largest consumer lag (records) over the member's partitions",
            m.lag_max.clone(),
        );
        registry.register(
            "log_consumer_partition_lag",
            "Consumer lag (records) per owned partition; removed on revoke",
            m.partition_lag.clone(),
        );
        registry.register(
            "log_consumer_assigned_partitions",
            "Partitions owned by this process",
            m.assigned.clone(),
        );
        m
    }

    fn rebalance_count(&self, kind: &str) -> Counter {
        self.rebalances
            .get_or_create(&KindLabels { kind: kind.into() })
            .clone()
    }

    pub fn rebalance(&self, kind: &str) {
        self.rebalance_count(kind).inc();
    }

    pub fn commit(&self, result: &str) {
        self.commits
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn failed(&self, reason: &str) {
        self.seen().reasons.insert(reason.into());
        self.failed
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn outage(&self, dependency: &str) {
        self.outages
            .get_or_create(&DependencyLabels {
                dependency: dependency.into(),
            })
            .inc();
    }

    pub fn circuit(&self, dependency: &str, state: i64) {
        self.circuits
            .get_or_create(&DependencyLabels {
                dependency: dependency.into(),
            })
            .set(state);
    }

    pub fn dead_lettered(&self, class: &str) {
        self.dead_letters
            .get_or_create(&ClassLabels {
                class: class.into(),
            })
            .inc();
    }

    pub fn paused(&self, reason: &str) {
        self.pauses
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn set_partition_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.seen().partitions.insert((topic.into(), partition));
        self.partition_lag
            .get_or_create(&PartitionLabels {
                topic: topic.into(),
                partition,
            })
            .set(lag);
    }

    pub fn forget_partition(&self, topic: &str, partition: i32) {
        self.seen().partitions.remove(&(topic.into(), partition));
        self.partition_lag.remove(&PartitionLabels {
            topic: topic.into(),
            partition,
        });
    }

    pub fn set_member_lag(&self, member: &str, lag: i64) {
        self.lag_max
            .get_or_create(&MemberLabels {
                member: member.into(),
            })
            .set(lag);
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

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
