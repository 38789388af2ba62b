//! Creating logpipe's topics when absent and reporting where an existing one differs from the
//! configuration (never altering it).

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::ClientConfig;

use super::describe::{describe_configs, min_insync_of, MIN_INSYNC};
use super::{
    admin_client, cluster_size, fetch_metadata, Configured, Difference, EnsureOutcome, TopicSpec,
    TopicStatus,
};

/// Creates each topic in `specs` that does not exist and reports, for each, what it has and
/// where an existing one differs from the configuration (also logged as warnings).
pub async fn ensure_topics(
    base: &ClientConfig,
    specs: &[TopicSpec],
    timeout: Duration,
) -> anyhow::Result<Vec<EnsureOutcome>> {
    let admin = std::sync::Arc::new(admin_client(base)?);
    let metadata = fetch_metadata(&admin, timeout).await?;
    let brokers = cluster_size(&metadata);
    let mut wanted = Vec::new();
    for spec in specs {
        let replication = spec.replication(brokers)?;
        let configured = Configured {
            partitions: spec.partitions,
            replication_factor: replication.replication_factor,
            min_insync_replicas: replication.min_insync_replicas,
        };
        let layout = topic_layout(&metadata, &spec.name);
        wanted.push((spec, configured, layout));
    }
    // Metadata is not held across the awaits below (its topic entries are not `Sync`).
    drop(metadata);

    let mut outcomes: Vec<Option<EnsureOutcome>> = vec![None; specs.len()];
    let mut missing = Vec::new();
    for (i, (spec, configured, layout)) in wanted.into_iter().enumerate() {
        match layout {
            Some(layout) => {
                outcomes[i] =
                    Some(inspect_existing(&admin, spec, configured, layout, timeout).await)
            }
            None => missing.push((i, spec, configured)),
        }
    }
    if !missing.is_empty() {
        // NewTopic borrows its config values, so they live here.
        let min_insync: Vec<String> = missing
            .iter()
            .map(|(_, _, configured)| configured.min_insync_replicas.to_string())
            .collect();
        let new_topics: Vec<NewTopic> = missing
            .iter()
            .zip(&min_insync)
            .map(|((_, spec, configured), min_insync)| {
                let mut topic = NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(configured.replication_factor),
                );
                for (key, value) in &spec.configs {
                    topic = topic.set(key, value);
                }
                topic.set(MIN_INSYNC, min_insync)
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("creating topics")?;
        // Created by someone else since the metadata was read (or not yet in the metadata of
        // the broker that answered): inspected like any existing topic once visible.
        let mut raced = Vec::new();
        for ((i, spec, configured), result) in missing.iter().zip(results) {
            match result {
                Ok(_) => {
                    tracing::info!(
                        topic = %spec.name,
                        partitions = spec.partitions,
                        replication_factor = configured.replication_factor,
                        min_insync_replicas = configured.min_insync_replicas,
                        "created topic"
                    );
                    if configured.replication_factor < 3 {
                        tracing::warn!(
                            topic = %spec.name,
                            replication_factor = configured.replication_factor,
                            "topic created with fewer than 3 replicas: losing {} broker(s) can lose acknowledged records; \
                             fine for development, not for production",
                            configured.replication_factor
                        );
                    }
                    outcomes[*i] = Some(EnsureOutcome {
                        topic: spec.name.clone(),
                        status: TopicStatus::Created,
                        partitions: spec.partitions,
                        replication_factor: configured.replication_factor,
                        min_insync_replicas: Some(configured.min_insync_replicas),
                        configured: *configured,
                        differences: Vec::new(),
                    });
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => raced.push((*i, *spec, *configured)),
                Err((name, code)) => anyhow::bail!(
                    "creating topic `{name}` failed: {code}; check that all {brokers} broker(s) are up and that logpipe \
                     may create topics, or create it by hand with {} partitions, replication factor {} and \
                     min.insync.replicas={}",
                    spec.partitions,
                    configured.replication_factor,
                    configured.min_insync_replicas
                ),
            }
        }
        let names: Vec<&str> = missing
            .iter()
            .map(|(_, spec, _)| spec.name.as_str())
            .collect();
        wait_until_visible(&admin, &names, timeout).await;
        if !raced.is_empty() {
            // Created by someone else an instant ago: the broker answering metadata may not list
            // it yet (a controller's change reaches each broker on its own schedule).
            let racing: Vec<&str> = raced
                .iter()
                .map(|(_, spec, _)| spec.name.as_str())
                .collect();
            wait_until_visible(&admin, &racing, timeout).await;
            let metadata = fetch_metadata(&admin, timeout).await?;
            let layouts: Vec<_> = raced
                .iter()
                .map(|(_, spec, _)| topic_layout(&metadata, &spec.name))
                .collect();
            drop(metadata);
            for ((i, spec, configured), layout) in raced.into_iter().zip(layouts) {
                let layout = layout.with_context(|| {
                    format!(
                        "topic `{}` already exists but is not in the cluster metadata yet; run again in a moment",
                        spec.name
                    )
                })?;
                outcomes[i] =
                    Some(inspect_existing(&admin, spec, configured, layout, timeout).await);
            }
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// (partitions, fewest replicas of any partition) of `name`, if it exists.
fn topic_layout(metadata: &Metadata, name: &str) -> Option<(i32, i32)> {
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())?;
    let replicas = topic.partitions().iter().map(|p| p.replicas().len() as i32);
    Some((topic.partitions().len() as i32, replicas.min().unwrap_or(0)))
}

/// An existing topic against its configuration: its min.insync.replicas read from the broker,
/// each difference logged as a warning.
async fn inspect_existing(
    admin: &AdminClient<DefaultClientContext>,
    spec: &TopicSpec,
    configured: Configured,
    (partitions, replication_factor): (i32, i32),
    timeout: Duration,
) -> EnsureOutcome {
    let min_insync_replicas = match describe_configs(admin, &spec.name, timeout).await {
        Ok(configs) => min_insync_of(&configs),
        Err(why) => {
            tracing::debug!(topic = %spec.name, %why, "min.insync.replicas unknown");
            None
        }
    };
    let differences = differences(
        &spec.name,
        partitions,
        replication_factor,
        min_insync_replicas,
        configured,
    );
    for d in &differences {
        tracing::warn!(
            topic = %spec.name,
            setting = d.setting,
            actual = d.actual,
            configured = d.configured,
            "existing topic differs from the configuration (logpipe never alters existing topics): {}",
            d.advice
        );
    }
    EnsureOutcome {
        topic: spec.name.clone(),
        status: TopicStatus::Exists,
        partitions,
        replication_factor,
        min_insync_replicas,
        configured,
        differences,
    }
}

/// Waits (up to `timeout`) until every topic in `names` shows in the metadata with a leader for
/// each partition. The controller acknowledges a creation before every broker has it, so without
/// this the next command (or a consumer's subscription) can be told the topic does not exist.
async fn wait_until_visible(
    admin: &std::sync::Arc<AdminClient<DefaultClientContext>>,
    names: &[&str],
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let visible = fetch_metadata(admin, timeout).await.is_ok_and(|metadata| {
            names.iter().all(|name| {
                metadata.topics().iter().any(|t| {
                    t.name() == *name
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
        });
        if visible {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(topics = ?names, ?timeout, "created topics are not in the cluster metadata yet");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where an existing topic differs from `configured`, each with what to do. More partitions than
/// configured is not a difference: it only allows more consumers.
fn differences(
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    min_insync_replicas: Option<i32>,
    configured: Configured,
) -> Vec<Difference> {
    let mut found = Vec::new();
    if partitions < configured.partitions {
        found.push(Difference {
            setting: "partitions",
            actual: partitions,
            configured: configured.partitions,
            advice: format!(
                "consumer parallelism is capped at {partitions}; add partitions with \
                 `kafka-topics.sh --alter --topic {topic} --partitions {}` (it changes which partition a key maps to)",
                configured.partitions
            ),
        });
    }
    if replication_factor != configured.replication_factor {
        let meaning = if replication_factor < configured.replication_factor {
            format!(
                "fewer copies than configured: losing {replication_factor} broker(s) can lose acknowledged records"
            )
        } else {
            "more copies than configured (safe, uses more disk)".to_string()
        };
        found.push(Difference {
            setting: "replication.factor",
            actual: replication_factor,
            configured: configured.replication_factor,
            advice: format!(
                "{meaning}; change it with `kafka-reassign-partitions.sh`, or set \
                 kafka.replication_factor = {replication_factor} to accept it"
            ),
        });
    }
    if let Some(actual) = min_insync_replicas {
        if actual != configured.min_insync_replicas {
            let meaning = if actual > replication_factor {
                format!(
                    "above the topic's replication factor ({replication_factor}): every acks=all write fails"
                )
            } else if actual < configured.min_insync_replicas {
                let copies = if actual == 1 { "copy" } else { "copies" };
                format!("acks=all writes are acknowledged with only {actual} {copies}")
            } else {
                format!("acks=all writes fail as soon as fewer than {actual} replicas are in sync")
            };
            found.push(Difference {
                setting: MIN_INSYNC,
                actual,
                configured: configured.min_insync_replicas,
                advice: format!(
                    "{meaning}; change it with `kafka-configs.sh --alter --entity-type topics --entity-name {topic} \
                     --add-config min.insync.replicas={}`, or set kafka.min_insync_replicas = {actual} to accept it",
                    configured.min_insync_replicas
                ),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURED: Configured = Configured {
        partitions: 12,
        replication_factor: 3,
        min_insync_replicas: 2,
    };

    fn found(diffs: &[Difference]) -> Vec<(&str, i32, i32)> {
        diffs
            .iter()
            .map(|d| (d.setting, d.actual, d.configured))
            .collect()
    }

    #[test]
    fn a_topic_as_configured_or_with_more_partitions_has_no_differences() {
        assert_eq!(differences("t", 12, 3, Some(2), CONFIGURED), vec![]);
        assert_eq!(differences("t", 24, 3, Some(2), CONFIGURED), vec![]);
        // A broker that does not report min.insync.replicas is not a difference.
        assert_eq!(differences("t", 12, 3, None, CONFIGURED), vec![]);
    }

    #[test]
    fn each_difference_says_what_it_means_and_what_to_do() {
        let weak = differences("app", 6, 1, Some(1), CONFIGURED);
        assert_eq!(
            found(&weak),
            vec![
                ("partitions", 6, 12),
                ("replication.factor", 1, 3),
                ("min.insync.replicas", 1, 2)
            ]
        );
        assert!(weak[0].advice.contains("capped at 6"), "{}", weak[0].advice);
        assert!(weak[0].advice.contains("--topic app --partitions 12"));
        assert!(
            weak[1].advice.contains("losing 1 broker(s)"),
            "{}",
            weak[1].advice
        );
        assert!(weak[1].advice.contains("kafka.replication_factor = 1"));
        assert!(weak[2].advice.contains("only 1 copy"), "{}", weak[2].advice);
        assert!(weak[2]
            .advice
            .contains("--entity-name app --add-config min.insync.replicas=2"));

        let strict = differences("app", 12, 3, Some(3), CONFIGURED);
        assert_eq!(found(&strict), vec![("min.insync.replicas", 3, 2)]);
        assert!(
            strict[0]
                .advice
                .contains("fewer than 3 replicas are in sync"),
            "{}",
            strict[0].advice
        );
        let unwritable = differences(
            "app",
            12,
            1,
            Some(2),
            Configured {
                replication_factor: 1,
                min_insync_replicas: 1,
                ..CONFIGURED
            },
        );
        assert!(
            unwritable[0].advice.contains("every acks=all write fails"),
            "{}",
            unwritable[0].advice
        );
    }
}
