//! One member's processing pipeline, two stages joined by a short bounded channel, so batch N+1
//! is decoded while batch N is written:
//!
//! 1. **assemble**: collects records into a batch (`batch_size`, or `batch_linger` after the first
//!    record; while the writer is behind, a batch grows up to `max_batch_size`), then decodes and
//!    enriches it on `workers` lanes. A record's lane is chosen by its
//!    key, so one key's records are handled in order by one worker.
//! 2. **write**: one batch at a time, in order: the log store (one COPY), then the aggregates (one
//!    atomic, watermark-checked update), then the offsets move and are handed to the poll thread
//!    for commit. A dependency outage (store or aggregates unreachable) is not the records'
//!    fault: the writer retries the same batch with backoff, nothing is skipped and nothing is
//!    committed meanwhile, and the poll thread pauses the partitions as the channel fills.
//!
//! Replays are harmless: the store ignores rows whose Kafka coordinates it already holds, and the
//! aggregates only count records past each partition's applied-offset watermark, checked and moved
//! atomically with the increments.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logpipe_aggregates::{AggError, Aggregates, ApplyOutcome, BatchDelta};
use logpipe_model::{enrich, EnrichedLog, LogEvent, RecordMeta};
use logpipe_store::{LogStore, StoreError};
use tokio::sync::mpsc;

use super::member::{Epoch, Fetched, Finals, Input};
use super::offsets::{OffsetTracker, Tp};
use super::{ConsumerMetrics, ConsumerStats};

/// What a pipeline needs, shared by all members of a process.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<LogStore>,
    pub aggregates: Aggregates,
    pub limits: logpipe_model::Limits,
    pub tags: Arc<BTreeMap<String, String>>,
    pub workers: usize,
    pub batch_size: usize,
    pub max_batch_size: usize,
    pub batch_linger: Duration,
    pub metrics: ConsumerMetrics,
    pub stats: Arc<ConsumerStats>,
}

/// A decoded batch on its way to the writer.
struct Prepared {
    logs: Vec<EnrichedLog>,
    /// Every record of the batch (stored or not): partition, offset, when it was fetched.
    records: Vec<(Tp, i64, Instant)>,
}

enum Work {
    Batch(Prepared),
    Assigned(Vec<Tp>, Epoch),
    Revoked(Vec<Tp>, std_mpsc::SyncSender<Finals>),
}

/// Runs the pipeline until the poll thread closes its side.
pub async fn run(deps: Deps, rx: mpsc::Receiver<Input>, commits: std_mpsc::SyncSender<Finals>) {
    let (work_tx, work_rx) = mpsc::channel::<Work>(2);
    let writer = tokio::spawn(write_stage(deps.clone(), work_rx, commits));
    assemble_stage(deps, rx, work_tx).await;
    let _ = writer.await;
}

