//! What decoding a record gives: its events ([`Events`]), or why it cannot be processed
//! ([`Refusal`]). Shared by every record format ([`super::formats`] and the format modules it
//! calls), so none of them depends on another.

use logpipe_model::{LogEvent, Rejection};
use smallvec::SmallVec;

/// The events one record holds, in order: their position is their `index` in the stores' key.
/// One for most formats, kept inline.
pub type Events = SmallVec<[LogEvent; 1]>;

/// Why a record cannot be processed: a stable code (the dead-letter record's error type) and a
/// message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal {
            code: rejection.code(),
            message: rejection.to_string(),
        }
    }
}
