//! The real OpenTelemetry Collector (LOGPIPE_TEST_OTELCOL, built by `scripts/lib/otelcol.sh` from
//! scripts/otelcol/) in front of logpipe, run as a child process with a generated config; logs
//! enter it through its own OTLP/HTTP receiver from the Python OpenTelemetry SDK
//! (LOGPIPE_TEST_PYTHON). Two paths, both read back from the store (PostgreSQL, Redis, the
//! external Kafka):
//! - its `otlp_http` exporter, configured with the README's and docs/api.md's snippets, posting
//!   to the gateway's `/v1/logs` with the API key;
//! - its `kafka` exporter, configured with docs/consumer.md's snippet, writing `otlp_proto` and
//!   `otlp_json` records (several log records in one Kafka record) to topics the consumer reads
//!   in those formats, from the SDK and from a file its `file_log` receiver tails: each log
//!   record is one event with its index in the record.
//!
//! The exporter blocks are taken from the documents, so a snippet that stops working fails here.

mod collector;
mod sources;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use logpipe::app::Roles;
use logpipe::config::RecordFormat;
use serde_json::{json, Value};

use crate::consumer_flow::all_logs;
use crate::foreign_records::produce;
use crate::support::{eventually, external_config, start, unique};
use collector::{collector_binary, otlp_receiver, yaml_snippet, Collector};
use sources::{assert_app_log, assert_mapped, emit, write_app_log, APP_LOG};

const KEY: &str = "collector-test-key";

/// A base time ten minutes ago (inside the stats window), on a whole second, in ns.
fn base_ns() -> i64 {
    (chrono::Utc::now().timestamp() - 600) * 1_000_000_000
}

/// Every stored log of services starting with `prefix`, once `n` are there (and a moment more,
/// so an extra row would show), read with the API key.
async fn stored(base: &str, prefix: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(60),
        &format!("{n} logs of {prefix}* stored"),
        || async { all_logs(base, prefix).await.len() >= n },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    all_logs(base, prefix).await
}

