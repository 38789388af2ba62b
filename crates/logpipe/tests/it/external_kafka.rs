//! Against an external Apache Kafka cluster (started by `scripts/test.sh`, address in
//! LOGPIPE_TEST_KAFKA_BROKERS): topic creation through the admin API, `topics describe`, and the
//! ingest path end to end with records read back.

use std::process::Command;

use logpipe::app::Roles;
use logpipe::kafka::admin::{ensure_topics, EnsureOutcome, TopicSpec, TopicStatus};
use logpipe::kafka::client_config;
use serde_json::{json, Value};

use crate::support::{kafka_brokers, read_all, start, test_config};

#[tokio::test]
async fn external_topics_ensure_creates_then_reports_existing_and_short_topics() {
    let config = test_config(&kafka_brokers());
    let client = client_config(
        &config.kafka,
        &config.kafka.brokers,
        "admin",
        &Default::default(),
    );
    let specs = TopicSpec::from_config(&config.kafka);
    let timeout = config.kafka.request_timeout;

    let first = ensure_topics(&client, &specs, timeout).await.unwrap();
    let seen = |o: &EnsureOutcome| (o.topic.clone(), o.status, o.partitions);
    assert_eq!(
        seen(&first[0]),
        (config.kafka.topic.clone(), TopicStatus::Created, 12)
    );
    assert_eq!(
        seen(&first[1]),
        (config.kafka.dlq_topic.clone(), TopicStatus::Created, 3)
    );
    let again = ensure_topics(&client, &specs, timeout).await.unwrap();
    assert_eq!(
        seen(&again[0]),
        (config.kafka.topic.clone(), TopicStatus::Exists, 12)
    );
    assert_eq!(again[0].differences, vec![], "{:?}", again[0]);

    let mut wants_more = specs[0].clone();
    wants_more.partitions = 24;
    let short = ensure_topics(&client, &[wants_more], timeout)
        .await
        .unwrap();
    let found: Vec<_> = short[0]
        .differences
        .iter()
        .map(|d| (d.setting, d.actual, d.configured))
        .collect();
    assert_eq!(found, vec![("partitions", 12, 24)], "{:?}", short[0]);
    assert!(
        short[0].differences[0].advice.contains("--partitions 24"),
        "{:?}",
        short[0]
    );
}

#[test]
fn external_topics_cli_ensure_and_describe_print_tables() {
    let brokers = kafka_brokers();
    let topic = crate::support::unique("it-cli-logs");
    let dlq = crate::support::unique("it-cli-dlq");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_logpipe"))
            .args(args)
            .args([
                "--kafka-brokers",
                &brokers,
                "--set",
                &format!("kafka.topic={topic}"),
                "--set",
                &format!("kafka.dlq_topic={dlq}"),
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let ensured = run(&["topics", "ensure"]);
    assert!(
        ensured.contains(&topic) && ensured.contains("created"),
        "{ensured}"
    );
    let described = run(&["topics", "describe"]);
    assert!(
        described.contains("PARTITION") && described.contains("HIGH-OFFSET"),
        "{described}"
    );
    assert!(
        described.contains(&format!("Topic: {topic}   partitions: 12")),
        "{described}"
    );
    assert!(
        described.contains(&format!("Topic: {dlq}   partitions: 3")),
        "{described}"
    );
    let json: Value = serde_json::from_str(&run(&["topics", "describe", "--json"])).unwrap();
    assert_eq!(json[0]["partitions"].as_array().unwrap().len(), 12);
}

#[tokio::test]
async fn external_ingest_end_to_end_reads_back_every_event() {
    let config = test_config(&kafka_brokers());
    let topic = config.kafka.topic.clone();
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"service": format!("ext-{}", i % 7), "level": "error", "message": format!("failure {i}"), "attributes": {"i": i}}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/logs/batch"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let records = read_all(&app.bootstrap.clone().unwrap(), &topic, 300).await;
    assert_eq!(records.len(), 300);
    let mut seen: Vec<i64> = records
        .iter()
        .map(|r| r.value["attributes"]["i"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
    for r in &records {
        assert_eq!(r.key.as_deref(), r.value["service"].as_str());
    }
    app.shutdown().await.unwrap();
}

/// A broker refuses record timestamps more than `message.timestamp.after.max.ms` (one hour by
/// default) in the future: events whose own time is years ahead or behind (a skewed client
/// clock, a backfill) are still accepted, because the record's Kafka timestamp is the time the
/// gateway received them; the event keeps its own time in the value.
#[tokio::test]
async fn external_events_far_in_the_future_or_past_are_accepted_with_the_arrival_as_kafka_time() {
    let config = test_config(&kafka_brokers());
    let topic = config.kafka.topic.clone();
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let times = [
        "4928-09-21T01:45:09.430Z",
        "2099-01-01T00:00:00.000Z",
        "1999-01-01T00:00:00.000Z",
        "0001-01-01T00:00:00.000Z",
    ];
    let events: Vec<Value> = times
        .iter()
        .map(|t| json!({"service": "clock-skew", "message": format!("at {t}"), "timestamp": t}))
        .collect();
    let before = chrono::Utc::now().timestamp_millis();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/logs/batch"))
        .json(&events)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    let after = chrono::Utc::now().timestamp_millis();
    let records = read_all(&app.bootstrap.clone().unwrap(), &topic, 4).await;
    let mut seen: Vec<&str> = records
        .iter()
        .map(|r| r.value["timestamp"].as_str().unwrap())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = times
        .iter()
        .map(|t| t.replace(".430Z", ".430000Z").replace(".000Z", ".000000Z"))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    for r in &records {
        let kafka_ms = r.timestamp_ms.expect("a record timestamp");
        assert!(
            (before..=after).contains(&kafka_ms),
            "{kafka_ms} not in {before}..={after}"
        );
        assert_eq!(
            r.header("logpipe-ingest-ms"),
            Some(kafka_ms.to_string().as_str())
        );
    }
    app.shutdown().await.unwrap();
}
