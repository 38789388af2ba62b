//! `logpipe dlq stats | show | replay`: the operator tools of the dead-letter topic.
//!
//! Each command is a library function that returns a struct ([`stats`] → [`DlqStats`], [`show`]
//! → [`Shown`], [`replay`] → [`ReplayReport`]) and a thin `run_*` wrapper that prints it as tables
//! or JSON. All three read the DLQ topic with the same bounded scan ([`DlqScan`]): every partition,
//! from a start offset up to the end *as of the start of the command*, so a DLQ that keeps growing
//! while the tool runs does not keep it running.
//!
//! Replay semantics:
//! - A matching record is republished to its original topic with its key and value bytes
//!   unchanged, its original Kafka timestamp, the original record's own headers
//!   (`logpipe-ingest-ms`, `logpipe-request-id`: every header that is not `logpipe-dlq-*`) and
//!   `logpipe-replay-count` = previous count + 1. A record already replayed `dlq.max_replays`
//!   times is *parked* instead: written to `kafka.parked_topic` with all its DLQ headers (and the
//!   count incremented), so a record that keeps failing does not loop forever.
//! - The producer is idempotent with acks=all. Progress is committed to the consumer group
//!   `dlq.replay_group` (the next offset per DLQ partition) only after Kafka acknowledged every
//!   produce up to that offset. Records the filters skip, and unreadable records, are committed
//!   past as well: the group records how far the DLQ has been *reviewed*, not what was replayed.
//!   `--from-beginning` reviews the whole topic again (and republishes what matches again).
//! - At least once: if the tool dies between an acknowledged produce and its commit, the next run
//!   republishes that record again.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::Cell;
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{headers, DlqContext, ErrorClass};
use crate::commands::{new_table, right};
use crate::config::Config;
use crate::kafka::admin::{ensure_topics, TopicSpec};
use crate::kafka::{apply_properties, base_config, client_config, producer_config};

/// A scan ends once every partition reached its start-time high watermark *and* no record has
/// arrived for this long. On Apache Kafka the watermark alone is exact and this only adds a short
/// wait; it is kept for brokers whose ListOffsets(latest) reports a watermark below the real end
/// (one reporting the last batch's base offset + 1): the wait lets the records past it arrive.
pub const SCAN_IDLE_END: Duration = Duration::from_millis(1500);
/// A scan that has not reached the start-time high watermark of every partition and has received
/// nothing (no record, no end-of-partition event) for this long fails, naming the partitions: the
/// overall bound on waiting for a broker that stopped serving.
pub const SCAN_STALL_LIMIT: Duration = Duration::from_secs(30);
/// Group id of the read-only scans (`stats`, `show`): never joined, never committed to.
const READ_ONLY_GROUP: &str = "logpipe-dlq-reader";
/// How long one wait for a record lasts before the end and stall conditions are checked again.
const POLL_SLICE: Duration = Duration::from_millis(200);
/// Replay commits its progress at most this often (and once at the end).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Replay keeps at most this many records in flight (enqueued, not yet acknowledged).
const MAX_IN_FLIGHT: usize = 1000;
/// Widths of truncated columns in `show` tables.
/// Rows of the `replay --dry-run` table at most.
const DRY_RUN_ROWS: usize = 500;
const MESSAGE_WIDTH: usize = 40;
const PREVIEW_WIDTH: usize = 32;

// ------------------------------------------------------------------------------------------
// Filters and arguments
// ------------------------------------------------------------------------------------------

/// Which DLQ records `show` and `replay` act on. Every set field must match; times compare with
/// the record's last failure (`since` inclusive, `until` exclusive).
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Filter {
    /// Only records of this class: `poison` (undecodable or invalid, never retried) or
    /// `exhausted` (failed every attempt of the retry schedule).
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    pub class: Option<ErrorClass>,
    /// Only records of this error type (`invalid_json`, `store_rejected`, `step:enrich`, ...);
    /// a trailing `*` matches a prefix (`step:*`).
    #[arg(long = "type", value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Only records whose last failure is at or after this time: RFC 3339
    /// (`2026-11-25T10:00:00Z`) or a duration ago (`90m`, `1h`, `2days`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only records whose last failure is before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, context: &DlqContext) -> bool {
        if self.class.is_some_and(|class| class != context.class) {
            return false;
        }
        if let Some(wanted) = &self.error_type {
            let ok = match wanted.strip_suffix('*') {
                Some(prefix) => context.error_type.starts_with(prefix),
                None => &context.error_type == wanted,
            };
            if !ok {
                return false;
            }
        }
        if self.since.is_some_and(|since| context.last_failure < since) {
            return false;
        }
        if self
            .until
            .is_some_and(|until| context.last_failure >= until)
        {
            return false;
        }
        true
    }

    /// `class=poison type=invalid_json`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(class) = self.class {
            parts.push(format!("class={}", class.as_str()));
        }
        if let Some(t) = &self.error_type {
            parts.push(format!("type={t}"));
        }
        if let Some(t) = self.since {
            parts.push(format!("since={}", time_text(t)));
        }
        if let Some(t) = self.until {
            parts.push(format!("until={}", time_text(t)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

fn parse_class(text: &str) -> Result<ErrorClass, String> {
    ErrorClass::parse(text.trim())
        .ok_or_else(|| format!("unknown class `{text}`: expected `poison` or `exhausted`"))
}

/// An RFC 3339 time, or a duration before now (`90m`, `1h`, `2days`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("`{text}` reaches too far back")),
        Err(_) => Err(format!(
            "`{text}` is neither an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration ago (90m, 1h, 2days)"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of records per second"
        )),
    }
}

/// `logpipe dlq show` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Show at most this many records: the most recent matching ones by last failure (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON array with every field (key and value as text when UTF-8, else base64).
    #[arg(long)]
    pub json: bool,
}

