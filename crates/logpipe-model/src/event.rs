//! [`LogEvent`], the one valid log event, and the ways to get one: [`LogEvent::parse`] for a
//! client's JSON, [`LogEvent::decode`] for a record logpipe wrote to Kafka, and
//! [`LogEvent::decode_with_default`] and [`LogEvent::from_line`] for records other producers wrote.
//!
//! Parsing runs in two steps. `wire` reads the JSON into borrowed fields and owns
//! everything about JSON structure (types, unknown and duplicate keys); `LogEvent::from_wire`
//! then applies the field rules in the order the fields are declared, so the first broken field
//! is the one reported. Writing the canonical record is in `canonical`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::value::RawValue;

use crate::attributes;
use crate::fields::{HostName, Message, ServiceName, SpanId, TraceId};
use crate::level::Level;
use crate::limits::Limits;
use crate::rejection::{echo, Rejection};
use crate::wire::{self, WireEvent};

/// One valid log event. Holding one means every rule has passed; nothing downstream re-checks.
///
/// Fields are public for reading and for building events in code. When building one by hand,
/// keep `attributes` a JSON object and `timestamp` within years 0000..=9999, or
/// [`decode`](LogEvent::decode) will not accept what [`to_json`](LogEvent::to_json) writes.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// When it happened, in UTC, truncated to whole microseconds (see [`normalise_timestamp`]).
    pub timestamp: DateTime<Utc>,
    pub level: Level,
    pub service: ServiceName,
    pub message: Message,
    pub host: Option<HostName>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    /// The client's attributes as compact JSON text, always an object with at least one key
    /// (`{}` is stored as `None`). Raw text rather than a `serde_json::Map`: nothing on the way
    /// to Kafka looks inside, and a map would cost allocations per key for every event. Parse it
    /// (`serde_json::from_str(raw.get())`) where the contents are needed.
    pub attributes: Option<Box<RawValue>>,
}

/// Attributes compare by text, which is exact because the stored text is canonical: compacted
/// once, then copied verbatim. (`RawValue` has no `PartialEq` of its own.)
impl PartialEq for LogEvent {
    fn eq(&self, other: &Self) -> bool {
        self.timestamp == other.timestamp
            && self.level == other.level
            && self.service == other.service
            && self.message == other.message
            && self.host == other.host
            && self.trace_id == other.trace_id
            && self.span_id == other.span_id
            && self.attributes.as_deref().map(RawValue::get)
                == other.attributes.as_deref().map(RawValue::get)
    }
}

impl Eq for LogEvent {}

impl LogEvent {
    /// Parses one client event from raw bytes: what the HTTP gateway receives for one event, one
    /// NDJSON line or one array element.
    ///
    /// An event without `timestamp` gets `received_at`. Invalid UTF-8 is reported as
    /// [`Rejection::InvalidUtf8`], before any JSON parsing.
    pub fn parse(
        bytes: &[u8],
        limits: &Limits,
        received_at: DateTime<Utc>,
    ) -> Result<LogEvent, Rejection> {
        LogEvent::parse_str(utf8(bytes)?, limits, received_at)
    }

    /// [`parse`](LogEvent::parse) for text already known to be UTF-8, such as an element from
    /// [`split_json_array`](crate::split_json_array), saving the UTF-8 check.
    pub fn parse_str(
        text: &str,
        limits: &Limits,
        received_at: DateTime<Utc>,
    ) -> Result<LogEvent, Rejection> {
        LogEvent::from_wire(
            wire::read_event(text)?,
            limits,
            Some(normalise_timestamp(received_at)),
        )
    }

