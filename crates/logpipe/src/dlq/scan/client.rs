//! The scan's librdkafka plumbing: its client context, blocking calls run off the async runtime,
//! and the two questions asked when a scan opens (the DLQ's partitions, a group's committed
//! offsets).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

/// The partitions of the DLQ topic; an error that says how to create it when it is missing.
pub(super) async fn dlq_partitions(
    consumer: &Arc<StreamConsumer<ScanContext>>,
    topic: &str,
    brokers: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    let metadata = blocking(consumer, {
        let topic = topic.to_string();
        move |c| c.fetch_metadata(Some(&topic), timeout)
    })
    .await
    .with_context(|| {
        format!(
            "reading metadata of the DLQ topic `{topic}` (is the broker at `{brokers}` reachable?)"
        )
    })?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => anyhow::bail!(
            "the DLQ topic `{topic}` does not exist on `{brokers}`: nothing has been dead-lettered there yet, or \
             kafka.dlq_topic names another topic. `logpipe topics ensure` creates it"
        ),
    }
}

/// The offsets `group` committed on the DLQ partitions (a partition without one is absent).
pub(super) async fn committed_offsets(
    consumer: &Arc<StreamConsumer<ScanContext>>,
    topic: &str,
    partitions: &[i32],
    group: &str,
    timeout: Duration,
) -> anyhow::Result<HashMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    // A coordinator that is moving or still loading (a fresh or restarting cluster)
    // answers NotCoordinator / CoordinatorLoadInProgress for a moment: asked again.
    let deadline = Instant::now() + timeout;
    let found = loop {
        let attempt = tpl.clone();
        let result = blocking(consumer, move |c| c.committed_offsets(attempt, timeout)).await;
        let moving = result
            .as_ref()
            .err()
            .and_then(|e| e.downcast_ref::<KafkaError>())
            .and_then(KafkaError::rdkafka_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    RDKafkaErrorCode::NotCoordinator
                        | RDKafkaErrorCode::CoordinatorLoadInProgress
                        | RDKafkaErrorCode::CoordinatorNotAvailable
                )
            });
        if moving && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break result.with_context(|| {
            format!("reading the committed offsets of consumer group `{group}` (dlq.replay_group)")
        })?;
    };
    let mut committed = HashMap::new();
    for e in found.elements() {
        if let Offset::Offset(o) = e.offset() {
            committed.insert(e.partition(), o);
        }
    }
    Ok(committed)
}

/// The scan's client context: reaching the end of a partition is expected here, not an error
/// worth a log line (librdkafka reports it through the error callback too).
pub(super) struct ScanContext;

impl ClientContext for ScanContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "end of a DLQ partition")
            }
            error => tracing::warn!(%error, reason, "Kafka client error while reading the DLQ"),
        }
    }
}

impl ConsumerContext for ScanContext {}

/// Runs a blocking librdkafka call off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    consumer: &Arc<StreamConsumer<ScanContext>>,
    call: impl FnOnce(&StreamConsumer<ScanContext>) -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let consumer = consumer.clone();
    Ok(tokio::task::spawn_blocking(move || call(&consumer)).await??)
}
