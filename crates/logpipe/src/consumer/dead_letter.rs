//! The consumer's side of the dead-letter topic: an idempotent producer (acks=all) that writes
//! records the pipeline gives up on, with the headers described in [`crate::dlq`]. The pipeline
//! commits a source offset only after the DLQ write of every record below it is acknowledged.

use std::time::Duration;

use anyhow::Context;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::Config;
use crate::dlq::DlqContext;
use crate::kafka::producer_config;

/// One record on its way to the DLQ.
#[derive(Debug, Clone)]
pub struct Letter {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub context: DlqContext,
    /// Original headers kept as they were (`logpipe-ingest-ms`, `logpipe-request-id`).
    pub carried: Vec<(&'static str, Vec<u8>)>,
}

/// Writes DLQ records.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

/// How long one DLQ write may wait for Kafka before it counts as a DLQ outage (and is retried).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

impl DeadLetters {
    /// `producer.properties` apply here too, as to every producer logpipe creates.
    pub fn new(config: &Config, bootstrap: &str) -> anyhow::Result<Self> {
        let kafka = &config.kafka;
        // Compression off: DLQ writes are few, and the original value bytes go as they came.
        let client = producer_config(
            config,
            bootstrap,
            "dlq-producer",
            Duration::from_millis(5),
            DELIVERY_TIMEOUT,
            &[("compression.type", "none".into())],
        );
        let producer: FutureProducer = client
            .create()
            .context("creating the dead-letter producer")?;
        Ok(DeadLetters {
            producer,
            topic: kafka.dlq_topic.clone(),
        })
    }

    /// Sends every letter and waits for Kafka's acknowledgements. The result of each letter, in
    /// order; a failed one is the caller's to send again (an outage, not the record's fault).
    pub async fn send(&self, letters: &[Letter]) -> Vec<Result<(), KafkaError>> {
        let sends = letters.iter().map(|letter| async move {
            let carried: Vec<(&str, &[u8])> = letter
                .carried
                .iter()
                .map(|(k, v)| (*k, v.as_slice()))
                .collect();
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(letter.context.to_headers(&carried));
            if let Some(key) = &letter.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &letter.value {
                record = record.payload(value.as_slice());
            }
            self.producer
                .send(record, DELIVERY_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        futures::future::join_all(sends).await
    }

    /// Waits (bounded) for anything still queued; called at shutdown.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}
