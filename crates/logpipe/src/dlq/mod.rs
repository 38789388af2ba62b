//! The dead-letter topic: what a DLQ record carries (this module), and the operator tools that
//! read and replay it (gathered in [`tools`]).
//!
//! A DLQ record keeps the original record's key and value bytes unchanged (so a replay republishes
//! exactly what the producer wrote) and says where it came from and why it failed in headers, all
//! UTF-8 text so `kcat -f '%h'` shows them readably:
//!
//! | header | value |
//! |---|---|
//! | `logpipe-dlq-original-topic` | topic the record was read from |
//! | `logpipe-dlq-original-partition` | its partition (decimal) |
//! | `logpipe-dlq-original-offset` | its offset (decimal) |
//! | `logpipe-dlq-original-timestamp` | its Kafka timestamp, ms since the epoch (absent if it had none) |
//! | `logpipe-dlq-consumer-group` | the consumer group that gave up on it |
//! | `logpipe-dlq-instance-id` | the group member (host-pid-index) |
//! | `logpipe-dlq-error-class` | `poison` (undecodable or invalid: never retried) or `exhausted` (failed every attempt) |
//! | `logpipe-dlq-error-type` | a stable code: `invalid_json`, `invalid_utf8`, `store_rejected`, `step:<name>`, ... |
//! | `logpipe-dlq-error-message` | the error, readable |
//! | `logpipe-dlq-attempts` | attempts made (1 for poison) |
//! | `logpipe-dlq-first-failure` / `logpipe-dlq-last-failure` | RFC 3339 times (UTC, ms) |
//! | `logpipe-dlq-version` | the logpipe version that wrote it |
//! | `logpipe-replay-count` | times `logpipe dlq replay` has republished it (absent = 0) |
//!
//! The original record's own logpipe headers (`logpipe-ingest-ms`, `logpipe-request-id`) are
//! copied too.

mod filter;
mod print;
mod record;
mod replay;
mod run;
mod scan;
mod show;
mod stats;
#[cfg(test)]
mod test_support;
pub mod tools;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Header names of DLQ records.
pub mod headers {
    pub const ORIGINAL_TOPIC: &str = "logpipe-dlq-original-topic";
    pub const ORIGINAL_PARTITION: &str = "logpipe-dlq-original-partition";
    pub const ORIGINAL_OFFSET: &str = "logpipe-dlq-original-offset";
    pub const ORIGINAL_TIMESTAMP: &str = "logpipe-dlq-original-timestamp";
    pub const CONSUMER_GROUP: &str = "logpipe-dlq-consumer-group";
    pub const INSTANCE_ID: &str = "logpipe-dlq-instance-id";
    pub const ERROR_CLASS: &str = "logpipe-dlq-error-class";
    pub const ERROR_TYPE: &str = "logpipe-dlq-error-type";
    pub const ERROR_MESSAGE: &str = "logpipe-dlq-error-message";
    pub const ATTEMPTS: &str = "logpipe-dlq-attempts";
    pub const FIRST_FAILURE: &str = "logpipe-dlq-first-failure";
    pub const LAST_FAILURE: &str = "logpipe-dlq-last-failure";
    pub const VERSION: &str = "logpipe-dlq-version";
    /// Set by `logpipe dlq replay` on the republished record, and carried into the DLQ again if
    /// the replayed record fails again.
    pub const REPLAY_COUNT: &str = "logpipe-replay-count";
    /// On a record in the parking topic that the dead-letter topic refused for good (too large,
    /// not authorized, ...): why, as `code: broker message`.
    pub const REFUSED_BY_DLQ: &str = "logpipe-dlq-refused";
    /// With [`REFUSED_BY_DLQ`]: the value's length before it was cut to fit.
    pub const ORIGINAL_VALUE_BYTES: &str = "logpipe-dlq-original-value-bytes";
}

/// Why a record is in the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The record can never be processed (undecodable, invalid): sent at once, no retry.
    Poison,
    /// Processing failed on every attempt of the retry schedule.
    Exhausted,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Poison => "poison",
            ErrorClass::Exhausted => "exhausted",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorClass> {
        match text {
            "poison" => Some(ErrorClass::Poison),
            "exhausted" => Some(ErrorClass::Exhausted),
            _ => None,
        }
    }
}

