//! The write stage's event loop: takes decoded batches and rebalance messages from the assemble
//! stage, finished processing steps and due retries, and drives every record to its outcome
//! through the scheduler ([`super::scheduler`]): ready records to the store ([`super::store`]), records given up on to
//! the dead-letter topic ([`super::letters`]), then the aggregates up to each commit point
//! ([`super::tally`]) and the moved commit points to the poll thread.

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use logpipe_model::EnrichedLog;
use tokio::sync::mpsc;

use super::circuit::Circuit;
use super::item::{Item, Stage};
use super::letters::{self, Landing, Origin};
use super::scheduler::Scheduler;
use super::step_runner::{StepOutcome, StepRunner};
use super::store::write_round;
use super::tally::Tally;
use super::{Deps, MemberLink, Work, WriterState};
use crate::consumer::handoff::{Dependency, Finals};
use crate::consumer::offsets::Tp;
use crate::dlq::ErrorClass;

struct Writer {
    deps: Deps,
    link: MemberLink,
    scheduler: Scheduler,
    steps: StepRunner,
    tally: Tally,
    store_circuit: Circuit,
    dlq_circuit: Circuit,
    commits: std_mpsc::SyncSender<Finals>,
}

pub(super) async fn write_stage(
    deps: Deps,
    link: MemberLink,
    mut work: mpsc::Receiver<Work>,
    commits: std_mpsc::SyncSender<Finals>,
    state: Arc<WriterState>,
) {
    let circuit = |dependency| Circuit::new(dependency, deps.metrics.clone(), link.outages.clone());
    let mut w = Writer {
        scheduler: Scheduler::new(deps.retry.clone(), !deps.steps.is_empty()),
        steps: StepRunner::new(deps.steps.clone(), deps.retry.attempt_timeout, deps.workers),
        tally: Tally::new(
            deps.aggregates.clone(),
            circuit(Dependency::Aggregates),
            deps.metrics.clone(),
            deps.reconcile.clone(),
        ),
        store_circuit: circuit(Dependency::Store),
        dlq_circuit: circuit(Dependency::DeadLetters),
        commits,
        deps,
        link,
    };
    // Watermarks of idle partitions are checked this often for a loss no apply would notice.
    let mut audit = tokio::time::interval(AUDIT_EVERY);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let auditing = w.deps.reconcile.is_some();
    loop {
        w.write_ready().await;
        w.advance().await;
        if state.busy.swap(false, Ordering::AcqRel) {
            state.idle.notify_one();
        }
        let next_due = w.scheduler.next_due();
        // At the bound, stop taking records: the channel fills and the poll thread pauses.
        // (Always true when nothing else could wake the loop: a record lost by a bug must not
        // stall the member; it only holds its partition's commit point.)
        let can_take = w.uncommitted() < w.deps.max_uncommitted
            || (w.steps.is_empty() && !w.scheduler.has_retries());
        tokio::select! {
            biased;
            finished = w.steps.finished(), if !w.steps.is_empty() => {
                for outcome in finished {
                    w.step_finished(outcome);
                }
            }
            _ = sleep_until_opt(next_due), if next_due.is_some() => w.scheduler.retry_due(),
            _ = audit.tick(), if auditing => w.tally.audit().await,
            item = work.recv(), if can_take => match item {
                None => break,
                Some(Work::Batch(batch)) => {
                    state.busy.store(true, Ordering::Release);
                    w.deps.metrics.batch_size.observe(batch.items.len() as f64);
                    w.scheduler.accept(batch.items);
                }
                Some(Work::Assigned(tps, epoch)) => {
                    w.scheduler.assign(&tps, epoch);
                    w.tally.load(&tps).await;
                }
                Some(Work::Revoked(tps, reply)) => {
                    let finals = w.revoke(&tps).await;
                    let _ = reply.send(finals);
                }
            },
        }
        w.start_steps();
    }
    // The poll thread is gone (it revoked everything first); write what is ready.
    w.write_ready().await;
}

