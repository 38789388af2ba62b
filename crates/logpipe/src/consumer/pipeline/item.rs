//! One record on its way from fetch to outcome (`Item`): where it came from, what it was in
//! Kafka (kept for the dead-letter topic), the events it decoded to, and how its attempts went.
//! The record is the unit of retries, the dead-letter topic and commits, whatever number of
//! events it holds.

use std::time::Instant;

use chrono::{DateTime, Utc};
use logpipe_model::EnrichedLog;
use smallvec::SmallVec;

use crate::consumer::handoff::{Epoch, Raw};
use crate::consumer::offsets::Tp;

/// A record's enriched events, in the record's order (one inline for most formats).
pub(super) type Logs = SmallVec<[EnrichedLog; 1]>;

/// One record from fetch to outcome.
pub(super) struct Item {
    pub tp: Tp,
    pub offset: i64,
    /// The assignment it arrived under: work for an earlier assignment is dropped.
    pub epoch: Epoch,
    /// Hash of the record key; None for records without a key (no ordering among them).
    pub key: Option<u64>,
    pub fetched_at: Instant,
    pub raw: Raw,
    /// The decoded record's events; empty for poison (and while its rows are being written).
    pub logs: Logs,
    /// Why it can never be processed: (error type, message). Boxed, like `failure`: both are
    /// rare, and an `Item` is moved several times on the hot path (smaller is faster).
    pub poison: Option<Box<(String, String)>>,
    pub failure: Option<Box<Failure>>,
}

/// Where a failed record is retried from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Steps,
    Store,
}

/// The attempts of a record that failed at least once.
pub(super) struct Failure {
    pub attempts: u32,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub error_type: String,
    pub message: String,
    pub stage: Stage,
}

/// A decoded batch on its way to the writer, in fetch order (offset order within a partition).
pub(super) struct Prepared {
    pub items: Vec<Item>,
}

impl Item {
    /// The gateway request that carried it (for log lines), or "".
    pub fn request_id(&self) -> &str {
        self.raw
            .request_id_header
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default()
    }

    /// Why it is bound for the dead-letter topic: (error type, message).
    pub fn error(&self) -> (&str, &str) {
        match (self.poison.as_deref(), self.failure.as_deref()) {
            (Some((kind, message)), _) => (kind, message),
            (None, Some(f)) => (&f.error_type, &f.message),
            (None, None) => ("unknown", ""),
        }
    }

    /// The trace id of its first event, when it was decoded and has one, or "".
    pub fn trace_id(&self) -> &str {
        self.logs
            .first()
            .and_then(|l| l.event.trace_id.as_ref())
            .map(|t| t.as_str())
            .unwrap_or_default()
    }

    /// Records a failed attempt (the first one starts the record's [`Failure`]).
    pub fn record_attempt(&mut self, error_type: String, message: String, stage: Stage) {
        let now = Utc::now();
        let failure = self.failure.get_or_insert_with(|| {
            Box::new(Failure {
                attempts: 0,
                first: now,
                last: now,
                error_type: String::new(),
                message: String::new(),
                stage,
            })
        });
        failure.attempts += 1;
        failure.last = now;
        failure.error_type = error_type;
        failure.message = message;
        failure.stage = stage;
    }

    /// A record for the scheduler's tests: no payload, not decoded.
    #[cfg(test)]
    pub fn for_test(tp: &Tp, offset: i64, key: Option<u64>) -> Item {
        Item {
            tp: tp.clone(),
            offset,
            epoch: 0,
            key,
            fetched_at: Instant::now(),
            raw: Raw {
                key: None,
                payload: None,
                timestamp_ms: None,
                ingest_header: None,
                request_id_header: None,
                replay_count: 0,
            },
            logs: Logs::new(),
            poison: None,
            failure: None,
        }
    }
}