/// Everything a DLQ record says about its original and its failure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DlqContext {
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub original_timestamp_ms: Option<i64>,
    pub consumer_group: String,
    pub instance_id: String,
    pub class: ErrorClass,
    pub error_type: String,
    pub error_message: String,
    pub attempts: u32,
    pub first_failure: DateTime<Utc>,
    pub last_failure: DateTime<Utc>,
    pub version: String,
    pub replay_count: u32,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl DlqContext {
    /// The headers of the DLQ record, followed by `carried` (original headers kept as they were).
    pub fn to_headers(&self, carried: &[(&str, &[u8])]) -> OwnedHeaders {
        use headers::*;
        let mut fields: Vec<(&str, String)> = vec![
            (ORIGINAL_TOPIC, self.original_topic.clone()),
            (ORIGINAL_PARTITION, self.original_partition.to_string()),
            (ORIGINAL_OFFSET, self.original_offset.to_string()),
        ];
        if let Some(ts) = self.original_timestamp_ms {
            fields.push((ORIGINAL_TIMESTAMP, ts.to_string()));
        }
        fields.extend([
            (CONSUMER_GROUP, self.consumer_group.clone()),
            (INSTANCE_ID, self.instance_id.clone()),
            (ERROR_CLASS, self.class.as_str().to_string()),
            (ERROR_TYPE, self.error_type.clone()),
            (ERROR_MESSAGE, self.error_message.clone()),
            (ATTEMPTS, self.attempts.to_string()),
            (FIRST_FAILURE, rfc3339(self.first_failure)),
            (LAST_FAILURE, rfc3339(self.last_failure)),
            (VERSION, self.version.clone()),
        ]);
        if self.replay_count > 0 {
            fields.push((REPLAY_COUNT, self.replay_count.to_string()));
        }
        let mut out = OwnedHeaders::new_with_capacity(fields.len() + carried.len());
        for (key, value) in &fields {
            out = out.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        for (key, value) in carried {
            out = out.insert(Header {
                key,
                value: Some(*value),
            });
        }
        out
    }

    /// Reads the context back from a DLQ record's headers. Errors name the missing or bad header.
    pub fn from_headers<H: Headers>(h: &H) -> Result<DlqContext, String> {
        use headers::*;
        let text = |name: &str| -> Option<String> {
            h.iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let required = |name: &str| text(name).ok_or_else(|| format!("header `{name}` missing"));
        let number = |name: &str| -> Result<i64, String> {
            required(name)?
                .parse::<i64>()
                .map_err(|e| format!("header `{name}`: {e}"))
        };
        let time = |name: &str| -> Result<DateTime<Utc>, String> {
            DateTime::parse_from_rfc3339(&required(name)?)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("header `{name}`: {e}"))
        };
        let class = required(ERROR_CLASS)?;
        Ok(DlqContext {
            original_topic: required(ORIGINAL_TOPIC)?,
            original_partition: number(ORIGINAL_PARTITION)? as i32,
            original_offset: number(ORIGINAL_OFFSET)?,
            original_timestamp_ms: text(ORIGINAL_TIMESTAMP).and_then(|t| t.parse().ok()),
            consumer_group: text(CONSUMER_GROUP).unwrap_or_default(),
            instance_id: text(INSTANCE_ID).unwrap_or_default(),
            class: ErrorClass::parse(&class)
                .ok_or_else(|| format!("header `{ERROR_CLASS}`: unknown class `{class}`"))?,
            error_type: required(ERROR_TYPE)?,
            error_message: text(ERROR_MESSAGE).unwrap_or_default(),
            attempts: number(ATTEMPTS)?.max(0) as u32,
            first_failure: time(FIRST_FAILURE)?,
            last_failure: time(LAST_FAILURE)?,
            version: text(VERSION).unwrap_or_default(),
            replay_count: replay_count(h),
        })
    }
}

/// The replay count a record carries (0 when it has never been replayed).
pub fn replay_count<H: Headers>(h: &H) -> u32 {
    parse_replay_count(
        h.iter()
            .find(|header| header.key == headers::REPLAY_COUNT)
            .and_then(|header| header.value),
    )
}

/// The value of a `logpipe-replay-count` header (0 when absent or unreadable).
pub fn parse_replay_count(value: Option<&[u8]>) -> u32 {
    value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> DlqContext {
        let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        DlqContext {
            original_topic: "application-logs".into(),
            original_partition: 7,
            original_offset: 123_456,
            original_timestamp_ms: Some(1_764_064_800_000),
            consumer_group: "log-processor-group".into(),
            instance_id: "host-1-0".into(),
            class: ErrorClass::Exhausted,
            error_type: "store_rejected".into(),
            error_message: "new row violates check constraint".into(),
            attempts: 4,
            first_failure: t,
            last_failure: t + chrono::Duration::seconds(7),
            version: "0.1.0".into(),
            replay_count: 2,
        }
    }

    #[test]
    fn headers_round_trip_and_keep_carried_headers() {
        let c = context();
        let hs = c.to_headers(&[("logpipe-request-id", b"req-1")]);
        assert_eq!(DlqContext::from_headers(&hs).unwrap(), c);
        let carried = hs.iter().find(|h| h.key == "logpipe-request-id").unwrap();
        assert_eq!(carried.value, Some(&b"req-1"[..]));
        let first = hs.iter().find(|h| h.key == headers::FIRST_FAILURE).unwrap();
        assert_eq!(first.value, Some(&b"2026-11-25T10:00:00.250Z"[..]));
    }

    #[test]
    fn a_missing_header_is_named() {
        let hs = OwnedHeaders::new().insert(Header {
            key: headers::ORIGINAL_TOPIC,
            value: Some(&b"t"[..]),
        });
        let err = DlqContext::from_headers(&hs).unwrap_err();
        assert!(err.contains(headers::ERROR_CLASS), "{err}");
    }

    #[test]
    fn replay_count_defaults_to_zero() {
        assert_eq!(replay_count(&OwnedHeaders::new()), 0);
        let c = DlqContext {
            replay_count: 0,
            ..context()
        };
        let hs = c.to_headers(&[]);
        assert!(hs.iter().all(|h| h.key != headers::REPLAY_COUNT));
    }
}
