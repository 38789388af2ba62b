//! Lag in seconds: the age of the oldest record a group has not consumed, read by one
//! assign-only consumer that never joins a group and never commits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::degrade;
use super::snapshot::PartitionOffsets;
use crate::config::KafkaConfig;
use crate::kafka::{apply_properties, base_config};

/// How long [`LagReader::lag_seconds`](super::LagReader::lag_seconds) waits for the records at
/// the committed offsets.
pub const LAG_SECONDS_BUDGET: Duration = Duration::from_secs(5);
/// Group id of the assign-only consumer that reads records for lag in seconds: never joined,
/// never committed to.
const PROBE_GROUP: &str = "logpipe-lag-probe";

/// Lag in seconds per partition of `offsets`: now minus the timestamp of the record at the
/// committed offset (0 for partitions without lag). One assign-only consumer on `bootstrap`
/// fetches every lagging partition at once; what has not arrived within `budget` is left out.
pub(super) fn lag_seconds(
    kafka: &KafkaConfig,
    bootstrap: &str,
    offsets: &BTreeMap<(String, i32), PartitionOffsets>,
    budget: Duration,
) -> BTreeMap<(String, i32), f64> {
    let mut out = BTreeMap::new();
    let mut wanted: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (key, o) in offsets {
        match o.committed {
            Some(c) if degrade::lag(c, o.end) > 0 => {
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
    let mut client = base_config(kafka, bootstrap, "lag-probe");
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
    apply_properties(&mut client, kafka, &Default::default());
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
