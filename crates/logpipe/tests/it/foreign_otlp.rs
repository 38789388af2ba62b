//! OTLP export requests other producers wrote to Kafka, as the OpenTelemetry Collector's kafka
//! exporter writes them (`encoding: otlp_proto` / `otlp_json`): built with the OpenTelemetry
//! project's own Python protobuf classes, produced with the real `confluent-kafka` client
//! (LOGPIPE_TEST_PYTHON) to topics a running consumer reads as `otlp_proto` and `otlp_json`
//! (PostgreSQL, Redis, the external Kafka). Every log record is one stored event keyed by its
//! index in the record; a record re-read from the start stores nothing twice and counts nothing
//! twice; a record with a log record our rules refuse goes to the dead-letter topic whole.

use std::time::Duration;

use logpipe::app::Roles;
use logpipe::config::RecordFormat;
use serde_json::{json, Value};

use crate::consumer_flow::{all_logs, stats};
use crate::foreign_records::{an_hour_ago_ms, dead_lettered, millis, produce, stored};
use crate::support::{
    commit_offsets, eventually, external_config, metric, run_python, start, unique,
};

/// Produces `spec.records`: each `otlp` is an ExportLogsServiceRequest in OTLP/JSON. For
/// `encoding: "proto"` it is read into the OpenTelemetry protobuf classes (OTLP/JSON is
/// protobuf's JSON mapping with hex trace and span ids, which `ParseDict` wants in base64) and
/// serialised by Google's protobuf library; for `"json"` it is sent as OTLP/JSON text. Prints
/// each record's (topic, partition, offset).
const PRODUCE_OTLP: &str = r#"
import base64, json, sys
from confluent_kafka import Producer
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

def ids_to_base64(request):
    for resource_logs in request.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    return request

spec = json.loads(sys.argv[1])
producer = Producer({"bootstrap.servers": spec["brokers"], "enable.idempotence": True})
delivered = [None] * len(spec["records"])
errors = []
for i, r in enumerate(spec["records"]):
    if r["encoding"] == "proto":
        value = ParseDict(ids_to_base64(r["otlp"]), ExportLogsServiceRequest()).SerializeToString()
    else:
        value = json.dumps(r["otlp"]).encode()
    def on_delivery(err, msg, i=i):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[i] = [msg.topic(), msg.partition(), msg.offset()]
    producer.produce(r["topic"], value=value, timestamp=r["timestamp_ms"], on_delivery=on_delivery)
if producer.flush(30) != 0 or errors or None in delivered:
    sys.exit("not delivered: %s" % errors)
print(json.dumps(delivered))
"#;