async fn assemble_stage(deps: Deps, mut rx: mpsc::Receiver<Input>, work: mpsc::Sender<Work>) {
    let mut batch: Vec<Fetched> = Vec::with_capacity(deps.batch_size);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let input = match deadline {
            Some(at) => tokio::select! {
                biased;
                input = rx.recv() => input,
                _ = tokio::time::sleep_until(at) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match input {
            Some(Input::Record(record)) => {
                if batch.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + deps.batch_linger);
                }
                batch.push(record);
                // Full at batch_size, unless the writer is still busy with earlier batches: then
                // the batch keeps growing (up to max_batch_size) instead of queueing behind them.
                // A backlog is drained in few large writes; without one, nothing waits longer.
                let writer_busy = work.capacity() == 0;
                if batch.len() >= deps.max_batch_size
                    || (batch.len() >= deps.batch_size && !writer_busy)
                {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                }
            }
            Some(Input::Assigned(tps, epoch)) => {
                flush(&deps, &mut batch, &work).await;
                deadline = None;
                if work.send(Work::Assigned(tps, epoch)).await.is_err() {
                    return writer_gone();
                }
            }
            Some(Input::Revoked(tps, reply)) => {
                flush(&deps, &mut batch, &work).await;
                deadline = None;
                if work.send(Work::Revoked(tps, reply)).await.is_err() {
                    return writer_gone();
                }
            }
            None => {
                flush(&deps, &mut batch, &work).await;
                return;
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
    let meta: Vec<(Tp, i64, Instant)> = records
        .iter()
        .map(|r| (r.tp(), r.offset, r.fetched_at))
        .collect();
    let lanes = deps.workers.min(records.len()).max(1);
    let mut logs = if lanes == 1 || records.len() < 64 {
        decode_lane(records, &deps.limits, &deps.tags, now, &deps.metrics)
    } else {
        let mut split: Vec<Vec<Fetched>> = (0..lanes).map(|_| Vec::new()).collect();
        for record in records {
            let lane = (record.lane_hash % lanes as u64) as usize;
            split[lane].push(record);
        }
        let handles: Vec<_> = split
            .into_iter()
            .map(|lane| {
                let (limits, tags, metrics) =
                    (deps.limits, deps.tags.clone(), deps.metrics.clone());
                tokio::task::spawn_blocking(move || {
                    decode_lane(lane, &limits, &tags, now, &metrics)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            match handle.await {
                Ok(part) => all.extend(part),
                Err(e) => tracing::error!(error = %e, "decode worker panicked"),
            }
        }
        all
    };
    logs.sort_by(|a, b| a.coordinates.cmp(&b.coordinates));
    Prepared {
        logs,
        records: meta,
    }
}

/// One lane: decode and enrich in order. Undecodable records are counted and logged with their
/// coordinates; they are not stored. (The dead-letter topic takes them in a later milestone.)
fn decode_lane(
    records: Vec<Fetched>,
    limits: &logpipe_model::Limits,
    tags: &Arc<BTreeMap<String, String>>,
    now: chrono::DateTime<chrono::Utc>,
    metrics: &ConsumerMetrics,
) -> Vec<EnrichedLog> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let payload = record.payload.as_deref().unwrap_or_default();
        // A panic in decode or enrich is a bug, but it must cost one record, counted and logged,
        // not the batch or the task.
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
        let Ok(decoded) = decoded else {
            metrics.failed("panic");
            tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, "decoding this record panicked (a bug); skipped");
            continue;
        };
        match decoded {
            Ok(log) => out.push(log),
            Err(rejection) => {
                metrics.failed(rejection.code());
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    reason = %rejection,
                    "undecodable record skipped"
                );
            }
        }
    }
    out
}

struct Writer {
    deps: Deps,
    tracker: OffsetTracker,
    /// Applied-offset watermark of each owned partition in the aggregates.
    watermarks: HashMap<Tp, i64>,
    /// The assignment epoch of each owned partition (commits carry it; see `member::Epoch`).
    epochs: HashMap<Tp, Epoch>,
    commits: std_mpsc::SyncSender<Finals>,
}

async fn write_stage(
    deps: Deps,
    mut work: mpsc::Receiver<Work>,
    commits: std_mpsc::SyncSender<Finals>,
) {
    let mut writer = Writer {
        deps,
        tracker: OffsetTracker::default(),
        watermarks: HashMap::new(),
        epochs: HashMap::new(),
        commits,
    };
    while let Some(item) = work.recv().await {
        match item {
            Work::Batch(batch) => writer.write(batch).await,
            Work::Assigned(tps, epoch) => {
                for tp in &tps {
                    writer.epochs.insert(tp.clone(), epoch);
                }
                writer.load_watermarks(&tps).await;
            }
            Work::Revoked(tps, reply) => {
                for tp in &tps {
                    writer.watermarks.remove(tp);
                }
                let released = writer.tracker.release(&tps);
                let finals = writer.stamp(released);
                for tp in &tps {
                    writer.epochs.remove(tp);
                }
                let _ = reply.send(finals);
            }
        }
    }
}

/// Backoff for dependency outages: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

impl Writer {
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

    async fn write(&mut self, batch: Prepared) {
        for (tp, offset, _) in &batch.records {
            self.tracker.track(tp, *offset);
        }
        let m = self.deps.metrics.clone();
        m.batch_size.observe(batch.records.len() as f64);

        let started = Instant::now();
        let (inserted, duplicates) = self.store(&batch.logs).await;
        m.store_seconds.observe(started.elapsed().as_secs_f64());

        let started = Instant::now();
        self.aggregate(&batch).await;
        m.aggregate_seconds.observe(started.elapsed().as_secs_f64());

        let durable = Instant::now();
        let now = chrono::Utc::now();
        for (tp, offset, fetched_at) in &batch.records {
            self.tracker.done(tp, *offset);
            m.processing_time
                .observe(durable.duration_since(*fetched_at).as_secs_f64());
        }
        for log in &batch.logs {
            if let Some(ingested) = log.ingested_at {
                let seconds = (now - ingested).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                m.e2e_latency.observe(seconds);
                self.deps.stats.record_latency(seconds);
            }
        }
        m.success.inc_by(inserted + duplicates);
        m.duplicates.inc_by(duplicates);
        self.deps.stats.add_stored(inserted);
        let taken = self.tracker.take_commits();
        let moved = self.stamp(taken);
        if !moved.is_empty() {
            if let Err(e) = self.commits.try_send(moved) {
                // Handed out but not sent: mark it unsent so the next batch sends it again.
                let unsent = match e {
                    std_mpsc::TrySendError::Full(m) | std_mpsc::TrySendError::Disconnected(m) => m,
                };
                let unsent: Vec<(Tp, i64)> = unsent.into_iter().map(|(tp, o, _)| (tp, o)).collect();
                self.tracker.unsend(&unsent);
            }
        }
    }

    /// Writes to the log store, retrying outages; a batch the store refuses is split to find the
    /// records it refuses, which are counted as failed and skipped.
    async fn store(&self, logs: &[EnrichedLog]) -> (u64, u64) {
        if logs.is_empty() {
            return (0, 0);
        }
        let mut backoff = Backoff::new();
        loop {
            match self.deps.store.write(logs).await {
                Ok(report) => return (report.inserted, report.duplicates),
                Err(e) if e.is_outage() => {
                    self.deps.metrics.outage("store");
                    tracing::warn!(error = %e, retry_in = ?backoff.0, "log store unavailable; retrying the batch (nothing is skipped or committed meanwhile)");
                    backoff.wait().await;
                }
                Err(e) => return Box::pin(self.store_refused(logs, e)).await,
            }
        }
    }

    async fn store_refused(&self, logs: &[EnrichedLog], error: StoreError) -> (u64, u64) {
        if logs.len() == 1 {
            let c = &logs[0].coordinates;
            self.deps.metrics.failed("store_rejected");
            tracing::error!(topic = %c.topic, partition = c.partition, offset = c.offset, error = %error, "the log store refused this record; skipped");
            return (0, 0);
        }
        let (left, right) = logs.split_at(logs.len() / 2);
        let a = self.store(left).await;
        let b = self.store(right).await;
        (a.0 + b.0, a.1 + b.1)
    }

    async fn load_watermarks(&mut self, tps: &[Tp]) {
        let mut by_topic: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        for (topic, partitions) in by_topic {
            let mut backoff = Backoff::new();
            loop {
                match self.deps.aggregates.watermarks(&topic, &partitions).await {
                    Ok(marks) => {
                        for (p, mark) in marks {
                            self.watermarks.insert((topic.clone(), p), mark);
                        }
                        break;
                    }
                    Err(e) => {
                        self.deps.metrics.outage("aggregates");
                        tracing::warn!(error = %e, retry_in = ?backoff.0, "aggregates unavailable while reading watermarks; retrying");
                        backoff.wait().await;
                    }
                }
            }
        }
    }

    /// Counts the batch once: only records past each partition's watermark, moving the
    /// watermark atomically with the counts. A conflict (another member got there first) reloads
    /// the watermarks and recounts.
    async fn aggregate(&mut self, batch: &Prepared) {
        let mut backoff = Backoff::new();
        loop {
            let missing: Vec<Tp> = batch
                .records
                .iter()
                .map(|(tp, _, _)| tp.clone())
                .filter(|tp| !self.watermarks.contains_key(tp))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                self.load_watermarks(&missing).await;
            }
            let Some(delta) = self.delta(batch) else {
                return; // everything already counted (a replay)
            };
            match self.deps.aggregates.apply(&delta).await {
                Ok(ApplyOutcome::Applied { .. }) => {
                    for (tp, through) in Self::ranges(batch) {
                        let mark = self.watermarks.entry(tp).or_insert(-1);
                        *mark = (*mark).max(through);
                    }
                    return;
                }
                Ok(ApplyOutcome::Conflict { partitions }) => {
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
                    self.report_aggregate_error(&e);
                    backoff.wait().await;
                }
            }
        }
    }

    fn report_aggregate_error(&self, e: &AggError) {
        self.deps.metrics.outage("aggregates");
        tracing::warn!(error = %e, "aggregates unavailable; retrying the batch (nothing is committed meanwhile)");
    }

    /// The highest offset of each partition in the batch.
    fn ranges(batch: &Prepared) -> BTreeMap<Tp, i64> {
        let mut ranges: BTreeMap<Tp, i64> = BTreeMap::new();
        for (tp, offset, _) in &batch.records {
            let through = ranges.entry(tp.clone()).or_insert(*offset);
            *through = (*through).max(*offset);
        }
        ranges
    }

    /// The increments of the records past each watermark, or None when there are none.
    fn delta(&self, batch: &Prepared) -> Option<BatchDelta> {
        let mut delta = BatchDelta::new();
        let mut covered = false;
        for (tp, through) in Self::ranges(batch) {
            let after = self.watermarks.get(&tp).copied().unwrap_or(-1);
            if through > after {
                delta.cover(&tp.0, tp.1, after, through);
                covered = true;
            }
        }
        if !covered {
            return None;
        }
        for log in &batch.logs {
            let c = &log.coordinates;
            let after = self
                .watermarks
                .get(&(c.topic.clone(), c.partition))
                .copied()
                .unwrap_or(-1);
            if c.offset > after {
                delta.add(log);
            }
        }
        Some(delta)
    }
}
