//! OTLP log records → [`LogEvent`]s. Pure: no I/O, and the receive time is an argument.
//!
//! | OTLP | logpipe | rule |
//! |---|---|---|
//! | resource `service.name` | `service` | characters outside `A-Z a-z 0-9 . _ -` become `_`, cut to 128; absent or blank: `gateway.otlp_default_service` |
//! | resource `host.name` | `host` | when it obeys the host rule; otherwise kept as attribute `resource.host.name` |
//! | `severity_number` 1–4, 5–8, 9–12, 13–16, 17–20, 21–24 | `level` TRACE, DEBUG, INFO, WARN, ERROR, FATAL | OpenTelemetry's ranges |
//! | `severity_text` | `level` | only when `severity_number` is 0 or out of range, and the text is a level name or alias (`Level::from_foreign`: `warning`, `critical`, `err`, ...) |
//! | neither | `level` INFO | |
//! | `body` string | `message` | as is |
//! | `body` of another type (map, array, number, bytes, …) | `message` | compact JSON text |
//! | `body` absent or blank | — | record rejected (`empty_message`) |
//! | `time_unix_nano` | `timestamp` | if 0: `observed_time_unix_nano`; if 0 too: receive time; truncated to µs |
//! | `trace_id`, `span_id` | `trace_id`, `span_id` | lower-case hex; empty, all zeros or a wrong length: absent |
//! | record `attributes` | `attributes.<key>` | values as JSON (bytes: base64; NaN, ±Infinity: strings) |
//! | `event_name` | `attributes."event.name"` | |
//! | scope `name`, `version` | `attributes."scope.name"`, `attributes."scope.version"` | |
//! | other resource attributes | `attributes."resource.<key>"` | |
//!
//! Attributes are one flat object filled in that order (record, event name, scope, resource): a
//! key already present, a value nested deeper than 32 levels, or a member past
//! `limits.max_attributes` / `limits.max_attributes_bytes` is dropped and counted, and the
//! count is reported to the sender (`partial_success.error_message`); the record is kept.
//! A record that breaks a rule of the event model (empty body, body over
//! `limits.max_message_bytes`) is rejected alone and counted in `rejected_log_records`.
//! Severity text, flags, `dropped_attributes_count`, scope attributes and schema URLs are not
//! kept.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use logpipe_model::{
    EventParts, HostName, Level, Limits, LogEvent, RawValue, Rejection, ServiceName,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::value::{self, Attributes, Member};

/// What a mapping needs besides the request.
pub(crate) struct Context<'a> {
    pub limits: &'a Limits,
    pub default_service: &'a ServiceName,
    pub received: DateTime<Utc>,
}

/// The outcome of one request: the valid events, and what was refused or trimmed.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub events: Vec<LogEvent>,
    /// Rejected records by rejection code: how many, and the first one's reason.
    pub rejected: BTreeMap<&'static str, (u64, String)>,
    /// Attributes left out of kept records (over the limits, too deep, or a repeated key).
    pub dropped_attributes: u64,
}

impl Mapped {
    pub fn rejected_count(&self) -> u64 {
        self.rejected.values().map(|(n, _)| n).sum()
    }

    /// The sender's `partial_success.error_message`: what was refused and why, and how many
    /// attributes were dropped; empty when nothing was.
    pub fn warning(&self, limits: &Limits) -> String {
        let mut parts: Vec<String> = self
            .rejected
            .iter()
            .map(|(code, (n, first))| format!("{n} rejected as {code} (first: {first})"))
            .collect();
        if self.dropped_attributes > 0 {
            parts.push(format!(
                "{} attributes dropped from stored records: a repeated key, a value nested deeper \
                 than {} levels, or over the gateway's limits of {} attributes and {} bytes per \
                 record (limits.max_attributes, limits.max_attributes_bytes)",
                self.dropped_attributes,
                value::MAX_VALUE_DEPTH,
                limits.max_attributes,
                limits.max_attributes_bytes
            ));
        }
        parts.join("; ")
    }
}

/// How many log records a request holds (checked against `gateway.max_batch_events` before
/// anything is mapped).
pub(crate) fn count_records(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Maps every record of `request`.
pub(crate) fn map_request(request: ExportLogsServiceRequest, cx: &Context<'_>) -> Mapped {
    let mut out = Mapped {
        events: Vec::with_capacity(count_records(&request)),
        ..Mapped::default()
    };
    out.dropped_attributes = for_each_record(request, cx, |_, outcome| match outcome {
        Ok(event) => out.events.push(event),
        Err(reason) => {
            let entry = out
                .rejected
                .entry(reason.code())
                .or_insert_with(|| (0, reason.to_string()));
            entry.0 += 1;
        }
    });
    out
}

/// Maps every record of `request` in order, handing `each` the record's position among all the
/// request's records (resource by resource, scope by scope: a position the same bytes always
/// give the same record) and its event or rejection. Returns how many attributes were left out
/// of the mapped events.
pub(crate) fn for_each_record(
    request: ExportLogsServiceRequest,
    cx: &Context<'_>,
    mut each: impl FnMut(usize, Result<LogEvent, Rejection>),
) -> u64 {
    let mut dropped = 0;
    let mut position = 0;
    for resource_logs in request.resource_logs {
        let resource = resource_logs.resource.unwrap_or_default();
        let (service, host, rest) = split_resource(resource.attributes, cx.default_service);
        let resource_members = Member::all("resource.", &rest, &mut dropped);
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs.scope.unwrap_or_default();
            let scope_members: Vec<Member> =
                [("scope.name", scope.name), ("scope.version", scope.version)]
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .filter_map(|(k, v)| Member::new(k.into(), Some(&string_value(v))))
                    .collect();
            for record in scope_logs.log_records {
                let shared = Shared {
                    service: &service,
                    host: host.as_ref(),
                    scope: &scope_members,
                    resource: &resource_members,
                };
                let outcome = map_record(record, &shared, cx).map(|(event, n)| {
                    dropped += n;
                    event
                });
                each(position, outcome);
                position += 1;
            }
        }
    }
    dropped
}

