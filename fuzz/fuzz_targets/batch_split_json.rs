//! Fuzzes `split_json_array` the way the gateway's batch route uses it: split, cap the number of
//! events, then parse each element with `LogEvent::parse_str`.
//!
//! Invariants: no panic; every element is a non-empty, valid JSON slice of the body, in order and
//! without overlap, so the count can never exceed what the body could hold; the gateway's
//! `max_batch_events` cap is applied to that count, so an accepted batch is never above it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_model::{split_json_array, Limits, LogEvent};

/// Small so the fuzzer reaches both sides of the cap with short inputs.
const MAX_EVENTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(elements) = split_json_array(data) else {
        return;
    };
    let body = data.as_ptr_range();
    let mut end_of_previous = body.start;
    for element in &elements {
        let text = element.get();
        assert!(!text.is_empty());
        let range = text.as_bytes().as_ptr_range();
        assert!(
            range.start >= end_of_previous && range.end <= body.end,
            "an element is not an in-order slice of the body"
        );
        end_of_previous = range.end;
        serde_json::from_str::<serde::de::IgnoredAny>(text).expect("an element is valid JSON");
    }
    // `[` plus one byte and a separator per element at least.
    assert!(elements.len() <= data.len() / 2);

    if elements.is_empty() || elements.len() > MAX_EVENTS {
        return; // the gateway answers empty_batch or too_many_events
    }
    let accepted = elements
        .iter()
        .filter(|raw| LogEvent::parse_str(raw.get(), &Limits::DEFAULT, received_at()).is_ok())
        .count();
    assert!(accepted <= MAX_EVENTS);
});

fn received_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant")
}
