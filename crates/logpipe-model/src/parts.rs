//! [`LogEvent::from_parts`]: an event from fields a protocol adapter has already separated (an
//! OTLP log record, a Loki line), held to the same field rules and [`Limits`] as a client's JSON.
//!
//! Adapters map their protocol's fields onto [`EventParts`]; this module alone decides whether
//! the result is a valid event, so no protocol can store what `POST /api/v1/logs` would refuse.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Utc};
use serde_json::value::RawValue;

use crate::attributes;
use crate::event::{normalise_timestamp, LogEvent};
use crate::fields::{HostName, Message, ServiceName, SpanId, TraceId};
use crate::level::Level;
use crate::limits::Limits;
use crate::rejection::Rejection;

/// The fields of one event before the rules are applied. Strings are `Cow` so an adapter that
/// owns its decoded strings hands them over without a copy.
#[derive(Debug, Clone)]
pub struct EventParts<'a> {
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub service: Cow<'a, str>,
    pub message: Cow<'a, str>,
    pub host: Option<Cow<'a, str>>,
    pub trace_id: Option<Cow<'a, str>>,
    pub span_id: Option<Cow<'a, str>>,
    /// A JSON object (`{}` is stored as no attributes), checked against the limits like a
    /// client's `attributes`.
    pub attributes: Option<&'a RawValue>,
}

impl LogEvent {
    /// Builds an event from separated fields, applying the rules of [`LogEvent::parse`] in the
    /// same order (so the same first broken field is reported): timestamp within years
    /// 0000..=9999 (truncated to microseconds), service, message size then blankness, host,
    /// trace id, span id, attributes.
    pub fn from_parts(parts: EventParts<'_>, limits: &Limits) -> Result<LogEvent, Rejection> {
        if !(0..=9999).contains(&parts.timestamp.year()) {
            return Err(Rejection::InvalidTimestamp {
                value: parts.timestamp.to_rfc3339(),
                reason: "is outside the years 0000 to 9999".to_owned(),
            });
        }
        let service = ServiceName::from_cow(parts.service)?;
        if parts.message.len() > limits.max_message_bytes {
            return Err(Rejection::MessageTooLarge {
                len: parts.message.len(),
                max: limits.max_message_bytes,
            });
        }
        let message = Message::from_cow(parts.message)?;
        Ok(LogEvent {
            timestamp: normalise_timestamp(parts.timestamp),
            level: parts.level,
            service,
            message,
            host: parts.host.map(HostName::from_cow).transpose()?,
            trace_id: parts.trace_id.map(TraceId::from_cow).transpose()?,
            span_id: parts.span_id.map(SpanId::from_cow).transpose()?,
            attributes: match parts.attributes {
                Some(raw) => attributes::check(raw, limits)?,
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn parts(message: &str) -> EventParts<'_> {
        EventParts {
            timestamp: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
                + chrono::Duration::nanoseconds(1_234_567),
            level: Level::Warn,
            service: "checkout-api".into(),
            message: message.into(),
            host: Some("web-1".into()),
            trace_id: Some("4BF92F3577B34DA6A3CE929D0E0E4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            attributes: None,
        }
    }

    #[test]
    fn equals_the_event_parse_builds_from_the_same_fields() {
        let raw = RawValue::from_string(r#"{"user_id":42}"#.into()).unwrap();
        let built = LogEvent::from_parts(
            EventParts {
                attributes: Some(&raw),
                ..parts("payment failed")
            },
            &Limits::DEFAULT,
        )
        .unwrap();
        let parsed = LogEvent::parse(
            br#"{"timestamp":"2026-11-25T12:00:00.001234Z","level":"warn","service":"checkout-api","message":"payment failed","host":"web-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"user_id":42}}"#,
            &Limits::DEFAULT,
            Utc::now(),
        )
        .unwrap();
        assert_eq!(built, parsed);
    }

    #[test]
    fn applies_the_field_rules_and_limits() {
        let limits = Limits {
            max_message_bytes: 4,
            ..Limits::DEFAULT
        };
        let code = |p: EventParts<'_>| LogEvent::from_parts(p, &limits).unwrap_err().code();
        assert_eq!(code(parts("12345")), "message_too_large");
        assert_eq!(code(parts("  ")), "empty_message");
        assert_eq!(
            code(EventParts {
                service: "my service".into(),
                ..parts("m")
            }),
            "invalid_service"
        );
        assert_eq!(
            code(EventParts {
                host: Some("web 1".into()),
                ..parts("m")
            }),
            "invalid_host"
        );
        assert_eq!(
            code(EventParts {
                trace_id: Some("0".repeat(32).into()),
                ..parts("m")
            }),
            "invalid_trace_id"
        );
        let array = RawValue::from_string("[1]".into()).unwrap();
        assert_eq!(
            code(EventParts {
                attributes: Some(&array),
                ..parts("m")
            }),
            "attributes_not_object"
        );
        let far = Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            code(EventParts {
                timestamp: far,
                ..parts("m")
            }),
            "invalid_timestamp"
        );
    }
}
