//! OTLP `AnyValue`s as JSON text, and the flat `attributes` object of one event built within
//! the [`Limits`], counting what does not fit instead of refusing the record.
//!
//! JSON is written straight into byte buffers (no `serde_json::Value` tree): a batch of 500
//! records with a dozen attributes each would otherwise allocate a map per record.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use logpipe_model::Limits;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// Deepest nesting an attribute value may have (the attributes object is level 1). Well within
/// the model's own limit, so a value that passes here never makes the model refuse the record;
/// a deeper value is dropped and counted.
pub(super) const MAX_VALUE_DEPTH: usize = 32;

/// One member of the attributes object: its key, and `"key":value` as compact JSON.
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub key: String,
    pub json: Vec<u8>,
}

impl Member {
    /// `key` = `value`, or `None` when the value nests deeper than [`MAX_VALUE_DEPTH`].
    pub fn new(key: String, value: Option<&AnyValue>) -> Option<Member> {
        let mut json = Vec::with_capacity(key.len() + 16);
        write_str(&mut json, &key);
        json.push(b':');
        write_value(&mut json, value, 2).then_some(Member { key, json })
    }

    /// The members of a list of key-values, keys prefixed by `prefix`; `dropped` counts the ones
    /// nested too deep.
    pub fn all(prefix: &str, attributes: &[KeyValue], dropped: &mut u64) -> Vec<Member> {
        attributes
            .iter()
            .filter_map(|kv| {
                let member = Member::new(format!("{prefix}{}", kv.key), kv.value.as_ref());
                *dropped += u64::from(member.is_none());
                member
            })
            .collect()
    }
}

