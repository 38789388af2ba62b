//! The `json` record format end to end: JSON log lines as log4j2 (EcsLayout,
//! JsonTemplateLayout), logback's logstash encoder, Fluent Bit and Vector write them, produced
//! with the real `confluent-kafka` Python client to a topic configured `json`, consumed, and read
//! back from the store (SQLite, and PostgreSQL); a record without a message is dead-lettered
//! with its reason.

use chrono::{SecondsFormat, TimeZone, Utc};
use logpipe::app::Roles;
use logpipe::config::{Config, RecordFormat};
use serde_json::{json, Value};

use crate::foreign_records::{an_hour_ago_ms, dead_lettered, millis, produce, stored};
use crate::support::{external_config, kafka_brokers, start, test_config, unique};

/// Creates a topic of its own, reads it as `json`, and starts every role.
async fn start_json(mut config: Config, run: &str) -> (logpipe::app::App, String, Config) {
    let topic = unique("it-json");
    produce(json!({"brokers": config.kafka.brokers, "create": [topic]}));
    config.consumer.topics = vec![config.kafka.topic.clone(), topic.clone()];
    config
        .consumer
        .formats
        .insert(topic.clone(), RecordFormat::Json);
    config.consumer.raw_service = format!("{run}-fallback");
    let app = start(config.clone(), Roles::All).await;
    (app, topic, config)
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_of_appenders_and_shippers_are_stored_mapped() {
    // Real Kafka, embedded stores (SQLite, in-process aggregates).
    let run = unique("foreign-json");
    let (app, topic, config) = start_json(test_config(&kafka_brokers()), &run).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let at = an_hour_ago_ms();
    let records = [
        // log4j2 EcsLayout: nested ECS objects.
        json!({"@timestamp": rfc3339(at), "log": {"level": "WARN", "logger": "com.example.Orders"},
               "message": "a: ecs nested", "ecs": {"version": "1.2.0"},
               "service": {"name": format!("{run}-orders")}, "host": {"name": "web-1"},
               "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}, "span": {"id": "00f067aa0ba902b7"}}),
        // log4j2 JsonTemplateLayout (EcsLayout.json): flat dotted keys.
        json!({"@timestamp": rfc3339(at + 1), "log.level": "ERROR", "log.logger": "app",
               "message": "b: ecs flat", "service.name": format!("{run}-billing"),
               "error.type": "java.lang.IllegalStateException"}),
        // logback with logstash-logback-encoder.
        json!({"@timestamp": rfc3339(at + 2), "@version": "1", "message": "c: logstash",
               "logger_name": "com.example.Auth", "thread_name": "main", "level": "CRITICAL",
               "level_value": 50000, "app": format!("{run}-auth")}),
        // Fluent Bit's kafka output: `log`, and `time` as epoch seconds with a fraction.
        json!({"time": (at + 3) as f64 / 1000.0, "log": "d: fluent bit\n", "stream": "stdout",
               "kubernetes": {"pod_name": "web-7d9"}}),
        // Vector's kafka sink: `message`, `timestamp`, `host`.
        json!({"message": "e: vector", "timestamp": rfc3339(at + 4), "host": "node-3",
               "source_type": "file", "severity": "warning",
               "service": format!("{run}-vector")}),
        // No time and no level: the Kafka record's timestamp, INFO.
        json!({"msg": "f: bare", "service": format!("{run}-bare")}),
    ];
    let mut spec: Vec<Value> = records
        .iter()
        .map(|r| json!({"topic": topic, "value": r.to_string(), "timestamp_ms": at + 5}))
        .collect();
    spec.push(json!({"topic": topic, "value": json!({"text": "no message"}).to_string()}));
    spec.push(json!({"topic": topic, "value": "not json"}));
    let sent = produce(json!({"brokers": config.kafka.brokers, "records": spec}));

    let logs = stored(&base, &run, 6).await;
    let [a, b, c, d, e, f] = &logs[..] else {
        panic!("{logs:#?}")
    };
    assert_eq!(a["message"], "a: ecs nested");
    assert_eq!(a["level"], "WARN");
    assert_eq!(a["service"], format!("{run}-orders"));
    assert_eq!(a["host"], "web-1");
    assert_eq!(a["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(a["span_id"], "00f067aa0ba902b7");
    assert_eq!(millis(&a["timestamp"]), at);
    assert_eq!(
        a["attributes"],
        json!({"log": {"logger": "com.example.Orders"}, "ecs": {"version": "1.2.0"}})
    );

    assert_eq!(b["level"], "ERROR");
    assert_eq!(b["service"], format!("{run}-billing"));
    assert_eq!(millis(&b["timestamp"]), at + 1);
    assert_eq!(
        b["attributes"],
        json!({"log.logger": "app", "error.type": "java.lang.IllegalStateException"})
    );

    assert_eq!(c["level"], "FATAL");
    assert_eq!(c["service"], format!("{run}-auth"));
    assert_eq!(millis(&c["timestamp"]), at + 2);
    assert_eq!(c["attributes"]["logger_name"], "com.example.Auth");
    assert_eq!(c["attributes"]["level_value"], 50000);

    assert_eq!(d["message"], "d: fluent bit\n");
    assert_eq!(d["service"], format!("{run}-fallback"));
    assert_eq!(d["level"], "INFO");
    assert_eq!(millis(&d["timestamp"]), at + 3);
    assert_eq!(
        d["attributes"],
        json!({"stream": "stdout", "kubernetes": {"pod_name": "web-7d9"}})
    );

    assert_eq!(e["host"], "node-3");
    assert_eq!(e["level"], "WARN");
    assert_eq!(millis(&e["timestamp"]), at + 4);
    assert_eq!(e["attributes"], json!({"source_type": "file"}));

    assert_eq!(f["level"], "INFO");
    assert_eq!(millis(&f["timestamp"]), at + 5);
    for log in &logs {
        assert_eq!(log["kafka"]["topic"], topic.as_str(), "{log}");
    }

    let reasons = dead_lettered(&config, &sent[6..]).await;
    assert_eq!(reasons, ["missing_field", "invalid_json"]);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_json_log_lines_are_stored_in_postgres() {
    let run = unique("foreign-json-pg");
    let (app, topic, config) = start_json(external_config().await, &run).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let at = an_hour_ago_ms();
    let ecs = json!({"@timestamp": rfc3339(at), "log.level": "notice", "message": "a: ecs",
                     "service.name": format!("{run}-api"), "labels": {"tier": "gold"}});
    let logstash = json!({"@timestamp": rfc3339(at + 1), "level": "DEBUG", "message": "b: logstash",
                          "logger_name": "L", "application": format!("{run}-api")});
    let sent = produce(json!({"brokers": config.kafka.brokers, "records": [
        {"topic": topic, "value": ecs.to_string()},
        {"topic": topic, "value": logstash.to_string()},
        {"topic": topic, "value": json!({"message": null, "service": "x"}).to_string()},
    ]}));
    let logs = stored(&base, &run, 2).await;
    assert_eq!(logs[0]["level"], "INFO");
    assert_eq!(millis(&logs[0]["timestamp"]), at);
    assert_eq!(logs[0]["attributes"], json!({"labels": {"tier": "gold"}}));
    assert_eq!(logs[1]["level"], "DEBUG");
    assert_eq!(logs[1]["attributes"], json!({"logger_name": "L"}));
    let reasons = dead_lettered(&config, &sent[2..]).await;
    assert_eq!(reasons, ["missing_field"]);
    app.shutdown().await.unwrap();
}
