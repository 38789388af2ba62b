//! The event rules from the outside: a table with at least one input for every `Rejection`
//! variant, then the accepting rules (defaults, normalisation, null as absent) and the limits at
//! their exact boundaries.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use logpipe_model::{split_json_array, Level, Limits, LogEvent, RawValue, Rejection};

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn parse_with(json: &str, limits: &Limits) -> Result<LogEvent, Rejection> {
    LogEvent::parse(json.as_bytes(), limits, received_at())
}

fn parse(json: &str) -> Result<LogEvent, Rejection> {
    parse_with(json, &Limits::DEFAULT)
}

/// A valid event with `extra` spliced in as further members (`extra` starts with a comma).
fn event_with(extra: &str) -> String {
    format!(r#"{{"service":"checkout-api","message":"hello"{extra}}}"#)
}

/// What a table row feeds to the model.
enum Input {
    Parse(&'static [u8]),
    ParseOwned(String),
    Decode(&'static [u8]),
    Array(&'static [u8]),
}

const SMALL: Limits = Limits {
    max_message_bytes: 4,
    max_attributes: 1,
    max_attributes_bytes: 10,
};

#[test]
fn every_rejection_variant_has_an_input_that_produces_it() {
    let long_field = format!("{{\"{}\":1}}", "k".repeat(100));
    let rows: Vec<(Input, Limits, Rejection)> = vec![
        (
            Input::Parse(b"{\"service\":\"s\",\"message\":\"caf\xe9\"}"),
            Limits::DEFAULT,
            Rejection::InvalidUtf8,
        ),
        (
            // A multi-byte sequence cut short inside a key.
            Input::Parse(b"{\"servic\xc3\":\"s\"}"),
            Limits::DEFAULT,
            Rejection::InvalidUtf8,
        ),
        (
            Input::Decode(b"\xff"),
            Limits::DEFAULT,
            Rejection::InvalidUtf8,
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m""#),
            Limits::DEFAULT,
            Rejection::InvalidJson {
                detail: "EOF while parsing an object at line 1 column 28".into(),
            },
        ),
        (
            Input::Parse(br#"{"service":"s","service":"t","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidJson {
                detail: "duplicate field `service`".into(),
            },
        ),
        (
            Input::Parse(br#"[{"service":"s","message":"m"}]"#),
            Limits::DEFAULT,
            Rejection::NotAnObject,
        ),
        (
            Input::Parse(b"null"),
            Limits::DEFAULT,
            Rejection::NotAnObject,
        ),
        (
            Input::Array(br#"{"service":"s","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::NotAnArray,
        ),
        (
            Input::ParseOwned(event_with(r#","user_id":42"#)),
            Limits::DEFAULT,
            Rejection::UnknownField {
                field: "user_id".into(),
            },
        ),
        (
            Input::ParseOwned(long_field),
            Limits::DEFAULT,
            Rejection::UnknownField {
                field: format!("{}…", "k".repeat(64)),
            },
        ),
        (
            Input::Parse(br#"{"message":"m"}"#),
            Limits::DEFAULT,
            Rejection::MissingField { field: "service" },
        ),
        (
            Input::Parse(br#"{"service":"s","message":null}"#),
            Limits::DEFAULT,
            Rejection::MissingField { field: "message" },
        ),
        (
            Input::Decode(br#"{"service":"s","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::MissingField { field: "timestamp" },
        ),
        (
            Input::Parse(br#"{"service":["s"],"message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidType {
                field: "service",
                expected: "string",
            },
        ),
        (
            Input::Parse(br#"{"timestamp":1764072000,"service":"s","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidType {
                field: "timestamp",
                expected: "string",
            },
        ),
        (
            // No offset: RFC 3339 requires one, or the instant is unknown. (The reason is
            // chrono's wording.)
            Input::Parse(br#"{"timestamp":"2026-11-25T12:00:00","service":"s","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidTimestamp {
                value: "2026-11-25T12:00:00".into(),
                reason: "premature end of input".into(),
            },
        ),
        (
            Input::Parse(
                br#"{"timestamp":"0000-01-01T00:30:00+01:00","service":"s","message":"m"}"#,
            ),
            Limits::DEFAULT,
            Rejection::InvalidTimestamp {
                value: "0000-01-01T00:30:00+01:00".into(),
                reason: "is outside the years 0000 to 9999 once converted to UTC".into(),
            },
        ),
        (
            Input::Parse(br#"{"level":"verbose","service":"s","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidLevel {
                value: "verbose".into(),
            },
        ),
        (
            Input::Parse(br#"{"service":"checkout api","message":"m"}"#),
            Limits::DEFAULT,
            Rejection::InvalidService {
                value: "checkout api".into(),
                reason: "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
            },
        ),
        (
            Input::Parse(br#"{"service":"s","message":" \n\t "}"#),
            Limits::DEFAULT,
            Rejection::EmptyMessage,
        ),
        (
            Input::Parse(br#"{"service":"s","message":""}"#),
            Limits::DEFAULT,
            Rejection::EmptyMessage,
        ),
        (
            Input::Parse(br#"{"service":"s","message":"hello"}"#),
            SMALL,
            Rejection::MessageTooLarge { len: 5, max: 4 },
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","host":"web 1"}"#),
            Limits::DEFAULT,
            Rejection::InvalidHost {
                value: "web 1".into(),
                reason: "may contain only A-Z, a-z, 0-9, '.', '_', ':' and '-'",
            },
        ),
        (
            Input::Parse(
                br#"{"service":"s","message":"m","trace_id":"00000000000000000000000000000000"}"#,
            ),
            Limits::DEFAULT,
            Rejection::InvalidTraceId {
                value: "00000000000000000000000000000000".into(),
                reason: "must not be all zeros",
            },
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","span_id":"xyz"}"#),
            Limits::DEFAULT,
            Rejection::InvalidSpanId {
                value: "xyz".into(),
                reason: "must be exactly 16 hex digits",
            },
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","attributes":["a","b"]}"#),
            Limits::DEFAULT,
            Rejection::AttributesNotObject,
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","attributes":"{}"}"#),
            Limits::DEFAULT,
            Rejection::AttributesNotObject,
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","attributes":{"a":1,"b":2}}"#),
            SMALL,
            Rejection::TooManyAttributes { count: 2, max: 1 },
        ),
        (
            Input::Parse(br#"{"service":"s","message":"m","attributes":{"a":"12345"}}"#),
            SMALL,
            Rejection::AttributesTooLarge { len: 13, max: 10 },
        ),
    ];

    let mut codes_seen = BTreeSet::new();
    for (input, limits, expected) in rows {
        let got = match &input {
            Input::Parse(bytes) => LogEvent::parse(bytes, &limits, received_at()).map(drop),
            Input::ParseOwned(text) => parse_with(text, &limits).map(drop),
            Input::Decode(bytes) => LogEvent::decode(bytes, &limits).map(drop),
            Input::Array(bytes) => split_json_array(bytes).map(drop),
        };
        assert_eq!(got, Err(expected.clone()));
        assert!(Rejection::ALL_CODES.contains(&expected.code()));
        // Every rejection renders a message a client can act on.
        assert!(!expected.to_string().is_empty());
        codes_seen.insert(expected.code());
    }
    let all_codes: BTreeSet<_> = Rejection::ALL_CODES.into_iter().collect();
    assert_eq!(codes_seen, all_codes, "a variant has no row in the table");
}

#[test]
fn unknown_field_hint_points_to_attributes() {
    let err = parse(&event_with(r#","region":"eu""#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown field `region`; put custom data in `attributes`"
    );
    assert_eq!(err.field(), Some("region"));
}

#[test]
fn level_is_case_insensitive_and_defaults_to_info() {
    for (sent, level) in [
        ("error", Level::Error),
        ("ERROR", Level::Error),
        ("Warn", Level::Warn),
        ("warning", Level::Warn),
        ("tRaCe", Level::Trace),
        ("fatal", Level::Fatal),
    ] {
        let event = parse(&event_with(&format!(r#","level":"{sent}""#))).unwrap();
        assert_eq!(event.level, level, "{sent}");
    }
    assert_eq!(parse(&event_with("")).unwrap().level, Level::Info);
}

#[test]
fn missing_timestamp_defaults_to_received_at() {
    assert_eq!(parse(&event_with("")).unwrap().timestamp, received_at());
    assert_eq!(
        parse(&event_with(r#","timestamp":null"#))
            .unwrap()
            .timestamp,
        received_at()
    );
}

#[test]
fn timestamp_offsets_are_normalised_to_utc() {
    let expected =
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(500);
    for sent in [
        "2026-11-25T12:00:00.5Z",
        "2026-11-25T12:00:00.500z",
        "2026-11-25T13:00:00.5+01:00",
        "2026-11-25T06:30:00.5-05:30",
        "2026-11-26T00:00:00.5+12:00",
        "2026-11-25t12:00:00.500000+00:00",
        // RFC 3339 section 5.6 lets a space stand for the `T`; chrono accepts it.
        "2026-11-25 12:00:00.5Z",
    ] {
        let event = parse(&event_with(&format!(r#","timestamp":"{sent}""#))).unwrap();
        assert_eq!(event.timestamp, expected, "{sent}");
    }
}

#[test]
fn timestamps_without_offset_or_out_of_range_are_rejected() {
    for sent in [
        "2026-11-25T12:00:00",
        "2026-11-25",
        "2026-02-30T00:00:00Z",
        "2026-11-25T24:00:00Z",
        "9999-12-31T23:30:00-01:00",
        "",
    ] {
        let err = parse(&event_with(&format!(r#","timestamp":"{sent}""#))).unwrap_err();
        assert_eq!(err.code(), "invalid_timestamp", "{sent}");
    }
}

#[test]
fn trace_and_span_ids_are_lower_cased() {
    let event = parse(&event_with(
        r#","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00F067AA0BA902B7""#,
    ))
    .unwrap();
    assert_eq!(
        event.trace_id.unwrap().as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(event.span_id.unwrap().as_str(), "00f067aa0ba902b7");
}

#[test]
fn null_counts_as_absent_for_every_optional_field() {
    let event = parse(&event_with(
        r#","timestamp":null,"level":null,"host":null,"trace_id":null,"span_id":null,"attributes":null"#,
    ))
    .unwrap();
    assert_eq!(event, parse(&event_with("")).unwrap());
}

#[test]
fn empty_attributes_are_stored_as_absent() {
    let event = parse(&event_with(r#","attributes":{ }"#)).unwrap();
    assert!(event.attributes.is_none());
}

#[test]
fn service_length_boundary() {
    let at_limit = format!(r#"{{"service":"{}","message":"m"}}"#, "s".repeat(128));
    assert!(parse(&at_limit).is_ok());
    let over = format!(r#"{{"service":"{}","message":"m"}}"#, "s".repeat(129));
    assert_eq!(parse(&over).unwrap_err().code(), "invalid_service");
}

#[test]
fn host_length_boundary() {
    assert!(parse(&event_with(&format!(r#","host":"{}""#, "h".repeat(255)))).is_ok());
    let err = parse(&event_with(&format!(r#","host":"{}""#, "h".repeat(256)))).unwrap_err();
    assert_eq!(err.code(), "invalid_host");
}

#[test]
fn message_limit_is_in_bytes_and_inclusive() {
    let at_limit = format!(r#"{{"service":"s","message":"{}"}}"#, "é".repeat(16_384));
    assert!(parse(&at_limit).is_ok(), "32768 bytes is allowed");
    let over = format!(r#"{{"service":"s","message":"{}x"}}"#, "é".repeat(16_384));
    assert_eq!(
        parse(&over).unwrap_err(),
        Rejection::MessageTooLarge {
            len: 32_769,
            max: 32_768
        }
    );
    // The limit applies to the decoded text, not the escaped JSON: `\n` is one byte.
    let escaped = r#"{"service":"s","message":"a\nb\n"}"#;
    let limits = Limits {
        max_message_bytes: 4,
        ..Limits::DEFAULT
    };
    assert_eq!(parse_with(escaped, &limits).unwrap().message.len(), 4);
}

#[test]
fn attribute_count_boundary() {
    let attributes = |n: usize| {
        let members: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect();
        event_with(&format!(r#","attributes":{{{}}}"#, members.join(",")))
    };
    assert!(parse(&attributes(64)).is_ok());
    assert_eq!(
        parse(&attributes(65)).unwrap_err(),
        Rejection::TooManyAttributes { count: 65, max: 64 }
    );
}

#[test]
fn attribute_size_boundary_uses_the_compact_form() {
    // {"k":"…"} is 8 bytes plus the value's length.
    let attributes = |value_len: usize, padding: &str| {
        event_with(&format!(
            r#","attributes":{{{padding}"k"{padding}:{padding}"{}"{padding}}}"#,
            "v".repeat(value_len)
        ))
    };
    assert!(parse(&attributes(8192 - 8, "")).is_ok());
    assert!(
        parse(&attributes(8192 - 8, "   ")).is_ok(),
        "whitespace is not counted"
    );
    assert_eq!(
        parse(&attributes(8192 - 7, "")).unwrap_err(),
        Rejection::AttributesTooLarge {
            len: 8193,
            max: 8192
        }
    );
    let stored = parse(&attributes(1, " ")).unwrap().attributes.unwrap();
    assert_eq!(RawValue::get(&stored), r#"{"k":"v"}"#);
}

#[test]
fn custom_limits_change_the_verdict() {
    let json = event_with(r#","attributes":{"a":1,"b":2}"#);
    assert!(parse(&json).is_ok());
    let err = parse_with(
        &json,
        &Limits {
            max_attributes: 1,
            ..Limits::DEFAULT
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "too_many_attributes");
    let roomy = Limits {
        max_message_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    let big = format!(r#"{{"service":"s","message":"{}"}}"#, "m".repeat(100_000));
    assert!(parse(&big).is_err());
    assert!(parse_with(&big, &roomy).is_ok());
}

#[test]
fn whitespace_around_the_event_is_allowed() {
    assert!(parse(&format!(" \r\n\t{}\n ", event_with(""))).is_ok());
}
