//! Records other producers wrote to Kafka, produced with the real `confluent-kafka` Python client
//! (LOGPIPE_TEST_PYTHON) straight to the topics of a running consumer (PostgreSQL, Redis, the
//! external Kafka): JSON without a timestamp is stored with the Kafka record's timestamp, plain
//! lines on a `raw` topic become one event each, and what cannot be read goes to the dead-letter
//! topic with its reason.

use std::time::Duration;

use logpipe::app::Roles;
use logpipe::config::{Config, RecordFormat};
use logpipe::dlq::headers as dlq;
use serde_json::{json, Value};

use crate::consumer_flow::all_logs;
use crate::support::{eventually, external_config, read_all, run_python, start, unique};

/// Creates the topics in `spec.create` (3 partitions, 3 replicas), then produces
/// `spec.records` with the idempotent producer and prints the (topic, partition, offset) of each
/// as JSON, in order. A record's value is `value` (text) or `hex` (bytes); `timestamp_ms` sets
/// its CreateTime (0: the client's clock).
pub(crate) const PRODUCE: &str = r#"
import json, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

spec = json.loads(sys.argv[1])
brokers = spec["brokers"]
if spec.get("create"):
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=3) for t in spec["create"]]).values():
        future.result(timeout=30)
producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
delivered = [None] * len(spec.get("records", []))
errors = []
for i, r in enumerate(spec.get("records", [])):
    value = bytes.fromhex(r["hex"]) if "hex" in r else r["value"].encode()
    def on_delivery(err, msg, i=i):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[i] = [msg.topic(), msg.partition(), msg.offset()]
    producer.produce(r["topic"], value=value, key=r.get("key"), timestamp=r.get("timestamp_ms", 0), on_delivery=on_delivery)
if producer.flush(30) != 0 or errors or None in delivered:
    sys.exit("not delivered: %s" % errors)
print(json.dumps(delivered))
"#;

/// Runs [`PRODUCE`]; returns each record's (topic, partition, offset).
pub(crate) fn produce(spec: Value) -> Vec<(String, i32, i64)> {
    let (status, stdout, stderr) = run_python(PRODUCE, &[&spec.to_string()], &[]);
    assert!(
        status.success(),
        "confluent-kafka producer failed: {stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A Kafka timestamp an hour ago, in whole milliseconds (what a record timestamp can hold).
pub(crate) fn an_hour_ago_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - 3_600_000
}

pub(crate) fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// Waits until `n` events of services starting with `run` are stored; returns them by message.
pub(crate) async fn stored(base: &str, run: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(60),
        &format!("{n} events stored"),
        || async { all_logs(base, run).await.len() >= n },
    )
    .await;
    // A little longer, so an extra row (a duplicate, a wrongly stored bad record) shows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut logs = all_logs(base, run).await;
    logs.sort_by(|a, b| a["message"].as_str().cmp(&b["message"].as_str()));
    assert_eq!(logs.len(), n, "exactly {n} events: {logs:#?}");
    logs
}

