//! Events from the protocols log shippers speak (Loki push, Elasticsearch bulk): what their
//! mappings share. [`Parts`] holds the fields a mapping found; [`Parts::into_event`] writes them
//! as logpipe's own event JSON and parses that with [`LogEvent::parse_str`], so every field rule
//! and every configured limit applies exactly as on `POST /api/v1/logs` (one place owns them).
//!
//! Also here: the level names shippers use beyond ours ([`level`]) and how a foreign service
//! name becomes a [`ServiceName`] ([`service_name`]).

use chrono::{DateTime, Utc};
use logpipe_model::{Level, Limits, LogEvent, Rejection, ServiceName};
use serde_json::{Map, Value};

/// The fields of one event as a protocol mapping found them, not yet checked.
#[derive(Debug, Default)]
pub struct Parts {
    /// RFC 3339; `None` takes the time the request arrived.
    pub timestamp: Option<String>,
    pub level: Option<Level>,
    pub service: String,
    pub message: String,
    pub host: Option<String>,
    /// Everything else the protocol carried; empty is left out.
    pub attributes: Map<String, Value>,
}

impl Parts {
    /// The event, or the first rule it breaks (with its stable code).
    pub fn into_event(
        self,
        limits: &Limits,
        received: DateTime<Utc>,
    ) -> Result<LogEvent, Rejection> {
        let mut object = Map::with_capacity(6);
        if let Some(timestamp) = self.timestamp {
            object.insert("timestamp".into(), timestamp.into());
        }
        if let Some(level) = self.level {
            object.insert("level".into(), level.as_str().into());
        }
        object.insert("service".into(), self.service.into());
        object.insert("message".into(), self.message.into());
        if let Some(host) = self.host {
            object.insert("host".into(), host.into());
        }
        if !self.attributes.is_empty() {
            object.insert("attributes".into(), Value::Object(self.attributes));
        }
        let text = Value::Object(object).to_string();
        LogEvent::parse_str(&text, limits, received)
    }
}

/// A level name as shippers write it: ours (case-insensitive, `WARNING` too), plus the syslog and
/// Python names logpipe's API does not take (`critical`, `crit`, `emerg`, `alert`, `panic` are
/// FATAL; `err` is ERROR; `notice` is INFO; `dbg` is DEBUG). `None` for anything else
/// (Loki's `unknown` included): the caller keeps the raw value where it was.
pub fn level(name: &str) -> Option<Level> {
    if let Ok(level) = name.parse() {
        return Some(level);
    }
    const ALIASES: [(&str, Level); 8] = [
        ("critical", Level::Fatal),
        ("crit", Level::Fatal),
        ("emerg", Level::Fatal),
        ("alert", Level::Fatal),
        ("panic", Level::Fatal),
        ("err", Level::Error),
        ("notice", Level::Info),
        ("dbg", Level::Debug),
    ];
    ALIASES
        .iter()
        .find(|(alias, _)| name.eq_ignore_ascii_case(alias))
        .map(|(_, level)| *level)
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
            attributes: Map::new(),
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
    fn levels_take_shipper_names() {
        assert_eq!(level("warning"), Some(Level::Warn));
        assert_eq!(level("CRITICAL"), Some(Level::Fatal));
        assert_eq!(level("err"), Some(Level::Error));
        assert_eq!(level("unknown"), None);
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
