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
//! `INTERVAL` by a client that never joins the group. Its size is estimated from the records
//! produced so far (payload plus key, headers and framing, uncompressed: an upper bound of what
//! the mock stores). Between two reads, each delivered record is added to its own partition's
//! estimate, and records not yet delivered (their partition is known only then) to the fullest
//! one, so a burst into one partition is refused in time without charging every partition for
//! the traffic of all of them.

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
/// Refuse above these, accept again below [`REOPEN`] of them. What is in flight and what was
/// delivered since the last read are counted explicitly, and every size is an uncompressed upper
/// bound, so 80 % of the bytes limit leaves a margin.
const REFUSE_BYTES: u64 = MOCK_MAX_BYTES * 4 / 5;
const REFUSE_RECORDS: u64 = MOCK_MAX_BATCHES / 2;
const REOPEN: f64 = 0.6;
/// Bytes a record takes besides its payload: key, the two logpipe headers, record framing, and a
/// batch header when batches hold a single record.
const RECORD_OVERHEAD: u64 = 128;
const INTERVAL: Duration = Duration::from_millis(200);
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the embedded broker can take more events; shared by the producer and its monitor.
pub struct BacklogGuard {
    full: AtomicBool,
    /// Why it is full (partition, backlog), for the error message.
    reason: Mutex<String>,
    payload_bytes: AtomicU64,
    records: AtomicU64,
    /// Each partition's backlog at the last read, in estimated bytes.
    backlog: Vec<AtomicU64>,
    /// Estimated bytes delivered to each partition since the last read began; the last slot
    /// takes deliveries to a partition beyond the configured count (charged to every partition).
    since_read: Vec<AtomicU64>,
    /// Estimated bytes handed to the producer and not delivered yet (charged to the fullest
    /// partition: which one they go to is known only at delivery).
    in_flight: AtomicU64,
}

impl BacklogGuard {
    fn new(partitions: usize) -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        BacklogGuard {
            full: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            payload_bytes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            backlog: counters(partitions),
            since_read: counters(partitions + 1),
            in_flight: AtomicU64::new(0),
        }
    }

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
        let partitions = config.kafka.partitions;
        let guard = Arc::new(BacklogGuard::new(usize::try_from(partitions).unwrap_or(0)));
        let me = guard.clone();
        let topic = config.kafka.topic.clone();
        std::thread::Builder::new()
            .name("backlog-guard".into())
            .spawn(move || {
                while !stop.is_cancelled() {
                    let since: Vec<u64> = me
                        .since_read
                        .iter()
                        .map(|c| c.swap(0, Ordering::Relaxed))
                        .collect();
                    if let Some(backlogs) = read_backlogs(&reader, &topic, partitions) {
                        me.update(&backlogs);
                    } else {
                        for (counter, bytes) in me.since_read.iter().zip(since) {
                            counter.fetch_add(bytes, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(INTERVAL);
                }
            })?;
        Ok(guard)
    }

    /// Counts a request's records handed to the producer and their payload bytes (for the size
    /// estimate); they are in flight until [`delivered`](Self::delivered) or
    /// [`undelivered`](Self::undelivered).
    pub fn produced(&self, payload_bytes: usize, records: usize) {
        let (bytes, records) = (payload_bytes as u64, records as u64);
        self.payload_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.in_flight
            .fetch_add(bytes + records * RECORD_OVERHEAD, Ordering::Relaxed);
    }

    /// A record of `payload_bytes` was delivered to `partition`.
    pub fn delivered(&self, partition: i32, payload_bytes: usize) {
        let bytes = payload_bytes as u64 + RECORD_OVERHEAD;
        self.settle_in_flight(bytes);
        let last = self.since_read.len() - 1;
        let slot = usize::try_from(partition).map_or(last, |p| p.min(last));
        self.since_read[slot].fetch_add(bytes, Ordering::Relaxed);
    }

    /// A record of `payload_bytes` was not delivered: it is no longer in flight.
    pub fn undelivered(&self, payload_bytes: usize) {
        self.settle_in_flight(payload_bytes as u64 + RECORD_OVERHEAD);
    }

    fn settle_in_flight(&self, bytes: u64) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    /// Estimated bytes of the fullest partition now: its backlog at the last read, what was
    /// delivered to it since, and everything still in flight.
    fn fullest(&self) -> u64 {
        let unplaced = self
            .since_read
            .last()
            .map_or(0, |c| c.load(Ordering::Relaxed));
        let placed = self
            .backlog
            .iter()
            .zip(&self.since_read)
            .map(|(b, s)| b.load(Ordering::Relaxed) + s.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        placed + unplaced + self.in_flight.load(Ordering::Relaxed)
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
        let known = self.fullest();
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
        // The partition closest to either limit, with its share of it (1.0 = at the limit).
        let mut worst: Option<(i32, u64, u64, f64)> = None;
        for &(partition, records) in backlogs {
            let bytes = records * per_record;
            if let Some(slot) = usize::try_from(partition)
                .ok()
                .and_then(|p| self.backlog.get(p))
            {
                slot.store(bytes, Ordering::Relaxed);
            }
            let load =
                (records as f64 / REFUSE_RECORDS as f64).max(bytes as f64 / REFUSE_BYTES as f64);
            if worst.is_none_or(|(.., most)| load > most) {
                worst = Some((partition, records, bytes, load));
            }
        }
        let Some((partition, records, bytes, load)) = worst else {
            return;
        };
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
        let g = BacklogGuard::new(12);
        g.produced(payload, 1);
        g.delivered(0, payload);
        for c in &g.since_read {
            c.store(0, Ordering::Relaxed);
        }
        g
    }

    #[test]
    fn refuses_near_the_mock_retention_and_reopens_once_drained() {
        let g = guard(384); // 512 bytes per record with overhead
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
    fn a_burst_into_one_partition_between_two_reads_is_refused() {
        let g = guard(384);
        g.update(&[(0, 0)]);
        for _ in 0..REFUSE_BYTES / 512 {
            g.produced(384, 1);
            g.delivered(5, 384);
        }
        assert!(
            g.refusal(1).is_some(),
            "a burst between two reads is refused"
        );
        assert_eq!(
            BacklogGuard::new(12).refusal(100_000),
            None,
            "an empty broker takes any request"
        );
    }

    #[test]
    fn traffic_spread_over_partitions_is_charged_to_each_its_own() {
        // At 40,000 events/s over 12 partitions, one 200 ms interval delivers 8,000 records
        // (~4 MiB in all, ~340 KiB per partition): far from any one partition's limit. (Charged
        // to the fullest partition, as before this test, it refused events at a lag of 500.)
        let g = guard(384);
        g.update(&[(0, 40), (1, 40)]);
        for i in 0..8_000 {
            g.produced(384, 1);
            g.delivered(i % 12, 384);
        }
        assert_eq!(g.refusal(500), None);
    }

    #[test]
    fn records_in_flight_count_until_delivered() {
        let g = guard(384);
        g.update(&[(0, 1)]);
        let burst = REFUSE_BYTES / 512;
        g.produced(384 * burst as usize, burst as usize);
        assert!(g.refusal(1).is_some(), "undelivered records still count");
        for _ in 0..burst {
            g.undelivered(384);
        }
        assert_eq!(g.refusal(1), None, "failed deliveries stop counting");
    }
}
