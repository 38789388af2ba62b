//! A DLQ record as the tools read it: the Kafka message with its headers parsed into a
//! [`DlqContext`], or the reason it could not be; and its JSON shape for `show --json`.

use std::collections::BTreeMap;

use base64::Engine as _;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde::Serialize;
use serde_json::{json, Value};

use super::DlqContext;

/// A DLQ record whose headers parse.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub dlq_timestamp_ms: Option<i64>,
    pub context: DlqContext,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Every header of the DLQ record, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A DLQ record whose headers do not parse (not written by logpipe, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub reason: String,
}

impl DlqRecord {
    /// Reads a DLQ record; the error names what is wrong with it.
    pub fn parse(message: &OwnedMessage) -> Result<DlqRecord, Unreadable> {
        let unreadable = |reason: String| Unreadable {
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            reason,
        };
        let Some(hs) = message.headers() else {
            return Err(unreadable("no headers".into()));
        };
        let context = DlqContext::from_headers(hs).map_err(unreadable)?;
        Ok(DlqRecord {
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            dlq_timestamp_ms: message.timestamp().to_millis(),
            context,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: hs
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        })
    }

    /// Everything, as `show --json` prints it (see the [`Serialize`] impl).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// `show --json`: DLQ coordinates, every context field, key and value (`key`/`value` as text when
/// UTF-8, else `key_base64`/`value_base64`; `null` when absent), then every header likewise.
impl Serialize for DlqRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            dlq_partition: i32,
            dlq_offset: i64,
            dlq_timestamp_ms: Option<i64>,
            #[serde(flatten)]
            context: &'a DlqContext,
            #[serde(flatten)]
            data: BTreeMap<String, Value>,
            headers: Vec<BTreeMap<String, Value>>,
        }
        let mut data = BTreeMap::new();
        put_bytes(&mut data, "key", self.key.as_deref());
        put_bytes(&mut data, "value", self.value.as_deref());
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let mut h = BTreeMap::new();
                h.insert("name".to_string(), json!(name));
                put_bytes(&mut h, "value", value.as_deref());
                h
            })
            .collect();
        Shape {
            dlq_partition: self.dlq_partition,
            dlq_offset: self.dlq_offset,
            dlq_timestamp_ms: self.dlq_timestamp_ms,
            context: &self.context,
            data,
            headers,
        }
        .serialize(serializer)
    }
}

/// `name: "text"` when the bytes are UTF-8, else `name_base64: "..."`; `name: null` when absent.
fn put_bytes(out: &mut BTreeMap<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            out.insert(name.into(), Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.insert(name.into(), json!(text));
            }
            Err(_) => {
                out.insert(format!("{name}_base64"), json!(base64_text(bytes)));
            }
        },
    }
}

/// Standard base64 with padding (RFC 4648).
fn base64_text(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::test_support::context;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_text(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_text(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn parse_reads_the_context_and_names_what_makes_a_record_unreadable() {
        use rdkafka::message::{Header, OwnedHeaders, Timestamp};
        let message = |headers| {
            OwnedMessage::new(
                Some(b"v".to_vec()),
                None,
                "dlq".into(),
                Timestamp::CreateTime(1),
                2,
                9,
                headers,
            )
        };
        let good = DlqRecord::parse(&message(Some(context().to_headers(&[])))).unwrap();
        assert_eq!(
            (good.dlq_partition, good.dlq_offset, good.dlq_timestamp_ms),
            (2, 9, Some(1))
        );
        assert_eq!(good.context, context());
        assert_eq!((good.key, good.value), (None, Some(b"v".to_vec())));
        assert!(good
            .headers
            .iter()
            .any(|(k, _)| k == "logpipe-dlq-error-type"));

        let bare = DlqRecord::parse(&message(None)).unwrap_err();
        assert_eq!(
            bare,
            Unreadable {
                dlq_partition: 2,
                dlq_offset: 9,
                reason: "no headers".into(),
            }
        );
        let foreign = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some(&b"t"[..]),
        });
        let bad = DlqRecord::parse(&message(Some(foreign))).unwrap_err();
        assert!(bad.reason.contains("missing"), "{}", bad.reason);
    }

    #[test]
    fn json_shows_utf8_as_text_and_binary_as_base64() {
        let r = DlqRecord {
            dlq_partition: 0,
            dlq_offset: 5,
            dlq_timestamp_ms: Some(1),
            context: context(),
            key: Some(b"svc".to_vec()),
            value: Some(vec![0xff, 0x01]),
            headers: vec![("h".into(), None)],
        };
        let v = r.to_json();
        assert_eq!(v["key"], "svc");
        assert_eq!(v["value_base64"], "/wE=");
        assert!(v.get("value").is_none());
        assert_eq!(v["class"], "exhausted");
        assert_eq!(v["original_topic"], "application-logs");
        assert_eq!(v["headers"][0]["value"], Value::Null);
    }
}
