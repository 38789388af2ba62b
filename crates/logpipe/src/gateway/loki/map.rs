//! From a Loki stream entry to a [`LogEvent`]: which label is the service, which is the level,
//! and what becomes attributes. The table is in docs/api.md ("Loki push").

use chrono::{DateTime, Utc};
use logpipe_model::{Limits, LogEvent};
use serde_json::{Map, Value};

use super::push::{Entry, Stream};
use crate::formats::{self, Parts};

/// Labels (then structured metadata before them) that name the level, first parsable wins.
pub const LEVEL_KEYS: [&str; 4] = ["level", "detected_level", "severity", "lvl"];

/// `gateway.loki_service_labels` and `gateway.loki_default_service`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_labels: Vec<String>,
    pub default_service: String,
}

/// An entry that did not become an event.
#[derive(Debug)]
pub struct Rejected {
    pub stream: usize,
    pub entry: usize,
    pub code: &'static str,
    pub reason: String,
}

/// The events of a push, in order, and the entries refused.
pub fn events(
    streams: Vec<Stream>,
    settings: &Settings,
    tenant: Option<&str>,
    limits: &Limits,
    received: DateTime<Utc>,
) -> (Vec<LogEvent>, Vec<Rejected>) {
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (s, stream) in streams.into_iter().enumerate() {
        let labels = match stream.labels {
            Ok(labels) => labels,
            Err(reason) => {
                rejected.extend((0..stream.entries.len()).map(|entry| Rejected {
                    stream: s,
                    entry,
                    code: "invalid_labels",
                    reason: reason.clone(),
                }));
                continue;
            }
        };
        for (e, entry) in stream.entries.into_iter().enumerate() {
            match event(&labels, entry, settings, tenant, limits, received) {
                Ok(event) => events.push(event),
                Err((code, reason)) => rejected.push(Rejected {
                    stream: s,
                    entry: e,
                    code,
                    reason,
                }),
            }
        }
    }
    (events, rejected)
}

fn event(
    labels: &[(String, String)],
    entry: Entry,
    settings: &Settings,
    tenant: Option<&str>,
    limits: &Limits,
    received: DateTime<Utc>,
) -> Result<LogEvent, (&'static str, String)> {
    let Ok(line) = entry.line else {
        return Err(("invalid_utf8", "the line is not valid UTF-8".into()));
    };
    let original = format!("{}.{:09}", entry.seconds, entry.nanos);
    let timestamp = formats::unix_timestamp(entry.seconds, entry.nanos, &original)
        .map_err(|r| (r.code(), r.to_string()))?;
    // Structured metadata is the entry's own: it wins over a stream label of the same name.
    let mut attributes: Map<String, Value> = labels
        .iter()
        .chain(entry.metadata.iter())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();

    let label = |name: &str| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let service = settings
        .service_labels
        .iter()
        .find_map(|name| Some((name, formats::service_name(label(name)?)?)));
    let service = match service {
        Some((name, (service, verbatim))) => {
            // The label is the service now; kept as an attribute only when its text changed.
            if verbatim && attributes.get(name).and_then(Value::as_str) == Some(&service) {
                attributes.remove(name);
            }
            service
        }
        None => settings.default_service.clone(),
    };

    let found = LEVEL_KEYS.iter().find_map(|key| {
        let metadata = entry
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v);
        let raw = metadata.or_else(|| label(key))?;
        Some((*key, raw.clone(), logpipe_model::Level::from_foreign(raw)?))
    });
    let level = found.map(|(key, raw, level)| {
        if attributes.get(key).and_then(Value::as_str) == Some(raw.as_str()) {
            attributes.remove(key);
        }
        level
    });
    if let Some(tenant) = tenant {
        attributes.insert("tenant".into(), tenant.into());
    }
    Parts {
        timestamp: Some(timestamp),
        level,
        service,
        message: line,
        attributes,
        ..Parts::default()
    }
    .into_event(limits, received)
    .map_err(|r| (r.code(), r.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logpipe_model::Level;

    fn settings() -> Settings {
        Settings {
            service_labels: ["service_name", "service", "job", "app"]
                .map(String::from)
                .to_vec(),
            default_service: "unknown_service".into(),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn entry(line: &str, metadata: &[(&str, &str)]) -> Entry {
        Entry {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
            line: Ok(line.into()),
            metadata: pairs(metadata),
        }
    }

    fn map_one(
        labels: &[(&str, &str)],
        e: Entry,
        tenant: Option<&str>,
    ) -> Result<LogEvent, String> {
        let (mut events, rejected) = events(
            vec![Stream {
                labels: Ok(pairs(labels)),
                entries: vec![e],
            }],
            &settings(),
            tenant,
            &Limits::DEFAULT,
            Utc::now(),
        );
        match rejected.into_iter().next() {
            Some(r) => Err(format!("{}: {}", r.code, r.reason)),
            None => Ok(events.remove(0)),
        }
    }

    #[test]
    fn labels_become_service_level_and_attributes() {
        let event = map_one(
            &[
                ("job", "batch"),
                ("service_name", "api"),
                ("level", "warning"),
                ("env", "prod"),
            ],
            entry("hello", &[("trace", "t1")]),
            Some("team-a"),
        )
        .unwrap();
        assert_eq!(event.service.as_str(), "api");
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.message.as_str(), "hello");
        assert_eq!(event.timestamp.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(
            event.attributes.unwrap().get(),
            r#"{"env":"prod","job":"batch","tenant":"team-a","trace":"t1"}"#
        );
    }

    #[test]
    fn metadata_level_wins_and_unknown_levels_stay_attributes() {
        let event = map_one(
            &[("level", "info")],
            entry("m", &[("level", "error")]),
            None,
        )
        .unwrap();
        assert_eq!(event.level, Level::Error);
        assert_eq!(event.service.as_str(), "unknown_service");
        // Structured metadata wins over a label of the same name, as an entry's own value.
        assert!(event.attributes.is_none());

        let event = map_one(&[("detected_level", "unknown")], entry("m", &[]), None).unwrap();
        assert_eq!(event.level, Level::Info);
        assert_eq!(
            event.attributes.unwrap().get(),
            r#"{"detected_level":"unknown"}"#
        );
    }

    #[test]
    fn sanitized_services_keep_the_original_label() {
        let event = map_one(&[("app", "my app/1")], entry("m", &[]), None).unwrap();
        assert_eq!(event.service.as_str(), "my_app_1");
        assert_eq!(event.attributes.unwrap().get(), r#"{"app":"my app/1"}"#);
    }

    #[test]
    fn refused_entries_are_reported_with_their_position() {
        let (events, rejected) = events(
            vec![
                Stream {
                    labels: Err("bad".into()),
                    entries: vec![entry("a", &[])],
                },
                Stream {
                    labels: Ok(vec![]),
                    entries: vec![
                        entry("ok", &[]),
                        entry("  ", &[]),
                        Entry {
                            line: Err(()),
                            ..entry("", &[])
                        },
                    ],
                },
            ],
            &settings(),
            None,
            &Limits::DEFAULT,
            Utc::now(),
        );
        assert_eq!(events.len(), 1);
        let seen: Vec<_> = rejected
            .iter()
            .map(|r| (r.stream, r.entry, r.code))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, 0, "invalid_labels"),
                (1, 1, "empty_message"),
                (1, 2, "invalid_utf8")
            ]
        );
    }
}
