//! Processing steps: per-record work that runs after decode and enrich and before the store,
//! and may fail on its own (a lookup that times out, a rule service that refuses). A step's
//! failure is a *record failure*: the record is retried on the `[retry]` schedule while the rest
//! of its partition flows, and goes to the dead-letter topic as `exhausted` when the schedule
//! runs out (or at once, as `poison`, when the step says the record can never pass).
//!
//! logpipe's own pipeline has no steps; they are the extension point for embedding logpipe as a
//! library ([`crate::app::Extensions`]), and the tests use them to inject failures.

use futures::future::BoxFuture;
use logpipe_model::EnrichedLog;

/// A step failed for this record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    /// True: the record can never pass this step (DLQ as `poison`, no retry).
    pub permanent: bool,
}

impl StepError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// One processing step. Steps of one record run in order; records of one key run one at a time,
/// in offset order; records of different keys run concurrently (up to `consumer.workers`).
/// Each attempt is bounded by `retry.attempt_timeout`.
pub trait Step: Send + Sync + 'static {
    /// A short stable name: the DLQ error type is `step:<name>`.
    fn name(&self) -> &str;
    fn run<'a>(&'a self, log: &'a EnrichedLog) -> BoxFuture<'a, Result<(), StepError>>;
}