    /// Decodes a canonical record value, as read from Kafka.
    ///
    /// The same rules as [`parse`](LogEvent::parse), except that `timestamp` is required: a record
    /// without one was not written by logpipe.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<LogEvent, Rejection> {
        LogEvent::from_wire(wire::read_event(utf8(bytes)?)?, limits, None)
    }

    /// [`decode`](LogEvent::decode) for a record another producer wrote: the same rules, but a
    /// record without `timestamp` gets `default_timestamp` (the consumer passes the Kafka record's
    /// timestamp), as the gateway gives an event without one its arrival time.
    pub fn decode_with_default(
        bytes: &[u8],
        limits: &Limits,
        default_timestamp: DateTime<Utc>,
    ) -> Result<LogEvent, Rejection> {
        LogEvent::from_wire(
            wire::read_event(utf8(bytes)?)?,
            limits,
            Some(normalise_timestamp(default_timestamp)),
        )
    }

    /// An event from one plain-text line, as producers that write unstructured logs to Kafka send
    /// them: `bytes` is the message (UTF-8; one trailing line break is dropped), level INFO,
    /// `service` and `timestamp` supplied by the caller. The message rules and size limit are
    /// those of [`parse`](LogEvent::parse).
    pub fn from_line(
        bytes: &[u8],
        service: ServiceName,
        timestamp: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<LogEvent, Rejection> {
        let text = utf8(bytes)?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        if text.len() > limits.max_message_bytes {
            return Err(Rejection::MessageTooLarge {
                len: text.len(),
                max: limits.max_message_bytes,
            });
        }
        Ok(LogEvent {
            timestamp: normalise_timestamp(timestamp),
            level: Level::Info,
            service,
            message: Message::from_cow(text.into())?,
            host: None,
            trace_id: None,
            span_id: None,
            attributes: None,
        })
    }

    /// Applies the field rules. `default_timestamp` is used when the event has none; when it is
    /// `None` too, a missing timestamp is a rejection.
    fn from_wire(
        wire: WireEvent<'_>,
        limits: &Limits,
        default_timestamp: Option<DateTime<Utc>>,
    ) -> Result<LogEvent, Rejection> {
        let timestamp = match (wire.timestamp, default_timestamp) {
            (Some(text), _) => parse_timestamp(&text)?,
            (None, Some(default)) => default,
            (None, None) => return Err(Rejection::MissingField { field: "timestamp" }),
        };
        let level = match wire.level {
            Some(name) => name.parse()?,
            None => Level::default(),
        };
        let service = ServiceName::from_cow(required(wire.service, "service")?)?;
        let message = required(wire.message, "message")?;
        // Size before blankness: the length is free, and a huge message should be refused
        // before it is scanned or copied.
        if message.len() > limits.max_message_bytes {
            return Err(Rejection::MessageTooLarge {
                len: message.len(),
                max: limits.max_message_bytes,
            });
        }
        let message = Message::from_cow(message)?;
        Ok(LogEvent {
            timestamp,
            level,
            service,
            message,
            host: wire.host.map(HostName::from_cow).transpose()?,
            trace_id: wire.trace_id.map(TraceId::from_cow).transpose()?,
            span_id: wire.span_id.map(SpanId::from_cow).transpose()?,
            attributes: match wire.attributes {
                Some(raw) => attributes::check(raw, limits)?,
                None => None,
            },
        })
    }
}

/// Truncates to whole microseconds, the precision logpipe keeps.
///
/// Microseconds because that is what PostgreSQL's `timestamptz` stores, and because a fixed
/// precision makes the canonical text fixed-width (so record timestamps sort as strings) and
/// makes `parse` → `to_json` → `decode` return an equal event. Truncated rather than rounded so
/// an event never moves into the next second.
pub fn normalise_timestamp(timestamp: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = timestamp.nanosecond();
    // `with_nanosecond` instead of subtracting a duration: it keeps a leap second (nanos of
    // 1_000_000_000 and up) a leap second. It cannot fail for a smaller value of a valid field.
    timestamp
        .with_nanosecond(nanos - nanos % 1_000)
        .unwrap_or(timestamp)
}

/// Parses an RFC 3339 timestamp with any offset into UTC, within the years 0000..=9999, truncated
/// to microseconds: the `timestamp` rule, for adapters that find the text elsewhere.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, Rejection> {
    let invalid = |reason: String| Rejection::InvalidTimestamp {
        value: echo(text),
        reason,
    };
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|err| invalid(err.to_string()))?;
    let utc = parsed.with_timezone(&Utc);
    // RFC 3339 has four-digit years. `0000-01-01T00:00:00+01:00` is year -1 in UTC, which the
    // canonical record could not express.
    if !(0..=9999).contains(&utc.year()) {
        return Err(invalid(
            "is outside the years 0000 to 9999 once converted to UTC".to_owned(),
        ));
    }
    Ok(normalise_timestamp(utc))
}

/// A required field's value; `null` was already turned into absent by the wire reader.
fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Rejection> {
    value.ok_or(Rejection::MissingField { field })
}