/// `logpipe dlq replay` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Publish at most this many records per second (default: as fast as Kafka acknowledges).
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Show what would be replayed or parked; produce nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Review the DLQ from its first record, ignoring the replay group's committed progress.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many matching records (replayed or parked).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

// ------------------------------------------------------------------------------------------
// Records
// ------------------------------------------------------------------------------------------

/// A DLQ record whose headers parse.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub dlq_timestamp_ms: Option<i64>,
    pub context: DlqContext,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Every header of the DLQ record, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A DLQ record whose headers do not parse (not written by logpipe, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub reason: String,
}

impl DlqRecord {
    /// Reads a DLQ record; the error names what is wrong with it.
    pub fn parse(message: &OwnedMessage) -> Result<DlqRecord, Unreadable> {
        let unreadable = |reason: String| Unreadable {
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            reason,
        };
        let Some(hs) = message.headers() else {
            return Err(unreadable("no headers".into()));
        };
        let context = DlqContext::from_headers(hs).map_err(unreadable)?;
        Ok(DlqRecord {
            dlq_partition: message.partition(),
            dlq_offset: message.offset(),
            dlq_timestamp_ms: message.timestamp().to_millis(),
            context,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: hs
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
        })
    }

    /// Everything, as `show --json` prints it (see the [`Serialize`] impl).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// `show --json`: DLQ coordinates, every context field, key and value (`key`/`value` as text when
/// UTF-8, else `key_base64`/`value_base64`; `null` when absent), then every header likewise.
impl Serialize for DlqRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'a> {
            dlq_partition: i32,
            dlq_offset: i64,
            dlq_timestamp_ms: Option<i64>,
            #[serde(flatten)]
            context: &'a DlqContext,
            #[serde(flatten)]
            data: BTreeMap<String, Value>,
            headers: Vec<BTreeMap<String, Value>>,
        }
        let mut data = BTreeMap::new();
        put_bytes(&mut data, "key", self.key.as_deref());
        put_bytes(&mut data, "value", self.value.as_deref());
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let mut h = BTreeMap::new();
                h.insert("name".to_string(), json!(name));
                put_bytes(&mut h, "value", value.as_deref());
                h
            })
            .collect();
        Shape {
            dlq_partition: self.dlq_partition,
            dlq_offset: self.dlq_offset,
            dlq_timestamp_ms: self.dlq_timestamp_ms,
            context: &self.context,
            data,
            headers,
        }
        .serialize(serializer)
    }
}

/// `name: "text"` when the bytes are UTF-8, else `name_base64: "..."`; `name: null` when absent.
fn put_bytes(out: &mut BTreeMap<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            out.insert(name.into(), Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.insert(name.into(), json!(text));
            }
            Err(_) => {
                out.insert(format!("{name}_base64"), json!(base64(bytes)));
            }
        },
    }
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Headers of the record republished to its original topic: every header of the DLQ record
/// except `logpipe-dlq-*` (what remains is the original record's own headers), with
/// `logpipe-replay-count` set to `replay_count`.
pub fn replay_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
) -> OwnedHeaders {
    build_headers(dlq_headers, replay_count, |name| {
        !name.starts_with("logpipe-dlq-")
    })
}

/// Headers of a parked record: every header of the DLQ record, with `logpipe-replay-count` set
/// to `replay_count`.
pub fn parked_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
) -> OwnedHeaders {
    build_headers(dlq_headers, replay_count, |_| true)
}

fn build_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
    keep: impl Fn(&str) -> bool,
) -> OwnedHeaders {
    let count = replay_count.to_string();
    let mut out = OwnedHeaders::new_with_capacity(dlq_headers.len() + 1);
    for (name, value) in dlq_headers {
        if name != headers::REPLAY_COUNT && keep(name) {
            out = out.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
    }
    out.insert(Header {
        key: headers::REPLAY_COUNT,
        value: Some(count.as_bytes()),
    })
}

// ------------------------------------------------------------------------------------------
// The bounded scan of the DLQ topic
// ------------------------------------------------------------------------------------------

/// How far a scan read one DLQ partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Offset the scan started at.
    pub start_offset: i64,
    /// High watermark reported when the scan started.
    pub high_watermark_at_start: i64,
    /// One past the highest offset read (the start offset when nothing was read).
    pub end_offset: i64,
    /// Records read (repeats the broker served twice are not counted).
    pub records: u64,
}

struct PartitionScan {
    low_watermark: i64,
    start: i64,
    high_watermark: i64,
    /// One past the highest offset seen; records below it are repeats and are dropped.
    next: i64,
    records: u64,
    /// A record written after the scan started arrived: the partition is read to its end as of
    /// the start.
    beyond: bool,
    /// The first record after a resumed start came with a gap and the partition was re-read from
    /// its low watermark: the offset of that record, until it arrives again.
    rewound_for: Option<i64>,
}