/// The dead-letter records of `coordinates`, with their error types, once all arrived.
pub(crate) async fn dead_lettered(
    config: &Config,
    coordinates: &[(String, i32, i64)],
) -> Vec<String> {
    let dead = read_all(
        &config.kafka.brokers,
        &config.kafka.dlq_topic,
        coordinates.len(),
    )
    .await;
    assert_eq!(
        dead.len(),
        coordinates.len(),
        "each bad record in the DLQ once"
    );
    coordinates
        .iter()
        .map(|(topic, partition, offset)| {
            let d = dead
                .iter()
                .find(|d| {
                    d.header(dlq::ORIGINAL_TOPIC) == Some(topic.as_str())
                        && d.header(dlq::ORIGINAL_PARTITION) == Some(&partition.to_string())
                        && d.header(dlq::ORIGINAL_OFFSET) == Some(&offset.to_string())
                })
                .unwrap_or_else(|| panic!("{topic}/{partition}/{offset} not in the DLQ"));
            assert_eq!(d.header(dlq::ERROR_CLASS), Some("poison"));
            assert!(!d.header(dlq::ERROR_MESSAGE).unwrap_or_default().is_empty());
            d.header(dlq::ERROR_TYPE).unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_json_without_timestamp_is_stored_with_the_kafka_timestamp() {
    let config = external_config().await;
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("foreign-json");
    let service = format!("{run}-app");
    let topic = &config.kafka.topic;
    let at = an_hour_ago_ms();
    let event = |extra: Value| {
        let mut e = json!({"service": service, "message": "m"});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e.to_string()
    };
    let sent = produce(json!({
        "brokers": config.kafka.brokers,
        "records": [
            {"topic": topic, "key": "k", "timestamp_ms": at,
             "value": event(json!({"message": "a: no timestamp, no level"}))},
            {"topic": topic, "timestamp_ms": at + 1,
             "value": event(json!({"message": "b: level only", "level": "warn"}))},
            {"topic": topic, "timestamp_ms": at + 2,
             "value": event(json!({"message": "c: own timestamp", "timestamp": "2026-01-02T03:04:05.678901Z"}))},
            // A logback JSON layout's fields are not logpipe's: refused, not guessed at.
            {"topic": topic, "value": event(json!({"logger": "com.example.Checkout", "thread": "main"}))},
            {"topic": topic, "value": "plain text is not JSON"},
        ],
    }));

    let logs = stored(&base, &run, 3).await;
    assert_eq!(logs[0]["message"], "a: no timestamp, no level");
    assert_eq!(millis(&logs[0]["timestamp"]), at, "{}", logs[0]);
    assert_eq!(logs[0]["level"], "INFO");
    assert_eq!(millis(&logs[0]["kafka"]["timestamp"]), at);
    assert_eq!(logs[1]["level"], "WARN");
    assert_eq!(millis(&logs[1]["timestamp"]), at + 1);
    assert_eq!(logs[2]["timestamp"], "2026-01-02T03:04:05.678901Z");
    for log in &logs {
        assert_eq!(log["service"], service.as_str());
    }

    let reasons = dead_lettered(&config, &sent[3..]).await;
    assert_eq!(reasons, ["unknown_field", "invalid_json"]);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_raw_lines_on_their_own_topic_become_one_event_each() {
    let mut config = external_config().await;
    let run = unique("foreign-raw");
    let raw_topic = unique("it-raw");
    // The topic exists before the consumer subscribes to it.
    produce(json!({"brokers": config.kafka.brokers, "create": [raw_topic]}));
    config.consumer.topics = vec![config.kafka.topic.clone(), raw_topic.clone()];
    config
        .consumer
        .formats
        .insert(raw_topic.clone(), RecordFormat::Raw);
    config.consumer.raw_service = format!("{run}-lines");
    config.consumer.raw_service_from_key = true;
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let at = an_hour_ago_ms();
    let keyed = format!("{run}-keyed");
    let sent = produce(json!({
        "brokers": config.kafka.brokers,
        "records": [
            {"topic": raw_topic, "key": keyed, "timestamp_ms": at,
             "value": "a: GET /checkout 200 12ms\n"},
            {"topic": raw_topic, "timestamp_ms": at + 1, "value": "b: {\"looks\": \"like json\"}"},
            {"topic": raw_topic, "key": "not a service name", "timestamp_ms": at + 2,
             "value": "c: key is no service\n  at line 2"},
            // The other topic keeps logpipe's format.
            {"topic": config.kafka.topic, "timestamp_ms": at + 3,
             "value": json!({"service": format!("{run}-json"), "message": "d: json beside raw"}).to_string()},
            {"topic": raw_topic, "hex": "fffe41"},
            {"topic": raw_topic, "value": ""},
        ],
    }));

    let logs = stored(&base, &run, 4).await;
    let lines = format!("{run}-lines");
    let expected = [
        ("a: GET /checkout 200 12ms", keyed.as_str(), at),
        ("b: {\"looks\": \"like json\"}", lines.as_str(), at + 1),
        ("c: key is no service\n  at line 2", lines.as_str(), at + 2),
    ];
    for (log, (message, service, ts)) in logs.iter().zip(expected) {
        assert_eq!(log["message"], message, "{log}");
        assert_eq!(log["service"], service, "{log}");
        assert_eq!(log["level"], "INFO");
        assert_eq!(millis(&log["timestamp"]), ts);
        assert_eq!(log["kafka"]["topic"], raw_topic.as_str());
    }
    assert_eq!(logs[3]["service"], format!("{run}-json"));
    assert_eq!(millis(&logs[3]["timestamp"]), at + 3);

    let reasons = dead_lettered(&config, &sent[4..]).await;
    assert_eq!(reasons, ["invalid_utf8", "empty_message"]);
    app.shutdown().await.unwrap();
}
