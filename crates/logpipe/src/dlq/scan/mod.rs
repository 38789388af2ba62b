//! The bounded scan of the DLQ topic that `stats`, `show` and `replay` all read with: every
//! partition, from a start offset up to its end *as of the start of the command*, so a DLQ that
//! keeps growing while a tool runs does not keep it running.
//!
//! This module reads the records, [`client`] holds the librdkafka plumbing, [`partition`] keeps the per-partition bookkeeping and the
//! guards against brokers that serve a topic differently from Apache Kafka.

mod client;
mod partition;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka::watermarks::watermarks;
use crate::kafka::{apply_properties, base_config};
use client::{blocking, committed_offsets, dlq_partitions, ScanContext};
use partition::{all_reached, scan_over, Admit, PartitionScan};
pub use partition::{PartitionProgress, SCAN_IDLE_END};

/// A scan that has not reached the start-time high watermark of every partition and has received
/// nothing (no record, no end-of-partition event) for this long fails, naming the partitions: the
/// overall bound on waiting for a broker that stopped serving.
pub const SCAN_STALL_LIMIT: Duration = Duration::from_secs(30);
/// Group id of the read-only scans (`stats`, `show`): never joined, never committed to.
const READ_ONLY_GROUP: &str = "logpipe-dlq-reader";
/// How long one wait for a record lasts before the end and stall conditions are checked again.
const POLL_SLICE: Duration = Duration::from_millis(200);

/// Reads every partition of the DLQ topic from a start offset to its end as of the start.
///
/// The end, per partition, is the high watermark captured when the scan starts. Records beyond it
/// are left alone (the next run sees them). On Apache Kafka that watermark is exact and a fetch
/// may start at any offset, so the result is exactly the records present at the start, as
/// Kafka's console consumer prints them (the integration tests compare the two). For brokers that
/// under-report the high watermark, serve a record twice or serve a fetch that starts inside a
/// batch wrongly, the scan applies the guards of its `partition` module (drop repeats, wait
/// [`SCAN_IDLE_END`] past the watermarks, re-read once after a gap at a resumed start). The wait
/// for data is bounded by [`SCAN_STALL_LIMIT`].
pub struct DlqScan {
    consumer: Arc<StreamConsumer<ScanContext>>,
    topic: String,
    parts: BTreeMap<i32, PartitionScan>,
    started_ms: i64,
    /// Time spent waiting for a record since the last record of the scan. Only time inside
    /// [`DlqScan::next`] counts, so a caller that paces itself (`--rate`) does not end the scan.
    idle: Duration,
    /// Time spent waiting since anything at all arrived (a record, a repeat, an end of partition).
    quiet: Duration,
    last_error: Option<String>,
    repeats: u64,
    timeout: Duration,
}

