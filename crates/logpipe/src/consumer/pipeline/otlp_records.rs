//! Records holding an OTLP `ExportLogsServiceRequest` (`otlp_proto`, `otlp_json`), as the
//! OpenTelemetry Collector's kafka exporter writes them: one record, many log records. Each log
//! record is mapped by the same rules as the gateway's `/v1/logs` ([`crate::gateway::otlp::map`])
//! and becomes one event, whose position in the request is its `index` in the stores' key, so a
//! re-read record stores each of its events once.
//!
//! A record is stored whole or not at all: when any of its log records breaks the event rules,
//! the record goes to the dead-letter topic with the reason of the first and the count, and none
//! of its events is stored. A replay after the fix (say, a raised `limits.max_message_bytes`) then
//! stores every event exactly once; storing the valid part first would store it twice on replay,
//! since a replayed record has new coordinates.

use chrono::{DateTime, Utc};
use logpipe_model::{Limits, ServiceName};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;

use super::decoded::{Events, Refusal};
use crate::gateway::otlp::map::{self, Context};

/// The two encodings the Collector's kafka exporter writes (`encoding: otlp_proto` /
/// `otlp_json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Protobuf => "protobuf",
            Encoding::Json => "OTLP/JSON",
        }
    }
}

/// The events of one record, and how many attributes were left out of them (over the limits,
/// too deep, or a repeated key).
pub(super) fn decode(
    payload: &[u8],
    encoding: Encoding,
    default_service: &ServiceName,
    received: DateTime<Utc>,
    limits: &Limits,
) -> Result<(Events, u64), Refusal> {
    let request = match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(payload).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
    }
    .map_err(|detail| Refusal {
        code: "invalid_otlp",
        message: format!(
            "the record is not an OTLP ExportLogsServiceRequest in {}: {detail}; check the \
             producer's encoding against this topic's `consumer.formats` entry",
            encoding.name()
        ),
    })?;
    let total = map::count_records(&request);
    let cx = Context {
        limits,
        default_service,
        received,
    };
    let mut events = Events::with_capacity(total);
    let mut refused = 0usize;
    let mut first = None;
    let dropped = map::for_each_record(request, &cx, |position, outcome| match outcome {
        Ok(event) => events.push(event),
        Err(reason) => {
            refused += 1;
            first.get_or_insert((position, reason));
        }
    });
    match first {
        None => Ok((events, dropped)),
        Some((position, reason)) => Err(Refusal {
            code: reason.code(),
            message: format!(
                "{refused} of the {total} log records in this OTLP record break the event rules \
                 (first: log record {position}: {reason}); a record is stored whole or not at \
                 all, so none of its events was stored"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(s.into())),
        })
    }

    fn record(body: &str, severity_number: i32) -> LogRecord {
        LogRecord {
            time_unix_nano: 1_764_936_000_123_456_789,
            severity_number,
            body: text(body),
            ..LogRecord::default()
        }
    }

    /// Two resources (one named, one not), with 2 + 1 records.
    fn request() -> ExportLogsServiceRequest {
        let resource = |service: Option<&str>, records: Vec<LogRecord>| ResourceLogs {
            resource: Some(Resource {
                attributes: service
                    .map(|s| KeyValue {
                        key: "service.name".into(),
                        value: text(s),
                        ..KeyValue::default()
                    })
                    .into_iter()
                    .collect(),
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![
                resource(
                    Some("checkout"),
                    vec![record("paid", 9), record("declined", 17)],
                ),
                resource(None, vec![record("tick", 5)]),
            ],
        }
    }

    fn received() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    fn run(payload: &[u8], encoding: Encoding) -> Result<(Events, u64), Refusal> {
        let fallback = ServiceName::try_from("otel-topic").unwrap();
        decode(payload, encoding, &fallback, received(), &Limits::DEFAULT)
    }

    #[test]
    fn every_log_record_becomes_an_event_in_request_order_in_both_encodings() {
        let proto = request().encode_to_vec();
        let json = serde_json::to_vec(&request()).unwrap();
        for (payload, encoding) in [(&proto, Encoding::Protobuf), (&json, Encoding::Json)] {
            let (events, dropped) = run(payload, encoding).unwrap();
            assert_eq!(dropped, 0);
            let seen: Vec<_> = events
                .iter()
                .map(|e| {
                    (
                        e.service.as_str(),
                        e.message.as_str(),
                        e.level.as_str(),
                        e.timestamp.timestamp_micros(),
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("checkout", "paid", "INFO", 1_764_936_000_123_456),
                    ("checkout", "declined", "ERROR", 1_764_936_000_123_456),
                    ("otel-topic", "tick", "DEBUG", 1_764_936_000_123_456),
                ],
                "{encoding:?}"
            );
        }
    }

    #[test]
    fn a_record_with_one_bad_log_record_is_refused_whole_with_the_first_reason() {
        let mut bad = request();
        bad.resource_logs[1].scope_logs[0]
            .log_records
            .push(LogRecord {
                body: None,
                ..record("", 9)
            });
        bad.resource_logs[1].scope_logs[0].log_records.push(record(
            &"x".repeat(Limits::DEFAULT.max_message_bytes + 1),
            9,
        ));
        let refusal = run(&bad.encode_to_vec(), Encoding::Protobuf).unwrap_err();
        assert_eq!(refusal.code, "empty_message");
        assert!(
            refusal
                .message
                .starts_with("2 of the 5 log records in this OTLP record break the event rules (first: log record 3: "),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn bytes_in_the_other_encoding_are_refused_naming_the_fix() {
        let json = serde_json::to_vec(&request()).unwrap();
        let refusal = run(&json, Encoding::Protobuf).unwrap_err();
        assert_eq!(refusal.code, "invalid_otlp");
        assert!(
            refusal.message.contains("consumer.formats"),
            "{}",
            refusal.message
        );
        let refusal = run(&request().encode_to_vec(), Encoding::Json).unwrap_err();
        assert_eq!(refusal.code, "invalid_otlp");
    }

    #[test]
    fn an_empty_request_holds_no_events() {
        let (events, _) = run(&[], Encoding::Protobuf).unwrap();
        assert!(events.is_empty());
    }
}
