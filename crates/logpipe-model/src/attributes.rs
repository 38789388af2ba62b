//! Checks an event's `attributes` object against the [`Limits`] and keeps it as compact raw JSON.
//!
//! Attributes stay as text (`Box<RawValue>`), not a `serde_json::Map`: nothing on the way to
//! Kafka looks inside them, and a map would cost an allocation per key and value for every event.
//! The parser has already checked the text is valid JSON, so one byte scan that tracks only
//! strings and nesting depth gives everything the limits need: the number of top-level keys and
//! the length once whitespace is removed.
//!
//! Keys inside attributes are not checked for duplicates: the values are the client's own data,
//! passed through as sent (apart from whitespace). Duplicates count towards `max_attributes`.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::limits::Limits;
use crate::rejection::{echo, Rejection};

/// Deepest nesting accepted inside `attributes` (the object itself is level 1).
///
/// The raw value is checked without building a tree, so serde_json's recursion limit (128) does
/// not apply on the way in; but every reader that parses stored attributes into a
/// `serde_json::Value` (the stores, hence the query API) does apply it. Deeper attributes would be
/// accepted, stored, and then break every query page that holds them, so they are refused here.
pub const MAX_ATTRIBUTES_DEPTH: usize = 64;

/// Validates `raw` as the attributes of one event.
///
/// Returns `None` for `{}`, so "no attributes" has one canonical form (the field is left out).
pub(crate) fn check(raw: &RawValue, limits: &Limits) -> Result<Option<Box<RawValue>>, Rejection> {
    let text = raw.get();
    // serde_json starts a raw value at its first byte, after any whitespace.
    if !text.starts_with('{') {
        return Err(Rejection::AttributesNotObject);
    }
    let scanned = scan(text);
    if scanned.max_depth > MAX_ATTRIBUTES_DEPTH {
        return Err(Rejection::InvalidJson {
            detail: format!(
                "`attributes` nest {} levels deep; the limit is {MAX_ATTRIBUTES_DEPTH}",
                scanned.max_depth
            ),
        });
    }
    if let Some(number) = scanned.unreadable_number {
        return Err(Rejection::InvalidJson {
            detail: format!(
                "`attributes` hold the number {}, beyond what a 64-bit float holds (it would \
                 round to infinity or to 0); send it as a string",
                echo(number)
            ),
        });
    }
    // The parser that produced `raw` skips over strings without decoding their escapes, so a
    // lone surrogate (`"\ud800"`) got this far; serde_json's `Value` and PostgreSQL's `jsonb`
    // both refuse one. Decoding is only needed when a surrogate escape is there at all.
    if has_surrogate_escape(text) {
        if let Err(err) = serde_json::from_str::<serde_json::Value>(text) {
            return Err(Rejection::InvalidJson {
                detail: format!("`attributes`: {err}"),
            });
        }
    }
    if scanned.members > limits.max_attributes {
        return Err(Rejection::TooManyAttributes {
            count: scanned.members,
            max: limits.max_attributes,
        });
    }
    if scanned.compact.len() > limits.max_attributes_bytes {
        return Err(Rejection::AttributesTooLarge {
            len: scanned.compact.len(),
            max: limits.max_attributes_bytes,
        });
    }
    if scanned.members == 0 {
        return Ok(None);
    }
    match scanned.compact {
        // Already compact: copy the text as is, no second parse.
        Cow::Borrowed(_) => Ok(Some(raw.to_owned())),
        // `from_string` parses the text again to check it. Removing whitespace outside strings
        // cannot break valid JSON, so the error arm is unreachable, but it stays a rejection
        // rather than a panic.
        Cow::Owned(compact) => RawValue::from_string(compact)
            .map(Some)
            .map_err(|err| Rejection::invalid_json(&err)),
    }
}

/// What one pass over an attributes object found.
#[derive(Debug, PartialEq, Eq)]
struct Scanned<'a> {
    /// Top-level members (key/value pairs).
    members: usize,
    /// The text without whitespace outside strings; borrowed when there was none to remove.
    compact: Cow<'a, str>,
    /// Deepest nesting of objects and arrays (the object itself is 1).
    max_depth: usize,
    /// The first number that is not a finite, non-zero-when-written-non-zero 64-bit float.
    ///
    /// Such numbers are valid JSON, but the readers of stored attributes cannot take them:
    /// serde_json refuses to build a `Value` from one past `f64::MAX` (so a query page holding
    /// it fails), and PostgreSQL's `jsonb` refuses exponents past about ±16383 (so the insert of
    /// the whole batch fails). A number that underflows to 0 is refused too, for the second.
    unreadable_number: Option<&'a str>,
}

