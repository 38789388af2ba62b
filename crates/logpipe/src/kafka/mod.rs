//! Everything that talks to Kafka but is not a role: building client configurations from
//! [`KafkaConfig`] (the consumer member's in [`consumer`]), the record headers logpipe writes, topic administration ([`admin`]), the
//! embedded in-process broker ([`embedded`]), the reachability probe ([`health`]) and the
//! start-up login check ([`login`]).

pub mod admin;
pub mod consumer;
pub mod embedded;
pub mod health;
pub mod login;
pub mod watermarks;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Record headers written by the producer and read by the consumer.
pub mod headers {
    /// Milliseconds since the Unix epoch when the gateway received the event (ASCII decimal).
    /// The consumer measures end-to-end latency from it.
    pub const INGEST_TIME_MS: &str = "logpipe-ingest-ms";
    /// The request id of the HTTP request that carried the event.
    pub const REQUEST_ID: &str = "logpipe-request-id";
}

/// The base of every logpipe Kafka client: brokers, client id with the role, timeouts. No
/// pass-through properties: clients with typed settings (producer, consumer) set those first and
/// then call [`apply_properties`], so an explicit property always wins over a derived setting.
pub fn base_config(kafka: &KafkaConfig, bootstrap: &str, role: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("{}-{role}", kafka.client_id))
        .set(
            "socket.timeout.ms",
            kafka.request_timeout.as_millis().max(10).to_string(),
        )
        // librdkafka's own log noise kept to warnings.
        .set("log_level", "4");
    config
}

/// A client without typed settings (admin, health probes): the base plus `kafka.properties` and
/// `extra`.
pub fn client_config(
    kafka: &KafkaConfig,
    bootstrap: &str,
    role: &str,
    extra: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = base_config(kafka, bootstrap, role);
    apply_properties(&mut config, kafka, extra);
    config
}

/// Every producer logpipe creates (the producer service, the dead-letter writer, `dlq replay`):
/// idempotent with acks=all, `producer.compression`, the given linger and delivery timeout, then
/// `settings`, then `kafka.properties` and `producer.properties` over all of it.
pub fn producer_config(
    config: &crate::config::Config,
    bootstrap: &str,
    role: &str,
    linger: std::time::Duration,
    delivery_timeout: std::time::Duration,
    settings: &[(&str, String)],
) -> ClientConfig {
    let mut client = base_config(&config.kafka, bootstrap, role);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", config.producer.compression.as_str())
        .set("linger.ms", linger.as_millis().to_string())
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        // A produce request must not time out on the client before every record in it has: a
        // record whose request timed out (it may sit in the leader's log, waiting for the ISR)
        // but whose own timeout had not passed was sent again after the idempotent producer
        // bumped its epoch, so the broker could not tell the copy from the original (seen with
        // two of three brokers down: records stored twice). With the request outliving the
        // delivery timeout, a timed-out request's records have all failed and none is resent.
        .set(
            "socket.timeout.ms",
            (config.kafka.request_timeout.max(delivery_timeout)
                + std::time::Duration::from_secs(5))
            .as_millis()
            .to_string(),
        );
    for (key, value) in settings {
        client.set(*key, value);
    }
    apply_properties(&mut client, &config.kafka, &config.producer.properties);
    client
}

/// Applies `kafka.properties`, then the role's own properties, over whatever is set
/// (`producer.properties."batch.num.messages"` wins over `producer.batch_max_messages`).
pub fn apply_properties(
    config: &mut ClientConfig,
    kafka: &KafkaConfig,
    extra: &BTreeMap<String, String>,
) {
    for (key, value) in kafka.properties.iter().chain(extra) {
        config.set(key, value);
    }
}
