//! The embedded broker's retention guard.
//!
//! librdkafka's mock cluster (the embedded broker of `logpipe run` without `kafka.brokers`) keeps
//! at most 5 MiB or 100,000 record batches per partition and deletes the oldest batches beyond
//! that, consumed or not. A consumer far enough behind would then find its next records gone and
//! jump ahead: events the gateway acknowledged would be lost. So while the broker is embedded,
//! the producer refuses new events (503, `embedded_backlog_full`) when a partition's unconsumed
//! backlog nears that limit, and takes them again once the consumer has caught up.
//!
//! The backlog of a partition is its log-end offset minus the consumer group's committed offset
//! (or minus the log start when the group has committed nothing), read every
//! [`INTERVAL`] by a client that never joins the group. Its size is estimated from the records
//! produced so far (payload plus key, headers and framing, uncompressed: an upper bound of what
//! the mock stores).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kafka::base_config;

/// The mock cluster's retention per partition (`rdkafka_mock.c`: 5 MiB, 100,000 batches).
const MOCK_MAX_BYTES: u64 = 5 * 1024 * 1024;
const MOCK_MAX_BATCHES: u64 = 100_000;
/// Refuse above these (leaving room for what is in flight between two reads), accept again
/// below [`REOPEN`] of them.
const REFUSE_BYTES: u64 = MOCK_MAX_BYTES * 3 / 5;
const REFUSE_RECORDS: u64 = MOCK_MAX_BATCHES / 2;
const REOPEN: f64 = 0.6;
/// Bytes a record takes besides its payload: key, the two logpipe headers, record framing, and a
/// batch header when batches hold a single record.
const RECORD_OVERHEAD: u64 = 128;
const INTERVAL: Duration = Duration::from_millis(200);
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the embedded broker can take more events; shared by the producer and its monitor.
#[derive(Default)]
pub struct BacklogGuard {
    full: AtomicBool,
    /// Why it is full (partition, backlog), for the error message.
    reason: Mutex<String>,
    payload_bytes: AtomicU64,
    records: AtomicU64,
    /// The largest partition backlog at the last read, in estimated bytes.
    worst_bytes: AtomicU64,
    /// Estimated bytes produced since the last read began (any partition: counted against the
    /// worst one, to be safe), so a burst between two reads is refused too.
    since_read: AtomicU64,
}

impl BacklogGuard {
    /// Starts the monitor thread for the embedded broker at `bootstrap`; it stops with `stop`.
    pub fn start(
        config: &Config,
        bootstrap: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let mut client = base_config(&config.kafka, bootstrap, "backlog-guard");
        client
            .set("group.id", &config.consumer.group_id)
            .set("enable.auto.commit", "false");
        let reader: BaseConsumer = client
            .create()
            .map_err(|e| anyhow::anyhow!("creating the embedded backlog reader: {e}"))?;
        let guard = Arc::new(BacklogGuard::default());
        let me = guard.clone();
        let topic = config.kafka.topic.clone();
        let partitions = config.kafka.partitions;
        std::thread::Builder::new()
            .name("backlog-guard".into())
            .spawn(move || {
                while !stop.is_cancelled() {
                    let since = me.since_read.swap(0, Ordering::Relaxed);
                    if let Some(backlogs) = read_backlogs(&reader, &topic, partitions) {
                        me.update(&backlogs);
                    } else {
                        me.since_read.fetch_add(since, Ordering::Relaxed);
                    }
                    std::thread::sleep(INTERVAL);
                }
            })?;
        Ok(guard)
    }

    /// Counts a request's produced records and their payload bytes (for the size estimate).
    pub fn produced(&self, payload_bytes: usize, records: usize) {
        let (bytes, records) = (payload_bytes as u64, records as u64);
        self.payload_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.since_read
            .fetch_add(bytes + records * RECORD_OVERHEAD, Ordering::Relaxed);
    }

    /// Why a request of `events` events must wait, if it must: the backlog was full at the last
    /// read, or would be with what was produced since and this request. (A request into an empty
    /// broker is always taken.)
    pub fn refusal(&self, events: usize) -> Option<String> {
        if self.full.load(Ordering::Relaxed) {
            return Some(
                self.reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            );
        }
        let known =
            self.worst_bytes.load(Ordering::Relaxed) + self.since_read.load(Ordering::Relaxed);
        let request = events as u64 * self.record_bytes();
        if known > 0 && known + request > REFUSE_BYTES {
            return Some(format!(
                "the embedded broker's backlog would reach ~{} KiB in one partition with this request; \
                 past {} MiB per partition it deletes the oldest records, consumed or not",
                (known + request) / 1024,
                MOCK_MAX_BYTES / (1024 * 1024)
            ));
        }
        None
    }

