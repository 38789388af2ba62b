//! The reconciler: one task per consumer process that rebuilds the aggregates from the log store
//! after a member found that the aggregates store lost data. Members write a rebuild request in
//! the same apply that restores a lost watermark ([`super::pipeline::tally`]); this task waits
//! until the requests stop coming (every member restores its own partitions, within an audit
//! period), takes them, and runs the same rebuild as `logpipe aggregates rebuild` over every
//! minute the aggregates keep. One process wins each request; a rebuild already running
//! elsewhere (the lease) makes it hand the requests back and look again later, because a rebuild
//! that started before a watermark was restored may not have counted that partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use logpipe_aggregates::Aggregates;
use logpipe_store::LogStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::metrics::OutcomeLabels;
use super::ConsumerMetrics;
use crate::aggregates::rebuild::{rebuild, Busy, RebuildPlan, RebuildReport, TotalsChoice};
use crate::aggregates::sources::{self, LogLines};
use crate::aggregates::window::{stamp, Limits, Window};
use crate::config::Config;

/// Requests written by a member whose notification never came (it died) are found this often.
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// The requests must stop changing this long before the rebuild starts (every member audits its
/// partitions every 5 s)...
const SETTLE: Duration = Duration::from_secs(10);
/// ...but a rebuild starts after this much waiting at the latest.
const SETTLE_MAX: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Starts the reconciler; members wake it through the returned [`Notify`].
pub fn spawn(
    config: &Config,
    store: Arc<LogStore>,
    aggregates: Aggregates,
    metrics: ConsumerMetrics,
    stop: CancellationToken,
) -> Arc<Notify> {
    let wake = Arc::new(Notify::new());
    let reconciler = Reconciler {
        config: config.clone(),
        store,
        aggregates,
        metrics,
        wake: wake.clone(),
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = reconciler.run() => {}
        }
    });
    wake
}

struct Reconciler {
    config: Config,
    /// The consumer's store; counting runs on a pool of its own when it is PostgreSQL.
    store: Arc<LogStore>,
    aggregates: Aggregates,
    metrics: ConsumerMetrics,
    wake: Arc<Notify>,
}

