//! From an Elasticsearch document to an event's fields ([`Parts`]): the configured field names
//! (`gateway.elasticsearch_fields`, ECS by default) are looked up both as nested objects
//! (`{"log":{"level":"warn"}}`) and as literal dotted keys (`{"log.level":"warn"}`); every other
//! field becomes an attribute. A field that cannot be used as its event field (a level logpipe
//! does not know, a host name with spaces) stays an attribute under its dotted name, so nothing
//! the client sent is dropped. The table is in docs/api.md ("Elasticsearch bulk").

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use logpipe_model::HostName;
use serde_json::{Map, Value};

use crate::config::ElasticsearchFields;
use crate::gateway::shipped::{self, Parts};

/// The event fields of `source`, or why it is not a document logpipe can store.
pub fn parts(
    source: &[u8],
    fields: &ElasticsearchFields,
    index: &str,
    id: Option<&str>,
) -> Result<Parts, String> {
    let mut doc: Map<String, Value> = serde_json::from_slice(source)
        .map_err(|e| format!("the document is not a JSON object: {e}"))?;
    let message = match take(&mut doc, &fields.message) {
        Some(Value::String(text)) => text,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Null) | None => {
            return Err(format!(
                "the document has no `{}` field; it holds the log line (gateway.elasticsearch_fields.message names it)",
                fields.message
            ))
        }
        Some(_) => return Err(format!("the `{}` field must be a string", fields.message)),
    };
    let timestamp = match take(&mut doc, &fields.timestamp) {
        Some(Value::String(text)) => Some(timestamp(text)),
        Some(Value::Number(n)) => {
            // Elasticsearch's default date format also takes epoch milliseconds.
            let millis = n.as_i64().ok_or_else(|| {
                format!("`{}` {n} is not whole epoch milliseconds", fields.timestamp)
            })?;
            let nanos = (millis.rem_euclid(1000) * 1_000_000) as u32;
            Some(
                shipped::unix_timestamp(millis.div_euclid(1000), nanos, &n.to_string())
                    .map_err(|r| r.to_string())?,
            )
        }
        Some(Value::Null) | None => None,
        Some(_) => {
            return Err(format!(
                "the `{}` field must be a date string",
                fields.timestamp
            ))
        }
    };
    let level = match take(&mut doc, &fields.level) {
        Some(Value::String(name)) => match shipped::level(&name) {
            Some(level) => Some(level),
            None => keep(&mut doc, &fields.level, Value::String(name)),
        },
        Some(other) => keep(&mut doc, &fields.level, other),
        None => None,
    };
    let service = match take(&mut doc, &fields.service) {
        Some(Value::String(raw)) => match shipped::service_name(&raw) {
            Some((name, true)) => name,
            Some((name, false)) => {
                keep::<()>(&mut doc, &fields.service, Value::String(raw));
                name
            }
            None => fields.default_service.clone(),
        },
        Some(other) => {
            keep::<()>(&mut doc, &fields.service, other);
            fields.default_service.clone()
        }
        None => fields.default_service.clone(),
    };
    let host = match take(&mut doc, &fields.host) {
        Some(Value::String(name)) if HostName::try_from(name.as_str()).is_ok() => Some(name),
        Some(other) => keep(&mut doc, &fields.host, other),
        None => None,
    };
    doc.insert("index".into(), index.into());
    if let Some(id) = id {
        doc.insert("_id".into(), id.into());
    }
    Ok(Parts {
        timestamp,
        level,
        service,
        message,
        host,
        attributes: doc,
    })
}

/// Puts a value back as an attribute under its dotted name; `None` for the event field.
fn keep<T>(doc: &mut Map<String, Value>, path: &str, value: Value) -> Option<T> {
    doc.insert(path.to_owned(), value);
    None
}

/// Removes the value at `path`: a literal key first, then nested objects split at each dot
/// (`a.b.c` as `a` → `b.c`, then `a.b` → `c`). An object left empty is removed with it.
fn take(doc: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(value) = doc.remove(path) {
        return Some(value);
    }
    for (at, _) in path.match_indices('.') {
        let (head, rest) = (&path[..at], &path[at + 1..]);
        if let Some(Value::Object(inner)) = doc.get_mut(head) {
            if let Some(value) = take(inner, rest) {
                if inner.is_empty() {
                    doc.remove(head);
                }
                return Some(value);
            }
        }
    }
    None
}

