//! The canonical record format: golden outputs, `parse` → `to_json` → `decode` round trips, and
//! a pseudo-random robustness test showing that parsing never panics on any input and that
//! everything it accepts round-trips.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::XorShift;
use logpipe_model::{ndjson_lines, split_json_array, Limits, LogEvent, Rejection};

const EXAMPLE: &str = r#"{"timestamp":"2026-11-25T12:00:00.123Z","level":"error","service":"checkout-api","message":"payment failed for order 1234","host":"web-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"user_id":42,"region":"eu"}}"#;

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn parse(json: &[u8]) -> Result<LogEvent, Rejection> {
    LogEvent::parse(json, &Limits::DEFAULT, received_at())
}

fn canonical(json: &str) -> String {
    String::from_utf8(parse(json.as_bytes()).unwrap().to_json()).unwrap()
}

#[test]
fn golden_full_event() {
    assert_eq!(
        canonical(EXAMPLE),
        r#"{"timestamp":"2026-11-25T12:00:00.123000Z","level":"ERROR","service":"checkout-api","message":"payment failed for order 1234","host":"web-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"user_id":42,"region":"eu"}}"#
    );
}

#[test]
fn golden_minimal_event_with_escapes_and_defaults() {
    // Key order in the input does not matter; the output order is fixed. Attributes keep the
    // client's key order and number spelling, only whitespace goes.
    let json = "{ \"message\" : \"line 1\\nline \\\"2\\\"\\u0001 caf\\u00e9\", \"service\":\"svc\",\n \"attributes\": { \"b\": 1.50, \"a\": [ 1, 2 ] } }";
    assert_eq!(
        canonical(json),
        r#"{"timestamp":"2026-11-25T12:00:00.000000Z","level":"INFO","service":"svc","message":"line 1\nline \"2\"\u0001 café","attributes":{"b":1.50,"a":[1,2]}}"#
    );
}

#[test]
fn canonical_output_is_what_serde_json_reads() {
    let value: serde_json::Value =
        serde_json::from_slice(&parse(EXAMPLE.as_bytes()).unwrap().to_json()).unwrap();
    assert_eq!(value["level"], "ERROR");
    assert_eq!(value["attributes"]["user_id"], 42);
    assert_eq!(value.as_object().unwrap().len(), 8);
}

#[test]
fn round_trip_gives_an_equal_event() {
    let cases = [
        EXAMPLE.to_owned(),
        r#"{"service":"s","message":"m"}"#.to_owned(),
        r#"{"timestamp":"2026-11-25T13:00:00.123456789+01:00","level":"Warning","service":"a.b_c-d","message":"\t tab \u2028 😀 \"q\" \\ /","host":"::1","attributes":{"nested":{"deep":[{"x":null}]},"s":"\u0000"}}"#.to_owned(),
        r#"{"timestamp":"2016-12-31T23:59:60.25Z","service":"leap","message":"a leap second"}"#.to_owned(),
        r#"{"timestamp":"0000-01-01T00:00:00Z","service":"s","message":"earliest"}"#.to_owned(),
        r#"{"timestamp":"9999-12-31T23:59:59.999999Z","service":"s","message":"latest"}"#.to_owned(),
        format!(r#"{{"service":"{}","message":"{}"}}"#, "s".repeat(128), "m".repeat(32_768)),
    ];
    for json in cases {
        let event = parse(json.as_bytes()).unwrap();
        let record = event.to_json();
        let decoded = LogEvent::decode(&record, &Limits::DEFAULT)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&record)));
        assert_eq!(decoded, event, "{json}");
        // Canonical means a fixed point: writing the decoded event gives the same bytes.
        assert_eq!(decoded.to_json(), record);
    }
}

