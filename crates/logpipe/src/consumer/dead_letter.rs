//! The consumer's side of the dead-letter topic: an idempotent producer (acks=all) that writes
//! records the pipeline gives up on, with the headers described in [`crate::dlq`]. The pipeline
//! commits a source offset only after the DLQ write of every record below it is acknowledged.
//!
//! A write the dead-letter topic refuses for good ([`permanent_refusal`]: too large, not
//! authorized, no such topic, invalid) is not an outage: retrying it would pause the member's
//! partitions forever. Such a record goes to the parking topic instead ([`DeadLetters::park`]),
//! its value cut to fit and the refusal in its headers.

use std::time::Duration;

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
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
    /// Where a record goes when the DLQ refuses it for good (`kafka.parked_topic`).
    parked: String,
}

/// Why the dead-letter topic refused a record for good: sending it again cannot succeed, so it is
/// not an outage. Every other failure (timeouts, leaders moving, brokers down) is retriable.
pub fn permanent_refusal(error: &KafkaError) -> Option<&'static str> {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code()? {
        MessageSizeTooLarge | MessageBatchTooLarge | InvalidMessageSize => {
            Some("message_too_large")
        }
        TopicAuthorizationFailed
        | ClusterAuthorizationFailed
        | TransactionalIdAuthorizationFailed => Some("not_authorized"),
        UnknownTopic | UnknownTopicOrPartition | InvalidTopic => Some("unknown_topic"),
        InvalidRecord | UnsupportedForMessageFormat => Some("invalid_record"),
        _ => None,
    }
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
            parked: kafka.parked_topic.clone(),
        })
    }

    /// Sends every letter to the dead-letter topic and waits for Kafka's acknowledgements. The
    /// result of each letter, in order; a failed one is the caller's to send again, or, when
    /// [`permanent_refusal`] says it can never pass, to [`park`](Self::park).
    pub async fn send(&self, letters: &[Letter]) -> Vec<Result<(), KafkaError>> {
        self.send_to(&self.topic, letters).await
    }

    /// Sends letters the dead-letter topic refused for good to the parking topic.
    pub async fn park(&self, letters: &[Letter]) -> Vec<Result<(), KafkaError>> {
        self.send_to(&self.parked, letters).await
    }

    /// The parking topic's name, for log lines.
    pub fn parked_topic(&self) -> &str {
        &self.parked
    }

    async fn send_to(&self, topic: &str, letters: &[Letter]) -> Vec<Result<(), KafkaError>> {
        let sends = letters.iter().map(|letter| async move {
            let carried: Vec<(&str, &[u8])> = letter
                .carried
                .iter()
                .map(|(k, v)| (*k, v.as_slice()))
                .collect();
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).headers(letter.context.to_headers(&carried));
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

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::permanent_refusal;

    #[test]
    fn refusals_that_can_never_pass_are_told_from_outages() {
        let produce = |code| KafkaError::MessageProduction(code);
        for (code, reason) in [
            (RDKafkaErrorCode::MessageSizeTooLarge, "message_too_large"),
            (RDKafkaErrorCode::MessageBatchTooLarge, "message_too_large"),
            (RDKafkaErrorCode::TopicAuthorizationFailed, "not_authorized"),
            (
                RDKafkaErrorCode::ClusterAuthorizationFailed,
                "not_authorized",
            ),
            (RDKafkaErrorCode::UnknownTopic, "unknown_topic"),
            (RDKafkaErrorCode::UnknownTopicOrPartition, "unknown_topic"),
            (RDKafkaErrorCode::InvalidRecord, "invalid_record"),
        ] {
            assert_eq!(permanent_refusal(&produce(code)), Some(reason), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert_eq!(
                permanent_refusal(&produce(code)),
                None,
                "{code:?} is an outage"
            );
        }
    }
}
