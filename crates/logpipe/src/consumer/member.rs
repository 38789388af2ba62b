//! One consumer-group member's Kafka side: a dedicated OS thread that owns the rdkafka
//! `BaseConsumer`, polls it, and hands records to the async pipeline ([`super::pipeline`]) over a
//! bounded channel.
//!
//! Why a thread: librdkafka runs rebalance callbacks inside `poll`, and a revoke must wait for
//! in-flight work to finish. On a dedicated thread that wait blocks nobody else; on a runtime
//! worker it would stall the async runtime.
//!
//! Backpressure without leaving the group: when the pipeline's channel is full, records wait in a
//! small local queue and the thread waits up to a second for room. If the stall lasts longer (a
//! store outage), every assigned partition is paused and the thread keeps polling (so rebalances
//! are served and `max.poll.interval.ms` is never exceeded); partitions resume when the queue has
//! drained.
//!
//! Rebalances: on revoke, the records already fetched are passed on, then a `Revoked` message; the
//! pipeline finishes and writes everything before it and answers with the final offsets, which
//! are committed synchronously before the partitions are released. The wait is bounded by
//! `consumer.drain_timeout`; past it the partitions are released without that commit and the next
//! owner re-reads those records (the stores are idempotent, so nothing is counted twice). On
//! assign, the pipeline is told before any record of the new partitions arrives.
//!
//! Incremental or eager: the callbacks here only run before and after rdkafka's default
//! `ConsumerContext::rebalance`, which calls `incremental_assign`/`incremental_unassign` when
//! librdkafka reports the COOPERATIVE rebalance protocol and `assign` (the full list, or none)
//! otherwise. librdkafka reports COOPERATIVE for `cooperative-sticky` and for every group of the
//! KIP-848 `consumer` protocol (whose assign and revoke lists are always increments), EAGER for
//! `range` and `roundrobin`. The bookkeeping works for both: an assign adds its partitions to
//! `owned`, a revoke removes its own, and an eager revoke lists every owned partition. Either way a
//! revoke commits the completed work of the partitions it lists before they are released.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::offsets::Tp;
use super::pipeline::OutageFlags;
use super::ConsumerMetrics;
use crate::kafka::headers;

/// A record as fetched, owned, ready to cross to the pipeline.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Hash of the record key, to keep one key on one worker (records without a key spread by offset).
    pub lane_hash: u64,
    /// The record key as it was (kept for the dead-letter topic).
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub ingest_header: Option<Vec<u8>>,
    pub request_id_header: Option<Vec<u8>>,
    /// Times `logpipe dlq replay` has republished this record (its `logpipe-replay-count`).
    pub replay_count: u32,
    pub fetched_at: Instant,
}

impl Fetched {
    pub fn tp(&self) -> Tp {
        (self.topic.clone(), self.partition)
    }
}

/// How long an assign waits for the partitions' committed offsets (only used to notice offsets a
/// broker skips; on timeout the check starts at the first record).
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the poll thread waits for room in the pipeline before pausing partitions.
const SHORT_STALL: Duration = Duration::from_secs(1);

/// Which assignment of a partition a commit belongs to. Every assign gets a new epoch, so a
/// commit produced under an earlier assignment (say, a batch that finished after its revoke
/// timed out) is recognised and dropped even if the partition has come back to this member.
pub type Epoch = u64;

/// Offsets the pipeline hands to the poll thread for commit: partition, next offset, epoch.
pub type Finals = Vec<(Tp, i64, Epoch)>;

/// What the poll thread tells the pipeline, in order.
#[derive(Debug)]
pub enum Input {
    Record(Fetched),
    Assigned(Vec<Tp>, Epoch),
    /// Finish everything received so far, answer with the final offsets of these partitions.
    Revoked(Vec<Tp>, std_mpsc::SyncSender<Finals>),
}

