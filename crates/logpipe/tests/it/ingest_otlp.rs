//! OTLP/HTTP logs (`POST /v1/logs`) driven by the real OpenTelemetry Python SDK
//! (LoggerProvider + BatchLogRecordProcessor + the OTLP/HTTP log exporter, gzip, an API key in
//! `headers=`), against the embedded pipeline and against PostgreSQL + Redis + Kafka, reading
//! every record back through the query API; partial success as the official protobuf classes
//! read it; and an upstream outage the exporter rides out by retrying. The protocol's answers
//! through the router are in `ingest_otlp_router`.

use std::time::Duration;

use logpipe::app::{App, Roles};
use logpipe::config::Config;
use serde_json::Value;

use crate::support::{
    eventually, external_config, free_port, run_python, start, test_config, unique, wait_ready,
};

const KEY: &str = "otlp-test-key-0123456789";

/// Emits `count` records through the SDK: argv = endpoint, key ("" = none), service, count,
/// base time in ns, and extra (a JSON list of raw bodies to emit after the good records, e.g.
/// "" for an empty body). Prints a JSON line with the flush result.
const EMIT: &str = r#"
import json, logging, sys
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import TraceFlags

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
endpoint, key, service, count, base = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
extra = json.loads(sys.argv[6])
headers = {"Authorization": "Bearer " + key} if key else {}
exporter = OTLPLogExporter(endpoint=endpoint, headers=headers, compression=Compression.Gzip, timeout=30)
resource = Resource.create({"service.name": service, "host.name": "py-host-1", "deployment.environment": "it"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(
    BatchLogRecordProcessor(exporter, schedule_delay_millis=100, max_export_batch_size=20))
logger = provider.get_logger("it.otlp", "1.2.0")
levels = [SeverityNumber.DEBUG, SeverityNumber.INFO, SeverityNumber.WARN2, SeverityNumber.ERROR, SeverityNumber.FATAL]
for i in range(count):
    logger.emit(LogRecord(
        timestamp=base + i * 1_000_000 + 123_456,
        trace_id=0x4bf92f3577b34da6a3ce929d0e0e0000 + i, span_id=0x00f067aa0ba90000 + i,
        trace_flags=TraceFlags(1), severity_number=levels[i % len(levels)],
        body=f"{service} record {i}",
        attributes={"i": i, "user": "alice", "ratio": 0.5, "ok": True, "tags": ["a", "b"]}))
for body in extra:
    logger.emit(LogRecord(timestamp=base, severity_number=SeverityNumber.INFO, body=body))
flushed = provider.force_flush(60_000)
provider.shutdown()
print(json.dumps({"flushed": flushed}))
"#;

/// Posts one request built with the official OTLP protobuf classes, in protobuf and then in
/// JSON (json_format), parsing the gateway's answers with the same classes: argv = endpoint,
/// key. Prints both answers' partial_success as JSON.
const RAW: &str = r#"
import json, sys, urllib.request
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

endpoint, key, service = sys.argv[1], sys.argv[2], sys.argv[3]
req = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
    resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]),
    scope_logs=[ScopeLogs(log_records=[
        LogRecord(time_unix_nano=1764936000000000000, severity_number=17, body=AnyValue(string_value="raw good")),
        LogRecord(time_unix_nano=1764936000000000000, severity_number=9),
    ])])])
out = {}
for ctype, data in [("application/x-protobuf", req.SerializeToString()),
                    # OTLP/JSON writes enums as integers (the protobuf default is their names).
                    ("application/json", json_format.MessageToJson(req, use_integers_for_enums=True).encode())]:
    r = urllib.request.Request(endpoint, data=data, method="POST",
        headers={"Content-Type": ctype, "Authorization": "Bearer " + key})
    with urllib.request.urlopen(r) as resp:
        body = resp.read()
        assert resp.headers["Content-Type"] == ctype, resp.headers["Content-Type"]
    answer = ExportLogsServiceResponse()
    if ctype == "application/json":
        json_format.Parse(body.decode(), answer)
    else:
        answer.ParseFromString(body)
    out[ctype] = {"rejected": answer.partial_success.rejected_log_records,
                  "message": answer.partial_success.error_message}
print(json.dumps(out))
"#;

