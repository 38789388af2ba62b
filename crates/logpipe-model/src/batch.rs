//! Splits a batch body (a JSON array, or NDJSON) into one slice per event, without parsing events,
//! so the gateway can accept the good events of a batch and report the bad ones individually.
//!
//! Only problems that make the body as a whole unreadable fail here: invalid UTF-8 or broken JSON
//! in an array body (after a syntax error there is no telling where the next element starts).
//! In NDJSON each line stands alone, so nothing fails at this level.
//!
//! The `_at_most` splitters count elements while they scan and stop at the first one past the
//! caller's maximum, so a small body of tiny elements (`[1,1,1,...]`, millions of them) costs at
//! most `max` slices of memory and never a vector per element of the whole body.

use std::cell::Cell;
use std::fmt;

use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::rejection::Rejection;
use crate::wire::{classify_non_container, first_non_whitespace};

/// Why a batch body could not be split within a maximum number of events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SplitError {
    /// The body as a whole is unreadable (see [`split_json_array`]).
    #[error(transparent)]
    Invalid(#[from] Rejection),
    /// The body holds more than `max` events; scanning stopped at the first one past it, so the
    /// total is not known.
    #[error("the batch holds more than {max} events")]
    TooMany { max: usize },
}

/// Splits a JSON-array body into its elements, each as raw JSON text, so one bad element does
/// not fail the others. Pass each to [`LogEvent::parse_str`](crate::LogEvent::parse_str).
///
/// Fails as a whole with `InvalidUtf8` (anywhere in the body), `InvalidJson` (syntax, or data
/// after the closing `]`) or `NotAnArray` (valid JSON of another kind). An empty array gives an
/// empty `Vec`; whether that is an error is the caller's policy. The number of elements is not
/// limited here: callers facing untrusted input use [`split_json_array_at_most`].
pub fn split_json_array(body: &[u8]) -> Result<Vec<&RawValue>, Rejection> {
    split_json_array_at_most(body, usize::MAX).map_err(|err| match err {
        SplitError::Invalid(reason) => reason,
        SplitError::TooMany { .. } => unreachable!("no body holds more than usize::MAX elements"),
    })
}

/// [`split_json_array`] that fails with [`SplitError::TooMany`] as soon as it meets element
/// `max + 1`, before scanning the rest of the body, so the returned `Vec` never grows past `max`.
///
/// A body with too many elements is `TooMany` even if it is broken further on: the scan stops
/// before reaching the break. Invalid UTF-8 is still found anywhere (the check allocates nothing).
pub fn split_json_array_at_most(body: &[u8], max: usize) -> Result<Vec<&RawValue>, SplitError> {
    let text = std::str::from_utf8(body).map_err(|_| Rejection::InvalidUtf8)?;
    if first_non_whitespace(text) != Some(b'[') {
        return Err(classify_non_container(text, Rejection::NotAnArray).into());
    }
    // Elements are only scanned, not parsed into values, and borrow from `body`. The visitor can
    // only stop the scan by failing, so it says through `too_many` that the failure is its own.
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let scanned = de.deserialize_seq(AtMost {
        max,
        too_many: &too_many,
    });
    if too_many.get() {
        return Err(SplitError::TooMany { max });
    }
    let elements = scanned.map_err(|err| Rejection::invalid_json(&err))?;
    de.end().map_err(|err| Rejection::invalid_json(&err))?;
    Ok(elements)
}

/// Collects the elements of a JSON array, failing on element `max + 1`.
struct AtMost<'f> {
    max: usize,
    too_many: &'f Cell<bool>,
}

impl<'de> Visitor<'de> for AtMost<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if elements.len() == self.max {
                self.too_many.set(true);
                return Err(A::Error::custom(format_args!(
                    "more than {} elements",
                    self.max
                )));
            }
            elements.push(element);
        }
        Ok(elements)
    }
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

/// The [`ndjson_lines`] of a body, collected, failing with [`SplitError::TooMany`] at the first
/// event line past `max` without scanning the rest of the body.
pub fn ndjson_lines_at_most(body: &[u8], max: usize) -> Result<Vec<(usize, &[u8])>, SplitError> {
    let mut lines = Vec::new();
    for line in ndjson_lines(body) {
        if lines.len() == max {
            return Err(SplitError::TooMany { max });
        }
        lines.push(line);
    }
    Ok(lines)
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

    /// The element count, or the error, of [`split_json_array_at_most`].
    fn at_most(body: &[u8], max: usize) -> Result<usize, SplitError> {
        split_json_array_at_most(body, max).map(|elements| elements.len())
    }

    #[test]
    fn at_most_takes_exactly_max_and_refuses_one_more() {
        let three = b"[1, {\"a\":[2]}, \"3\"]";
        assert_eq!(at_most(three, 3), Ok(3));
        assert_eq!(at_most(three, 2), Err(SplitError::TooMany { max: 2 }));
        assert_eq!(at_most(b"[]", 0), Ok(0));
        assert_eq!(at_most(b"[1]", 0), Err(SplitError::TooMany { max: 0 }));

        // Blank lines are not events, so they do not count.
        let lines = b"{}\n\n{}\r\n  \n{}\n";
        assert_eq!(ndjson_lines_at_most(lines, 3).map(|l| l.len()), Ok(3));
        assert_eq!(
            ndjson_lines_at_most(lines, 2),
            Err(SplitError::TooMany { max: 2 })
        );
    }

    #[test]
    fn at_most_stops_scanning_at_the_first_element_past_max() {
        // Five million tiny elements: refused on element 10,001, and the broken tail after
        // them is never reached, which shows the scan (and the vector) stopped there.
        let mut body = String::from("[");
        body.push_str(&"1,".repeat(5_000_000));
        body.push_str("this is not JSON");
        assert_eq!(
            at_most(body.as_bytes(), 10_000),
            Err(SplitError::TooMany { max: 10_000 })
        );
        let mut lines = "{}\n".repeat(5_000_000).into_bytes();
        lines.extend_from_slice(b"\xff not JSON either");
        assert_eq!(
            ndjson_lines_at_most(&lines, 10_000),
            Err(SplitError::TooMany { max: 10_000 })
        );
    }

    #[test]
    fn at_most_keeps_the_whole_body_errors_within_the_limit() {
        for broken in ["[", "[1,]", "[1] [2]", "[1,,2]"] {
            match at_most(broken.as_bytes(), 10) {
                Err(SplitError::Invalid(reason)) => {
                    assert_eq!(reason.code(), "invalid_json", "{broken:?}")
                }
                other => panic!("{broken:?}: {other:?}"),
            }
        }
        assert_eq!(
            at_most(b"{\"a\":1}", 10),
            Err(SplitError::Invalid(Rejection::NotAnArray))
        );
        // UTF-8 is checked over the whole body, also past the element limit.
        assert_eq!(
            at_most(b"[1, 2, 3, \"\xff\"]", 1),
            Err(SplitError::Invalid(Rejection::InvalidUtf8))
        );
        // The errors are the same as the unbounded splitter's.
        for body in ["[1,]", "[1] [2]", "42", "[1 2]"] {
            assert_eq!(
                at_most(body.as_bytes(), 10).map_err(|e| e.to_string()),
                split_json_array(body.as_bytes())
                    .map(|e| e.len())
                    .map_err(|e| e.to_string()),
                "{body:?}"
            );
        }
    }
}
