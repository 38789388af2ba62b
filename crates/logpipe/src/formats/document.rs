//! From a JSON document (an ECS or logstash log line, an Elasticsearch document) to an event's
//! fields ([`Parts`]), by configurable field names ([`Names`]: `gateway.elasticsearch_fields`,
//! `consumer.json_fields`). Each name is a dotted path, looked up both as nested objects
//! (`{"log":{"level":"warn"}}`) and as a literal dotted key (`{"log.level":"warn"}`); of a list
//! of names the first present wins. Every other field becomes an attribute. A field that cannot
//! be used as its event field (a level no alias names, a host name with spaces, a trace id that
//! is not 32 hex digits) stays an attribute under the name it was found by, so nothing the
//! sender wrote is dropped. The tables are in docs/api.md ("Elasticsearch bulk") and
//! docs/consumer.md ("Records other producers wrote").

use logpipe_model::{HostName, Level, Rejection, SpanId, TraceId};
use serde_json::{Map, Value};

use super::parts::{service_name, Parts};
use super::time;

/// Where a document keeps each event field, and how its epoch numbers count.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub message: &'a [String],
    pub timestamp: &'a [String],
    pub level: &'a [String],
    pub service: &'a [String],
    pub host: &'a [String],
    /// Empty: not looked for (kept as attributes like any other field).
    pub trace_id: &'a [String],
    pub span_id: &'a [String],
    pub epoch: Epoch,
    /// The config section that names the fields (`gateway.elasticsearch_fields`), for the
    /// reasons given back.
    pub config: &'a str,
}

/// How a number in the timestamp field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// Whole epoch milliseconds only, as Elasticsearch's default date format takes them.
    Millis,
    /// Seconds (with a fraction), milliseconds, microseconds or nanoseconds by magnitude, also
    /// when written as a string: what log appenders and shippers write.
    ByMagnitude,
}

/// Why a document yields no event: the model's [`Rejection`] (its code), and the reason in the
/// terms of the document and its configured names.
#[derive(Debug)]
pub struct Refused {
    pub rejection: Rejection,
    pub reason: String,
}

fn refused(rejection: Rejection, reason: String) -> Refused {
    Refused { rejection, reason }
}

/// The event fields of `source`. `default_service` is the service of a document without one.
pub fn parts(source: &[u8], names: &Names<'_>, default_service: &str) -> Result<Parts, Refused> {
    let doc: Map<String, Value> = serde_json::from_slice(source).map_err(|e| {
        let reason = format!("the document is not a JSON object: {e}");
        refused(
            Rejection::InvalidJson {
                detail: e.to_string(),
            },
            reason,
        )
    })?;
    object_parts(doc, names, default_service)
}

