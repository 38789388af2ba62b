//! Offset commits: only for partitions still assigned under the same epoch, coalesced to one
//! OffsetCommit per partition at most every `COMMIT_INTERVAL` while running, synchronous and
//! immediate on revoke and shutdown.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::context::MemberContext;
use crate::consumer::handoff::{CommitPoint, Finals};
use crate::consumer::offsets::{Tp, TpMap};
use crate::consumer::ConsumerMetrics;

/// Commits `offsets` (only for partitions still assigned). Returns how many were committed.
pub(super) fn commit(
    consumer: &BaseConsumer<MemberContext>,
    offsets: &[CommitPoint],
    mode: CommitMode,
    metrics: &ConsumerMetrics,
) -> usize {
    let mut tpl = TopicPartitionList::new();
    {
        let epochs = consumer
            .context()
            .epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for CommitPoint { tp, offset, epoch } in offsets {
            // Only commits of the partition's current assignment: a late one from a partition
            // that moved away, or from an earlier assignment of it, could rewind its offset.
            if epochs.get(tp) == Some(epoch) {
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            } else {
                metrics.commit("stale_dropped");
            }
        }
    }
    if tpl.count() == 0 {
        return 0;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            metrics.commit("ok");
            tpl.count()
        }
        Err(e) => {
            metrics.commit("error");
            tracing::warn!(error = %e, "offset commit failed; the next commit carries the same progress");
            0
        }
    }
}

/// Commit progress waiting to be sent: one offset per partition, the latest (the pipeline sends a
/// partition's commit points in order, and a newer assignment's supersede an older one's), sent
/// as one OffsetCommit at most every [`COMMIT_INTERVAL`]. The coordinator answers a connection's
/// requests in order: a commit per written batch (hundreds a second under load) queued up behind
/// each other and held back the group heartbeats that share the connection, until a KIP-848
/// broker fenced members that were working. (A cadence, not "one in flight": rdkafka 0.38 never
/// delivers the answer to a manual asynchronous commit, so there is nothing to wait for.)
pub(super) struct CommitQueue {
    latest: TpMap<Tp, CommitPoint>,
    last_sent: Instant,
}

/// How often a member commits its progress at most. A crash re-reads at most this much more (the
/// stores make re-reads harmless); revokes and shutdown commit synchronously and at once.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

impl Default for CommitQueue {
    fn default() -> Self {
        Self {
            latest: TpMap::default(),
            last_sent: Instant::now() - COMMIT_INTERVAL,
        }
    }
}

impl CommitQueue {
    /// Adds commit points; a partition's later point replaces its earlier one.
    pub(super) fn add(&mut self, points: Finals) {
        for point in points {
            self.latest.insert(point.tp.clone(), point);
        }
    }

    /// What waits, once [`COMMIT_INTERVAL`] has passed since the last commit at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Finals> {
        if self.latest.is_empty() || now.duration_since(self.last_sent) < COMMIT_INTERVAL {
            return None;
        }
        self.last_sent = now;
        Some(self.take_all())
    }

    /// Everything that waits, now.
    pub(super) fn take_all(&mut self) -> Finals {
        let mut points: Finals = self.latest.drain().map(|(_, point)| point).collect();
        points.sort_by(|a, b| a.tp.cmp(&b.tp));
        points
    }

    /// Commits what is due (asynchronously).
    pub(super) fn send_if_due(&mut self, consumer: &BaseConsumer<MemberContext>) {
        if let Some(points) = self.take_due(Instant::now()) {
            let metrics = &consumer.context().metrics;
            commit(consumer, &points, CommitMode::Async, metrics);
        }
    }

    /// Commits everything that waits now (asynchronously).
    pub(super) fn send(&mut self, consumer: &BaseConsumer<MemberContext>) {
        let points = self.take_all();
        if !points.is_empty() {
            commit(
                consumer,
                &points,
                CommitMode::Async,
                &consumer.context().metrics,
            );
        }
        self.last_sent = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::consumer::handoff::Epoch;

    fn point(p: i32, offset: i64, epoch: Epoch) -> CommitPoint {
        CommitPoint {
            tp: (Arc::from("t"), p),
            offset,
            epoch,
        }
    }

    #[test]
    fn a_partitions_latest_point_wins_and_commits_keep_a_cadence() {
        let mut queue = CommitQueue::default();
        let start = Instant::now();
        queue.add(vec![point(0, 10, 1), point(1, 5, 1)]);
        queue.add(vec![point(0, 12, 1)]);
        queue.add(vec![point(1, 7, 2)]);
        let first = queue
            .take_due(start)
            .expect("the first commit goes at once");
        assert_eq!(first, vec![point(0, 12, 1), point(1, 7, 2)]);
        queue.add(vec![point(0, 13, 1)]);
        assert_eq!(
            queue.take_due(start + COMMIT_INTERVAL / 2),
            None,
            "too soon"
        );
        assert_eq!(
            queue.take_due(start + COMMIT_INTERVAL),
            Some(vec![point(0, 13, 1)])
        );
        assert_eq!(
            queue.take_due(start + COMMIT_INTERVAL * 3),
            None,
            "nothing waits"
        );
    }
}
