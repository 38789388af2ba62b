//! The per-key scheduler of a member's writer: every record gets exactly one outcome (stored, or
//! dead-lettered), one key at a time, and the commit point never passes a record without one.
//!
//! - **Admit:** a record whose key is held by an earlier record waits behind it; otherwise it
//!   starts: poison is bound for the dead-letter topic at once, a decoded record goes to its
//!   processing steps (if any; the key is held meanwhile) or straight to the store.
//! - **Hold and release:** a key is held by one record (in its steps, or waiting for a retry).
//!   When that record has its outcome the key is released and the records that waited behind it
//!   are admitted again, in offset order.
//! - **Retry:** a record that fails on its own is tried again on the `[retry]` schedule (attempt 1
//!   at once, then `base * multiplier^(n-2)`, jittered), holding only its key; after the last
//!   attempt it is bound for the dead-letter topic as `exhausted`.
//! - **Commit points:** every admitted record is tracked in an [`OffsetTracker`]; a partition's
//!   commit point is the lowest offset still without an outcome, stamped with the partition's
//!   assignment epoch.
//! - **Revoke:** the records of revoked partitions that wait (for a retry, behind a key) are
//!   abandoned to the next owner, which re-reads them from the final commit point.
//!
//! No I/O here: the writer ([`super::writer`]) takes the records that are ready for the store,
//! the dead-letter topic or the steps, does the work, and reports each outcome back.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::item::{Item, Stage};
use crate::config::RetryConfig;
use crate::consumer::handoff::{CommitPoint, Epoch, Finals};
use crate::consumer::offsets::{OffsetTracker, Tp};
use crate::dlq::ErrorClass;

/// Records of one key waiting behind the record that holds the key (being retried, or in its
/// processing steps), in offset order.
struct KeyQueue {
    holder: i64,
    waiting: VecDeque<Item>,
}

pub(super) struct Scheduler {
    retry: RetryConfig,
    /// Whether records run processing steps before the store.
    has_steps: bool,
    tracker: OffsetTracker,
    /// The assignment epoch of each owned partition (commit points carry it).
    epochs: HashMap<Tp, Epoch>,
    /// Keys held by a record in its steps or waiting for a retry, per partition.
    blocked: HashMap<(Tp, u64), KeyQueue>,
    /// Records waiting for their next attempt, with when it is due.
    retrying: Vec<(Instant, Item)>,
    /// Records ready for the store.
    ready: Vec<Item>,
    /// Records bound for the dead-letter topic, with their class.
    letters: Vec<(Item, ErrorClass)>,
    /// Records to start in their processing steps.
    to_run: Vec<Item>,
}

impl Scheduler {
    pub fn new(retry: RetryConfig, has_steps: bool) -> Self {
        Scheduler {
            retry,
            has_steps,
            tracker: OffsetTracker::default(),
            epochs: HashMap::new(),
            blocked: HashMap::new(),
            retrying: Vec::new(),
            ready: Vec::new(),
            letters: Vec::new(),
            to_run: Vec::new(),
        }
    }

    /// Partitions assigned under `epoch`.
    pub fn assign(&mut self, tps: &[Tp], epoch: Epoch) {
        for tp in tps {
            self.epochs.insert(tp.clone(), epoch);
        }
    }

    /// A new batch: every record of an owned partition is tracked (the commit point cannot pass
    /// it until it has an outcome), then admitted. Records of partitions revoked while they were
    /// being decoded are dropped.
    pub fn accept(&mut self, items: Vec<Item>) {
        self.ready.reserve(items.len());
        for mut item in items {
            let Some(epoch) = self.epochs.get(&item.tp).copied() else {
                continue;
            };
            item.epoch = epoch;
            self.tracker.track(&item.tp, item.offset);
            self.admit(item);
        }
    }

    /// Whether the record belongs to its partition's current assignment.
    pub fn is_current(&self, item: &Item) -> bool {
        self.epochs.get(&item.tp) == Some(&item.epoch)
    }

    /// Starts a record unless its key is held by an earlier record, behind which it waits.
    fn admit(&mut self, item: Item) {
        if let Some(key) = item.key {
            if let Some(queue) = self.blocked.get_mut(&(item.tp.clone(), key)) {
                queue.waiting.push_back(item);
                return;
            }
        }
        self.start(item);
    }

