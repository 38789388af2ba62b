//! The `json` record format: any JSON object, as log appenders and shippers write log lines to
//! Kafka (log4j2's JsonTemplateLayout/EcsLayout, logback's logstash encoder, Fluent Bit, Vector).
//! The event fields are found by the names of `[consumer.json_fields]` through the document
//! mapping the gateway's Elasticsearch bulk route uses ([`crate::formats::document`]); every
//! other field stays an attribute, within the configured limits. The table is in
//! docs/consumer.md ("Records other producers wrote").

use chrono::{DateTime, Utc};
use logpipe_model::{Limits, LogEvent, Rejection, ServiceName};
use serde_json::Value;

use super::decoded::Refusal;
use crate::config::JsonFields;
use crate::formats::document::{self, Epoch, Names};

/// One record's value as an event. `timestamp` is the time of a record without one (the Kafka
/// record's), `service` the service of a record without one (as for `raw` records). A refusal
/// names the configured field names it looked for, so the operator knows what to add.
pub fn decode(
    payload: &[u8],
    fields: &JsonFields,
    service: &ServiceName,
    timestamp: DateTime<Utc>,
    limits: &Limits,
) -> Result<LogEvent, Refusal> {
    let text = std::str::from_utf8(payload).map_err(|_| Rejection::InvalidUtf8)?;
    let Value::Object(doc) = serde_json::from_str(text).map_err(|e| Rejection::InvalidJson {
        detail: e.to_string(),
    })?
    else {
        return Err(Rejection::NotAnObject.into());
    };
    let names = Names {
        message: &fields.message,
        timestamp: &fields.timestamp,
        level: &fields.level,
        service: &fields.service,
        host: &fields.host,
        trace_id: &fields.trace_id,
        span_id: &fields.span_id,
        epoch: Epoch::ByMagnitude,
        config: "consumer.json_fields",
    };
    let parts =
        document::object_parts(doc, &names, service.as_str()).map_err(|refused| Refusal {
            code: refused.rejection.code(),
            message: refused.reason,
        })?;
    Ok(parts.into_event(limits, timestamp)?)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use logpipe_model::Level;
    use serde_json::json;

    use super::*;

    fn kafka_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    fn map(value: Value) -> Result<LogEvent, Refusal> {
        decode(
            value.to_string().as_bytes(),
            &JsonFields::default(),
            &"orders-topic".parse().unwrap(),
            kafka_time(),
            &Limits::DEFAULT,
        )
    }

    fn attributes(event: &LogEvent) -> Value {
        serde_json::from_str(event.attributes.as_ref().map_or("{}", |a| a.get())).unwrap()
    }

    #[test]
    fn ecs_nested_as_log4j2_ecs_layout_writes_it() {
        let event = map(json!({
            "@timestamp": "2026-01-02T03:04:05.123Z",
            "log": {"level": "WARN", "logger": "com.example.Orders"},
            "message": "stock low",
            "ecs": {"version": "1.2.0"},
            "process": {"thread": {"name": "main"}},
            "service": {"name": "orders"},
            "host": {"name": "web-1"},
            "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
            "span": {"id": "00f067aa0ba902b7"}
        }))
        .unwrap();
        assert_eq!(event.message.as_str(), "stock low");
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.service.as_str(), "orders");
        assert_eq!(event.host.as_ref().unwrap().as_str(), "web-1");
        assert_eq!(
            event.trace_id.as_ref().unwrap().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(event.span_id.as_ref().unwrap().as_str(), "00f067aa0ba902b7");
        assert_eq!(event.timestamp.timestamp_millis(), 1_767_323_045_123);
        assert_eq!(
            attributes(&event),
            json!({"log": {"logger": "com.example.Orders"}, "ecs": {"version": "1.2.0"},
                   "process": {"thread": {"name": "main"}}})
        );
    }

    #[test]
    fn ecs_flat_dotted_keys_as_json_template_layout_writes_them() {
        let event = map(json!({
            "@timestamp": "2026-01-02T03:04:05.123456Z",
            "log.level": "ERROR",
            "log.logger": "app",
            "message": "boom",
            "service.name": "billing",
            "host.name": "web-2",
            "error.type": "java.lang.IllegalStateException"
        }))
        .unwrap();
        assert_eq!(event.level, Level::Error);
        assert_eq!(event.service.as_str(), "billing");
        assert_eq!(event.host.as_ref().unwrap().as_str(), "web-2");
        assert_eq!(event.timestamp.timestamp_subsec_micros(), 123_456);
        assert_eq!(
            attributes(&event),
            json!({"log.logger": "app", "error.type": "java.lang.IllegalStateException"})
        );
    }

    #[test]
    fn logstash_logback_encoder() {
        let event = map(json!({
            "@timestamp": "2026-01-02T04:04:05.123+01:00",
            "@version": "1",
            "message": "user signed in",
            "logger_name": "com.example.Auth",
            "thread_name": "http-nio-8080-exec-1",
            "level": "INFO",
            "level_value": 20000,
            "app": "auth"
        }))
        .unwrap();
        assert_eq!(event.level, Level::Info);
        assert_eq!(event.service.as_str(), "auth");
        assert_eq!(event.timestamp.timestamp_millis(), 1_767_323_045_123);
        let attrs = attributes(&event);
        assert_eq!(attrs["logger_name"], "com.example.Auth");
        assert_eq!(attrs["level_value"], 20000);
        assert_eq!(attrs["@version"], "1");
        assert!(attrs.get("level").is_none() && attrs.get("app").is_none());
    }

    #[test]
    fn fluent_bit_log_and_epoch_float_time() {
        let event = map(json!({
            "time": 1_700_000_000.123_456,
            "log": "GET /healthz 200\n",
            "stream": "stdout",
            "kubernetes": {"pod_name": "web-7d9", "namespace_name": "shop"}
        }))
        .unwrap();
        assert_eq!(event.message.as_str(), "GET /healthz 200\n");
        assert_eq!(event.timestamp.timestamp(), 1_700_000_000);
        assert_eq!(event.timestamp.timestamp_subsec_micros(), 123_456);
        assert_eq!(event.level, Level::Info);
        // No service field: the fallback of `raw` records.
        assert_eq!(event.service.as_str(), "orders-topic");
        assert_eq!(attributes(&event)["kubernetes"]["pod_name"], "web-7d9");
    }

    #[test]
    fn vector_message_and_timestamp() {
        let event = map(json!({
            "message": "connection reset",
            "timestamp": "2026-01-02T03:04:05.123456789Z",
            "host": "node-3",
            "source_type": "file",
            "file": "/var/log/app.log",
            "severity": "warning"
        }))
        .unwrap();
        assert_eq!(event.host.as_ref().unwrap().as_str(), "node-3");
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.timestamp.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(
            attributes(&event),
            json!({"source_type": "file", "file": "/var/log/app.log"})
        );
    }

    #[test]
    fn epochs_levels_and_fallbacks() {
        let at = |ts: Value| map(json!({"msg": "m", "ts": ts})).unwrap().timestamp;
        assert_eq!(
            at(json!(1_700_000_000_123_i64)).timestamp_millis(),
            1_700_000_000_123
        );
        assert_eq!(
            at(json!(1_700_000_000_123_456_789_i64)).timestamp_subsec_micros(),
            123_456
        );
        assert_eq!(at(json!("1700000000")).timestamp(), 1_700_000_000);
        assert_eq!(at(json!(null)), kafka_time());
        let level = |l: &str| map(json!({"msg": "m", "loglevel": l})).unwrap().level;
        assert_eq!(level("CRITICAL"), Level::Fatal);
        assert_eq!(level("err"), Level::Error);
        assert_eq!(level("Trace"), Level::Trace);
        // A level no alias names stays an attribute; the event is INFO.
        let event = map(json!({"msg": "m", "level": "chatty", "trace_id": "xyz"})).unwrap();
        assert_eq!(event.level, Level::Info);
        assert_eq!(
            attributes(&event),
            json!({"level": "chatty", "trace_id": "xyz"})
        );
        assert!(event.trace_id.is_none());
        // A service name with spaces is sanitized; the original is kept.
        let event = map(json!({"msg": "m", "service": "my app"})).unwrap();
        assert_eq!(event.service.as_str(), "my_app");
        assert_eq!(attributes(&event), json!({"service": "my app"}));
    }

    #[test]
    fn what_is_refused() {
        let code = |v: Value| map(v).unwrap_err().code;
        assert_eq!(
            map(json!({"text": "m"})).unwrap_err().message,
            "the document has no `message`, `msg` or `log` field; it holds the log line \
             (consumer.json_fields.message names it)"
        );
        assert_eq!(code(json!({"text": "no message field"})), "missing_field");
        assert_eq!(code(json!({"message": null})), "missing_field");
        assert_eq!(code(json!({"message": {"a": 1}})), "invalid_type");
        assert_eq!(code(json!({"message": "  "})), "empty_message");
        assert_eq!(
            code(json!({"message": "m", "time": "yesterday"})),
            "invalid_timestamp"
        );
        assert_eq!(
            code(json!({"message": "m", "time": 1e30})),
            "invalid_timestamp"
        );
        assert_eq!(
            code(json!({"message": "m", "time": [1]})),
            "invalid_timestamp"
        );
        assert_eq!(code(json!([1])), "not_an_object");
        let err = decode(
            b"\xff",
            &JsonFields::default(),
            &"s".parse().unwrap(),
            kafka_time(),
            &Limits::DEFAULT,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_utf8");
        let err = decode(
            b"{not json",
            &JsonFields::default(),
            &"s".parse().unwrap(),
            kafka_time(),
            &Limits::DEFAULT,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_json");
        let limits = Limits {
            max_attributes: 1,
            ..Limits::DEFAULT
        };
        let err = decode(
            br#"{"message":"m","a":1,"b":2}"#,
            &JsonFields::default(),
            &"s".parse().unwrap(),
            kafka_time(),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.code, "too_many_attributes");
    }

    #[test]
    fn configured_names_replace_the_defaults() {
        let fields = JsonFields {
            message: vec!["event.original".into()],
            level: vec!["sev".into()],
            ..JsonFields::default()
        };
        let event = decode(
            br#"{"event":{"original":"line"},"sev":"dbg","message":"kept"}"#,
            &fields,
            &"s".parse().unwrap(),
            kafka_time(),
            &Limits::DEFAULT,
        )
        .unwrap();
        assert_eq!(event.message.as_str(), "line");
        assert_eq!(event.level, Level::Debug);
        assert_eq!(attributes(&event), json!({"message": "kept"}));
    }
}
