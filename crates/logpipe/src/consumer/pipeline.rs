//! One member's processing pipeline, two stages joined by a short bounded channel, so batch N+1
//! is decoded while batch N is written:
//!
//! 1. **assemble**: collects records into a batch (`batch_size`, or `batch_linger` after the first
//!    record; while the writer is behind, a batch grows up to `max_batch_size`), then decodes and
//!    enriches it on `workers` lanes. A record's lane is chosen by its key, so one key's records
//!    are handled in order by one worker. A record that cannot be decoded is *poison*.
//! 2. **write** ([`Writer`]): schedules every record to an outcome: stored, or dead-lettered.
//!    - Poison goes to the dead-letter topic at once.
//!    - Processing steps ([`super::steps`], if any) run per record, concurrently across keys and
//!      one at a time per key.
//!    - Ready records are written to the log store in one COPY per round; a round of a backlog
//!      (at least two batches) as `store_streams` concurrent COPYs, each its own transaction.
//!    - A record that fails on its own (a step error, or the store refusing its row) is retried on
//!      the `[retry]` schedule. Meanwhile it holds back only its own key (later records of the key
//!      wait behind it) and its partition's commit point; other keys and partitions keep flowing
//!      and are stored. After the last attempt it goes to the dead-letter topic as `exhausted`.
//!    - Aggregates and commits advance per partition up to the *commit point*, the lowest offset
//!      not yet finished ([`OffsetTracker`]): everything below it is stored or acknowledged by the
//!      dead-letter topic. The aggregates are applied for that prefix in one watermark-checked
//!      update, then the offset is handed to the poll thread for commit. Records stored past a
//!      waiting record are kept as compact [`Contribution`]s until the prefix reaches them.
//!    - An *outage* (store, aggregates or dead-letter topic unreachable) is not the records'
//!      fault: the dependency's circuit opens, the poll thread pauses the member's partitions
//!      (keeping group membership and polling), and the same write is retried with backoff until
//!      it succeeds. Nothing goes to the dead-letter topic and nothing is committed meanwhile.
//!
//! Replays are harmless: the store ignores rows whose Kafka coordinates it already holds, and the
//! aggregates only count records past each partition's applied-offset watermark, checked and moved
//! atomically with the increments.
//!
//! Order: records of one key are processed in offset order (steps, retries). One exception: when
//! the store refuses a record, later records of its key already written in the same COPY stay
//! written; the refused record is retried alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use logpipe_aggregates::{Aggregates, ApplyOutcome, BatchDelta, Contribution};
use logpipe_model::{enrich, EnrichedLog, LogEvent, RecordMeta};
use logpipe_store::{LogStore, StoreError, WriteReport};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::dead_letter::{DeadLetters, Letter};
use super::member::{Epoch, Fetched, Finals, Input};
use super::offsets::{OffsetTracker, Tp};
use super::steps::{Step, StepError};
use super::{ConsumerMetrics, ConsumerStats};
use crate::config::RetryConfig;
use crate::dlq::{DlqContext, ErrorClass};
use crate::kafka::headers;

/// What a pipeline needs, shared by all members of a process.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<LogStore>,
    /// Concurrent writes a large round is split into (`consumer.store_streams`; 1 for SQLite).
    pub store_streams: usize,
    pub aggregates: Aggregates,
    pub dead_letters: Arc<DeadLetters>,
    pub steps: Arc<Vec<Arc<dyn Step>>>,
    pub retry: RetryConfig,
    pub group: String,
    pub limits: logpipe_model::Limits,
    pub tags: Arc<BTreeMap<String, String>>,
    pub workers: usize,
    pub batch_size: usize,
    pub max_batch_size: usize,
    pub batch_linger: Duration,
    pub max_uncommitted: usize,
    pub metrics: ConsumerMetrics,
    pub stats: Arc<ConsumerStats>,
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

/// Which dependencies are down, shared by a member's pipeline (writes it) and its poll thread
/// (pauses the partitions while any bit is set).
pub type OutageFlags = Arc<AtomicU8>;

/// The member this pipeline serves.
pub struct MemberLink {
    /// Instance id written into DLQ headers.
    pub member: String,
    pub outages: OutageFlags,
}

/// One record from fetch to outcome.
struct Item {
    tp: Tp,
    offset: i64,
    /// The assignment it arrived under: work for an earlier assignment is dropped.
    epoch: Epoch,
    /// Hash of the record key; None for records without a key (no ordering among them).
    key: Option<u64>,
    fetched_at: Instant,
    raw: Raw,
    /// The decoded record; None for poison (and while its row is being written).
    log: Option<EnrichedLog>,
    /// Why it can never be processed: (error type, message). Boxed, like `failure`: both are
    /// rare, and an `Item` is moved several times on the hot path (smaller is faster).
    poison: Option<Box<(String, String)>>,
    failure: Option<Box<Failure>>,
}

impl Item {
    /// The gateway request that carried it (for log lines), or "".
    fn request_id(&self) -> &str {
        self.raw
            .request_id_header
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or_default()
    }

