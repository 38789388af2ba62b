//! Fuzzes `ndjson_lines` the way the gateway's batch route uses it: split, cap the number of
//! events, then parse each line with `LogEvent::parse`.
//!
//! Invariants: no panic; line numbers strictly increase and never pass the number of lines in the
//! body; each item is a non-blank slice of its line without the `\n` (nor a final `\r`), so the
//! count can never exceed the lines in the body; the gateway's `max_batch_events` cap is applied
//! to that count, so an accepted batch is never above it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_model::{ndjson_lines, Limits, LogEvent};

/// Small so the fuzzer reaches both sides of the cap with short inputs.
const MAX_EVENTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let physical_lines: Vec<&[u8]> = data.split(|&byte| byte == b'\n').collect();
    let items: Vec<(usize, &[u8])> = ndjson_lines(data).collect();
    assert!(items.len() <= physical_lines.len());
    let mut previous = 0;
    for &(number, line) in &items {
        assert!(number > previous, "line numbers must increase");
        previous = number;
        let physical = physical_lines[number - 1];
        assert!(!line.contains(&b'\n'));
        assert!(
            line == physical || physical.strip_suffix(b"\r") == Some(line),
            "an item is not its line"
        );
        assert!(
            line.iter()
                .any(|byte| !matches!(byte, b' ' | b'\t' | b'\r')),
            "a blank line became an item"
        );
    }

    if items.is_empty() || items.len() > MAX_EVENTS {
        return; // the gateway answers empty_batch or too_many_events
    }
    let accepted = items
        .iter()
        .filter(|(_, line)| LogEvent::parse(line, &Limits::DEFAULT, received_at()).is_ok())
        .count();
    assert!(accepted <= MAX_EVENTS);
});

fn received_at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant")
}
