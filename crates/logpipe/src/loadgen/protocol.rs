//! The ingest protocols `logpipe loadgen --protocol` speaks: the same generated events encoded as
//! a logpipe JSON batch, an OTLP `ExportLogsServiceRequest` (protobuf or OTLP/JSON), a Loki JSON
//! push or an Elasticsearch bulk body, each with its route and content type, and each answer
//! read the protocol's way (how many events the gateway took).
//!
//! Every protocol carries the same content (service, host, level, message, trace id and the two
//! attributes), placed where that protocol's shippers put it, so the rates compare.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{json, Value};

#[cfg(test)]
mod tests;

/// The body format and route of the load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// logpipe's JSON API (`/api/v1/logs/batch`, or `/api/v1/logs` for `--batch 1`).
    #[default]
    Logpipe,
    /// OTLP/HTTP protobuf (`/v1/logs`, `application/x-protobuf`).
    OtlpProto,
    /// OTLP/HTTP JSON (`/v1/logs`, `application/json`).
    OtlpJson,
    /// Loki push in JSON (`/loki/api/v1/push`).
    Loki,
    /// Elasticsearch bulk NDJSON with `create` actions (`/_bulk`).
    Elasticsearch,
}

/// What an answer says about a request of `events` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The gateway answered and took this many of the events (the rest were refused as invalid).
    Accepted(u64),
    /// A 4xx for the whole request: nothing taken, the client would not retry it.
    Refused,
    /// A 5xx, or an answer that does not read as the protocol's.
    Failed,
}

impl Protocol {
    /// The route, relative to the gateway's base URL.
    pub fn path(self, batch: usize) -> &'static str {
        match self {
            Protocol::Logpipe if batch <= 1 => "/api/v1/logs",
            Protocol::Logpipe => "/api/v1/logs/batch",
            Protocol::OtlpProto | Protocol::OtlpJson => "/v1/logs",
            Protocol::Loki => "/loki/api/v1/push",
            Protocol::Elasticsearch => "/_bulk",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::OtlpProto => "application/x-protobuf",
            Protocol::Elasticsearch => "application/x-ndjson",
            Protocol::Logpipe | Protocol::OtlpJson | Protocol::Loki => "application/json",
        }
    }

    /// The body of one request holding `events` (loadgen's JSON events).
    pub fn encode(self, events: &[Value]) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            Protocol::Logpipe => match events {
                [one] => serde_json::to_vec(one)?,
                _ => serde_json::to_vec(events)?,
            },
            Protocol::OtlpProto => otlp(events).encode_to_vec(),
            Protocol::OtlpJson => serde_json::to_vec(&otlp(events))?,
            Protocol::Loki => serde_json::to_vec(&loki(events))?,
            Protocol::Elasticsearch => bulk(events)?,
        })
    }

    /// How many of a request's `events` the answer says were taken.
    pub fn outcome(self, status: u16, body: &[u8], events: u64) -> Outcome {
        if status >= 500 {
            return Outcome::Failed;
        }
        let partly = |accepted: u64| Outcome::Accepted(accepted.min(events));
        match (self, status) {
            (Protocol::Logpipe, 200..=299) => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|a| a["accepted"].as_u64())
                .map_or(Outcome::Failed, partly),
            (Protocol::OtlpProto, 200) => ExportLogsServiceResponse::decode(body)
                .map_or(Outcome::Failed, |r| partly(events - otlp_rejected(&r))),
            (Protocol::OtlpJson, 200) => serde_json::from_slice::<ExportLogsServiceResponse>(body)
                .map_or(Outcome::Failed, |r| partly(events - otlp_rejected(&r))),
            (Protocol::Loki, 204) => Outcome::Accepted(events),
            (Protocol::Elasticsearch, 200) => match serde_json::from_slice::<Value>(body) {
                Ok(a) if a["errors"] == json!(false) => Outcome::Accepted(events),
                Ok(a) => partly(a["items"].as_array().map_or(0, |items| {
                    items
                        .iter()
                        .filter(|i| i["create"]["status"] == json!(201))
                        .count()
                }) as u64),
                Err(_) => Outcome::Failed,
            },
            (_, 400..=499) => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

fn otlp_rejected(response: &ExportLogsServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_log_records.max(0) as u64)
}

fn text(event: &Value, key: &str) -> Option<String> {
    event.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A hex id as bytes (OTLP carries ids as bytes); `None` when it is not even-length hex.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    (hex.len() % 2 == 0)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

fn any(value: Any) -> Option<AnyValue> {
    Some(AnyValue { value: Some(value) })
}

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: any(value),
        ..Default::default()
    }
}

