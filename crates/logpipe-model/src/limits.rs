//! Size limits for one event, passed to every parse so the gateway can make them configurable.
//!
//! Only the limits that depend on configuration live here; fixed rules (a service name is at
//! most 128 characters, a trace id is 32 hex digits) belong to the field types themselves.

use serde::{Deserialize, Serialize};

/// Size limits applied by [`LogEvent::parse`](crate::LogEvent::parse) and
/// [`LogEvent::decode`](crate::LogEvent::decode).
///
/// Deserializable so it can sit in the service configuration as a table; every key is optional
/// and falls back to [`Limits::DEFAULT`]. The consumer should decode with limits at least as
/// large as the gateway's, or records accepted earlier will be rejected when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted `message`, in UTF-8 bytes (not characters: bytes are what Kafka and the
    /// stores pay for).
    pub max_message_bytes: usize,
    /// Most top-level keys accepted in `attributes`. Nested keys are not counted; their cost is
    /// bounded by `max_attributes_bytes`.
    pub max_attributes: usize,
    /// Largest accepted `attributes` object, in bytes once written compactly (whitespace outside
    /// strings removed; string escapes counted as the client sent them).
    pub max_attributes_bytes: usize,
}

impl Limits {
    /// 32 KiB messages, 64 attributes, 8 KiB of attributes.
    pub const DEFAULT: Limits = Limits {
        max_message_bytes: 32 * 1024,
        max_attributes: 64,
        max_attributes_bytes: 8 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        assert_eq!(Limits::default().max_message_bytes, 32768);
        assert_eq!(Limits::default().max_attributes, 64);
        assert_eq!(Limits::default().max_attributes_bytes, 8192);
    }

    #[test]
    fn config_table_may_set_some_keys_and_rejects_unknown_ones() {
        let limits: Limits = serde_json::from_str(r#"{"max_attributes":8}"#).unwrap();
        assert_eq!(
            limits,
            Limits {
                max_attributes: 8,
                ..Limits::DEFAULT
            }
        );
        assert!(serde_json::from_str::<Limits>(r#"{"max_attrs":8}"#).is_err());
    }
}
