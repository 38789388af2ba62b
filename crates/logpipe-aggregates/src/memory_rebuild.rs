//! The rebuild in memory (see `rebuild.rs` for the method): the same lease, snapshot,
//! correction and reconciliation requests as `redis_rebuild.rs`, each one step under the state's
//! lock, so a snapshot is atomic with respect to applies as Redis's MULTI is, and a correction is
//! refused unless its lease is held when it runs. A child module of `memory`, so it works on the
//! same state.

use std::collections::BTreeMap;
use std::time::Instant;

use logpipe_model::{CellDiff, Cells, Cut, Fingerprint, Level, LEVELS};

use super::{MemoryAggregates, MinuteBucket, State, Template};
use crate::correction::{self, Batch, BATCH_CELLS};
use crate::rebuild::{describe_lease, CorrectReport, RebuildLease, Snapshot};
use crate::AggError;

/// The lease as stored (Redis: the value of `{p}:rb` and its expiry).
#[derive(Debug)]
pub(super) struct HeldLease {
    value: String,
    expires_at: Instant,
}

impl State {
    /// The lease, unless it expired.
    fn live_lease(&self, now: Instant) -> Option<&HeldLease> {
        self.lease.as_ref().filter(|held| held.expires_at > now)
    }

    fn holds(&self, lease: &RebuildLease, now: Instant) -> bool {
        self.live_lease(now)
            .is_some_and(|held| held.value == lease.value())
    }

    fn describe_lease(&self, now: Instant) -> Option<String> {
        self.live_lease(now)
            .map(|held| describe_lease(&held.value, Some(held.expires_at - now)))
    }

    fn lease_lost(&self, what: &str, now: Instant) -> AggError {
        let holder = match self.describe_lease(now) {
            Some(holder) => format!("it is now held by {holder}"),
            None => "nobody holds it (expired, or lost with the data)".to_owned(),
        };
        AggError::LeaseLost(format!(
            "{what}: this rebuild no longer holds the lease; {holder}"
        ))
    }
}