    /// Why it is bound for the dead-letter topic: (error type, message).
    fn error(&self) -> (&str, &str) {
        match (self.poison.as_deref(), self.failure.as_deref()) {
            (Some((kind, message)), _) => (kind, message),
            (None, Some(f)) => (&f.error_type, &f.message),
            (None, None) => ("unknown", ""),
        }
    }

    /// Its trace id, when it was decoded and has one, or "".
    fn trace_id(&self) -> &str {
        self.log
            .as_ref()
            .and_then(|l| l.event.trace_id.as_ref())
            .map(|t| t.as_str())
            .unwrap_or_default()
    }
}

/// The record as it was in Kafka, kept for the dead-letter topic.
struct Raw {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    ingest_header: Option<Vec<u8>>,
    request_id_header: Option<Vec<u8>>,
    replay_count: u32,
}

/// Where a failed record is retried from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Steps,
    Store,
}

struct Failure {
    attempts: u32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    error_type: String,
    message: String,
    stage: Stage,
}

/// A decoded batch on its way to the writer, in fetch order (offset order within a partition).
struct Prepared {
    items: Vec<Item>,
}

enum Work {
    Batch(Prepared),
    Assigned(Vec<Tp>, Epoch),
    Revoked(Vec<Tp>, std_mpsc::SyncSender<Finals>),
}

/// Runs the pipeline until the poll thread closes its side.
pub async fn run(
    deps: Deps,
    link: MemberLink,
    rx: mpsc::Receiver<Input>,
    commits: std_mpsc::SyncSender<Finals>,
) {
    let (work_tx, work_rx) = mpsc::channel::<Work>(WORK_QUEUE);
    let state = Arc::new(WriterState::default());
    let writer = tokio::spawn(write_stage(
        deps.clone(),
        link,
        work_rx,
        commits,
        state.clone(),
    ));
    assemble_stage(deps, rx, work_tx, state).await;
    let _ = writer.await;
}

/// Capacity of the channel between the stages: one batch being decoded ahead of the writer.
const WORK_QUEUE: usize = 2;

/// Whether the writer is working on a batch, and a wake-up for the assemble stage when it stops.
#[derive(Default)]
struct WriterState {
    busy: AtomicBool,
    idle: tokio::sync::Notify,
}