/// [`parts`] of a document already parsed.
pub fn object_parts(
    mut doc: Map<String, Value>,
    names: &Names<'_>,
    default_service: &str,
) -> Result<Parts, Refused> {
    let message = match take(&mut doc, names.message) {
        Some((Value::String(text), _)) => text,
        Some((Value::Number(n), _)) => n.to_string(),
        Some((Value::Bool(b), _)) => b.to_string(),
        Some((Value::Null, _)) | None => {
            return Err(refused(
                Rejection::MissingField { field: "message" },
                format!(
                    "the document has no {} field; it holds the log line ({}.message names it)",
                    listed(names.message),
                    names.config
                ),
            ))
        }
        Some((_, name)) => {
            return Err(refused(
                Rejection::InvalidType {
                    field: "message",
                    expected: "string",
                },
                format!("the `{name}` field must be a string"),
            ))
        }
    };
    let timestamp = match take(&mut doc, names.timestamp) {
        Some((Value::String(text), _)) => Some(match names.epoch {
            Epoch::ByMagnitude => match time::epoch_by_magnitude(&text) {
                Some(epoch) => epoch.map_err(|r| refused(r.clone(), r.to_string()))?,
                None => time::date_text(text),
            },
            Epoch::Millis => time::date_text(text),
        }),
        Some((Value::Number(n), name)) => Some(match names.epoch {
            Epoch::Millis => time::epoch_millis(&n, &name).map_err(|reason| {
                let rejection = Rejection::InvalidTimestamp {
                    value: n.to_string(),
                    reason: "is not whole epoch milliseconds".into(),
                };
                refused(rejection, reason)
            })?,
            Epoch::ByMagnitude => time::epoch_by_magnitude(&n.to_string())
                .unwrap_or_else(|| Err(not_a_time(&n.to_string())))
                .map_err(|r| refused(r.clone(), r.to_string()))?,
        }),
        Some((Value::Null, _)) | None => None,
        Some((other, name)) => {
            return Err(refused(
                not_a_time(&other.to_string()),
                format!("the `{name}` field must be a date string"),
            ))
        }
    };
    let level = match take(&mut doc, names.level) {
        Some((Value::String(text), name)) => match Level::from_foreign(&text) {
            Some(level) => Some(level),
            None => keep(&mut doc, name, Value::String(text)),
        },
        Some((other, name)) => keep(&mut doc, name, other),
        None => None,
    };
    let service = match take(&mut doc, names.service) {
        Some((Value::String(raw), name)) => match service_name(&raw) {
            Some((service, true)) => service,
            Some((service, false)) => {
                keep::<()>(&mut doc, name, Value::String(raw));
                service
            }
            None => default_service.to_owned(),
        },
        Some((other, name)) => {
            keep::<()>(&mut doc, name, other);
            default_service.to_owned()
        }
        None => default_service.to_owned(),
    };
    let host = checked(&mut doc, names.host, |s| HostName::try_from(s).is_ok());
    let trace_id = checked(&mut doc, names.trace_id, |s| TraceId::try_from(s).is_ok());
    let span_id = checked(&mut doc, names.span_id, |s| SpanId::try_from(s).is_ok());
    Ok(Parts {
        timestamp,
        level,
        service,
        message,
        host,
        trace_id,
        span_id,
        attributes: doc,
    })
}

fn not_a_time(value: &str) -> Rejection {
    Rejection::InvalidTimestamp {
        value: value.chars().take(64).collect(),
        reason: "is neither a date nor an epoch number".into(),
    }
}

/// A string field the event takes when `valid` says so; otherwise it stays an attribute.
fn checked(
    doc: &mut Map<String, Value>,
    names: &[String],
    valid: impl Fn(&str) -> bool,
) -> Option<String> {
    match take(doc, names) {
        Some((Value::String(text), _)) if valid(&text) => Some(text),
        Some((other, name)) => keep(doc, name, other),
        None => None,
    }
}

/// "`message`" or "`message`, `msg` or `log`".
fn listed(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "message".into(),
    }
}

/// Puts a value back as an attribute under its dotted name; `None` for the event field.
fn keep<T>(doc: &mut Map<String, Value>, path: String, value: Value) -> Option<T> {
    doc.insert(path, value);
    None
}

/// Removes the value of the first of `names` present, with the name it was found by.
fn take(doc: &mut Map<String, Value>, names: &[String]) -> Option<(Value, String)> {
    names
        .iter()
        .find_map(|name| take_path(doc, name).map(|value| (value, name.clone())))
}

/// Removes the value at `path`: a literal key first, then nested objects split at each dot
/// (`a.b.c` as `a` → `b.c`, then `a.b` → `c`). An object left empty is removed with it.
fn take_path(doc: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(value) = doc.remove(path) {
        return Some(value);
    }
    for (at, _) in path.match_indices('.') {
        let (head, rest) = (&path[..at], &path[at + 1..]);
        if let Some(Value::Object(inner)) = doc.get_mut(head) {
            if let Some(value) = take_path(inner, rest) {
                if inner.is_empty() {
                    doc.remove(head);
                }
                return Some(value);
            }
        }
    }
    None
}
