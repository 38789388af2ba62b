//! Validated string newtypes for the event's fields: holding one means it obeys its rule.
//!
//! Each type has one private constructor, `from_cow`, that checks the rule; every public way in
//! (`TryFrom<&str>`, `TryFrom<String>`, `FromStr`, serde) goes through it. It takes a `Cow` so
//! the event parser can hand over a string it already owns (a JSON string with escapes) without a
//! second copy. The rules here are fixed; size limits that come from configuration
//! ([`Limits`](crate::Limits)) are applied by the event parser instead, which is why [`Message`]
//! only promises "not blank".

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::rejection::{echo, Rejection};

/// Writes the conversions and serde impls shared by every newtype; each type supplies
/// `from_cow`. A macro because the five blocks are identical and a trait would add nothing a
/// caller could use.
macro_rules! string_newtype {
    ($name:ident, $expecting:literal) => {
        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Gives the validated text back as a `String`, without copying.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Rejection;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::from_cow(Cow::Borrowed(s))
            }
        }

        impl TryFrom<String> for $name {
            type Error = Rejection;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::from_cow(Cow::Owned(s))
            }
        }

        impl FromStr for $name {
            type Err = Rejection;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_cow(Cow::Borrowed(s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct NewtypeVisitor;

                impl Visitor<'_> for NewtypeVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_cow(Cow::Borrowed(v)).map_err(E::custom)
                    }

                    fn visit_string<E: de::Error>(self, v: String) -> Result<$name, E> {
                        $name::from_cow(Cow::Owned(v)).map_err(E::custom)
                    }
                }

                deserializer.deserialize_string(NewtypeVisitor)
            }
        }
    };
}

/// The emitting service: 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
///
/// Narrow on purpose: it becomes part of store keys, metric labels and file names downstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// Longest accepted name, in characters (all ASCII, so also bytes).
    pub const MAX_LEN: usize = 128;

    pub(crate) fn from_cow(s: Cow<'_, str>) -> Result<Self, Rejection> {
        let rule = TokenRule {
            max_len: Self::MAX_LEN,
            allowed: |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'),
            charset: "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
            too_long: "must be at most 128 characters",
        };
        match rule.broken_by(&s) {
            Some(reason) => Err(Rejection::InvalidService {
                value: echo(&s),
                reason,
            }),
            None => Ok(ServiceName(s.into_owned())),
        }
    }
}

string_newtype!(ServiceName, "a service name");

/// The emitting host: 1 to 255 characters of `A-Z a-z 0-9 . _ : -` (`:` so IPv6 addresses fit).
///
/// Not a full RFC 1123 check: clients send container ids and IP addresses here too. The rule only
/// keeps out whitespace, control characters and markup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// Longest accepted host name, in characters (all ASCII, so also bytes).
    pub const MAX_LEN: usize = 255;

    pub(crate) fn from_cow(s: Cow<'_, str>) -> Result<Self, Rejection> {
        let rule = TokenRule {
            max_len: Self::MAX_LEN,
            allowed: |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'),
            charset: "may contain only A-Z, a-z, 0-9, '.', '_', ':' and '-'",
            too_long: "must be at most 255 characters",
        };
        match rule.broken_by(&s) {
            Some(reason) => Err(Rejection::InvalidHost {
                value: echo(&s),
                reason,
            }),
            None => Ok(HostName(s.into_owned())),
        }
    }
}

string_newtype!(HostName, "a host name");

/// A W3C trace-context trace id: 32 hex digits, not all zero, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(String);

impl TraceId {
    pub(crate) fn from_cow(s: Cow<'_, str>) -> Result<Self, Rejection> {
        match lower_hex_id(s, 32, "must be exactly 32 hex digits") {
            Ok(id) => Ok(TraceId(id)),
            Err((value, reason)) => Err(Rejection::InvalidTraceId { value, reason }),
        }
    }
}

string_newtype!(TraceId, "a 32-hex-digit trace id");

/// A W3C trace-context span (parent) id: 16 hex digits, not all zero, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(String);

impl SpanId {
    pub(crate) fn from_cow(s: Cow<'_, str>) -> Result<Self, Rejection> {
        match lower_hex_id(s, 16, "must be exactly 16 hex digits") {
            Ok(id) => Ok(SpanId(id)),
            Err((value, reason)) => Err(Rejection::InvalidSpanId { value, reason }),
        }
    }
}

string_newtype!(SpanId, "a 16-hex-digit span id");

/// A "1 to `max_len` ASCII characters from a set" rule, shared by service and host names.
struct TokenRule {
    max_len: usize,
    allowed: fn(u8) -> bool,
    /// Reason given when a byte is outside the set.
    charset: &'static str,
    /// Reason given when the text is longer than `max_len`.
    too_long: &'static str,
}

impl TokenRule {
    /// Why `s` breaks the rule, or `None` if it obeys it.
    ///
    /// Character set before length, so a long non-ASCII name is told about its characters,
    /// not about a byte length it cannot see.
    fn broken_by(&self, s: &str) -> Option<&'static str> {
        if s.is_empty() {
            Some("must not be empty")
        } else if !s.bytes().all(self.allowed) {
            Some(self.charset)
        } else if s.len() > self.max_len {
            Some(self.too_long)
        } else {
            None
        }
    }
}

