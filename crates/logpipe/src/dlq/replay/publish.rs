//! Replay's writes to Kafka: the producer, one record's produce, and the checks that the topic a
//! record goes to exists (the parked topic is created when absent).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use super::action::Action;
use crate::config::Config;
use crate::dlq::record::DlqRecord;
use crate::kafka::admin::{ensure_topics, TopicSpec};
use crate::kafka::{client_config, producer_config};

/// The idempotent, acks=all producer replay publishes with; the `[producer]` settings
/// (compression, linger, delivery timeout, properties) apply.
pub(super) fn replay_producer(config: &Config, brokers: &str) -> anyhow::Result<FutureProducer> {
    let p = &config.producer;
    let client = producer_config(
        config,
        brokers,
        "dlq-replay",
        p.linger,
        p.delivery_timeout,
        &[],
    );
    client
        .create()
        .context("creating the Kafka producer for the replay")
}

/// Checks, before the first record goes there, that `destination` can take it: an original topic
/// must exist (replay does not create application topics); the parked topic is created.
pub(super) async fn check_destination(
    config: &Config,
    brokers: &str,
    producer: &Arc<FutureProducer>,
    action: Action,
    destination: &str,
    (partition, offset): (i32, i64),
) -> anyhow::Result<()> {
    match action {
        Action::Park => ensure_parked_topic(config, brokers).await,
        Action::Replay => {
            if topic_exists(producer, destination, config.kafka.request_timeout).await? {
                Ok(())
            } else {
                anyhow::bail!(
                    "the original topic `{destination}` of DLQ record {partition}/{offset} does not exist; \
                     create it (`logpipe topics ensure` creates kafka.topic), or leave such records out with \
                     --type/--class/--since, then run the replay again"
                )
            }
        }
    }
}

/// Enqueues one record; waits while librdkafka's queue is full.
pub(super) async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    record: &DlqRecord,
    headers: OwnedHeaders,
    timestamp: Option<i64>,
) -> Result<DeliveryFuture, KafkaError> {
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    if let Some(ts) = timestamp {
        out = out.timestamp(ts);
    }
    loop {
        match producer.send_result(out) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                out = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

async fn topic_exists(
    producer: &Arc<FutureProducer>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let producer = producer.clone();
    let name = topic.to_string();
    let metadata =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), timeout))
            .await?
            .with_context(|| format!("reading metadata of `{topic}`"))?;
    Ok(metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Creates `kafka.parked_topic` when absent.
async fn ensure_parked_topic(config: &Config, brokers: &str) -> anyhow::Result<()> {
    let client = client_config(&config.kafka, brokers, "admin", &Default::default());
    let specs: Vec<TopicSpec> = TopicSpec::from_config(&config.kafka)
        .into_iter()
        .filter(|s| s.name == config.kafka.parked_topic)
        .collect();
    ensure_topics(&client, &specs, config.kafka.request_timeout)
        .await
        .with_context(|| format!("creating the parked topic `{}`", config.kafka.parked_topic))?;
    Ok(())
}
