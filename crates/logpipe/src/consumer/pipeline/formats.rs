//! A record's value read in its topic's format (`consumer.format`, `consumer.formats`): logpipe's
//! canonical JSON, a plain-text line, any JSON log object ([`super::json`]), or an OTLP export
//! request holding many log records ([`super::otlp_records`]), as other producers write them.
//! Formats only decide what the events are; enrichment and everything after are the same for
//! every format.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use logpipe_model::{Limits, LogEvent, Rejection, ServiceName};
use prometheus_client::metrics::counter::Counter;
use smallvec::smallvec;

use super::decoded::{Events, Refusal};
use super::otlp_records::{self, Encoding};
use crate::config::{ConsumerConfig, JsonFields, RecordFormat};
use crate::consumer::handoff::Fetched;

/// The format of every consumed topic, and what `raw` and `json` records need besides their
/// value.
#[derive(Debug, Clone)]
pub struct Formats {
    default: RecordFormat,
    by_topic: HashMap<String, RecordFormat>,
    /// `consumer.raw_service`; `None`: the topic's name.
    raw_service: Option<ServiceName>,
    raw_service_from_key: bool,
    json_fields: JsonFields,
    /// Attributes left out of OTLP events (over the limits, too deep, or a repeated key):
    /// `log_consumer_attributes_dropped_total`.
    dropped_attributes: Counter,
}

impl Formats {
    /// From a validated configuration (an invalid `raw_service` was refused at load), counting
    /// dropped attributes in `dropped_attributes`.
    pub fn from_config(c: &ConsumerConfig, dropped_attributes: Counter) -> Formats {
        Formats {
            default: c.format,
            by_topic: c.formats.iter().map(|(t, f)| (t.clone(), *f)).collect(),
            raw_service: ServiceName::try_from(c.raw_service.as_str()).ok(),
            raw_service_from_key: c.raw_service_from_key,
            json_fields: c.json_fields.clone(),
            dropped_attributes,
        }
    }

    /// The format of `topic`.
    pub fn of(&self, topic: &str) -> RecordFormat {
        self.by_topic.get(topic).copied().unwrap_or(self.default)
    }

