use super::*;

mod postgres_tls;
mod properties;
mod secrets;

pub(super) fn load(
    file: Option<&str>,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = file.map(|text| {
        let path = dir.path().join("logpipe.toml");
        std::fs::write(&path, text).unwrap();
        path
    });
    Config::load(&Sources {
        file: path,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        overrides: flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

pub(super) fn err(result: anyhow::Result<Config>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

#[test]
fn defaults_match_the_spec() {
    let c = load(None, &[], &[]).unwrap();
    assert_eq!(c.kafka.topic, "application-logs");
    assert_eq!(c.kafka.partitions, 12);
    assert_eq!(c.kafka.dlq_topic, "logs-dlq");
    assert_eq!(c.kafka.dlq_partitions, 3);
    assert_eq!(
        c.kafka.dlq_retention,
        std::time::Duration::from_secs(604_800)
    );
    assert_eq!(c.gateway.listen.port(), 8080);
    assert_eq!(c.producer.listen.port(), 8081);
    assert!(c.kafka.is_embedded());
}

#[test]
fn precedence_is_file_then_env_then_flags() {
    let file = "[kafka]\nbrokers = \"file:9092\"\n[postgres]\nurl = \"postgres://file/db\"\n[redis]\nurl = \"redis://file\"\n";
    let c = load(Some(file), &[], &[]).unwrap();
    assert_eq!(c.kafka.brokers, "file:9092");

    let env = [
        ("LOGPIPE_KAFKA_BROKERS", "env:9092"),
        ("LOGPIPE_POSTGRES_URL", "postgres://env/db"),
        ("LOGPIPE_REDIS_URL", "redis://env"),
    ];
    let c = load(Some(file), &env, &[]).unwrap();
    assert_eq!(
        (
            c.kafka.brokers.as_str(),
            c.postgres.url.as_str(),
            c.redis.url.as_str()
        ),
        ("env:9092", "postgres://env/db", "redis://env")
    );

    let flags = [
        ("kafka.brokers", "flag:9092"),
        ("postgres.url", "postgres://flag/db"),
        ("redis.url", "redis://flag"),
    ];
    let c = load(Some(file), &env, &flags).unwrap();
    assert_eq!(
        (
            c.kafka.brokers.as_str(),
            c.postgres.url.as_str(),
            c.redis.url.as_str()
        ),
        ("flag:9092", "postgres://flag/db", "redis://flag")
    );
}

#[test]
fn env_values_take_the_type_of_the_key() {
    let env = [
        ("LOGPIPE_GATEWAY_MAX_BATCH_EVENTS", "500"),
        ("LOGPIPE_KAFKA_CREATE_TOPICS", "false"),
        (
            "LOGPIPE_GATEWAY_API_KEYS",
            "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
        ),
        ("LOGPIPE_PRODUCER_LINGER", "20ms"),
        ("LOGPIPE_KAFKA_PROPERTY_SASL_USERNAME", "alice"),
        ("LOGPIPE_TEST_ANYTHING", "ignored"),
        ("PATH", "/usr/bin"),
    ];
    let c = load(None, &env, &[]).unwrap();
    assert_eq!(c.gateway.max_batch_events, 500);
    assert!(!c.kafka.create_topics);
    assert_eq!(
        c.gateway.api_keys,
        vec![
            Secret::from("aaaaaaaaaaaaaaaa"),
            Secret::from("bbbbbbbbbbbbbbbb")
        ]
    );
    assert_eq!(c.producer.linger, std::time::Duration::from_millis(20));
    assert_eq!(c.kafka.properties["sasl.username"], "alice");
}

#[test]
fn errors_name_the_key() {
    /// (file, environment, what the error must name)
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (Some("[kafka]\nbrokerz = \"x:1\"\n"), &[], "kafka.brokerz"),
        (Some("[nonsense]\n"), &[], "nonsense"),
        (
            Some("[gateway]\nmax_batch_events = \"many\"\n"),
            &[],
            "gateway.max_batch_events",
        ),
        (
            Some("[producer]\ncompression = \"brotli\"\n"),
            &[],
            "producer.compression",
        ),
        (
            Some("[producer]\nlinger = \"soon\"\n"),
            &[],
            "producer.linger",
        ),
        (
            Some("[gateway]\nlisten = \"nowhere\"\n"),
            &[],
            "gateway.listen",
        ),
        (Some("[kafka]\npartitions = 0\n"), &[], "kafka.partitions"),
        (
            Some("[kafka]\nbrokers = \"localhost\"\n"),
            &[],
            "kafka.brokers",
        ),
        (
            Some("[kafka.properties]\n\"no.such.property\" = \"1\"\n"),
            &[],
            "no.such.property",
        ),
        (
            Some("[postgres]\nurl = \"mysql://x/y\"\n"),
            &[],
            "postgres.url",
        ),
        (
            Some("[gateway]\napi_keys = [\"short\"]\n"),
            &[],
            "gateway.api_keys",
        ),
        (
            Some("[gateway]\nmax_batch_events = 200000\n"),
            &[],
            "producer.max_in_flight",
        ),
        (
            None,
            &[("LOGPIPE_KAFKA_BROKRES", "x:1")],
            "LOGPIPE_KAFKA_BROKRES",
        ),
        (
            None,
            &[("LOGPIPE_GATEWAY_MAX_BODY_BYTES", "lots")],
            "LOGPIPE_GATEWAY_MAX_BODY_BYTES",
        ),
        (
            None,
            &[("LOGPIPE_KAFKA_CREATE_TOPICS", "maybe")],
            "kafka.create_topics",
        ),
        (
            Some("[consumer]\nstore_streams = 5\n[postgres]\npool_size = 4\n"),
            &[],
            "consumer.store_streams",
        ),
        (Some("not toml ["), &[], "parsing config file"),
    ];
    for (file, env, needle) in cases {
        let message = err(load(*file, env, &[]));
        assert!(
            message.contains(needle),
            "error for {file:?} {env:?} should name `{needle}`: {message}"
        );
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let message = err(Config::load(&Sources {
        file: Some("/nonexistent/logpipe.toml".into()),
        ..Default::default()
    }));
    assert!(message.contains("/nonexistent/logpipe.toml"), "{message}");
}

#[test]
fn the_example_file_parses_and_documents_every_key() {
    let text = include_str!("../../../../../config/logpipe.example.toml");
    let example = Config::from_toml_str(text).expect("example config must be valid");
    // Every key has a documented line in the example (commented or not).
    for (path, _env) in variables() {
        let leaf = path.rsplit('.').next().unwrap();
        assert!(
            text.lines().any(|l| l
                .trim_start_matches('#')
                .trim_start()
                .starts_with(&format!("{leaf} ="))),
            "config/logpipe.example.toml does not document `{path}`"
        );
    }
    // The example states the defaults.
    assert_eq!(example.kafka.topic, Config::default().kafka.topic);
}

#[test]
fn redaction_masks_secrets_and_keeps_the_rest() {
    let mut c = Config::default();
    c.postgres.url = "postgres://app:hunter2@db:5432/logs".into();
    c.redis.url = "redis://:s3cret@cache:6379/0".into();
    c.gateway.api_keys = vec!["k".repeat(20).into()];
    c.kafka
        .properties
        .insert("sasl.password".into(), "pw".into());
    c.kafka
        .properties
        .insert("sasl.username".into(), "alice".into());
    let shown = toml::to_string(&redact::redacted(&c)).unwrap();
    for secret in ["hunter2", "s3cret", &"k".repeat(20), "\"pw\""] {
        assert!(!shown.contains(secret), "secret {secret} leaked: {shown}");
    }
    assert!(
        shown.contains("postgres://app:<redacted>@db:5432/logs"),
        "{shown}"
    );
    assert!(shown.contains("alice"));
}

#[test]
fn retry_schedule_defaults_to_the_spec_and_is_validated() {
    let c = Config::default();
    let r = &c.retry;
    assert_eq!(r.attempts, 4);
    let waits: Vec<_> = (1..=4).map(|n| r.delay_before(n)).collect();
    assert_eq!(
        waits,
        [0, 1, 2, 4].map(std::time::Duration::from_secs),
        "attempt 1 at once, then 1 s, 2 s, 4 s"
    );
    let capped = crate::config::RetryConfig {
        attempts: 10,
        cap: std::time::Duration::from_secs(5),
        ..r.clone()
    };
    assert_eq!(capped.delay_before(9), std::time::Duration::from_secs(5));

    for (file, key) in [
        ("[retry]\nattempts = 0\n", "retry.attempts"),
        ("[retry]\njitter = 1.5\n", "retry.jitter"),
        ("[retry]\nmultiplier = 0.5\n", "retry.multiplier"),
        ("[retry]\nbase = \"10s\"\ncap = \"1s\"\n", "retry.cap"),
        (
            "[kafka]\nparked_topic = \"logs-dlq\"\n",
            "kafka.parked_topic",
        ),
        (
            "[consumer]\nmax_uncommitted = 10\n",
            "consumer.max_uncommitted",
        ),
    ] {
        let message = err(load(Some(file), &[], &[]));
        assert!(message.contains(key), "{file}: {message}");
    }
}

#[test]
fn group_protocol_defaults_to_classic_and_is_set_by_file_env_or_flag() {
    let c = load(None, &[], &[]).unwrap();
    assert_eq!(c.consumer.group_protocol, GroupProtocol::Classic);
    assert_eq!(c.consumer.remote_assignor, "");

    let file = "[consumer]\ngroup_protocol = \"consumer\"\nremote_assignor = \"range\"\n";
    let c = load(Some(file), &[], &[]).unwrap();
    assert_eq!(c.consumer.group_protocol, GroupProtocol::Consumer);
    assert_eq!(c.consumer.remote_assignor, "range");

    let env = [
        ("LOGPIPE_CONSUMER_GROUP_PROTOCOL", "consumer"),
        ("LOGPIPE_CONSUMER_REMOTE_ASSIGNOR", "uniform"),
    ];
    let c = load(None, &env, &[]).unwrap();
    assert_eq!(c.consumer.group_protocol, GroupProtocol::Consumer);
    assert_eq!(c.consumer.remote_assignor, "uniform");

    let c = load(
        None,
        &env,
        &[
            ("consumer.group_protocol", "classic"),
            ("consumer.remote_assignor", ""),
        ],
    )
    .unwrap();
    assert_eq!(c.consumer.group_protocol, GroupProtocol::Classic);

    let message = err(load(
        None,
        &[("LOGPIPE_CONSUMER_GROUP_PROTOCOL", "kip848")],
        &[],
    ));
    assert!(
        message.contains("consumer.group_protocol") && message.contains("consumer"),
        "{message}"
    );
}

#[test]
fn session_timeout_rules_follow_the_group_protocol() {
    // Classic: the client's session timeout bounds the drain, as before.
    let message = err(load(
        Some("[consumer]\nsession_timeout = \"10s\"\ndrain_timeout = \"10s\"\n"),
        &[],
        &[],
    ));
    assert!(
        message.contains("consumer.drain_timeout") && message.contains("consumer.session_timeout"),
        "{message}"
    );
    let message = err(load(
        Some("[consumer]\nsession_timeout = \"10m\"\ndrain_timeout = \"10s\"\n"),
        &[],
        &[],
    ));
    assert!(message.contains("consumer.max_poll_interval"), "{message}");

    // Consumer: `session_timeout` is not used (the broker's applies), so it constrains nothing;
    // the drain is still bounded by the rebalance timeout.
    let c = load(
        Some("[consumer]\ngroup_protocol = \"consumer\"\nsession_timeout = \"10s\"\ndrain_timeout = \"20s\"\n"),
        &[],
        &[],
    )
    .expect("session_timeout does not apply to the consumer protocol");
    assert_eq!(c.consumer.drain_timeout, std::time::Duration::from_secs(20));
    let message = err(load(
        Some("[consumer]\ngroup_protocol = \"consumer\"\nmax_poll_interval = \"5s\"\ndrain_timeout = \"5s\"\n"),
        &[],
        &[],
    ));
    assert!(
        message.contains("consumer.drain_timeout") && message.contains("rebalance timeout"),
        "{message}"
    );
}

#[test]
fn protocol_specific_settings_are_refused_under_the_other_protocol() {
    type Case<'a> = (&'a str, &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "[consumer]\nremote_assignor = \"uniform\"\n",
            &["consumer.remote_assignor", "assignment_strategy"],
        ),
        (
            "[consumer]\ngroup_protocol = \"consumer\"\nremote_assignor = \"sticky\"\n",
            &["consumer.remote_assignor", "\"uniform\" or \"range\""],
        ),
        (
            "[consumer]\ngroup_protocol = \"consumer\"\n[consumer.properties]\n\"session.timeout.ms\" = \"6000\"\n",
            &["consumer.properties.\"session.timeout.ms\"", "group.consumer.session.timeout.ms"],
        ),
        (
            "[consumer]\ngroup_protocol = \"consumer\"\n[kafka.properties]\n\"heartbeat.interval.ms\" = \"1000\"\n",
            &["kafka.properties.\"heartbeat.interval.ms\"", "group.consumer.heartbeat.interval.ms"],
        ),
        (
            "[consumer]\ngroup_protocol = \"consumer\"\n[consumer.properties]\n\"partition.assignment.strategy\" = \"range\"\n",
            &["partition.assignment.strategy", "consumer.remote_assignor"],
        ),
        (
            "[consumer]\ngroup_protocol = \"consumer\"\n[consumer.properties]\n\"group.protocol.type\" = \"consumer\"\n",
            &["group.protocol.type"],
        ),
        (
            "[consumer.properties]\n\"group.protocol\" = \"consumer\"\n",
            &["group.protocol", "consumer.group_protocol"],
        ),
        (
            "[kafka.properties]\n\"group.remote.assignor\" = \"range\"\n",
            &["group.remote.assignor", "consumer.remote_assignor"],
        ),
    ];
    for (file, needles) in cases {
        let message = err(load(Some(file), &[], &[]));
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{file}: should say `{needle}`: {message}"
            );
        }
    }
    // The classic-only properties stay available to the classic protocol.
    let c = load(
        Some("[consumer.properties]\n\"heartbeat.interval.ms\" = \"1000\"\n"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(c.consumer.properties["heartbeat.interval.ms"], "1000");
}

#[test]
fn replication_defaults_to_auto_and_takes_numbers_from_file_env_and_flags() {
    let c = load(None, &[], &[]).unwrap();
    assert_eq!(c.kafka.replication_factor, Replicas::Auto);
    assert_eq!(c.kafka.min_insync_replicas, Replicas::Auto);

    let file = "[kafka]\nreplication_factor = 3\nmin_insync_replicas = \"auto\"\n";
    let c = load(Some(file), &[], &[]).unwrap();
    assert_eq!(c.kafka.replication_factor, Replicas::Count(3));
    assert_eq!(c.kafka.min_insync_replicas, Replicas::Auto);

    let env = [
        ("LOGPIPE_KAFKA_REPLICATION_FACTOR", "2"),
        ("LOGPIPE_KAFKA_MIN_INSYNC_REPLICAS", "1"),
    ];
    let c = load(Some(file), &env, &[]).unwrap();
    assert_eq!(
        (c.kafka.replication_factor, c.kafka.min_insync_replicas),
        (Replicas::Count(2), Replicas::Count(1))
    );
    let c = load(
        Some(file),
        &env,
        &[
            ("kafka.replication_factor", "auto"),
            ("kafka.min_insync_replicas", "AUTO"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.kafka.replication_factor, c.kafka.min_insync_replicas),
        (Replicas::Auto, Replicas::Auto)
    );

    // `config check` prints what the file would say, and it reads back the same.
    let mut c = Config::default();
    let shown = toml::to_string(&c).unwrap();
    assert!(shown.contains("replication_factor = \"auto\""), "{shown}");
    c.kafka.replication_factor = Replicas::Count(3);
    c.kafka.min_insync_replicas = Replicas::Count(2);
    let shown = toml::to_string(&c).unwrap();
    assert!(shown.contains("replication_factor = 3\n"), "{shown}");
    assert_eq!(Config::from_toml_str(&shown).unwrap(), c);
}

#[test]
fn replication_values_out_of_range_name_the_key() {
    // -1, the "broker default" of earlier versions, still loads, as "auto".
    let c = load(Some("[kafka]\nreplication_factor = -1\n"), &[], &[]).unwrap();
    assert_eq!(c.kafka.replication_factor, Replicas::Auto);
    let cases = [
        (
            "[kafka]\nreplication_factor = -2\n",
            "kafka.replication_factor",
        ),
        (
            "[kafka]\nreplication_factor = 0\n",
            "kafka.replication_factor",
        ),
        (
            "[kafka]\nreplication_factor = \"three\"\n",
            "kafka.replication_factor",
        ),
        (
            "[kafka]\nmin_insync_replicas = 0\n",
            "kafka.min_insync_replicas",
        ),
        (
            "[kafka]\nreplication_factor = 2\nmin_insync_replicas = 3\n",
            "kafka.min_insync_replicas",
        ),
    ];
    for (file, key) in cases {
        let message = err(load(Some(file), &[], &[]));
        assert!(
            message.contains(key),
            "{file:?} should name `{key}`: {message}"
        );
    }
    let message = err(load(
        None,
        &[("LOGPIPE_KAFKA_MIN_INSYNC_REPLICAS", "-2")],
        &[],
    ));
    assert!(
        message.contains("LOGPIPE_KAFKA_MIN_INSYNC_REPLICAS"),
        "{message}"
    );
}

#[test]
fn auto_replication_suits_the_cluster_and_explicit_values_are_checked_against_it() {
    use Replicas::{Auto, Count};
    let resolved = |factor, min_insync, brokers| {
        Replication::resolve(factor, min_insync, brokers)
            .map(|r| (r.replication_factor, r.min_insync_replicas))
    };
    // (replication_factor, min_insync_replicas, brokers) → (factor, min.insync.replicas)
    let cases = [
        (Auto, Auto, 1, (1, 1)),
        (Auto, Auto, 2, (2, 1)),
        (Auto, Auto, 3, (3, 2)),
        (Auto, Auto, 6, (3, 2)),
        (Count(2), Auto, 3, (2, 1)),
        (Count(5), Auto, 5, (5, 4)),
        (Auto, Count(1), 3, (3, 1)),
        (Count(3), Count(3), 3, (3, 3)),
    ];
    for (factor, min_insync, brokers, expected) in cases {
        assert_eq!(
            resolved(factor, min_insync, brokers).unwrap(),
            expected,
            "{factor} / {min_insync} on {brokers} broker(s)"
        );
    }
    let mut kafka = KafkaConfig::default();
    assert_eq!(
        kafka.replication_for(3).unwrap(),
        Replication {
            replication_factor: 3,
            min_insync_replicas: 2
        }
    );

    // More replicas than brokers: the key is named and the way out given.
    kafka.replication_factor = Count(3);
    let message = format!("{:#}", kafka.replication_for(1).unwrap_err());
    assert!(
        message.contains("kafka.replication_factor") && message.contains("1 broker"),
        "{message}"
    );
    // An explicit min.insync.replicas above what `auto` gives on a small cluster.
    kafka.replication_factor = Auto;
    kafka.min_insync_replicas = Count(2);
    let message = format!("{:#}", kafka.replication_for(1).unwrap_err());
    assert!(message.contains("kafka.min_insync_replicas"), "{message}");
    assert!(resolved(Auto, Auto, 0).is_err());
}

#[test]
fn the_trigram_search_index_needs_postgresql() {
    let c = load(None, &[], &[]).unwrap();
    assert_eq!(c.postgres.search_index, SearchIndex::None);
    assert_eq!(
        c.postgres.store_options().search_index,
        logpipe_store::SearchIndex::None
    );

    let pg = "[postgres]\nurl = \"postgres://db/logs\"\nsearch_index = \"trigram\"\n";
    let c = load(Some(pg), &[], &[]).unwrap();
    assert_eq!(
        c.postgres.query_store_options().search_index,
        logpipe_store::SearchIndex::Trigram
    );
    // The environment sets it too.
    let c = load(
        None,
        &[
            ("LOGPIPE_POSTGRES_URL", "postgres://db/logs"),
            ("LOGPIPE_POSTGRES_SEARCH_INDEX", "trigram"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.postgres.search_index, SearchIndex::Trigram);

    for file in [
        "[postgres]\nsearch_index = \"trigram\"\n",
        "[postgres]\nurl = \"sqlite://logs.db\"\nsearch_index = \"trigram\"\n",
    ] {
        let message = err(load(Some(file), &[], &[]));
        assert!(message.contains("postgres.search_index"), "{message}");
        assert!(message.contains("SQLite"), "{message}");
    }
    let message = err(load(
        Some("[postgres]\nsearch_index = \"fulltext\"\n"),
        &[],
        &[],
    ));
    assert!(message.contains("postgres.search_index"), "{message}");
}
