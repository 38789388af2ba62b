//! The aggregates side of the writer: stored records are counted in the aggregates only up to
//! their partition's commit point, in one atomic, watermark-checked update per round, so a record
//! is counted once however often it is re-read. Records stored past a record still without an
//! outcome are held as compact [`Contribution`]s until the commit point reaches them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use logpipe_aggregates::{Aggregates, ApplyOutcome, BatchDelta, Contribution};
use logpipe_model::EnrichedLog;
use smallvec::SmallVec;

use super::circuit::Circuit;
use crate::consumer::offsets::{Tp, TpMap};
use crate::consumer::ConsumerMetrics;

pub(super) struct Tally {
    aggregates: Aggregates,
    circuit: Circuit,
    metrics: ConsumerMetrics,
    /// Applied-offset watermark of each owned partition in the aggregates.
    watermarks: TpMap<Tp, i64>,
    /// Stored records not yet counted (their partition's commit point is behind them), by
    /// partition and offset: one contribution per event of the record.
    held: TpMap<Tp, BTreeMap<i64, SmallVec<[Contribution; 1]>>>,
    /// Woken after a loss was found and its rebuild requested; `None`: reconciliation is off.
    reconcile: Option<Arc<Notify>>,
    /// Losses found and not yet written as rebuild requests: (partition, found, ours).
    losses: Vec<(Tp, i64, i64)>,
}

impl Tally {
    pub fn new(
        aggregates: Aggregates,
        circuit: Circuit,
        metrics: ConsumerMetrics,
        reconcile: Option<Arc<Notify>>,
    ) -> Self {
        Tally {
            aggregates,
            circuit,
            metrics,
            watermarks: TpMap::default(),
            held: TpMap::default(),
            reconcile,
            losses: Vec::new(),
        }
    }

    /// A stored record's events, to be counted once the commit point passes the record.
    pub fn hold(&mut self, tp: &Tp, offset: i64, logs: &[EnrichedLog]) {
        self.held
            .entry(tp.clone())
            .or_default()
            .insert(offset, logs.iter().map(Contribution::of).collect());
    }

    /// Stored records not yet counted.
    pub fn held(&self) -> usize {
        self.held.values().map(BTreeMap::len).sum()
    }

