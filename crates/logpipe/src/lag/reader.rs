//! Live reads of a group: committed offsets (OffsetFetch), log-end offsets (ListOffsets), and
//! members (DescribeGroups, or ConsumerGroupDescribe for KIP-848 groups), through one consumer
//! with the group's `group.id` that never joins it and never commits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::assignment::parse_assignment;
use super::group::{GroupView, Member};
use super::snapshot::{PartitionOffsets, Snapshot};
use super::{degrade, describe, probe};
use crate::config::{Config, KafkaConfig};
use crate::kafka::watermarks::watermarks;
use crate::kafka::{apply_properties, base_config};

/// Watermark requests in flight at once.
const WATERMARK_PARALLELISM: usize = 8;

/// Reads a group's lag from the cluster. Holds one consumer with the group's `group.id` that
/// never subscribes and never commits. Cheap to clone.
#[derive(Clone)]
pub struct LagReader {
    inner: Arc<Inner>,
}

struct Inner {
    consumer: BaseConsumer,
    kafka: KafkaConfig,
    bootstrap: String,
    group: String,
    /// Topics as asked (`--topic`); empty: the configured ones plus any the members are assigned.
    explicit_topics: Vec<String>,
    configured_topics: Vec<String>,
    timeout: Duration,
}

impl LagReader {
    /// A reader for `group` on `topics` (empty: `consumer.topics` plus the members' topics).
    pub fn new(config: &Config, group: &str, topics: &[String]) -> anyhow::Result<LagReader> {
        let bootstrap = require_brokers(config)?;
        let mut client = base_config(&config.kafka, &bootstrap, "lag");
        client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        apply_properties(&mut client, &config.kafka, &Default::default());
        // Never let a pass-through property turn on commits for the group being inspected.
        client.set("enable.auto.commit", "false");
        // The log end is the high watermark, as `kafka-consumer-groups` shows it: librdkafka's
        // default (read_committed) answers ListOffsets with the last stable offset, which an
        // open transaction holds back.
        client.set("isolation.level", "read_uncommitted");
        let consumer: BaseConsumer = client
            .create()
            .context("creating the Kafka client for the lag reader")?;
        Ok(LagReader {
            inner: Arc::new(Inner {
                consumer,
                kafka: config.kafka.clone(),
                bootstrap,
                group: group.to_string(),
                explicit_topics: topics.to_vec(),
                configured_topics: config.consumer.topics(&config.kafka),
                timeout: config.kafka.request_timeout,
            }),
        })
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// One live read (the blocking calls run on the blocking pool).
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.snapshot())
            .await
            .context("lag reader task")?
    }

    /// Every group the cluster knows (ListGroups), sorted; for error messages.
    pub async fn known_groups(&self) -> anyhow::Result<Vec<String>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.known_groups())
            .await
            .context("lag reader task")?
    }

    /// Lag in seconds per partition of `snapshot`: now minus the timestamp of the record at the
    /// committed offset (0 for partitions without lag). One assign-only consumer fetches every
    /// lagging partition at once; what has not arrived within `budget` is left out.
    pub async fn lag_seconds(
        &self,
        snapshot: &Snapshot,
        budget: Duration,
    ) -> BTreeMap<(String, i32), f64> {
        let inner = self.inner.clone();
        let offsets = snapshot.offsets.clone();
        tokio::task::spawn_blocking(move || {
            probe::lag_seconds(&inner.kafka, &inner.bootstrap, &offsets, budget)
        })
        .await
        .unwrap_or_default()
    }
}