    fn start(&mut self, item: Item) {
        if item.poison.is_some() {
            self.letters.push((item, ErrorClass::Poison));
        } else if self.has_steps {
            self.run_steps(item);
        } else {
            self.ready.push(item);
        }
    }

    fn run_steps(&mut self, item: Item) {
        self.hold_key(&item);
        self.to_run.push(item);
    }

    /// Marks the record's key as held by it.
    fn hold_key(&mut self, item: &Item) {
        if let Some(key) = item.key {
            self.blocked
                .entry((item.tp.clone(), key))
                .or_insert_with(|| KeyQueue {
                    holder: item.offset,
                    waiting: VecDeque::new(),
                });
        }
    }

    /// The record has its outcome (stored, or acknowledged by the dead-letter topic): the commit
    /// point may pass it, and the records that waited behind its key are admitted.
    pub fn finished(&mut self, tp: &Tp, key: Option<u64>, offset: i64) {
        self.tracker.done(tp, offset);
        let Some(key) = key else { return };
        let k = (tp.clone(), key);
        if self.blocked.get(&k).is_some_and(|q| q.holder == offset) {
            let queue = self.blocked.remove(&k).expect("checked above");
            for next in queue.waiting {
                self.admit(next);
            }
        }
    }

    /// The record passed its processing steps (a record of a revoked partition is dropped).
    pub fn passed_steps(&mut self, item: Item) {
        if self.is_current(&item) {
            self.ready.push(item);
        }
    }

    /// The record can never pass (a step said so): bound for the dead-letter topic as poison.
    pub fn rejected(&mut self, mut item: Item, error_type: String, message: String) {
        if !self.is_current(&item) {
            return;
        }
        item.record_attempt(error_type.clone(), message.clone(), Stage::Steps);
        item.poison = Some(Box::new((error_type, message)));
        self.letters.push((item, ErrorClass::Poison));
    }

    /// A failed attempt: schedules the next one and returns its delay, or gives up (the record is
    /// bound for the dead-letter topic as `exhausted`) and returns None. A record of a revoked
    /// partition is dropped (None).
    pub fn failed(
        &mut self,
        mut item: Item,
        error_type: String,
        message: String,
        stage: Stage,
    ) -> Option<Duration> {
        if !self.is_current(&item) {
            return None;
        }
        let (request_id, trace_id) = (item.request_id().to_owned(), item.trace_id().to_owned());
        item.record_attempt(error_type, message, stage);
        let failure = item.failure.as_deref().expect("just recorded");
        let attempts = failure.attempts;
        let c = (&item.tp.0, item.tp.1, item.offset);
        if attempts >= self.retry.attempts {
            tracing::warn!(topic = %c.0, partition = c.1, offset = c.2, %request_id, %trace_id, attempts, error_type = %failure.error_type, error = %failure.message, "record failed every attempt; sending it to the dead-letter topic");
            self.letters.push((item, ErrorClass::Exhausted));
            return None;
        }
        let delay = crate::retry::jitter(self.retry.delay_before(attempts + 1), self.retry.jitter);
        tracing::info!(topic = %c.0, partition = c.1, offset = c.2, %request_id, %trace_id, attempt = attempts, retry_in = ?delay, error_type = %failure.error_type, error = %failure.message, "record failed; retrying later (only its key waits)");
        if let Some(key) = item.key {
            if let Some(queue) = self
                .blocked
                .get_mut(&(item.tp.clone(), key))
                .filter(|q| q.holder != item.offset)
            {
                // An earlier record of the key is itself waiting: this one queues behind it (in
                // offset order) and is tried again when its turn comes.
                let at = queue
                    .waiting
                    .iter()
                    .position(|w| w.offset > item.offset)
                    .unwrap_or(queue.waiting.len());
                queue.waiting.insert(at, item);
                return Some(delay);
            }
        }
        self.hold_key(&item);
        self.retrying.push((Instant::now() + delay, item));
        Some(delay)
    }