    /// Applies the aggregates of each partition up to its commit point (`None`: nothing tracked
    /// yet), in one atomic, watermark-checked update. A conflict (another member counted first)
    /// reloads the watermarks and recounts; an outage is retried behind the aggregates circuit.
    pub async fn count(&mut self, points: &[(Tp, Option<i64>)]) {
        let started = Instant::now();
        let mut applied = false;
        loop {
            let missing: Vec<Tp> = points
                .iter()
                .map(|(tp, _)| tp)
                .filter(|tp| !self.watermarks.contains_key(*tp))
                .cloned()
                .collect();
            if !missing.is_empty() {
                self.load(&missing).await;
            }
            let mut delta = BatchDelta::new();
            let mut targets = Vec::new();
            for (tp, point) in points {
                let Some(point) = point else { continue };
                let through = point - 1;
                let after = self.watermarks.get(tp).copied().unwrap_or(-1);
                if through <= after {
                    continue;
                }
                delta.cover(&tp.0, tp.1, after, through);
                if let Some(held) = self.held.get(tp) {
                    for (offset, contributions) in held.range(after + 1..=through) {
                        for contribution in contributions {
                            delta.add_contribution(&tp.0, tp.1, *offset, contribution);
                        }
                    }
                }
                targets.push((tp.clone(), through));
            }
            if targets.is_empty() {
                break;
            }
            self.request_rebuilds(&mut delta);
            match self.aggregates.apply(&delta).await {
                Ok(ApplyOutcome::Applied { .. }) => {
                    self.circuit.succeeded();
                    for (tp, through) in targets {
                        self.watermarks.insert(tp, through);
                    }
                    self.requested();
                    applied = true;
                    break;
                }
                Ok(ApplyOutcome::Conflict { partitions }) => {
                    self.circuit.succeeded();
                    tracing::info!(?partitions, "aggregate watermark moved under us (another member counted first); recounting");
                    for (topic, partition, actual) in partitions {
                        let tp: Tp = (Arc::from(topic.as_str()), partition);
                        if let Some(&cached) = self.watermarks.get(&tp).filter(|c| actual < **c) {
                            self.lost(tp.clone(), actual, cached);
                        }
                        self.watermarks.insert(tp, actual);
                    }
                }
                Err(e) => self.circuit.trip(&e.to_string()).await,
            }
        }
        if applied {
            self.metrics
                .aggregate_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        // Contributions at or below the watermark are counted (or were, by a replay's first run).
        for (tp, _) in points {
            let mark = self.watermarks.get(tp).copied().unwrap_or(-1);
            if let Some(held) = self.held.get_mut(tp) {
                *held = held.split_off(&(mark + 1));
            }
        }
    }

    /// Reads the owned partitions' watermarks and restores any that went back (a loss no apply
    /// noticed: an idle partition), with a fence that counts nothing, and a rebuild request.
    /// Skipped while the aggregates are unreachable: the circuit's own retries find out first.
    pub async fn audit(&mut self) {
        let mut by_topic: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
        for (t, p) in self.watermarks.keys() {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        let mut fence = BatchDelta::new();
        let mut restored = Vec::new();
        for (topic, partitions) in by_topic {
            let Ok(marks) = self.aggregates.watermarks(&topic, &partitions).await else {
                return;
            };
            for (partition, actual) in marks {
                let tp: Tp = (topic.clone(), partition);
                let Some(&cached) = self.watermarks.get(&tp) else {
                    continue;
                };
                if actual < cached {
                    self.lost(tp.clone(), actual, cached);
                    fence.cover(&topic, partition, actual, cached);
                    restored.push(tp);
                }
            }
        }
        if restored.is_empty() {
            return;
        }
        self.request_rebuilds(&mut fence);
        match self.aggregates.apply(&fence).await {
            Ok(ApplyOutcome::Applied { .. }) => self.requested(),
            // Another member or an apply of ours moved them meanwhile: the next count or audit
            // sees the new values. The losses stay queued for the next apply.
            Ok(ApplyOutcome::Conflict { .. }) => {
                for tp in restored {
                    self.watermarks.remove(&tp);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "aggregates audit: restoring watermarks failed; the next audit retries")
            }
        }
    }

    /// A loss found: said once, counted, and queued as a rebuild request for the next apply.
    fn lost(&mut self, tp: Tp, actual: i64, cached: i64) {
        self.metrics.aggregate_losses.inc();
        let what = if self.reconcile.is_some() {
            "watermark restored, the lost counts will be rebuilt from the log store (redis.reconcile)"
        } else {
            "watermark restored; the lost counts stay missing until `logpipe aggregates rebuild` runs (redis.reconcile is off)"
        };
        tracing::error!(topic = %tp.0, partition = tp.1, found = actual, applied = cached, "aggregate watermark went BACKWARDS for {}/{} ({cached} -> {actual}): the aggregates store lost data (restart without persistence, FLUSHDB, failover, eviction?); {what}", tp.0, tp.1);
        if self.reconcile.is_some() && !self.losses.iter().any(|(t, _, _)| *t == tp) {
            self.losses.push((tp, actual, cached));
        }
    }

    /// Adds the queued losses to an apply as rebuild requests.
    fn request_rebuilds(&self, delta: &mut BatchDelta) {
        let now = chrono::Utc::now().timestamp();
        for ((topic, partition), actual, cached) in &self.losses {
            delta.request_rebuild(
                format!("{topic}:{partition}"),
                format!("{actual}..{cached}@{now}"),
            );
        }
    }

    /// The queued requests were written: wake the reconciler.
    fn requested(&mut self) {
        if self.losses.is_empty() {
            return;
        }
        self.losses.clear();
        if let Some(reconcile) = &self.reconcile {
            reconcile.notify_one();
        }
    }

    /// Reads the watermarks of newly assigned partitions, retrying an outage behind the circuit.
    pub async fn load(&mut self, tps: &[Tp]) {
        let mut by_topic: BTreeMap<Arc<str>, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            by_topic.entry(t.clone()).or_default().push(*p);
        }
        for (topic, partitions) in by_topic {
            loop {
                match self.aggregates.watermarks(&topic, &partitions).await {
                    Ok(marks) => {
                        self.circuit.succeeded();
                        for (p, mark) in marks {
                            self.watermarks.insert((topic.clone(), p), mark);
                        }
                        break;
                    }
                    Err(e) => self.circuit.trip(&e.to_string()).await,
                }
            }
        }
    }

    /// Forgets revoked partitions.
    pub fn forget(&mut self, tps: &[Tp]) {
        for tp in tps {
            self.watermarks.remove(tp);
            self.held.remove(tp);
        }
    }
}