/// Runs [`EMIT`]; returns (stdout, stderr) after asserting the script succeeded.
fn emit(
    endpoint: &str,
    key: &str,
    service: &str,
    count: usize,
    base_ns: i64,
    extra: &[&str],
) -> (String, String) {
    let extra = serde_json::to_string(extra).unwrap();
    let (status, stdout, stderr) = run_python(
        EMIT,
        &[
            endpoint,
            key,
            service,
            &count.to_string(),
            &base_ns.to_string(),
            &extra,
        ],
        &[],
    );
    assert!(status.success(), "the SDK script failed: {stderr}");
    (stdout, stderr)
}

/// A base time a little in the past, on a whole second.
fn base_ns() -> i64 {
    (chrono::Utc::now().timestamp() - 600) * 1_000_000_000
}

/// Every stored log of `service`, once `expected` of them are there.
async fn read_back(base: &str, service: &str, expected: usize) -> Vec<Value> {
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/logs?service={service}&limit=1000");
    eventually(
        Duration::from_secs(60),
        &format!("{expected} logs of {service} stored"),
        || {
            let request = client.get(&url).bearer_auth(KEY).send();
            async move {
                let Ok(response) = request.await else {
                    return false;
                };
                let body: Value = response.json().await.unwrap_or_default();
                body["logs"].as_array().map_or(0, Vec::len) >= expected
            }
        },
    )
    .await;
    // A moment more: anything past `expected` would be a duplicate.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body: Value = client
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["logs"].as_array().cloned().unwrap()
}

