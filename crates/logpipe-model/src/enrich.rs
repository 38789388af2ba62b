//! Enrichment: from a decoded event and what the consumer knows about its Kafka record to the
//! [`EnrichedLog`] the stores take.
//!
//! Pure: the clock is an argument, and headers that are missing or malformed become `None`
//! rather than errors. A record is never refused for its headers; they were written by logpipe's
//! producer, and losing a latency measurement is better than dead-lettering a valid log.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::enriched::{fingerprint, EnrichedLog, KafkaCoordinates};
use crate::template::message_template;
use crate::LogEvent;

/// Longest request id kept, in bytes; the gateway never issues a longer one.
pub const REQUEST_ID_MAX_BYTES: usize = 128;

/// Ingest times before this (2000-01-01T00:00:00Z, in ms) are a broken clock or header, not a
/// log from the past.
const EARLIEST_INGEST_MS: i64 = 946_684_800_000;

/// How far in the future an ingest time may be before it is a broken clock rather than skew
/// between the gateway's and the consumer's hosts.
const MAX_INGEST_AHEAD: Duration = Duration::days(1);

/// What the consumer knows about a record besides its value. Borrowed from the Kafka message, so
/// building one costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta<'a> {
    /// The topic, shared: every record of a partition carries the same `Arc`.
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The event's position within the record (0 for a record holding one event).
    pub index: u32,
    /// The record timestamp in ms since the epoch, if the record has one.
    pub kafka_timestamp_ms: Option<i64>,
    /// Raw value of the `logpipe-ingest-ms` header: ASCII decimal ms since the epoch.
    pub ingest_header: Option<&'a [u8]>,
    /// Raw value of the `logpipe-request-id` header.
    pub request_id_header: Option<&'a [u8]>,
}

/// Enriches a decoded event: severity number, template and fingerprint, Kafka coordinates and
/// timestamp, ingest and processing times, request id and static tags.
///
/// `now` becomes `processed_at` and bounds what ingest time is believable. Header values that
/// cannot be trusted are dropped (`None`), never an error:
/// - `kafka_timestamp`: `None` when absent, negative (Kafka's "no timestamp" is -1) or out of
///   `DateTime`'s range;
/// - `ingested_at`: `None` unless the header is 1 to 18 ASCII digits for a time from 2000 up to
///   one day after `now` (clocks of different hosts may disagree a little, never by a day);
/// - `request_id`: `None` unless the header is 1 to [`REQUEST_ID_MAX_BYTES`] bytes of UTF-8
///   without control characters (it is written to log lines and database rows).
pub fn enrich(
    event: LogEvent,
    meta: &RecordMeta<'_>,
    tags: &Arc<BTreeMap<String, String>>,
    now: DateTime<Utc>,
) -> EnrichedLog {
    let template = message_template(event.message.as_str());
    EnrichedLog {
        coordinates: KafkaCoordinates {
            topic: Arc::clone(meta.topic),
            partition: meta.partition,
            offset: meta.offset,
            index: meta.index,
        },
        kafka_timestamp: meta.kafka_timestamp_ms.and_then(kafka_timestamp),
        severity_number: event.level.severity_number(),
        fingerprint: fingerprint(event.service.as_str(), &template),
        template,
        ingested_at: meta.ingest_header.and_then(|raw| ingest_time(raw, now)),
        processed_at: now,
        request_id: meta.request_id_header.and_then(request_id),
        tags: Arc::clone(tags),
        event,
    }
}

fn kafka_timestamp(ms: i64) -> Option<DateTime<Utc>> {
    if ms < 0 {
        return None;
    }
    DateTime::from_timestamp_millis(ms)
}

fn ingest_time(raw: &[u8], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // 18 digits always fit an i64; `str::parse` would also take a sign and is not needed.
    if raw.is_empty() || raw.len() > 18 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = raw
        .iter()
        .fold(0i64, |ms, digit| ms * 10 + i64::from(digit - b'0'));
    if ms < EARLIEST_INGEST_MS {
        return None;
    }
    DateTime::from_timestamp_millis(ms).filter(|at| *at <= now + MAX_INGEST_AHEAD)
}

