//! What the tests send through the Collector and how it must come out: log records from the
//! Python OpenTelemetry SDK, and JSON lines for the `file_log` receiver to tail.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::run_python;

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

pub fn emit(endpoint: &str, service: &str, count: usize, base_ns: i64) {
    let args = [endpoint, service, &count.to_string(), &base_ns.to_string()];
    let (status, stdout, stderr) = run_python(EMIT, &args, &[]);
    assert!(status.success(), "the OTLP SDK failed: {stderr}");
    assert!(stdout.contains(r#""flushed": true"#), "{stdout}");
    // The SDK logs a failed export and carries on: its silence is the Collector's 2xx.
    assert!(!stderr.contains("Failed to export"), "{stderr}");
}

/// Asserts that `logs` are exactly [`EMIT`]'s `count` records of `service`, every field mapped.
pub fn assert_mapped(logs: &[Value], service: &str, count: usize, base_ns: i64) {
    crate::ingest_otlp::for_each_sdk_record(logs, service, "collector-host", count, base_ns, |a| {
        assert_eq!(a["scope.name"], "it.collector");
        assert_eq!(a["scope.version"], "3.1.0");
    });
}

/// The lines of the file the `file_log` receiver tails: (level, message, user).
pub const APP_LOG: [(&str, &str, &str); 3] = [
    ("warn", "disk 91% full", "bob"),
    ("error", "payment declined", "carol"),
    ("info", "order shipped", "dave"),
];

/// Writes [`APP_LOG`] as JSON lines (one millisecond apart from `base_ns`) to `dir`/app.log and
/// returns a `file_log` receiver that reads it from the beginning and maps it as a shipper
/// would: `time` and `level` into the record's time and severity, `msg` into the body,
/// `service` as the resource's `service.name`.
pub fn write_app_log(dir: &Path, service: &str, base_ns: i64) -> Value {
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
pub fn assert_app_log(logs: &[Value], topic: &str, base_ns: i64) {
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
