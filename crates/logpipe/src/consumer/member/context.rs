//! The state a member's poll loop and its rebalance callbacks share (both run on the poll thread,
//! but librdkafka hands the callbacks only `&self`): the input queue towards the pipeline, the
//! partitions owned and their assignment epochs, the offset-sequence check, and the client's
//! statistics callback (per-partition lag gauges).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;

use crate::consumer::handoff::{Epoch, Input, OutageFlags};
use crate::consumer::offsets::{Tp, TpMap};
use crate::consumer::ConsumerMetrics;

/// State shared between the poll loop and the rebalance callbacks (both on the poll thread, but
/// the callbacks only get `&self`).
pub struct MemberContext {
    pub(super) member: String,
    pub(super) tx: mpsc::Sender<Input>,
    /// Inputs waiting for room in the channel, in order.
    pub(super) pending: Mutex<VecDeque<Input>>,
    pub(super) drain_timeout: Duration,
    pub(super) metrics: ConsumerMetrics,
    /// Partitions currently owned, for filtering late commits and for lag series.
    pub(super) owned: Mutex<Vec<Tp>>,
    /// The epoch of each owned partition's current assignment.
    pub(super) epochs: Mutex<TpMap<Tp, Epoch>>,
    /// The offset each owned partition's next fetched record should have (unknown until the
    /// first record of an assignment): a record past it means the broker skipped offsets.
    pub(super) expected: Mutex<TpMap<Tp, i64>>,
    pub(super) next_epoch: AtomicU64,
    pub(super) topics: Mutex<HashMap<String, Arc<str>>>,
    pub(super) assigned_count: Arc<AtomicUsize>,
    /// Partitions are paused because the pipeline stalled or a dependency is down (set by the
    /// poll loop).
    pub(super) paused: AtomicBool,
    /// Dependencies the pipeline found down: while any is, partitions stay paused.
    pub(super) outages: OutageFlags,
}

/// Builds the context for a member.
pub fn context(
    member: String,
    tx: mpsc::Sender<Input>,
    drain_timeout: Duration,
    metrics: ConsumerMetrics,
    assigned_count: Arc<AtomicUsize>,
    outages: OutageFlags,
) -> MemberContext {
    MemberContext {
        member,
        tx,
        pending: Mutex::new(VecDeque::new()),
        drain_timeout,
        metrics,
        owned: Mutex::new(Vec::new()),
        epochs: Mutex::new(TpMap::default()),
        expected: Mutex::new(TpMap::default()),
        next_epoch: AtomicU64::new(1),
        topics: Mutex::new(HashMap::new()),
        assigned_count,
        paused: AtomicBool::new(false),
        outages,
    }
}

impl MemberContext {
    pub(super) fn intern(&self, topic: &str) -> Arc<str> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        // Called for every fetched record: a hit allocates nothing.
        if let Some(interned) = topics.get(topic) {
            return interned.clone();
        }
        let interned: Arc<str> = Arc::from(topic);
        topics.insert(topic.to_string(), interned.clone());
        interned
    }

    pub(super) fn tps(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        tpl.elements()
            .iter()
            .map(|e| (self.intern(e.topic()), e.partition()))
            .collect()
    }

    pub(super) fn push(&self, input: Input) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(input);
    }

    /// Moves pending inputs into the channel while there is room. Returns false when the
    /// pipeline is gone.
    pub(super) fn flush_pending(&self) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(input) = pending.pop_front() {
            match self.tx.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(input)) => {
                    pending.push_front(input);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    pub(super) fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn owned(&self) -> Vec<Tp> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn describe(tps: &[Tp]) -> String {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for (t, p) in tps {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .iter_mut()
            .map(|(t, ps)| {
                ps.sort_unstable();
                format!("{t}{ps:?}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(super) fn forget_epochs(&self, tps: &[Tp]) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        for tp in tps {
            epochs.remove(tp);
            expected.remove(tp);
        }
    }

    /// Checks that a fetched record follows the previous one of its partition (the first one
    /// follows the committed offset). Offsets are missing where a topic has transaction markers
    /// or was compacted, which logpipe's topics have not, and where records were deleted before
    /// the group read them (retention or DeleteRecords moved the log start past the committed
    /// offset, and the client reset to the earliest offset left): records that can never be
    /// stored, so the gap is counted and logged, never silent. A broker that served a fetch
    /// wrongly would show up here too.
    pub(super) fn check_sequence(&self, tp: &Tp, offset: i64) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = expected.get_mut(tp) else {
            expected.insert(tp.clone(), offset + 1);
            return;
        };
        let next = std::mem::replace(slot, offset + 1);
        let skipped = sequence_gap(next, offset);
        if skipped > 0 {
            self.metrics.skipped_offsets.inc_by(skipped);
            tracing::warn!(member = %self.member, topic = %tp.0, partition = tp.1, expected = next, fetched = offset, skipped, "offsets skipped: records in between were never delivered (deleted by retention or DeleteRecords before this group read them; check the topic's retention against the group's lag)");
        }
    }
}

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        let owned = self.owned();
        let mut max_lag = 0i64;
        for (topic, partition) in &owned {
            let lag = statistics
                .topics
                .get(&**topic)
                .and_then(|t| t.partitions.get(partition))
                .map(|p| p.consumer_lag)
                .unwrap_or(-1);
            if lag >= 0 {
                max_lag = max_lag.max(lag);
                self.metrics.set_partition_lag(topic, *partition, lag);
            }
        }
        self.metrics.set_member_lag(&self.member, max_lag);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(member = %self.member, %error, "Kafka client: {reason}");
    }
}

/// Offsets skipped between the expected next offset and the one fetched (0 for the expected
/// one, or for a rewind: a seek or an offset reset, which re-reads instead of skipping).
fn sequence_gap(expected: i64, fetched: i64) -> u64 {
    u64::try_from(fetched - expected).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::sequence_gap;

    #[test]
    fn a_gap_counts_the_offsets_never_delivered() {
        assert_eq!(sequence_gap(5, 5), 0, "the expected offset");
        assert_eq!(sequence_gap(5, 10), 5, "offsets 5..=9 skipped");
        assert_eq!(
            sequence_gap(10, 3),
            0,
            "a rewind re-reads, it skips nothing"
        );
    }
}