async fn assemble_stage(
    deps: Deps,
    mut rx: mpsc::Receiver<Input>,
    work: mpsc::Sender<Work>,
    writer: Arc<WriterState>,
) {
    let mut batch: Vec<Fetched> = Vec::with_capacity(deps.batch_size);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let input = match deadline {
            Some(at) => tokio::select! {
                biased;
                input = rx.recv() => input,
                // The writer finished: what waits goes now, instead of at the deadline.
                _ = writer.idle.notified() => {
                    if work.capacity() == WORK_QUEUE && !writer.busy.load(Ordering::Acquire) {
                        flush(&deps, &mut batch, &work).await;
                        deadline = None;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(at) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(input) = input else {
            flush(&deps, &mut batch, &work).await;
            return;
        };
        let mut next = Some(input);
        while let Some(input) = next.take() {
            match input {
                Input::Record(record) => {
                    if batch.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + deps.batch_linger);
                    }
                    batch.push(record);
                    // An idle writer (nothing queued, nothing being written) gets the batch at
                    // once, with whatever else already arrived: no record waits for batch-mates
                    // then. A busy writer lets the batch grow: to batch_size, and past it up to
                    // max_batch_size while earlier batches still queue, so a backlog drains in
                    // few large writes; batch_linger bounds the wait.
                    let queued = WORK_QUEUE - work.capacity();
                    let idle = queued == 0 && !writer.busy.load(Ordering::Acquire);
                    if idle {
                        while batch.len() < deps.max_batch_size {
                            match rx.try_recv() {
                                Ok(Input::Record(more)) => batch.push(more),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    if idle
                        || batch.len() >= deps.max_batch_size
                        || (batch.len() >= deps.batch_size && queued == 0)
                    {
                        flush(&deps, &mut batch, &work).await;
                        deadline = None;
                    }
                }
                Input::Assigned(tps, epoch) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    if work.send(Work::Assigned(tps, epoch)).await.is_err() {
                        return writer_gone();
                    }
                }
                Input::Revoked(tps, reply) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    if work.send(Work::Revoked(tps, reply)).await.is_err() {
                        return writer_gone();
                    }
                }
            }
        }
        if work.is_closed() {
            return writer_gone();
        }
    }
}

/// The write stage ended unexpectedly. Returning drops the input, which makes the poll thread
/// leave the group, so the partitions move to a healthy member instead of piling up lag here.
fn writer_gone() {
    tracing::error!(
        "the write stage stopped; this member leaves the group so its partitions move elsewhere"
    );
}

async fn flush(deps: &Deps, batch: &mut Vec<Fetched>, work: &mpsc::Sender<Work>) {
    if batch.is_empty() {
        return;
    }
    let records = std::mem::replace(batch, Vec::with_capacity(deps.batch_size));
    let prepared = prepare(deps, records).await;
    let _ = work.send(Work::Batch(prepared)).await;
}

/// Decodes and enriches a batch on `workers` lanes (by key), then restores offset order.
async fn prepare(deps: &Deps, records: Vec<Fetched>) -> Prepared {
    let now = chrono::Utc::now();
    let lanes = deps.workers.min(records.len()).max(1);
    if lanes == 1 || records.len() < 64 {
        // Fetch order is offset order within each partition.
        let items = decode_lane(records, &deps.limits, &deps.tags, now);
        return Prepared { items };
    }
    let total = records.len();
    let mut split: Vec<Vec<Fetched>> = (0..lanes).map(|_| Vec::new()).collect();
    let mut positions: Vec<Vec<usize>> = (0..lanes).map(|_| Vec::new()).collect();
    for (position, record) in records.into_iter().enumerate() {
        let lane = (record.lane_hash % lanes as u64) as usize;
        split[lane].push(record);
        positions[lane].push(position);
    }
    let handles: Vec<_> = split
        .into_iter()
        .map(|lane| {
            let (limits, tags) = (deps.limits, deps.tags.clone());
            tokio::task::spawn_blocking(move || decode_lane(lane, &limits, &tags, now))
        })
        .collect();
    // Back in fetch order: each item to its original position (one move each, no sort).
    let mut slots: Vec<Option<Item>> = Vec::with_capacity(total);
    slots.resize_with(total, || None);
    for (handle, positions) in handles.into_iter().zip(positions) {
        match handle.await {
            Ok(part) => {
                for (item, position) in part.into_iter().zip(positions) {
                    slots[position] = Some(item);
                }
            }
            // decode_lane catches panics per record; a lane cannot panic as a whole.
            Err(e) => tracing::error!(error = %e, "decode worker failed"),
        }
    }
    Prepared {
        items: slots.into_iter().flatten().collect(),
    }
}

/// One lane: decode and enrich in order. A record that cannot be decoded is poison, kept with its
/// reason for the dead-letter topic.
fn decode_lane(
    records: Vec<Fetched>,
    limits: &logpipe_model::Limits,
    tags: &Arc<BTreeMap<String, String>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Item> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let payload = record.payload.as_deref().unwrap_or_default();
        // A panic in decode or enrich is a bug, but it must cost one record (sent to the DLQ
        // with its reason), not the batch or the task.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            LogEvent::decode(payload, limits).map(|event| {
                let meta = RecordMeta {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    kafka_timestamp_ms: record.timestamp_ms,
                    ingest_header: record.ingest_header.as_deref(),
                    request_id_header: record.request_id_header.as_deref(),
                };
                enrich(event, &meta, tags, now)
            })
        }));
        let (log, poison) = match decoded {
            Ok(Ok(log)) => (Some(log), None),
            Ok(Err(rejection)) => (
                None,
                Some(Box::new((
                    rejection.code().to_string(),
                    rejection.to_string(),
                ))),
            ),
            Err(_) => (
                None,
                Some(Box::new((
                    "panic".to_string(),
                    "decoding this record panicked (a logpipe bug; please report it)".to_string(),
                ))),
            ),
        };
        let tp = record.tp();
        out.push(Item {
            tp,
            offset: record.offset,
            epoch: 0,
            key: record.key.as_ref().map(|_| record.lane_hash),
            fetched_at: record.fetched_at,
            raw: Raw {
                key: record.key,
                payload: record.payload,
                timestamp_ms: record.timestamp_ms,
                ingest_header: record.ingest_header,
                request_id_header: record.request_id_header,
                replay_count: record.replay_count,
            },
            log,
            poison,
            failure: None,
        });
    }
    out
}

/// Records of one key waiting behind the record that holds the key (being retried, or in its
/// processing steps), in offset order.
struct KeyQueue {
    holder: i64,
    waiting: VecDeque<Item>,
}