/// Scans a JSON object that is already known to be valid.
///
/// Valid JSON makes this simple: outside strings, whitespace is always insignificant, and a comma
/// at depth 1 always separates two top-level members.
fn scan(text: &str) -> Scanned<'_> {
    let mut compact: Option<String> = None;
    let mut run_start = 0;
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    let mut top_level_commas = 0;
    let mut in_string = false;
    let mut escaped = false;
    let mut number_start: Option<usize> = None;
    let mut unreadable_number = None;
    for (i, byte) in text.bytes().enumerate() {
        if let Some(start) = number_start {
            if matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                continue;
            }
            number_start = None;
            if unreadable_number.is_none() && !readable_number(&text[start..i]) {
                unreadable_number = Some(&text[start..i]);
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                // Whitespace is ASCII, so `i` and `i + 1` are character boundaries.
                let out = compact.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[run_start..i]);
                run_start = i + 1;
            }
            b'"' => in_string = true,
            // Outside strings only a number starts with these (`true`, `false` hold an `e` but
            // start with a letter), and the object's closing `}` always ends it.
            b'-' | b'0'..=b'9' => number_start = Some(i),
            b'{' | b'[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => top_level_commas += 1,
            _ => {}
        }
    }
    let compact = match compact {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[run_start..]);
            Cow::Owned(out)
        }
    };
    // Compact `{}` is the only object of two bytes or fewer.
    let members = if compact.len() <= 2 {
        0
    } else {
        top_level_commas + 1
    };
    Scanned {
        members,
        compact,
        max_depth,
        unreadable_number,
    }
}

/// Whether a JSON number reads as a finite `f64` that is 0 only when every digit is 0, with a
/// written exponent of at most [`MAX_EXPONENT`] either way (PostgreSQL refuses `0e-99999` too).
/// Rust's float syntax is a superset of JSON's, so valid JSON numbers always parse.
fn readable_number(number: &str) -> bool {
    let mut parts = number.split(['e', 'E']);
    let mantissa = parts.next().unwrap_or(number);
    if let Some(exponent) = parts.next() {
        if !exponent
            .parse::<i64>()
            .is_ok_and(|exponent| exponent.abs() <= MAX_EXPONENT)
        {
            return false;
        }
    }
    let Ok(value) = number.parse::<f64>() else {
        return false;
    };
    if value != 0.0 {
        return value.is_finite();
    }
    mantissa
        .bytes()
        .all(|byte| !byte.is_ascii_digit() || byte == b'0')
}

