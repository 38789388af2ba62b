//! `[kafka.properties]`, `[producer.properties]` and `[consumer.properties]` from every source:
//! pass-through, reserved names refused, secrets redacted, and `--set` reaching a property
//! through a quoted name.

use super::{err, load};
use crate::config::*;

#[test]
fn security_properties_pass_through_and_reserved_ones_are_refused() {
    let file = r#"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "logpipe"
"sasl.password" = "pw"
"ssl.endpoint.identification.algorithm" = "https"
"socket.keepalive.enable" = "true"
"#;
    let c = load(Some(file), &[], &[]).expect("TLS/SASL properties are accepted by librdkafka");
    assert_eq!(c.kafka.properties["sasl.mechanisms"], "SCRAM-SHA-512");

    for reserved in [
        "acks",
        "enable.idempotence",
        "bootstrap.servers",
        "enable.auto.commit",
    ] {
        let file = format!("[producer.properties]\n\"{reserved}\" = \"1\"\n");
        let message = err(load(Some(&file), &[], &[]));
        assert!(
            message.contains(reserved) && message.contains("cannot be set"),
            "{message}"
        );
    }
    let message = err(load(
        Some("[kafka.properties]\n\"security.protocol\" = \"carrier-pigeon\"\n"),
        &[],
        &[],
    ));
    assert!(message.contains("security.protocol"), "{message}");
}

#[test]
fn set_reaches_librdkafka_properties_through_a_quoted_name() {
    let file = "[consumer.properties]\n\"fetch.wait.max.ms\" = \"100\"\n";
    let flags = [
        // Replaces the file's value.
        ("consumer.properties.\"fetch.wait.max.ms\"", "10"),
        // New keys: properties are open maps.
        ("producer.properties.\"linger.ms\"", "7"),
        ("kafka.properties.\"socket.keepalive.enable\"", "true"),
        // A name without dots needs no quotes, as in TOML.
        ("kafka.properties.debug", "broker"),
        // Quotes around any name are TOML too.
        ("kafka.\"topic\"", "quoted-topic"),
    ];
    let c = load(Some(file), &[], &flags).unwrap();
    assert_eq!(c.consumer.properties["fetch.wait.max.ms"], "10");
    assert_eq!(c.producer.properties["linger.ms"], "7");
    assert_eq!(c.kafka.properties["socket.keepalive.enable"], "true");
    assert_eq!(c.kafka.properties["debug"], "broker");
    assert_eq!(c.kafka.topic, "quoted-topic");
    // Values stay strings: librdkafka reads them, and checks them at start.
    let message = err(load(
        None,
        &[],
        &[("consumer.properties.\"fetch.wait.max.ms\"", "soon")],
    ));
    assert!(message.contains("fetch.wait.max.ms"), "{message}");
}

#[test]
fn set_of_an_unquoted_dotted_property_says_to_quote_it() {
    let message = err(load(
        None,
        &[],
        &[("consumer.properties.fetch.wait.max.ms", "10")],
    ));
    assert!(
        message.contains(
            "property names contain dots: quote them, e.g. consumer.properties.\"fetch.wait.max.ms\"=VALUE"
        ),
        "{message}"
    );
    // The value is not echoed: it may be a secret.
    let message = err(load(
        None,
        &[],
        &[("kafka.properties.sasl.password", "pw-in-clear")],
    ));
    assert!(!message.contains("pw-in-clear"), "{message}");
    assert!(
        message.contains("kafka.properties.\"sasl.password\""),
        "{message}"
    );
}

#[test]
fn set_still_refuses_unknown_keys_outside_properties_and_bad_paths() {
    for (key, needle) in [
        ("kafka.brokerz", "unknown config key `kafka.brokerz`"),
        (
            "kafka.\"no.such\"",
            "unknown config key `kafka.\"no.such\"`",
        ),
        (
            "consumer.tagz.\"a.b\"",
            "unknown config key `consumer.tagz.\"a.b\"`",
        ),
        (
            "kafka.brokers.x",
            "config key `kafka.brokers` is not a table",
        ),
        ("consumer.properties", "expected a section"),
        (
            "consumer.properties.\"fetch.wait.max.ms",
            "unterminated quote",
        ),
        (
            "consumer.properties.\"a\"b",
            "expected `.` after a quoted name",
        ),
        ("kafka..topic", "each bare or in double quotes"),
        ("kafka.topic.", "each bare or in double quotes"),
    ] {
        let message = err(load(None, &[], &[(key, "1")]));
        assert!(message.contains(needle), "{key}: {message}");
    }
}

#[test]
fn set_hits_the_same_refusal_of_reserved_properties_as_the_file() {
    for (key, reserved) in [
        ("producer.properties.acks", "acks"),
        (
            "producer.properties.\"enable.idempotence\"",
            "enable.idempotence",
        ),
        (
            "consumer.properties.\"enable.auto.commit\"",
            "enable.auto.commit",
        ),
        (
            "kafka.properties.\"bootstrap.servers\"",
            "bootstrap.servers",
        ),
    ] {
        let message = err(load(None, &[], &[(key, "1")]));
        assert!(
            message.contains(reserved) && message.contains("cannot be set"),
            "{key}: {message}"
        );
    }
}

#[test]
fn each_properties_table_has_its_environment_family() {
    let env = [
        ("LOGPIPE_CONSUMER_PROPERTY_FETCH_WAIT_MAX_MS", "10"),
        ("LOGPIPE_PRODUCER_PROPERTY_LINGER_MS", "7"),
        ("LOGPIPE_KAFKA_PROPERTY_SASL_USERNAME", "alice"),
    ];
    let c = load(None, &env, &[]).unwrap();
    assert_eq!(c.consumer.properties["fetch.wait.max.ms"], "10");
    assert_eq!(c.producer.properties["linger.ms"], "7");
    assert_eq!(c.kafka.properties["sasl.username"], "alice");
    let message = err(load(
        None,
        &[("LOGPIPE_CONSUMER_PROPERTY_ENABLE_AUTO_COMMIT", "true")],
        &[],
    ));
    assert!(message.contains("cannot be set"), "{message}");
}

#[test]
fn secret_properties_set_by_flag_are_redacted() {
    let flags = [
        ("kafka.properties.\"sasl.password\"", "pw-from-set"),
        ("consumer.properties.\"sasl.password\"", "pw-consumer"),
        ("kafka.properties.\"sasl.username\"", "alice"),
    ];
    let c = load(None, &[], &flags).unwrap();
    assert_eq!(c.kafka.properties["sasl.password"], "pw-from-set");
    let shown = toml::to_string(&redact::redacted(&c)).unwrap();
    for secret in ["pw-from-set", "pw-consumer"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("alice"), "{shown}");
}
