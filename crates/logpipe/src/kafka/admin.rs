//! Topic administration: create logpipe's topics when absent (Tansu and many managed clusters do
//! not auto-create), warn when an existing topic has fewer partitions than configured, and
//! describe topics for `logpipe topics describe`.
//!
//! logpipe never alters an existing topic: adding partitions changes key → partition mapping and
//! is an operator's decision, so it only says what it found and what to do.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::config::KafkaConfig;

/// A topic logpipe needs, as it would create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic configs set at creation (`retention.ms`).
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// The main topic, the dead-letter topic and the parked topic, from configuration.
    pub fn from_config(kafka: &KafkaConfig) -> Vec<TopicSpec> {
        vec![
            TopicSpec {
                name: kafka.topic.clone(),
                partitions: kafka.partitions,
                replication_factor: kafka.replication_factor,
                configs: Vec::new(),
            },
            TopicSpec {
                name: kafka.dlq_topic.clone(),
                partitions: kafka.dlq_partitions,
                replication_factor: kafka.replication_factor,
                configs: vec![(
                    "retention.ms".into(),
                    kafka.dlq_retention.as_millis().to_string(),
                )],
            },
            TopicSpec {
                name: kafka.parked_topic.clone(),
                partitions: kafka.dlq_partitions,
                replication_factor: kafka.replication_factor,
                configs: vec![(
                    "retention.ms".into(),
                    kafka.parked_retention.as_millis().to_string(),
                )],
            },
        ]
    }
}

/// What `ensure` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EnsureOutcome {
    Created {
        partitions: i32,
    },
    Exists {
        partitions: i32,
    },
    /// Exists with fewer partitions than configured: parallelism is capped at `actual`.
    FewerPartitions {
        actual: i32,
        configured: i32,
    },
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

/// Creates each topic in `specs` that does not exist; reports what it found for each.
pub async fn ensure_topics(
    base: &ClientConfig,
    specs: &[TopicSpec],
    timeout: Duration,
) -> anyhow::Result<Vec<(String, EnsureOutcome)>> {
    let admin = std::sync::Arc::new(admin_client(base)?);
    let metadata = fetch_metadata(&admin, timeout).await?;
    let mut outcomes = Vec::new();
    let mut missing = Vec::new();
    for spec in specs {
        match metadata.topics().iter().find(|t| t.name() == spec.name) {
            Some(topic) if topic.error().is_none() => {
                let actual = topic.partitions().len() as i32;
                let outcome = if actual < spec.partitions {
                    tracing::warn!(
                        topic = %spec.name,
                        actual,
                        configured = spec.partitions,
                        "topic has fewer partitions than configured: consumer parallelism is capped at {actual}; \
                         logpipe does not alter existing topics, add partitions with your cluster's tools if you need more"
                    );
                    EnsureOutcome::FewerPartitions {
                        actual,
                        configured: spec.partitions,
                    }
                } else {
                    EnsureOutcome::Exists { partitions: actual }
                };
                outcomes.push((spec.name.clone(), outcome));
            }
            _ => missing.push(spec),
        }
    }
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic> = missing
            .iter()
            .map(|spec| {
                let mut topic = NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication_factor),
                );
                for (key, value) in &spec.configs {
                    topic = topic.set(key, value);
                }
                topic
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("creating topics")?;
        for (spec, result) in missing.iter().zip(results) {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::info!(topic = %spec.name, partitions = spec.partitions, "created topic");
                    outcomes.push((
                        spec.name.clone(),
                        EnsureOutcome::Created {
                            partitions: spec.partitions,
                        },
                    ));
                }
                Err((name, code)) => anyhow::bail!(
                    "creating topic `{name}` failed: {code}; create it by hand with {} partitions or check the broker's permissions",
                    spec.partitions
                ),
            }
        }
    }
    Ok(outcomes)
}

/// One partition as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub low_watermark: i64,
    pub high_watermark: i64,
}

/// One topic as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
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
                tokio::task::spawn_blocking(move || {
                    admin.inner().fetch_watermarks(&topic, id, timeout)
                })
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

async fn describe_configs(
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
/// brokers, Tansu among them, flag every entry as a default, even ones set at creation.)
const ALWAYS_SHOWN: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "compression.type",
    "max.message.bytes",
];
