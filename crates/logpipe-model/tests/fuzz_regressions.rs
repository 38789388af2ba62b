//! Inputs found by the fuzz targets in fuzz/ (scripts/fuzz.sh), kept so they stay fixed.

use logpipe_model::{Limits, LogEvent};

/// `event_decode` found a record whose attributes held `2000000000211110E24442`: valid JSON,
/// accepted and stored, but past `f64::MAX`, so every reader that builds a `serde_json::Value`
/// from the stored attributes (the query API) failed on it. Numbers no 64-bit float can hold are
/// now refused with the event.
#[test]
fn attributes_with_a_number_past_f64_are_refused() {
    let record = br#"{"timestamp":"2026-11-25T12:00:00.123000Z","level":"error","service":"checkout-api","message":"29d0eaaab0902b7","attributes":{"user_illllllllllllllllll-lllllt~d":{"a":[-0,2000000000211110E24442,true,"x\"y"]} }}"#;
    let err = LogEvent::decode(record, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.code(), "invalid_json");
    assert!(err.to_string().contains("2000000000211110E24442"), "{err}");

    // The same record with a number in range is accepted, and its attributes read as a value.
    let fixed = String::from_utf8_lossy(record).replace("E24442", "E240");
    let event = LogEvent::decode(fixed.as_bytes(), &Limits::DEFAULT).unwrap();
    let attributes = event.attributes.expect("attributes kept");
    serde_json::from_str::<serde_json::Value>(attributes.get()).unwrap();
}

/// `event_decode` then found attributes holding a lone surrogate escape (`\ude00`): the event
/// parser skips string contents, so it was stored, and then serde_json's `Value` (the query API)
/// and PostgreSQL's `jsonb` (the batch insert) both refused it.
#[test]
fn attributes_with_a_lone_surrogate_escape_are_refused() {
    let record = br#"{"timestamp":"2026-11-25T12:00:00.123000Z","service":"checkout-api","message":"m","attributes":{"userlllllllllll3d\ude00 ta":{"a":[0,2.5,null,true,"x\"y"]}}}"#;
    let err = LogEvent::decode(record, &Limits::DEFAULT).unwrap_err();
    assert_eq!(err.code(), "invalid_json");
    assert!(err.to_string().contains("surrogate"), "{err}");

    // A full pair (an emoji as Python's json.dumps writes it) is accepted.
    let paired = String::from_utf8_lossy(record).replace(r"3d\ude00", r"\ud83d\ude00");
    let event = LogEvent::decode(paired.as_bytes(), &Limits::DEFAULT).unwrap();
    serde_json::from_str::<serde_json::Value>(event.attributes.unwrap().get()).unwrap();
}
