//! `[dlq]`: the dead-letter tools (`logpipe dlq stats|show|replay`).

use serde::{Deserialize, Serialize};

/// The dead-letter tools (`logpipe dlq stats|show|replay`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// A record replayed this many times already goes to `kafka.parked_topic` on its next replay
    /// instead of back to its original topic.
    pub max_replays: u32,
    /// Consumer group `logpipe dlq replay` commits its progress under, so a second replay run
    /// does not republish what the first one already did.
    pub replay_group: String,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            max_replays: 3,
            replay_group: "logpipe-dlq-replay".into(),
        }
    }
}
