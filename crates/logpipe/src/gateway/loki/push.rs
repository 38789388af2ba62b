//! A Loki push as both body formats decode it ([`Stream`], [`Entry`]), and the JSON format's
//! decoder: `{"streams":[{"stream":{labels},"values":[["<ns>","<line>",{metadata}?]]}]}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One stream of a push: its labels (or why they could not be read) and its entries.
#[derive(Debug)]
pub struct Stream {
    pub labels: Result<Vec<(String, String)>, String>,
    pub entries: Vec<Entry>,
}

/// One log line with its Unix time.
#[derive(Debug)]
pub struct Entry {
    pub seconds: i64,
    pub nanos: u32,
    /// `Err` when the line is not UTF-8 (protobuf only: JSON text always is).
    pub line: Result<String, ()>,
    /// Structured metadata: per-entry labels that are not part of the stream.
    pub metadata: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

/// Decodes a JSON push; any malformed part refuses the whole push, naming where it is.
pub fn decode_json(body: &[u8]) -> Result<Vec<Stream>, String> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not a Loki JSON push ({e}); expected {{\"streams\":[{{\"stream\":{{...}},\"values\":[[\"<unix ns>\",\"<line>\"]]}}]}}")
    })?;
    push.streams
        .into_iter()
        .enumerate()
        .map(|(s, stream)| {
            let entries = stream
                .values
                .into_iter()
                .enumerate()
                .map(|(v, value)| {
                    json_entry(value).map_err(|e| format!("streams[{s}].values[{v}]: {e}"))
                })
                .collect::<Result<_, _>>()?;
            Ok(Stream {
                labels: Ok(stream.stream.into_iter().collect()),
                entries,
            })
        })
        .collect()
}

fn json_entry(value: Vec<Value>) -> Result<Entry, String> {
    if !(2..=3).contains(&value.len()) {
        return Err(format!(
            "an entry is [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {{metadata}}], got {} elements",
            value.len()
        ));
    }
    let mut value = value.into_iter();
    let nanos: i64 = match value.next() {
        Some(Value::String(text)) => text.trim().parse().map_err(|_| {
            format!("the timestamp {text:?} is not Unix nanoseconds as a decimal string")
        })?,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("the timestamp {n} is not whole Unix nanoseconds"))?,
        _ => return Err("the timestamp must be a string of Unix nanoseconds".into()),
    };
    let line = match value.next() {
        Some(Value::String(line)) => line,
        _ => return Err("the line must be a string".into()),
    };
    let metadata = match value.next() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(format!(
                    "structured metadata `{k}` must be a string, got {other}"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("structured metadata must be an object of strings".into()),
    };
    Ok(Entry {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as u32,
        line: Ok(line),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_shape() {
        let streams = decode_json(
            br#"{"streams":[{"stream":{"job":"a","service_name":"api"},"values":[
                ["1700000000123456789","one"],
                [1700000000000000001,"two",{"trace_id":"t1"}]]}]}"#,
        )
        .unwrap();
        let s = &streams[0];
        assert_eq!(s.labels.as_ref().unwrap()[0], ("job".into(), "a".into()));
        assert_eq!(
            (s.entries[0].seconds, s.entries[0].nanos),
            (1_700_000_000, 123_456_789)
        );
        assert_eq!(s.entries[1].nanos, 1);
        assert_eq!(
            s.entries[1].metadata,
            vec![("trace_id".into(), "t1".into())]
        );
    }

    #[test]
    fn names_the_malformed_entry() {
        let err = decode_json(br#"{"streams":[{"stream":{},"values":[["1","ok"],["x","bad"]]}]}"#)
            .unwrap_err();
        assert!(err.starts_with("streams[0].values[1]"), "{err}");
        assert!(decode_json(br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#).is_err());
        assert!(decode_json(br#"{"streams":[{"values":[["1"]]}]}"#).is_err());
        assert!(decode_json(br#"{"streams":[{"values":[["1","l",{"k":2}]]}]}"#).is_err());
        assert!(decode_json(b"[]").is_err());
    }
}