fn produce_otlp(spec: Value) -> Vec<(String, i32, i64)> {
    let (status, stdout, stderr) = run_python(PRODUCE_OTLP, &[&spec.to_string()], &[]);
    assert!(status.success(), "OTLP producer failed: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn text(s: &str) -> Value {
    json!({"stringValue": s})
}

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// A resource's logs: `service` (if any) and `host` as resource attributes, one scope.
fn resource(service: Option<&str>, scope: Value, records: Vec<Value>) -> Value {
    let mut attributes = vec![attribute("deployment.environment", text("prod"))];
    if let Some(service) = service {
        attributes.push(attribute("service.name", text(service)));
        attributes.push(attribute("host.name", text("web-1")));
    }
    json!({
        "resource": {"attributes": attributes},
        "scopeLogs": [{"scope": scope, "logRecords": records}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_otlp_records_store_each_log_record_once_with_its_index() {
    let mut config = external_config().await;
    let run = unique("foreign-otlp");
    let (proto_topic, json_topic) = (unique("it-otlp-proto"), unique("it-otlp-json"));
    produce(json!({"brokers": config.kafka.brokers, "create": [proto_topic, json_topic]}));
    config.consumer.topics = vec![
        config.kafka.topic.clone(),
        proto_topic.clone(),
        json_topic.clone(),
    ];
    for (topic, format) in [
        (&proto_topic, RecordFormat::OtlpProto),
        (&json_topic, RecordFormat::OtlpJson),
    ] {
        config.consumer.formats.insert(topic.clone(), format);
    }
    config.consumer.raw_service = format!("{run}-fallback");
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());

    // Event times ten minutes ago (inside the stats window), in nanoseconds as OTLP writes them.
    let at_ms = chrono::Utc::now().timestamp_millis() - 600_000;
    let nanos = |extra_ms: i64| ((at_ms + extra_ms) as u128 * 1_000_000 + 456_789).to_string();
    let kafka_ms = an_hour_ago_ms();
    let (checkout, json_service) = (format!("{run}-checkout"), format!("{run}-json"));
    let trace = "5b8efff798038103d269b633813fc60c";
    let many = json!({"resourceLogs": [
        resource(Some(&checkout), json!({"name": "checkout.payments", "version": "1.2"}), vec![
            json!({"timeUnixNano": nanos(0), "severityNumber": 9, "body": text("a0: paid"),
                   "traceId": trace, "spanId": "eee19b7ec3c1b174",
                   "attributes": [attribute("order.id", json!({"intValue": "42"}))]}),
            json!({"observedTimeUnixNano": nanos(100), "severityNumber": 17, "severityText": "ERROR",
                   "body": {"kvlistValue": {"values": [attribute("error", text("declined"))]}}}),
        ]),
        // No service.name: `consumer.raw_service`; no time: the Kafka record's timestamp.
        resource(None, json!({}), vec![
            json!({"severityText": "warning", "body": text("a2: no service")}),
        ]),
    ]});
    let two = json!({"resourceLogs": [resource(Some(&json_service), json!({}), vec![
        json!({"timeUnixNano": nanos(1), "body": text("b0: first")}),
        json!({"timeUnixNano": nanos(2), "severityNumber": 13, "body": text("b1: second")}),
    ])]});
    // The middle record has no body: the whole record is refused, its good neighbours too.
    let bad = json!({"resourceLogs": [resource(Some(&format!("{run}-bad")), json!({}), vec![
        json!({"timeUnixNano": nanos(3), "body": text("c0: good")}),
        json!({"timeUnixNano": nanos(4), "severityNumber": 9}),
        json!({"timeUnixNano": nanos(5), "body": text("c2: good")}),
    ])]});
    let mut sent = produce_otlp(json!({
        "brokers": config.kafka.brokers,
        "records": [
            {"topic": proto_topic, "encoding": "proto", "otlp": many, "timestamp_ms": kafka_ms},
            {"topic": json_topic, "encoding": "json", "otlp": two, "timestamp_ms": kafka_ms},
            {"topic": proto_topic, "encoding": "proto", "otlp": bad, "timestamp_ms": kafka_ms},
        ],
    }));
    sent.extend(produce(json!({
        "brokers": config.kafka.brokers,
        "records": [{"topic": proto_topic, "hex": "0a0b0c0d0e0f"}],
    })));

    let logs = stored(&base, &run, 5).await;
    let row = |message: &str| {
        logs.iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("{message:?} not stored: {logs:#?}"))
    };
    let a0 = row("a0: paid");
    assert_eq!(a0["service"], checkout.as_str());
    assert_eq!(a0["host"], "web-1");
    assert_eq!(a0["level"], "INFO");
    assert_eq!(millis(&a0["timestamp"]), at_ms);
    assert_eq!(a0["trace_id"], trace);
    assert_eq!(a0["span_id"], "eee19b7ec3c1b174");
    assert_eq!(
        a0["attributes"],
        json!({"order.id": 42, "scope.name": "checkout.payments", "scope.version": "1.2",
               "resource.deployment.environment": "prod"})
    );
    let a1 = row(r#"{"error":"declined"}"#);
    assert_eq!(a1["level"], "ERROR");
    assert_eq!(millis(&a1["timestamp"]), at_ms + 100, "observed time");
    let a2 = row("a2: no service");
    assert_eq!(a2["service"], format!("{run}-fallback"));
    assert_eq!(a2["level"], "WARN");
    assert_eq!(
        millis(&a2["timestamp"]),
        kafka_ms,
        "the Kafka record's time"
    );
    // One Kafka record, three events: the same offset, indexes in request order.
    for (log, index) in [(a0, 0), (a1, 1), (a2, 2)] {
        assert_eq!(log["kafka"]["topic"], proto_topic.as_str());
        assert_eq!(log["kafka"]["offset"], sent[0].2);
        assert_eq!(log["kafka"]["index"], index, "{log}");
    }
    for (message, level, index) in [("b0: first", "INFO", 0), ("b1: second", "WARN", 1)] {
        let b = row(message);
        assert_eq!(b["service"], json_service.as_str());
        assert_eq!(b["level"], level);
        assert_eq!(b["kafka"]["topic"], json_topic.as_str());
        assert_eq!(b["kafka"]["offset"], sent[1].2);
        assert_eq!(b["kafka"]["index"], index);
    }
    let reasons = dead_lettered(&config, &sent[2..]).await;
    assert_eq!(reasons, ["empty_message", "invalid_otlp"]);
    let counted = |s: &Value, service: &str| -> u64 {
        s["by_service"][service]
            .as_object()
            .map(|levels| levels.values().map(|v| v.as_u64().unwrap()).sum())
            .unwrap_or(0)
    };
    let s = stats(&base).await;
    assert_eq!(counted(&s, &checkout), 2, "{s}");
    assert_eq!(counted(&s, &json_service), 2, "{s}");
    app.shutdown().await.unwrap();

    // Re-read both topics from the start: every event is a duplicate, none stored or counted
    // twice.
    for topic in [&proto_topic, &json_topic] {
        commit_offsets(
            &config.kafka.brokers,
            &config.consumer.group_id,
            topic,
            &[(0, 0), (1, 0), (2, 0)],
        );
    }
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    eventually(
        Duration::from_secs(60),
        "the five events re-read as duplicates",
        || async { metric(&base, "log_consumer_duplicates_total").await >= 5.0 },
    )
    .await;
    assert_eq!(all_logs(&base, &run).await.len(), 5, "nothing stored twice");
    let s = stats(&base).await;
    assert_eq!(counted(&s, &checkout), 2, "nothing counted twice: {s}");
    assert_eq!(counted(&s, &json_service), 2, "{s}");
    app.shutdown().await.unwrap();
}

/// The store refusing one event's row (a CHECK constraint PostgreSQL enforces) fails its whole
/// record: retried, then dead-lettered as `exhausted` `store_rejected`. The rows of its other
/// events were written by then and stay (docs/consumer.md says so); every other record of the
/// round is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_an_otlp_record_with_an_event_the_store_refuses_is_retried_whole_then_dead_lettered(
) {
    use logpipe::dlq::headers as dlq;

    let mut config = external_config().await;
    config.retry.base = Duration::from_millis(100);
    let run = unique("otlp-refused");
    let topic = unique("it-otlp-refused");
    produce(json!({"brokers": config.kafka.brokers, "create": [topic]}));
    config.consumer.topics = vec![config.kafka.topic.clone(), topic.clone()];
    config
        .consumer
        .formats
        .insert(topic.clone(), RecordFormat::OtlpProto);
    // The store's tables exist once the app started (it migrates).
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    crate::support::postgres(&config.postgres.url)
        .await
        .batch_execute(&format!(
            "ALTER TABLE \"{}\".logs ADD CONSTRAINT it_refuse_otlp CHECK (message <> '{run} no')",
            config.postgres.schema
        ))
        .await
        .unwrap();

    let service = format!("{run}-svc");
    let request = |messages: &[&str]| {
        let records = messages
            .iter()
            .map(|m| json!({"body": text(&format!("{run} {m}"))}))
            .collect();
        json!({"resourceLogs": [resource(Some(&service), json!({}), records)]})
    };
    let now = chrono::Utc::now().timestamp_millis();
    let records: Vec<Value> = [
        request(&["a", "b"]),
        request(&["c", "no", "d"]),
        request(&["e", "f", "g"]),
    ]
    .into_iter()
    .map(|otlp| json!({"topic": topic, "encoding": "proto", "otlp": otlp, "timestamp_ms": now}))
    .collect();
    let sent = produce_otlp(json!({"brokers": config.kafka.brokers, "records": records}));

    let dead = crate::support::read_all(&config.kafka.brokers, &config.kafka.dlq_topic, 1).await;
    assert_eq!(dead.len(), 1, "only the record holding the refused row");
    let d = &dead[0];
    assert_eq!(
        d.header(dlq::ORIGINAL_OFFSET),
        Some(&*sent[1].2.to_string())
    );
    assert_eq!(d.header(dlq::ERROR_CLASS), Some("exhausted"));
    assert_eq!(d.header(dlq::ERROR_TYPE), Some("store_rejected"));
    assert!(
        d.header(dlq::ERROR_MESSAGE)
            .unwrap()
            .contains("it_refuse_otlp"),
        "{:?}",
        d.header(dlq::ERROR_MESSAGE)
    );
    // Every other event once; the refused record's own good events (c, d) were written.
    let logs = stored(&base, &run, 7).await;
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|m| format!("{run} {m}"))
        .collect();
    assert_eq!(messages, expected);
    app.shutdown().await.unwrap();
}
