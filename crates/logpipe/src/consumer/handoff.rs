//! What crosses between a member's poll thread ([`super::member`]) and its async pipeline
//! ([`super::pipeline`]), and nothing else: records as fetched, the inputs in the order the poll
//! thread saw them, the commit points that come back, and the outage flags the pipeline raises to
//! pause fetching. Both sides import this module; neither imports the other.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Instant;

use super::offsets::Tp;

/// A record as fetched, owned, ready to cross to the pipeline.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Hash of the record key, to keep one key on one worker (records without a key spread by
    /// offset).
    pub lane_hash: u64,
    pub fetched_at: Instant,
    pub raw: Raw,
}

/// The record as it was in Kafka: what the pipeline decodes, and what a dead-letter record
/// carries unchanged.
#[derive(Debug, Clone)]
pub struct Raw {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub ingest_header: Option<Vec<u8>>,
    pub request_id_header: Option<Vec<u8>>,
    /// Times `logpipe dlq replay` has republished this record (its `logpipe-replay-count`).
    pub replay_count: u32,
}

impl Fetched {
    pub fn tp(&self) -> Tp {
        (self.topic.clone(), self.partition)
    }
}

/// Which assignment of a partition a commit belongs to. Every assign gets a new epoch, so a
/// commit produced under an earlier assignment (say, a batch that finished after its revoke
/// timed out) is recognised and dropped even if the partition has come back to this member.
pub type Epoch = u64;

/// How far a partition may be committed: the next offset to read, under the assignment (epoch)
/// the work was done in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPoint {
    pub tp: Tp,
    pub offset: i64,
    pub epoch: Epoch,
}

/// Commit points the pipeline hands to the poll thread.
pub type Finals = Vec<CommitPoint>;

/// What the poll thread tells the pipeline, in order.
#[derive(Debug)]
pub enum Input {
    Record(Fetched),
    Assigned(Vec<Tp>, Epoch),
    /// Finish everything received so far, answer with the final commit points of these
    /// partitions.
    Revoked(Vec<Tp>, std_mpsc::SyncSender<Finals>),
}

/// Dependencies whose outage pauses consumption; bits of [`OutageFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Store = 1,
    Aggregates = 2,
    DeadLetters = 4,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Store => "store",
            Dependency::Aggregates => "aggregates",
            Dependency::DeadLetters => "dlq",
        }
    }
}

/// Which dependencies are down, shared by a member's pipeline (raises and clears the bits) and
/// its poll thread (pauses the partitions while any bit is set).
#[derive(Debug, Clone, Default)]
pub struct OutageFlags(Arc<AtomicU8>);

impl OutageFlags {
    pub fn raise(&self, dependency: Dependency) {
        self.0.fetch_or(dependency as u8, Ordering::Relaxed);
    }

    pub fn clear(&self, dependency: Dependency) {
        self.0.fetch_and(!(dependency as u8), Ordering::Relaxed);
    }

    /// Whether any dependency is down.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}
