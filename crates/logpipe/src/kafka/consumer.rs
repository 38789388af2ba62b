//! The consumer group member's Kafka client settings, beside the producer's in [`super`]: group
//! id, manual commits, the group protocol (classic with a client-side assignor, or KIP-848
//! `consumer` with the broker assigning), fetch settings, then the pass-through properties; and
//! reading a KIP-848 group's session timeout from the broker.

use anyhow::Context as _;
use rdkafka::ClientConfig;

use super::{apply_properties, base_config};
use crate::config::{Config, ConsumerConfig, GroupProtocol};

/// The client of member `member` of the configured group.
pub fn member_config(config: &Config, bootstrap: &str, member: &str) -> ClientConfig {
    let c = &config.consumer;
    let mut client = base_config(&config.kafka, bootstrap, "consumer");
    client
        .set("group.id", &c.group_id)
        .set(
            "client.id",
            format!("{}-consumer-{member}", config.kafka.client_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "max.poll.interval.ms",
            c.max_poll_interval.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "5000")
        // librdkafka prefetches up to 1 MiB per partition per fetch, *compressed*: with lz4 and
        // 12 partitions one round of fetch answers held ~50 MiB of decompressed batches and ~100k
        // queued messages (~45 MiB of message ops), most of a draining consumer's memory (peak
        // RSS 295-332 MiB). 256 KiB per partition and a 16 MiB queue brought the drain's peak RSS
        // to 193-202 MiB at the same rate (docs/performance.md, "The consumer's CPU per event
        // and its memory"). `queued.min.messages` stays at its default: lowering it to 10,000
        // cut the drain rate by more than half. `consumer.properties` overrides either.
        .set("fetch.message.max.bytes", "262144")
        .set("queued.max.messages.kbytes", "16384");
    // Kafka answers a waiting fetch as soon as records arrive (the high watermark moves), so on a
    // cluster the wait only bounds idle fetches and librdkafka's 500 ms costs no latency. The
    // embedded mock cluster holds every fetch for the whole wait instead: 5 ms there (on another
    // broker that holds fetches the same way, 500 ms gave an end-to-end p50 of ~170 ms at 5,000
    // events/s, 5 ms ~14 ms). `consumer.properties."fetch.wait.max.ms"` overrides either.
    if config.kafka.is_embedded() {
        client.set("fetch.wait.max.ms", "5");
    }
    group_settings(&mut client, c);
    apply_properties(&mut client, &config.kafka, &c.properties);
    client
}

/// The group-protocol settings of a member's client. The classic-only properties are set only
/// with the classic protocol: with `group.protocol=consumer` librdkafka refuses to create a
/// consumer that sets any of them (the broker assigns and owns the session timeout there).
pub fn group_settings(client: &mut rdkafka::ClientConfig, c: &ConsumerConfig) {
    client.set("group.protocol", c.group_protocol.as_str());
    match c.group_protocol {
        GroupProtocol::Classic => {
            client
                .set(
                    "partition.assignment.strategy",
                    c.assignment_strategy.as_str(),
                )
                .set(
                    "session.timeout.ms",
                    c.session_timeout.as_millis().to_string(),
                );
        }
        GroupProtocol::Consumer => {
            if !c.remote_assignor.is_empty() {
                client.set("group.remote.assignor", &c.remote_assignor);
            }
        }
    }
}
/// Who assigns partitions, for the start-up log.
pub fn assignment(c: &ConsumerConfig) -> String {
    match c.group_protocol {
        GroupProtocol::Classic => format!("{} (client-side)", c.assignment_strategy.as_str()),
        GroupProtocol::Consumer if c.remote_assignor.is_empty() => {
            "the broker's default assignor (server-side)".into()
        }
        GroupProtocol::Consumer => format!("{} (server-side)", c.remote_assignor),
    }
}
/// The config key that holds a consumer-protocol group's session timeout.
pub const GROUP_SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";
/// The group's effective `consumer.session.timeout.ms`, from a DescribeConfigs of the group
/// (Kafka 4.0+ answers it for any group id, with the broker's value when the group has none).
pub async fn group_session_timeout(
    config: &Config,
    bootstrap: &str,
) -> anyhow::Result<std::time::Duration> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let client = super::client_config(
        &config.kafka,
        bootstrap,
        "consumer-admin",
        &Default::default(),
    );
    let admin: AdminClient<DefaultClientContext> =
        client.create().context("creating a Kafka admin client")?;
    let options = AdminOptions::new().request_timeout(Some(config.kafka.request_timeout));
    let group = &config.consumer.group_id;
    let results = admin
        .describe_configs([&ResourceSpecifier::Group(group)], &options)
        .await
        .context("describing the group's configs")?;
    let resource = results
        .into_iter()
        .next()
        .context("the broker returned no group configs")?
        .context("describing the group's configs")?;
    let value = resource
        .get(GROUP_SESSION_TIMEOUT)
        .and_then(|entry| entry.value.clone())
        .with_context(|| {
            format!("the broker returned no `{GROUP_SESSION_TIMEOUT}` (a broker before Kafka 4.0?)")
        })?;
    let ms: u64 = value
        .parse()
        .with_context(|| format!("`{GROUP_SESSION_TIMEOUT}` = `{value}` is not a number"))?;
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::ClientConfig;

    use super::group_settings;
    use crate::config::{ConsumerConfig, GroupProtocol, CLASSIC_ONLY_PROPERTIES};

    fn member_client(c: &ConsumerConfig) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "unit")
            .set(
                "max.poll.interval.ms",
                c.max_poll_interval.as_millis().to_string(),
            );
        group_settings(&mut client, c);
        client
    }

    #[test]
    fn librdkafka_accepts_the_member_settings_of_both_protocols() {
        let classic = ConsumerConfig::default();
        let client = member_client(&classic);
        assert_eq!(client.get("group.protocol"), Some("classic"));
        assert_eq!(
            client.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(client.get("session.timeout.ms"), Some("30000"));
        client
            .create::<BaseConsumer>()
            .expect("a classic member's settings");

        for assignor in ["", "uniform", "range"] {
            let consumer = ConsumerConfig {
                group_protocol: GroupProtocol::Consumer,
                remote_assignor: assignor.into(),
                ..ConsumerConfig::default()
            };
            let client = member_client(&consumer);
            assert_eq!(client.get("group.protocol"), Some("consumer"));
            for (key, _) in CLASSIC_ONLY_PROPERTIES {
                assert_eq!(
                    client.get(key),
                    None,
                    "{key} set under the consumer protocol"
                );
            }
            let expected = (!assignor.is_empty()).then_some(assignor);
            assert_eq!(client.get("group.remote.assignor"), expected);
            client
                .create::<BaseConsumer>()
                .unwrap_or_else(|e| panic!("a consumer-protocol member ({assignor:?}): {e}"));
        }
    }

    #[test]
    fn librdkafka_refuses_a_classic_only_property_under_the_consumer_protocol() {
        // Why the member must not set them: the config check relies on this refusal.
        for (key, value) in [
            ("session.timeout.ms", "30000"),
            ("partition.assignment.strategy", "range"),
            ("heartbeat.interval.ms", "1000"),
            ("group.protocol.type", "consumer"),
        ] {
            let consumer = ConsumerConfig {
                group_protocol: GroupProtocol::Consumer,
                ..ConsumerConfig::default()
            };
            let mut client = member_client(&consumer);
            client.set(key, value);
            let error = client.create::<BaseConsumer>().err().unwrap_or_else(|| {
                panic!("librdkafka accepted {key} with group.protocol=consumer")
            });
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }
}
