//! Why an event (or a batch body) was rejected: one enum for every reason, each with a stable
//! machine code.
//!
//! The code (`invalid_json`, `unknown_field`, ...) is what callers branch on, use as a Prometheus
//! label and return to clients; it must never change once published. The `Display` text is for
//! humans and may be reworded. Values echoed back from the client are cut to [`ECHO_MAX_CHARS`]
//! characters, so a hostile event cannot make a rejection (and the response or log line that
//! carries it) large.

use thiserror::Error;

/// How many characters of a client-supplied value a rejection repeats back.
pub const ECHO_MAX_CHARS: usize = 64;

/// Why an event was rejected.
///
/// Each variant has a stable, low-cardinality [`code`](Rejection::code) and a human message
/// (`Display`). Client-supplied text inside a variant is already cut to [`ECHO_MAX_CHARS`];
/// `Display` prints it with Rust's `{:?}` escaping so control characters never reach a log line raw.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Rejection {
    /// The bytes are not UTF-8. Checked before JSON parsing so clients get this precise reason
    /// rather than a generic JSON error.
    #[error("not valid UTF-8")]
    InvalidUtf8,

    /// The text is not JSON, has trailing data, or repeats a field (we reject duplicate keys
    /// rather than pick one: parsers disagree on first-versus-last, and that ambiguity is how
    /// records get smuggled past checks).
    #[error("invalid JSON: {detail}")]
    InvalidJson { detail: String },

    /// Valid JSON, but an event must be a JSON object.
    #[error("an event must be a JSON object")]
    NotAnObject,

    /// Valid JSON, but a batch body given to [`split_json_array`](crate::split_json_array) must
    /// be a JSON array.
    #[error("the body must be a JSON array of events")]
    NotAnArray,

    /// A top-level field that is not part of the event model.
    #[error("unknown field `{field}`; put custom data in `attributes`")]
    UnknownField { field: String },

    /// A required field is absent (or `null`: null counts as absent for every field).
    #[error("missing required field `{field}`")]
    MissingField { field: &'static str },

    /// A field holds the wrong JSON type, e.g. a number where a string is expected.
    #[error("field `{field}` must be a {expected}")]
    InvalidType {
        field: &'static str,
        expected: &'static str,
    },

    /// `timestamp` is not RFC 3339, or falls outside the years 0000..=9999 once in UTC.
    #[error(
        "invalid timestamp {value:?}: {reason}; expected RFC 3339 such as 2026-11-25T12:00:00.123Z"
    )]
    InvalidTimestamp { value: String, reason: String },

    /// `level` is not one of the accepted names.
    #[error(
        "invalid level {value:?}: expected TRACE, DEBUG, INFO, WARN (or WARNING), ERROR or FATAL, in any case"
    )]
    InvalidLevel { value: String },

    /// `service` breaks the naming rule.
    #[error("invalid service {value:?}: {reason}")]
    InvalidService { value: String, reason: &'static str },

    /// `message` is empty or only whitespace.
    #[error("`message` must not be empty or only whitespace")]
    EmptyMessage,

    /// `message` is longer than [`Limits::max_message_bytes`](crate::Limits::max_message_bytes).
    #[error("`message` is {len} bytes; the limit is {max}")]
    MessageTooLarge { len: usize, max: usize },

    /// `host` breaks the host name rule.
    #[error("invalid host {value:?}: {reason}")]
    InvalidHost { value: String, reason: &'static str },

    /// `trace_id` is not a W3C trace id (32 hex digits, not all zero).
    #[error("invalid trace_id {value:?}: {reason}")]
    InvalidTraceId { value: String, reason: &'static str },

    /// `span_id` is not a W3C span id (16 hex digits, not all zero).
    #[error("invalid span_id {value:?}: {reason}")]
    InvalidSpanId { value: String, reason: &'static str },

    /// `attributes` is present but not a JSON object.
    #[error("`attributes` must be a JSON object")]
    AttributesNotObject,

    /// `attributes` has more top-level keys than [`Limits::max_attributes`](crate::Limits::max_attributes).
    #[error("`attributes` has {count} keys; the limit is {max}")]
    TooManyAttributes { count: usize, max: usize },

    /// `attributes`, written compactly, is longer than
    /// [`Limits::max_attributes_bytes`](crate::Limits::max_attributes_bytes).
    #[error("`attributes` is {len} bytes written compactly; the limit is {max}")]
    AttributesTooLarge { len: usize, max: usize },
}

impl Rejection {
    /// Every code [`code`](Rejection::code) can return, so a metrics registry can create each
    /// labelled counter up front (a series that appears only on the first failure breaks `rate()`).
    pub const ALL_CODES: [&'static str; 18] = [
        "invalid_utf8",
        "invalid_json",
        "not_an_object",
        "not_an_array",
        "unknown_field",
        "missing_field",
        "invalid_type",
        "invalid_timestamp",
        "invalid_level",
        "invalid_service",
        "empty_message",
        "message_too_large",
        "invalid_host",
        "invalid_trace_id",
        "invalid_span_id",
        "attributes_not_object",
        "too_many_attributes",
        "attributes_too_large",
    ];

    /// The stable machine code: snake_case, one per variant, safe as a metrics label.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::NotAnArray => "not_an_array",
            Rejection::UnknownField { .. } => "unknown_field",
            Rejection::MissingField { .. } => "missing_field",
            Rejection::InvalidType { .. } => "invalid_type",
            Rejection::InvalidTimestamp { .. } => "invalid_timestamp",
            Rejection::InvalidLevel { .. } => "invalid_level",
            Rejection::InvalidService { .. } => "invalid_service",
            Rejection::EmptyMessage => "empty_message",
            Rejection::MessageTooLarge { .. } => "message_too_large",
            Rejection::InvalidHost { .. } => "invalid_host",
            Rejection::InvalidTraceId { .. } => "invalid_trace_id",
            Rejection::InvalidSpanId { .. } => "invalid_span_id",
            Rejection::AttributesNotObject => "attributes_not_object",
            Rejection::TooManyAttributes { .. } => "too_many_attributes",
            Rejection::AttributesTooLarge { .. } => "attributes_too_large",
        }
    }

    /// The top-level field the rejection is about, when there is one, for an API response's
    /// `field` member. `UnknownField` returns the client's (cut) field name.
    pub fn field(&self) -> Option<&str> {
        match self {
            Rejection::InvalidUtf8
            | Rejection::InvalidJson { .. }
            | Rejection::NotAnObject
            | Rejection::NotAnArray => None,
            Rejection::UnknownField { field } => Some(field),
            Rejection::MissingField { field } | Rejection::InvalidType { field, .. } => Some(field),
            Rejection::InvalidTimestamp { .. } => Some("timestamp"),
            Rejection::InvalidLevel { .. } => Some("level"),
            Rejection::InvalidService { .. } => Some("service"),
            Rejection::EmptyMessage | Rejection::MessageTooLarge { .. } => Some("message"),
            Rejection::InvalidHost { .. } => Some("host"),
            Rejection::InvalidTraceId { .. } => Some("trace_id"),
            Rejection::InvalidSpanId { .. } => Some("span_id"),
            Rejection::AttributesNotObject
            | Rejection::TooManyAttributes { .. }
            | Rejection::AttributesTooLarge { .. } => Some("attributes"),
        }
    }

    /// Wraps a serde_json error. Its text names the line and column, never the input itself.
    pub(crate) fn invalid_json(err: &serde_json::Error) -> Rejection {
        Rejection::InvalidJson {
            detail: err.to_string(),
        }
    }
}

/// Copies at most [`ECHO_MAX_CHARS`] characters of a client value for a rejection, marking a cut
/// with `…`.
pub(crate) fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_codes_are_unique_snake_case() {
        let unique: HashSet<_> = Rejection::ALL_CODES.iter().collect();
        assert_eq!(unique.len(), Rejection::ALL_CODES.len());
        for code in Rejection::ALL_CODES {
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn echo_cuts_long_values_on_a_char_boundary() {
        assert_eq!(echo("short"), "short");
        let exact = "é".repeat(ECHO_MAX_CHARS);
        assert_eq!(echo(&exact), exact);
        let long = "é".repeat(ECHO_MAX_CHARS + 1);
        assert_eq!(echo(&long), format!("{exact}…"));
    }

    #[test]
    fn display_escapes_control_characters_in_echoed_values() {
        let rejection = Rejection::InvalidLevel {
            value: "bad\nline".into(),
        };
        assert!(rejection.to_string().contains(r#""bad\nline""#));
    }

    #[test]
    fn field_names_the_field() {
        assert_eq!(Rejection::EmptyMessage.field(), Some("message"));
        assert_eq!(
            Rejection::UnknownField {
                field: "colour".into()
            }
            .field(),
            Some("colour")
        );
        assert_eq!(Rejection::InvalidUtf8.field(), None);
    }
}