fn request_id(raw: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(raw).ok()?;
    let sane = (1..=REQUEST_ID_MAX_BYTES).contains(&id.len()) && !id.chars().any(char::is_control);
    sane.then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fingerprint, Level, Limits};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn event() -> LogEvent {
        LogEvent::parse(
            br#"{"timestamp":"2026-11-25T11:59:59Z","level":"error","service":"checkout-api","message":"payment failed for order 1234 after 31ms"}"#,
            &Limits::DEFAULT,
            now(),
        )
        .unwrap()
    }

    fn tags() -> Arc<BTreeMap<String, String>> {
        Arc::new(BTreeMap::from([("env".to_owned(), "prod".to_owned())]))
    }

    /// Enriches `event()` with the given headers and record timestamp.
    fn enrich_with(
        kafka_timestamp_ms: Option<i64>,
        ingest: Option<&[u8]>,
        request_id: Option<&[u8]>,
    ) -> EnrichedLog {
        let topic: Arc<str> = Arc::from("application-logs");
        let meta = RecordMeta {
            topic: &topic,
            partition: 7,
            offset: 42,
            index: 0,
            kafka_timestamp_ms,
            ingest_header: ingest,
            request_id_header: request_id,
        };
        enrich(event(), &meta, &tags(), now())
    }

    #[test]
    fn fills_every_field_from_valid_input() {
        let topic: Arc<str> = Arc::from("application-logs");
        let tags = tags();
        let ingest_ms = (now().timestamp_millis() - 1_500).to_string();
        let meta = RecordMeta {
            topic: &topic,
            partition: 7,
            offset: 42,
            index: 3,
            kafka_timestamp_ms: Some(now().timestamp_millis() - 1_000),
            ingest_header: Some(ingest_ms.as_bytes()),
            request_id_header: Some(b"019ab5c0-request"),
        };
        let log = enrich(event(), &meta, &tags, now());

        assert_eq!(log.event, event());
        assert_eq!(
            log.coordinates,
            KafkaCoordinates {
                topic: Arc::from("application-logs"),
                partition: 7,
                offset: 42,
                index: 3,
            }
        );
        assert!(
            Arc::ptr_eq(&log.coordinates.topic, &topic),
            "topic is shared"
        );
        assert_eq!(
            log.kafka_timestamp,
            Some(now() - Duration::milliseconds(1_000))
        );
        assert_eq!(log.severity_number, Level::Error.severity_number());
        assert_eq!(log.template, "payment failed for order <num> after <num>ms");
        assert_eq!(
            log.fingerprint,
            fingerprint(
                "checkout-api",
                "payment failed for order <num> after <num>ms"
            )
        );
        assert_eq!(log.fingerprint, Fingerprint(0x3127_d0f2_3c66_04df));
        assert_eq!(log.ingested_at, Some(now() - Duration::milliseconds(1_500)));
        assert_eq!(log.processed_at, now());
        assert_eq!(log.request_id.as_deref(), Some("019ab5c0-request"));
        assert!(Arc::ptr_eq(&log.tags, &tags), "tags are shared");
        assert_eq!(log.latency_ms(), Some(1_500.0));
    }

    #[test]
    fn missing_headers_and_timestamp_give_none() {
        let log = enrich_with(None, None, None);
        assert_eq!(log.kafka_timestamp, None);
        assert_eq!(log.ingested_at, None);
        assert_eq!(log.request_id, None);
        assert_eq!(log.latency_ms(), None);
        assert_eq!(log.processed_at, now());
    }

    #[test]
    fn kafka_timestamp_out_of_range_is_none() {
        for ms in [-1, i64::MIN, i64::MAX] {
            assert_eq!(
                enrich_with(Some(ms), None, None).kafka_timestamp,
                None,
                "{ms}"
            );
        }
        assert_eq!(
            enrich_with(Some(0), None, None).kafka_timestamp,
            Some(DateTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn invalid_ingest_headers_are_none() {
        let valid = now().timestamp_millis().to_string();
        assert_eq!(
            enrich_with(None, Some(valid.as_bytes()), None).ingested_at,
            Some(now())
        );
        let padded = format!(" {valid}");
        let signed = format!("+{valid}");
        let decimal = format!("{valid}.5");
        for raw in [
            &b""[..],
            b"abc",
            b"-1",
            padded.as_bytes(),
            signed.as_bytes(),
            decimal.as_bytes(),
            b"\xff\xfe",
            b"9999999999999999999999",
        ] {
            assert_eq!(
                enrich_with(None, Some(raw), None).ingested_at,
                None,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn absurd_ingest_times_are_none() {
        let ms = |at: DateTime<Utc>| at.timestamp_millis().to_string();
        let ingested = |raw: String| enrich_with(None, Some(raw.as_bytes()), None).ingested_at;
        let y2k = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(ingested(ms(y2k)), Some(y2k));
        assert_eq!(ingested(ms(y2k - Duration::milliseconds(1))), None);
        assert_eq!(ingested("0".to_owned()), None);
        let a_day_ahead = now() + Duration::days(1);
        assert_eq!(ingested(ms(a_day_ahead)), Some(a_day_ahead));
        assert_eq!(ingested(ms(a_day_ahead + Duration::milliseconds(1))), None);
        assert_eq!(ingested("999999999999999999".to_owned()), None);
    }

    #[test]
    fn future_ingest_time_within_skew_is_kept_but_has_no_latency() {
        let ahead = (now().timestamp_millis() + 2_000).to_string();
        let log = enrich_with(None, Some(ahead.as_bytes()), None);
        assert_eq!(log.ingested_at, Some(now() + Duration::milliseconds(2_000)));
        assert_eq!(log.latency_ms(), None);
    }

    #[test]
    fn latency_keeps_sub_millisecond_precision_of_now() {
        let ingest = now().timestamp_millis().to_string();
        let topic: Arc<str> = Arc::from("t");
        let meta = RecordMeta {
            topic: &topic,
            partition: 0,
            offset: 0,
            index: 0,
            kafka_timestamp_ms: None,
            ingest_header: Some(ingest.as_bytes()),
            request_id_header: None,
        };
        let later = now() + Duration::microseconds(2_250);
        assert_eq!(
            enrich(event(), &meta, &tags(), later).latency_ms(),
            Some(2.25)
        );
    }

    #[test]
    fn request_id_must_be_short_printable_utf8() {
        let id = |raw: &[u8]| enrich_with(None, None, Some(raw)).request_id;
        let longest = "r".repeat(REQUEST_ID_MAX_BYTES);
        assert_eq!(id(longest.as_bytes()), Some(longest.clone()));
        assert_eq!(id("id-é".as_bytes()), Some("id-é".to_owned()));
        let too_long = format!("{longest}r");
        for raw in [
            too_long.as_bytes(),
            b"",
            b"\xff\xfe",
            b"line\nbreak",
            b"nul\0",
        ] {
            assert_eq!(id(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