/// Reads every partition of the DLQ topic from a start offset to its end as of the start.
///
/// The end, per partition, is the high watermark captured when the scan starts. Records beyond it
/// are left alone (the next run sees them). On Apache Kafka that watermark is exact and a fetch
/// may start at any offset, so the result is exactly the records present at the start, as
/// Kafka's console consumer prints them (the integration tests compare the two). For brokers that
/// under-report the high watermark or serve a fetch that starts inside a batch wrongly, the scan
/// also:
/// - drops any record whose offset is not above the highest offset already read on its partition;
/// - keeps reading past the watermark until no record arrived for [`SCAN_IDLE_END`] of waiting, taking a
///   record past the watermark as part of the scan when its timestamp is not after the scan's start
///   (so it was there before the scan began: the watermark was low). A record past the watermark
///   and newer than the start marks the partition's end and pauses it.
///
/// - re-reads a partition once from its low watermark when the first record after a resumed
///   start (a committed offset) is past that start: a broker that answers a fetch starting inside
///   a multi-record batch with the *next* batch skips the rest of that one.
///
/// On Apache Kafka these rules only cost the idle wait at the end (and, rarely, one re-read when
/// a transaction marker sits at the start offset). On brokers with those faults they make a low
/// watermark and a mid-batch start harmless; records a broker does not serve at all are left for
/// a later run (nothing is committed past them). The wait for data is bounded by [`SCAN_STALL_LIMIT`].
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

        let partitions: Vec<i32> = blocking(&consumer, {
            let topic = topic.clone();
            move |c| c.fetch_metadata(Some(&topic), timeout)
        })
        .await
        .with_context(|| {
            format!("reading metadata of the DLQ topic `{topic}` (is the broker at `{brokers}` reachable?)")
        })
        .and_then(|metadata| {
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().iter().map(|p| p.id()).collect())
                }
                _ => anyhow::bail!(
                    "the DLQ topic `{topic}` does not exist on `{brokers}`: nothing has been dead-lettered there yet, or \
                     kafka.dlq_topic names another topic. `logpipe topics ensure` creates it"
                ),
            }
        })?;

        let mut committed = HashMap::new();
        if let (Some(group), false) = (group, from_beginning) {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&topic, *p);
            }
            // A coordinator that is moving or still loading (a fresh or restarting cluster)
            // answers NotCoordinator / CoordinatorLoadInProgress for a moment: asked again.
            let deadline = Instant::now() + timeout;
            let found = loop {
                let attempt = tpl.clone();
                let result =
                    blocking(&consumer, move |c| c.committed_offsets(attempt, timeout)).await;
                let moving = result
                    .as_ref()
                    .err()
                    .and_then(|e| e.downcast_ref::<KafkaError>())
                    .and_then(KafkaError::rdkafka_error_code)
                    .is_some_and(|code| {
                        matches!(
                            code,
                            RDKafkaErrorCode::NotCoordinator
                                | RDKafkaErrorCode::CoordinatorLoadInProgress
                                | RDKafkaErrorCode::CoordinatorNotAvailable
                        )
                    });
                if moving && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                break result.with_context(|| {
                    format!("reading the committed offsets of consumer group `{group}` (dlq.replay_group)")
                })?;
            };
            for e in found.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }

        let mut parts = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = blocking(&consumer, {
                let topic = topic.clone();
                move |c| c.fetch_watermarks(&topic, p, timeout)
            })
            .await
            .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
            let start = committed.get(&p).map_or(low, |&c| c.max(low));
            assignment.add_partition_offset(&topic, p, Offset::Offset(start))?;
            parts.insert(
                p,
                PartitionScan {
                    low_watermark: low,
                    start,
                    high_watermark: high,
                    next: start,
                    records: 0,
                    beyond: false,
                    rewound_for: None,
                },
            );
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
        self.parts
            .values()
            .map(|p| (p.high_watermark - p.start).max(0) as u64)
            .sum()
    }

    /// How far each partition was read.
    pub fn progress(&self) -> Vec<PartitionProgress> {
        self.parts
            .iter()
            .map(|(&partition, p)| PartitionProgress {
                partition,
                start_offset: p.start,
                high_watermark_at_start: p.high_watermark,
                end_offset: p.next,
                records: p.records,
            })
            .collect()
    }

    fn reached_watermarks(&self) -> bool {
        self.parts
            .values()
            .all(|p| p.next >= p.high_watermark && p.rewound_for.is_none())
    }

    fn finished(&self) -> bool {
        self.reached_watermarks()
            && (self.parts.values().all(|p| p.beyond) || self.idle >= SCAN_IDLE_END)
    }

    /// Takes each partition's consumer position as read up to there: it moves past records the
    /// application never sees (transaction markers, aborted records), which would otherwise keep
    /// a partition below its high watermark forever. A position never passes a record not yet
    /// returned by [`DlqScan::next`].
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
                // Not while re-reading after a gap: the position is past records still to come.
                if part.rewound_for.is_none() {
                    part.next = part.next.max(o);
                }
            }
        }
    }

    /// The next record of the scan, or `None` at its end.
    pub async fn next(&mut self) -> anyhow::Result<Option<OwnedMessage>> {
        loop {
            if self.finished() {
                if self.repeats > 0 {
                    tracing::debug!(
                        repeats = self.repeats,
                        "dropped records the broker served twice"
                    );
                }
                return Ok(None);
            }
            if !self.reached_watermarks() && self.quiet >= SCAN_STALL_LIMIT {
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
                anyhow::bail!(
                    "reading the DLQ stalled: nothing arrived for {}s with {} still behind{}. Check that the broker is up \
                     and serving `{}` (`logpipe topics describe {}`), then run the command again",
                    SCAN_STALL_LIMIT.as_secs(),
                    behind.join(", "),
                    self.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default(),
                    self.topic,
                    self.topic
                );
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
            if offset < part.next {
                self.repeats += 1;
                continue;
            }
            if part.records == 0
                && part.rewound_for.is_none()
                && part.start > part.low_watermark
                && offset > part.start
            {
                // The first record after a resumed start is past the start: the broker may have
                // skipped the rest of the batch the start offset is in. Read the partition again from its low
                // watermark (fetches from there are batch-aligned) and drop what comes before the
                // start. On Kafka a gap here is rare (a transaction marker), and costs one re-read.
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
                    part.rewound_for = Some(offset);
                    continue;
                }
            }
            if part.rewound_for.is_some_and(|gap| offset >= gap) {
                part.rewound_for = None;
            }
            let newer = received
                .timestamp()
                .to_millis()
                .is_some_and(|ts| ts > self.started_ms);
            if offset >= part.high_watermark && newer {
                // Written after the scan started: this partition is done.
                part.beyond = true;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&self.topic, partition);
                let _ = self.consumer.pause(&tpl);
                continue;
            }
            part.next = offset + 1;
            part.records += 1;
            self.idle = Duration::ZERO;
            return Ok(Some(received));
        }
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