/// Asserts every record [`EMIT`] sent for `service` is stored once, with every field mapped.
fn assert_mapped(logs: &[Value], service: &str, count: usize, base_ns: i64) {
    for_each_sdk_record(logs, service, "py-host-1", count, base_ns, |a| {
        assert_eq!(a["ratio"], 0.5);
        assert_eq!(a["ok"], true);
        assert_eq!(a["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(a["scope.name"], "it.otlp");
        assert_eq!(a["scope.version"], "1.2.0");
        assert_eq!(a["resource.telemetry.sdk.language"], "python");
        assert!(a.get("resource.service.name").is_none() && a.get("resource.host.name").is_none());
    });
}

/// Asserts `logs` are exactly `count` records the Python SDK emitted in the tests' shape (record
/// `i`: attribute `i`, message "{service} record {i}", levels DEBUG..FATAL in turn, time
/// `base_ns` + i ms + 123,456 ns, trace and span ids ending in `i`, attribute `user`, resource
/// `deployment.environment` = "it", on `host`), each once; `more` checks a record's other
/// attributes.
pub(crate) fn for_each_sdk_record(
    logs: &[Value],
    service: &str,
    host: &str,
    count: usize,
    base_ns: i64,
    more: impl Fn(&Value),
) {
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
        assert_eq!(log["level"], levels[i % levels.len()], "{log}");
        assert_eq!(log["message"], format!("{service} record {i}"));
        assert_eq!(log["host"], host);
        // Nanoseconds are kept to the microsecond.
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
        assert_eq!(a["resource.deployment.environment"], "it");
        more(a);
    }
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the counter line starting with `series`.
pub(crate) fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

async fn sdk_round_trip(mut config: Config) {
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let endpoint = format!("{base}/v1/logs");
    let service = unique("otlp-sdk");
    let t0 = base_ns();
    let count = 45;
    let (stdout, _) =
        tokio::task::block_in_place(|| emit(&endpoint, KEY, &service, count, t0, &[]));
    assert!(stdout.contains(r#""flushed": true"#), "{stdout}");
    let logs = read_back(&base, &service, count).await;
    assert_mapped(&logs, &service, count, t0);
    assert_eq!(
        counter(
            &metrics(&base).await,
            "gateway_events_accepted_total{protocol=\"otlp\"}"
        ),
        count as u64
    );

    // Without the key the exporter is refused (401) and nothing of it is stored.
    let keyless = unique("otlp-keyless");
    let (_, stderr) = tokio::task::block_in_place(|| emit(&endpoint, "", &keyless, 3, t0, &[]));
    assert!(
        stderr.contains("401"),
        "the exporter reports the 401: {stderr}"
    );
    let body: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/logs?service={keyless}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["logs"], serde_json::json!([]));
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_exports_through_the_embedded_pipeline() {
    sdk_round_trip(test_config("")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn external_the_python_sdk_exports_to_postgres_redis_and_kafka() {
    sdk_round_trip(external_config().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_the_limits_refuse_are_a_partial_success_and_counted() {
    let mut config = test_config("");
    config.gateway.api_keys = vec![KEY.into()];
    config.limits.max_message_bytes = 1000;
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let endpoint = format!("{base}/v1/logs");
    let service = unique("otlp-partial");
    let t0 = base_ns();
    let long = "x".repeat(1001);
    let (_, stderr) =
        tokio::task::block_in_place(|| emit(&endpoint, KEY, &service, 5, t0, &["", "   ", &long]));
    // The SDK treats a 200 with partial_success as a success: no export error.
    assert!(!stderr.contains("Failed to export"), "{stderr}");
    let logs = read_back(&base, &service, 5).await;
    assert_mapped(&logs, &service, 5, t0);
    let m = metrics(&base).await;
    let rejected = |reason: &str| {
        counter(
            &m,
            &format!("gateway_events_rejected_total{{protocol=\"otlp\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("empty_message"), 2);
    assert_eq!(rejected("message_too_large"), 1);

    // The answer itself, parsed by the official protobuf classes, in both encodings.
    let raw_service = unique("otlp-raw");
    let (status, stdout, stderr) =
        tokio::task::block_in_place(|| run_python(RAW, &[&endpoint, KEY, &raw_service], &[]));
    assert!(status.success(), "{stderr}");
    let answers: Value = serde_json::from_str(stdout.trim()).unwrap();
    for encoding in ["application/x-protobuf", "application/json"] {
        let answer = &answers[encoding];
        assert_eq!(answer["rejected"], 1, "{encoding}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("1 rejected as empty_message"),
            "{encoding}: {message}"
        );
    }
    let raw = read_back(&base, &raw_service, 2).await;
    assert_eq!(raw.len(), 2, "one good record from each encoding");
    assert!(raw
        .iter()
        .all(|l| l["level"] == "ERROR" && l["message"] == "raw good"));
    app.shutdown().await.unwrap();
}

/// The producer service is down when the exporter sends: the gateway answers 503 with
/// Retry-After, the exporter retries, and once the producer is up every record is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn external_an_exporter_rides_out_a_producer_outage_without_loss() {
    let mut config = external_config().await;
    config.gateway.api_keys = vec![KEY.into()];
    config.gateway.retry_after = Duration::from_secs(2);
    let producer_port = free_port();
    config.producer.listen = format!("127.0.0.1:{producer_port}").parse().unwrap();
    config.gateway.producer_url = format!("http://127.0.0.1:{producer_port}");

    let consumer = App::start(config.clone(), Roles::Consumer).await.unwrap();
    wait_ready(&format!("http://{}", consumer.consumer_addr.unwrap())).await;
    let gateway = App::start(config.clone(), Roles::Gateway).await.unwrap();
    let base = format!("http://{}", gateway.gateway_addr.unwrap());
    let endpoint = format!("{base}/v1/logs");
    let service = unique("otlp-outage");
    let t0 = base_ns();
    let count = 30;
    let exporter = {
        let (endpoint, service) = (endpoint.clone(), service.clone());
        std::thread::spawn(move || emit(&endpoint, KEY, &service, count, t0, &[]))
    };
    // The producer starts only once the gateway has refused an export with 503: the Python
    // exporter needs seconds to start on a loaded machine, and a fixed wait let it start after
    // the producer was already up (no outage seen, the test then failed for the wrong reason).
    let refused = r#"gateway_http_requests_total{route="/v1/logs",method="POST",status="503"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !metrics(&base).await.lines().any(|l| {
        l.strip_prefix(refused)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter sent nothing within 120 s (no 503 from the gateway)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let producer = App::start(config.clone(), Roles::Producer).await.unwrap();
    let (stdout, stderr) = tokio::task::spawn_blocking(move || exporter.join().unwrap())
        .await
        .unwrap();
    assert!(stdout.contains(r#""flushed": true"#), "{stdout}");
    assert!(
        stderr.contains("Transient error Service Unavailable") || stderr.contains("503"),
        "the exporter saw 503 and retried: {stderr}"
    );
    assert!(
        !stderr.contains("Failed to export"),
        "nothing was given up: {stderr}"
    );
    let logs = read_back(&base, &service, count).await;
    assert_mapped(&logs, &service, count, t0);
    let m = metrics(&base).await;
    assert!(
        counter(
            &m,
            "gateway_events_rejected_total{protocol=\"otlp\",reason=\"kafka_unavailable\"}"
        ) > 0,
        "the refusals during the outage are counted"
    );
    gateway.shutdown().await.unwrap();
    producer.shutdown().await.unwrap();
    consumer.shutdown().await.unwrap();
}