/// State shared between the poll loop and the rebalance callbacks (both on the poll thread, but
/// the callbacks only get `&self`).
pub struct MemberContext {
    member: String,
    tx: mpsc::Sender<Input>,
    /// Inputs waiting for room in the channel, in order.
    pending: Mutex<VecDeque<Input>>,
    drain_timeout: Duration,
    metrics: ConsumerMetrics,
    /// Partitions currently owned, for filtering late commits and for lag series.
    owned: Mutex<Vec<Tp>>,
    /// The epoch of each owned partition's current assignment.
    epochs: Mutex<HashMap<Tp, Epoch>>,
    /// The offset each owned partition's next fetched record should have (unknown until the
    /// first record of an assignment): a record past it means the broker skipped offsets.
    expected: Mutex<HashMap<Tp, i64>>,
    next_epoch: std::sync::atomic::AtomicU64,
    topics: Mutex<HashMap<String, Arc<str>>>,
    assigned_count: Arc<AtomicUsize>,
    /// Partitions are paused because the pipeline stalled or a dependency is down (set by the
    /// poll loop).
    paused: AtomicBool,
    /// Dependencies the pipeline found down: while any is, partitions stay paused.
    outages: OutageFlags,
}

impl MemberContext {
    fn intern(&self, topic: &str) -> Arc<str> {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(topic.to_string())
            .or_insert_with(|| Arc::from(topic))
            .clone()
    }

    fn tps(&self, tpl: &TopicPartitionList) -> Vec<Tp> {
        tpl.elements()
            .iter()
            .map(|e| (self.intern(e.topic()), e.partition()))
            .collect()
    }

