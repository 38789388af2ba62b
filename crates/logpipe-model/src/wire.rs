//! Reads one JSON object into borrowed, not yet validated fields ([`WireEvent`]).
//!
//! This is the only code that looks at an event's JSON structure. It is a hand-written serde
//! visitor rather than `#[derive(Deserialize)]` because:
//! - a type error must name its field (`InvalidType { field: "service" }`); serde_json's own
//!   message says "invalid type: integer, expected a string" and nothing about which key;
//! - unknown and duplicate fields get rejections of their own;
//! - strings without escapes are borrowed from the input, and no `serde_json::Value` is built, so
//!   a typical event allocates only for the fields the event keeps.
//!
//! serde_json errors are opaque, so when the visitor rejects for a reason of its own it writes
//! the [`Rejection`] into a slot and returns a placeholder error to stop the parser; the caller
//! prefers the slot over the placeholder.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::rejection::{echo, Rejection};

/// An event's fields as the client sent them: right JSON type, rules not yet checked. `None`
/// means absent or `null`.
#[derive(Debug, Default)]
pub(crate) struct WireEvent<'a> {
    pub(crate) timestamp: Option<Cow<'a, str>>,
    pub(crate) level: Option<Cow<'a, str>>,
    pub(crate) service: Option<Cow<'a, str>>,
    pub(crate) message: Option<Cow<'a, str>>,
    pub(crate) host: Option<Cow<'a, str>>,
    pub(crate) trace_id: Option<Cow<'a, str>>,
    pub(crate) span_id: Option<Cow<'a, str>>,
    /// Kept as raw text: any JSON type gets here, and the attributes check says whether it is an
    /// object.
    pub(crate) attributes: Option<&'a RawValue>,
}

/// Reads `text` as one event object.
///
/// Syntax is checked for the whole text (trailing data included) before any field rule runs, so
/// a broken document is always `InvalidJson`, whatever order its keys come in.
pub(crate) fn read_event(text: &str) -> Result<WireEvent<'_>, Rejection> {
    if first_non_whitespace(text) != Some(b'{') {
        return Err(classify_non_container(text, Rejection::NotAnObject));
    }
    let mut slot = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let read = (&mut de)
        .deserialize_map(EventVisitor { slot: &mut slot })
        .and_then(|event| de.end().map(|()| event));
    match (read, slot) {
        (_, Some(rejection)) => Err(rejection),
        (Ok(event), None) => Ok(event),
        (Err(err), None) => Err(Rejection::invalid_json(&err)),
    }
}

/// The first byte that is not JSON whitespace (RFC 8259 allows only these four).
pub(crate) fn first_non_whitespace(text: &str) -> Option<u8> {
    text.bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// For text that does not start with the expected bracket: `wrong_shape` if it is valid JSON of
/// another kind, otherwise the syntax error. Only runs on the rejection path.
pub(crate) fn classify_non_container(text: &str, wrong_shape: Rejection) -> Rejection {
    match serde_json::from_str::<IgnoredAny>(text) {
        Ok(_) => wrong_shape,
        Err(err) => Rejection::invalid_json(&err),
    }
}

/// The model's top-level fields. The discriminant is the field's bit in the duplicate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Timestamp,
    Level,
    Service,
    Message,
    Host,
    TraceId,
    SpanId,
    Attributes,
}

impl Field {
    /// Every field, in declaration order.
    pub(crate) const ALL: [Field; 8] = [
        Field::Timestamp,
        Field::Level,
        Field::Service,
        Field::Message,
        Field::Host,
        Field::TraceId,
        Field::SpanId,
        Field::Attributes,
    ];

    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "timestamp" => Field::Timestamp,
            "level" => Field::Level,
            "service" => Field::Service,
            "message" => Field::Message,
            "host" => Field::Host,
            "trace_id" => Field::TraceId,
            "span_id" => Field::SpanId,
            "attributes" => Field::Attributes,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::Level => "level",
            Field::Service => "service",
            Field::Message => "message",
            Field::Host => "host",
            Field::TraceId => "trace_id",
            Field::SpanId => "span_id",
            Field::Attributes => "attributes",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// An object key: a model field, or an unknown name (already cut for echoing).
enum Key {
    Known(Field),
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            // Matching on `&str` means known keys never allocate, escaped or not.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match Field::from_name(v) {
                    Some(field) => Key::Known(field),
                    None => Key::Unknown(echo(v)),
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Records `rejection` and returns the placeholder error that stops the parser.
fn reject<E: de::Error>(slot: &mut Option<Rejection>, rejection: Rejection) -> E {
    *slot = Some(rejection);
    E::custom("event rejected")
}

struct EventVisitor<'s> {
    slot: &'s mut Option<Rejection>,
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = WireEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let slot = self.slot;
        let mut event = WireEvent::default();
        let mut seen = 0u8;
        while let Some(key) = map.next_key::<Key>()? {
            let field = match key {
                Key::Known(field) => field,
                Key::Unknown(field) => {
                    return Err(reject(slot, Rejection::UnknownField { field }));
                }
            };
            // Duplicates are rejected, not resolved: see `Rejection::InvalidJson`. Tracked apart
            // from the values so `{"host":null,"host":"a"}` is caught too.
            if seen & field.bit() != 0 {
                let detail = format!("duplicate field `{}`", field.name());
                return Err(reject(slot, Rejection::InvalidJson { detail }));
            }
            seen |= field.bit();
            let target = match field {
                Field::Attributes => {
                    event.attributes = map.next_value()?;
                    continue;
                }
                Field::Timestamp => &mut event.timestamp,
                Field::Level => &mut event.level,
                Field::Service => &mut event.service,
                Field::Message => &mut event.message,
                Field::Host => &mut event.host,
                Field::TraceId => &mut event.trace_id,
                Field::SpanId => &mut event.span_id,
            };
            *target = map.next_value_seed(StringField {
                field: field.name(),
                slot: &mut *slot,
            })?;
        }
        Ok(event)
    }
}

