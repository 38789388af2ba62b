//! The OTLP mapping, one test per row of the table in [`super::map`], and the decoding of both
//! encodings.

use chrono::{DateTime, TimeZone, Utc};
use logpipe_model::{Level, Limits, LogEvent, ServiceName};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::map::{self, Context, Mapped};
use super::Encoding;

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn record(body: &str) -> LogRecord {
    LogRecord {
        body: string(body),
        ..Default::default()
    }
}

fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn map_with(request: ExportLogsServiceRequest, limits: &Limits) -> Mapped {
    let default: ServiceName = "unknown_service".parse().unwrap();
    map::map_request(
        request,
        &Context {
            limits,
            default_service: &default,
            received: received(),
        },
    )
}

fn one(resource: Vec<KeyValue>, record: LogRecord) -> LogEvent {
    let mut mapped = map_with(request(resource, vec![record]), &Limits::DEFAULT);
    assert_eq!(mapped.rejected_count(), 0, "{:?}", mapped.rejected);
    mapped.events.remove(0)
}

fn attributes(event: &LogEvent) -> serde_json::Value {
    event
        .attributes
        .as_deref()
        .map(|raw| serde_json::from_str(raw.get()).unwrap())
        .unwrap_or_default()
}

#[test]
fn service_name_maps_to_service_sanitized_or_the_default() {
    let service = |value: Option<AnyValue>| {
        one(vec![kv("service.name", value)], record("m"))
            .service
            .into_string()
    };
    assert_eq!(service(string("checkout-api")), "checkout-api");
    assert_eq!(service(string("my service/v2")), "my_service_v2");
    assert_eq!(service(string("ünï")), "_n_");
    assert_eq!(service(string(&"a".repeat(200))).len(), 128);
    assert_eq!(service(string("  ")), "unknown_service");
    assert_eq!(one(vec![], record("m")).service.as_str(), "unknown_service");
}

#[test]
fn host_name_maps_to_host_or_stays_an_attribute_when_our_rule_refuses_it() {
    let event = one(vec![kv("host.name", string("web-1"))], record("m"));
    assert_eq!(event.host.unwrap().as_str(), "web-1");
    assert!(event.attributes.is_none());
    let event = one(vec![kv("host.name", string("web 1"))], record("m"));
    assert!(event.host.is_none());
    assert_eq!(attributes(&event)["resource.host.name"], "web 1");
}

#[test]
fn severity_number_ranges_then_text_then_info() {
    for (number, level) in [
        (1, Level::Trace),
        (4, Level::Trace),
        (5, Level::Debug),
        (9, Level::Info),
        (12, Level::Info),
        (13, Level::Warn),
        (17, Level::Error),
        (20, Level::Error),
        (21, Level::Fatal),
        (24, Level::Fatal),
    ] {
        assert_eq!(map::level(number, "debug"), level, "{number}");
    }
    for level in Level::ALL {
        assert_eq!(map::level(i32::from(level.severity_number()), ""), level);
    }
    assert_eq!(map::level(0, "warning"), Level::Warn);
    assert_eq!(map::level(25, "ERROR"), Level::Error);
    assert_eq!(map::level(-1, " fatal "), Level::Fatal);
    // Severity text follows the one alias rule of every foreign source.
    assert_eq!(map::level(0, "critical"), Level::Fatal);
    assert_eq!(map::level(0, "verbose"), Level::Info);
    assert_eq!(map::level(0, ""), Level::Info);
}

#[test]
fn a_string_body_is_the_message_and_other_bodies_are_json_text() {
    assert_eq!(one(vec![], record(" keep\n")).message.as_str(), " keep\n");
    let body = LogRecord {
        body: Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![kv("order", string("42"))],
            })),
        }),
        ..Default::default()
    };
    assert_eq!(one(vec![], body).message.as_str(), r#"{"order":"42"}"#);
    let int = LogRecord {
        body: Some(AnyValue {
            value: Some(Value::IntValue(7)),
        }),
        ..Default::default()
    };
    assert_eq!(one(vec![], int).message.as_str(), "7");
}

#[test]
fn records_without_a_body_or_over_the_limits_are_rejected_alone() {
    let limits = Limits {
        max_message_bytes: 10,
        ..Limits::DEFAULT
    };
    let mapped = map_with(
        request(
            vec![],
            vec![
                record("good"),
                LogRecord::default(),
                record("   "),
                record(&"x".repeat(11)),
                record("also good"),
            ],
        ),
        &limits,
    );
    assert_eq!(mapped.events.len(), 2);
    assert_eq!(mapped.rejected_count(), 3);
    assert_eq!(mapped.rejected["empty_message"].0, 2);
    assert_eq!(mapped.rejected["message_too_large"].0, 1);
    let warning = mapped.warning(&limits);
    assert!(warning.contains("2 rejected as empty_message"), "{warning}");
    assert!(
        warning.contains(
            "1 rejected as message_too_large (first: `message` is 11 bytes; the limit is 10)"
        ),
        "{warning}"
    );
}

