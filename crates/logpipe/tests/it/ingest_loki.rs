//! Loki push (`POST /loki/api/v1/push`) driven by real clients: python-logging-loki (JSON) and a
//! Promtail-shaped snappy protobuf push, against the embedded pipeline and against Apache Kafka +
//! PostgreSQL + Redis, every event read back from the store with its mapped fields.

use std::time::Duration;

use logpipe::app::Roles;
use logpipe::config::Config;
use logpipe::gateway::loki::proto::{
    encode, EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
};
use serde_json::Value;

use crate::support::{eventually, external_config, metric, run_python, start, test_config, unique};

pub const KEY: &str = "it-shipper-key-0123456789";

/// The stored logs of `service`, oldest first.
pub async fn stored(base: &str, service: &str) -> Vec<Value> {
    let url = format!("{base}/api/v1/logs?service={service}&limit=1000&since=2000-01-01T00:00:00Z");
    let page: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut logs = page["logs"].as_array().cloned().unwrap_or_default();
    logs.reverse();
    logs
}

/// Waits until `n` logs of `service` are stored and returns them, oldest first.
pub async fn wait_stored(base: &str, service: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(60),
        &format!("{n} logs of {service}"),
        || async { stored(base, service).await.len() >= n },
    )
    .await;
    let logs = stored(base, service).await;
    assert_eq!(logs.len(), n, "{logs:#?}");
    logs
}

const LOKI_SCRIPT: &str = r#"
import logging, sys, logging_loki
url, key, service, run = sys.argv[1:5]
handler = logging_loki.LokiHandler(
    url=url + "/loki/api/v1/push",
    tags={"service_name": service, "run": run, "env": "test"},
    auth=("promtail", key),
    version="1",
)
def fail(record):
    raise SystemExit("loki push failed: %s" % (sys.exc_info()[1],))
handler.handleError = fail
log = logging.getLogger("it.loki")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(handler)
log.debug("debug line")
log.info("info line", extra={"tags": {"request": "r-1"}})
log.warning("warning line")
log.error("error line")
log.critical("critical line")
print("sent")
"#;