    fn push(&self, input: Input) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(input);
    }

    /// Moves pending inputs into the channel while there is room. Returns false when the
    /// pipeline is gone.
    fn flush_pending(&self) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(input) = pending.pop_front() {
            match self.tx.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(input)) => {
                    pending.push_front(input);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    fn pending_len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn owned(&self) -> Vec<Tp> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn describe(tps: &[Tp]) -> String {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for (t, p) in tps {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .iter_mut()
            .map(|(t, ps)| {
                ps.sort_unstable();
                format!("{t}{ps:?}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn forget_epochs(&self, tps: &[Tp]) {
        let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        for tp in tps {
            epochs.remove(tp);
            expected.remove(tp);
        }
    }

    /// Checks that a fetched record follows the previous one of its partition (the first one
    /// follows the committed offset). Offsets are missing where a topic has transaction markers
    /// or was compacted, which logpipe's topics have not, and where records were deleted before
    /// the group read them (retention or DeleteRecords moved the log start past the committed
    /// offset, and the client reset to the earliest offset left): records that can never be
    /// stored, so the gap is counted and logged, never silent. A broker that served a fetch
    /// wrongly would show up here too.
    fn check_sequence(&self, tp: &Tp, offset: i64) {
        let mut expected = self.expected.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = expected.get_mut(tp) else {
            expected.insert(tp.clone(), offset + 1);
            return;
        };
        let next = std::mem::replace(slot, offset + 1);
        let skipped = sequence_gap(next, offset);
        if skipped > 0 {
            self.metrics.skipped_offsets.inc_by(skipped);
            tracing::warn!(member = %self.member, topic = %tp.0, partition = tp.1, expected = next, fetched = offset, skipped, "offsets skipped: records in between were never delivered (deleted by retention or DeleteRecords before this group read them; check the topic's retention against the group's lag)");
        }
    }

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

impl ClientContext for MemberContext {
    fn stats(&self, statistics: Statistics) {
        let owned = self.owned();
        let mut max_lag = 0i64;
        for (topic, partition) in &owned {
            let lag = statistics
                .topics
                .get(&**topic)
                .and_then(|t| t.partitions.get(partition))
                .map(|p| p.consumer_lag)
                .unwrap_or(-1);
            if lag >= 0 {
                max_lag = max_lag.max(lag);
                self.metrics.set_partition_lag(topic, *partition, lag);
            }
        }
        self.metrics.set_member_lag(&self.member, max_lag);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(member = %self.member, %error, "Kafka client: {reason}");
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

/// Commits `offsets` (only for partitions still assigned). Returns how many were committed.
fn commit(
    consumer: &BaseConsumer<MemberContext>,
    offsets: &[(Tp, i64, Epoch)],
    mode: CommitMode,
    metrics: &ConsumerMetrics,
) -> usize {
    let mut tpl = TopicPartitionList::new();
    {
        let epochs = consumer
            .context()
            .epochs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (tp, offset, epoch) in offsets {
            // Only commits of the partition's current assignment: a late one from a partition
            // that moved away, or from an earlier assignment of it, could rewind its offset.
            if epochs.get(tp) == Some(epoch) {
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*offset));
            } else {
                metrics.commit("stale_dropped");
            }
        }
    }
    if tpl.count() == 0 {
        return 0;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            metrics.commit("ok");
            tpl.count()
        }
        Err(e) => {
            metrics.commit("error");
            tracing::warn!(error = %e, "offset commit failed; the next commit carries the same progress");
            0
        }
    }
}

/// Commit progress waiting to be sent: one offset per partition, the latest (the pipeline sends a
/// partition's commit points in order, and a newer assignment's supersede an older one's), sent
/// as one OffsetCommit at most every [`COMMIT_INTERVAL`]. The coordinator answers a connection's
/// requests in order: a commit per written batch (hundreds a second under load) queued up behind
/// each other and held back the group heartbeats that share the connection, until a KIP-848
/// broker fenced members that were working. (A cadence, not "one in flight": rdkafka 0.38 never
/// delivers the answer to a manual asynchronous commit, so there is nothing to wait for.)
struct CommitQueue {
    latest: HashMap<Tp, (i64, Epoch)>,
    last_sent: Instant,
}

/// How often a member commits its progress at most. A crash re-reads at most this much more (the
/// stores make re-reads harmless); revokes and shutdown commit synchronously and at once.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);

impl Default for CommitQueue {
    fn default() -> Self {
        Self {
            latest: HashMap::new(),
            last_sent: Instant::now() - COMMIT_INTERVAL,
        }
    }
}

impl CommitQueue {
    fn add(&mut self, offsets: Finals) {
        for (tp, offset, epoch) in offsets {
            self.latest.insert(tp, (offset, epoch));
        }
    }

    /// Commits what waits once [`COMMIT_INTERVAL`] has passed since the last commit.
    fn send_if_due(&mut self, consumer: &BaseConsumer<MemberContext>) {
        if !self.latest.is_empty() && self.last_sent.elapsed() >= COMMIT_INTERVAL {
            self.send(consumer);
        }
    }

    /// Commits what waits now (asynchronously).
    fn send(&mut self, consumer: &BaseConsumer<MemberContext>) {
        if self.latest.is_empty() {
            return;
        }
        let offsets: Finals = self
            .latest
            .drain()
            .map(|(tp, (offset, epoch))| (tp, offset, epoch))
            .collect();
        commit(
            consumer,
            &offsets,
            CommitMode::Async,
            &consumer.context().metrics,
        );
        self.last_sent = Instant::now();
    }
}

/// Everything the poll thread needs.
pub struct MemberHandle {
    pub consumer: BaseConsumer<MemberContext>,
    pub commits: std_mpsc::Receiver<Finals>,
    pub stop: CancellationToken,
}

/// Builds the context for a member.
pub fn context(
    member: String,
    tx: mpsc::Sender<Input>,
    drain_timeout: Duration,
    metrics: ConsumerMetrics,
    assigned_count: Arc<AtomicUsize>,
    outages: OutageFlags,
) -> MemberContext {
    MemberContext {
        member,
        tx,
        pending: Mutex::new(VecDeque::new()),
        drain_timeout,
        metrics,
        owned: Mutex::new(Vec::new()),
        epochs: Mutex::new(HashMap::new()),
        expected: Mutex::new(HashMap::new()),
        next_epoch: std::sync::atomic::AtomicU64::new(1),
        topics: Mutex::new(HashMap::new()),
        assigned_count,
        paused: AtomicBool::new(false),
        outages,
    }
}

/// The poll loop; runs on its own thread until `stop`, then closes the consumer (which revokes,
/// drains and commits through the callbacks, and leaves the group).
pub fn poll_loop(handle: MemberHandle) {
    let MemberHandle {
        consumer,
        commits,
        stop,
    } = handle;
    let ctx = consumer.context();
    let mut waiting = CommitQueue::default();
    while !stop.is_cancelled() {
        while let Ok(offsets) = commits.try_recv() {
            waiting.add(offsets);
        }
        waiting.send_if_due(&consumer);
        if !ctx.flush_pending() {
            tracing::error!(member = %ctx.member, "pipeline stopped; leaving the group");
            break;
        }
        let mut backlog = ctx.pending_len();
        let outage = ctx.outages.load(Ordering::Relaxed) != 0;
        if backlog > 0 && !outage && !ctx.paused.load(Ordering::Relaxed) {
            // A short stall (the pipeline is writing a batch): wait for room without polling.
            // Heartbeats run on librdkafka's own thread, and max.poll.interval is minutes away.
            // Pausing instead would restart each partition's fetch at the last delivered
            // offset, mid-batch, on every stall.
            let until = Instant::now() + SHORT_STALL;
            while backlog > 0 && Instant::now() < until && !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
                if !ctx.flush_pending() {
                    break;
                }
                backlog = ctx.pending_len();
            }
        }
        let paused = ctx.paused.load(Ordering::Relaxed);
        let outage = ctx.outages.load(Ordering::Relaxed) != 0;
        if (backlog > 0 || outage) && !paused {
            // A dependency outage, or a long stall: pause every partition and keep polling, so
            // the member stays in the group and serves rebalances.
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
                ctx.paused.store(true, Ordering::Relaxed);
                let reason = if outage { "outage" } else { "backpressure" };
                ctx.metrics.paused(reason);
                tracing::info!(member = %ctx.member, backlog, reason, "partitions paused until the pipeline can take records again");
            }
        } else if backlog == 0 && !outage && paused {
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.resume(&assignment);
            }
            ctx.paused.store(false, Ordering::Relaxed);
            ctx.metrics.resumes.inc();
            tracing::info!(member = %ctx.member, "partitions resumed");
        }
        let timeout = if backlog > 0 {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(timeout) {
            Some(Ok(message)) => {
                let topic = ctx.intern(message.topic());
                let lane_hash = match message.key() {
                    Some(key) => hash_key(key),
                    None => message.offset() as u64,
                };
                let mut ingest_header = None;
                let mut request_id_header = None;
                let mut replay_count = 0;
                if let Some(hs) = message.headers() {
                    for h in hs.iter() {
                        match h.key {
                            headers::INGEST_TIME_MS => ingest_header = h.value.map(<[u8]>::to_vec),
                            headers::REQUEST_ID => request_id_header = h.value.map(<[u8]>::to_vec),
                            crate::dlq::headers::REPLAY_COUNT => {
                                replay_count = crate::dlq::parse_replay_count(h.value)
                            }
                            _ => {}
                        }
                    }
                }
                ctx.check_sequence(&(topic.clone(), message.partition()), message.offset());
                ctx.push(Input::Record(Fetched {
                    topic,
                    partition: message.partition(),
                    offset: message.offset(),
                    lane_hash,
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    timestamp_ms: message.timestamp().to_millis(),
                    ingest_header,
                    request_id_header,
                    replay_count,
                    fetched_at: Instant::now(),
                }));
            }
            Some(Err(e)) => {
                tracing::warn!(member = %ctx.member, error = %e, "Kafka consume error");
            }
            None => {}
        }
    }
    while let Ok(offsets) = commits.try_recv() {
        waiting.add(offsets);
    }
    waiting.send(&consumer);
    tracing::info!(member = %ctx.member, "leaving the consumer group");
    // Dropping closes the consumer: the revoke callback drains, commits synchronously, and the
    // member leaves the group.
    drop(consumer);
}

/// Offsets skipped between the expected next offset and the one fetched (0 for the expected
/// one, or for a rewind: a seek or an offset reset, which re-reads instead of skipping).
fn sequence_gap(expected: i64, fetched: i64) -> u64 {
    u64::try_from(fetched - expected).unwrap_or(0)
}

/// FNV-1a: stable and cheap; only used to spread keys over workers.
fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::sequence_gap;

    #[test]
    fn a_gap_counts_the_offsets_never_delivered() {
        assert_eq!(sequence_gap(5, 5), 0, "the expected offset");
        assert_eq!(sequence_gap(5, 10), 5, "offsets 5..=9 skipped");
        assert_eq!(
            sequence_gap(10, 3),
            0,
            "a rewind re-reads, it skips nothing"
        );
    }
}
