//! From an Elasticsearch document to an event's fields ([`Parts`]): the shared document mapping
//! ([`crate::formats::document`]) with the configured field names
//! (`gateway.elasticsearch_fields`, ECS by default) and Elasticsearch's date rules (a number is
//! epoch milliseconds); the document's index and `_id` become attributes. The table is in
//! docs/api.md ("Elasticsearch bulk").

use serde_json::Value;

use crate::config::ElasticsearchFields;
use crate::formats::document::{self, Epoch, Names};
use crate::formats::Parts;

/// The event fields of `source`, or why it is not a document logpipe can store.
pub fn parts(
    source: &[u8],
    fields: &ElasticsearchFields,
    index: &str,
    id: Option<&str>,
) -> Result<Parts, String> {
    let names = Names {
        message: std::slice::from_ref(&fields.message),
        timestamp: std::slice::from_ref(&fields.timestamp),
        level: std::slice::from_ref(&fields.level),
        service: std::slice::from_ref(&fields.service),
        host: std::slice::from_ref(&fields.host),
        // ECS `trace.id`, `span.id` stay attributes here, as they always have.
        trace_id: &[],
        span_id: &[],
        epoch: Epoch::Millis,
        config: "gateway.elasticsearch_fields",
    };
    let mut parts =
        document::parts(source, &names, &fields.default_service).map_err(|r| r.reason)?;
    parts.attributes.insert("index".into(), index.into());
    if let Some(id) = id {
        parts.attributes.insert("_id".into(), Value::from(id));
    }
    Ok(parts)
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