/// Whether `text` may hold a `\uD800`..`\uDFFF` escape (a false positive, such as an escaped
/// backslash before `ud800`, only costs a decode).
fn has_surrogate_escape(text: &str) -> bool {
    text.as_bytes().windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

/// Largest written exponent accepted in a number in `attributes`: past every `f64` (about
/// ±308, ±324 for subnormals) and well inside PostgreSQL's numeric range (about ±16383).
const MAX_EXPONENT: i64 = 400;

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` on `text`, returning the stored text (`Box<RawValue>` has no `PartialEq`).
    fn checked(text: &str, limits: &Limits) -> Result<Option<String>, Rejection> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        check(&raw, limits).map(|stored| stored.map(|raw| raw.get().to_owned()))
    }

    #[test]
    fn counts_top_level_members_only() {
        for (text, members) in [
            ("{}", 0),
            ("{ }", 0),
            (r#"{"a":1}"#, 1),
            (r#"{"a":1,"b":[1,2,3],"c":{"x":1,"y":2}}"#, 3),
            (r#"{"a,b":"c,d","e":"\",{"}"#, 2),
            (r#"{"a":"\\","b":1}"#, 2),
        ] {
            assert_eq!(scan(text).members, members, "{text}");
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_refused() {
        for fine in [
            r#"{"emoji":"\ud83d\ude00","k\uD83D\uDE00":1,"s":"\\ud800"}"#,
            r#"{"plain":"\u00e9"}"#,
        ] {
            assert!(checked(fine, &Limits::DEFAULT).is_ok(), "{fine}");
        }
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"\udE00":1}"#,
            r#"{"a":["x\ud83d y"]}"#,
        ] {
            let err = checked(text, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.code(), "invalid_json", "{text}");
            assert!(err.to_string().contains("`attributes`"), "{err}");
        }
    }

    #[test]
    fn numbers_beyond_a_64_bit_float_are_refused() {
        for fine in [
            r#"{"a":0,"b":-0.0,"c":0e-400,"d":1.5e308,"e":-2e-300,"f":[1,true,false,null]}"#,
            r#"{"big":12345678901234567890123,"tiny":5e-324,"s":"1e99999"}"#,
        ] {
            assert_eq!(scan(fine).unreadable_number, None, "{fine}");
            assert!(checked(fine, &Limits::DEFAULT).is_ok(), "{fine}");
        }
        for (text, number) in [
            (r#"{"a":1e309}"#, "1e309"),
            (r#"{"a":[1,-1E+400]}"#, "-1E+400"),
            (r#"{"a": 1e-400 ,"b":1e999}"#, "1e-400"),
            (r#"{"a":0e-99999}"#, "0e-99999"),
            (r#"{"a":0.0E+401}"#, "0.0E+401"),
            (
                r#"{"a":{"b":2000000000211110E24442}}"#,
                "2000000000211110E24442",
            ),
        ] {
            assert_eq!(scan(text).unreadable_number, Some(number), "{text}");
            let err = checked(text, &Limits::DEFAULT).unwrap_err();
            assert_eq!(err.code(), "invalid_json", "{text}");
            assert!(err.to_string().contains(number), "{err}");
        }
    }

    /// PostgreSQL's `jsonb` keeps numbers exactly and writes them without an exponent, so every
    /// number accepted here comes back from the store as a long decimal, which the query API
    /// reads with serde_json: it must read as the same finite `f64` (the workspace enables
    /// serde_json's `float_roundtrip`, whose parsing is exact; the default one reads `f64::MAX`
    /// written out in full as infinity and refuses it).
    #[test]
    fn accepted_numbers_read_back_from_postgresql_s_expanded_form() {
        for (accepted, as_postgresql_writes) in [
            (
                "-1.7976931348623157e+308",
                format!("-17976931348623157{}", "0".repeat(292)),
            ),
            (
                "1.7976931348623157e308",
                format!("17976931348623157{}", "0".repeat(292)),
            ),
            (
                "2.2250738585072014e-308",
                format!("0.{}22250738585072014", "0".repeat(307)),
            ),
            ("5e-324", format!("0.{}5", "0".repeat(323))),
        ] {
            let text = format!(r#"{{"n":{accepted}}}"#);
            assert_eq!(scan(&text).unreadable_number, None, "{text}");
            let expected: f64 = accepted.parse().unwrap();
            let read: serde_json::Value =
                serde_json::from_str(&format!(r#"{{"n":{as_postgresql_writes}}}"#))
                    .unwrap_or_else(|e| panic!("{accepted} as PostgreSQL writes it: {e}"));
            assert_eq!(read["n"].as_f64(), Some(expected), "{accepted}");
        }
    }

    #[test]
    fn removes_whitespace_outside_strings_only() {
        let text = "{ \"a b\" : [ 1 ,\t2 ],\n\"c\":\"x \\\" y\" }";
        let scanned = scan(text);
        assert_eq!(scanned.compact, r#"{"a b":[1,2],"c":"x \" y"}"#);
        assert_eq!(scanned.members, 2);
        assert!(matches!(scan(r#"{"a":1}"#).compact, Cow::Borrowed(_)));
    }

    #[test]
    fn compact_text_means_the_same_json() {
        let text =
            "{\n  \"nested\": { \"list\": [ true, null, 1.5e3 ] },\n  \"s\": \" \\u0041 \"\n}";
        let scanned = scan(text);
        let before: serde_json::Value = serde_json::from_str(text).unwrap();
        let after: serde_json::Value = serde_json::from_str(&scanned.compact).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn check_applies_limits_to_the_compact_form() {
        let limits = Limits {
            max_attributes: 2,
            max_attributes_bytes: 13,
            ..Limits::DEFAULT
        };
        // 13 bytes compact, 19 as sent: accepted, stored compact.
        assert_eq!(
            checked(r#"{ "a": 1, "b": 2 }"#, &limits),
            Ok(Some(r#"{"a":1,"b":2}"#.to_owned()))
        );
        assert_eq!(
            checked(r#"{"a":1,"b":22}"#, &limits),
            Err(Rejection::AttributesTooLarge { len: 14, max: 13 })
        );
        assert_eq!(
            checked(r#"{"a":1,"b":2,"c":3}"#, &limits),
            Err(Rejection::TooManyAttributes { count: 3, max: 2 })
        );
    }

    #[test]
    fn check_refuses_attributes_nested_deeper_than_readers_can_parse() {
        let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let deepest = nested(MAX_ATTRIBUTES_DEPTH);
        assert_eq!(
            checked(&deepest, &Limits::DEFAULT),
            Ok(Some(deepest.clone()))
        );
        // What the stores do when they read attributes back.
        serde_json::from_str::<serde_json::Value>(&deepest).unwrap();
        let too_deep = format!("{{\"a\":[{}]}}", nested(MAX_ATTRIBUTES_DEPTH - 1));
        assert!(matches!(
            checked(&too_deep, &Limits::DEFAULT),
            Err(Rejection::InvalidJson { detail }) if detail.contains("65 levels")
        ));
    }

    #[test]
    fn check_rejects_non_objects_and_drops_empty_objects() {
        for text in ["[]", "1", "\"{}\"", "true"] {
            assert_eq!(
                checked(text, &Limits::DEFAULT),
                Err(Rejection::AttributesNotObject),
                "{text}"
            );
        }
        assert_eq!(checked("{ }", &Limits::DEFAULT), Ok(None));
    }
}
