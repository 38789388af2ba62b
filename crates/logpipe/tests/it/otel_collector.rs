//! The real OpenTelemetry Collector (LOGPIPE_TEST_OTELCOL, built by `scripts/lib/otelcol.sh` from
//! scripts/otelcol/) in front of logpipe, run as a child process with a generated config; logs
//! enter it through its own OTLP/HTTP receiver from the Python OpenTelemetry SDK
//! (LOGPIPE_TEST_PYTHON). Two paths, both read back from the store (PostgreSQL, Redis, the
//! external Kafka):
//! - its `otlp_http` exporter, configured with the README's and docs/api.md's snippets, posting to the gateway's
//!   `/v1/logs` with the API key;
//! - its `kafka` exporter, configured with docs/consumer.md's snippet, writing `otlp_proto` and
//!   `otlp_json` records (several log records in one Kafka record) to topics the consumer reads
//!   in those formats, from the SDK and from a file its `file_log` receiver tails: each log
//!   record is one event with its index in the record.
//!
//! The exporter blocks are taken from the documents, so a snippet that stops working fails here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logpipe::app::Roles;
use logpipe::config::RecordFormat;
use serde_json::{json, Value};

use crate::consumer_flow::all_logs;
use crate::foreign_records::produce;
use crate::support::{
    eventually, external_config, free_port, required_env, run_python, start, unique,
};

const KEY: &str = "collector-test-key";

/// Emits `count` log records through the Python SDK's OTLP/HTTP exporter to the Collector's
/// receiver (argv = endpoint, service, count, base time in ns). One `force_flush` exports them
/// all in one request, so the Collector handles them as one batch (one Kafka record).
const EMIT: &str = r#"
import json, logging, sys
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import TraceFlags

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
endpoint, service, count, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
exporter = OTLPLogExporter(endpoint=endpoint, timeout=30)
resource = Resource.create({"service.name": service, "host.name": "collector-host", "deployment.environment": "it"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(
    BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000, max_export_batch_size=512))
logger = provider.get_logger("it.collector", "3.1.0")
levels = [SeverityNumber.DEBUG, SeverityNumber.INFO, SeverityNumber.WARN2, SeverityNumber.ERROR, SeverityNumber.FATAL]
for i in range(count):
    logger.emit(LogRecord(
        timestamp=base + i * 1_000_000 + 123_456,
        trace_id=0x4bf92f3577b34da6a3ce929d0e0e0000 + i, span_id=0x00f067aa0ba90000 + i,
        trace_flags=TraceFlags(1), severity_number=levels[i % len(levels)],
        body=f"{service} record {i}", attributes={"i": i, "user": "alice"}))
flushed = provider.force_flush(60_000)
provider.shutdown()
print(json.dumps({"flushed": flushed}))
"#;

fn emit(endpoint: &str, service: &str, count: usize, base_ns: i64) {
    let args = [endpoint, service, &count.to_string(), &base_ns.to_string()];
    let (status, stdout, stderr) = run_python(EMIT, &args, &[]);
    assert!(status.success(), "the OTLP SDK failed: {stderr}");
    assert!(stdout.contains(r#""flushed": true"#), "{stdout}");
    // The SDK logs a failed export and carries on: its silence is the Collector's 2xx.
    assert!(!stderr.contains("Failed to export"), "{stderr}");
}

/// A running Collector, killed (and reaped) on drop; its output goes to a file in its folder.
struct Collector {
    child: Child,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts the Collector with `config` (JSON is YAML, which its file provider reads) and
    /// `env`, adding a health_check extension on a free port, and waits until it reports ready,
    /// i.e. every receiver listens and every exporter started.
    async fn start(mut config: Value, env: &[(&str, &str)]) -> Collector {
        let binary = collector_binary();
        let health = free_port();
        config["extensions"] = json!({"health_check": {"endpoint": format!("127.0.0.1:{health}")}});
        config["service"]["extensions"] = json!(["health_check"]);
        // No metrics server: its default :8888 would clash between Collectors run in parallel.
        config["service"]["telemetry"] = json!({"metrics": {"level": "none"}});
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let output = dir.path().join("output.log");
        let log = std::fs::File::create(&output).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config=file:{}", file.display()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let mut collector = Collector {
            child,
            output,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{health}/");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = collector.child.try_wait().unwrap() {
                panic!("the Collector exited ({status}):\n{}", collector.output());
            }
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return collector;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Collector was not ready in 30 s:\n{}",
                collector.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails on a warning or error the Collector logged: a deprecated key or component name in
    /// a documented snippet, or an export that failed and was retried.
    fn assert_no_warnings(&self) {
        let output = self.output();
        let bad: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("\twarn\t") || l.contains("\terror\t"))
            .collect();
        assert!(bad.is_empty(), "the Collector warned:\n{}", bad.join("\n"));
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- Collector output ---\n{}", self.output());
        }
    }
}

/// The first ```yaml block of `doc` (a repository file) holding `marker`, parsed.
fn yaml_snippet(doc: &str, marker: &str) -> Value {
    let text = crate::support::read_repo_file(doc);
    let block = text
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("no yaml block with {marker:?} in {doc}"));
    serde_yaml_ng::from_str(block).unwrap_or_else(|e| panic!("{doc}: {e}\n{block}"))
}

/// An OTLP receiver on a free 127.0.0.1 port, HTTP only; returns it and its logs URL.
fn otlp_receiver() -> (Value, String) {
    let port = free_port();
    let receiver = json!({"protocols": {"http": {"endpoint": format!("127.0.0.1:{port}")}}});
    (receiver, format!("http://127.0.0.1:{port}/v1/logs"))
}

