//! Topic administration: create logpipe's topics when absent (many managed clusters do not
//! auto-create, and logpipe never relies on it), with the replication factor and
//! `min.insync.replicas` the configuration asks for on this cluster; report where an existing topic
//! differs from it (fewer partitions, another replication factor or `min.insync.replicas`); and
//! describe topics for `logpipe topics describe`.
//!
//! logpipe never alters an existing topic: adding partitions changes key → partition mapping and
//! moving replicas is heavy cluster work, both an operator's decision, so it only says what it
//! found and what to do.
//!
//! `ensure.rs` creates and checks; `describe.rs` reads topics back (partitions, leaders,
//! watermarks, configs).

mod describe;
mod ensure;

pub use describe::{describe_topics, PartitionInfo, TopicConfig, TopicInfo};
pub use ensure::ensure_topics;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::config::{KafkaConfig, Replicas, Replication};

/// A topic logpipe needs, as it would create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// `kafka.replication_factor`; `auto` is worked out from the cluster at creation.
    pub replication_factor: Replicas,
    /// `kafka.min_insync_replicas`, set as the topic's `min.insync.replicas` at creation.
    pub min_insync_replicas: Replicas,
    /// Other topic configs set at creation (`retention.ms`).
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// The main topic, the dead-letter topic and the parked topic, from configuration.
    pub fn from_config(kafka: &KafkaConfig) -> Vec<TopicSpec> {
        let spec = |name: &str, partitions: i32, configs: Vec<(String, String)>| TopicSpec {
            name: name.to_string(),
            partitions,
            replication_factor: kafka.replication_factor,
            min_insync_replicas: kafka.min_insync_replicas,
            configs,
        };
        let retention = |d: Duration| vec![("retention.ms".into(), d.as_millis().to_string())];
        vec![
            spec(&kafka.topic, kafka.partitions, Vec::new()),
            spec(
                &kafka.dlq_topic,
                kafka.dlq_partitions,
                retention(kafka.dlq_retention),
            ),
            spec(
                &kafka.parked_topic,
                kafka.dlq_partitions,
                retention(kafka.parked_retention),
            ),
        ]
    }

    /// The replication this topic gets on a cluster of `brokers` brokers.
    pub fn replication(&self, brokers: usize) -> anyhow::Result<Replication> {
        Replication::resolve(self.replication_factor, self.min_insync_replicas, brokers)
            .with_context(|| format!("topic `{}`", self.name))
    }
}

/// Whether `ensure` created the topic or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicStatus {
    Created,
    Exists,
}

/// What the configuration asks of a topic on this cluster (`auto` worked out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Configured {
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

/// Where an existing topic differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `partitions`, `replication.factor` or `min.insync.replicas`.
    pub setting: &'static str,
    pub actual: i32,
    pub configured: i32,
    /// What the difference means and what to do about it.
    pub advice: String,
}

/// What `ensure` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnsureOutcome {
    pub topic: String,
    pub status: TopicStatus,
    pub partitions: i32,
    /// The fewest replicas any of its partitions has.
    pub replication_factor: i32,
    /// The topic's effective `min.insync.replicas`; None when the broker does not say.
    pub min_insync_replicas: Option<i32>,
    pub configured: Configured,
    /// Empty for a created topic. logpipe changes none of it.
    pub differences: Vec<Difference>,
}

/// An admin client for `bootstrap`.
pub fn admin_client(base: &ClientConfig) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    base.create().context("creating Kafka admin client")
}

/// Fetches cluster metadata (all topics) without blocking the async runtime.
pub async fn fetch_metadata(
    admin: &std::sync::Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
) -> anyhow::Result<Metadata> {
    let admin = admin.clone();
    tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
        .await?
        .context("fetching Kafka metadata (is the broker reachable? check `kafka.brokers`)")
}

/// How many brokers the cluster has, as far as `metadata` shows: the brokers it lists, plus any
/// named only as a replica. A broker that is down drops out of the list but not out of its
/// partitions' replica lists, so an outage does not shrink an `auto` replication factor.
pub fn cluster_size(metadata: &Metadata) -> usize {
    let mut ids: BTreeSet<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    for topic in metadata.topics() {
        for partition in topic.partitions() {
            ids.extend(partition.replicas());
        }
    }
    ids.len()
}
