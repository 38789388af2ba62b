//! Checks of the librdkafka properties a config passes through (`kafka.properties`,
//! `producer.properties`, `consumer.properties`): names and values librdkafka accepts, and none of
//! the properties logpipe owns.

use std::collections::BTreeMap;

use anyhow::bail;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::ClientConfig;

use super::redact::{is_secret_property, MASK};

/// Properties logpipe owns; setting them through `properties` would break a guarantee.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `kafka.brokers` instead"),
    ("metadata.broker.list", "set `kafka.brokers` instead"),
    ("enable.idempotence", "the producer is always idempotent"),
    ("acks", "the producer always uses acks=all"),
    ("request.required.acks", "the producer always uses acks=all"),
    (
        "enable.auto.commit",
        "offsets are committed by logpipe after the work is done",
    ),
];

/// Checks librdkafka property names and values without creating a client, so a typo fails at
/// start with the key named rather than at first use.
pub fn check_properties(
    section: &str,
    properties: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (key, value) in properties {
        if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| reserved == key) {
            bail!("config key `{section}.\"{key}\"`: cannot be set here; {why}");
        }
        let mut probe = ClientConfig::new();
        probe.set(key, value);
        if let Err(e) = probe.create_native_config() {
            bail!(
                "config key `{section}.\"{key}\"`: librdkafka rejects it: {}",
                rejection(&e, key, value)
            );
        }
    }
    Ok(())
}

/// What librdkafka said, without the value when it may be a secret: a credential property, or
/// a name librdkafka does not know (`sasl.jaas.config`, a Java client setting that carries a
/// password, is one).
fn rejection(err: &KafkaError, key: &str, value: &str) -> String {
    let KafkaError::ClientConfig(result, description, _, _) = err else {
        return err.to_string();
    };
    let unknown = *result == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN;
    if !(unknown || is_secret_property(key)) || value.is_empty() {
        return format!("{description} (value {value:?})");
    }
    let description = description.replace(value, MASK);
    if unknown {
        format!("{description}: not a librdkafka property (Java client settings such as sasl.jaas.config have librdkafka equivalents: sasl.mechanism, sasl.username, sasl.password)")
    } else {
        description
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_secret_or_unknown_property_never_shows_its_value() {
        let jaas = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="k" password="jaas-222";"#;
        let mut properties = BTreeMap::from([("sasl.jaas.config".to_string(), jaas.to_string())]);
        let error = check_properties("kafka.properties", &properties)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("jaas-222"), "{error}");
        properties.clear();
        properties.insert("no.such.property".into(), "value-444".into());
        let error = check_properties("kafka.properties", &properties)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("value-444"), "{error}");
        assert!(error.contains("not a librdkafka property"), "{error}");
        properties.clear();
        properties.insert("linger.ms".into(), "soon".into());
        let error = check_properties("kafka.properties", &properties)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("soon"),
            "an ordinary value is shown: {error}"
        );
    }
}