/// OpenTelemetry's severity numbers for logpipe's level names (the lowest of each range).
fn severity_number(level: &str) -> i32 {
    match level {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => 0,
    }
}

/// One resource per (service, host), as an SDK or a Collector batch would group them; the
/// receive time stamps the records (no `time_unix_nano`), as the JSON API's events are stamped.
fn otlp(events: &[Value]) -> ExportLogsServiceRequest {
    let mut groups: BTreeMap<(Option<String>, Option<String>), Vec<LogRecord>> = BTreeMap::new();
    for event in events {
        let level = text(event, "level").unwrap_or_default();
        let mut attributes = Vec::new();
        if let Some(map) = event.get("attributes").and_then(Value::as_object) {
            for (key, value) in map {
                let value = match value {
                    Value::Number(n) if n.is_i64() => Any::IntValue(n.as_i64().unwrap_or(0)),
                    Value::String(s) => Any::StringValue(s.clone()),
                    other => Any::StringValue(other.to_string()),
                };
                attributes.push(kv(key, value));
            }
        }
        let record = LogRecord {
            severity_number: severity_number(&level),
            severity_text: level,
            body: text(event, "message").and_then(|m| any(Any::StringValue(m))),
            trace_id: text(event, "trace_id")
                .and_then(|t| hex_bytes(&t))
                .unwrap_or_default(),
            attributes,
            ..Default::default()
        };
        groups
            .entry((text(event, "service"), text(event, "host")))
            .or_default()
            .push(record);
    }
    let resource_logs = groups
        .into_iter()
        .map(|((service, host), log_records)| {
            let mut attributes = Vec::new();
            if let Some(service) = service {
                attributes.push(kv("service.name", Any::StringValue(service)));
            }
            if let Some(host) = host {
                attributes.push(kv("host.name", Any::StringValue(host)));
            }
            ResourceLogs {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

/// Streams by (service, host) labels, as Promtail or Alloy label them; the level, trace id and
/// attributes ride as structured metadata. Loki entries need a timestamp: the time of encoding.
fn loki(events: &[Value]) -> Value {
    let now = chrono::Utc::now()
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .to_string();
    let mut streams: BTreeMap<(Option<String>, Option<String>), Vec<Value>> = BTreeMap::new();
    for event in events {
        let mut metadata = serde_json::Map::new();
        for key in ["level", "trace_id"] {
            if let Some(v) = text(event, key) {
                metadata.insert(key.into(), v.into());
            }
        }
        if let Some(map) = event.get("attributes").and_then(Value::as_object) {
            for (key, value) in map {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                metadata.insert(key.clone(), value.into());
            }
        }
        streams
            .entry((text(event, "service"), text(event, "host")))
            .or_default()
            .push(json!([
                now,
                text(event, "message").unwrap_or_default(),
                metadata
            ]));
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|((service, host), values)| {
            let mut labels = serde_json::Map::new();
            if let Some(service) = service {
                labels.insert("service_name".into(), service.into());
            }
            if let Some(host) = host {
                labels.insert("host".into(), host.into());
            }
            json!({"stream": labels, "values": values})
        })
        .collect();
    json!({ "streams": streams })
}

/// NDJSON: a `create` action into index `bench`, then the document in ECS field names.
fn bulk(events: &[Value]) -> anyhow::Result<Vec<u8>> {
    let action = br#"{"create":{"_index":"bench"}}"#;
    let mut body = Vec::with_capacity(events.len() * 320);
    for event in events {
        let mut doc = serde_json::Map::new();
        if let Some(message) = event.get("message") {
            doc.insert("message".into(), message.clone());
        }
        if let Some(level) = event.get("level") {
            doc.insert("log".into(), json!({ "level": level }));
        }
        if let Some(service) = event.get("service") {
            doc.insert("service".into(), json!({ "name": service }));
        }
        if let Some(host) = event.get("host") {
            doc.insert("host".into(), json!({ "name": host }));
        }
        if let Some(trace) = event.get("trace_id") {
            doc.insert("trace".into(), json!({ "id": trace }));
        }
        if let Some(Value::Object(map)) = event.get("attributes") {
            doc.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        body.extend_from_slice(action);
        body.push(b'\n');
        serde_json::to_writer(&mut body, &doc)?;
        body.push(b'\n');
    }
    Ok(body)
}