fn utf8(bytes: &[u8]) -> Result<&str, Rejection> {
    std::str::from_utf8(bytes).map_err(|_| Rejection::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn received_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn parse(json: &str) -> Result<LogEvent, Rejection> {
        LogEvent::parse(json.as_bytes(), &Limits::DEFAULT, received_at())
    }

    #[test]
    fn parses_the_documented_example() {
        let event = parse(
            r#"{"timestamp":"2026-11-25T12:00:00.123Z","level":"error","service":"checkout-api","message":"payment failed for order 1234","host":"web-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"user_id":42,"region":"eu"}}"#,
        )
        .unwrap();
        assert_eq!(
            event.timestamp,
            Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
                + chrono::Duration::milliseconds(123)
        );
        assert_eq!(event.level, Level::Error);
        assert_eq!(event.service.as_str(), "checkout-api");
        assert_eq!(event.message.as_str(), "payment failed for order 1234");
        assert_eq!(event.host.as_ref().map(HostName::as_str), Some("web-1"));
        assert_eq!(
            event.attributes.as_deref().map(RawValue::get),
            Some(r#"{"user_id":42,"region":"eu"}"#)
        );
    }

    #[test]
    fn minimal_event_gets_defaults() {
        let event = parse(r#"{"service":"svc","message":"hi"}"#).unwrap();
        assert_eq!(event.timestamp, received_at());
        assert_eq!(event.level, Level::Info);
        assert!(event.host.is_none() && event.trace_id.is_none() && event.span_id.is_none());
        assert!(event.attributes.is_none());
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds() {
        let event = parse(
            r#"{"timestamp":"2026-11-25T12:00:00.123456789+00:00","service":"s","message":"m"}"#,
        )
        .unwrap();
        assert_eq!(event.timestamp.nanosecond(), 123_456_000);
        let received = received_at() + chrono::Duration::nanoseconds(999);
        let event = LogEvent::parse(
            br#"{"service":"s","message":"m"}"#,
            &Limits::DEFAULT,
            received,
        )
        .unwrap();
        assert_eq!(event.timestamp, received_at());
    }

    #[test]
    fn leap_seconds_survive_normalisation() {
        let event =
            parse(r#"{"timestamp":"2016-12-31T23:59:60.5000007Z","service":"s","message":"m"}"#)
                .unwrap();
        assert_eq!(event.timestamp.second(), 59);
        assert_eq!(event.timestamp.nanosecond(), 1_500_000_000);
    }

    #[test]
    fn a_foreign_record_without_timestamp_gets_the_default() {
        let kafka_time = received_at() + chrono::Duration::nanoseconds(1_234_567);
        let bytes = br#"{"service":"svc","message":"hi"}"#;
        let event = LogEvent::decode_with_default(bytes, &Limits::DEFAULT, kafka_time).unwrap();
        assert_eq!(
            event.timestamp,
            received_at() + chrono::Duration::microseconds(1_234)
        );
        assert_eq!(event.level, Level::Info);
        // The strict path still refuses it: logpipe's own records always carry one.
        let err = LogEvent::decode(bytes, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.code(), "missing_field");
        // A timestamp in the record wins over the default; unknown fields stay refused.
        let event = LogEvent::decode_with_default(
            br#"{"timestamp":"2026-01-01T00:00:00Z","service":"s","message":"m"}"#,
            &Limits::DEFAULT,
            kafka_time,
        )
        .unwrap();
        assert_eq!(event.timestamp.year(), 2026);
        assert_eq!(event.timestamp.month(), 1);
        let err = LogEvent::decode_with_default(
            br#"{"service":"s","message":"m","logger":"x"}"#,
            &Limits::DEFAULT,
            kafka_time,
        )
        .unwrap_err();
        assert_eq!(err.code(), "unknown_field");
    }

    #[test]
    fn a_line_becomes_an_info_event() {
        let service = ServiceName::try_from("svc").unwrap();
        let line = |bytes: &[u8]| {
            LogEvent::from_line(bytes, service.clone(), received_at(), &Limits::DEFAULT)
        };
        let event = line(b"GET /health 200\r\n").unwrap();
        assert_eq!(event.message.as_str(), "GET /health 200");
        assert_eq!(event.level, Level::Info);
        assert_eq!(event.timestamp, received_at());
        assert_eq!(event.service, service);
        // Only one line break is dropped; inner ones and other whitespace are kept.
        assert_eq!(line(b"a\n  b\n\n").unwrap().message.as_str(), "a\n  b\n");
        assert_eq!(line(b"\xff\xfe").unwrap_err().code(), "invalid_utf8");
        assert_eq!(line(b" \n").unwrap_err().code(), "empty_message");
        let limits = Limits {
            max_message_bytes: 4,
            ..Limits::DEFAULT
        };
        let err = LogEvent::from_line(b"12345\n", service.clone(), received_at(), &limits);
        assert_eq!(err.unwrap_err().code(), "message_too_large");
        assert!(LogEvent::from_line(b"1234\n", service, received_at(), &limits).is_ok());
    }

    #[test]
    fn first_broken_field_in_declaration_order_is_reported() {
        let err =
            parse(r#"{"span_id":"x","level":"loud","service":"s","message":"m"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_level");
        let err = parse(r#"{"message":"","service":"bad name"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_service");
    }
}