/// How often a member checks its partitions' watermarks for a loss (see [`Tally::audit`]).
const AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Writer {
    /// Records between fetch and commit (in flight, or stored but not yet countable).
    fn uncommitted(&self) -> usize {
        self.scheduler.in_flight() + self.tally.held()
    }

    /// Hands the records the scheduler started in their steps to the step runner.
    fn start_steps(&mut self) {
        for item in self.scheduler.take_to_run() {
            self.steps.spawn(item);
        }
    }

    fn step_finished(&mut self, outcome: StepOutcome) {
        match outcome {
            StepOutcome::Passed(item) => self.scheduler.passed_steps(item),
            StepOutcome::Rejected(item, error_type, message) => {
                self.scheduler.rejected(item, error_type, message)
            }
            StepOutcome::Failed(item, error_type, message) => {
                self.failed(item, error_type, message, Stage::Steps)
            }
        }
    }

    fn failed(&mut self, item: Item, error_type: String, message: String, stage: Stage) {
        if self
            .scheduler
            .failed(item, error_type, message, stage)
            .is_some()
        {
            self.deps.metrics.retries.inc();
        }
    }

    /// Writes everything ready (store, then DLQ) until nothing is left: finishing a record can
    /// start the next one of its key.
    async fn write_ready(&mut self) {
        while self.scheduler.has_writes() {
            let ready = self.scheduler.take_ready();
            let letters = self.scheduler.take_letters();
            if !ready.is_empty() {
                self.store(ready).await;
            }
            if !letters.is_empty() {
                self.dead_letter(letters).await;
            }
        }
        self.start_steps();
    }

    /// One store round for the ready records' events; a record with an event the store refused
    /// (found by splitting) fails an attempt whole, the rest are done.
    async fn store(&mut self, mut items: Vec<Item>) {
        // Every record's events in one list; `ends[i]` is where record i's events end in it.
        let mut logs: Vec<EnrichedLog> = Vec::with_capacity(items.len());
        let mut ends = Vec::with_capacity(items.len());
        for item in &mut items {
            logs.extend(item.logs.drain(..));
            ends.push(logs.len());
        }
        let started = Instant::now();
        let outcome = write_round(
            &self.deps.store,
            &mut self.store_circuit,
            &logs,
            self.deps.batch_size,
            self.deps.store_streams,
        )
        .await;
        let m = self.deps.metrics.clone();
        m.store_seconds.observe(started.elapsed().as_secs_f64());

        let stored_at = Instant::now();
        let now = Utc::now();
        let mut refused = outcome.refused;
        refused.sort_unstable_by_key(|(index, _)| *index);
        let mut refused = refused.into_iter().peekable();
        let mut logs = logs.into_iter();
        let mut start = 0;
        for (mut item, end) in items.into_iter().zip(ends) {
            item.logs.extend(logs.by_ref().take(end - start));
            // Refusals in round order: those below `end` are this record's events.
            let mut error = None;
            while let Some((_, e)) = refused.next_if(|(index, _)| *index < end) {
                error.get_or_insert(e);
            }
            start = end;
            if let Some(error) = error {
                self.failed(item, "store_rejected".into(), error, Stage::Store);
                continue;
            }
            m.processing_time
                .observe(stored_at.duration_since(item.fetched_at).as_secs_f64());
            for log in &item.logs {
                if let Some(ingested) = log.ingested_at {
                    let seconds =
                        (now - ingested).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
                    m.e2e_latency.observe(seconds);
                    self.deps.stats.record_latency(seconds);
                }
            }
            self.tally.hold(&item.tp, item.offset, &item.logs);
            self.scheduler.finished(&item.tp, item.key, item.offset);
        }
        m.success.inc_by(outcome.inserted + outcome.duplicates);
        m.duplicates.inc_by(outcome.duplicates);
        self.deps.stats.add_stored(outcome.inserted);
    }

    /// Sends records to the dead-letter topic; each is done once Kafka acknowledged it.
    async fn dead_letter(&mut self, pending: Vec<(Item, ErrorClass)>) {
        let origin = Origin {
            group: &self.deps.group,
            member: &self.link.member,
        };
        let metrics = &self.deps.metrics;
        let scheduler = &mut self.scheduler;
        letters::send_all(
            &self.deps.dead_letters,
            &mut self.dlq_circuit,
            &origin,
            pending,
            |item, class, landing| {
                metrics.dead_lettered(class.as_str());
                if let Landing::Parked(reason) = landing {
                    metrics.dlq_refused(reason);
                }
                let (reason, _) = item.error();
                metrics.failed(reason);
                if class == ErrorClass::Poison {
                    tracing::warn!(topic = %item.tp.0, partition = item.tp.1, offset = item.offset, request_id = item.request_id(), reason = %reason, "poison record sent to the dead-letter topic");
                }
                scheduler.finished(&item.tp, item.key, item.offset);
            },
        )
        .await;
    }

    /// Counts what became countable and hands the moved commit points to the poll thread.
    async fn advance(&mut self) {
        let points = self.scheduler.commit_points();
        self.tally.count(&points).await;
        let moved = self.scheduler.take_commits();
        if moved.is_empty() {
            return;
        }
        if let Err(e) = self.commits.try_send(moved) {
            // Handed out but not sent: mark it unsent so the next round sends it again.
            let unsent = match e {
                std_mpsc::TrySendError::Full(m) | std_mpsc::TrySendError::Disconnected(m) => m,
            };
            self.scheduler.unsend(&unsent);
        }
    }

    /// Revoke: write what is ready, abandon what waits (retries, queued records, running
    /// steps: the next owner re-reads them from the commit point), count and return the final
    /// commit points.
    async fn revoke(&mut self, tps: &[Tp]) -> Finals {
        self.write_ready().await;
        let abandoned = self.scheduler.abandon(tps);
        if abandoned > 0 {
            tracing::info!(
                abandoned,
                "rebalance: records waiting for a retry left to the next owner"
            );
        }
        let points = self.scheduler.commit_points_of(tps);
        self.tally.count(&points).await;
        let finals = self.scheduler.release(tps);
        self.tally.forget(tps);
        finals
    }
}
