//! One member's processing pipeline, two stages joined by a short bounded channel, so batch N+1
//! is decoded while batch N is written:
//!
//! 1. **assemble**: collects records into a batch (`batch_size`, or `batch_linger` after the first
//!    record; while the writer is behind, a batch grows up to `max_batch_size`), then decodes and
//!    enriches it on `workers` lanes. A record's lane is chosen by its key, so one key's records
//!    are handled in order by one worker. A record that cannot be decoded is *poison*. A record
//!    decodes to one event, or to many (an OTLP export request, [`otlp_records`]); either way
//!    the record stays the unit of everything below: steps, retries, the dead-letter topic,
//!    commit points.
//! 2. **write** ([`writer`]): schedules every record to an outcome: stored, or dead-lettered.
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
//!      not yet finished ([`crate::consumer::offsets::OffsetTracker`]): everything below it is stored or acknowledged by the
//!      dead-letter topic. The aggregates are applied for that prefix in one watermark-checked
//!      update, then the offset is handed to the poll thread for commit. Records stored past a
//!      waiting record are kept as compact [`logpipe_aggregates::Contribution`]s until the prefix reaches them.
//!    - An *outage* (store, aggregates or dead-letter topic unreachable) is not the records'
//!      fault: the dependency's circuit opens, the poll thread pauses the member's partitions
//!      (keeping group membership and polling), and the same write is retried with backoff until
//!      it succeeds. Nothing goes to the dead-letter topic and nothing is committed meanwhile.
//!
//! Replays are harmless: the store ignores rows whose Kafka coordinates (with the event's index
//! in its record) it already holds, and the aggregates only count records past each partition's
//! applied-offset watermark, checked and moved atomically with the increments.
//!
//! Order: records of one key are processed in offset order (steps, retries). One exception: when
//! the store refuses a record, later records of its key already written in the same COPY stay
//! written; the refused record is retried alone.
//!
//! Files, in the order a record meets them: [`batch`] (the assemble stage), [`decode`] (decode
//! and enrich lanes, reading each topic's [`formats`]: [`json`], [`otlp_records`], their
//! [`decoded`] result), [`writer`] (the write stage's event loop), [`scheduler`] (per-key order,
//! retries, commit points), [`step_runner`] (processing steps), [`store`] (store writes with
//! bisection), [`letters`] (dead-lettering), [`tally`] (aggregates and watermarks), [`circuit`]
//! (outage circuit breakers); [`item`] is the record on its way.

pub mod batch;
pub mod circuit;
pub mod decode;
pub mod decoded;
pub mod formats;
pub mod item;
pub mod json;
pub mod letters;
pub mod otlp_records;
pub mod scheduler;
pub mod step_runner;
pub mod store;
pub mod tally;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use logpipe_aggregates::Aggregates;
use logpipe_store::LogStore;
use tokio::sync::mpsc;

use super::dead_letter::DeadLetters;
use super::handoff::{Epoch, Finals, Input, OutageFlags};
use super::offsets::Tp;
use super::steps::Step;
use super::{ConsumerMetrics, ConsumerStats};
use crate::config::RetryConfig;
use item::Prepared;

/// What a pipeline needs, shared by all members of a process.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<LogStore>,
    /// Concurrent writes a large round is split into (`consumer.store_streams`; 1 for SQLite).
    pub store_streams: usize,
    pub aggregates: Aggregates,
    /// The process's reconciler, woken when a member found a loss; `None` when
    /// `redis.reconcile` is off (or the aggregates are in-process).
    pub reconcile: Option<Arc<tokio::sync::Notify>>,
    pub dead_letters: Arc<DeadLetters>,
    pub steps: Arc<Vec<Arc<dyn Step>>>,
    pub retry: RetryConfig,
    pub group: String,
    pub limits: logpipe_model::Limits,
    /// The record format of each consumed topic.
    pub formats: Arc<formats::Formats>,
    pub tags: Arc<BTreeMap<String, String>>,
    pub workers: usize,
    pub batch_size: usize,
    pub max_batch_size: usize,
    pub batch_linger: Duration,
    pub max_uncommitted: usize,
    pub metrics: ConsumerMetrics,
    pub stats: Arc<ConsumerStats>,
}

/// The member this pipeline serves.
pub struct MemberLink {
    /// Instance id written into DLQ headers.
    pub member: String,
    pub outages: OutageFlags,
}

/// What the assemble stage hands the writer, in order.
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
    let writer = tokio::spawn(writer::write_stage(
        deps.clone(),
        link,
        work_rx,
        commits,
        state.clone(),
    ));
    batch::assemble_stage(deps, rx, work_tx, state).await;
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
