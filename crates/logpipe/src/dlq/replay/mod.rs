//! `logpipe dlq replay`: republishes DLQ records to their original topics, or parks them.
//!
//! - A matching record is republished to its original topic with its key and value bytes
//!   unchanged, its original Kafka timestamp, the original record's own headers
//!   (`logpipe-ingest-ms`, `logpipe-request-id`: every header that is not `logpipe-dlq-*`) and
//!   `logpipe-replay-count` = previous count + 1. A record already replayed `dlq.max_replays`
//!   times is *parked* instead: written to `kafka.parked_topic` with all its DLQ headers (and the
//!   count incremented), so a record that keeps failing does not loop forever ([`action`]).
//! - The producer is idempotent with acks=all ([`publish`]). Progress is committed to the consumer
//!   group `dlq.replay_group` (the next offset per DLQ partition) only after Kafka acknowledged
//!   every produce up to that offset ([`progress`]). Records the filters skip, and unreadable
//!   records, are committed past as well: the group records how far the DLQ has been *reviewed*,
//!   not what was replayed. `--from-beginning` reviews the whole topic again (and republishes what
//!   matches again).
//! - At least once: if the tool dies between an acknowledged produce and its commit, the next run
//!   republishes that record again.

mod action;
mod progress;
mod publish;

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::message::Message;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use action::{parked_headers, replay_headers, Action, ReplayAction};
use progress::{Done, Pending, Progress};

use super::filter::{Filter, ReplayArgs};
use super::record::{DlqRecord, Unreadable};
use super::scan::{require_brokers, DlqScan, PartitionProgress};
use crate::config::Config;

/// Replay commits its progress at most this often (and once at the end).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Replay keeps at most this many records in flight (enqueued, not yet acknowledged).
const MAX_IN_FLIGHT: usize = 1000;

/// How `replay` runs.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub filter: Filter,
    /// Records per second at most.
    pub rate: Option<f64>,
    pub dry_run: bool,
    pub from_beginning: bool,
    /// Stop after this many matching records.
    pub limit: Option<u64>,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

impl From<&ReplayArgs> for ReplayOptions {
    fn from(args: &ReplayArgs) -> Self {
        ReplayOptions {
            filter: args.filter.clone(),
            rate: args.rate,
            dry_run: args.dry_run,
            from_beginning: args.from_beginning,
            limit: args.limit,
            progress: !args.json,
        }
    }
}

/// What `logpipe dlq replay` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub dry_run: bool,
    pub group: String,
    /// Republished to their original topics (dry run: would be).
    pub replayed: u64,
    /// Written to the parked topic (dry run: would be).
    pub parked: u64,
    /// Read but not matching the filters.
    pub skipped_by_filter: u64,
    pub unreadable: Vec<Unreadable>,
    pub actions: Vec<ReplayAction>,
    /// Offsets committed to the replay group (partition → next offset); empty on a dry run.
    pub committed: BTreeMap<i32, i64>,
    pub partitions: Vec<PartitionProgress>,
    /// `--limit` stopped the run before the end of the DLQ.
    pub limit_reached: bool,
    /// Why the run stopped early (delivery or commit failure, interruption); progress up to the
    /// failure is committed.
    pub failure: Option<String>,
}