/// A date as Elasticsearch's default format takes it, as RFC 3339: a date-time without an
/// offset (what Python's `datetime.isoformat()` writes for a naive time) or a bare date is UTC,
/// as in Elasticsearch. Anything else is passed on for the event parser to refuse with its reason.
fn timestamp(text: String) -> String {
    if DateTime::parse_from_rfc3339(&text).is_ok() {
        return text;
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&text, format) {
            return naive
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .to_rfc3339();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use logpipe_model::{Level, Limits};

    fn map(doc: &str) -> Result<Parts, String> {
        parts(
            doc.as_bytes(),
            &ElasticsearchFields::default(),
            "logs",
            None,
        )
    }

    #[test]
    fn ecs_fields_nested_or_dotted() {
        let p = map(
            r#"{"@timestamp":"2026-01-02T03:04:05.123456789Z","message":"hi",
            "log":{"level":"warning","logger":"app"},"service.name":"api",
            "host":{"name":"web-1","ip":"10.0.0.1"},"user":{"id":7}}"#,
        )
        .unwrap();
        assert_eq!(p.message, "hi");
        assert_eq!(p.level, Some(Level::Warn));
        assert_eq!(p.service, "api");
        assert_eq!(p.host.as_deref(), Some("web-1"));
        let attrs = Value::Object(p.attributes.clone());
        assert_eq!(attrs["log"], serde_json::json!({"logger": "app"}));
        assert_eq!(attrs["host"], serde_json::json!({"ip": "10.0.0.1"}));
        assert_eq!(attrs["index"], "logs");
        assert!(attrs.get("service.name").is_none() && attrs.get("@timestamp").is_none());
        let event = p.into_event(&Limits::DEFAULT, Utc::now()).unwrap();
        assert_eq!(event.timestamp.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn unusable_fields_stay_attributes() {
        let p = map(r#"{"message":"m","log.level":"verbose","service":{"name":"my app"},"host":{"name":"a b"}}"#)
            .unwrap();
        assert_eq!(p.level, None);
        assert_eq!(p.service, "my_app");
        assert_eq!(p.host, None);
        let attrs = Value::Object(p.attributes);
        assert_eq!(attrs["log.level"], "verbose");
        assert_eq!(attrs["service.name"], "my app");
        assert_eq!(attrs["host.name"], "a b");
        assert!(attrs.get("service").is_none(), "{attrs}");
    }

    #[test]
    fn timestamps_as_elasticsearch_takes_them() {
        let at = |doc: &str| map(doc).unwrap().timestamp;
        assert_eq!(
            at(r#"{"message":"m","@timestamp":1700000000123}"#).as_deref(),
            Some("2023-11-14T22:13:20.123000000Z")
        );
        assert_eq!(
            at(r#"{"message":"m","@timestamp":"2026-01-02T03:04:05.5"}"#).as_deref(),
            Some("2026-01-02T03:04:05.500000000Z")
        );
        assert_eq!(
            at(r#"{"message":"m","@timestamp":"2026-01-02"}"#).as_deref(),
            Some("2026-01-02T00:00:00+00:00")
        );
        assert_eq!(at(r#"{"message":"m"}"#), None);
        let bad = map(r#"{"message":"m","@timestamp":"yesterday"}"#).unwrap();
        let err = bad.into_event(&Limits::DEFAULT, Utc::now()).unwrap_err();
        assert_eq!(err.code(), "invalid_timestamp");
    }

    #[test]
    fn documents_without_a_message_are_refused() {
        assert!(map(r#"{"msg":"m"}"#)
            .unwrap_err()
            .contains("no `message` field"));
        assert!(map(r#"{"message":{"a":1}}"#).is_err());
        assert!(map("[1]").unwrap_err().contains("not a JSON object"));
        let empty = map(r#"{"message":""}"#).unwrap();
        assert_eq!(
            empty
                .into_event(&Limits::DEFAULT, Utc::now())
                .unwrap_err()
                .code(),
            "empty_message"
        );
    }
}