/// What every record of one resource and scope shares.
struct Shared<'a> {
    service: &'a str,
    host: Option<&'a HostName>,
    scope: &'a [Member],
    resource: &'a [Member],
}

/// One record, and how many of its attributes were dropped.
fn map_record(
    record: LogRecord,
    shared: &Shared<'_>,
    cx: &Context<'_>,
) -> Result<(LogEvent, u64), Rejection> {
    let message = match record.body.and_then(|b| b.value) {
        None => return Err(Rejection::EmptyMessage),
        Some(Value::StringValue(text)) => text,
        Some(other) => value::to_json_text(&AnyValue { value: Some(other) }),
    };
    let mut dropped = 0;
    let mut own = Member::all("", &record.attributes, &mut dropped);
    if !record.event_name.is_empty() {
        own.extend(Member::new(
            "event.name".into(),
            Some(&string_value(record.event_name)),
        ));
    }
    let mut attributes = Attributes::new(cx.limits);
    attributes.extend(&own);
    attributes.extend(shared.scope);
    attributes.extend(shared.resource);
    dropped += attributes.dropped;
    let raw = attributes
        .finish()
        .map(RawValue::from_string)
        .transpose()
        .map_err(|e| Rejection::InvalidJson {
            detail: e.to_string(),
        })?;
    let parts = EventParts {
        timestamp: timestamp(record.time_unix_nano, record.observed_time_unix_nano)
            .unwrap_or(cx.received),
        level: level(record.severity_number, &record.severity_text),
        service: Cow::Borrowed(shared.service),
        message: Cow::Owned(message),
        host: shared.host.map(|h| Cow::Borrowed(h.as_str())),
        trace_id: hex_id(&record.trace_id, 16).map(Cow::Owned),
        span_id: hex_id(&record.span_id, 8).map(Cow::Owned),
        attributes: raw.as_deref(),
    };
    Ok((LogEvent::from_parts(parts, cx.limits)?, dropped))
}

/// Takes `service.name` and `host.name` out of the resource attributes.
fn split_resource(
    attributes: Vec<KeyValue>,
    default_service: &ServiceName,
) -> (String, Option<HostName>, Vec<KeyValue>) {
    let mut service = None;
    let mut host = None;
    let mut rest = Vec::with_capacity(attributes.len());
    for kv in attributes {
        match (kv.key.as_str(), scalar_text(kv.value.as_ref())) {
            ("service.name", Some(text)) if service.is_none() => {
                service = crate::formats::service_name(text.trim()).map(|(name, _)| name)
            }
            ("host.name", Some(text)) if host.is_none() => match HostName::try_from(text) {
                Ok(name) => host = Some(name),
                Err(_) => rest.push(kv),
            },
            _ => rest.push(kv),
        }
    }
    let service = service.unwrap_or_else(|| default_service.as_str().to_owned());
    (service, host, rest)
}

/// A string, number or boolean as text (for `service.name` and `host.name`).
fn scalar_text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

/// `severity_number` by OpenTelemetry's ranges, else `severity_text` when it names a level (by
/// the alias rule every foreign source follows), else INFO.
pub(crate) fn level(severity_number: i32, severity_text: &str) -> Level {
    match severity_number {
        1..=24 => Level::ALL[((severity_number - 1) / 4) as usize],
        _ => Level::from_foreign(severity_text.trim()).unwrap_or_default(),
    }
}

/// The first non-zero of the two times, in UTC.
fn timestamp(time_unix_nano: u64, observed_unix_nano: u64) -> Option<DateTime<Utc>> {
    let nanos = [time_unix_nano, observed_unix_nano]
        .into_iter()
        .find(|n| *n != 0)?;
    DateTime::from_timestamp(
        (nanos / 1_000_000_000) as i64,
        (nanos % 1_000_000_000) as u32,
    )
}

/// A trace or span id as lower-case hex; `None` for what OTLP calls invalid (absent, all zeros,
/// or not `len` bytes): the record is then simply not tied to a trace.
fn hex_id(bytes: &[u8], len: usize) -> Option<String> {
    if bytes.len() != len || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    Some(
        bytes
            .iter()
            .flat_map(|b| {
                [
                    HEX[usize::from(b >> 4)] as char,
                    HEX[usize::from(b & 15)] as char,
                ]
            })
            .collect(),
    )
}
