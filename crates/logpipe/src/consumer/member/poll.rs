//! The poll loop of one member, on its own OS thread: hands fetched records to the pipeline,
//! pauses every partition while the pipeline stalls or a dependency is down (and keeps polling, so
//! the member stays in the group), and passes the pipeline's commit points on to [`super::commit`].

use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio_util::sync::CancellationToken;

use super::commit::CommitQueue;
use super::context::MemberContext;
use crate::consumer::handoff::{Fetched, Finals, Input, Raw};
use crate::kafka::headers;

/// How long the poll thread waits for room in the pipeline before pausing partitions.
const SHORT_STALL: Duration = Duration::from_secs(1);

/// Everything the poll thread needs.
pub struct MemberHandle {
    pub consumer: BaseConsumer<MemberContext>,
    pub commits: std_mpsc::Receiver<Finals>,
    pub stop: CancellationToken,
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
        let outage = ctx.outages.any();
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
        let outage = ctx.outages.any();
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
                let record = fetched(ctx, &message);
                ctx.check_sequence(&record.tp(), record.offset);
                ctx.push(Input::Record(record));
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

/// The record, owned, with the headers the pipeline reads.
fn fetched(ctx: &MemberContext, message: &BorrowedMessage<'_>) -> Fetched {
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
    Fetched {
        topic: ctx.intern(message.topic()),
        partition: message.partition(),
        offset: message.offset(),
        lane_hash: match message.key() {
            // FNV-1a: stable and cheap; only used to spread keys over workers.
            Some(key) => logpipe_model::fnv1a_64(key),
            None => message.offset() as u64,
        },
        fetched_at: Instant::now(),
        raw: Raw {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            ingest_header,
            request_id_header,
            replay_count,
        },
    }
}
