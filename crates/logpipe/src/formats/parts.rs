//! [`Parts`]: the fields of one foreign record as a mapping found them, made into a
//! [`LogEvent`] by [`LogEvent::from_parts`], so every field rule and every configured limit
//! applies exactly as on `POST /api/v1/logs` (the model owns them). Also how a foreign service
//! name becomes a [`ServiceName`] ([`service_name`]) and Unix times ([`unix_timestamp`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use logpipe_model::{EventParts, Level, Limits, LogEvent, RawValue, Rejection, ServiceName};
use serde_json::{Map, Value};

/// The fields of one event as a mapping found them, not yet checked.
#[derive(Debug, Default)]
pub struct Parts {
    /// RFC 3339; `None` takes the caller's default time (the gateway: when the request arrived;
    /// the consumer: the Kafka record's timestamp).
    pub timestamp: Option<String>,
    pub level: Option<Level>,
    pub service: String,
    pub message: String,
    pub host: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// Everything else the record carried; empty is left out.
    pub attributes: Map<String, Value>,
}

impl Parts {
    /// The event, or the first rule it breaks (with its stable code). `default_time` is the time
    /// of an event without one.
    pub fn into_event(
        self,
        limits: &Limits,
        default_time: DateTime<Utc>,
    ) -> Result<LogEvent, Rejection> {
        let timestamp = match self.timestamp {
            Some(text) => logpipe_model::parse_timestamp(&text)?,
            None => default_time,
        };
        let attributes = if self.attributes.is_empty() {
            None
        } else {
            // A map of JSON values always serializes; the model then checks its limits.
            let text = Value::Object(self.attributes).to_string();
            Some(
                RawValue::from_string(text).map_err(|e| Rejection::InvalidJson {
                    detail: e.to_string(),
                })?,
            )
        };
        LogEvent::from_parts(
            EventParts {
                timestamp,
                level: self.level.unwrap_or_default(),
                service: Cow::Owned(self.service),
                message: Cow::Owned(self.message),
                host: self.host.map(Cow::Owned),
                trace_id: self.trace_id.map(Cow::Owned),
                span_id: self.span_id.map(Cow::Owned),
                attributes: attributes.as_deref(),
            },
            limits,
        )
    }
}

/// A foreign service name made into a valid [`ServiceName`]: every character outside
/// `A-Z a-z 0-9 . _ -` becomes `_`, and it is cut at [`ServiceName::MAX_LEN`]. Sanitized rather
/// than refused because a shipper cannot fix a label on a retry, and refusing would drop every
/// line of the stream. `None` for an empty name; `Some((name, true))` when it was kept verbatim.
pub fn service_name(raw: &str) -> Option<(String, bool)> {
    if raw.is_empty() {
        return None;
    }
    if ServiceName::try_from(raw).is_ok() {
        return Some((raw.to_owned(), true));
    }
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(ServiceName::MAX_LEN)
        .collect();
    Some((clean, false))
}

/// RFC 3339 (nanoseconds, UTC) for a Unix time, or the rejection when no calendar date in the
/// years 0000..=9999 has it.
pub fn unix_timestamp(seconds: i64, nanos: u32, original: &str) -> Result<String, Rejection> {
    DateTime::from_timestamp(seconds, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .ok_or_else(|| Rejection::InvalidTimestamp {
            value: original.chars().take(64).collect(),
            reason: "is not a time between the years 0000 and 9999".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn parts_go_through_the_models_rules() {
        let received = Utc::now();
        let mut parts = Parts {
            timestamp: Some(unix_timestamp(1_700_000_000, 123_456_789, "x").unwrap()),
            level: Some(Level::Warn),
            service: "api".into(),
            message: "hello".into(),
            host: Some("web-1".into()),
            ..Parts::default()
        };
        parts.attributes.insert("k".into(), "v".into());
        let event = parts.into_event(&Limits::DEFAULT, received).unwrap();
        // Nanoseconds are truncated to the microseconds logpipe keeps.
        assert_eq!(event.timestamp.nanosecond(), 123_456_000);
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.attributes.unwrap().get(), r#"{"k":"v"}"#);

        let empty = Parts {
            service: "api".into(),
            message: " ".into(),
            ..Parts::default()
        };
        let err = empty.into_event(&Limits::DEFAULT, received).unwrap_err();
        assert_eq!(err.code(), "empty_message");
        let limits = Limits {
            max_attributes: 1,
            ..Limits::DEFAULT
        };
        let mut crowded = Parts {
            service: "api".into(),
            message: "m".into(),
            ..Parts::default()
        };
        crowded.attributes.insert("a".into(), 1.into());
        crowded.attributes.insert("b".into(), 2.into());
        let err = crowded.into_event(&limits, received).unwrap_err();
        assert_eq!(err.code(), "too_many_attributes");
    }

    #[test]
    fn parts_equal_the_event_the_json_api_builds() {
        let received = Utc::now();
        let mut parts = Parts {
            timestamp: Some("2026-01-02T03:04:05.123456+01:00".into()),
            level: None,
            service: "api".into(),
            message: "hello".into(),
            host: Some("web-1".into()),
            trace_id: Some("4BF92F3577B34DA6A3CE929D0E0E4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            ..Parts::default()
        };
        parts.attributes.insert("n".into(), 1.into());
        let built = parts.into_event(&Limits::DEFAULT, received).unwrap();
        let parsed = LogEvent::parse_str(
            r#"{"timestamp":"2026-01-02T03:04:05.123456+01:00","service":"api","message":"hello","host":"web-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"n":1}}"#,
            &Limits::DEFAULT,
            received,
        )
        .unwrap();
        assert_eq!(built, parsed);
        let none = Parts {
            service: "api".into(),
            message: "m".into(),
            ..Parts::default()
        };
        let event = none.into_event(&Limits::DEFAULT, received).unwrap();
        assert_eq!(
            event.timestamp,
            logpipe_model::normalise_timestamp(received)
        );
        assert_eq!(event.level, Level::Info);
    }

    #[test]
    fn service_names_are_sanitized() {
        assert_eq!(service_name("api"), Some(("api".into(), true)));
        assert_eq!(service_name("ns/my app"), Some(("ns_my_app".into(), false)));
        let long = service_name(&"é".repeat(200)).unwrap();
        assert_eq!(long.0.len(), 128);
        assert_eq!(service_name(""), None);
    }

    #[test]
    fn out_of_range_times_are_rejections() {
        assert_eq!(
            unix_timestamp(0, 5, "5").unwrap(),
            "1970-01-01T00:00:00.000000005Z"
        );
        assert_eq!(
            unix_timestamp(i64::MAX, 0, "big").unwrap_err().code(),
            "invalid_timestamp"
        );
    }
}