/// The Collector binary the tests run is the one scripts/otelcol/ describes: built from the
/// committed sources (a hand-set LOGPIPE_TEST_OTELCOL or a stale cache would test something
/// else), at the pinned version, with the components the tests and the documents use.
#[test]
fn external_collector_binary_matches_scripts_otelcol() {
    let binary = collector_binary();
    let script = "source scripts/lib/services.sh && source scripts/lib/otelcol.sh && \
                  printf '%s %s' \"$OTELCOL_VERSION\" \"$(otelcol_sources_stamp)\"";
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(crate::support::repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    let (version, stamp) = out.split_once(' ').unwrap();
    let built = Path::new(&binary).with_file_name(".sources");
    assert_eq!(
        std::fs::read_to_string(&built).unwrap_or_default().trim(),
        stamp,
        "{binary} was not built from scripts/otelcol/ as it is: rebuild it with ensure_otelcol \
         (scripts/lib/otelcol.sh)"
    );
    let run = |arg: &str| {
        let out = Command::new(&binary).arg(arg).output().unwrap();
        assert!(out.status.success(), "{binary} {arg}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run("--version").trim(),
        format!("otelcol version {version}")
    );
    let components: Value = serde_yaml_ng::from_str(&run("components")).unwrap();
    let names = |kind: &str| -> Vec<String> {
        let list = components[kind].as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("receivers"), ["file_log", "otlp"]);
    assert_eq!(names("exporters"), ["debug", "kafka", "otlp_http"]);
    assert_eq!(names("extensions"), ["health_check"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_collector_otlp_http_exporter_posts_to_the_gateway() {
    let mut config = external_config().await;
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let gateway = app.gateway_addr.unwrap();

    // Both documented exporters, each in a pipeline of its own: the README's (`logs_endpoint`,
    // the key from LOGPIPE_KEY) and docs/api.md's (`endpoint` with /v1/logs appended, the key
    // from LOGPIPE_API_KEY, retries on).
    let readme = yaml_snippet("README.md", "logs_endpoint");
    let mut readme = readme["exporters"]["otlp_http/logpipe"].clone();
    assert_eq!(readme["logs_endpoint"], "http://logpipe:8080/v1/logs");
    readme["logs_endpoint"] = json!(format!("http://{gateway}/v1/logs"));
    let api = yaml_snippet("docs/api.md", "logpipe-gateway:4318");
    let mut api = api["exporters"]["otlp_http/logpipe"].clone();
    assert_eq!(api["endpoint"], "http://logpipe-gateway:4318");
    api["endpoint"] = json!(format!("http://{gateway}"));
    let (readme_receiver, readme_endpoint) = otlp_receiver();
    let (api_receiver, api_endpoint) = otlp_receiver();
    let collector_config = json!({
        "receivers": {"otlp/readme": readme_receiver, "otlp/api": api_receiver},
        "exporters": {"otlp_http/readme": readme, "otlp_http/api": api},
        "service": {"pipelines": {
            "logs/readme": {"receivers": ["otlp/readme"], "exporters": ["otlp_http/readme"]},
            "logs/api": {"receivers": ["otlp/api"], "exporters": ["otlp_http/api"]},
        }},
    });
    let env = [("LOGPIPE_KEY", KEY), ("LOGPIPE_API_KEY", KEY)];
    let collector = Collector::start(collector_config, &env).await;

    let base_ns = base_ns();
    let base = format!("http://{gateway}");
    for (endpoint, name) in [
        (&readme_endpoint, "collector-readme"),
        (&api_endpoint, "collector-api"),
    ] {
        let service = unique(name);
        emit(endpoint, &service, 12, base_ns);
        let logs = read_with_key(&base, &service, 12).await;
        assert_mapped(&logs, &service, 12, base_ns);
    }
    collector.assert_no_warnings();
    app.shutdown().await.unwrap();
}

/// Every stored log of `service`, read with the API key once `expected` are there.
async fn read_with_key(base: &str, service: &str, expected: usize) -> Vec<Value> {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/logs?service={service}&limit=1000&since=2000-01-01T00:00:00Z");
    let fetch = || async {
        let response = client.get(&url).bearer_auth(KEY).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        body["logs"].as_array().cloned()
    };
    eventually(
        Duration::from_secs(60),
        &format!("{expected} logs of {service} stored"),
        || async { fetch().await.map_or(0, |l| l.len()) >= expected },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fetch().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_collector_kafka_exporter_records_store_each_log_record_with_its_index() {
    let mut config = external_config().await;
    let run = unique("collector-kafka");
    let (proto_topic, json_topic) = (unique("it-otelcol-proto"), unique("it-otelcol-json"));
    produce(json!({"brokers": config.kafka.brokers, "create": [proto_topic, json_topic]}));
    config.consumer.topics = vec![
        config.kafka.topic.clone(),
        proto_topic.clone(),
        json_topic.clone(),
    ];
    config
        .consumer
        .formats
        .insert(proto_topic.clone(), RecordFormat::OtlpProto);
    config
        .consumer
        .formats
        .insert(json_topic.clone(), RecordFormat::OtlpJson);
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());

    let documented = yaml_snippet("docs/consumer.md", "kafka:")["exporters"]["kafka"].clone();
    assert!(documented["brokers"].is_array(), "{documented}");
    assert!(documented["logs"]["topic"].is_string(), "{documented}");
    assert_eq!(documented["logs"]["encoding"], "otlp_proto");
    assert_eq!(documented["producer"]["required_acks"], -1);
    let brokers: Vec<&str> = config.kafka.brokers.split(',').collect();
    let exporter = |topic: &str, encoding: &str| {
        let mut e = documented.clone();
        e["brokers"] = json!(brokers);
        e["logs"]["topic"] = json!(topic);
        e["logs"]["encoding"] = json!(encoding);
        // Without a queue the receiver answers only once Kafka acknowledged the record, so the
        // SDK's successful export means the record is in Kafka; retries stay bounded.
        e["sending_queue"] = json!({"enabled": false});
        e["retry_on_failure"] = json!({"enabled": true, "max_elapsed_time": "30s"});
        e
    };
    let (proto_receiver, proto_endpoint) = otlp_receiver();
    let (json_receiver, json_endpoint) = otlp_receiver();
    // The documented pipeline (OTLP and a tailed file) feeds the otlp_proto topic.
    let file_service = format!("{run}-file");
    let logs_dir = tempfile::tempdir().unwrap();
    let file_base_ns = base_ns();
    let file_receiver = write_app_log(logs_dir.path(), &file_service, file_base_ns);
    let pipeline =
        yaml_snippet("docs/consumer.md", "kafka:")["service"]["pipelines"]["logs"].clone();
    assert_eq!(pipeline["exporters"], json!(["kafka"]));
    let mut receivers = serde_json::Map::new();
    for name in pipeline["receivers"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let receiver = match name {
            "otlp" => proto_receiver.clone(),
            "file_log" => file_receiver.clone(),
            other => {
                panic!("docs/consumer.md's pipeline names a receiver this test lacks: {other}")
            }
        };
        receivers.insert(name.to_string(), receiver);
    }
    receivers.insert("otlp/json".into(), json_receiver);
    let collector_config = json!({
        "receivers": receivers,
        "exporters": {
            "kafka": exporter(&proto_topic, "otlp_proto"),
            "kafka/json": exporter(&json_topic, "otlp_json"),
        },
        "service": {"pipelines": {
            "logs": pipeline,
            "logs/json": {"receivers": ["otlp/json"], "exporters": ["kafka/json"]},
        }},
    });
    let collector = Collector::start(collector_config, &[]).await;

    let base_ns = base_ns();
    let (proto_service, json_service) = (format!("{run}-proto"), format!("{run}-json"));
    emit(&proto_endpoint, &proto_service, 5, base_ns);
    emit(&json_endpoint, &json_service, 4, base_ns);

    let logs = stored(&base, &run, 9 + APP_LOG.len()).await;
    collector.assert_no_warnings();
    for (service, topic, count) in [
        (&proto_service, &proto_topic, 5),
        (&json_service, &json_topic, 4),
    ] {
        let mine: Vec<Value> = logs
            .iter()
            .filter(|l| l["service"] == service.as_str())
            .cloned()
            .collect();
        assert_mapped(&mine, service, count, base_ns);
        // One export request, one Kafka record: one offset, each log record at its index.
        let record = |log: &Value| {
            (
                log["kafka"]["partition"].clone(),
                log["kafka"]["offset"].clone(),
            )
        };
        for log in &mine {
            assert_eq!(log["kafka"]["topic"], topic.as_str(), "{log}");
            assert_eq!(record(log), record(&mine[0]), "one Kafka record: {log}");
            assert_eq!(log["kafka"]["index"], log["attributes"]["i"], "{log}");
        }
    }
    let file: Vec<Value> = logs
        .iter()
        .filter(|l| l["service"] == file_service.as_str())
        .cloned()
        .collect();
    assert_app_log(&file, &proto_topic, file_base_ns);
    app.shutdown().await.unwrap();
}