impl Inner {
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let taken_at = Utc::now();
        let group = self.describe_group();
        let topics: Vec<String> = if self.explicit_topics.is_empty() {
            let mut topics: BTreeSet<String> = self.configured_topics.iter().cloned().collect();
            if let Ok(view) = &group {
                for member in &view.members {
                    for t in member.assignment.iter().flatten() {
                        topics.insert(t.topic.clone());
                    }
                }
            }
            topics.into_iter().collect()
        } else {
            self.explicit_topics.clone()
        };
        let mut tpl = TopicPartitionList::new();
        let mut keys = Vec::new();
        for topic in &topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.timeout)
                .with_context(|| {
                    format!(
                        "fetching metadata of topic `{topic}` (is Kafka reachable at {}? check --kafka-brokers)",
                        self.bootstrap
                    )
                })?;
            let Some(t) = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            else {
                anyhow::bail!(
                    "topic `{topic}` does not exist on {}: pass the group's topics with --topic (repeatable), \
                     or create logpipe's topics with `logpipe topics ensure`",
                    self.bootstrap
                );
            };
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            for id in ids {
                tpl.add_partition(topic, id);
                keys.push((topic.clone(), id));
            }
        }
        // Committed offsets first, then the ends: an end read later is never below the
        // committed offset it is compared with (the lag is never negative because of the order).
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .with_context(|| {
                format!(
                    "reading the committed offsets of group `{}` (OffsetFetch)",
                    self.group
                )
            })?;
        let mut offsets = BTreeMap::new();
        let ends = self.end_offsets(&keys)?;
        for ((topic, partition), end) in keys.into_iter().zip(ends) {
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(n) if n >= 0 => Some(n),
                        _ => None,
                    });
            offsets.insert((topic, partition), PartitionOffsets { committed, end });
        }
        Ok(Snapshot {
            taken_at,
            group,
            offsets,
        })
    }

    /// High watermarks, a few requests in flight at once.
    fn end_offsets(&self, keys: &[(String, i32)]) -> anyhow::Result<Vec<i64>> {
        let mut ends = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(WATERMARK_PARALLELISM) {
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(topic, partition)| {
                        s.spawn(move || {
                            watermarks(self.consumer.client(), topic, *partition, self.timeout)
                                .with_context(|| {
                                    format!("reading the log-end offset of {topic}/{partition} (ListOffsets)")
                                })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("watermark thread panicked"))
                    .collect()
            });
            for result in results {
                ends.push(result?.1);
            }
        }
        Ok(ends)
    }

    fn describe_group(&self) -> Result<GroupView, String> {
        let list = self
            .consumer
            .fetch_group_list(Some(&self.group), self.timeout)
            .map_err(|e| format!("DescribeGroups failed: {e}"))?;
        let info = list
            .groups()
            .iter()
            .find(|g| g.name() == self.group && degrade::described_by_describe_groups(g.state()));
        let Some(info) = info else {
            // Not a classic group, or no group at all: ask ConsumerGroupDescribe (KIP-848).
            let described = describe::describe(&self.consumer, &self.group, self.timeout)?;
            return Ok(described.unwrap_or_else(degrade::undescribed_group));
        };
        let consumer_protocol =
            info.protocol_type() == "consumer" || info.protocol_type().is_empty();
        let members = info
            .members()
            .iter()
            .map(|m| {
                let bytes = m.assignment().unwrap_or_default();
                let parsed = degrade::reported_assignment(bytes).and_then(|bytes| {
                    if consumer_protocol {
                        parse_assignment(bytes)
                    } else {
                        Err(format!(
                            "protocol type `{}` is not the consumer protocol",
                            info.protocol_type()
                        ))
                    }
                });
                let (assignment, assignment_error) = match parsed {
                    Ok(a) => (Some(a), None),
                    Err(e) => (None, Some(e)),
                };
                let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
                Member {
                    consumer_id: m.id().to_string(),
                    client_id: text(m.client_id()),
                    host: text(m.client_host()),
                    assignment,
                    assignment_error,
                }
            })
            .collect();
        Ok(GroupView {
            state: info.state().to_string(),
            protocol_type: info.protocol_type().to_string(),
            protocol: info.protocol().to_string(),
            members,
        })
    }

    fn known_groups(&self) -> anyhow::Result<Vec<String>> {
        let list = self
            .consumer
            .fetch_group_list(None, self.timeout)
            .context("listing consumer groups (ListGroups)")?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
        names.sort();
        Ok(names)
    }
}

fn require_brokers(config: &Config) -> anyhow::Result<String> {
    config.kafka.cluster_brokers(
        "`logpipe lag` reads a consumer group on a cluster",
        " (the embedded broker lives inside `logpipe run`; its lag is on the consumer's /metrics)",
    )
}