/// A dependency's circuit: closed (healthy) or open since a time, with the backoff of the next
/// probe. While any circuit is open the member's partitions are paused.
struct Circuit {
    dependency: Dependency,
    opened: Option<Instant>,
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `log_consumer_circuit_state` values.
const CLOSED: i64 = 0;
const OPEN: i64 = 1;
const HALF_OPEN: i64 = 2;

impl Circuit {
    fn new(dependency: Dependency) -> Self {
        Circuit {
            dependency,
            opened: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The dependency failed: open (pausing the partitions), wait out the backoff, then let the
    /// caller probe again (half-open).
    async fn trip(&mut self, error: &str, metrics: &ConsumerMetrics, outages: &OutageFlags) {
        let name = self.dependency.as_str();
        metrics.outage(name);
        metrics.circuit(name, OPEN);
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
            outages.fetch_or(self.dependency as u8, Ordering::Relaxed);
            tracing::warn!(dependency = name, %error, "{name} unavailable: circuit open, partitions paused; retrying with backoff (nothing goes to the DLQ and nothing is committed meanwhile)");
        } else {
            tracing::debug!(dependency = name, %error, retry_in = ?self.backoff, "{name} still unavailable");
        }
        tokio::time::sleep(jittered(self.backoff, 0.2)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        metrics.circuit(name, HALF_OPEN);
    }

    fn succeeded(&mut self, metrics: &ConsumerMetrics, outages: &OutageFlags) {
        if let Some(since) = self.opened.take() {
            let name = self.dependency.as_str();
            outages.fetch_and(!(self.dependency as u8), Ordering::Relaxed);
            metrics.circuit(name, CLOSED);
            tracing::info!(
                dependency = name,
                down_for_ms = since.elapsed().as_millis() as u64,
                "{name} available again: circuit closed, partitions resume"
            );
        }
        self.backoff = FIRST_BACKOFF;
    }
}

/// Records per store write in a round of `records`: the round is split into up to `streams`
/// concurrent parts of at least `batch_size` records each (one part below two batches).
fn part_size(records: usize, batch_size: usize, streams: usize) -> usize {
    let parts = streams.min(records / batch_size.max(1)).max(1);
    records.div_ceil(parts).max(1)
}

/// Records a failed attempt in a record's `failure` (the first one starts it).
fn record_attempt(
    failure: &mut Option<Box<Failure>>,
    error_type: String,
    message: String,
    stage: Stage,
) -> &Failure {
    let now = Utc::now();
    let failure = failure.get_or_insert_with(|| {
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
    failure
}

/// `base` spread by +/- `fraction` at random.
fn jittered(base: Duration, fraction: f64) -> Duration {
    if fraction <= 0.0 || base.is_zero() {
        return base;
    }
    let factor = 1.0 + fraction * (2.0 * rand::random::<f64>() - 1.0);
    base.mul_f64(factor.max(0.0))
}

/// Outcome of a step run: the item back, and the failing step's name and error if any.
type StepRun = (Item, Result<(), (String, StepError)>);

struct Writer {
    deps: Deps,
    link: MemberLink,
    tracker: OffsetTracker,
    /// Applied-offset watermark of each owned partition in the aggregates.
    watermarks: HashMap<Tp, i64>,
    /// The assignment epoch of each owned partition (commits carry it; see `member::Epoch`).
    epochs: HashMap<Tp, Epoch>,
    commits: std_mpsc::SyncSender<Finals>,
    /// Keys held by a record in its steps or waiting for a retry, per partition.
    blocked: HashMap<(Tp, u64), KeyQueue>,
    /// Records waiting for their next attempt, with when it is due.
    retrying: Vec<(tokio::time::Instant, Item)>,
    /// Records in their processing steps.
    running: JoinSet<StepRun>,
    permits: Arc<Semaphore>,
    /// Records ready for the store.
    ready: Vec<Item>,
    /// Records bound for the dead-letter topic, with their class.
    letters: Vec<(Item, ErrorClass)>,
    /// Stored records not yet counted in the aggregates (their partition's commit point is
    /// behind them), by partition and offset.
    held: HashMap<Tp, BTreeMap<i64, Contribution>>,
    store_circuit: Circuit,
    aggregates_circuit: Circuit,
    dlq_circuit: Circuit,
}

async fn write_stage(
    deps: Deps,
    link: MemberLink,
    mut work: mpsc::Receiver<Work>,
    commits: std_mpsc::SyncSender<Finals>,
    state: Arc<WriterState>,
) {
    let permits = Arc::new(Semaphore::new(deps.workers));
    let mut w = Writer {
        deps,
        link,
        tracker: OffsetTracker::default(),
        watermarks: HashMap::new(),
        epochs: HashMap::new(),
        commits,
        blocked: HashMap::new(),
        retrying: Vec::new(),
        running: JoinSet::new(),
        permits,
        ready: Vec::new(),
        letters: Vec::new(),
        held: HashMap::new(),
        store_circuit: Circuit::new(Dependency::Store),
        aggregates_circuit: Circuit::new(Dependency::Aggregates),
        dlq_circuit: Circuit::new(Dependency::DeadLetters),
    };
    loop {
        w.write_ready().await;
        w.advance().await;
        if state.busy.swap(false, Ordering::AcqRel) {
            state.idle.notify_one();
        }
        let next_due = w.retrying.iter().map(|(due, _)| *due).min();
        // At the bound, stop taking records: the channel fills and the poll thread pauses.
        // (Always true when nothing else could wake the loop: a record lost by a bug must not
        // stall the member; it only holds its partition's commit point.)
        let can_take = w.uncommitted() < w.deps.max_uncommitted
            || (w.running.is_empty() && w.retrying.is_empty());
        tokio::select! {
            biased;
            Some(done) = w.running.join_next(), if !w.running.is_empty() => {
                w.step_finished(done);
                while let Some(done) = w.running.try_join_next() {
                    w.step_finished(done);
                }
            }
            _ = sleep_until_opt(next_due), if next_due.is_some() => w.retry_due(),
            item = work.recv(), if can_take => match item {
                None => break,
                Some(Work::Batch(batch)) => {
                    state.busy.store(true, Ordering::Release);
                    w.accept(batch)
                }
                Some(Work::Assigned(tps, epoch)) => {
                    for tp in &tps {
                        w.epochs.insert(tp.clone(), epoch);
                    }
                    w.load_watermarks(&tps).await;
                }
                Some(Work::Revoked(tps, reply)) => {
                    let finals = w.revoke(&tps).await;
                    let _ = reply.send(finals);
                }
            },
        }
    }
    // The poll thread is gone (it revoked everything first); write what is ready.
    w.write_ready().await;
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Writer {
    /// Records between fetch and commit (in flight, or stored but not yet countable).
    fn uncommitted(&self) -> usize {
        self.tracker.in_flight() + self.held.values().map(BTreeMap::len).sum::<usize>()
    }

    /// Adds each partition's assignment epoch to its commit point (0 if unknown: the poll thread
    /// then drops it, which is safe: a later commit or the next owner carries the progress).
    fn stamp(&self, points: Vec<(Tp, i64)>) -> Finals {
        points
            .into_iter()
            .map(|(tp, offset)| {
                let epoch = self.epochs.get(&tp).copied().unwrap_or(0);
                (tp, offset, epoch)
            })
            .collect()
    }

    fn current(&self, item: &Item) -> bool {
        self.epochs.get(&item.tp) == Some(&item.epoch)
    }

    /// A new batch: every record is tracked (the commit point cannot pass it until it has an
    /// outcome), then scheduled.
    fn accept(&mut self, batch: Prepared) {
        self.deps
            .metrics
            .batch_size
            .observe(batch.items.len() as f64);
        self.ready.reserve(batch.items.len());
        for mut item in batch.items {
            let Some(epoch) = self.epochs.get(&item.tp).copied() else {
                continue; // revoked while it was being decoded
            };
            item.epoch = epoch;
            self.tracker.track(&item.tp, item.offset);
            self.admit(item);
        }
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
        } else if self.deps.steps.is_empty() {
            self.ready.push(item);
        } else {
            self.run_steps(item);
        }
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

    /// The record has its outcome: the next record of its key (if any waited) starts.
    fn release_key(&mut self, tp: &Tp, key: Option<u64>, offset: i64) {
        let Some(key) = key else { return };
        let k = (tp.clone(), key);
        if self.blocked.get(&k).is_some_and(|q| q.holder == offset) {
            let queue = self.blocked.remove(&k).expect("checked above");
            for next in queue.waiting {
                self.admit(next);
            }
        }
    }

    fn run_steps(&mut self, item: Item) {
        self.hold_key(&item);
        let steps = self.deps.steps.clone();
        let timeout = self.deps.retry.attempt_timeout;
        let permits = self.permits.clone();
        self.running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = {
                let log = item.log.as_ref().expect("only decoded records run steps");
                let run = async {
                    for step in steps.iter() {
                        match tokio::time::timeout(timeout, step.run(log)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err((step.name().to_string(), e)),
                            Err(_) => {
                                return Err((
                                    step.name().to_string(),
                                    StepError::retryable(format!(
                                        "attempt timed out after {}",
                                        humantime::format_duration(timeout)
                                    )),
                                ))
                            }
                        }
                    }
                    Ok(())
                };
                std::panic::AssertUnwindSafe(run)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Err((
                            "panic".to_string(),
                            StepError::retryable("a processing step panicked"),
                        ))
                    })
            };
            (item, result)
        });
    }

    fn step_finished(&mut self, done: Result<StepRun, tokio::task::JoinError>) {
        let Ok((mut item, result)) = done else {
            // Unreachable (the task catches panics); the record stays in flight, so its offset is
            // never committed and the next owner re-reads it.
            tracing::error!("a processing step task was lost; its record will be re-read after the next rebalance");
            return;
        };
        if !self.current(&item) {
            return; // its partition was revoked meanwhile
        }
        match result {
            Ok(()) => self.ready.push(item),
            Err((step, e)) if e.permanent => {
                let error_type = format!("step:{step}");
                record_attempt(
                    &mut item.failure,
                    error_type.clone(),
                    e.message.clone(),
                    Stage::Steps,
                );
                item.poison = Some(Box::new((error_type, e.message)));
                self.letters.push((item, ErrorClass::Poison));
            }
            Err((step, e)) => self.fail(item, format!("step:{step}"), e.message, Stage::Steps),
        }
    }

    /// A failed attempt: schedule the next one, or give up (DLQ as `exhausted`).
    fn fail(&mut self, mut item: Item, error_type: String, message: String, stage: Stage) {
        let (request_id, trace_id) = (item.request_id().to_owned(), item.trace_id().to_owned());
        let failure = record_attempt(&mut item.failure, error_type, message, stage);
        let attempts = failure.attempts;
        let c = (&item.tp.0, item.tp.1, item.offset);
        if attempts >= self.deps.retry.attempts {
            tracing::warn!(topic = %c.0, partition = c.1, offset = c.2, %request_id, %trace_id, attempts, error_type = %failure.error_type, error = %failure.message, "record failed every attempt; sending it to the dead-letter topic");
            self.letters.push((item, ErrorClass::Exhausted));
            return;
        }
        let delay = jittered(
            self.deps.retry.delay_before(attempts + 1),
            self.deps.retry.jitter,
        );
        tracing::info!(topic = %c.0, partition = c.1, offset = c.2, %request_id, %trace_id, attempt = attempts, retry_in = ?delay, error_type = %failure.error_type, error = %failure.message, "record failed; retrying later (only its key waits)");
        self.deps.metrics.retries.inc();
        if let Some(key) = item.key {
            let held_by_other = self
                .blocked
                .get(&(item.tp.clone(), key))
                .is_some_and(|q| q.holder != item.offset);
            if held_by_other {
                // An earlier record of the key is itself waiting: this one queues behind it (in
                // offset order) and is tried again when its turn comes.
                let queue = self
                    .blocked
                    .get_mut(&(item.tp.clone(), key))
                    .expect("checked above");
                let at = queue
                    .waiting
                    .iter()
                    .position(|w| w.offset > item.offset)
                    .unwrap_or(queue.waiting.len());
                queue.waiting.insert(at, item);
                return;
            }
        }
        self.hold_key(&item);
        self.retrying
            .push((tokio::time::Instant::now() + delay, item));
    }

    fn retry_due(&mut self) {
        let now = tokio::time::Instant::now();
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

    /// Writes everything ready (store, then DLQ) until nothing is left: finishing a record can
    /// start the next one of its key.
    async fn write_ready(&mut self) {
        while !self.ready.is_empty() || !self.letters.is_empty() {
            let ready = std::mem::take(&mut self.ready);
            let letters = std::mem::take(&mut self.letters);
            if !ready.is_empty() {
                self.store(ready).await;
            }
            if !letters.is_empty() {
                self.dead_letter(letters).await;
            }
        }
    }

    /// One store write for the ready records; refused records (found by splitting) fail an
    /// attempt, the rest are done.
    async fn store(&mut self, mut items: Vec<Item>) {
        let logs: Vec<EnrichedLog> = items
            .iter_mut()
            .map(|i| i.log.take().expect("ready records are decoded"))
            .collect();
        let started = Instant::now();
        let mut outcome = StoreOutcome::default();
        // A round of at least two batches (a backlog) is written as concurrent parts, each its
        // own transaction: the server copies one part while the next is encoded and sent.
        let part = part_size(logs.len(), self.deps.batch_size, self.deps.store_streams);
        let store = &self.deps.store;
        let results = futures::future::join_all(logs.chunks(part).map(|p| store.write(p))).await;
        for (index, (logs, result)) in logs.chunks(part).zip(results).enumerate() {
            self.settle(result, logs, index * part, &mut outcome).await;
        }
        let m = self.deps.metrics.clone();
        m.store_seconds.observe(started.elapsed().as_secs_f64());

        let stored_at = Instant::now();
        let now = Utc::now();
        let refused: HashMap<usize, String> = outcome.refused.into_iter().collect();
        for (index, (mut item, log)) in items.into_iter().zip(logs).enumerate() {
            if let Some(error) = refused.get(&index) {
                item.log = Some(log);
                self.fail(item, "store_rejected".into(), error.clone(), Stage::Store);
                continue;
            }
            m.processing_time
                .observe(stored_at.duration_since(item.fetched_at).as_secs_f64());
            if let Some(ingested) = log.ingested_at {
                let seconds = (now - ingested).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                m.e2e_latency.observe(seconds);
                self.deps.stats.record_latency(seconds);
            }
            self.held
                .entry(item.tp.clone())
                .or_default()
                .insert(item.offset, Contribution::of(&log));
            self.tracker.done(&item.tp, item.offset);
            self.release_key(&item.tp, item.key, item.offset);
        }
        m.success.inc_by(outcome.inserted + outcome.duplicates);
        m.duplicates.inc_by(outcome.duplicates);
        self.deps.stats.add_stored(outcome.inserted);
    }

    /// Writes `logs` (starting at index `base` of the round), retrying outages behind the
    /// store's circuit; a write the store refuses is split in halves to find the refused rows.
    async fn write_logs(&mut self, logs: &[EnrichedLog], base: usize, out: &mut StoreOutcome) {
        if logs.is_empty() {
            return;
        }
        let first = self.deps.store.write(logs).await;
        self.settle(first, logs, base, out).await;
    }

    /// Settles one write of `logs`: counts it; or retries an outage behind the store's circuit
    /// until the write succeeds; or splits a write the store refused to find the refused rows.
    async fn settle(
        &mut self,
        mut result: Result<WriteReport, StoreError>,
        logs: &[EnrichedLog],
        base: usize,
        out: &mut StoreOutcome,
    ) {
        loop {
            match result {
                Ok(report) => {
                    self.store_circuit
                        .succeeded(&self.deps.metrics, &self.link.outages);
                    out.inserted += report.inserted;
                    out.duplicates += report.duplicates;
                    return;
                }
                Err(e) if e.is_outage() => {
                    self.store_circuit
                        .trip(&e.to_string(), &self.deps.metrics, &self.link.outages)
                        .await;
                }
                Err(e) => {
                    self.store_circuit
                        .succeeded(&self.deps.metrics, &self.link.outages);
                    if logs.len() == 1 {
                        out.refused.push((base, e.to_string()));
                        return;
                    }
                    let (left, right) = logs.split_at(logs.len() / 2);
                    Box::pin(self.write_logs(left, base, out)).await;
                    Box::pin(self.write_logs(right, base + left.len(), out)).await;
                    return;
                }
            }
            result = self.deps.store.write(logs).await;
        }
    }

    /// Sends records to the dead-letter topic; each is done only once Kafka acknowledged it. A
    /// failed send is a DLQ outage: retried behind its circuit, never dropped.
    async fn dead_letter(&mut self, mut pending: Vec<(Item, ErrorClass)>) {
        while !pending.is_empty() {
            let letters: Vec<Letter> = pending
                .iter()
                .map(|(item, class)| self.letter(item, *class))
                .collect();
            let results = self.deps.dead_letters.send(&letters).await;
            let mut failed = Vec::new();
            let mut error = None;
            for ((item, class), result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        let m = &self.deps.metrics;
                        m.dead_lettered(class.as_str());
                        let (reason, _) = item.error();
                        m.failed(reason);
                        if class == ErrorClass::Poison {
                            tracing::warn!(topic = %item.tp.0, partition = item.tp.1, offset = item.offset, request_id = item.request_id(), reason = %reason, "poison record sent to the dead-letter topic");
                        }
                        self.tracker.done(&item.tp, item.offset);
                        self.release_key(&item.tp, item.key, item.offset);
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        failed.push((item, class));
                    }
                }
            }
            if let Some(error) = error {
                self.dlq_circuit
                    .trip(&error, &self.deps.metrics, &self.link.outages)
                    .await;
            } else {
                self.dlq_circuit
                    .succeeded(&self.deps.metrics, &self.link.outages);
            }
            pending = failed;
        }
    }