/// `value` as compact JSON text, however deep (a body is text, not attributes).
pub(super) fn to_json_text(value: &AnyValue) -> String {
    let mut out = Vec::new();
    write_value(&mut out, Some(value), usize::MIN);
    // Only serde_json output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value`; `false` when it nests past [`MAX_VALUE_DEPTH`] (a `depth` of 0 means no limit).
fn write_value(out: &mut Vec<u8>, value: Option<&AnyValue>, depth: usize) -> bool {
    let too_deep = depth != 0 && depth > MAX_VALUE_DEPTH;
    let next = if depth == 0 { 0 } else { depth + 1 };
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => out.extend_from_slice(b"null"),
        Some(Value::StringValue(s)) => write_str(out, s),
        Some(Value::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::IntValue(i)) => out.extend_from_slice(i.to_string().as_bytes()),
        // JSON has no NaN or infinities; OTLP/JSON spells them as these strings.
        Some(Value::DoubleValue(d)) if d.is_nan() => write_str(out, "NaN"),
        Some(Value::DoubleValue(d)) if d.is_infinite() => {
            write_str(out, if *d > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Some(Value::DoubleValue(d)) => {
            let _ = serde_json::to_writer(&mut *out, d);
        }
        // Bytes as base64, as OTLP/JSON writes them.
        Some(Value::BytesValue(bytes)) => write_str(out, &STANDARD.encode(bytes)),
        Some(Value::ArrayValue(array)) => {
            if too_deep {
                return false;
            }
            out.push(b'[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_value(out, Some(item), next) {
                    return false;
                }
            }
            out.push(b']');
        }
        Some(Value::KvlistValue(list)) => {
            if too_deep {
                return false;
            }
            out.push(b'{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, &kv.key);
                out.push(b':');
                if !write_value(out, kv.value.as_ref(), next) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// The attributes object of one event, filled in priority order: a member whose key is already
/// there, or that would take the object past `max_attributes` members or
/// `max_attributes_bytes` bytes, is dropped and counted.
pub(super) struct Attributes<'a> {
    limits: &'a Limits,
    text: Vec<u8>,
    keys: HashSet<&'a str>,
    pub dropped: u64,
}

impl<'a> Attributes<'a> {
    pub fn new(limits: &'a Limits) -> Self {
        let mut text = Vec::with_capacity(256);
        text.push(b'{');
        Self {
            limits,
            text,
            keys: HashSet::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, member: &'a Member) {
        let comma = usize::from(!self.keys.is_empty());
        // The object once closed: what is there, a comma, the member and `}`.
        let closed_len = self.text.len() + comma + member.json.len() + 1;
        let fits = self.keys.len() < self.limits.max_attributes
            && closed_len <= self.limits.max_attributes_bytes;
        if !fits || !self.keys.insert(&member.key) {
            self.dropped += 1;
            return;
        }
        if comma == 1 {
            self.text.push(b',');
        }
        self.text.extend_from_slice(&member.json);
    }

    pub fn extend(&mut self, members: &'a [Member]) {
        for member in members {
            self.push(member);
        }
    }

    /// The object as JSON text, `None` when empty.
    pub fn finish(mut self) -> Option<String> {
        if self.keys.is_empty() {
            return None;
        }
        self.text.push(b'}');
        String::from_utf8(self.text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(any(value)),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_value_becomes_json() {
        let list = any(Value::KvlistValue(KeyValueList {
            values: vec![
                kv("s", Value::StringValue("a\"b".into())),
                kv("b", Value::BoolValue(true)),
                kv("i", Value::IntValue(-9_007_199_254_740_993)),
                kv("d", Value::DoubleValue(1.5)),
                kv("nan", Value::DoubleValue(f64::NAN)),
                kv("inf", Value::DoubleValue(f64::NEG_INFINITY)),
                kv("bytes", Value::BytesValue(vec![0, 255])),
                kv(
                    "arr",
                    Value::ArrayValue(ArrayValue {
                        values: vec![any(Value::IntValue(1)), AnyValue { value: None }],
                    }),
                ),
            ],
        }));
        assert_eq!(
            to_json_text(&list),
            r#"{"s":"a\"b","b":true,"i":-9007199254740993,"d":1.5,"nan":"NaN","inf":"-Infinity","bytes":"AP8=","arr":[1,null]}"#
        );
    }

    fn nested(depth: usize) -> AnyValue {
        (0..depth).fold(any(Value::IntValue(1)), |inner, _| {
            any(Value::ArrayValue(ArrayValue {
                values: vec![inner],
            }))
        })
    }

    #[test]
    fn attribute_values_nested_too_deep_are_dropped_but_a_body_is_not() {
        assert!(Member::new("ok".into(), Some(&nested(MAX_VALUE_DEPTH - 1))).is_some());
        assert!(Member::new("deep".into(), Some(&nested(MAX_VALUE_DEPTH))).is_none());
        assert!(to_json_text(&nested(200)).starts_with("[[[["));
    }

    #[test]
    fn attributes_keep_what_fits_in_priority_order_and_count_the_rest() {
        let limits = Limits {
            max_attributes: 3,
            max_attributes_bytes: 40,
            ..Limits::DEFAULT
        };
        let member = |k: &str, v: &str| {
            Member::new(k.into(), Some(&any(Value::StringValue(v.into())))).unwrap()
        };
        let members = [
            member("a", "1"),
            member("a", "again"),           // repeated key: the first wins
            member("big", &"x".repeat(40)), // past the byte limit
            member("b", "2"),
            member("c", "3"),
            member("d", "4"), // past the member limit
        ];
        let mut attributes = Attributes::new(&limits);
        attributes.extend(&members);
        assert_eq!(attributes.dropped, 3);
        let text = attributes.finish().unwrap();
        assert_eq!(text, r#"{"a":"1","b":"2","c":"3"}"#);
        assert!(text.len() <= limits.max_attributes_bytes);
        assert_eq!(Attributes::new(&limits).finish(), None);
    }

    #[test]
    fn the_byte_limit_counts_the_closing_brace_and_commas() {
        let limits = Limits {
            max_attributes_bytes: 17,
            ..Limits::DEFAULT
        };
        let members = [
            Member::new("a".into(), Some(&any(Value::IntValue(1)))).unwrap(),
            Member::new("b".into(), Some(&any(Value::IntValue(22222)))).unwrap(),
            Member::new("c".into(), Some(&any(Value::IntValue(3)))).unwrap(),
        ];
        let mut attributes = Attributes::new(&limits);
        attributes.extend(&members);
        // {"a":1,"b":22222} is exactly 17 bytes; "c" does not fit.
        assert_eq!(attributes.finish().as_deref(), Some(r#"{"a":1,"b":22222}"#));
    }
}
