//! The consumer's figures as typed data ([`ConsumerSnapshot`]): what `GET /stats` of a consumer
//! answers, what the dashboard and `logpipe loadgen` read (in-process, or from that endpoint),
//! and how the figures of several consumer processes add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::buckets::Buckets;

/// Where a consumer serves its [`ConsumerSnapshot`] as JSON (beside `/metrics`).
pub const STATS_PATH: &str = "/stats";

/// Lag of one owned partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// A consumer process's counters since it started, and its gauges now. The counters are those
/// of `/metrics` (`stored` is `log_consumer_success_total`, and so on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerSnapshot {
    /// Records durably stored and counted (duplicates included).
    pub stored: u64,
    /// Replayed records the store already held.
    pub duplicates: u64,
    /// Failed attempts scheduled for another try.
    pub retries: u64,
    /// Records that could not be processed, by reason.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Records written to the dead-letter topic, by class (`poison`, `exhausted`).
    pub dead_lettered: BTreeMap<String, u64>,
    /// Rebalance events by kind (`assign`, `revoke`, `error`).
    pub rebalances: BTreeMap<String, u64>,
    /// Partitions owned now.
    pub assigned_partitions: i64,
    /// Lag of each owned partition, by topic and partition.
    pub partition_lag: Vec<PartitionLag>,
    /// Circuit of each dependency: 0 closed, 1 open, 2 half-open.
    pub circuits: BTreeMap<String, i64>,
    /// Gateway receipt to stored, in seconds.
    pub e2e_latency: Buckets,
}

impl ConsumerSnapshot {
    /// Records sent to the dead-letter topic, all classes.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// Adds another process's figures: counters and partitions sum, a partition both report
    /// (for a moment around a rebalance) keeps the larger lag, and a circuit its worst state.
    pub fn add(&mut self, other: &ConsumerSnapshot) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.retries += other.retries;
        add_counts(&mut self.failed_by_reason, &other.failed_by_reason);
        add_counts(&mut self.dead_lettered, &other.dead_lettered);
        add_counts(&mut self.rebalances, &other.rebalances);
        self.assigned_partitions += other.assigned_partitions;
        let mut lag: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for p in self.partition_lag.iter().chain(&other.partition_lag) {
            let entry = lag.entry((p.topic.clone(), p.partition)).or_insert(0);
            *entry = (*entry).max(p.lag);
        }
        self.partition_lag = lag
            .into_iter()
            .map(|((topic, partition), lag)| PartitionLag {
                topic,
                partition,
                lag,
            })
            .collect();
        for (dependency, state) in &other.circuits {
            let worst = self.circuits.entry(dependency.clone()).or_insert(0);
            *worst = (*worst).max(*state);
        }
        self.e2e_latency.add(&other.e2e_latency);
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, n) in from {
        *into.entry(key.clone()).or_insert(0) += n;
    }
}

/// The stats URL of a consumer given by its metrics URL (`http://host:8082/metrics`, as
/// `gateway.consumer_metrics_urls` and `loadgen --metrics-url` take), its stats URL, or its base.
pub fn stats_url(url: &str) -> String {
    let base = url.trim_end_matches('/');
    let base = base
        .strip_suffix("/metrics")
        .or_else(|| base.strip_suffix(STATS_PATH))
        .unwrap_or(base);
    format!("{base}{STATS_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::buckets::Bucket;

    fn lag(partition: i32, lag: i64) -> PartitionLag {
        PartitionLag {
            topic: "t".into(),
            partition,
            lag,
        }
    }

    #[test]
    fn processes_add_up() {
        let mut a = ConsumerSnapshot {
            stored: 10,
            dead_lettered: [("poison".to_string(), 1), ("exhausted".to_string(), 0)].into(),
            partition_lag: vec![lag(0, 5), lag(1, 2)],
            circuits: [("store".to_string(), 0)].into(),
            assigned_partitions: 2,
            ..Default::default()
        };
        let b = ConsumerSnapshot {
            stored: 5,
            dead_lettered: [("poison".to_string(), 2)].into(),
            partition_lag: vec![lag(1, 3), lag(2, 7)],
            circuits: [("store".to_string(), 1)].into(),
            assigned_partitions: 1,
            ..Default::default()
        };
        a.add(&b);
        assert_eq!(a.stored, 15);
        assert_eq!(a.dead_lettered["poison"], 3);
        assert_eq!(a.dead_lettered_total(), 3);
        assert_eq!(a.partition_lag, vec![lag(0, 5), lag(1, 3), lag(2, 7)]);
        assert_eq!(a.circuits["store"], 1);
        assert_eq!(a.assigned_partitions, 3);
    }

    #[test]
    fn a_snapshot_survives_json_with_its_infinite_bucket() {
        let s = ConsumerSnapshot {
            e2e_latency: Buckets {
                buckets: vec![
                    Bucket {
                        le: Some(0.01),
                        count: 1,
                    },
                    Bucket { le: None, count: 2 },
                ],
                count: 2,
                sum: 0.5,
            },
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("{\"le\":null,\"count\":2}"), "{json}");
        assert_eq!(serde_json::from_str::<ConsumerSnapshot>(&json).unwrap(), s);
    }

    #[test]
    fn the_stats_url_comes_from_the_metrics_url_or_the_base() {
        for url in [
            "http://h:8082/metrics",
            "http://h:8082/metrics/",
            "http://h:8082",
            "http://h:8082/",
            "http://h:8082/stats",
        ] {
            assert_eq!(stats_url(url), "http://h:8082/stats", "{url}");
        }
    }
}
