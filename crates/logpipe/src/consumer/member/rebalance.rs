//! Rebalances seen from the poll thread: an assign tells the pipeline (with a new epoch) before
//! any record of the new partitions arrives; a revoke hands over what was fetched, waits (bounded
//! by `consumer.drain_timeout`) for the pipeline's final commit points and commits them
//! synchronously before the partitions are released; a rebalance error resynchronises what the
//! member owns with what the client says.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::commit::commit;
use super::context::MemberContext;
use crate::consumer::handoff::Input;
use crate::consumer::offsets::Tp;

/// How long an assign waits for the partitions' committed offsets (only used to notice offsets a
/// broker skips; on timeout the check starts at the first record).
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

impl MemberContext {
    /// After a rebalance error: partitions the client no longer has are dropped from `owned` and
    /// the pipeline forgets them (nothing is committed for them; the next owner re-reads).
    fn resync_owned(&self, consumer: &BaseConsumer<Self>) {
        let actual: Vec<Tp> = consumer
            .assignment()
            .map(|tpl| self.tps(&tpl))
            .unwrap_or_default();
        let gone: Vec<Tp> = {
            let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<Tp> = owned
                .iter()
                .filter(|tp| !actual.contains(tp))
                .cloned()
                .collect();
            owned.retain(|tp| actual.contains(tp));
            self.forget_epochs(&gone);
            self.metrics.assigned.dec_by(gone.len() as i64);
            self.assigned_count.store(owned.len(), Ordering::Relaxed);
            gone
        };
        if gone.is_empty() {
            return;
        }
        for (topic, partition) in &gone {
            self.metrics.forget_partition(topic, *partition);
        }
        tracing::warn!(member = %self.member, partitions = %Self::describe(&gone), "rebalance: partitions lost after a rebalance error; released without a final commit");
        let (reply, _ignored) = std_mpsc::sync_channel(1);
        self.push(Input::Revoked(gone, reply));
    }

    /// Revoke: hand over what was fetched, wait (bounded) for the pipeline to finish it, commit.
    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tps: Vec<Tp>) {
        let started = Instant::now();
        let deadline = started + self.drain_timeout;
        let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
        self.push(Input::Revoked(tps.clone(), reply_tx));
        let mut finals = None;
        loop {
            if !self.flush_pending() {
                break;
            }
            if self.pending_len() == 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                finals = reply_rx.recv_timeout(left).ok();
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        match finals {
            Some(finals) if consumer.assignment_lost() => {
                tracing::warn!(member = %self.member, partitions = %Self::describe(&tps), "rebalance: assignment lost (session expired); {} final offsets NOT committed, the next owner re-reads them", finals.len());
            }
            Some(finals) => {
                let committed = commit(consumer, &finals, CommitMode::Sync, &self.metrics);
                tracing::info!(
                    member = %self.member,
                    partitions = %Self::describe(&tps),
                    drained_in_ms = started.elapsed().as_millis() as u64,
                    committed,
                    "rebalance: revoked partitions, in-flight work finished and committed"
                );
            }
            None => {
                tracing::warn!(
                    member = %self.member,
                    partitions = %Self::describe(&tps),
                    drain_timeout = ?self.drain_timeout,
                    "rebalance: revoked partitions before in-flight work finished; releasing without a final commit (the next owner re-reads, the stores are idempotent)"
                );
            }
        }
        {
            let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
            let before = owned.len();
            owned.retain(|tp| !tps.contains(tp));
            self.forget_epochs(&tps);
            self.metrics.assigned.dec_by((before - owned.len()) as i64);
            self.assigned_count.store(owned.len(), Ordering::Relaxed);
        }
        for (topic, partition) in &tps {
            self.metrics.forget_partition(topic, *partition);
        }
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let tps = self.tps(tpl);
                self.metrics.rebalance("revoke");
                if !tps.is_empty() {
                    self.on_revoke(consumer, tps);
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.metrics.rebalance("error");
                tracing::error!(member = %self.member, error = %e, "rebalance: error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Error(_) = rebalance {
            // librdkafka unassigns on a rebalance error; what we own is what the client says.
            self.resync_owned(consumer);
            return;
        }
        if let Rebalance::Assign(tpl) = rebalance {
            let tps = self.tps(tpl);
            self.metrics.rebalance("assign");
            if tps.is_empty() {
                return;
            }
            {
                let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
                owned.extend(tps.iter().cloned());
                self.metrics.assigned.inc_by(tps.len() as i64);
                self.assigned_count.store(owned.len(), Ordering::Relaxed);
            }
            if self.paused.load(Ordering::Relaxed) {
                // The pipeline is stalled: new partitions wait like the others.
                let _ = consumer.pause(tpl);
            }
            tracing::info!(
                member = %self.member,
                partitions = %Self::describe(&tps),
                rebalance = rebalance_kind(consumer.rebalance_protocol()),
                "rebalance: assigned partitions (starting from committed offsets)"
            );
            let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
            // Where each partition starts: its committed offset (a broker that skips from there
            // is noticed on the first record). Without one (a new group) it is unknown.
            let starts: HashMap<Tp, i64> = consumer
                .committed_offsets((*tpl).clone(), COMMITTED_TIMEOUT)
                .map(|committed| {
                    committed
                        .elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => Some(((self.intern(e.topic()), e.partition()), o)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            {
                let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
                let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
                for tp in &tps {
                    epochs.insert(tp.clone(), epoch);
                    match starts.get(tp) {
                        Some(start) => expected.insert(tp.clone(), *start),
                        None => expected.remove(tp),
                    };
                }
            }
            self.push(Input::Assigned(tps, epoch));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.metrics.commit("error");
            tracing::warn!(member = %self.member, error = %e, "offset commit failed; the next commit carries the same progress");
        }
    }
}

/// How rdkafka's default rebalance handler applies an assignment under `protocol`.
fn rebalance_kind(protocol: RebalanceProtocol) -> &'static str {
    match protocol {
        RebalanceProtocol::Cooperative => "incremental",
        RebalanceProtocol::Eager | RebalanceProtocol::None => "eager",
    }
}
