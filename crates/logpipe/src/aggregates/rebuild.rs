//! `rebuild`: recounts a window of minutes from the log store and corrects the aggregates to
//! match, while the consumers keep writing. Used by `logpipe aggregates rebuild` and by the
//! consumer's reconciler.
//!
//! How it stays exact while applies continue: for each chunk, the correction is `store − live`
//! as counted by [`count_chunk`] (both sides cut at the same watermarks, at the snapshot
//! instant). Applies after the snapshot only add records above those watermarks, so adding the
//! correction to the live keys at any later moment gives store-at-the-cut plus everything applied
//! since: the true counts. What could break that is another writer of the same keys that is not
//! an apply: a second rebuild (excluded by the lease, which every correction batch checks) or a
//! loss in between (it deletes the lease too, so the correction is refused and the run fails).
//!
//! All chunks are counted first (reads only), then the whole correction is applied in batches of
//! whole minutes, each atomic with its share of the totals: a reader never sees half a minute.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logpipe_aggregates::{AggError, Aggregates, RebuildLease};
use logpipe_model::{CellDiff, LEVELS};
use logpipe_store::LogStore;
use serde::Serialize;

use super::count::{count_chunk, merge_uncut};
use super::window::Window;

/// The lease lapses this long after its last renewal, so a killed rebuild blocks the next one
/// only this long.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// What to do with the all-time totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalsChoice {
    /// Add the correction's per-level sums, unless Redis reports evicted keys (then the totals
    /// may have survived a loss of minutes, and adding would count twice).
    Adjust,
    /// Leave them alone.
    Keep,
}

/// One rebuild.
#[derive(Debug, Clone)]
pub struct RebuildPlan {
    pub window: Window,
    pub service: Option<String>,
    pub chunk: Duration,
    pub totals: TotalsChoice,
    /// Who runs it, shown to anyone who finds the lease taken.
    pub holder: String,
}

/// Another rebuild holds the lease: not a failure of this one, which can wait and try again.
#[derive(Debug)]
pub struct Busy(pub String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another rebuild is running ({}); wait for it to finish (a killed one's lease lapses within {}s)",
            self.0,
            LEASE_TTL.as_secs()
        )
    }
}

impl std::error::Error for Busy {}

/// Told about each counted chunk: a progress bar, or log lines.
pub trait Progress: Send + Sync {
    fn start(&self, chunks: u64);
    fn chunk(&self, done: u64, rows: u64, rows_per_second: f64);
    fn finish(&self);
}

/// What a rebuild found and did.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub from: i64,
    pub until: i64,
    pub service: Option<String>,
    pub chunks: usize,
    /// Rows read from the store, and how fast (the store statements' time only).
    pub rows: u64,
    pub rows_per_second: f64,
    /// Cells (minute × service × level, and error fingerprints) that changed.
    pub cells_changed: usize,
    pub minutes_changed: usize,
    /// Net events added to the minutes (negative: the aggregates held more than the store).
    pub events_added: i64,
    /// Per level (TRACE..FATAL) what the totals got, or why they were left alone.
    pub totals_added: Option<[i64; LEVELS]>,
    pub totals_note: Option<String>,
    /// Counts that would have gone below zero (a key lost during the run).
    pub clamped: usize,
    pub batches: usize,
    /// Rows of partitions with no watermark in the aggregates: not counted.
    pub uncut: Vec<(String, i32, u64)>,
    pub seconds: f64,
}

