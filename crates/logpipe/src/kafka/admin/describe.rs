//! `logpipe topics describe`: partitions with leaders, replicas, ISR and watermarks, and the
//! configs operators ask about, as the brokers report them.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Serialize;

use super::{admin_client, fetch_metadata};
use crate::kafka::watermarks::watermarks;

/// The topic config that bounds acks=all writes.
pub(super) const MIN_INSYNC: &str = "min.insync.replicas";

/// The topic's `min.insync.replicas`, when the broker reported it.
pub(super) fn min_insync_of(configs: &[TopicConfig]) -> Option<i32> {
    configs
        .iter()
        .find(|c| c.name == MIN_INSYNC)
        .and_then(|c| c.value.parse().ok())
}

/// One partition as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    /// Broker id of the leader; -1 when the partition has none (offline).
    pub leader: i32,
    /// Broker ids in assignment order (the first is the preferred leader).
    pub replicas: Vec<i32>,
    /// The in-sync replicas, as the cluster reports them.
    pub isr: Vec<i32>,
    pub low_watermark: i64,
    pub high_watermark: i64,
}

/// One topic as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    /// Replicas of the first partition, as Kafka's `kafka-topics.sh --describe` counts it.
    pub replication_factor: i32,
    /// The topic's effective `min.insync.replicas`; None when the broker does not say.
    pub min_insync_replicas: Option<i32>,
    pub partitions: Vec<PartitionInfo>,
    /// Non-default topic configs (and the key ones), or why they could not be read.
    pub configs: Result<Vec<TopicConfig>, String>,
}

/// Describes the named topics: partitions with leaders and watermarks, and configs.
pub async fn describe_topics(
    base: &ClientConfig,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<TopicInfo>> {
    let admin = std::sync::Arc::new(admin_client(base)?);
    let metadata = fetch_metadata(&admin, timeout).await?;
    let mut infos = Vec::new();
    for name in names {
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
        else {
            anyhow::bail!("topic `{name}` does not exist; create it with `logpipe topics ensure`");
        };
        let mut partitions = Vec::new();
        for p in topic.partitions() {
            let (low, high) = {
                let admin = admin.clone();
                let topic = name.clone();
                let id = p.id();
                tokio::task::spawn_blocking(move || watermarks(admin.inner(), &topic, id, timeout))
                    .await?
                    .with_context(|| format!("reading watermarks of {name}/{}", p.id()))?
            };
            partitions.push(PartitionInfo {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
                low_watermark: low,
                high_watermark: high,
            });
        }
        partitions.sort_by_key(|p| p.partition);
        let configs = describe_configs(&admin, name, timeout).await;
        infos.push(TopicInfo {
            name: name.clone(),
            replication_factor: partitions.first().map_or(0, |p| p.replicas.len() as i32),
            min_insync_replicas: configs.as_deref().ok().and_then(min_insync_of),
            partitions,
            configs,
        });
    }
    Ok(infos)
}

/// One topic config entry.
#[derive(Debug, Clone, Serialize)]
pub struct TopicConfig {
    pub name: String,
    pub value: String,
    /// Where the value comes from, as the broker says (`Default`, `DynamicTopic`, ...).
    pub source: String,
}

pub(super) async fn describe_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<TopicConfig>, String> {
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|e| format!("not available from this broker: {e}"))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| "broker returned no configs".to_string())?
        .map_err(|e| format!("not available from this broker: {e}"))?;
    Ok(resource
        .entries
        .into_iter()
        .filter(|entry| !entry.is_default || ALWAYS_SHOWN.contains(&entry.name.as_str()))
        .filter_map(|entry| {
            let source = format!("{:?}", entry.source);
            entry.value.map(|value| TopicConfig {
                name: entry.name,
                value,
                source,
            })
        })
        .collect())
}

/// Configs `topics describe` shows even at their default: the ones operators ask about. (Some
/// brokers flag every entry as a default, even ones set at creation.)
const ALWAYS_SHOWN: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "compression.type",
    "max.message.bytes",
];