    /// Decodes one record's value into its events. An event without a time of its own gets the
    /// Kafka record's timestamp (CreateTime or LogAppendTime, whichever the topic keeps), or
    /// `now`, the time it is consumed, when the record has none.
    pub fn decode(
        &self,
        record: &Fetched,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Events, Refusal> {
        let payload = record.raw.payload.as_deref().unwrap_or_default();
        let timestamp = record
            .raw
            .timestamp_ms
            .filter(|ms| *ms >= 0)
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(now);
        let one = |event| -> Result<Events, Refusal> { Ok(smallvec![event]) };
        match self.of(&record.topic) {
            RecordFormat::Logpipe => {
                one(LogEvent::decode_with_default(payload, limits, timestamp)?)
            }
            RecordFormat::Raw => one(LogEvent::from_line(
                payload,
                self.raw_service(record)?,
                timestamp,
                limits,
            )?),
            RecordFormat::Json => one(super::json::decode(
                payload,
                &self.json_fields,
                &self.raw_service(record)?,
                timestamp,
                limits,
            )?),
            RecordFormat::OtlpProto => self.otlp(record, Encoding::Protobuf, timestamp, limits),
            RecordFormat::OtlpJson => self.otlp(record, Encoding::Json, timestamp, limits),
        }
    }

    /// The events of an OTLP record; attributes left out of them are counted.
    fn otlp(
        &self,
        record: &Fetched,
        encoding: Encoding,
        timestamp: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Events, Refusal> {
        let payload = record.raw.payload.as_deref().unwrap_or_default();
        let service = self.raw_service(record)?;
        let (events, dropped) =
            otlp_records::decode(payload, encoding, &service, timestamp, limits)?;
        if dropped > 0 {
            self.dropped_attributes.inc_by(dropped);
        }
        Ok(events)
    }

    /// The service of a `raw` record, of a `json` record without one, and of an OTLP log record
    /// whose resource has no `service.name`: the record key (when configured and a valid service
    /// name), else `consumer.raw_service`, else the topic's name.
    fn raw_service(&self, record: &Fetched) -> Result<ServiceName, Rejection> {
        if self.raw_service_from_key {
            let key = record
                .raw
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok());
            if let Some(service) = key.and_then(|k| ServiceName::try_from(k).ok()) {
                return Ok(service);
            }
        }
        if let Some(service) = &self.raw_service {
            return Ok(service.clone());
        }
        // Topic names are 1 to 249 of [a-zA-Z0-9._-], the service alphabet: only the length
        // needs cutting (ASCII, so any byte index is a character boundary).
        let topic = &record.topic[..record.topic.len().min(ServiceName::MAX_LEN)];
        ServiceName::try_from(topic)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use chrono::TimeZone;

    use super::*;
    use crate::consumer::handoff::Raw;

    fn record(topic: &str, key: Option<&[u8]>, value: &[u8], timestamp_ms: Option<i64>) -> Fetched {
        Fetched {
            topic: Arc::from(topic),
            partition: 0,
            offset: 7,
            lane_hash: 0,
            fetched_at: Instant::now(),
            raw: Raw {
                key: key.map(<[u8]>::to_vec),
                payload: Some(value.to_vec()),
                timestamp_ms,
                ingest_header: None,
                request_id_header: None,
                replay_count: 0,
            },
        }
    }

    fn formats(configure: impl FnOnce(&mut ConsumerConfig)) -> Formats {
        let mut c = ConsumerConfig::default();
        configure(&mut c);
        Formats::from_config(&c, Counter::default())
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    const KAFKA_MS: i64 = 1_764_936_000_123; // 2025-12-05T12:00:00.123Z

    #[test]
    fn a_json_record_without_timestamp_takes_the_kafka_timestamp() {
        let f = formats(|_| {});
        let value = br#"{"service":"billing","message":"paid"}"#;
        let event = single(f.decode(
            &record("t", None, value, Some(KAFKA_MS)),
            &Limits::DEFAULT,
            now(),
        ))
        .unwrap();
        assert_eq!(event.timestamp.timestamp_millis(), KAFKA_MS);
        assert_eq!(event.level, logpipe_model::Level::Info);
        // No record timestamp (-1 is Kafka's "none"), or none at all: the time it is consumed.
        for ts in [Some(-1), None] {
            let event =
                single(f.decode(&record("t", None, value, ts), &Limits::DEFAULT, now())).unwrap();
            assert_eq!(event.timestamp, now());
        }
        // The logpipe format keeps its strict field rules.
        let err = f
            .decode(
                &record(
                    "t",
                    None,
                    br#"{"service":"s","message":"m","logger":"x"}"#,
                    None,
                ),
                &Limits::DEFAULT,
                now(),
            )
            .unwrap_err();
        assert_eq!(err.code, "unknown_field");
    }

    #[test]
    fn raw_records_take_their_service_from_config_key_or_topic() {
        let line = b"disk full on /var\n";
        let decode = |f: &Formats, topic: &str, key: Option<&[u8]>| {
            single(f.decode(
                &record(topic, key, line, Some(KAFKA_MS)),
                &Limits::DEFAULT,
                now(),
            ))
        };
        let by_topic = formats(|c| {
            c.formats.insert("syslog".into(), RecordFormat::Raw);
        });
        let event = decode(&by_topic, "syslog", Some(b"ignored")).unwrap();
        assert_eq!(event.service.as_str(), "syslog");
        assert_eq!(event.message.as_str(), "disk full on /var");
        assert_eq!(event.timestamp.timestamp_millis(), KAFKA_MS);
        // Other topics keep the default format: a line is not JSON.
        assert_eq!(
            decode(&by_topic, "application-logs", None)
                .unwrap_err()
                .code,
            "invalid_json"
        );
        let long = "t".repeat(249);
        let event = decode(&by_topic_raw(), &long, None).unwrap();
        assert_eq!(event.service.as_str().len(), ServiceName::MAX_LEN);

        let configured = formats(|c| {
            c.format = RecordFormat::Raw;
            c.raw_service = "edge".into();
            c.raw_service_from_key = true;
        });
        assert_eq!(
            decode(&configured, "t", Some(b"api-1"))
                .unwrap()
                .service
                .as_str(),
            "api-1"
        );
        // A key that is no service name (or none) falls back to raw_service.
        for key in [Some(&b"not a service"[..]), Some(&b"\xff"[..]), None] {
            assert_eq!(
                decode(&configured, "t", key).unwrap().service.as_str(),
                "edge"
            );
        }
        let err = configured
            .decode(
                &record("t", None, b"\xc3\x28", None),
                &Limits::DEFAULT,
                now(),
            )
            .unwrap_err();
        assert_eq!(err.code, "invalid_utf8");
    }

    /// The one event of a one-event format.
    fn single(decoded: Result<Events, Refusal>) -> Result<LogEvent, Refusal> {
        decoded.map(|events| {
            assert_eq!(events.len(), 1, "one event per record");
            events.into_iter().next().unwrap()
        })
    }

    #[test]
    fn json_records_take_kafka_time_and_the_raw_service_fallback() {
        let f = formats(|c| {
            c.formats.insert("app-json".into(), RecordFormat::Json);
            c.raw_service_from_key = true;
        });
        let value = br#"{"msg":"hello","log.level":"warning","logger":"x"}"#;
        let event = single(f.decode(
            &record("app-json", Some(b"api-2"), value, Some(KAFKA_MS)),
            &Limits::DEFAULT,
            now(),
        ))
        .unwrap();
        assert_eq!(event.timestamp.timestamp_millis(), KAFKA_MS);
        assert_eq!(event.service.as_str(), "api-2");
        assert_eq!(event.level, logpipe_model::Level::Warn);
        assert_eq!(event.attributes.unwrap().get(), r#"{"logger":"x"}"#);
        let event = single(f.decode(
            &record("app-json", None, value, None),
            &Limits::DEFAULT,
            now(),
        ))
        .unwrap();
        assert_eq!(event.service.as_str(), "app-json");
        assert_eq!(event.timestamp, now());
        let err = f
            .decode(
                &record("app-json", None, br#"{"text":"m"}"#, None),
                &Limits::DEFAULT,
                now(),
            )
            .unwrap_err();
        assert_eq!(err.code, "missing_field");
    }

    fn by_topic_raw() -> Formats {
        formats(|c| c.format = RecordFormat::Raw)
    }
}
