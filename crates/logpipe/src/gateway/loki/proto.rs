//! Loki's protobuf push body: a snappy block (raw format, not framed) holding a
//! `logproto.PushRequest`. The messages are declared here rather than taken from a crate: the one
//! published (`loki-api`) lacks structured metadata and pins an older prost. Field numbers are
//! those of Loki's `pkg/push/push.proto` (and `google/protobuf/timestamp.proto`), which have been
//! stable since the format appeared; structured metadata is field 3 of `EntryAdapter`.

use prost::Message;

use super::push::{Entry, Stream};

#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// The stream's labels as a LogQL selector, `{job="a"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// `string` in push.proto; read as bytes so one line of invalid UTF-8 is refused on its own
    /// instead of failing the decoding of the whole push.
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Unsnaps and decodes a push body. The decompressed length is read from the block's header and
/// checked against `limit` before anything is allocated, so a small body cannot claim gigabytes.
pub fn decode(body: &[u8], limit: usize) -> Result<Vec<Stream>, String> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        format!("the body is not a snappy block ({e}); Loki's protobuf push is snappy-compressed")
    })?;
    if len > limit {
        return Err(format!(
            "the decompressed push is {len} bytes, more than the limit of {limit}; send smaller batches"
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("the snappy block is damaged: {e}"))?;
    let request = PushRequest::decode(raw.as_slice())
        .map_err(|e| format!("the body is not a logproto.PushRequest: {e}"))?;
    Ok(request
        .streams
        .into_iter()
        .map(|stream| Stream {
            labels: super::labels::parse(&stream.labels),
            entries: stream.entries.into_iter().map(entry).collect(),
        })
        .collect())
}

fn entry(e: EntryAdapter) -> Entry {
    let ts = e.timestamp.unwrap_or_default();
    Entry {
        // A negative `nanos` is not a valid Timestamp; it is clamped rather than trusted.
        seconds: ts.seconds,
        nanos: ts.nanos.clamp(0, 999_999_999) as u32,
        line: String::from_utf8(e.line).map_err(|_| ()),
        metadata: e
            .structured_metadata
            .into_iter()
            .map(|pair| (pair.name, pair.value))
            .collect(),
    }
}

/// Encodes streams the way Promtail does (for tests and tools).
pub fn encode(request: &PushRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any input below 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_promtail_shaped_push() {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="varlogs", service_name="api"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 5,
                        }),
                        line: b"hello".to_vec(),
                        structured_metadata: vec![LabelPairAdapter {
                            name: "trace_id".into(),
                            value: "abc".into(),
                        }],
                    },
                    EntryAdapter {
                        timestamp: None,
                        line: vec![0xff, 0xfe],
                        structured_metadata: vec![],
                    },
                ],
                hash: 0,
            }],
        };
        let streams = decode(&encode(&request), 1 << 20).unwrap();
        assert_eq!(streams.len(), 1);
        let labels = streams[0].labels.as_ref().unwrap();
        assert_eq!(labels[1], ("service_name".into(), "api".into()));
        let first = &streams[0].entries[0];
        assert_eq!((first.seconds, first.nanos), (1_700_000_000, 5));
        assert_eq!(first.line.as_deref(), Ok("hello"));
        assert_eq!(first.metadata, vec![("trace_id".into(), "abc".into())]);
        assert!(streams[0].entries[1].line.is_err());
    }

    #[test]
    fn refuses_bombs_and_garbage() {
        let big = encode(&PushRequest {
            streams: vec![StreamAdapter {
                labels: "x".repeat(10_000),
                ..Default::default()
            }],
        });
        let err = decode(&big, 1000).unwrap_err();
        assert!(err.contains("more than the limit"), "{err}");
        assert!(decode(b"\xff\xff\xff\xff\xff\xff", 1000).is_err());
        let not_proto = snap::raw::Encoder::new().compress_vec(b"\xff\xff").unwrap();
        let err = decode(&not_proto, 1000).unwrap_err();
        assert!(err.contains("logproto.PushRequest"), "{err}");
    }
}