    fn letter(&self, item: &Item, class: ErrorClass) -> Letter {
        let now = Utc::now();
        let (error_type, message) = item.error();
        let (attempts, first, last) = item
            .failure
            .as_ref()
            .map_or((1, now, now), |f| (f.attempts.max(1), f.first, f.last));
        let mut carried = Vec::new();
        if let Some(v) = &item.raw.ingest_header {
            carried.push((headers::INGEST_TIME_MS, v.clone()));
        }
        if let Some(v) = &item.raw.request_id_header {
            carried.push((headers::REQUEST_ID, v.clone()));
        }
        Letter {
            key: item.raw.key.clone(),
            value: item.raw.payload.clone(),
            context: DlqContext {
                original_topic: item.tp.0.to_string(),
                original_partition: item.tp.1,
                original_offset: item.offset,
                original_timestamp_ms: item.raw.timestamp_ms,
                consumer_group: self.deps.group.clone(),
                instance_id: self.link.member.clone(),
                class,
                error_type: error_type.to_owned(),
                error_message: message.to_owned(),
                attempts,
                first_failure: first,
                last_failure: last,
                version: env!("CARGO_PKG_VERSION").to_string(),
                replay_count: item.raw.replay_count,
            },
            carried,
        }
    }

    /// Counts what became countable and hands the moved commit points to the poll thread.
    async fn advance(&mut self) {
        let tps = self.tracker.partitions();
        self.count(&tps).await;
        let taken = self.tracker.take_commits();
        let moved = self.stamp(taken);
        if moved.is_empty() {
            return;
        }
        if let Err(e) = self.commits.try_send(moved) {
            // Handed out but not sent: mark it unsent so the next round sends it again.
            let unsent = match e {
                std_mpsc::TrySendError::Full(m) | std_mpsc::TrySendError::Disconnected(m) => m,
            };
            let unsent: Vec<(Tp, i64)> = unsent.into_iter().map(|(tp, o, _)| (tp, o)).collect();
            self.tracker.unsend(&unsent);
        }
    }