/// Runs one rebuild: lease, count every chunk, correct, release.
pub async fn rebuild(
    store: &LogStore,
    aggregates: &Aggregates,
    plan: &RebuildPlan,
    progress: &dyn Progress,
) -> anyhow::Result<RebuildReport> {
    let started = Instant::now();
    let lease = aggregates
        .lease(&plan.holder, LEASE_TTL)
        .await
        .map_err(|e| match e {
            AggError::Busy(holder) => anyhow::Error::new(Busy(holder)),
            other => anyhow::anyhow!("taking the rebuild lease: {other}"),
        })?;
    let lost = Arc::new(AtomicBool::new(false));
    let renewing = tokio::spawn(renew(aggregates.clone(), lease.clone(), lost.clone()));
    let result = count_and_correct(store, aggregates, plan, progress, &lease, &lost).await;
    renewing.abort();
    if let Err(e) = aggregates.release(&lease).await {
        tracing::debug!(error = %e, "releasing the rebuild lease (it lapses by itself)");
    }
    let mut report = result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn count_and_correct(
    store: &LogStore,
    aggregates: &Aggregates,
    plan: &RebuildPlan,
    progress: &dyn Progress,
    lease: &RebuildLease,
    lost: &AtomicBool,
) -> anyhow::Result<RebuildReport> {
    let chunks = plan.window.chunks(plan.chunk);
    progress.start(chunks.len() as u64);
    let mut correction = CellDiff::default();
    let mut templates = BTreeMap::new();
    let mut uncut = Vec::new();
    let mut rows = 0;
    let mut reading = Duration::ZERO;
    for (done, &chunk) in chunks.iter().enumerate() {
        if lost.load(Ordering::Acquire) {
            anyhow::bail!("the rebuild lease was lost (the aggregates store lost data again, or was unreachable for {}s); nothing was corrected, run again", LEASE_TTL.as_secs());
        }
        let began = Instant::now();
        let counted = count_chunk(store, aggregates, chunk, plan.service.as_deref()).await?;
        reading += began.elapsed();
        rows += counted.rows;
        let diff = counted.store.diff(&counted.live);
        for (_, _, fingerprint, _) in &diff.errors {
            if let Some(template) = counted.store.templates.get(fingerprint) {
                templates.insert(*fingerprint, template.clone());
            }
        }
        correction.counts.extend(diff.counts);
        correction.errors.extend(diff.errors);
        merge_uncut(&mut uncut, counted.uncut);
        progress.chunk(done as u64 + 1, rows, per_second(rows, reading));
    }
    progress.finish();

    let (apply_totals, totals_note) = match plan.totals {
        TotalsChoice::Keep => (false, Some("left alone (--keep-totals)".to_owned())),
        TotalsChoice::Adjust => match aggregates.evicted_keys().await {
            Ok(0) => (true, None),
            Ok(evicted) => (false, Some(format!(
                "left alone: Redis has evicted {evicted} keys (maxmemory-policy), so the totals may have outlived the minutes they count"
            ))),
            Err(e) => anyhow::bail!("reading Redis INFO stats: {e}"),
        },
    };
    let report = if correction.is_empty() {
        None
    } else {
        Some(
            aggregates
                .correct(lease, &correction, &templates, apply_totals)
                .await
                .map_err(|e| match e {
                    AggError::LeaseLost(detail) => anyhow::anyhow!(
                        "the correction was refused: the rebuild lease is gone ({detail}), so the aggregates changed under the run (lost again?); run again"
                    ),
                    other => anyhow::anyhow!("correcting the aggregates: {other}"),
                })?,
        )
    };
    Ok(RebuildReport {
        from: plan.window.from,
        until: plan.window.until,
        service: plan.service.clone(),
        chunks: chunks.len(),
        rows,
        rows_per_second: per_second(rows, reading),
        cells_changed: correction.counts.len() + correction.errors.len(),
        minutes_changed: correction.minutes().len(),
        events_added: correction.counts.iter().map(|cell| cell.3).sum(),
        totals_added: report
            .as_ref()
            .filter(|_| apply_totals)
            .map(|report| report.totals),
        totals_note: if correction.is_empty() {
            Some("unchanged: nothing to correct".to_owned())
        } else {
            totals_note
        },
        clamped: report.as_ref().map_or(0, |report| report.clamped),
        batches: report.as_ref().map_or(0, |report| report.batches),
        uncut,
        seconds: 0.0,
    })
}

/// Keeps the lease alive; on failure, says so through `lost` and stops.
async fn renew(aggregates: Aggregates, lease: RebuildLease, lost: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        match aggregates.renew(&lease).await {
            Ok(()) => {}
            Err(AggError::LeaseLost(detail)) => {
                tracing::warn!(%detail, "rebuild lease lost");
                lost.store(true, Ordering::Release);
                return;
            }
            // An outage: the next renewal may still make it before the lease lapses; if not,
            // the correction is refused anyway.
            Err(e) => tracing::warn!(error = %e, "renewing the rebuild lease"),
        }
    }
}

fn per_second(rows: u64, took: Duration) -> f64 {
    if took.is_zero() {
        0.0
    } else {
        rows as f64 / took.as_secs_f64()
    }
}