impl DlqScan {
    /// Opens a scan of `config.kafka.dlq_topic`. With `group`, the scan starts at the group's
    /// committed offsets (the beginning where it has none, or everywhere with `from_beginning`)
    /// and [`DlqScan::commit`] commits to it.
    pub async fn open(
        config: &Config,
        brokers: &str,
        group: Option<&str>,
        from_beginning: bool,
    ) -> anyhow::Result<DlqScan> {
        let kafka = &config.kafka;
        let topic = kafka.dlq_topic.clone();
        let timeout = kafka.request_timeout;
        let started_ms = Utc::now().timestamp_millis();
        let mut client = base_config(kafka, brokers, "dlq-reader");
        client
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        // librdkafka wants a group id even for assign-only consumers; the read-only commands use
        // one they never commit to.
        client.set("group.id", group.unwrap_or(READ_ONLY_GROUP));
        apply_properties(&mut client, kafka, &Default::default());
        let consumer: StreamConsumer<ScanContext> = client
            .create_with_context(ScanContext)
            .context("creating the Kafka consumer for the DLQ")?;
        let consumer = Arc::new(consumer);

        let partitions = dlq_partitions(&consumer, &topic, brokers, timeout).await?;
        let committed = match (group, from_beginning) {
            (Some(group), false) => {
                committed_offsets(&consumer, &topic, &partitions, group, timeout).await?
            }
            _ => HashMap::new(),
        };

        let mut parts = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = blocking(&consumer, {
                let topic = topic.clone();
                move |c| watermarks(c.client(), &topic, p, timeout)
            })
            .await
            .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
            let start = committed.get(&p).map_or(low, |&c| c.max(low));
            assignment.add_partition_offset(&topic, p, Offset::Offset(start))?;
            parts.insert(p, PartitionScan::new(low, start, high));
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("assigning the partitions of `{topic}`"))?;
        Ok(DlqScan {
            consumer,
            topic,
            parts,
            started_ms,
            idle: Duration::ZERO,
            quiet: Duration::ZERO,
            last_error: None,
            repeats: 0,
            timeout,
        })
    }

    /// Records the scan expects to read, from the watermarks (exact on Apache Kafka; a lower bound
    /// on a broker that under-reports the high watermark).
    pub fn expected(&self) -> u64 {
        self.parts.values().map(PartitionScan::expected).sum()
    }

    /// How far each partition was read.
    pub fn progress(&self) -> Vec<PartitionProgress> {
        self.parts
            .iter()
            .map(|(&partition, p)| p.progress(partition))
            .collect()
    }

    fn reached_watermarks(&self) -> bool {
        all_reached(self.parts.values())
    }

    /// Takes each partition's consumer position as read up to there (see
    /// [`PartitionScan::catch_up`]). A position never passes a record not yet returned by
    /// [`DlqScan::next`].
    fn catch_up_positions(&mut self) {
        if self.reached_watermarks() {
            return;
        }
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for e in positions.elements_for_topic(&self.topic) {
            if let (Offset::Offset(o), Some(part)) =
                (e.offset(), self.parts.get_mut(&e.partition()))
            {
                part.catch_up(o);
            }
        }
    }

    /// The next record of the scan, or `None` at its end.
    pub async fn next(&mut self) -> anyhow::Result<Option<OwnedMessage>> {
        loop {
            if scan_over(self.parts.values(), self.idle) {
                if self.repeats > 0 {
                    tracing::debug!(
                        repeats = self.repeats,
                        "dropped records the broker served twice"
                    );
                }
                return Ok(None);
            }
            if !self.reached_watermarks() && self.quiet >= SCAN_STALL_LIMIT {
                return Err(self.stalled());
            }
            let waiting = Instant::now();
            let received = tokio::time::timeout(POLL_SLICE, self.consumer.recv()).await;
            let waited = waiting.elapsed();
            self.idle += waited;
            self.quiet += waited;
            let received = match received {
                Err(_) => {
                    self.catch_up_positions();
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "while reading the DLQ");
                    self.last_error = Some(e.to_string());
                    continue;
                }
                Ok(Ok(message)) => message.detach(),
            };
            self.quiet = Duration::ZERO;
            let partition = received.partition();
            let offset = received.offset();
            let Some(part) = self.parts.get_mut(&partition) else {
                continue;
            };
            if part.gap_after_resumed_start(offset) {
                tracing::debug!(
                    partition,
                    start = part.start,
                    got = offset,
                    "gap after the start offset; re-reading the partition"
                );
                let sought = self.consumer.seek(
                    &self.topic,
                    partition,
                    Offset::Offset(part.low_watermark),
                    Duration::ZERO,
                );
                if sought.is_ok() {
                    part.rewinding(offset);
                    continue;
                }
            }
            let written_after_start = received
                .timestamp()
                .to_millis()
                .is_some_and(|ts| ts > self.started_ms);
            match part.admit(offset, written_after_start) {
                Admit::Repeat => self.repeats += 1,
                Admit::Beyond => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&self.topic, partition);
                    let _ = self.consumer.pause(&tpl);
                }
                Admit::Take => {
                    self.idle = Duration::ZERO;
                    return Ok(Some(received));
                }
            }
        }
    }

    /// The error of a scan that waited [`SCAN_STALL_LIMIT`] for data, naming the partitions
    /// still behind.
    fn stalled(&self) -> anyhow::Error {
        let behind: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, p)| p.next < p.high_watermark)
            .map(|(id, p)| {
                format!(
                    "{}/{id} at offset {} of {}",
                    self.topic, p.next, p.high_watermark
                )
            })
            .collect();
        anyhow::anyhow!(
            "reading the DLQ stalled: nothing arrived for {}s with {} still behind{}. Check that the broker is up \
             and serving `{}` (`logpipe topics describe {}`), then run the command again",
            SCAN_STALL_LIMIT.as_secs(),
            behind.join(", "),
            self.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default(),
            self.topic,
            self.topic
        )
    }

    /// Commits `offsets` (partition → next offset to read) to the scan's group.
    pub async fn commit(&self, offsets: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in offsets {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))?;
        }
        blocking(&self.consumer, move |c| c.commit(&tpl, CommitMode::Sync)).await?;
        Ok(())
    }

    /// The group's committed offsets for the DLQ partitions (absent = none).
    pub async fn committed(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in self.parts.keys() {
            tpl.add_partition(&self.topic, *p);
        }
        let timeout = self.timeout;
        let found = blocking(&self.consumer, move |c| c.committed_offsets(tpl, timeout)).await?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }
}

/// The brokers of the cluster the DLQ lives on; an error explaining why when the configuration
/// names none (the embedded broker cannot be read from another process).
pub(in crate::dlq) fn require_brokers(config: &Config) -> anyhow::Result<String> {
    config.kafka.cluster_brokers(
        &format!(
            "the dlq commands read the dead-letter topic `{}` from a Kafka cluster",
            config.kafka.dlq_topic
        ),
        " to the cluster the consumers write to (the embedded broker lives inside one `logpipe run` \
         process and keeps nothing after it stops)",
    )
}
