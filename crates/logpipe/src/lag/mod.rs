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
//! `kafka-consumer-groups --describe`. Where a broker tells less, `lag` says so and degrades
//! (every such allowance is made in `degrade`):
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
//!
//! The files, in the order of a run: `cli` (flags and the runner) asks `measure` for a window of
//! samples; `reader` takes each [`Snapshot`] live (with `describe` for KIP-848 groups, and
//! `probe` for lag in seconds); `report` builds the [`LagReport`] from the window, using `status`
//! (the rules above), `group` (who owns a partition) and `assignment` (MemberAssignment
//! decoding); `print` shows it. `status`, `assignment`, `group`, `degrade` and `report` do no I/O.

mod assignment;
mod cli;
mod degrade;
mod describe;
#[cfg(test)]
mod fixtures;
mod group;
mod measure;
mod print;
mod probe;
mod reader;
mod report;
mod snapshot;
mod status;

pub use assignment::{parse_assignment, TopicAssignment};
pub use cli::{run, LagArgs};
pub use degrade::ASSIGNMENT_NOT_REPORTED;
pub use group::{GroupView, Member};
pub use measure::{check_group_known, measure};
pub use print::{format_seconds, render};
pub use probe::LAG_SECONDS_BUDGET;
pub use reader::LagReader;
pub use report::{
    build_report, threshold_reached, LagReport, PartitionLag, Summary, ThresholdReached, WindowInfo,
};
pub use snapshot::{PartitionOffsets, Snapshot};
pub use status::{evaluate, Observation, Status};
