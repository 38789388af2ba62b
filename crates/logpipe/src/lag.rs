//! `logpipe lag`: a consumer group's lag per partition, read live from the brokers, with a
//! Burrow-style status per partition evaluated over a window of samples.
//!
//! Every number is read from the cluster at the moment of the sample, never from a client's
//! cached statistics, so nothing is stale after a rebalance:
//! - committed offsets: OffsetFetch, through a consumer with the group's `group.id` that never
//!   subscribes (so never joins the group) and never commits;
//! - log-end offsets: ListOffsets(latest) per partition (`fetch_watermarks`) at isolation level
//!   read_uncommitted, i.e. the high watermark, as `kafka-consumer-groups` reports it (at
//!   read_committed an open transaction would hold the end back at the last stable offset), read
//!   *after* the committed offsets so a lag is never negative because of the order of the reads;
//! - members: DescribeGroups (`fetch_group_list`), whose member assignments are the consumer
//!   protocol's `MemberAssignment` bytes, parsed by [`parse_assignment`]; for a KIP-848 group,
//!   ConsumerGroupDescribe (see below).
//!
//! Lag in seconds ([`LagReader::lag_seconds`]) is the age of the oldest record the group has not
//! consumed: `now - timestamp` of the record at the committed offset (0 when the lag is 0). Those
//! records are fetched by one assign-only consumer for all lagging partitions at once (it never
//! joins a group and never commits), within a fixed time budget; a partition whose record did not
//! arrive in time shows `-`. The timestamp is the record's Kafka timestamp (CreateTime: when the
//! producer created it, or LogAppendTime if the topic says so), so clock skew between producers
//! and this machine shifts the figure.
//!
//! Statuses ([`evaluate`]) follow Burrow's rules, adapted to what the Kafka protocol tells a
//! client (it does not say *when* an offset was committed). Over the window's samples of one
//! partition that have a committed offset, the first rule that holds wins:
//! 1. REWIND: the committed offset went backwards between two samples.
//! 2. OK: the lag was 0 in some sample.
//! 3. (no status, `-`): fewer than two samples, so movement cannot be judged yet.
//! 4. STOP: the committed offset did not move over the window, the lag is above 0, and the last
//!    sample shows that no member of the group owns the partition (the group is empty, or
//!    stable without it): nobody is consuming it.
//! 5. STALL: the committed offset did not move over the window and the lag is above 0, while a
//!    member owns the partition (or membership is unknown): the consumer is there but stuck.
//! 6. WARN: the committed offset moved, but the lag grew between every two samples.
//! 7. OK otherwise (the offset moves and the lag is not growing steadily).
//!
//! A partition the group never committed to has no status (`-`, `null` in JSON), like the `-` in
//! `kafka-consumer-groups --describe`. Severity, worst last (Burrow's order): OK, WARN, STOP,
//! STALL, REWIND; `--fail-on` compares against it.
//!
//! Apache Kafka is the reference: the integration tests compare every column with
//! `kafka-consumer-groups --describe`. Where a broker tells less, `lag` says so and degrades:
//! - DescribeGroups describes classic groups only. Apache Kafka answers it for any other group (a
//!   KIP-848 `group.protocol=consumer` group, a share or streams group) as it does for a group
//!   that does not exist: state `Dead`, no members, no error. Such a group is described again
//!   with ConsumerGroupDescribe (librdkafka's `rd_kafka_DescribeConsumerGroups`), whose members
//!   come with their current assignment, client id and host. A group neither describes (share
//!   and streams groups, brokers without KIP-848) stays `Dead` with unknown members: the owner
//!   columns show `-` with a note, and a partition whose offset does not move is STALL, never
//!   STOP.
//! - A broker may list members without their assignment, client id or host (some test brokers
//!   answer with an empty MemberAssignment for every member of a Stable group). Members are then listed by id,
//!   the owner columns show `-` with a note, and an idle partition in a group with members is
//!   STALL. STOP is still reported for an Empty group.
//! - A committed offset above the reported log end (a broker whose ListOffsets under-reports it)
//!   counts as lag 0.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::Cell;

use crate::commands::{new_table, right};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KafkaConfig};
use crate::kafka::{apply_properties, base_config};

/// How long [`LagReader::lag_seconds`] waits for the records at the committed offsets.
pub const LAG_SECONDS_BUDGET: Duration = Duration::from_secs(5);
/// Group id of the assign-only consumer that reads records for lag in seconds: never joined,
/// never committed to.
const PROBE_GROUP: &str = "logpipe-lag-probe";
/// `assignment_error` of a member whose MemberAssignment came back empty: normal while a group
/// rebalances; in a Stable group it means the broker does not report assignments (Apache Kafka
/// always does).
pub const ASSIGNMENT_NOT_REPORTED: &str = "not reported by the broker (empty MemberAssignment)";
/// Watermark requests in flight at once.
const WATERMARK_PARALLELISM: usize = 8;

// ------------------------------------------------------------------------------------------
// Status evaluation (pure)
// ------------------------------------------------------------------------------------------

/// A partition's status over the window. The order is the severity, worst last (Burrow's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Caught up at some point of the window, or consuming without falling behind steadily.
    #[value(name = "OK")]
    Ok,
    /// Consuming, but the lag grew between every two samples of the window.
    #[value(name = "WARN")]
    Warn,
    /// Not consuming: the offset did not move, the lag is above 0 and no member owns the partition.
    #[value(name = "STOP")]
    Stop,
    /// Stuck: the offset did not move and the lag is above 0 while a member owns the partition.
    #[value(name = "STALL")]
    Stall,
    /// The committed offset went backwards (an offset reset, or a rewinding consumer).
    #[value(name = "REWIND")]
    Rewind,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stop => "STOP",
            Status::Stall => "STALL",
            Status::Rewind => "REWIND",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample of one partition, as [`evaluate`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// The log-end offset (high watermark).
    pub end: i64,
    /// Whether a member of the group owns the partition (`None`: unknown, e.g. mid-rebalance or
    /// the broker does not describe groups).
    pub owned: Option<bool>,
}

impl Observation {
    /// `end - committed`, never below 0 (`None` without a committed offset).
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.end - c).max(0))
    }
}

/// The status of one partition over a window of samples, oldest first (rules in the module
/// docs). `None` when no sample has a committed offset, or when fewer than two do and the lag
/// was never 0.
pub fn evaluate(window: &[Observation]) -> Option<Status> {
    let seen: Vec<(i64, i64, Option<bool>)> = window
        .iter()
        .filter_map(|o| Some((o.committed?, o.lag()?, o.owned)))
        .collect();
    let (first, last) = (seen.first()?, seen.last()?);
    if seen.windows(2).any(|w| w[1].0 < w[0].0) {
        return Some(Status::Rewind);
    }
    if seen.iter().any(|&(_, lag, _)| lag == 0) {
        return Some(Status::Ok);
    }
    if seen.len() < 2 {
        return None;
    }
    if first.0 == last.0 {
        return Some(if last.2 == Some(false) {
            Status::Stop
        } else {
            Status::Stall
        });
    }
    if seen.windows(2).all(|w| w[1].1 > w[0].1) {
        return Some(Status::Warn);
    }
    Some(Status::Ok)
}

