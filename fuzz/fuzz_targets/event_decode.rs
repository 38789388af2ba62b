//! Fuzzes `LogEvent::decode` (a Kafka record value) with the default limits.
//!
//! Invariants: no panic; an accepted event respects every limit; and the canonical form is a
//! fixed point, i.e. `decode(to_json(e)) == e` and writing it again gives the same bytes, since the
//! consumer relies on re-reading exactly what the gateway wrote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_model::{Limits, LogEvent};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    let Ok(event) = LogEvent::decode(data, &limits) else {
        return;
    };
    assert!(event.message.len() <= limits.max_message_bytes);
    if let Some(attributes) = &event.attributes {
        let text = attributes.get();
        assert!(
            text.len() <= limits.max_attributes_bytes,
            "attributes over the byte limit"
        );
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).expect("stored attributes are a JSON object");
        // Duplicate keys collapse in a map, so this bounds from below what the limit counted.
        assert!(
            map.len() <= limits.max_attributes,
            "attributes over the key limit"
        );
        assert!(!map.is_empty(), "`{{}}` is stored as no attributes");
    }
    let canonical = event.to_json();
    let again = LogEvent::decode(&canonical, &limits).expect("a canonical record decodes");
    assert_eq!(again, event, "decode(to_json(e)) != e");
    assert_eq!(
        again.to_json(),
        canonical,
        "the canonical form is not stable"
    );
});