impl Reconciler {
    async fn run(self) {
        let mut backoff = BACKOFF_FIRST;
        let mut counting: Option<Arc<LogStore>> = None;
        // After a failure (its backoff served), the handed-back requests are looked at again at
        // once rather than at the next tick.
        let mut again = false;
        loop {
            if !std::mem::take(&mut again) {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                }
            }
            let Some(requests) = self.settled().await else {
                continue;
            };
            let store = match &counting {
                Some(store) => store.clone(),
                None => match self.counting_store().await {
                    Ok(store) => counting.insert(store).clone(),
                    Err(e) => {
                        tracing::warn!(error = %e, "aggregates rebuild: cannot open the log store; retrying");
                        self.fail(&requests, &mut backoff).await;
                        again = true;
                        continue;
                    }
                },
            };
            self.metrics.aggregate_rebuild_running.set(1);
            let result = self.rebuild(&store).await;
            self.metrics.aggregate_rebuild_running.set(0);
            match result {
                Ok(report) => {
                    backoff = BACKOFF_FIRST;
                    self.outcome("completed");
                    self.metrics.aggregate_rebuild_rows.inc_by(report.rows);
                    log_done(&report, requests.len());
                }
                // Another process (or `logpipe aggregates rebuild`) is at it: wait for it and
                // look again, since it may have started before these requests' watermarks were
                // restored.
                Err(e) if e.is::<Busy>() => {
                    tracing::info!(%e, "aggregates rebuild: waiting for the other one");
                    self.hand_back(&requests).await;
                    tokio::time::sleep(SETTLE).await;
                    again = true;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "aggregates rebuild failed; it is retried with backoff. To run it by hand: logpipe aggregates rebuild");
                    self.fail(&requests, &mut backoff).await;
                    again = true;
                }
            }
        }
    }

    /// The requests, once they stopped changing for [`SETTLE`] (at most [`SETTLE_MAX`]), taken
    /// so no other process acts on them; `None` when there are none.
    async fn settled(&self) -> Option<BTreeMap<String, String>> {
        let mut seen = self.aggregates.rebuild_requests().await.ok()?;
        if seen.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + SETTLE_MAX;
        loop {
            tokio::time::sleep(SETTLE).await;
            let now = self.aggregates.rebuild_requests().await.ok()?;
            if now == seen || tokio::time::Instant::now() >= deadline {
                break;
            }
            seen = now;
        }
        match self.aggregates.take_rebuild_requests().await {
            Ok(taken) if !taken.is_empty() => {
                tracing::info!(requests = taken.len(), partitions = ?taken.keys().collect::<Vec<_>>(), "aggregates rebuild: starting, after a loss of aggregates data");
                Some(taken)
            }
            // Another process took them first.
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "aggregates rebuild: reading the requests");
                None
            }
        }
    }

    async fn rebuild(&self, store: &LogStore) -> anyhow::Result<RebuildReport> {
        let limits = Limits {
            minute_ttl: self.config.redis.minute_ttl,
            retention_cutoff: store.retention_cutoff(Utc::now() + chrono::Duration::days(1)),
        };
        let plan = RebuildPlan {
            window: Window::new(Utc::now(), None, None, limits).map_err(anyhow::Error::msg)?,
            service: None,
            chunk: Duration::from_secs(3600),
            totals: TotalsChoice::Adjust,
            holder: sources::holder("the consumer's reconciler"),
        };
        rebuild(store, &self.aggregates, &plan, &LogLines::default()).await
    }

    /// A store to count from: PostgreSQL gets a pool of its own (a chunk's statement may take
    /// seconds; the consumer's writes must not wait for it); SQLite's own read connection serves.
    async fn counting_store(&self) -> anyhow::Result<Arc<LogStore>> {
        match &*self.store {
            LogStore::Postgres(_) => Ok(Arc::new(sources::open_store(&self.config).await?)),
            LogStore::Sqlite(_) => Ok(self.store.clone()),
        }
    }

    fn outcome(&self, outcome: &str) {
        self.metrics
            .aggregate_rebuilds
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts the failure, hands the requests back and waits before the next try.
    async fn fail(&self, requests: &BTreeMap<String, String>, backoff: &mut Duration) {
        self.outcome("failed");
        self.hand_back(requests).await;
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// Puts the requests back, so this or another process acts on them later.
    async fn hand_back(&self, requests: &BTreeMap<String, String>) {
        if let Err(e) = self.aggregates.put_rebuild_requests(requests).await {
            tracing::warn!(error = %e, "aggregates rebuild: handing the requests back failed; they are lost, run `logpipe aggregates rebuild` by hand");
        }
    }
}

fn log_done(report: &RebuildReport, requests: usize) {
    let totals = match (&report.totals_added, &report.totals_note) {
        (Some(added), _) => format!("{:+}", added.iter().sum::<i64>()),
        (None, Some(note)) => note.clone(),
        (None, None) => "unchanged".into(),
    };
    tracing::info!(
        requests,
        minutes = (report.until - report.from) / 60,
        rows = report.rows,
        rows_per_second = report.rows_per_second as u64,
        cells = report.cells_changed,
        events = report.events_added,
        seconds = format!("{:.1}", report.seconds),
        "aggregates rebuilt from the log store: {} – {} UTC, {} rows read ({:.0}/s), {} cells changed ({:+} events), totals {totals}",
        stamp(report.from),
        stamp(report.until),
        report.rows,
        report.rows_per_second,
        report.cells_changed,
        report.events_added,
    );
    if !report.uncut.is_empty() {
        tracing::warn!(partitions = report.uncut.len(), "aggregates rebuild: stored rows of partitions without a watermark were not counted; the members owning them restore it and ask again");
    }
}