    fn record_bytes(&self) -> u64 {
        let records = self.records.load(Ordering::Relaxed);
        let payload = match records {
            0 => 512,
            n => self.payload_bytes.load(Ordering::Relaxed) / n,
        };
        payload + RECORD_OVERHEAD
    }

    /// Moves the guard from the backlogs just read: `(partition, unconsumed records)`.
    fn update(&self, backlogs: &[(i32, u64)]) {
        let per_record = self.record_bytes();
        let worst = backlogs
            .iter()
            .map(|&(p, records)| (p, records, records * per_record))
            .max_by(|a, b| {
                let share = |r: u64, b: u64| {
                    (r as f64 / REFUSE_RECORDS as f64).max(b as f64 / REFUSE_BYTES as f64)
                };
                share(a.1, a.2).total_cmp(&share(b.1, b.2))
            });
        let Some((partition, records, bytes)) = worst else {
            return;
        };
        self.worst_bytes.store(bytes, Ordering::Relaxed);
        let load = (records as f64 / REFUSE_RECORDS as f64).max(bytes as f64 / REFUSE_BYTES as f64);
        let was_full = self.full.load(Ordering::Relaxed);
        let full = if was_full { load > REOPEN } else { load >= 1.0 };
        if full {
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = format!(
                "the embedded broker holds {records} unconsumed records (~{} KiB) in partition {partition}; \
                 past {} MiB per partition it deletes the oldest, consumed or not",
                bytes / 1024,
                MOCK_MAX_BYTES / (1024 * 1024)
            );
        }
        if full != was_full {
            self.full.store(full, Ordering::Relaxed);
            if full {
                tracing::warn!(partition, records, bytes, "embedded broker backlog full: new events get 503 until the consumer catches up (use an external Kafka for larger backlogs)");
            } else {
                tracing::info!("embedded broker backlog below its limit again: taking events");
            }
        }
    }
}

/// Unconsumed records per partition: log end minus the committed offset (or the log start).
fn read_backlogs(reader: &BaseConsumer, topic: &str, partitions: i32) -> Option<Vec<(i32, u64)>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = reader.committed_offsets(tpl, READ_TIMEOUT).ok()?;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let (low, high) = reader.fetch_watermarks(topic, p, READ_TIMEOUT).ok()?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        out.push((p, u64::try_from(high - from).unwrap_or(0)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(payload: usize) -> BacklogGuard {
        let g = BacklogGuard::default();
        g.produced(payload, 1);
        g
    }

    #[test]
    fn refuses_near_the_mock_retention_and_reopens_once_drained() {
        let g = guard(384); // 512 bytes per record with overhead
        g.since_read.store(0, Ordering::Relaxed);
        let limit = REFUSE_BYTES / 512;
        g.update(&[(0, 10), (3, limit - 1)]);
        assert_eq!(g.refusal(0), None);
        g.update(&[(0, 10), (3, limit)]);
        let why = g.refusal(0).expect("full at the limit");
        assert!(why.contains("partition 3"), "{why}");
        // Hysteresis: still full just below the limit, open again well below it.
        g.update(&[(3, limit * 9 / 10)]);
        assert!(g.refusal(0).is_some());
        g.update(&[(3, limit / 2)]);
        assert_eq!(g.refusal(0), None);
        // A request that would cross the limit before the next read is refused too.
        assert!(g.refusal((limit / 2 + 1) as usize).is_some());
        assert_eq!(g.refusal(10), None);
    }

    #[test]
    fn what_was_produced_since_the_last_read_counts() {
        let g = guard(384);
        g.update(&[(0, 0)]);
        for _ in 0..REFUSE_BYTES / 512 {
            g.produced(384, 1);
        }
        assert!(
            g.refusal(1).is_some(),
            "a burst between two reads is refused"
        );
        assert_eq!(
            BacklogGuard::default().refusal(100_000),
            None,
            "an empty broker takes any request"
        );
    }
}