    /// Applies the aggregates of each partition up to its commit point, in one atomic,
    /// watermark-checked update. A conflict (another member counted first) reloads the
    /// watermarks and recounts; an outage is retried behind the aggregates circuit.
    async fn count(&mut self, tps: &[Tp]) {
        let started = Instant::now();
        let mut applied = false;
        loop {
            let missing: Vec<Tp> = tps
                .iter()
                .filter(|tp| !self.watermarks.contains_key(*tp))
                .cloned()
                .collect();
            if !missing.is_empty() {
                self.load_watermarks(&missing).await;
            }
            let mut delta = BatchDelta::new();
            let mut targets = Vec::new();
            for tp in tps {
                let Some(point) = self.tracker.commit_point(tp) else {
                    continue;
                };
                let through = point - 1;
                let after = self.watermarks.get(tp).copied().unwrap_or(-1);
                if through <= after {
                    continue;
                }
                delta.cover(&tp.0, tp.1, after, through);
                if let Some(held) = self.held.get(tp) {
                    for (offset, contribution) in held.range(after + 1..=through) {
                        delta.add_contribution(&tp.0, tp.1, *offset, contribution);
                    }
                }
                targets.push((tp.clone(), through));
            }
            if targets.is_empty() {
                break;
            }
            match self.deps.aggregates.apply(&delta).await {
                Ok(ApplyOutcome::Applied { .. }) => {
                    self.aggregates_circuit
                        .succeeded(&self.deps.metrics, &self.link.outages);
                    for (tp, through) in targets {
                        self.watermarks.insert(tp, through);
                    }
                    applied = true;
                    break;
                }
                Ok(ApplyOutcome::Conflict { partitions }) => {
                    self.aggregates_circuit
                        .succeeded(&self.deps.metrics, &self.link.outages);
                    tracing::info!(?partitions, "aggregate watermark moved under us (another member counted first); recounting");
                    for (topic, partition, actual) in partitions {
                        let tp: Tp = (Arc::from(topic.as_str()), partition);
                        if self
                            .watermarks
                            .get(&tp)
                            .is_some_and(|cached| actual < *cached)
                        {
                            tracing::error!(%topic, partition, actual, "aggregate watermark went BACKWARDS: the aggregates store lost data (restart without persistence, eviction?); counts for the lost range are missing. Run Redis with persistence and maxmemory-policy noeviction");
                        }
                        self.watermarks.insert(tp, actual);
                    }
                }
                Err(e) => {
                    self.aggregates_circuit
                        .trip(&e.to_string(), &self.deps.metrics, &self.link.outages)
                        .await;
                }
            }
        }
        if applied {
            self.deps
                .metrics
                .aggregate_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        // Contributions at or below the watermark are counted (or were, by a replay's first run).
        for tp in tps {
            let mark = self.watermarks.get(tp).copied().unwrap_or(-1);
            if let Some(held) = self.held.get_mut(tp) {
                *held = held.split_off(&(mark + 1));
            }
        }
    }

    async fn load_watermarks(&mut self, tps: &[Tp]) {
        let mut by_topic: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        for (topic, partitions) in by_topic {
            loop {
                match self.deps.aggregates.watermarks(&topic, &partitions).await {
                    Ok(marks) => {
                        self.aggregates_circuit
                            .succeeded(&self.deps.metrics, &self.link.outages);
                        for (p, mark) in marks {
                            self.watermarks.insert((topic.clone(), p), mark);
                        }
                        break;
                    }
                    Err(e) => {
                        self.aggregates_circuit
                            .trip(&e.to_string(), &self.deps.metrics, &self.link.outages)
                            .await;
                    }
                }
            }
        }
    }

    /// Revoke: write what is ready, abandon what waits (retries, queued records, running
    /// steps: the next owner re-reads them from the commit point), count and return the final
    /// commit points.
    async fn revoke(&mut self, tps: &[Tp]) -> Finals {
        self.write_ready().await;
        let revoked: BTreeSet<&Tp> = tps.iter().collect();
        let before = self.retrying.len();
        self.retrying
            .retain(|(_, item)| !revoked.contains(&item.tp));
        let abandoned = before - self.retrying.len();
        self.blocked.retain(|(tp, _), _| !revoked.contains(tp));
        if abandoned > 0 {
            tracing::info!(
                abandoned,
                "rebalance: records waiting for a retry left to the next owner"
            );
        }
        self.count(tps).await;
        let released = self.tracker.release(tps);
        let finals = self.stamp(released);
        for tp in tps {
            self.watermarks.remove(tp);
            self.epochs.remove(tp);
            self.held.remove(tp);
        }
        finals
    }
}

#[derive(Default)]
struct StoreOutcome {
    inserted: u64,
    duplicates: u64,
    /// Index in the round and the store's error, for each refused record.
    refused: Vec<(usize, String)>,
}

#[cfg(test)]
mod tests {
    use super::part_size;

    #[test]
    fn a_round_is_split_only_when_it_holds_two_batches() {
        // (records, batch_size, streams) -> records per part
        let cases = [
            (499, 500, 2, 499),   // below one batch: one write
            (999, 500, 2, 999),   // below two batches: one write
            (1000, 500, 2, 500),  // two batches: two parts
            (5000, 500, 2, 2500), // a backlog round: two parts
            (5001, 500, 2, 2501), // uneven: the last part is one short
            (5000, 500, 1, 5000), // one stream (SQLite, or configured): never split
            (5000, 500, 4, 1250), // more streams, more parts
            (1500, 500, 4, 500),  // no part below batch_size
            (7, 1, 2, 4),         // the test setting: any round of two or more is split
            (1, 1, 2, 1),
        ];
        for (records, batch_size, streams, expected) in cases {
            assert_eq!(
                part_size(records, batch_size, streams),
                expected,
                "{records} records, batch_size {batch_size}, {streams} streams"
            );
        }
    }
}