/// Checks a W3C id and lower-cases it, or returns the echoed value and the reason.
///
/// All zeros is the spec's "invalid" id, so it is rejected rather than stored as a real trace.
fn lower_hex_id(
    s: Cow<'_, str>,
    len: usize,
    wrong_shape: &'static str,
) -> Result<String, (String, &'static str)> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((echo(&s), wrong_shape));
    }
    if s.bytes().all(|b| b == b'0') {
        return Err((echo(&s), "must not be all zeros"));
    }
    let mut id = s.into_owned();
    id.make_ascii_lowercase();
    Ok(id)
}

/// The event's text: not empty and not only whitespace. Kept verbatim (not trimmed): stack
/// traces and aligned output depend on their whitespace.
///
/// The size limit is not part of this type: it is configuration, applied by
/// [`LogEvent::parse`](crate::LogEvent::parse) with its [`Limits`](crate::Limits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Message(String);

impl Message {
    pub(crate) fn from_cow(s: Cow<'_, str>) -> Result<Self, Rejection> {
        if s.trim().is_empty() {
            return Err(Rejection::EmptyMessage);
        }
        Ok(Message(s.into_owned()))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a `Message` is never empty. Present because clippy expects it beside `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

string_newtype!(Message, "a non-empty message");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_length_bounds() {
        assert!(ServiceName::try_from("a").is_ok());
        assert!(ServiceName::try_from("a".repeat(128).as_str()).is_ok());
        let too_long = ServiceName::try_from("a".repeat(129).as_str());
        assert!(matches!(
            too_long,
            Err(Rejection::InvalidService {
                reason: "must be at most 128 characters",
                ..
            })
        ));
        assert!(ServiceName::try_from("").is_err());
    }

    #[test]
    fn service_name_character_set() {
        assert!("checkout-api_v2.eu".parse::<ServiceName>().is_ok());
        for bad in ["check out", "svc/1", "ünïcode", "svc:1", "tab\t"] {
            assert!(
                matches!(
                    bad.parse::<ServiceName>(),
                    Err(Rejection::InvalidService { .. })
                ),
                "{bad:?}"
            );
        }
        // A long non-ASCII name is told about its characters, not its length.
        let err = "é".repeat(100).parse::<ServiceName>().unwrap_err();
        assert!(err.to_string().contains("may contain only"), "{err}");
    }

    #[test]
    fn host_name_accepts_ipv6_and_bounds_length() {
        for good in [
            "web-1",
            "10.0.0.7",
            "::1",
            "fe80::1ff:fe23:4567:890a",
            "pod_7.ns",
        ] {
            assert!(good.parse::<HostName>().is_ok(), "{good:?}");
        }
        assert!("h".repeat(255).parse::<HostName>().is_ok());
        for bad in ["", "web 1", "web\n1", "<b>", "h".repeat(256).as_str()] {
            assert!(
                matches!(bad.parse::<HostName>(), Err(Rejection::InvalidHost { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn trace_and_span_ids_are_normalised_to_lower_case() {
        let trace: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(trace.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let span: SpanId = "00F067AA0BA902B7".parse().unwrap();
        assert_eq!(span.as_str(), "00f067aa0ba902b7");
    }

    #[test]
    fn trace_and_span_ids_reject_wrong_shapes_and_zeros() {
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47366",
        ] {
            assert!(matches!(
                bad.parse::<TraceId>(),
                Err(Rejection::InvalidTraceId {
                    reason: "must be exactly 32 hex digits",
                    ..
                })
            ));
        }
        assert!(matches!(
            "g".repeat(32).parse::<TraceId>(),
            Err(Rejection::InvalidTraceId { .. })
        ));
        assert!(matches!(
            "0".repeat(32).parse::<TraceId>(),
            Err(Rejection::InvalidTraceId {
                reason: "must not be all zeros",
                ..
            })
        ));
        assert!(matches!(
            "0".repeat(16).parse::<SpanId>(),
            Err(Rejection::InvalidSpanId {
                reason: "must not be all zeros",
                ..
            })
        ));
        assert!(matches!(
            "00f067aa0ba902b".parse::<SpanId>(),
            Err(Rejection::InvalidSpanId { .. })
        ));
    }

    #[test]
    fn message_rejects_blank_but_keeps_whitespace() {
        assert_eq!("".parse::<Message>(), Err(Rejection::EmptyMessage));
        assert_eq!(
            " \t\n\u{a0}".parse::<Message>(),
            Err(Rejection::EmptyMessage)
        );
        let message: Message = "  indented\n".parse().unwrap();
        assert_eq!(message.as_str(), "  indented\n");
        assert_eq!(message.len(), 11);
    }

    #[test]
    fn serde_validates_and_is_transparent() {
        let service: ServiceName = serde_json::from_str(r#""checkout-api""#).unwrap();
        assert_eq!(
            serde_json::to_string(&service).unwrap(),
            r#""checkout-api""#
        );
        assert!(serde_json::from_str::<ServiceName>(r#""bad name""#).is_err());
        let trace: TraceId = serde_json::from_str(r#""4BF92F3577B34DA6A3CE929D0E0E4736""#).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // Escaped JSON strings arrive through `visit_string`; they must be validated too.
        assert!(serde_json::from_str::<HostName>(r#""web\u0020one""#).is_err());
    }
}