// ------------------------------------------------------------------------------------------
// Consumer protocol MemberAssignment
// ------------------------------------------------------------------------------------------

/// The partitions of one topic a member is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicAssignment {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// Parses the consumer protocol's `MemberAssignment` (what DescribeGroups returns per member of
/// a group with protocol type `consumer`, whatever the assignor: range, roundrobin,
/// cooperative-sticky):
///
/// ```text
/// version: int16
/// assigned_partitions: int32 count, then per topic: topic string (int16 length + UTF-8),
///                      int32 count of int32 partitions
/// user_data: int32 length + bytes (-1: null)   (ignored, as is anything after it)
/// ```
///
/// Empty bytes (a member between rebalance phases) mean no assignment.
pub fn parse_assignment(bytes: &[u8]) -> Result<Vec<TopicAssignment>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(format!("unsupported assignment version {version}"));
    }
    let topics = r.count("topic count", 2 + 4)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string("topic name")?;
        let n = r.count("partition count", 4)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(r.i32("partition")?);
        }
        out.push(TopicAssignment { topic, partitions });
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at byte {} reading {what} ({} bytes in all)",
                self.at,
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length; -1 (null) is empty. `min_item` bytes per item bound it by what is left.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize, String> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(0);
        }
        let n = usize::try_from(n).map_err(|_| format!("negative {what} {n}"))?;
        if n.saturating_mul(min_item) > self.bytes.len() - self.at {
            return Err(format!(
                "{what} {n} exceeds the {} bytes left",
                self.bytes.len() - self.at
            ));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.i16(what)?;
        let len = usize::try_from(len).map_err(|_| format!("null or negative-length {what}"))?;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

// ------------------------------------------------------------------------------------------
// Live reads
// ------------------------------------------------------------------------------------------

/// A group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub consumer_id: String,
    /// `None` when the broker reports none (an empty string).
    pub client_id: Option<String>,
    /// As the broker reports it (Kafka: `/10.1.2.3`); `None` when empty.
    pub host: Option<String>,
    /// The member's assignment (every topic, not only the ones shown); `None` when the broker
    /// did not report one or it could not be parsed (see `assignment_error`).
    pub assignment: Option<Vec<TopicAssignment>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_error: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead` (unknown group).
    pub state: String,
    /// `consumer` for Kafka consumers; assignments are parsed only then.
    pub protocol_type: String,
    /// The assignor: `cooperative-sticky`, `range`, `roundrobin`...
    pub protocol: String,
    pub members: Vec<Member>,
}

impl GroupView {
    /// Who owns `topic`/`partition`: `Some(Some(member))`, `Some(None)` (nobody, known for
    /// sure), or `None` (unknown: mid-rebalance, an assignment that does not parse, or a `Dead`
    /// group: DescribeGroups answers so for a group it does not describe, see the module docs).
    pub fn owner(&self, topic: &str, partition: i32) -> Option<Option<&Member>> {
        match self.state.as_str() {
            "Empty" => return Some(None),
            "Stable" => {}
            _ => return None,
        }
        let mut complete = true;
        for member in &self.members {
            match &member.assignment {
                Some(topics) => {
                    if topics
                        .iter()
                        .any(|t| t.topic == topic && t.partitions.contains(&partition))
                    {
                        return Some(Some(member));
                    }
                }
                None => complete = false,
            }
        }
        complete.then_some(None)
    }
}

/// Committed and log-end offsets of one partition at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub committed: Option<i64>,
    pub end: i64,
}

/// One live read of the group: members, then committed offsets, then log-end offsets.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    /// The group, or why DescribeGroups failed.
    pub group: Result<GroupView, String>,
    /// Per (topic, partition).
    pub offsets: BTreeMap<(String, i32), PartitionOffsets>,
}

impl Snapshot {
    fn observation(&self, key: &(String, i32)) -> Option<Observation> {
        let offsets = self.offsets.get(key)?;
        let owned = match &self.group {
            Ok(group) => group.owner(&key.0, key.1).map(|o| o.is_some()),
            Err(_) => None,
        };
        Some(Observation {
            committed: offsets.committed,
            end: offsets.end,
            owned,
        })
    }
}

/// Reads a group's lag from the cluster. Holds one consumer with the group's `group.id` that
/// never subscribes and never commits. Cheap to clone.
#[derive(Clone)]
pub struct LagReader {
    inner: Arc<Inner>,
}

struct Inner {
    consumer: BaseConsumer,
    kafka: KafkaConfig,
    bootstrap: String,
    group: String,
    /// Topics as asked (`--topic`); empty: the configured ones plus any the members are assigned.
    explicit_topics: Vec<String>,
    configured_topics: Vec<String>,
    timeout: Duration,
}

impl LagReader {
    /// A reader for `group` on `topics` (empty: `consumer.topics` plus the members' topics).
    pub fn new(config: &Config, group: &str, topics: &[String]) -> anyhow::Result<LagReader> {
        let bootstrap = require_brokers(config)?;
        let mut client = base_config(&config.kafka, &bootstrap, "lag");
        client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        apply_properties(&mut client, &config.kafka, &Default::default());
        // Never let a pass-through property turn on commits for the group being inspected.
        client.set("enable.auto.commit", "false");
        // The log end is the high watermark, as `kafka-consumer-groups` shows it: librdkafka's
        // default (read_committed) answers ListOffsets with the last stable offset, which an
        // open transaction holds back.
        client.set("isolation.level", "read_uncommitted");
        let consumer: BaseConsumer = client
            .create()
            .context("creating the Kafka client for the lag reader")?;
        Ok(LagReader {
            inner: Arc::new(Inner {
                consumer,
                kafka: config.kafka.clone(),
                bootstrap,
                group: group.to_string(),
                explicit_topics: topics.to_vec(),
                configured_topics: config.consumer.topics(&config.kafka),
                timeout: config.kafka.request_timeout,
            }),
        })
    }

    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// One live read (the blocking calls run on the blocking pool).
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.snapshot())
            .await
            .context("lag reader task")?
    }

    /// Every group the cluster knows (ListGroups), sorted; for error messages.
    pub async fn known_groups(&self) -> anyhow::Result<Vec<String>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.known_groups())
            .await
            .context("lag reader task")?
    }

    /// Lag in seconds per partition of `snapshot`: now minus the timestamp of the record at the
    /// committed offset (0 for partitions without lag). One assign-only consumer fetches every
    /// lagging partition at once; what has not arrived within `budget` is left out.
    pub async fn lag_seconds(
        &self,
        snapshot: &Snapshot,
        budget: Duration,
    ) -> BTreeMap<(String, i32), f64> {
        let inner = self.inner.clone();
        let offsets = snapshot.offsets.clone();
        tokio::task::spawn_blocking(move || inner.lag_seconds(&offsets, budget))
            .await
            .unwrap_or_default()
    }
}

impl Inner {
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let taken_at = Utc::now();
        let group = self.describe_group();
        let topics: Vec<String> = if self.explicit_topics.is_empty() {
            let mut topics: BTreeSet<String> = self.configured_topics.iter().cloned().collect();
            if let Ok(view) = &group {
                for member in &view.members {
                    for t in member.assignment.iter().flatten() {
                        topics.insert(t.topic.clone());
                    }
                }
            }
            topics.into_iter().collect()
        } else {
            self.explicit_topics.clone()
        };
        let mut tpl = TopicPartitionList::new();
        let mut keys = Vec::new();
        for topic in &topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.timeout)
                .with_context(|| {
                    format!(
                        "fetching metadata of topic `{topic}` (is Kafka reachable at {}? check --kafka-brokers)",
                        self.bootstrap
                    )
                })?;
            let Some(t) = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            else {
                anyhow::bail!(
                    "topic `{topic}` does not exist on {}: pass the group's topics with --topic (repeatable), \
                     or create logpipe's topics with `logpipe topics ensure`",
                    self.bootstrap
                );
            };
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            for id in ids {
                tpl.add_partition(topic, id);
                keys.push((topic.clone(), id));
            }
        }
        // Committed offsets first, then the ends: an end read later is never below the
        // committed offset it is compared with (the lag is never negative because of the order).
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .with_context(|| {
                format!(
                    "reading the committed offsets of group `{}` (OffsetFetch)",
                    self.group
                )
            })?;
        let mut offsets = BTreeMap::new();
        let ends = self.end_offsets(&keys)?;
        for ((topic, partition), end) in keys.into_iter().zip(ends) {
            let committed =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(n) if n >= 0 => Some(n),
                        _ => None,
                    });
            offsets.insert((topic, partition), PartitionOffsets { committed, end });
        }
        Ok(Snapshot {
            taken_at,
            group,
            offsets,
        })
    }

    /// High watermarks, a few requests in flight at once.
    fn end_offsets(&self, keys: &[(String, i32)]) -> anyhow::Result<Vec<i64>> {
        let mut ends = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(WATERMARK_PARALLELISM) {
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(topic, partition)| {
                        s.spawn(move || {
                            self.consumer
                                .fetch_watermarks(topic, *partition, self.timeout)
                                .with_context(|| {
                                    format!("reading the log-end offset of {topic}/{partition} (ListOffsets)")
                                })
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("watermark thread panicked"))
                    .collect()
            });
            for result in results {
                ends.push(result?.1);
            }
        }
        Ok(ends)
    }

    fn describe_group(&self) -> Result<GroupView, String> {
        let list = self
            .consumer
            .fetch_group_list(Some(&self.group), self.timeout)
            .map_err(|e| format!("DescribeGroups failed: {e}"))?;
        let info = list
            .groups()
            .iter()
            .find(|g| g.name() == self.group && g.state() != "Dead");
        let Some(info) = info else {
            // Not a classic group, or no group at all: ask ConsumerGroupDescribe (KIP-848).
            let described =
                consumer_group_describe::describe(&self.consumer, &self.group, self.timeout)?;
            return Ok(described.unwrap_or_else(|| GroupView {
                state: "Dead".into(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }));
        };
        let consumer_protocol =
            info.protocol_type() == "consumer" || info.protocol_type().is_empty();
        let members = info
            .members()
            .iter()
            .map(|m| {
                let bytes = m.assignment().unwrap_or_default();
                let parsed = if bytes.is_empty() {
                    Err(ASSIGNMENT_NOT_REPORTED.to_string())
                } else if consumer_protocol {
                    parse_assignment(bytes)
                } else {
                    Err(format!(
                        "protocol type `{}` is not the consumer protocol",
                        info.protocol_type()
                    ))
                };
                let (assignment, assignment_error) = match parsed {
                    Ok(a) => (Some(a), None),
                    Err(e) => (None, Some(e)),
                };
                let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
                Member {
                    consumer_id: m.id().to_string(),
                    client_id: text(m.client_id()),
                    host: text(m.client_host()),
                    assignment,
                    assignment_error,
                }
            })
            .collect();
        Ok(GroupView {
            state: info.state().to_string(),
            protocol_type: info.protocol_type().to_string(),
            protocol: info.protocol().to_string(),
            members,
        })
    }

    fn known_groups(&self) -> anyhow::Result<Vec<String>> {
        let list = self
            .consumer
            .fetch_group_list(None, self.timeout)
            .context("listing consumer groups (ListGroups)")?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
        names.sort();
        Ok(names)
    }

    fn lag_seconds(
        &self,
        offsets: &BTreeMap<(String, i32), PartitionOffsets>,
        budget: Duration,
    ) -> BTreeMap<(String, i32), f64> {
        let mut out = BTreeMap::new();
        let mut wanted: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (key, o) in offsets {
            match o.committed {
                Some(c) if o.end > c => {
                    wanted.insert(key.clone(), c);
                }
                Some(_) => {
                    out.insert(key.clone(), 0.0);
                }
                None => {}
            }
        }
        if wanted.is_empty() {
            return out;
        }
        let deadline = Instant::now() + budget;
        let mut client = base_config(&self.kafka, &self.bootstrap, "lag-probe");
        client
            .set("group.id", PROBE_GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Committed offset below the log start (deleted by retention): the oldest record left.
            .set("auto.offset.reset", "earliest")
            // One record per partition is all it needs: keep fetches small.
            .set("fetch.message.max.bytes", "65536")
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.wait.max.ms", "100");
        apply_properties(&mut client, &self.kafka, &Default::default());
        client.set("enable.auto.commit", "false");
        // The lag counts records of open transactions (the end is the high watermark), so the
        // record at the committed offset may be one of them.
        client.set("isolation.level", "read_uncommitted");
        let Ok(probe) = client.create::<BaseConsumer>() else {
            return out;
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &wanted {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                return out;
            }
        }
        if probe.assign(&tpl).is_err() {
            return out;
        }
        while !wanted.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(Ok(message)) = probe.poll(left.min(Duration::from_millis(200))) else {
                continue;
            };
            let key = (message.topic().to_string(), message.partition());
            let Some(&from) = wanted.get(&key) else {
                continue;
            };
            if message.offset() < from {
                continue;
            }
            if let Some(ms) = message.timestamp().to_millis() {
                let age_ms = (Utc::now().timestamp_millis() - ms).max(0);
                out.insert(key.clone(), age_ms as f64 / 1000.0);
            }
            wanted.remove(&key);
            let mut done = TopicPartitionList::new();
            done.add_partition(&key.0, key.1);
            let _ = probe.pause(&done);
        }
        out
    }
}

fn require_brokers(config: &Config) -> anyhow::Result<String> {
    config.kafka.cluster_brokers(
        "`logpipe lag` reads a consumer group on a cluster",
        " (the embedded broker lives inside `logpipe run`; its lag is on the consumer's /metrics)",
    )
}

// ------------------------------------------------------------------------------------------
// KIP-848 groups: ConsumerGroupDescribe through librdkafka
// ------------------------------------------------------------------------------------------

/// Describes a group with librdkafka's admin call `rd_kafka_DescribeConsumerGroups`, which sends
/// ConsumerGroupDescribe (the KIP-848 describe) and falls back to DescribeGroups for classic
/// groups. rust-rdkafka has no safe wrapper for it, hence the one `unsafe` module of the crate:
/// every pointer read here belongs to the result event, which lives until the end of
/// [`consumer_group_describe::describe`], and every string is copied before it is destroyed.
#[allow(unsafe_code)]
mod consumer_group_describe {
    use std::collections::BTreeMap;
    use std::ffi::{c_char, CStr, CString};
    use std::time::Duration;

    use rdkafka::bindings as rd;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    use super::{GroupView, Member, TopicAssignment};

    /// The group as ConsumerGroupDescribe sees it; `Ok(None)` when it is not a consumer-protocol
    /// group (classic, or unknown to the broker), which DescribeGroups describes instead.
    pub(super) fn describe(
        consumer: &BaseConsumer,
        group: &str,
        timeout: Duration,
    ) -> Result<Option<GroupView>, String> {
        let name =
            CString::new(group).map_err(|_| "the group id contains a NUL byte".to_string())?;
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is a live client for the whole call; the queue, options and event are
        // created and destroyed here; `names` outlives the call that reads it.
        unsafe {
            let queue = rd::rd_kafka_queue_new(rk);
            let options = rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            );
            let mut errstr = [0 as c_char; 256];
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            let mut names = [name.as_ptr()];
            rd::rd_kafka_DescribeConsumerGroups(rk, names.as_mut_ptr(), 1, options, queue);
            rd::rd_kafka_AdminOptions_destroy(options);
            let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
            let result = if event.is_null() {
                Err(format!(
                    "DescribeConsumerGroups did not answer within {}ms",
                    timeout_ms
                ))
            } else {
                let read = read_event(event);
                rd::rd_kafka_event_destroy(event);
                read
            };
            rd::rd_kafka_queue_destroy(queue);
            result
        }
    }

    /// Copies a C string (`None` for NULL).
    unsafe fn text(ptr: *const c_char) -> Option<String> {
        (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_string_lossy().into_owned())
    }

    unsafe fn read_event(event: *mut rd::rd_kafka_event_t) -> Result<Option<GroupView>, String> {
        if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let why = text(rd::rd_kafka_event_error_string(event)).unwrap_or_default();
            return Err(format!("DescribeConsumerGroups failed: {why}"));
        }
        let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
        if result.is_null() {
            return Err("DescribeConsumerGroups returned no result".into());
        }
        let mut count = 0usize;
        let groups = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
        if groups.is_null() || count == 0 {
            return Err("DescribeConsumerGroups returned no group".into());
        }
        let desc = *groups;
        let error = rd::rd_kafka_ConsumerGroupDescription_error(desc);
        if !error.is_null() {
            let why = text(rd::rd_kafka_error_string(error)).unwrap_or_default();
            return Err(format!("DescribeConsumerGroups failed: {why}"));
        }
        if rd::rd_kafka_ConsumerGroupDescription_type(desc)
            != rd::rd_kafka_consumer_group_type_t::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER
        {
            return Ok(None);
        }
        let state = text(rd::rd_kafka_consumer_group_state_name(
            rd::rd_kafka_ConsumerGroupDescription_state(desc),
        ))
        .unwrap_or_default();
        let mut members = Vec::new();
        for i in 0..rd::rd_kafka_ConsumerGroupDescription_member_count(desc) {
            let m = rd::rd_kafka_ConsumerGroupDescription_member(desc, i);
            if m.is_null() {
                continue;
            }
            let assignment = rd::rd_kafka_MemberDescription_assignment(m);
            let partitions = if assignment.is_null() {
                std::ptr::null()
            } else {
                rd::rd_kafka_MemberAssignment_partitions(assignment)
            };
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            if !partitions.is_null() && !(*partitions).elems.is_null() {
                let list = &*partitions;
                for e in std::slice::from_raw_parts(list.elems, list.cnt.max(0) as usize) {
                    if let Some(topic) = text(e.topic) {
                        topics.entry(topic).or_default().push(e.partition);
                    }
                }
            }
            let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
            members.push(Member {
                consumer_id: text(rd::rd_kafka_MemberDescription_consumer_id(m))
                    .unwrap_or_default(),
                client_id: nonempty(text(rd::rd_kafka_MemberDescription_client_id(m))),
                host: nonempty(text(rd::rd_kafka_MemberDescription_host(m))),
                assignment: Some(
                    topics
                        .into_iter()
                        .map(|(topic, mut partitions)| {
                            partitions.sort_unstable();
                            TopicAssignment { topic, partitions }
                        })
                        .collect(),
                ),
                assignment_error: None,
            });
        }
        Ok(Some(GroupView {
            state,
            protocol_type: "consumer".into(),
            protocol: text(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(
                desc,
            ))
            .unwrap_or_default(),
            members,
        }))
    }
}

// ------------------------------------------------------------------------------------------
// Report (pure)
// ------------------------------------------------------------------------------------------

/// One row of the table: a partition of the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `None`: the group never committed to this partition.
    pub current_offset: Option<i64>,
    pub log_end_offset: i64,
    pub lag: Option<i64>,
    /// Age of the record at the committed offset; 0 without lag; `None` when not measured.
    pub lag_seconds: Option<f64>,
    pub status: Option<Status>,
    pub consumer_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

/// Totals over the partitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub partitions: usize,
    pub total_lag: i64,
    pub max_lag: i64,
    /// `topic/partition` of the largest lag (the first, on ties); `None` without lag.
    pub max_lag_partition: Option<String>,
    pub max_lag_seconds: Option<f64>,
    pub worst_status: Option<Status>,
    pub status_counts: BTreeMap<Status, usize>,
    /// Partitions the group never committed to.
    pub without_commit: usize,
}

/// The window the statuses were evaluated over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowInfo {
    pub samples: usize,
    /// From the first sample to the last.
    pub seconds: f64,
}

/// What `logpipe lag` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagReport {
    pub group: String,
    /// The group's state (`Stable`, `Empty`...); `None` when the broker did not describe it.
    pub state: Option<String>,
    /// The assignor (`cooperative-sticky`, `range`...).
    pub protocol: Option<String>,
    pub members: Vec<Member>,
    /// When the last sample was taken.
    pub taken_at: String,
    pub window: WindowInfo,
    pub partitions: Vec<PartitionLag>,
    pub summary: Summary,
    /// What could not be read, and what `-` means where it appears.
    pub notes: Vec<String>,
}

/// Builds the report from a window of snapshots (oldest first, at least one) and the lag in
/// seconds of the last one.
pub fn build_report(
    group: &str,
    window: &[Snapshot],
    lag_seconds: &BTreeMap<(String, i32), f64>,
) -> LagReport {
    let last = window.last().expect("a window has at least one snapshot");
    let mut notes = Vec::new();
    let view = last.group.as_ref().ok();
    if let Err(why) = &last.group {
        notes.push(format!(
            "members unknown: {why}. CONSUMER-ID, HOST and CLIENT-ID show `-`, and a partition whose offset \
             does not move is STALL (STOP needs to know that nobody owns it)"
        ));
    }
    if let Some(view) = view {
        let settled = matches!(view.state.as_str(), "Stable" | "Empty" | "Dead");
        if view.state == "Dead" {
            notes.push(format!(
                "neither DescribeGroups nor ConsumerGroupDescribe describes group `{group}` (state Dead, no members) \
                 although it has committed offsets: it is neither a classic nor a KIP-848 consumer group (a share or \
                 streams group, or a broker without KIP-848). Members unknown: CONSUMER-ID, HOST and \
                 CLIENT-ID show `-`, and a partition whose offset does not move is STALL, never STOP. \
                 `kafka-consumer-groups --describe --group {group}` lists its members"
            ));
        }
        if !settled {
            notes.push(format!(
                "the group is rebalancing ({}): owners show `-` until it is Stable",
                view.state
            ));
        }
        let unreported: Vec<&str> = view
            .members
            .iter()
            .filter(|m| m.assignment_error.as_deref() == Some(ASSIGNMENT_NOT_REPORTED))
            .map(|m| m.consumer_id.as_str())
            .collect();
        if settled && !unreported.is_empty() {
            notes.push(format!(
                "the broker did not report the assignment of {} of {} member(s) (an empty MemberAssignment in \
                 DescribeGroups; Apache Kafka reports it; this broker sent member ids only): CONSUMER-ID, \
                 HOST and CLIENT-ID show `-`, and a partition whose offset does not move is STALL, never STOP. \
                 Members: {}",
                unreported.len(),
                view.members.len(),
                unreported.join(", ")
            ));
        }
        for m in &view.members {
            match &m.assignment_error {
                Some(e) if e != ASSIGNMENT_NOT_REPORTED => notes.push(format!(
                    "assignment of member {} not readable: {e}",
                    m.consumer_id
                )),
                _ => {}
            }
        }
    }
    let mut partitions = Vec::new();
    for (key, offsets) in &last.offsets {
        let observations: Vec<Observation> =
            window.iter().filter_map(|s| s.observation(key)).collect();
        let owner = view.and_then(|v| v.owner(&key.0, key.1)).flatten();
        let lag = offsets.committed.map(|c| (offsets.end - c).max(0));
        partitions.push(PartitionLag {
            group: group.to_string(),
            topic: key.0.clone(),
            partition: key.1,
            current_offset: offsets.committed,
            log_end_offset: offsets.end,
            lag,
            lag_seconds: match lag {
                Some(0) => Some(0.0),
                Some(_) => lag_seconds.get(key).copied(),
                None => None,
            },
            status: evaluate(&observations),
            consumer_id: owner.map(|m| m.consumer_id.clone()),
            host: owner.and_then(|m| m.host.clone()),
            client_id: owner.and_then(|m| m.client_id.clone()),
        });
    }
    let mut summary = Summary {
        partitions: partitions.len(),
        total_lag: 0,
        max_lag: 0,
        max_lag_partition: None,
        max_lag_seconds: None,
        worst_status: None,
        status_counts: BTreeMap::new(),
        without_commit: 0,
    };
    for p in &partitions {
        match p.lag {
            Some(lag) => {
                summary.total_lag += lag;
                if lag > summary.max_lag {
                    summary.max_lag = lag;
                    summary.max_lag_partition = Some(format!("{}/{}", p.topic, p.partition));
                }
            }
            None => summary.without_commit += 1,
        }
        if let Some(s) = p.lag_seconds {
            summary.max_lag_seconds = Some(summary.max_lag_seconds.map_or(s, |m: f64| m.max(s)));
        }
        if let Some(status) = p.status {
            *summary.status_counts.entry(status).or_default() += 1;
            summary.worst_status = summary.worst_status.max(Some(status));
        }
    }
    if summary.without_commit > 0 {
        notes.push(format!(
            "{} partition(s) have no committed offset (CURRENT-OFFSET `-`): the group has not consumed them yet; \
             a logpipe consumer starts them at the earliest offset",
            summary.without_commit
        ));
    }
    let unmeasured = partitions
        .iter()
        .filter(|p| p.lag.is_some_and(|l| l > 0) && p.lag_seconds.is_none())
        .count();
    if unmeasured > 0 {
        notes.push(format!(
            "lag in seconds not measured for {unmeasured} partition(s): the record at the committed offset did not \
             arrive within {}",
            humantime::format_duration(LAG_SECONDS_BUDGET)
        ));
    }
    if window.len() < 2 {
        notes.push(
            "one sample so far: a status needs two (`-` until then) unless the lag is 0".into(),
        );
    }
    let seconds = (last.taken_at - window[0].taken_at)
        .num_milliseconds()
        .max(0) as f64
        / 1000.0;
    LagReport {
        group: group.to_string(),
        state: view.map(|v| v.state.clone()),
        protocol: view.map(|v| v.protocol.clone()).filter(|p| !p.is_empty()),
        members: view.map(|v| v.members.clone()).unwrap_or_default(),
        taken_at: last.taken_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        window: WindowInfo {
            samples: window.len(),
            seconds,
        },
        partitions,
        summary,
        notes,
    }
}

/// Characters two names share from their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Fails when `snapshot` shows neither members nor committed offsets: the group is most likely
/// misspelled, so say so and list the groups the cluster knows.
pub async fn check_group_known(reader: &LagReader, snapshot: &Snapshot) -> anyhow::Result<()> {
    let has_members = snapshot.group.as_ref().is_ok_and(|g| !g.members.is_empty());
    let has_commits = snapshot.offsets.values().any(|o| o.committed.is_some());
    if has_members || has_commits {
        return Ok(());
    }
    let topics: BTreeSet<&str> = snapshot.offsets.keys().map(|(t, _)| t.as_str()).collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    let known = match reader.known_groups().await {
        Ok(groups) if groups.is_empty() => "the cluster lists no consumer groups".to_string(),
        Ok(mut groups) => {
            // The likeliest meant (longest common prefix with the name given) first.
            groups.sort_by_key(|g| std::cmp::Reverse(common_prefix(g, reader.group())));
            let shown: Vec<&str> = groups.iter().take(30).map(String::as_str).collect();
            let more = groups.len().saturating_sub(shown.len());
            format!(
                "groups on the cluster, closest names first: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            )
        }
        Err(e) => format!("listing the cluster's groups failed: {e:#}"),
    };
    anyhow::bail!(
        "consumer group `{}` is unknown: it has no members and no committed offsets on {}. \
         Pass the group with --group (default: consumer.group_id) and its topics with --topic; {known}",
        reader.group(),
        topics.join(", ")
    )
}

/// Takes `samples` snapshots `interval` apart, measures lag in seconds on the last one, and
/// evaluates the statuses. Fails when the group is unknown.
pub async fn measure(
    reader: &LagReader,
    samples: usize,
    interval: Duration,
) -> anyhow::Result<LagReport> {
    let mut window = Vec::with_capacity(samples.max(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..samples.max(1) {
        ticker.tick().await;
        let snapshot = reader.snapshot().await?;
        if i == 0 {
            check_group_known(reader, &snapshot).await?;
        }
        window.push(snapshot);
    }
    let last = window.last().expect("one sample at least");
    let seconds = reader.lag_seconds(last, LAG_SECONDS_BUDGET).await;
    Ok(build_report(reader.group(), &window, &seconds))
}

// ------------------------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------------------------

/// `logpipe lag` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LagArgs {
    /// Consumer group (default: consumer.group_id, log-processor-group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Topic to show (repeatable). Default: consumer.topics (kafka.topic) plus any topic the
    /// group's members are assigned.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Samples in the status window (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub samples: u32,
    /// Time between samples (and between redraws with --watch).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Redraw every --interval until Ctrl-C, with statuses over the last --samples samples.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON (with --watch: one JSON object per line per refresh).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when any partition is at or worse than STATUS
    /// (severity: OK < WARN < STOP < STALL < REWIND).
    #[arg(
        long,
        value_name = "STATUS",
        value_enum,
        ignore_case = true,
        conflicts_with = "watch"
    )]
    pub fail_on: Option<Status>,
}

/// Returned by [`run`] when `--fail-on` is reached; `main` turns it into exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("lag: {count} partition(s) at or worse than {threshold} (worst: {worst})")]
pub struct ThresholdReached {
    pub threshold: Status,
    pub worst: Status,
    pub count: usize,
}

/// The partitions at or worse than `threshold`, if any.
pub fn threshold_reached(report: &LagReport, threshold: Status) -> Option<ThresholdReached> {
    let count = report
        .partitions
        .iter()
        .filter(|p| p.status.is_some_and(|s| s >= threshold))
        .count();
    (count > 0).then(|| ThresholdReached {
        threshold,
        worst: report.summary.worst_status.unwrap_or(threshold),
        count,
    })
}

/// `logpipe lag`.
pub async fn run(config: &Config, args: &LagArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| config.consumer.group_id.clone());
    let reader = LagReader::new(config, &group, &args.topics)?;
    let samples = args.samples as usize;
    if !args.watch {
        if !args.json {
            eprintln!(
                "sampling group `{group}` {samples} times, {} apart...",
                humantime::format_duration(args.interval)
            );
        }
        let report = tokio::select! {
            report = measure(&reader, samples, args.interval) => report?,
            _ = stop.cancelled() => return Ok(()),
        };
        print_report(&report, args.json)?;
        if let Some(threshold) = args.fail_on {
            if let Some(reached) = threshold_reached(&report, threshold) {
                return Err(reached.into());
            }
        }
        return Ok(());
    }
    let clear = std::io::stdout().is_terminal() && !args.json;
    let mut window: VecDeque<Snapshot> = VecDeque::with_capacity(samples);
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let snapshot = reader.snapshot().await?;
        if window.is_empty() {
            check_group_known(&reader, &snapshot).await?;
        }
        if window.len() == samples {
            window.pop_front();
        }
        window.push_back(snapshot);
        let seconds = reader
            .lag_seconds(window.back().expect("just pushed"), LAG_SECONDS_BUDGET)
            .await;
        let report = build_report(&group, window.make_contiguous(), &seconds);
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        print_report(&report, args.json)?;
        if !args.json {
            println!(
                "(refreshing every {}; Ctrl-C to stop)",
                humantime::format_duration(args.interval)
            );
        }
        std::io::stdout().flush()?;
    }
}

fn print_report(report: &LagReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", render(report));
    }
    Ok(())
}

/// The table and the summary, as printed.
pub fn render(report: &LagReport) -> String {
    let mut table = new_table(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-TIME",
        "STATUS",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for p in &report.partitions {
        table.add_row(vec![
            Cell::new(&p.group),
            Cell::new(&p.topic),
            right(p.partition.to_string()),
            right(dash(p.current_offset.map(|o| o.to_string()))),
            right(p.log_end_offset.to_string()),
            right(dash(p.lag.map(|l| l.to_string()))),
            right(dash(p.lag_seconds.map(format_seconds))),
            Cell::new(dash(p.status.map(|s| s.to_string()))),
            Cell::new(dash(p.consumer_id.clone())),
            Cell::new(dash(p.host.clone())),
            Cell::new(dash(p.client_id.clone())),
        ]);
    }
    let s = &report.summary;
    let mut out = format!("{table}\n");
    let group_line = match (&report.state, &report.protocol) {
        (Some(state), Some(protocol)) => {
            format!("{state}, {} member(s), {protocol}", report.members.len())
        }
        (Some(state), None) => format!("{state}, {} member(s)", report.members.len()),
        _ => "members unknown".into(),
    };
    let statuses: Vec<String> = s
        .status_counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    out.push_str(&format!(
        "group {} ({group_line}) | total lag {} | max lag {}{} | max lag time {} | worst status {}{} | window {} sample{} over {}",
        report.group,
        s.total_lag,
        s.max_lag,
        s.max_lag_partition
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        s.max_lag_seconds.map(format_seconds).unwrap_or_else(|| "-".into()),
        s.worst_status.map(|w| w.to_string()).unwrap_or_else(|| "-".into()),
        if statuses.is_empty() {
            String::new()
        } else {
            format!(" ({})", statuses.join(", "))
        },
        report.window.samples,
        if report.window.samples == 1 { "" } else { "s" },
        format_seconds(report.window.seconds),
    ));
    for note in &report.notes {
        out.push_str(&format!("\nnote: {note}"));
    }
    out
}

/// `0s`, `4.2s`, `3m05s`, `2h07m`, `3d04h`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 60.0 {
        let tenths = (seconds * 10.0).round() / 10.0;
        return if tenths.fract() == 0.0 {
            format!("{tenths:.0}s")
        } else {
            format!("{tenths:.1}s")
        };
    }
    let total = seconds.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_ranks_the_likeliest_group_first() {
        let mut groups = vec!["it-group-1", "log-processor-grp", "log-processor-group"];
        groups.sort_by_key(|g| std::cmp::Reverse(common_prefix(g, "log-processor-groups")));
        assert_eq!(
            groups,
            ["log-processor-group", "log-processor-grp", "it-group-1"]
        );
    }

    fn obs(committed: Option<i64>, end: i64, owned: Option<bool>) -> Observation {
        Observation {
            committed,
            end,
            owned,
        }
    }

    /// (committed, end) pairs, owned by a member throughout.
    fn owned(samples: &[(i64, i64)]) -> Vec<Observation> {
        samples
            .iter()
            .map(|&(c, e)| obs(Some(c), e, Some(true)))
            .collect()
    }

    #[test]
    fn status_rules_table() {
        use Status::*;
        let cases: Vec<(&str, Vec<Observation>, Option<Status>)> = vec![
            (
                "caught up throughout",
                owned(&[(10, 10), (12, 12), (15, 15)]),
                Some(Ok),
            ),
            (
                "idle and caught up",
                owned(&[(10, 10), (10, 10), (10, 10)]),
                Some(Ok),
            ),
            (
                "advancing, lag shrinking",
                owned(&[(10, 50), (30, 60), (55, 65)]),
                Some(Ok),
            ),
            (
                "advancing, lag flat",
                owned(&[(10, 20), (20, 30), (30, 40)]),
                Some(Ok),
            ),
            (
                "advancing, lag up then down",
                owned(&[(10, 20), (12, 30), (30, 35)]),
                Some(Ok),
            ),
            (
                "advancing, lag growing every sample",
                owned(&[(10, 20), (12, 30), (14, 40), (16, 50)]),
                Some(Warn),
            ),
            (
                "lag growing but flat once: not every sample",
                owned(&[(10, 20), (12, 30), (22, 40), (24, 50)]),
                Some(Ok),
            ),
            (
                "offset still, lag > 0, owned: stuck consumer",
                owned(&[(10, 20), (10, 20), (10, 20)]),
                Some(Stall),
            ),
            (
                "offset still, end moving, owned",
                owned(&[(10, 20), (10, 25), (10, 30)]),
                Some(Stall),
            ),
            (
                "offset still, lag > 0, nobody owns it",
                vec![
                    obs(Some(10), 20, Some(false)),
                    obs(Some(10), 25, Some(false)),
                    obs(Some(10), 30, Some(false)),
                ],
                Some(Stop),
            ),
            (
                "owner left during the window: the last sample decides",
                vec![
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 20, Some(false)),
                ],
                Some(Stop),
            ),
            (
                "offset still, ownership unknown: never claims STOP",
                vec![obs(Some(10), 20, None), obs(Some(10), 20, None)],
                Some(Stall),
            ),
            (
                "offset went backwards",
                owned(&[(10, 20), (15, 20), (5, 20)]),
                Some(Rewind),
            ),
            (
                "rewind beats a zero lag",
                owned(&[(20, 20), (5, 20), (20, 20)]),
                Some(Rewind),
            ),
            (
                "lag 0 earlier in the window: OK (Burrow's first rule)",
                owned(&[(10, 10), (10, 15), (10, 20)]),
                Some(Ok),
            ),
            (
                "committed beyond an under-reported end counts as lag 0",
                owned(&[(12, 10), (12, 11)]),
                Some(Ok),
            ),
            ("never committed", vec![obs(None, 20, Some(false)); 3], None),
            (
                "one sample with lag: not enough to judge",
                owned(&[(10, 20)]),
                None,
            ),
            ("one sample caught up", owned(&[(10, 10)]), Some(Ok)),
            (
                "samples without a commit are skipped",
                vec![
                    obs(None, 20, Some(true)),
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 22, Some(true)),
                ],
                Some(Stall),
            ),
            ("empty window", vec![], None),
        ];
        for (name, window, want) in cases {
            assert_eq!(evaluate(&window), want, "{name}: {window:?}");
        }
    }

    #[test]
    fn severity_order_is_burrows() {
        use Status::*;
        let mut all = vec![Rewind, Ok, Stall, Warn, Stop];
        all.sort();
        assert_eq!(all, vec![Ok, Warn, Stop, Stall, Rewind]);
    }

    /// Builds a MemberAssignment the way the Java client and librdkafka write it.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        match user_data {
            Some(d) => {
                b.extend((d.len() as i32).to_be_bytes());
                b.extend(d);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
        b
    }

    fn ta(topic: &str, partitions: &[i32]) -> TopicAssignment {
        TopicAssignment {
            topic: topic.into(),
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn assignment_parser_table() {
        type Case = (
            &'static str,
            Vec<u8>,
            Result<Vec<TopicAssignment>, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("empty bytes: no assignment", vec![], Ok(vec![])),
            (
                "v0, two topics, null user data",
                encode(
                    0,
                    &[("application-logs", &[0, 3, 6]), ("logs-dlq", &[1])],
                    None,
                ),
                Ok(vec![
                    ta("application-logs", &[0, 3, 6]),
                    ta("logs-dlq", &[1]),
                ]),
            ),
            (
                "v1 (cooperative-sticky) with user data",
                encode(1, &[("t", &[2])], Some(b"sticky")),
                Ok(vec![ta("t", &[2])]),
            ),
            ("v3, no topics", encode(3, &[], Some(b"")), Ok(vec![])),
            (
                "topic with no partitions",
                encode(0, &[("t", &[])], None),
                Ok(vec![ta("t", &[])]),
            ),
            (
                "without the trailing user data (old writers)",
                encode(0, &[("t", &[0, 1])], None)[..2 + 4 + 2 + 1 + 4 + 8].to_vec(),
                Ok(vec![ta("t", &[0, 1])]),
            ),
            ("truncated version", vec![0], Err("truncated")),
            (
                "partition list shorter than its count",
                encode(0, &[("t", &[0, 1])], None)[..2 + 4 + 2 + 1 + 4 + 5].to_vec(),
                Err("partition count 2 exceeds the 5 bytes left"),
            ),
            (
                "truncated topic name",
                encode(0, &[("application-logs", &[0])], None)[..2 + 4 + 2 + 8].to_vec(),
                Err("truncated at byte 8 reading topic name"),
            ),
            (
                "absurd topic count",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(i32::MAX.to_be_bytes());
                    b
                },
                Err("exceeds"),
            ),
            (
                "negative version",
                encode(-1, &[("t", &[0])], None),
                Err("unsupported assignment version"),
            ),
            (
                "null topic name",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(1i32.to_be_bytes());
                    b.extend((-1i16).to_be_bytes());
                    b.extend(0i32.to_be_bytes());
                    b
                },
                Err("null or negative-length topic name"),
            ),
            (
                "topic name not UTF-8",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(1i32.to_be_bytes());
                    b.extend(1i16.to_be_bytes());
                    b.push(0xff);
                    b.extend(0i32.to_be_bytes());
                    b
                },
                Err("not UTF-8"),
            ),
        ];
        for (name, bytes, want) in cases {
            let got = parse_assignment(&bytes);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn member(id: &str, assignment: Option<Vec<TopicAssignment>>) -> Member {
        Member {
            consumer_id: id.into(),
            client_id: Some(format!("client-{id}")),
            host: Some("/10.0.0.1".into()),
            assignment,
            assignment_error: None,
        }
    }

    fn view(state: &str, members: Vec<Member>) -> GroupView {
        GroupView {
            state: state.into(),
            protocol_type: "consumer".into(),
            protocol: "cooperative-sticky".into(),
            members,
        }
    }

    #[test]
    fn owner_is_known_only_when_the_group_is_settled() {
        let stable = view(
            "Stable",
            vec![
                member("a", Some(vec![ta("t", &[0, 1])])),
                member("b", Some(vec![ta("t", &[2])])),
            ],
        );
        assert_eq!(stable.owner("t", 2).unwrap().unwrap().consumer_id, "b");
        assert_eq!(stable.owner("t", 3), Some(None));
        assert_eq!(stable.owner("other", 0), Some(None));
        assert_eq!(view("Empty", vec![]).owner("t", 0), Some(None));
        // Not described (a KIP-848 group on Apache Kafka): nobody can be said to own anything.
        assert_eq!(view("Dead", vec![]).owner("t", 0), None);
        let rebalancing = view("PreparingRebalance", vec![member("a", Some(vec![]))]);
        assert_eq!(rebalancing.owner("t", 0), None);
        let unreadable = view("Stable", vec![member("a", None)]);
        assert_eq!(unreadable.owner("t", 0), None);
    }

    fn snapshot(
        at_ms: i64,
        group: Result<GroupView, String>,
        offsets: &[(&str, i32, Option<i64>, i64)],
    ) -> Snapshot {
        Snapshot {
            taken_at: DateTime::from_timestamp_millis(1_700_000_000_000 + at_ms).unwrap(),
            group,
            offsets: offsets
                .iter()
                .map(|&(t, p, committed, end)| {
                    ((t.to_string(), p), PartitionOffsets { committed, end })
                })
                .collect(),
        }
    }

    #[test]
    fn report_rows_summary_and_notes() {
        let g = || {
            Ok(view(
                "Stable",
                vec![member("m1", Some(vec![ta("t", &[0, 1])]))],
            ))
        };
        let window = vec![
            snapshot(
                0,
                g(),
                &[
                    ("t", 0, Some(5), 10),
                    ("t", 1, Some(7), 7),
                    ("t", 2, Some(1), 4),
                    ("t", 3, None, 9),
                ],
            ),
            snapshot(
                2000,
                g(),
                &[
                    ("t", 0, Some(5), 12),
                    ("t", 1, Some(7), 7),
                    ("t", 2, Some(1), 4),
                    ("t", 3, None, 9),
                ],
            ),
        ];
        let seconds = BTreeMap::from([(("t".to_string(), 0), 42.5)]);
        let report = build_report("grp", &window, &seconds);
        let rows: Vec<_> = report
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition,
                    p.current_offset,
                    p.log_end_offset,
                    p.lag,
                    p.lag_seconds,
                    p.status,
                    p.consumer_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    0,
                    Some(5),
                    12,
                    Some(7),
                    Some(42.5),
                    Some(Status::Stall),
                    Some("m1")
                ),
                (
                    1,
                    Some(7),
                    7,
                    Some(0),
                    Some(0.0),
                    Some(Status::Ok),
                    Some("m1")
                ),
                (2, Some(1), 4, Some(3), None, Some(Status::Stop), None),
                (3, None, 9, None, None, None, None),
            ]
        );
        let s = &report.summary;
        assert_eq!((s.total_lag, s.max_lag, s.without_commit), (10, 7, 1));
        assert_eq!(s.max_lag_partition.as_deref(), Some("t/0"));
        assert_eq!(s.max_lag_seconds, Some(42.5));
        assert_eq!(s.worst_status, Some(Status::Stall));
        assert_eq!(
            report.window,
            WindowInfo {
                samples: 2,
                seconds: 2.0
            }
        );
        assert_eq!(report.state.as_deref(), Some("Stable"));
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("no committed offset")));
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("not measured for 1")));
        let text = render(&report);
        assert!(
            text.contains("CURRENT-OFFSET") && text.contains("CLIENT-ID"),
            "{text}"
        );
        assert!(
            text.contains("total lag 10") && text.contains("worst status STALL"),
            "{text}"
        );
        assert!(text.contains("42.5s"), "{text}");

        assert_eq!(
            threshold_reached(&report, Status::Stop).map(|t| t.count),
            Some(2)
        );
        assert_eq!(
            threshold_reached(&report, Status::Stall).map(|t| t.count),
            Some(1)
        );
        assert!(threshold_reached(&report, Status::Rewind).is_none());

        // Members unknown: dashes, STALL instead of STOP, and a note saying why.
        let window = vec![
            snapshot(
                0,
                Err("DescribeGroups failed: nope".into()),
                &[("t", 2, Some(1), 4)],
            ),
            snapshot(
                1000,
                Err("DescribeGroups failed: nope".into()),
                &[("t", 2, Some(1), 4)],
            ),
        ];
        let report = build_report("grp", &window, &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert_eq!(report.partitions[0].consumer_id, None);
        assert_eq!(report.state, None);
        assert!(report.notes[0].contains("members unknown: DescribeGroups failed"));
        assert!(render(&report).contains("members unknown"));

        // A Dead group with commits (described by neither DescribeGroups nor
        // ConsumerGroupDescribe): owners unknown, STALL rather than STOP, and a note saying why.
        let dead = || Ok(view("Dead", vec![]));
        let window = vec![
            snapshot(0, dead(), &[("t", 0, Some(1), 4)]),
            snapshot(1000, dead(), &[("t", 0, Some(1), 4)]),
        ];
        let report = build_report("grp", &window, &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("neither a classic nor a KIP-848")
                    && n.contains("kafka-consumer-groups --describe --group grp")),
            "{:?}",
            report.notes
        );

        // A Stable group whose members come with empty assignments (a broker that does not report
        // them, member ids only): owners unknown, STALL rather than STOP, member ids in a note.
        let ids_only = || {
            let mut m = member("logpipe-consumer-x-1", None);
            m.client_id = None;
            m.host = None;
            m.assignment_error = Some(ASSIGNMENT_NOT_REPORTED.into());
            Ok(view("Stable", vec![m]))
        };
        let window = vec![
            snapshot(0, ids_only(), &[("t", 0, Some(1), 4)]),
            snapshot(1000, ids_only(), &[("t", 0, Some(1), 4)]),
        ];
        let report = build_report("grp", &window, &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert_eq!(report.partitions[0].consumer_id, None);
        assert_eq!(report.members.len(), 1);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("did not report the assignment of 1 of 1")
                    && n.contains("logpipe-consumer-x-1")),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn seconds_are_formatted_for_people() {
        for (s, want) in [
            (0.0, "0s"),
            (4.23, "4.2s"),
            (59.94, "59.9s"),
            (185.0, "3m05s"),
            (7620.0, "2h07m"),
            (273_600.0, "3d04h"),
        ] {
            assert_eq!(format_seconds(s), want, "{s}");
        }
    }
}