    /// When the next retry is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.retrying.iter().map(|(due, _)| *due).min()
    }

    /// Starts the retries that are due: again from the stage that failed.
    pub fn retry_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retrying)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.retrying = later;
        for (_, item) in due {
            match item.failure.as_ref().map(|f| f.stage) {
                Some(Stage::Steps) => self.run_steps(item),
                _ => self.ready.push(item),
            }
        }
    }

    pub fn take_ready(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.ready)
    }

    pub fn take_letters(&mut self) -> Vec<(Item, ErrorClass)> {
        std::mem::take(&mut self.letters)
    }

    pub fn take_to_run(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.to_run)
    }

    /// Whether records wait for the store or the dead-letter topic.
    pub fn has_writes(&self) -> bool {
        !self.ready.is_empty() || !self.letters.is_empty()
    }

    /// Whether records wait for a retry.
    pub fn has_retries(&self) -> bool {
        !self.retrying.is_empty()
    }

    /// Records tracked and without an outcome.
    pub fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// Every partition with tracked records, and its commit point.
    pub fn commit_points(&self) -> Vec<(Tp, Option<i64>)> {
        self.tracker
            .partitions()
            .into_iter()
            .map(|tp| {
                let point = self.tracker.commit_point(&tp);
                (tp, point)
            })
            .collect()
    }

    /// The commit points of `tps`.
    pub fn commit_points_of(&self, tps: &[Tp]) -> Vec<(Tp, Option<i64>)> {
        tps.iter()
            .map(|tp| (tp.clone(), self.tracker.commit_point(tp)))
            .collect()
    }

    /// Commit points that moved since the last call, stamped with their epochs.
    pub fn take_commits(&mut self) -> Finals {
        let taken = self.tracker.take_commits();
        self.stamp(taken)
    }

    /// Commit points from [`take_commits`](Self::take_commits) that could not be handed on: the
    /// next call hands them out again.
    pub fn unsend(&mut self, points: &Finals) {
        let points: Vec<(Tp, i64)> = points.iter().map(|p| (p.tp.clone(), p.offset)).collect();
        self.tracker.unsend(&points);
    }

    /// Revoke, first half: the records of `tps` that wait (for a retry, behind a key) are left to
    /// the next owner. Returns how many waited for a retry.
    pub fn abandon(&mut self, tps: &[Tp]) -> usize {
        let revoked: BTreeSet<&Tp> = tps.iter().collect();
        let before = self.retrying.len();
        self.retrying
            .retain(|(_, item)| !revoked.contains(&item.tp));
        self.blocked.retain(|(tp, _), _| !revoked.contains(tp));
        before - self.retrying.len()
    }

    /// Revoke, second half: forgets `tps` and returns their final commit points.
    pub fn release(&mut self, tps: &[Tp]) -> Finals {
        let released = self.tracker.release(tps);
        let finals = self.stamp(released);
        for tp in tps {
            self.epochs.remove(tp);
        }
        finals
    }

    /// Adds each partition's assignment epoch to its commit point (0 if unknown: the poll thread
    /// then drops it, which is safe: a later commit or the next owner carries the progress).
    fn stamp(&self, points: Vec<(Tp, i64)>) -> Finals {
        points
            .into_iter()
            .map(|(tp, offset)| {
                let epoch = self.epochs.get(&tp).copied().unwrap_or(0);
                CommitPoint { tp, offset, epoch }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    /// The default schedule without jitter: attempt 1 at once, then 1 s, 2 s, 4 s.
    fn scheduler(has_steps: bool) -> Scheduler {
        let retry = RetryConfig {
            jitter: 0.0,
            ..RetryConfig::default()
        };
        let mut s = Scheduler::new(retry, has_steps);
        s.assign(&[tp(0), tp(1)], 7);
        s
    }

    fn item(p: i32, offset: i64, key: u64) -> Item {
        Item::for_test(&tp(p), offset, Some(key))
    }

    fn offsets(items: &[Item]) -> Vec<i64> {
        items.iter().map(|i| i.offset).collect()
    }

    /// Fails `item` in the store, as the writer does with a refused row.
    fn fail(s: &mut Scheduler, item: Item) -> Option<Duration> {
        s.failed(item, "store_rejected".into(), "no".into(), Stage::Store)
    }

    /// Stores every ready record (each finishes), returning their offsets.
    fn store_all(s: &mut Scheduler) -> Vec<i64> {
        let ready = s.take_ready();
        for i in &ready {
            s.finished(&i.tp, i.key, i.offset);
        }
        offsets(&ready)
    }

    fn commit_offsets(s: &mut Scheduler) -> Vec<(i32, i64, Epoch)> {
        s.take_commits()
            .into_iter()
            .map(|p| (p.tp.1, p.offset, p.epoch))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_schedule_is_immediate_then_one_two_four_seconds_then_the_dlq() {
        let mut s = scheduler(false);
        s.accept(vec![item(0, 0, 1)]);
        let mut record = s.take_ready().pop().expect("attempt 1 starts at once");
        let start = Instant::now();
        for (attempt, wait) in [(1, 1), (2, 2), (3, 4)] {
            let delay = fail(&mut s, record);
            assert_eq!(
                delay,
                Some(Duration::from_secs(wait)),
                "after attempt {attempt}"
            );
            assert_eq!(
                s.next_due(),
                Some(Instant::now() + Duration::from_secs(wait))
            );
            tokio::time::advance(Duration::from_secs(wait) - Duration::from_millis(1)).await;
            s.retry_due();
            assert!(
                s.take_ready().is_empty(),
                "attempt {} before its time",
                attempt + 1
            );
            tokio::time::advance(Duration::from_millis(1)).await;
            s.retry_due();
            record = s.take_ready().pop().expect("the retry is due");
            assert_eq!(record.failure.as_ref().map(|f| f.attempts), Some(attempt));
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(7));
        assert_eq!(fail(&mut s, record), None, "attempt 4 was the last");
        let letters = s.take_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].1, ErrorClass::Exhausted);
        assert_eq!(letters[0].0.failure.as_ref().map(|f| f.attempts), Some(4));
        assert!(!s.has_retries());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_record_holds_only_its_key_and_its_partitions_commit_point() {
        let mut s = scheduler(false);
        // Partition 0: offsets 0..5, keys 1 2 1 3 1; partition 1: offset 0, key 1.
        s.accept(vec![item(0, 0, 1), item(0, 1, 2)]);
        let first = s.take_ready();
        let mut first = first.into_iter();
        let held = first.next().expect("offset 0");
        fail(&mut s, held);
        let other = first.next().expect("offset 1");
        s.finished(&other.tp, other.key, other.offset);
        s.accept(vec![
            item(0, 2, 1),
            item(0, 3, 3),
            item(0, 4, 1),
            item(1, 0, 1),
        ]);
        assert_eq!(
            store_all(&mut s),
            vec![3, 0],
            "key 3, and key 1 of another partition, flow; key 1 of partition 0 waits"
        );
        assert_eq!(
            commit_offsets(&mut s),
            vec![(0, 0, 7), (1, 1, 7)],
            "partition 0 stays at the waiting record"
        );

        tokio::time::advance(Duration::from_secs(1)).await;
        s.retry_due();
        assert_eq!(store_all(&mut s), vec![0], "the retry succeeds");
        assert_eq!(
            store_all(&mut s),
            vec![2, 4],
            "then the records that waited behind its key, in offset order"
        );
        assert_eq!(commit_offsets(&mut s), vec![(0, 5, 7)]);
        assert_eq!(s.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_record_that_fails_queues_behind_the_earlier_one_of_its_key() {
        let mut s = scheduler(false);
        s.accept(vec![item(0, 0, 1), item(0, 1, 1), item(0, 2, 1)]);
        let mut ready = s.take_ready().into_iter();
        let (a, b, c) = (
            ready.next().unwrap(),
            ready.next().unwrap(),
            ready.next().unwrap(),
        );
        // One store round refuses offsets 0 and 2: 0 holds the key, 2 waits behind it.
        assert!(fail(&mut s, a).is_some());
        assert!(fail(&mut s, c).is_some());
        s.finished(&b.tp, b.key, b.offset);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.retry_due();
        assert_eq!(
            offsets(&s.take_ready()[..]),
            vec![0],
            "only the holder is retried"
        );
        s.finished(&tp(0), Some(1), 0);
        let again = s.take_ready();
        assert_eq!(offsets(&again), vec![2], "then the one behind it, at once");
        assert_eq!(again[0].failure.as_ref().map(|f| f.attempts), Some(1));
        assert_eq!(commit_offsets(&mut s), vec![(0, 2, 7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn records_without_a_key_never_wait_for_each_other() {
        let mut s = scheduler(false);
        s.accept(vec![Item::for_test(&tp(0), 0, None)]);
        let failed = s.take_ready().pop().unwrap();
        fail(&mut s, failed);
        s.accept(vec![Item::for_test(&tp(0), 1, None)]);
        assert_eq!(store_all(&mut s), vec![1]);
        assert_eq!(commit_offsets(&mut s), vec![(0, 0, 7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoke_mid_retry_abandons_the_waiting_records_at_the_commit_point() {
        let mut s = scheduler(false);
        s.accept(vec![
            item(0, 0, 1),
            item(0, 1, 1),
            item(0, 2, 2),
            item(1, 0, 1),
        ]);
        let mut ready = s.take_ready().into_iter();
        fail(&mut s, ready.next().unwrap());
        for done in ready {
            s.finished(&done.tp, done.key, done.offset);
        }
        assert_eq!(s.abandon(&[tp(0)]), 1, "one record waited for a retry");
        assert_eq!(
            s.release(&[tp(0)]),
            vec![CommitPoint {
                tp: tp(0),
                offset: 0,
                epoch: 7
            }],
            "the next owner re-reads from the failed record"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        s.retry_due();
        assert!(s.take_ready().is_empty(), "the abandoned retry never runs");
        // A late step result or batch of the revoked assignment is dropped.
        let mut late = item(0, 1, 1);
        late.epoch = 7;
        assert!(!s.is_current(&late));
        s.passed_steps(late);
        s.accept(vec![item(0, 3, 3)]);
        assert!(s.take_ready().is_empty());
        assert_eq!(
            s.in_flight(),
            0,
            "partition 1 finished, partition 0 forgotten"
        );
        // The partition comes back under a new epoch: its commit points carry that epoch.
        s.assign(&[tp(0)], 8);
        s.accept(vec![item(0, 0, 1)]);
        assert_eq!(store_all(&mut s), vec![0]);
        assert_eq!(commit_offsets(&mut s), vec![(0, 1, 8), (1, 1, 7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn steps_hold_the_key_and_a_rejected_record_goes_to_the_dlq_as_poison() {
        let mut s = scheduler(true);
        s.accept(vec![item(0, 0, 1), item(0, 1, 1), item(0, 2, 2)]);
        let running = s.take_to_run();
        assert_eq!(
            offsets(&running),
            vec![0, 2],
            "offset 1 waits for offset 0's steps"
        );
        let mut running = running.into_iter();
        let first = running.next().unwrap();
        s.rejected(first, "step:lookup".into(), "never".into());
        let letters = s.take_letters();
        assert_eq!(letters[0].1, ErrorClass::Poison);
        assert_eq!(letters[0].0.error(), ("step:lookup", "never"));
        s.finished(&tp(0), Some(1), 0);
        assert_eq!(
            offsets(&s.take_to_run()),
            vec![1],
            "the DLQ ack releases the key"
        );
        s.passed_steps(running.next().unwrap());
        assert_eq!(store_all(&mut s), vec![2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_failing_its_steps_is_retried_from_the_steps() {
        let mut s = scheduler(true);
        s.accept(vec![item(0, 0, 1)]);
        let record = s.take_to_run().pop().unwrap();
        s.failed(record, "step:x".into(), "later".into(), Stage::Steps);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.retry_due();
        assert_eq!(offsets(&s.take_to_run()), vec![0]);
        assert!(s.take_ready().is_empty());
    }

    #[test]
    fn poison_goes_to_the_dlq_at_once_without_holding_its_key() {
        let mut s = scheduler(false);
        let mut poison = item(0, 0, 1);
        poison.poison = Some(Box::new(("invalid_json".into(), "not JSON".into())));
        s.accept(vec![poison, item(0, 1, 1)]);
        assert_eq!(s.take_letters()[0].1, ErrorClass::Poison);
        assert_eq!(offsets(&s.take_ready()), vec![1]);
        assert_eq!(
            commit_offsets(&mut s),
            vec![(0, 0, 7)],
            "until the DLQ acknowledges"
        );
    }
}
