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

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::item::{Item, Stage};
use crate::config::RetryConfig;
use crate::consumer::handoff::{CommitPoint, Epoch, Finals};
use crate::consumer::offsets::{OffsetTracker, Tp, TpMap};
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
    epochs: TpMap<Tp, Epoch>,
    /// Keys held by a record in its steps or waiting for a retry, per partition.
    blocked: TpMap<(Tp, u64), KeyQueue>,
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
            epochs: TpMap::default(),
            blocked: TpMap::default(),
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
mod tests;