impl MemoryAggregates {
    pub(crate) fn lease(&self, lease: &RebuildLease) -> Result<(), AggError> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(holder) = state.describe_lease(now) {
            return Err(AggError::Busy(format!(
                "another rebuild holds the lease: {holder}"
            )));
        }
        state.lease = Some(HeldLease {
            value: lease.value().to_owned(),
            expires_at: now + lease.ttl(),
        });
        Ok(())
    }

    pub(crate) fn renew(&self, lease: &RebuildLease) -> Result<(), AggError> {
        let now = Instant::now();
        let mut state = self.lock();
        if !state.holds(lease, now) {
            return Err(state.lease_lost("renew", now));
        }
        if let Some(held) = state.lease.as_mut() {
            held.expires_at = now + lease.ttl();
        }
        Ok(())
    }

    pub(crate) fn release(&self, lease: &RebuildLease) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.holds(lease, now) {
            state.lease = None;
        }
    }

    pub(crate) fn lease_holder(&self) -> Option<String> {
        self.lock().describe_lease(Instant::now())
    }

    pub(crate) fn snapshot(&self, from: i64, until: i64) -> Snapshot {
        let now = Instant::now();
        let state = self.lock();
        let mut cuts: Vec<Cut> = state
            .watermarks
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(|(&partition, &through)| Cut {
                    topic: topic.clone(),
                    partition,
                    through,
                })
            })
            .collect();
        cuts.sort();
        let mut cells = Cells::default();
        for (&minute, bucket) in state.minutes.range(from..until) {
            if bucket.expires_at <= now {
                continue;
            }
            for (service, slots) in &bucket.counts {
                for (level, &count) in Level::ALL.into_iter().zip(slots) {
                    if count > 0 {
                        cells.add_count(minute, service, level, count);
                    }
                }
            }
            for (service, fingerprints) in &bucket.errors {
                for (&fingerprint, &count) in fingerprints {
                    cells.add_error(minute, service, fingerprint, count);
                }
            }
        }
        Snapshot { cuts, cells }
    }

    /// The whole correction under one lock (batched anyway, so both backends report alike).
    pub(crate) fn correct(
        &self,
        lease: &RebuildLease,
        correction: &CellDiff,
        templates: &BTreeMap<Fingerprint, String>,
        totals: bool,
    ) -> Result<CorrectReport, AggError> {
        let batches = correction::plan(correction, templates, BATCH_CELLS);
        let now = Instant::now();
        let mut state = self.lock();
        if !state.holds(lease, now) {
            let what = format!("correction batch 1 of {} refused", batches.len());
            return Err(state.lease_lost(&what, now));
        }
        let mut report = CorrectReport::default();
        for batch in &batches {
            self.correct_batch(&mut state, batch, totals, now, &mut report);
        }
        Ok(report)
    }

    fn correct_batch(
        &self,
        state: &mut State,
        batch: &Batch<'_>,
        totals: bool,
        now: Instant,
        report: &mut CorrectReport,
    ) {
        report.batches += 1;
        for minute in &batch.minutes {
            let bucket = state
                .minutes
                .entry(minute.minute)
                .or_insert_with(|| MinuteBucket {
                    counts: BTreeMap::new(),
                    errors: BTreeMap::new(),
                    expires_at: now + self.minute_ttl,
                });
            if bucket.expires_at <= now {
                // Gone in Redis: the keys start over, and a new key gets the minute TTL.
                bucket.counts.clear();
                bucket.errors.clear();
                bucket.expires_at = now + self.minute_ttl;
            }
            for &(service, level, delta) in &minute.counts {
                report.cells += 1;
                let slots = bucket.counts.entry(service.to_owned()).or_default();
                report.clamped += usize::from(add_clamped(&mut slots[level as usize], delta));
                if slots.iter().all(|&count| count == 0) {
                    bucket.counts.remove(service);
                }
            }
            for &(service, fingerprint, delta) in &minute.errors {
                report.cells += 1;
                let fingerprints = bucket.errors.entry(service.to_owned()).or_default();
                let count = fingerprints.entry(fingerprint).or_default();
                report.clamped += usize::from(add_clamped(count, delta));
                if *count == 0 {
                    fingerprints.remove(&fingerprint);
                    if fingerprints.is_empty() {
                        bucket.errors.remove(service);
                    }
                }
            }
            if bucket.counts.is_empty() && bucket.errors.is_empty() {
                state.minutes.remove(&minute.minute);
            }
        }
        for &(fingerprint, text) in &batch.templates {
            let live = state
                .templates
                .get(&fingerprint)
                .is_some_and(|template| template.expires_at > now);
            if !live {
                let template = Template {
                    text: text.to_owned(),
                    expires_at: now + self.fingerprint_ttl,
                };
                state.templates.insert(fingerprint, template);
            }
        }
        if totals {
            let deltas: [i64; LEVELS] = batch.level_totals();
            for (level, delta) in deltas.into_iter().enumerate() {
                let total = &mut state.totals[level];
                let before = *total;
                report.clamped += usize::from(add_clamped(total, delta));
                report.totals[level] += *total as i64 - before as i64;
            }
        }
    }

    pub(crate) fn rebuild_requests(&self) -> BTreeMap<String, String> {
        self.lock().requests.clone()
    }

    pub(crate) fn take_rebuild_requests(&self) -> BTreeMap<String, String> {
        std::mem::take(&mut self.lock().requests)
    }

    /// A field requested again since keeps its newer value (Redis: HSETNX).
    pub(crate) fn put_rebuild_requests(&self, requests: &BTreeMap<String, String>) {
        let mut state = self.lock();
        for (field, value) in requests {
            state
                .requests
                .entry(field.clone())
                .or_insert_with(|| value.clone());
        }
    }
}

/// `count += delta`, stopping at 0; true if it would have gone below 0 (clamped).
fn add_clamped(count: &mut u64, delta: i64) -> bool {
    let sum = i128::from(*count) + i128::from(delta);
    *count = u64::try_from(sum.max(0)).unwrap_or(u64::MAX);
    sum < 0
}
