//! A log event after the consumer has read it from Kafka and enriched it: the row the log store
//! writes and the unit the aggregates count. Built by [`enrich`](crate::enrich) (pure
//! functions); the stores only read it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::fnv::Fnv1a64;
use crate::LogEvent;

/// Hash of a message with its variable parts (numbers, ids, addresses, quoted strings) masked,
/// so that "timeout after 31 ms" and "timeout after 7 ms" group together. Shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The value as stored in a signed 64-bit column (PostgreSQL `bigint`, SQLite `INTEGER`).
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }

    pub fn from_i64(value: i64) -> Self {
        Fingerprint(value as u64)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Fingerprint)
    }
}

/// Fingerprint of a template within a service: FNV-1a 64 over the service name's bytes, one
/// `0xFF` byte, then the template's bytes.
///
/// FNV-1a ([`fnv1a_64`](crate::fnv1a_64)) because the value is stored and compared across
/// processes, platforms and releases, so it needs a fixed, published algorithm. It is fast
/// enough: about 70 ns for a typical template, a quarter of what masking the message costs (xxh3
/// would be faster, for a dependency). `0xFF` never occurs in UTF-8, so `("ab", "c")` and
/// `("a", "bc")` cannot be confused. Pinned by golden tests: changing the algorithm regroups every
/// stored log.
pub fn fingerprint(service: &str, template: &str) -> Fingerprint {
    let mut hasher = Fnv1a64::new();
    hasher.write(service.as_bytes());
    hasher.write(&[0xFF]);
    hasher.write(template.as_bytes());
    Fingerprint(hasher.finish())
}

/// Where an event lives in Kafka: its record's topic, partition and offset, and its position
/// within that record. Unique per event, so it is the key that makes replays idempotent in the
/// stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaCoordinates {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The event's position within its record: 0 for a record holding one event (logpipe's own
    /// format, `raw`), 0.. for a record holding many (an OTLP export request).
    pub index: u32,
}

/// An event with everything enrichment added.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichedLog {
    pub event: LogEvent,
    pub coordinates: KafkaCoordinates,
    /// The Kafka record timestamp (producer create time), when the record has one.
    pub kafka_timestamp: Option<DateTime<Utc>>,
    /// OpenTelemetry severity number of `event.level` (INFO = 9, ERROR = 17).
    pub severity_number: u8,
    /// Groups similar messages; see [`Fingerprint`].
    pub fingerprint: Fingerprint,
    /// The message with its variable parts masked (`timeout after <num> ms`): what the top-errors
    /// list shows for a fingerprint.
    pub template: String,
    /// When the gateway received the event (from the `logpipe-ingest-ms` header).
    pub ingested_at: Option<DateTime<Utc>>,
    /// When the consumer processed it.
    pub processed_at: DateTime<Utc>,
    /// The ingest request id (from the `logpipe-request-id` header).
    pub request_id: Option<String>,
    /// Static tags from configuration (environment, region, ...), shared by every record.
    pub tags: Arc<BTreeMap<String, String>>,
}

impl EnrichedLog {
    /// End-to-end latency so far: ingest → processing, in milliseconds (when the ingest time is
    /// known and not in the future).
    pub fn latency_ms(&self) -> Option<f64> {
        let ingested = self.ingested_at?;
        let micros = (self.processed_at - ingested).num_microseconds()?;
        (micros >= 0).then(|| micros as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_fnv1a_over_service_separator_template() {
        // FNV-1a 64 of the empty input is its offset basis; of "a" a published test vector.
        let fnv = crate::fnv1a_64;
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint("svc", "x <num>").0, fnv(b"svc\xffx <num>"));
    }

    #[test]
    fn fingerprint_golden_values() {
        // Fixed forever: these values are stored. Computed independently (Python FNV-1a 64).
        for (service, template, expected) in [
            ("", "", 0xaf64_724c_8602_eb6e_u64),
            (
                "checkout-api",
                "payment failed for order <num>",
                0x2742_d186_0151_07bf,
            ),
            (
                "checkout-api",
                "timeout after <num>ms",
                0x1d73_23d9_01f7_0510,
            ),
            (
                "checkout-api",
                "Timeout after <num>ms",
                0xbdde_e8a6_58ff_9370,
            ),
            ("svc", "température <num>°C", 0x806d_953e_70c0_f528),
            ("billing", "disk full", 0xe638_7611_ef0f_2835),
            ("billing", "disk ok", 0xc747_c681_f411_97f2),
        ] {
            assert_eq!(
                fingerprint(service, template),
                Fingerprint(expected),
                "{service:?} {template:?}: {}",
                fingerprint(service, template)
            );
        }
    }

    #[test]
    fn fingerprint_separates_service_from_template() {
        assert_ne!(fingerprint("ab", "c"), fingerprint("a", "bc"));
        assert_ne!(
            fingerprint("svc-a", "disk full"),
            fingerprint("svc-b", "disk full")
        );
    }
}
