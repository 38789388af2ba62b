//! The consumer's metrics: the Prometheus families every member and pipeline updates
//! ([`ConsumerMetrics`], served at `/metrics`). The same figures as typed data are in
//! [`super::stats`].

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::buckets::ReadableHistogram;
use crate::telemetry::metrics::{e2e_histogram, latency_histogram, size_histogram, ReasonLabels};

/// Rebalance kinds, dependencies behind a circuit, and dead-letter classes: every one exists from
/// the start, so `rate()` sees the first event and the snapshot lists it at zero.
pub(super) const REBALANCE_KINDS: [&str; 3] = ["assign", "revoke", "error"];
pub(super) const DEPENDENCIES: [&str; 3] = ["store", "aggregates", "dlq"];
pub(super) const DLQ_CLASSES: [&str; 2] = ["poison", "exhausted"];
/// Why the dead-letter topic may refuse a record for good (see `dead_letter::permanent_refusal`).
const DLQ_REFUSALS: [&str; 4] = [
    "message_too_large",
    "not_authorized",
    "unknown_topic",
    "invalid_record",
];

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
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Outcomes of a reconciler rebuild, all present from the start.
pub(super) const REBUILD_OUTCOMES: [&str; 2] = ["completed", "failed"];

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
    /// Records the dead-letter topic refused for good, parked instead, by reason.
    pub dlq_refused: Family<ReasonLabels, Counter>,
    pub pauses: Family<ReasonLabels, Counter>,
    pub resumes: Counter,
    pub skipped_offsets: Counter,
    /// Attributes left out of events decoded from OTLP records (over the limits, too deep, or a
    /// repeated key); the events were stored.
    pub attributes_dropped: Counter,
    pub lag_max: Family<MemberLabels, Gauge>,
    pub partition_lag: Family<PartitionLabels, Gauge>,
    pub assigned: Gauge,
    /// Times a member found that the aggregates store lost data (a watermark went backwards).
    pub aggregate_losses: Counter,
    /// Rebuilds of the aggregates from the log store by the reconciler, by outcome.
    pub aggregate_rebuilds: Family<OutcomeLabels, Counter>,
    /// Rows the reconciler's rebuilds read from the log store.
    pub aggregate_rebuild_rows: Counter,
    /// 1 while this process runs a rebuild.
    pub aggregate_rebuild_running: Gauge,
    /// The label sets of `failed` and `partition_lag` seen so far (`prometheus_client` cannot
    /// list a family's series), for [`snapshot`](Self::snapshot).
    pub(super) seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
pub(super) struct Seen {
    pub reasons: std::collections::BTreeSet<String>,
    pub partitions: std::collections::BTreeSet<(String, i32)>,
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
            dlq_refused: Family::default(),
            pauses: Family::default(),
            resumes: Counter::default(),
            skipped_offsets: Counter::default(),
            attributes_dropped: Counter::default(),
            lag_max: Family::default(),
            partition_lag: Family::default(),
            assigned: Gauge::default(),
            aggregate_losses: Counter::default(),
            aggregate_rebuilds: Family::default(),
            aggregate_rebuild_rows: Counter::default(),
            aggregate_rebuild_running: Gauge::default(),
            seen: Arc::default(),
        };
        for outcome in REBUILD_OUTCOMES {
            let _ = m.aggregate_rebuilds.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            });
        }
        registry.register(
            "log_consumer_aggregate_losses",
            "Times a member found that the aggregates store lost data (an applied-offset watermark went backwards: restart without persistence, FLUSHDB, failover, eviction)",
            m.aggregate_losses.clone(),
        );
        registry.register(
            "log_consumer_aggregate_rebuilds",
            "Rebuilds of the aggregates from the log store run by this process's reconciler, by outcome (completed, failed)",
            m.aggregate_rebuilds.clone(),
        );
        registry.register(
            "log_consumer_aggregate_rebuild_rows",
            "Rows the reconciler's rebuilds read from the log store",
            m.aggregate_rebuild_rows.clone(),
        );
        registry.register(
            "log_consumer_aggregate_rebuild_running",
            "1 while this process rebuilds the aggregates from the log store",
            m.aggregate_rebuild_running.clone(),
        );
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
            "Events durably stored and counted (one per record, but one per log record of an OTLP record)",
            m.success.clone(),
        );
        registry.register(
            "log_consumer_failed",
            "Records that could not be processed, by reason",
            m.failed.clone(),
        );
        registry.register(
            "log_consumer_attributes_dropped",
            "Attributes left out of events decoded from OTLP records (over limits.max_attributes or limits.max_attributes_bytes, nested too deep, or a repeated key); the events were stored",
            m.attributes_dropped.clone(),
        );
        registry.register(
            "log_consumer_duplicates",
            "Replayed events the store already held (not written again)",
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
        for reason in DLQ_REFUSALS {
            let _ = m.dlq_refused.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        registry.register(
            "log_consumer_dlq_refused",
            "Records the dead-letter topic refused for good (message_too_large, not_authorized, unknown_topic, invalid_record), written to the parking topic instead",
            m.dlq_refused.clone(),
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

    pub fn dlq_refused(&self, reason: &str) {
        self.dlq_refused
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
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

    pub(super) fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}
