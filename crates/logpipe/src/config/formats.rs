//! The record formats the consumer reads (`consumer.format`, `consumer.formats`,
//! `consumer.raw_service`, `consumer.raw_service_from_key`, `[consumer.json_fields]`): logpipe's
//! own canonical JSON, or what other producers (log appenders, shippers) write to Kafka. The keys
//! live in [`super::ConsumerConfig`]; this file holds the format names, the field names of the
//! `json` format ([`JsonFields`]) and the rules across them.

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};

use super::Config;

/// How a record's value becomes a log event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// logpipe's canonical JSON event (what the gateway writes). A record without `timestamp`
    /// gets the Kafka record's timestamp; without `level`, INFO. Unknown fields are refused.
    #[default]
    Logpipe,
    /// The value is the message (UTF-8), level INFO, timestamp from the Kafka record, service
    /// from `consumer.raw_service` (or the record key with `consumer.raw_service_from_key`).
    Raw,
    /// Any JSON object, as log4j2's JsonTemplateLayout/EcsLayout, logback's logstash encoder,
    /// Fluent Bit and Vector write it: the event fields are found by the names of
    /// `[consumer.json_fields]` (ECS and logstash names by default), every other field is kept
    /// as an attribute. Without a time, the Kafka record's timestamp; without a level, INFO;
    /// without a service, as `raw`.
    Json,
    /// One OTLP `ExportLogsServiceRequest` per record (protobuf), as the OpenTelemetry
    /// Collector's kafka exporter writes (`encoding: otlp_proto`): each log record becomes one
    /// event, mapped as the gateway's `/v1/logs` maps it; a resource without `service.name`
    /// takes the `raw` service rule.
    OtlpProto,
    /// The same in OTLP/JSON (`encoding: otlp_json`).
    OtlpJson,
}

impl RecordFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Logpipe => "logpipe",
            RecordFormat::Raw => "raw",
            RecordFormat::Json => "json",
            RecordFormat::OtlpProto => "otlp_proto",
            RecordFormat::OtlpJson => "otlp_json",
        }
    }
}

/// `[consumer.json_fields]`: where records of the `json` format keep each event field. Each
/// name is a dotted path, looked up both as a literal key (`"log.level"`) and as nested objects
/// (`{"log":{"level":..}}`); of a list, the first name present wins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFields {
    /// Required: a record with none of these is dead-lettered (`missing_field`).
    pub message: Vec<String>,
    /// RFC 3339, a date-time without offset (UTC), or an epoch number (seconds, milliseconds,
    /// microseconds or nanoseconds, by magnitude). None: the Kafka record's timestamp.
    pub timestamp: Vec<String>,
    /// A level name or alias (`warning`, `critical`, `err`, ... in any case). None: INFO.
    pub level: Vec<String>,
    /// None: as `raw` records (`raw_service_from_key`, `raw_service`, the topic's name).
    pub service: Vec<String>,
    pub host: Vec<String>,
    pub trace_id: Vec<String>,
    pub span_id: Vec<String>,
}

impl Default for JsonFields {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect();
        Self {
            message: names(&["message", "msg", "log"]),
            timestamp: names(&["@timestamp", "timestamp", "time", "ts"]),
            level: names(&["log.level", "level", "severity", "loglevel"]),
            service: names(&["service.name", "service", "app", "application"]),
            host: names(&["host.name", "host", "hostname"]),
            trace_id: names(&["trace.id", "trace_id", "traceId"]),
            span_id: names(&["span.id", "span_id", "spanId"]),
        }
    }
}

/// Rules across the format keys, run by [`Config::validate`].
pub(super) fn check(config: &Config) -> anyhow::Result<()> {
    let c = &config.consumer;
    let topics = c.topics(&config.kafka);
    for topic in c.formats.keys() {
        if !topics.contains(topic) {
            bail!(
                "config key `consumer.formats.\"{topic}\"`: the consumer does not read `{topic}` (it reads {}); add it to `consumer.topics` or remove the entry",
                topics.join(", ")
            );
        }
    }
    let f = &c.json_fields;
    ensure!(
        !f.message.is_empty(),
        "config key `consumer.json_fields.message`: must name at least one field (like `message`); it holds the log line"
    );
    for (key, names) in [
        ("message", &f.message),
        ("timestamp", &f.timestamp),
        ("level", &f.level),
        ("service", &f.service),
        ("host", &f.host),
        ("trace_id", &f.trace_id),
        ("span_id", &f.span_id),
    ] {
        ensure!(
            names.iter().all(|n| !n.is_empty()),
            "config key `consumer.json_fields.{key}`: a field name is empty; name record fields like `message` or `log.level`"
        );
    }
    if !c.raw_service.is_empty() {
        if let Err(e) = logpipe_model::ServiceName::try_from(c.raw_service.as_str()) {
            bail!("config key `consumer.raw_service`: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_checked_across_keys() {
        let mut config = Config::default();
        config.validate().unwrap();
        config.consumer.format = RecordFormat::OtlpProto;
        config.validate().unwrap();
        config.consumer.format = RecordFormat::Raw;
        config.validate().unwrap();

        config
            .consumer
            .formats
            .insert("elsewhere".into(), RecordFormat::Raw);
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("does not read `elsewhere`"), "{error}");
        config.consumer.topics = vec!["elsewhere".into(), config.kafka.topic.clone()];
        config.validate().unwrap();
        config
            .consumer
            .formats
            .insert("elsewhere".into(), RecordFormat::OtlpJson);
        config.validate().unwrap();
        config.consumer.formats.clear();

        config.consumer.raw_service = "my service".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("consumer.raw_service"), "{error}");
        config.consumer.raw_service = "shipper".into();
        config.validate().unwrap();

        config.consumer.format = RecordFormat::Json;
        config.validate().unwrap();
        config.consumer.json_fields.message.clear();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("consumer.json_fields.message"), "{error}");
        config.consumer.json_fields = JsonFields::default();
        config.consumer.json_fields.level.push(String::new());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("consumer.json_fields.level"), "{error}");
    }

    #[test]
    fn formats_read_from_toml() {
        let config = Config::from_toml_str(
            "[consumer]\nformat = \"raw\"\ntopics = [\"a\", \"b\"]\n[consumer.formats]\nb = \"logpipe\"\n",
        )
        .unwrap();
        assert_eq!(config.consumer.format, RecordFormat::Raw);
        assert_eq!(config.consumer.formats["b"], RecordFormat::Logpipe);
        let config = Config::from_toml_str(
            "[consumer]\nformat = \"json\"\n[consumer.json_fields]\nmessage = [\"text\"]\n",
        )
        .unwrap();
        assert_eq!(config.consumer.format, RecordFormat::Json);
        assert_eq!(config.consumer.json_fields.message, ["text"]);
        assert_eq!(
            config.consumer.json_fields.level,
            JsonFields::default().level
        );
        let error = Config::from_toml_str("[consumer]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("consumer.format"), "{error}");
    }
}