/// Reads a string-or-null field, borrowing when the JSON string has no escapes, and rejects any
/// other JSON type as `InvalidType` naming the field.
struct StringField<'s> {
    field: &'static str,
    slot: &'s mut Option<Rejection>,
}

impl StringField<'_> {
    fn wrong_type<E: de::Error>(self) -> E {
        let rejection = Rejection::InvalidType {
            field: self.field,
            expected: "string",
        };
        reject(self.slot, rejection)
    }
}

impl<'de> DeserializeSeed<'de> for StringField<'_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        // `deserialize_any` so every JSON type reaches a method below: with `deserialize_str`,
        // serde_json would report a number itself and we could not name the field.
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringField<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string for `{}`", self.field)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.wrong_type())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.wrong_type())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.wrong_type())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.wrong_type())
    }

    // Arrays and objects are not drained: the rejection stops the whole parse anyway.
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let event = read_event(r#"{"service":"svc","message":"a\nb","host":null}"#).unwrap();
        assert!(matches!(event.service, Some(Cow::Borrowed("svc"))));
        assert!(matches!(event.message.as_deref(), Some("a\nb")));
        assert!(matches!(event.message, Some(Cow::Owned(_))));
        assert!(event.host.is_none());
    }

    #[test]
    fn type_errors_name_the_field() {
        for (json, field) in [
            (r#"{"service":5}"#, "service"),
            (r#"{"level":true}"#, "level"),
            (r#"{"timestamp":1732536000}"#, "timestamp"),
            (r#"{"message":["a"]}"#, "message"),
            (r#"{"host":{"name":"a"}}"#, "host"),
            (r#"{"trace_id":1.5}"#, "trace_id"),
            (r#"{"span_id":-1}"#, "span_id"),
        ] {
            assert_eq!(
                read_event(json).unwrap_err(),
                Rejection::InvalidType {
                    field,
                    expected: "string"
                },
                "{json}"
            );
        }
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_invalid_json() {
        let err = read_event(r#"{"service":"a",}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = read_event(r#"{"service":"a"} trailing"#).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }

    #[test]
    fn duplicate_fields_are_rejected_even_after_null() {
        for json in [
            r#"{"service":"a","service":"b"}"#,
            r#"{"host":null,"host":"a"}"#,
            r#"{"attributes":{},"attributes":null}"#,
        ] {
            let err = read_event(json).unwrap_err();
            assert_eq!(err.code(), "invalid_json", "{json}");
            assert!(err.to_string().contains("duplicate field"), "{err}");
        }
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let event = read_event(r#"{"serv\u0069ce":"svc"}"#).unwrap();
        assert_eq!(event.service.as_deref(), Some("svc"));
    }

    #[test]
    fn non_objects_are_told_apart_from_broken_json() {
        assert_eq!(read_event("[1]").unwrap_err(), Rejection::NotAnObject);
        assert_eq!(read_event(" \"x\" ").unwrap_err(), Rejection::NotAnObject);
        assert_eq!(read_event("").unwrap_err().code(), "invalid_json");
        assert_eq!(read_event("[1").unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn attributes_are_captured_raw_without_leading_whitespace() {
        let event = read_event(r#"{"attributes":  {"a": 1} }"#).unwrap();
        assert_eq!(event.attributes.map(RawValue::get), Some(r#"{"a": 1}"#));
        let event = read_event(r#"{"attributes":null}"#).unwrap();
        assert!(event.attributes.is_none());
    }
}
