//! A DLQ context the unit tests of the tools share.

use chrono::{DateTime, Utc};

use super::{DlqContext, ErrorClass};

/// An exhausted `step:enrich` failure at 2026-11-25T10:00:00Z, never replayed.
pub(crate) fn context() -> DlqContext {
    let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    DlqContext {
        original_topic: "application-logs".into(),
        original_partition: 1,
        original_offset: 10,
        original_timestamp_ms: None,
        consumer_group: "g".into(),
        instance_id: "h-1-0".into(),
        class: ErrorClass::Exhausted,
        error_type: "step:enrich".into(),
        error_message: "boom".into(),
        attempts: 4,
        first_failure: t,
        last_failure: t,
        version: "0.1.0".into(),
        replay_count: 0,
    }
}
