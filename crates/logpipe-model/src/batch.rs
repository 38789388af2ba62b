//! Splits a batch body (a JSON array, or NDJSON) into one slice per event, without parsing events,
//! so the gateway can accept the good events of a batch and report the bad ones individually.
//!
//! Only problems that make the body as a whole unreadable fail here: invalid UTF-8 or broken JSON
//! in an array body (after a syntax error there is no telling where the next element starts).
//! In NDJSON each line stands alone, so nothing fails at this level.

use serde_json::value::RawValue;

use crate::rejection::Rejection;
use crate::wire::{classify_non_container, first_non_whitespace};

/// Splits a JSON-array body into its elements, each as raw JSON text, so one bad element does
/// not fail the others. Pass each to [`LogEvent::parse_str`](crate::LogEvent::parse_str).
///
/// Fails as a whole with `InvalidUtf8` (anywhere in the body), `InvalidJson` (syntax, or data
/// after the closing `]`) or `NotAnArray` (valid JSON of another kind). An empty array gives an
/// empty `Vec`; whether that is an error is the caller's policy. The number of elements is not
/// limited here: bound the body size before calling.
pub fn split_json_array(body: &[u8]) -> Result<Vec<&RawValue>, Rejection> {
    let text = std::str::from_utf8(body).map_err(|_| Rejection::InvalidUtf8)?;
    if first_non_whitespace(text) != Some(b'[') {
        return Err(classify_non_container(text, Rejection::NotAnArray));
    }
    // Elements are only scanned, not parsed into values, and borrow from `body`.
    serde_json::from_str(text).map_err(|err| Rejection::invalid_json(&err))
}

/// The events of an NDJSON body: `(line number, line)` pairs, numbered from 1 over all lines so
/// numbers match what the client sees in an editor.
///
/// Lines are split on `\n`, a trailing `\r` is dropped (so `\r\n` works), and lines holding only
/// JSON whitespace are skipped. Lines are not checked for UTF-8 here: `LogEvent::parse` does
/// that per line, so one bad line does not fail the others.
pub fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + '_ {
    body.split(|&byte| byte == b'\n')
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let blank = line.iter().all(|byte| matches!(byte, b' ' | b'\t' | b'\r'));
            (!blank).then_some((index + 1, line))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Result<Vec<&str>, Rejection> {
        split_json_array(body.as_bytes())
            .map(|elements| elements.into_iter().map(RawValue::get).collect())
    }

    #[test]
    fn array_elements_are_split_whatever_they_hold() {
        assert_eq!(
            texts(r#" [ {"a":1} , 2, "x", [3], null, {"b":{"c":[]}} ] "#),
            Ok(vec![
                r#"{"a":1}"#,
                "2",
                r#""x""#,
                "[3]",
                "null",
                r#"{"b":{"c":[]}}"#
            ])
        );
        assert_eq!(texts("[]"), Ok(vec![]));
    }

    #[test]
    fn non_array_bodies_are_rejected_as_a_whole() {
        assert_eq!(texts(r#"{"service":"s"}"#), Err(Rejection::NotAnArray));
        assert_eq!(texts("42"), Err(Rejection::NotAnArray));
        for broken in ["", "[", "[1,]", "[1] [2]", "{"] {
            assert_eq!(
                texts(broken).unwrap_err().code(),
                "invalid_json",
                "{broken:?}"
            );
        }
        assert_eq!(
            split_json_array(b"[{\"message\":\"\xff\"}]").unwrap_err(),
            Rejection::InvalidUtf8
        );
    }

    #[test]
    fn ndjson_skips_blank_lines_and_keeps_line_numbers() {
        let body = b"{\"a\":1}\r\n\r\n  \n{\"b\":2}\n\t\n{\"c\":3}";
        let lines: Vec<(usize, &[u8])> = ndjson_lines(body).collect();
        assert_eq!(
            lines,
            vec![
                (1, &b"{\"a\":1}"[..]),
                (4, &b"{\"b\":2}"[..]),
                (6, &b"{\"c\":3}"[..]),
            ]
        );
    }

    #[test]
    fn ndjson_edge_cases() {
        assert_eq!(ndjson_lines(b"").count(), 0);
        assert_eq!(ndjson_lines(b"\n\r\n \n").count(), 0);
        // A trailing newline does not create a phantom last line.
        assert_eq!(
            ndjson_lines(b"{}\n").collect::<Vec<_>>(),
            vec![(1, &b"{}"[..])]
        );
        // Invalid UTF-8 is passed through for the per-line parse to reject.
        assert_eq!(
            ndjson_lines(b"\xff\n{}").collect::<Vec<_>>(),
            vec![(1, &b"\xff"[..]), (2, &b"{}"[..])]
        );
    }
}