/// A base time ten minutes ago (inside the stats window), on a whole second, in ns.
fn base_ns() -> i64 {
    (chrono::Utc::now().timestamp() - 600) * 1_000_000_000
}

/// Asserts that `logs` are exactly [`EMIT`]'s `count` records of `service`, every field mapped.
fn assert_mapped(logs: &[Value], service: &str, count: usize, base_ns: i64) {
    assert_eq!(
        logs.len(),
        count,
        "each record stored exactly once: {logs:#?}"
    );
    let levels = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let mut seen = vec![false; count];
    for log in logs {
        let i = log["attributes"]["i"].as_u64().expect("attribute i") as usize;
        assert!(!seen[i], "record {i} stored twice");
        seen[i] = true;
        assert_eq!(log["service"], service);
        assert_eq!(log["host"], "collector-host");
        assert_eq!(log["level"], levels[i % levels.len()], "{log}");
        assert_eq!(log["message"], format!("{service} record {i}"));
        let expected =
            chrono::DateTime::from_timestamp_nanos(base_ns + i as i64 * 1_000_000 + 123_000);
        let stored: chrono::DateTime<chrono::Utc> =
            log["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored, expected, "{log}");
        assert_eq!(
            log["trace_id"],
            format!("4bf92f3577b34da6a3ce929d0e0e{i:04x}")
        );
        assert_eq!(log["span_id"], format!("00f067aa0ba9{i:04x}"));
        let a = &log["attributes"];
        assert_eq!(a["user"], "alice");
        assert_eq!(a["scope.name"], "it.collector");
        assert_eq!(a["scope.version"], "3.1.0");
        assert_eq!(a["resource.deployment.environment"], "it");
    }
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

/// LOGPIPE_TEST_OTELCOL, or a failure that says how to build it.
fn collector_binary() -> String {
    let binary = required_env("LOGPIPE_TEST_OTELCOL");
    assert!(
        Path::new(&binary).is_file(),
        "LOGPIPE_TEST_OTELCOL={binary} does not exist: build it with \
         `source scripts/lib/services.sh; source scripts/lib/otelcol.sh; ensure_otelcol` \
         (scripts/test.sh does)"
    );
    binary
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

/// The lines of the file the `file_log` receiver tails: (level, message, user).
const APP_LOG: [(&str, &str, &str); 3] = [
    ("warn", "disk 91% full", "bob"),
    ("error", "payment declined", "carol"),
    ("info", "order shipped", "dave"),
];

/// Writes [`APP_LOG`] as JSON lines (one millisecond apart from `base_ns`) to `dir`/app.log and
/// returns a `file_log` receiver that reads it from the beginning and maps it as a shipper
/// would: `time` and `level` into the record's time and severity, `msg` into the body,
/// `service` as the resource's `service.name`.
fn write_app_log(dir: &Path, service: &str, base_ns: i64) -> Value {
    let path = dir.join("app.log");
    let lines: Vec<String> = APP_LOG
        .iter()
        .enumerate()
        .map(|(i, (level, msg, user))| {
            let at =
                chrono::DateTime::from_timestamp_nanos(base_ns + i as i64 * 1_000_000 + 250_000);
            let time = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            json!({"time": time, "level": level, "msg": msg, "user": user}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, lines.concat()).unwrap();
    json!({
        "include": [path],
        "start_at": "beginning",
        "operators": [
            {"type": "json_parser",
             "timestamp": {"parse_from": "attributes.time", "layout_type": "gotime",
                           "layout": "2006-01-02T15:04:05.000000Z07:00"},
             "severity": {"parse_from": "attributes.level"}},
            {"type": "move", "from": "attributes.msg", "to": "body"},
            {"type": "add", "field": "resource[\"service.name\"]", "value": service},
        ],
    })
}

/// Asserts that `logs` are [`APP_LOG`]'s lines, mapped, each once, in `topic`, and that the
/// events of each Kafka record are at indexes 0..n (the receiver batches lines as it reads).
fn assert_app_log(logs: &[Value], topic: &str, base_ns: i64) {
    assert_eq!(
        logs.len(),
        APP_LOG.len(),
        "each line stored once: {logs:#?}"
    );
    for (i, (level, msg, user)) in APP_LOG.iter().enumerate() {
        let log = logs
            .iter()
            .find(|l| l["message"] == *msg)
            .unwrap_or_else(|| panic!("{msg:?} not stored: {logs:#?}"));
        assert_eq!(log["level"], level.to_uppercase(), "{log}");
        assert_eq!(log["attributes"]["user"], *user, "{log}");
        assert_eq!(log["attributes"]["log.file.name"], "app.log", "{log}");
        let expected =
            chrono::DateTime::from_timestamp_nanos(base_ns + i as i64 * 1_000_000 + 250_000);
        let stored: chrono::DateTime<chrono::Utc> =
            log["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(stored, expected, "{log}");
        assert_eq!(log["kafka"]["topic"], topic, "{log}");
    }
    let mut records: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for log in logs {
        let record = format!("{}/{}", log["kafka"]["partition"], log["kafka"]["offset"]);
        let index = log["kafka"]["index"]
            .as_u64()
            .unwrap_or_else(|| panic!("no index: {log}"));
        records.entry(record).or_default().push(index);
    }
    for (record, mut indexes) in records {
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..indexes.len() as u64).collect::<Vec<_>>(),
            "record {record}"
        );
    }
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
        e["producer"] = json!({"required_acks": -1});
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