#[test]
fn time_then_observed_time_then_receive_time() {
    let at = |time: u64, observed: u64| {
        one(
            vec![],
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                ..record("m")
            },
        )
        .timestamp
    };
    let t = 1_764_936_000_123_456_789u64;
    let expected = DateTime::from_timestamp(1_764_936_000, 123_456_000).unwrap();
    assert_eq!(at(t, 5), expected);
    assert_eq!(at(0, t), expected);
    assert_eq!(at(0, 0), received());
}

#[test]
fn trace_and_span_ids_become_hex_and_invalid_ones_are_absent() {
    let ids = |trace: Vec<u8>, span: Vec<u8>| {
        let e = one(
            vec![],
            LogRecord {
                trace_id: trace,
                span_id: span,
                ..record("m")
            },
        );
        (
            e.trace_id.map(|t| t.into_string()),
            e.span_id.map(|s| s.into_string()),
        )
    };
    let trace: Vec<u8> = (0xA0..0xB0).collect();
    let span: Vec<u8> = (1..9).collect();
    assert_eq!(
        ids(trace.clone(), span.clone()),
        (
            Some("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf".into()),
            Some("0102030405060708".into())
        )
    );
    assert_eq!(ids(vec![], vec![]), (None, None));
    assert_eq!(ids(vec![0; 16], vec![0; 8]), (None, None));
    assert_eq!(ids(trace[..15].to_vec(), span[..7].to_vec()), (None, None));
}

#[test]
fn record_event_scope_and_resource_attributes_form_one_flat_object() {
    let mut request = request(
        vec![
            kv("service.name", string("svc")),
            kv("deployment.environment", string("prod")),
            kv("zone", string("resource loses to the record")),
        ],
        vec![LogRecord {
            attributes: vec![
                kv(
                    "user_id",
                    Some(AnyValue {
                        value: Some(Value::IntValue(42)),
                    }),
                ),
                kv("resource.zone", string("record")),
            ],
            event_name: "checkout.failed".into(),
            ..record("m")
        }],
    );
    request.resource_logs[0].scope_logs[0].scope = Some(InstrumentationScope {
        name: "app.payments".into(),
        version: "1.2.0".into(),
        ..Default::default()
    });
    let mut mapped = map_with(request, &Limits::DEFAULT);
    // `resource.zone` of the record came first; the resource's own is dropped and counted.
    assert_eq!(mapped.dropped_attributes, 1);
    let event = mapped.events.remove(0);
    assert_eq!(
        attributes(&event),
        serde_json::json!({
            "user_id": 42,
            "resource.zone": "record",
            "event.name": "checkout.failed",
            "scope.name": "app.payments",
            "scope.version": "1.2.0",
            "resource.deployment.environment": "prod",
        })
    );
    assert_eq!(event.service.as_str(), "svc");
}

#[test]
fn attributes_over_the_limits_are_dropped_and_reported_not_the_record() {
    let limits = Limits {
        max_attributes: 2,
        ..Limits::DEFAULT
    };
    let attrs = (0..5).map(|i| kv(&format!("k{i}"), string("v"))).collect();
    let mapped = map_with(
        request(
            vec![kv("resource.extra", string("x"))],
            vec![LogRecord {
                attributes: attrs,
                ..record("m")
            }],
        ),
        &limits,
    );
    assert_eq!(mapped.events.len(), 1);
    assert_eq!(mapped.rejected_count(), 0);
    assert_eq!(mapped.dropped_attributes, 4);
    assert_eq!(
        attributes(&mapped.events[0]),
        serde_json::json!({"k0": "v", "k1": "v"})
    );
    let warning = mapped.warning(&limits);
    assert!(warning.starts_with("4 attributes dropped"), "{warning}");
    assert!(warning.contains("limits.max_attributes"), "{warning}");
}

#[test]
fn count_records_spans_resources_and_scopes() {
    let mut r = request(vec![], vec![record("a"), record("b")]);
    r.resource_logs.push(r.resource_logs[0].clone());
    assert_eq!(map::count_records(&r), 4);
}

#[test]
fn both_encodings_decode_the_same_request() {
    let original = request(
        vec![kv("service.name", string("svc"))],
        vec![LogRecord {
            time_unix_nano: 1_764_936_000_000_000_001,
            severity_number: 17,
            trace_id: vec![0xAB; 16],
            span_id: vec![0xCD; 8],
            ..record("m")
        }],
    );
    let from_protobuf = Encoding::Protobuf
        .decode(&original.encode_to_vec())
        .unwrap();
    assert_eq!(from_protobuf, original);
    // OTLP/JSON as the spec writes it: camelCase, hex ids, a 64-bit integer as a string, the
    // enum as an integer, and unknown fields ignored.
    let json = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
        "scopeLogs":[{"logRecords":[{"timeUnixNano":"1764936000000000001","severityNumber":17,
        "traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd",
        "body":{"stringValue":"m"},"futureField":1}]}]}]}"#;
    assert_eq!(Encoding::Json.decode(json).unwrap(), original);
    let e = Encoding::Protobuf.decode(b"\xff\xff\xff").unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (400, "invalid_otlp"));
    let e = Encoding::Json.decode(b"[1]").unwrap_err();
    assert_eq!(e.status.as_u16(), 400);
}