#[test]
fn write_json_appends_to_a_reused_buffer() {
    let first = parse(EXAMPLE.as_bytes()).unwrap();
    let second = parse(br#"{"service":"s","message":"m"}"#).unwrap();
    let mut buffer = Vec::new();
    first.write_json(&mut buffer);
    let first_len = buffer.len();
    second.write_json(&mut buffer);
    assert_eq!(&buffer[..first_len], first.to_json().as_slice());
    assert_eq!(&buffer[first_len..], second.to_json().as_slice());
    buffer.clear();
    second.write_json(&mut buffer);
    assert_eq!(buffer, second.to_json());
}

#[test]
fn decode_applies_the_same_rules() {
    let bad_level =
        br#"{"timestamp":"2026-11-25T12:00:00Z","level":"LOUD","service":"s","message":"m"}"#;
    assert_eq!(
        LogEvent::decode(bad_level, &Limits::DEFAULT)
            .unwrap_err()
            .code(),
        "invalid_level"
    );
    let record = parse(EXAMPLE.as_bytes()).unwrap().to_json();
    let smaller = Limits {
        max_attributes: 1,
        ..Limits::DEFAULT
    };
    assert_eq!(
        LogEvent::decode(&record, &smaller).unwrap_err().code(),
        "too_many_attributes"
    );
}

#[test]
fn batch_of_mixed_elements_keeps_good_events() {
    let body = format!(
        r#"[{EXAMPLE}, {{"service":"s"}}, 7, {{"service":"s","message":"ok","x":1}}, {{"service":"t","message":"fine"}}]"#
    );
    let verdicts: Vec<Result<String, &str>> = split_json_array(body.as_bytes())
        .unwrap()
        .into_iter()
        .map(|raw| {
            LogEvent::parse_str(raw.get(), &Limits::DEFAULT, received_at())
                .map(|event| event.service.into_string())
                .map_err(|err| err.code())
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            Ok("checkout-api".to_owned()),
            Err("missing_field"),
            Err("not_an_object"),
            Err("unknown_field"),
            Ok("t".to_owned()),
        ]
    );
}

#[test]
fn ndjson_batch_reports_line_numbers() {
    let body = format!("{EXAMPLE}\r\n\r\nnot json\n{{\"service\":\"s\",\"message\":\"é\"}}\r\n{{\"message\":\"m\"}}\n");
    let mut body = body.into_bytes();
    body.extend_from_slice(b"{\"service\":\"s\",\"message\":\"\xff\"}\n");
    let verdicts: Vec<(usize, Result<(), &str>)> = ndjson_lines(&body)
        .map(|(line, bytes)| (line, parse(bytes).map(drop).map_err(|err| err.code())))
        .collect();
    assert_eq!(
        verdicts,
        [
            (1, Ok(())),
            (3, Err("invalid_json")),
            (4, Ok(())),
            (5, Err("missing_field")),
            (6, Err("invalid_utf8")),
        ]
    );
}

/// Pieces that make random input look enough like an event to reach the deeper checks.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "\"",
    "null",
    "true",
    "1",
    "-0.5e3",
    "\\",
    "\\u00e9",
    "\\ud800",
    "\"service\"",
    "\"message\"",
    "\"level\"",
    "\"timestamp\"",
    "\"host\"",
    "\"trace_id\"",
    "\"span_id\"",
    "\"attributes\"",
    "\"svc\"",
    "\"hello\"",
    "\"warn\"",
    "\"2026-11-25T12:00:00Z\"",
    "\"4bf92f3577b34da6a3ce929d0e0e4736\"",
    "\"00f067aa0ba902b7\"",
    "\"::1\"",
    "é",
    "\u{0}",
    "\n",
];

/// `parse` must return, not panic, for any bytes; whatever it accepts must round-trip.
fn check_input(bytes: &[u8]) {
    let tiny = Limits {
        max_message_bytes: 8,
        max_attributes: 2,
        max_attributes_bytes: 16,
    };
    for limits in [Limits::DEFAULT, tiny] {
        match LogEvent::parse(bytes, &limits, received_at()) {
            Ok(event) => {
                let record = event.to_json();
                let decoded = LogEvent::decode(&record, &limits);
                assert_eq!(
                    decoded.as_ref(),
                    Ok(&event),
                    "input {:?} wrote {:?}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&record)
                );
            }
            Err(rejection) => assert!(Rejection::ALL_CODES.contains(&rejection.code())),
        }
    }
    // The batch helpers must not panic either.
    let _ = split_json_array(bytes);
    assert!(ndjson_lines(bytes).all(|(line, _)| line >= 1));
}

#[test]
fn parse_never_panics_on_pseudo_random_input() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut accepted = 0;
    for round in 0..6_000 {
        let bytes: Vec<u8> = match round % 3 {
            // Raw bytes: mostly stopped by the UTF-8 and first-byte checks.
            0 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
            // Token soup: reaches the field visitor and the rules.
            1 => {
                let mut text = String::from("{");
                for _ in 0..rng.below(24) {
                    text.push_str(TOKENS[rng.below(TOKENS.len())]);
                }
                text.into_bytes()
            }
            // A valid event with a few bytes changed, inserted or removed.
            _ => {
                let mut bytes = EXAMPLE.as_bytes().to_vec();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(bytes.len());
                    match rng.below(3) {
                        0 => bytes[at] = rng.next() as u8,
                        1 => bytes.insert(at, TOKENS[rng.below(TOKENS.len())].as_bytes()[0]),
                        _ => {
                            bytes.remove(at);
                        }
                    }
                }
                bytes
            }
        };
        check_input(&bytes);
        if parse(&bytes).is_ok() {
            accepted += 1;
        }
    }
    // Guards the generator itself: if nothing were accepted, the round-trip half of
    // `check_input` would never run.
    assert!(accepted > 100, "only {accepted} inputs were accepted");
}