/// Replays the DLQ: see the module documentation for what is published where and committed when.
/// Setup problems are errors; a failure while replaying ends the run early with what was done so
/// far committed and the reason in [`ReplayReport::failure`].
pub async fn replay(
    config: &Config,
    options: &ReplayOptions,
    stop: CancellationToken,
) -> anyhow::Result<ReplayReport> {
    let brokers = require_brokers(config)?;
    let group = config.dlq.replay_group.clone();
    let mut scan = DlqScan::open(config, &brokers, Some(&group), options.from_beginning).await?;
    let producer = if options.dry_run {
        None
    } else {
        Some(Arc::new(publish::replay_producer(config, &brokers)?))
    };
    let bar = progress_bar(scan.expected(), options.progress);
    let mut report = ReplayReport {
        dry_run: options.dry_run,
        group,
        replayed: 0,
        parked: 0,
        skipped_by_filter: 0,
        unreadable: Vec::new(),
        actions: Vec::new(),
        committed: BTreeMap::new(),
        partitions: Vec::new(),
        limit_reached: false,
        failure: None,
    };
    let mut progress = Progress::default();
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut known_topics: HashSet<String> = HashSet::new();
    let mut last_commit = Instant::now();
    let paced_from = tokio::time::Instant::now();
    let mut published: u64 = 0;

    loop {
        // Take in what is already acknowledged; wait when the window is full.
        while let Some(Some(done)) = in_flight.next().now_or_never() {
            progress.record(done);
        }
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(done) = in_flight.next().await {
                progress.record(done);
            }
        }
        if progress.failure.is_some() {
            break;
        }
        if !options.dry_run && last_commit.elapsed() >= COMMIT_EVERY {
            commit(&scan, &mut progress).await;
            last_commit = Instant::now();
            if progress.failure.is_some() {
                break;
            }
        }
        if options
            .limit
            .is_some_and(|limit| report.replayed + report.parked >= limit)
        {
            report.limit_reached = true;
            break;
        }
        if stop.is_cancelled() {
            progress.failure.get_or_insert_with(|| "interrupted".into());
            break;
        }
        let message = tokio::select! {
            next = scan.next() => next,
            _ = stop.cancelled() => {
                progress.failure.get_or_insert_with(|| "interrupted".into());
                break;
            }
        };
        let message = match message {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                progress.failure.get_or_insert(format!("{e:#}"));
                break;
            }
        };
        bar.inc(1);
        if bar.position() > bar.length().unwrap_or(0) {
            bar.set_length(bar.position());
        }
        let (partition, offset) = (message.partition(), message.offset());
        let ready = |result: Result<(), String>| -> Pending {
            Box::pin(futures::future::ready(Done {
                partition,
                offset,
                result,
            }))
        };
        let record = match DlqRecord::parse(&message) {
            Ok(record) => record,
            Err(bad) => {
                tracing::warn!(partition, offset, reason = %bad.reason, "unreadable DLQ record skipped");
                report.unreadable.push(bad);
                in_flight.push_back(ready(Ok(())));
                continue;
            }
        };
        if !options.filter.matches(&record.context) {
            report.skipped_by_filter += 1;
            in_flight.push_back(ready(Ok(())));
            continue;
        }
        let planned = action::plan(&record, config.dlq.max_replays, &config.kafka.parked_topic);
        match planned.action {
            Action::Replay => report.replayed += 1,
            Action::Park => report.parked += 1,
        }
        let (action, destination, replay_count) = (
            planned.action,
            planned.destination.clone(),
            planned.replay_count,
        );
        report.actions.push(planned);
        bar.set_message(format!(
            "replayed {} · parked {} · skipped {}",
            report.replayed, report.parked, report.skipped_by_filter
        ));
        let Some(producer) = &producer else {
            in_flight.push_back(ready(Ok(())));
            continue;
        };
        if !known_topics.contains(&destination) {
            let checked = publish::check_destination(
                config,
                &brokers,
                producer,
                action,
                &destination,
                (partition, offset),
            )
            .await;
            if let Err(e) = checked {
                progress.failure.get_or_insert(format!("{e:#}"));
                break;
            }
            known_topics.insert(destination.clone());
        }
        if let Some(rate) = options.rate {
            let due = paced_from + Duration::from_secs_f64(published as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        published += 1;
        let (headers, timestamp) = action::outgoing(&record, action, replay_count);
        match publish::enqueue(producer, &destination, &record, headers, timestamp).await {
            Ok(delivery) => in_flight.push_back(Box::pin(async move {
                let result = match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(format!(
                        "publishing DLQ record {partition}/{offset} to `{destination}` failed: {e}"
                    )),
                    Err(_) => Err(format!(
                        "publishing DLQ record {partition}/{offset}: the producer stopped before Kafka answered"
                    )),
                };
                Done { partition, offset, result }
            })),
            Err(e) => {
                progress.failure.get_or_insert(format!(
                    "publishing DLQ record {partition}/{offset} to `{destination}` failed: {e}"
                ));
                break;
            }
        }
    }
    // Wait for every acknowledgement, then commit what is done.
    while let Some(done) = in_flight.next().await {
        progress.record(done);
    }
    if !options.dry_run {
        commit(&scan, &mut progress).await;
    }
    bar.finish_and_clear();
    report.committed = progress.committed;
    report.failure = progress.failure;
    report.partitions = scan.progress();
    Ok(report)
}

/// Commits what is done; a failed commit ends the run (the next run republishes what was
/// published since the last commit).
async fn commit(scan: &DlqScan, progress: &mut Progress) {
    let offsets = progress.uncommitted();
    match scan.commit(&offsets).await {
        Ok(()) => progress.committed.extend(offsets),
        Err(e) => {
            progress.failure.get_or_insert(format!(
                "committing the replay progress failed ({e:#}); records published since the last commit will be \
                 published again by the next run"
            ));
        }
    }
}

fn progress_bar(length: u64, wanted: bool) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} reviewed  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
