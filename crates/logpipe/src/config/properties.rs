//! Checks of the librdkafka properties a config passes through (`kafka.properties`,
//! `producer.properties`, `consumer.properties`): names and values librdkafka accepts, and none of
//! the properties logpipe owns.

use std::collections::BTreeMap;

use anyhow::bail;
use rdkafka::ClientConfig;

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
            bail!("config key `{section}.\"{key}\"`: librdkafka rejects it: {e}");
        }
    }
    Ok(())
}
