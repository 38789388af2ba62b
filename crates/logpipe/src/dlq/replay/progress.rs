//! Replay's commit bookkeeping (pure): which DLQ offsets are done, so that a commit never moves
//! the replay group past a record Kafka has not acknowledged.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;

/// A record that is done (acknowledged, or needing no produce) or failed.
pub(super) struct Done {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) result: Result<(), String>,
}

/// A record in flight: resolves once it is done. Kept in DLQ order, so records finish in order
/// per partition.
pub(super) type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Per partition, the next offset whose predecessors are all done; and what is committed.
#[derive(Default)]
pub(super) struct Progress {
    done_upto: BTreeMap<i32, i64>,
    pub(super) committed: BTreeMap<i32, i64>,
    /// Partitions with a failed record: nothing after it is taken as done.
    failed_partitions: HashSet<i32>,
    /// The first failure; it ends the run.
    pub(super) failure: Option<String>,
}

impl Progress {
    pub(super) fn record(&mut self, done: Done) {
        match done.result {
            Ok(()) if !self.failed_partitions.contains(&done.partition) => {
                self.done_upto.insert(done.partition, done.offset + 1);
            }
            Ok(()) => {}
            Err(why) => {
                self.failed_partitions.insert(done.partition);
                self.failure.get_or_insert(why);
            }
        }
    }

    /// Offsets done but not committed yet (partition → next offset).
    pub(super) fn uncommitted(&self) -> BTreeMap<i32, i64> {
        self.done_upto
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(&p, &o)| (p, o))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_commits_contiguous_prefix_and_freezes_a_failed_partition() {
        let mut p = Progress::default();
        let done = |partition, offset, ok: bool| Done {
            partition,
            offset,
            result: if ok { Ok(()) } else { Err("nope".into()) },
        };
        p.record(done(0, 4, true));
        p.record(done(1, 7, true));
        p.record(done(0, 5, false));
        p.record(done(0, 6, true));
        p.record(done(1, 8, true));
        assert_eq!(p.uncommitted(), BTreeMap::from([(0, 5), (1, 9)]));
        assert_eq!(p.failure.as_deref(), Some("nope"));
        p.committed = p.uncommitted();
        assert!(p.uncommitted().is_empty());
    }
}