/// The scan's client context: reaching the end of a partition is expected here, not an error
/// worth a log line (librdkafka reports it through the error callback too).
struct ScanContext;

impl ClientContext for ScanContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "end of a DLQ partition")
            }
            error => tracing::warn!(%error, reason, "Kafka client error while reading the DLQ"),
        }
    }
}

impl ConsumerContext for ScanContext {}

/// Runs a blocking librdkafka call off the async runtime.
async fn blocking<T: Send + 'static>(
    consumer: &Arc<StreamConsumer<ScanContext>>,
    call: impl FnOnce(&StreamConsumer<ScanContext>) -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let consumer = consumer.clone();
    Ok(tokio::task::spawn_blocking(move || call(&consumer)).await??)
}

fn require_brokers(config: &Config) -> anyhow::Result<String> {
    config.kafka.cluster_brokers(
        &format!(
            "the dlq commands read the dead-letter topic `{}` from a Kafka cluster",
            config.kafka.dlq_topic
        ),
        " to the cluster the consumers write to (the embedded broker lives inside one `logpipe run` \
         process and keeps nothing after it stops)",
    )
}

// ------------------------------------------------------------------------------------------
// stats
// ------------------------------------------------------------------------------------------

/// What `logpipe dlq stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStats {
    pub topic: String,
    /// Records read: readable plus unreadable.
    pub total: u64,
    pub readable: u64,
    pub unreadable: u64,
    pub by_class: Vec<ClassStats>,
    pub by_type: Vec<TypeStats>,
    pub by_original_topic: Vec<TopicCount>,
    /// Unreadable records grouped by reason.
    pub unreadable_reasons: Vec<UnreadableReason>,
    pub partitions: Vec<PartitionProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    pub class: ErrorClass,
    pub count: u64,
    pub oldest_last_failure: DateTime<Utc>,
    pub newest_last_failure: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeStats {
    pub class: ErrorClass,
    pub error_type: String,
    pub count: u64,
    pub oldest_last_failure: DateTime<Utc>,
    pub newest_last_failure: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicCount {
    pub topic: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableReason {
    pub reason: String,
    pub count: u64,
    /// Where the first one is.
    pub first_partition: i32,
    pub first_offset: i64,
}

#[derive(Default)]
struct Span {
    count: u64,
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

impl Span {
    fn add(&mut self, t: DateTime<Utc>) {
        self.count += 1;
        self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
    }
}

/// Reads the whole DLQ topic (as of now) and counts its records.
pub async fn stats(config: &Config) -> anyhow::Result<DlqStats> {
    let brokers = require_brokers(config)?;
    let mut scan = DlqScan::open(config, &brokers, None, true).await?;
    let mut classes: BTreeMap<ErrorClass, Span> = BTreeMap::new();
    let mut types: BTreeMap<(ErrorClass, String), Span> = BTreeMap::new();
    let mut topics: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, UnreadableReason> = BTreeMap::new();
    let (mut readable, mut unreadable) = (0, 0);
    while let Some(message) = scan.next().await? {
        match DlqRecord::parse(&message) {
            Ok(record) => {
                readable += 1;
                let c = &record.context;
                classes.entry(c.class).or_default().add(c.last_failure);
                types
                    .entry((c.class, c.error_type.clone()))
                    .or_default()
                    .add(c.last_failure);
                *topics.entry(c.original_topic.clone()).or_default() += 1;
            }
            Err(bad) => {
                unreadable += 1;
                reasons
                    .entry(bad.reason.clone())
                    .or_insert(UnreadableReason {
                        reason: bad.reason,
                        count: 0,
                        first_partition: bad.dlq_partition,
                        first_offset: bad.dlq_offset,
                    })
                    .count += 1;
            }
        }
    }
    let span_times = |s: &Span| (s.oldest.unwrap_or_default(), s.newest.unwrap_or_default());
    let by_class = classes
        .iter()
        .map(|(&class, s)| {
            let (oldest, newest) = span_times(s);
            ClassStats {
                class,
                count: s.count,
                oldest_last_failure: oldest,
                newest_last_failure: newest,
            }
        })
        .collect();
    let mut by_type: Vec<TypeStats> = types
        .iter()
        .map(|((class, error_type), s)| {
            let (oldest, newest) = span_times(s);
            TypeStats {
                class: *class,
                error_type: error_type.clone(),
                count: s.count,
                oldest_last_failure: oldest,
                newest_last_failure: newest,
            }
        })
        .collect();
    by_type.sort_by(|a, b| {
        (a.class, std::cmp::Reverse(a.count), &a.error_type).cmp(&(
            b.class,
            std::cmp::Reverse(b.count),
            &b.error_type,
        ))
    });
    let mut by_original_topic: Vec<TopicCount> = topics
        .into_iter()
        .map(|(topic, count)| TopicCount { topic, count })
        .collect();
    by_original_topic.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
    let mut unreadable_reasons: Vec<UnreadableReason> = reasons.into_values().collect();
    unreadable_reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Ok(DlqStats {
        topic: config.kafka.dlq_topic.clone(),
        total: readable + unreadable,
        readable,
        unreadable,
        by_class,
        by_type,
        by_original_topic,
        unreadable_reasons,
        partitions: scan.progress(),
    })
}

/// `logpipe dlq stats [--json]`.
pub async fn run_stats(config: &Config, json: bool) -> anyhow::Result<()> {
    let s = stats(config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "DLQ topic {}: {} records ({} readable, {} unreadable) in {} partitions",
        s.topic,
        s.total,
        s.readable,
        s.unreadable,
        s.partitions.len()
    );
    if s.total == 0 {
        println!("The dead-letter topic is empty.");
        return Ok(());
    }
    if !s.by_class.is_empty() {
        let mut table = new_table(&[
            "CLASS",
            "COUNT",
            "OLDEST LAST FAILURE",
            "NEWEST LAST FAILURE",
        ]);
        for c in &s.by_class {
            table.add_row(vec![
                Cell::new(c.class.as_str()),
                right(c.count),
                Cell::new(time_text(c.oldest_last_failure)),
                Cell::new(time_text(c.newest_last_failure)),
            ]);
        }
        table.add_row(vec![
            Cell::new("total"),
            right(s.readable),
            Cell::new(""),
            Cell::new(""),
        ]);
        println!("\nBy class\n{table}");
        let mut table = new_table(&[
            "CLASS",
            "TYPE",
            "COUNT",
            "OLDEST LAST FAILURE",
            "NEWEST LAST FAILURE",
        ]);
        for t in &s.by_type {
            table.add_row(vec![
                Cell::new(t.class.as_str()),
                Cell::new(&t.error_type),
                right(t.count),
                Cell::new(time_text(t.oldest_last_failure)),
                Cell::new(time_text(t.newest_last_failure)),
            ]);
        }
        println!("\nBy error type\n{table}");
        let mut table = new_table(&["ORIGINAL TOPIC", "COUNT"]);
        for t in &s.by_original_topic {
            table.add_row(vec![Cell::new(&t.topic), right(t.count)]);
        }
        println!("\nBy original topic\n{table}");
    }
    if !s.unreadable_reasons.is_empty() {
        let mut table = new_table(&["UNREADABLE: REASON", "COUNT", "FIRST AT (PARTITION/OFFSET)"]);
        for u in &s.unreadable_reasons {
            table.add_row(vec![
                Cell::new(&u.reason),
                right(u.count),
                Cell::new(format!("{}/{}", u.first_partition, u.first_offset)),
            ]);
        }
        println!("\n{table}");
        println!(
            "Unreadable records lack logpipe's DLQ headers (written by another producer, or damaged); `dlq replay` \
             skips them. Inspect one with a Kafka client at the partition/offset shown."
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// show
// ------------------------------------------------------------------------------------------

/// What `logpipe dlq show` found.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Matching records kept (the most recent `limit` by last failure), oldest first.
    pub records: Vec<DlqRecord>,
    /// Matching records in the whole topic.
    pub matched: u64,
    /// Records read.
    pub scanned: u64,
    pub unreadable: Vec<Unreadable>,
}

/// A heap entry ordering records so the *oldest* is on top (evicted first).
struct Newest(DlqRecord);

impl Newest {
    fn order_key(
        &self,
    ) -> (
        std::cmp::Reverse<DateTime<Utc>>,
        std::cmp::Reverse<(i32, i64)>,
    ) {
        (
            std::cmp::Reverse(self.0.context.last_failure),
            std::cmp::Reverse((self.0.dlq_partition, self.0.dlq_offset)),
        )
    }
}
impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}
impl Eq for Newest {}
impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Newest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

/// Reads the whole DLQ topic (as of now) and keeps the `limit` most recent records matching
/// `filter` (0 = all).
pub async fn show(config: &Config, filter: &Filter, limit: usize) -> anyhow::Result<Shown> {
    let brokers = require_brokers(config)?;
    let mut scan = DlqScan::open(config, &brokers, None, true).await?;
    let mut kept: BinaryHeap<Newest> = BinaryHeap::new();
    let (mut matched, mut scanned) = (0, 0);
    let mut unreadable = Vec::new();
    while let Some(message) = scan.next().await? {
        scanned += 1;
        match DlqRecord::parse(&message) {
            Ok(record) if filter.matches(&record.context) => {
                matched += 1;
                kept.push(Newest(record));
                if limit > 0 && kept.len() > limit {
                    kept.pop();
                }
            }
            Ok(_) => {}
            Err(bad) => unreadable.push(bad),
        }
    }
    let mut records: Vec<DlqRecord> = kept.into_iter().map(|n| n.0).collect();
    records.sort_by_key(|r| (r.context.last_failure, r.dlq_partition, r.dlq_offset));
    Ok(Shown {
        records,
        matched,
        scanned,
        unreadable,
    })
}

/// `logpipe dlq show`.
pub async fn run_show(config: &Config, args: &ShowArgs) -> anyhow::Result<()> {
    let shown = show(config, &args.filter, args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown.records)?);
    } else {
        let mut table = new_table(&[
            "DLQ P/OFF",
            "ORIGINAL TOPIC/P/OFF",
            "CLASS",
            "TYPE",
            "TRIES",
            "REPLAYS",
            "LAST FAILURE",
            "ERROR",
            "VALUE",
        ]);
        // Fits the terminal when there is one (long cells wrap); piped output keeps one line each.
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        for r in &shown.records {
            let c = &r.context;
            table.add_row(vec![
                Cell::new(format!("{}/{}", r.dlq_partition, r.dlq_offset)),
                Cell::new(format!(
                    "{}/{}/{}",
                    c.original_topic, c.original_partition, c.original_offset
                )),
                Cell::new(c.class.as_str()),
                Cell::new(&c.error_type),
                right(c.attempts),
                right(c.replay_count),
                Cell::new(time_text(c.last_failure)),
                Cell::new(truncate(&c.error_message, MESSAGE_WIDTH)),
                Cell::new(preview(r.value.as_deref(), PREVIEW_WIDTH)),
            ]);
        }
        if !shown.records.is_empty() {
            println!("{table}");
        }
    }
    let limited = if shown.matched > shown.records.len() as u64 {
        " (the most recent by last failure; raise --limit or narrow with --type/--since to see others)"
    } else {
        ""
    };
    eprintln!(
        "{} of {} matching records shown{limited}; {} records in `{}`, filters: {}",
        shown.records.len(),
        shown.matched,
        shown.scanned,
        config.kafka.dlq_topic,
        args.filter.describe()
    );
    if !shown.unreadable.is_empty() {
        eprintln!(
            "{} unreadable records left out (see `logpipe dlq stats`)",
            shown.unreadable.len()
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// replay
// ------------------------------------------------------------------------------------------

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

/// What replay does with a matching record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Republished to its original topic.
    Replay,
    /// Written to the parked topic: it was replayed `dlq.max_replays` times already.
    Park,
}

/// One matching record and what replay did (or, dry, would do) with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayAction {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub class: ErrorClass,
    pub error_type: String,
    /// The replay count the published record carries.
    pub replay_count: u32,
    pub action: Action,
    /// Topic written to.
    pub destination: String,
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

/// A record that is done (acknowledged, or needing no produce) or failed.
struct Done {
    partition: i32,
    offset: i64,
    result: Result<(), String>,
}

type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Commit bookkeeping: per partition, the next offset whose predecessors are all done.
#[derive(Default)]
struct Progress {
    done_upto: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
    failed_partitions: HashSet<i32>,
    failure: Option<String>,
}

impl Progress {
    fn record(&mut self, done: Done) {
        match done.result {
            Ok(()) if !self.failed_partitions.contains(&done.partition) => {
                self.done_upto.insert(done.partition, done.offset + 1);
            }
            Ok(()) => {}
            Err(why) => {
                self.failed_partitions.insert(done.partition);
                self.failure.get_or_insert(why);
            }
        }
    }

    fn uncommitted(&self) -> BTreeMap<i32, i64> {
        self.done_upto
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(&p, &o)| (p, o))
            .collect()
    }
}

/// The idempotent, acks=all producer replay publishes with; the `[producer]` settings
/// (compression, linger, delivery timeout, properties) apply.
fn replay_producer(config: &Config, brokers: &str) -> anyhow::Result<FutureProducer> {
    let p = &config.producer;
    let client = producer_config(
        config,
        brokers,
        "dlq-replay",
        p.linger,
        p.delivery_timeout,
        &[],
    );
    client
        .create()
        .context("creating the Kafka producer for the replay")
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
        Some(Arc::new(replay_producer(config, &brokers)?))
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
        let c = &record.context;
        let replay_count = c.replay_count.saturating_add(1);
        let (action, destination) = if c.replay_count >= config.dlq.max_replays {
            (Action::Park, config.kafka.parked_topic.clone())
        } else {
            (Action::Replay, c.original_topic.clone())
        };
        match action {
            Action::Replay => report.replayed += 1,
            Action::Park => report.parked += 1,
        }
        report.actions.push(ReplayAction {
            dlq_partition: partition,
            dlq_offset: offset,
            original_topic: c.original_topic.clone(),
            original_partition: c.original_partition,
            original_offset: c.original_offset,
            class: c.class,
            error_type: c.error_type.clone(),
            replay_count,
            action,
            destination: destination.clone(),
        });
        bar.set_message(format!(
            "replayed {} · parked {} · skipped {}",
            report.replayed, report.parked, report.skipped_by_filter
        ));
        let Some(producer) = &producer else {
            in_flight.push_back(ready(Ok(())));
            continue;
        };
        if !known_topics.contains(&destination) {
            let checked = match action {
                Action::Park => ensure_parked_topic(config, &brokers).await,
                Action::Replay => topic_exists(producer, &destination, config.kafka.request_timeout)
                    .await
                    .and_then(|exists| {
                        if exists {
                            Ok(())
                        } else {
                            anyhow::bail!(
                                "the original topic `{destination}` of DLQ record {partition}/{offset} does not exist; \
                                 create it (`logpipe topics ensure` creates kafka.topic), or leave such records out with \
                                 --type/--class/--since, then run the replay again"
                            )
                        }
                    }),
            };
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
        let headers = match action {
            Action::Replay => replay_headers(&record.headers, replay_count),
            Action::Park => parked_headers(&record.headers, replay_count),
        };
        let timestamp = match action {
            Action::Replay => record.context.original_timestamp_ms,
            Action::Park => None,
        };
        match enqueue(producer, &destination, &record, headers, timestamp).await {
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

/// Enqueues one record; waits while librdkafka's queue is full.
async fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    record: &DlqRecord,
    headers: OwnedHeaders,
    timestamp: Option<i64>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    if let Some(ts) = timestamp {
        out = out.timestamp(ts);
    }
    loop {
        match producer.send_result(out) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                out = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

async fn topic_exists(
    producer: &Arc<FutureProducer>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let producer = producer.clone();
    let name = topic.to_string();
    let metadata =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), timeout))
            .await?
            .with_context(|| format!("reading metadata of `{topic}`"))?;
    Ok(metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

/// Creates `kafka.parked_topic` when absent.
async fn ensure_parked_topic(config: &Config, brokers: &str) -> anyhow::Result<()> {
    let client = client_config(&config.kafka, brokers, "admin", &Default::default());
    let specs: Vec<TopicSpec> = TopicSpec::from_config(&config.kafka)
        .into_iter()
        .filter(|s| s.name == config.kafka.parked_topic)
        .collect();
    ensure_topics(&client, &specs, config.kafka.request_timeout)
        .await
        .with_context(|| format!("creating the parked topic `{}`", config.kafka.parked_topic))?;
    Ok(())
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

/// `logpipe dlq replay`.
pub async fn run_replay(
    config: &Config,
    args: &ReplayArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let report = replay(config, &ReplayOptions::from(args), stop).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_replay(config, args, &report);
    }
    if let Some(failure) = &report.failure {
        anyhow::bail!(
            "the replay stopped early: {failure}. Progress up to that point is committed to group `{}`; fix the cause \
             and run `logpipe dlq replay` again to continue from there",
            report.group
        );
    }
    Ok(())
}

fn print_replay(config: &Config, args: &ReplayArgs, r: &ReplayReport) {
    if r.dry_run && !r.actions.is_empty() {
        let mut table = new_table(&[
            "DLQ P/OFFSET",
            "ORIGINAL TOPIC/P/OFFSET",
            "CLASS",
            "TYPE",
            "REPLAYS AFTER",
            "WOULD",
        ]);
        for a in r.actions.iter().take(DRY_RUN_ROWS) {
            table.add_row(vec![
                Cell::new(format!("{}/{}", a.dlq_partition, a.dlq_offset)),
                Cell::new(format!(
                    "{}/{}/{}",
                    a.original_topic, a.original_partition, a.original_offset
                )),
                Cell::new(a.class.as_str()),
                Cell::new(&a.error_type),
                right(a.replay_count),
                Cell::new(match a.action {
                    Action::Replay => format!("replay → {}", a.destination),
                    Action::Park => format!("park → {}", a.destination),
                }),
            ]);
        }
        println!("{table}");
        if r.actions.len() > DRY_RUN_ROWS {
            println!(
                "... and {} more (--json lists them all)",
                r.actions.len() - DRY_RUN_ROWS
            );
        }
    }
    let verb = |done: &str, dry: &str| {
        if r.dry_run {
            dry.to_string()
        } else {
            done.to_string()
        }
    };
    let mut table = new_table(&["RESULT", "RECORDS"]);
    table.add_row(vec![
        Cell::new(verb(
            "replayed to original topics",
            "would replay to original topics",
        )),
        right(r.replayed),
    ]);
    table.add_row(vec![
        Cell::new(verb(
            &format!("parked in {}", config.kafka.parked_topic),
            &format!("would park in {}", config.kafka.parked_topic),
        )),
        right(r.parked),
    ]);
    table.add_row(vec![
        Cell::new("skipped by filter"),
        right(r.skipped_by_filter),
    ]);
    table.add_row(vec![
        Cell::new("unreadable (skipped)"),
        right(r.unreadable.len()),
    ]);
    println!("{table}");
    let reviewed: Vec<String> = r
        .partitions
        .iter()
        .map(|p| format!("{}: {}..{}", p.partition, p.start_offset, p.end_offset))
        .collect();
    println!(
        "Reviewed `{}` partitions {} (filters: {}).",
        config.kafka.dlq_topic,
        reviewed.join(", "),
        args.filter.describe()
    );
    if r.dry_run {
        println!(
            "Dry run: nothing was published and group `{}` was not moved. Run without --dry-run to do it.",
            r.group
        );
    } else if r.committed.is_empty() {
        println!(
            "Nothing new to review: group `{}` had already reviewed up to the end. --from-beginning reviews the whole topic again.",
            r.group
        );
    } else {
        println!(
            "Group `{}` now starts the next replay after what was reviewed here, skipped records included; \
             --from-beginning reviews the whole topic again.",
            r.group
        );
    }
    if r.limit_reached {
        println!("Stopped at --limit; run again to continue.");
    }
    for u in &r.unreadable {
        println!(
            "unreadable DLQ record {}/{} skipped: {}",
            u.dlq_partition, u.dlq_offset, u.reason
        );
    }
}

// ------------------------------------------------------------------------------------------
// Formatting
// ------------------------------------------------------------------------------------------

fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// At most `width` characters, control characters shown as spaces, `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= width {
        clean
    } else {
        let mut out: String = clean.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A value as text for a table cell: UTF-8 truncated, or `<N bytes, not UTF-8>`.
pub fn preview(value: Option<&[u8]>, width: usize) -> String {
    match value {
        None => "<null>".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => truncate(text, width),
            Err(_) => format!("<{} bytes, not UTF-8>", bytes.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> DlqContext {
        let t = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        DlqContext {
            original_topic: "application-logs".into(),
            original_partition: 1,
            original_offset: 10,
            original_timestamp_ms: None,
            consumer_group: "g".into(),
            instance_id: "h-1-0".into(),
            class: ErrorClass::Exhausted,
            error_type: "step:enrich".into(),
            error_message: "boom".into(),
            attempts: 4,
            first_failure: t,
            last_failure: t,
            version: "0.1.0".into(),
            replay_count: 0,
        }
    }

    #[test]
    fn filter_matches_class_type_prefix_and_time_window() {
        let c = context();
        assert!(Filter::default().matches(&c));
        let class = |class| Filter {
            class: Some(class),
            ..Filter::default()
        };
        assert!(class(ErrorClass::Exhausted).matches(&c));
        assert!(!class(ErrorClass::Poison).matches(&c));
        let error_type = |t: &str| Filter {
            error_type: Some(t.into()),
            ..Filter::default()
        };
        assert!(error_type("step:enrich").matches(&c));
        assert!(error_type("step:*").matches(&c));
        assert!(!error_type("step").matches(&c));
        let at = c.last_failure;
        let window = |since, until| Filter {
            since,
            until,
            ..Filter::default()
        };
        assert!(window(Some(at), None).matches(&c), "since is inclusive");
        assert!(!window(None, Some(at)).matches(&c), "until is exclusive");
        assert!(window(None, Some(at + chrono::Duration::seconds(1))).matches(&c));
        assert!(!window(Some(at + chrono::Duration::seconds(1)), None).matches(&c));
    }

    #[test]
    fn times_parse_as_rfc3339_or_duration_ago() {
        assert_eq!(
            parse_time("2026-11-25T10:00:00+01:00").unwrap(),
            DateTime::parse_from_rfc3339("2026-11-25T09:00:00Z").unwrap()
        );
        let hour_ago = parse_time("1h").unwrap();
        let expected = Utc::now() - chrono::Duration::hours(1);
        assert!((hour_ago - expected).num_seconds().abs() <= 2);
        let err = parse_time("yesterday-ish").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(parse_class("POISON").is_err());
        assert_eq!(parse_class("poison").unwrap(), ErrorClass::Poison);
        assert!(parse_rate("0").is_err() && parse_rate("2.5").is_ok());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn replay_headers_drop_dlq_headers_and_bump_the_count() {
        let c = DlqContext {
            replay_count: 1,
            ..context()
        };
        let hs = c.to_headers(&[
            ("logpipe-ingest-ms", b"123"),
            ("logpipe-request-id", b"r-1"),
        ]);
        let list: Vec<(String, Option<Vec<u8>>)> = hs
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let names = |hs: &OwnedHeaders| -> Vec<(String, String)> {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        };
        let replayed = names(&replay_headers(&list, 2));
        assert_eq!(
            replayed,
            vec![
                ("logpipe-ingest-ms".into(), "123".into()),
                ("logpipe-request-id".into(), "r-1".into()),
                (headers::REPLAY_COUNT.into(), "2".into()),
            ]
        );
        let parked = parked_headers(&list, 2);
        let back = DlqContext::from_headers(&parked).unwrap();
        assert_eq!(
            back,
            DlqContext {
                replay_count: 2,
                ..c
            }
        );
        assert_eq!(
            names(&parked)
                .iter()
                .filter(|(k, _)| k == headers::REPLAY_COUNT)
                .count(),
            1
        );
    }

    #[test]
    fn previews_truncate_and_mark_binary() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(preview(Some(&[0xff, 0x00]), 10), "<2 bytes, not UTF-8>");
        assert_eq!(preview(None, 10), "<null>");
    }

    #[test]
    fn json_shows_utf8_as_text_and_binary_as_base64() {
        let r = DlqRecord {
            dlq_partition: 0,
            dlq_offset: 5,
            dlq_timestamp_ms: Some(1),
            context: context(),
            key: Some(b"svc".to_vec()),
            value: Some(vec![0xff, 0x01]),
            headers: vec![("h".into(), None)],
        };
        let v = r.to_json();
        assert_eq!(v["key"], "svc");
        assert_eq!(v["value_base64"], "/wE=");
        assert!(v.get("value").is_none());
        assert_eq!(v["class"], "exhausted");
        assert_eq!(v["original_topic"], "application-logs");
        assert_eq!(v["headers"][0]["value"], Value::Null);
    }

    #[test]
    fn progress_commits_contiguous_prefix_and_freezes_a_failed_partition() {
        let mut p = Progress::default();
        let done = |partition, offset, ok: bool| Done {
            partition,
            offset,
            result: if ok { Ok(()) } else { Err("nope".into()) },
        };
        p.record(done(0, 4, true));
        p.record(done(1, 7, true));
        p.record(done(0, 5, false));
        p.record(done(0, 6, true));
        p.record(done(1, 8, true));
        assert_eq!(p.uncommitted(), BTreeMap::from([(0, 5), (1, 9)]));
        assert_eq!(p.failure.as_deref(), Some("nope"));
        p.committed = p.uncommitted();
        assert!(p.uncommitted().is_empty());
    }
}
