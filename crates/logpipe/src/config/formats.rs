//! The record formats the consumer reads (`consumer.format`, `consumer.formats`,
//! `consumer.raw_service`, `consumer.raw_service_from_key`): logpipe's own canonical JSON, or
//! what other producers (log appenders, shippers) write to Kafka. The keys live in
//! [`super::ConsumerConfig`]; this file holds the format names and the rules across them.

use anyhow::bail;
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
            RecordFormat::OtlpProto => "otlp_proto",
            RecordFormat::OtlpJson => "otlp_json",
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
    }

    #[test]
    fn formats_read_from_toml() {
        let config = Config::from_toml_str(
            "[consumer]\nformat = \"raw\"\ntopics = [\"a\", \"b\"]\n[consumer.formats]\nb = \"logpipe\"\n",
        )
        .unwrap();
        assert_eq!(config.consumer.format, RecordFormat::Raw);
        assert_eq!(config.consumer.formats["b"], RecordFormat::Logpipe);
        let error = Config::from_toml_str("[consumer]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("consumer.format"), "{error}");
    }
}
