//! The keyset-pagination cursor: the sort key of the last row of a page, (event timestamp, Kafka
//! topic, partition, offset, index within the record), handed to clients as opaque text and
//! shared by both backends.
//!
//! Format: base64url (no padding) of the compact JSON array `[2, micros, topic, partition,
//! offset, index]`, where `2` is the format version and `micros` the timestamp in microseconds
//! since the Unix epoch (the precision both backends store, so the cursor compares exactly). JSON
//! rather than a packed binary form: it costs a few bytes and stays debuggable with `base64 -d`.
//!
//! Version 1, `[1, micros, topic, partition, offset]`, was written before records could hold
//! several events; it still decodes, as index 0. That is exact: every row stored before then
//! has index 0, so a client paging across an upgrade neither repeats nor skips a row.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::types::StoredLog;

const VERSION: u8 = 2;
/// The format without the index, still accepted.
const VERSION_1: u8 = 1;

/// Longest cursor text accepted: a Kafka topic name is at most 249 characters, so a real cursor
/// stays well under this. Checked before decoding so a huge parameter costs nothing.
const MAX_ENCODED_LEN: usize = 1024;

/// The position after which the next page starts (rows strictly "older" in the page order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub timestamp: DateTime<Utc>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub index: u32,
}

/// The JSON shape: a tuple serialises as an array.
type Wire = (u8, i64, String, i32, i64, u32);

/// What [`Cursor::decode`] accepts: a tuple only matches an array of its exact length.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AnyWire {
    Current(Wire),
    Version1((u8, i64, String, i32, i64)),
}

impl Cursor {
    /// The cursor pointing just past `log`.
    pub fn after(log: &StoredLog) -> Cursor {
        Cursor {
            timestamp: log.timestamp,
            topic: log.kafka.topic.clone(),
            partition: log.kafka.partition,
            offset: log.kafka.offset,
            index: log.kafka.index,
        }
    }

    /// Microseconds since the Unix epoch, the unit both backends compare in.
    pub fn timestamp_micros(&self) -> i64 {
        self.timestamp.timestamp_micros()
    }

    pub fn encode(&self) -> String {
        let wire: Wire = (
            VERSION,
            self.timestamp_micros(),
            self.topic.clone(),
            self.partition,
            self.offset,
            self.index,
        );
        // Serialising a tuple of numbers and a string cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a cursor from [`encode`](Cursor::encode). Anything else is
    /// [`StoreError::InvalidQuery`].
    pub fn decode(text: &str) -> Result<Cursor, StoreError> {
        let invalid = |why: &str| {
            StoreError::InvalidQuery(format!(
                "invalid cursor ({why}): pass back `next_cursor` from the previous page unchanged"
            ))
        };
        if text.len() > MAX_ENCODED_LEN {
            return Err(invalid("too long"));
        }
        let json = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid("not base64url"))?;
        let wire: AnyWire = serde_json::from_slice(&json).map_err(|_| invalid("malformed"))?;
        // The version must agree with the shape: a 6-element array is version 2 only.
        let (micros, topic, partition, offset, index) = match wire {
            AnyWire::Current((VERSION, micros, topic, partition, offset, index)) => {
                (micros, topic, partition, offset, index)
            }
            AnyWire::Version1((VERSION_1, micros, topic, partition, offset)) => {
                (micros, topic, partition, offset, 0)
            }
            _ => return Err(invalid("unknown version")),
        };
        let timestamp = DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| invalid("timestamp out of range"))?;
        Ok(Cursor {
            timestamp,
            topic,
            partition,
            offset,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> Cursor {
        Cursor {
            timestamp: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456),
            topic: "application-logs".into(),
            partition: 11,
            offset: 9_876_543_210,
            index: 4_000_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let cursor = sample();
        let text = cursor.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        // Old and far-future timestamps survive too.
        for timestamp in [
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        ] {
            let cursor = Cursor {
                timestamp,
                ..sample()
            };
            assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        }
    }

    #[test]
    fn the_format_is_a_versioned_json_array() {
        let text = sample().encode();
        let json = URL_SAFE_NO_PAD.decode(text).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"[2,1772368200123456,"application-logs",11,9876543210,4000000000]"#
        );
    }

    #[test]
    fn version_1_cursors_decode_as_index_0() {
        // As encoded before the index existed.
        let text =
            URL_SAFE_NO_PAD.encode(br#"[1,1772368200123456,"application-logs",11,9876543210]"#);
        assert_eq!(
            Cursor::decode(&text).unwrap(),
            Cursor {
                index: 0,
                ..sample()
            }
        );
    }

    #[test]
    fn invalid_cursors_are_invalid_queries() {
        let wrong_version = URL_SAFE_NO_PAD.encode(br#"[3,0,"t",0,0,0]"#);
        let version_1_with_index = URL_SAFE_NO_PAD.encode(br#"[1,0,"t",0,0,0]"#);
        let version_2_without_index = URL_SAFE_NO_PAD.encode(br#"[2,0,"t",0,0]"#);
        let negative_index = URL_SAFE_NO_PAD.encode(br#"[2,0,"t",0,0,-1]"#);
        let wrong_shape = URL_SAFE_NO_PAD.encode(br#"{"ts":0}"#);
        let out_of_range = URL_SAFE_NO_PAD.encode(br#"[1,9223372036854775807,"t",0,0]"#);
        let too_long = "A".repeat(MAX_ENCODED_LEN + 1);
        for text in [
            "",
            "not a cursor!",
            "%%%",
            wrong_version.as_str(),
            version_1_with_index.as_str(),
            version_2_without_index.as_str(),
            negative_index.as_str(),
            wrong_shape.as_str(),
            out_of_range.as_str(),
            too_long.as_str(),
        ] {
            assert!(
                matches!(Cursor::decode(text), Err(StoreError::InvalidQuery(_))),
                "{text:?}"
            );
        }
    }
}