async fn python_logging_loki(config: Config) {
    let mut config = config;
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("loki");
    let service = format!("py-{run}");
    let (status, stdout, stderr) = run_python(LOKI_SCRIPT, &[&base, KEY, &service, &run], &[]);
    assert!(status.success(), "{stdout}\n{stderr}");

    let logs = wait_stored(&base, &service, 5).await;
    let by_message = |m: &str| {
        logs.iter()
            .find(|l| l["message"] == m)
            .unwrap_or_else(|| panic!("{m} not stored: {logs:#?}"))
    };
    for (message, level) in [
        ("debug line", "DEBUG"),
        ("info line", "INFO"),
        ("warning line", "WARN"),
        ("error line", "ERROR"),
        ("critical line", "FATAL"),
    ] {
        let log = by_message(message);
        assert_eq!(log["level"], level, "{log}");
        assert_eq!(log["service"], service.as_str());
        // The labels that were not service or level are attributes; the level label is gone.
        assert_eq!(log["attributes"]["run"], run.as_str(), "{log}");
        assert_eq!(log["attributes"]["env"], "test");
        assert_eq!(log["attributes"]["logger"], "it.loki");
        assert!(log["attributes"].get("severity").is_none(), "{log}");
        assert!(log["attributes"].get("service_name").is_none(), "{log}");
    }
    assert_eq!(by_message("info line")["attributes"]["request"], "r-1");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_logging_loki_pushes_are_stored_with_their_labels() {
    python_logging_loki(test_config("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_python_logging_loki_pushes_are_stored_with_their_labels() {
    python_logging_loki(external_config().await).await;
}

fn entry(seconds: i64, nanos: i32, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp { seconds, nanos }),
        line: line.as_bytes().to_vec(),
        structured_metadata: metadata
            .iter()
            .map(|(name, value)| LabelPairAdapter {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
    }
}

async fn protobuf_push(config: Config) {
    let mut config = config;
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let url = format!("{base}/loki/api/v1/push");
    let service = unique("proto");
    let now = chrono::Utc::now().timestamp();
    // Shaped as Promtail sends it: a selector string with an escaped quote, several entries per
    // stream, structured metadata, nanosecond timestamps.
    let request = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: format!(
                    r#"{{filename="/var/log/a \"b\".log", job="varlogs", service_name="{service}", level="error"}}"#
                ),
                entries: vec![
                    entry(now, 123_456_789, "first line", &[("trace_id", "abc")]),
                    entry(now, 123_456_790, "second line", &[("level", "debug")]),
                    entry(now, 5, "   ", &[]),
                ],
                hash: 0,
            },
            StreamAdapter {
                labels: r#"{job="no-service" broken}"#.into(),
                entries: vec![entry(now, 0, "lost", &[])],
                hash: 0,
            },
        ],
    };
    let client = reqwest::Client::new();
    let response = client
        .post(&url)
        .basic_auth("tenant-a", Some(KEY))
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", "tenant-a")
        .body(encode(&request))
        .send()
        .await
        .unwrap();
    // The valid entries are stored; the push is a 400 naming the others (clients do not retry it).
    assert_eq!(response.status(), 400);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.starts_with("2 entries were refused"), "{text}");
    assert!(text.contains("(2 others were stored"), "{text}");
    assert!(text.contains("stream 0 entry 2: empty_message"), "{text}");
    assert!(text.contains("stream 1 entry 0: invalid_labels"), "{text}");

    let logs = wait_stored(&base, &service, 2).await;
    let first = logs.iter().find(|l| l["message"] == "first line").unwrap();
    assert_eq!(first["level"], "ERROR");
    // Nanoseconds truncated to the microseconds logpipe keeps.
    let micros = chrono::DateTime::from_timestamp(now, 123_456_000).unwrap();
    let stored_at: chrono::DateTime<chrono::Utc> =
        first["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(stored_at, micros);
    assert_eq!(
        first["attributes"],
        serde_json::json!({"filename": "/var/log/a \"b\".log", "job": "varlogs",
                            "trace_id": "abc", "tenant": "tenant-a"})
    );
    let second = logs.iter().find(|l| l["message"] == "second line").unwrap();
    assert_eq!(
        second["level"], "DEBUG",
        "structured metadata wins: {second}"
    );

    // A push of only good entries is 204 with no body.
    let good = PushRequest {
        streams: vec![StreamAdapter {
            labels: format!(r#"{{service_name="{service}"}}"#),
            entries: vec![entry(now, 0, "third line", &[])],
            hash: 0,
        }],
    };
    let response = client
        .post(&url)
        .basic_auth("u", Some(KEY))
        .body(encode(&good))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    wait_stored(&base, &service, 3).await;

    // A body that is not snappy, and no key.
    let response = client
        .post(&url)
        .basic_auth("u", Some(KEY))
        .header("content-type", "application/x-protobuf")
        .body("not snappy")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("snappy"));
    let response = client.post(&url).body(encode(&good)).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // JSON with gzip and a tenant.
    let json = serde_json::json!({"streams": [{"stream": {"service": service, "lvl": "warn"},
        "values": [[format!("{}000000000", now), "json line", {"span": "s1"}]]}]});
    let response = client
        .post(&url)
        .basic_auth("u", Some(KEY))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(crate::support::gzip(json.to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    let logs = wait_stored(&base, &service, 4).await;
    let json_line = logs.iter().find(|l| l["message"] == "json line").unwrap();
    assert_eq!(json_line["level"], "WARN");
    assert_eq!(json_line["attributes"], serde_json::json!({"span": "s1"}));

    // Counted under the protocol, refusals by their code.
    for (series, value) in [
        (r#"gateway_events_accepted_total{protocol="loki"}"#, 4.0),
        (
            r#"gateway_events_rejected_total{protocol="loki",reason="empty_message"}"#,
            1.0,
        ),
        (
            r#"gateway_events_rejected_total{protocol="loki",reason="invalid_labels"}"#,
            1.0,
        ),
        (
            r#"gateway_events_rejected_total{protocol="loki",reason="invalid_push"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&base, series).await, value, "{series}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_protobuf_pushes_store_the_valid_entries_and_name_the_rest() {
    protobuf_push(test_config("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_snappy_protobuf_pushes_store_the_valid_entries_and_name_the_rest() {
    protobuf_push(external_config().await).await;
}
