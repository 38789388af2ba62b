//! The assemble stage: collects a member's records into batches and hands each, decoded, to the
//! writer. A batch is cut at `batch_size`, or `batch_linger` after its first record; an idle
//! writer gets what has arrived at once, and while the writer is busy a batch grows up to
//! `max_batch_size`, so a backlog drains in few large writes. Assign and revoke messages pass
//! through in order, after the records before them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::decode::prepare;
use super::{Deps, Work, WriterState, WORK_QUEUE};
use crate::consumer::handoff::{Fetched, Input};

pub(super) async fn assemble_stage(
    deps: Deps,
    mut rx: mpsc::Receiver<Input>,
    work: mpsc::Sender<Work>,
    writer: Arc<WriterState>,
) {
    let mut batch: Vec<Fetched> = Vec::with_capacity(deps.batch_size);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let input = match deadline {
            Some(at) => tokio::select! {
                biased;
                input = rx.recv() => input,
                // The writer finished: what waits goes now, instead of at the deadline.
                _ = writer.idle.notified() => {
                    if work.capacity() == WORK_QUEUE && !writer.busy.load(Ordering::Acquire) {
                        flush(&deps, &mut batch, &work).await;
                        deadline = None;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(at) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(input) = input else {
            flush(&deps, &mut batch, &work).await;
            return;
        };
        let mut next = Some(input);
        while let Some(input) = next.take() {
            match input {
                Input::Record(record) => {
                    if batch.is_empty() {
                        deadline = Some(tokio::time::Instant::now() + deps.batch_linger);
                    }
                    batch.push(record);
                    // An idle writer (nothing queued, nothing being written) gets the batch at
                    // once, with whatever else already arrived: no record waits for batch-mates
                    // then. A busy writer lets the batch grow: to batch_size, and past it up to
                    // max_batch_size while earlier batches still queue, so a backlog drains in
                    // few large writes; batch_linger bounds the wait.
                    let queued = WORK_QUEUE - work.capacity();
                    let idle = queued == 0 && !writer.busy.load(Ordering::Acquire);
                    if idle {
                        while batch.len() < deps.max_batch_size {
                            match rx.try_recv() {
                                Ok(Input::Record(more)) => batch.push(more),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    if idle
                        || batch.len() >= deps.max_batch_size
                        || (batch.len() >= deps.batch_size && queued == 0)
                    {
                        flush(&deps, &mut batch, &work).await;
                        deadline = None;
                    }
                }
                Input::Assigned(tps, epoch) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    if work.send(Work::Assigned(tps, epoch)).await.is_err() {
                        return writer_gone();
                    }
                }
                Input::Revoked(tps, reply) => {
                    flush(&deps, &mut batch, &work).await;
                    deadline = None;
                    if work.send(Work::Revoked(tps, reply)).await.is_err() {
                        return writer_gone();
                    }
                }
            }
        }
        if work.is_closed() {
            return writer_gone();
        }
    }
}

/// The write stage ended unexpectedly. Returning drops the input, which makes the poll thread
/// leave the group, so the partitions move to a healthy member instead of piling up lag here.
fn writer_gone() {
    tracing::error!(
        "the write stage stopped; this member leaves the group so its partitions move elsewhere"
    );
}

async fn flush(deps: &Deps, batch: &mut Vec<Fetched>, work: &mpsc::Sender<Work>) {
    if batch.is_empty() {
        return;
    }
    // The next batch starts with room for as many records as this one had: a backlog's batches
    // grow to `max_batch_size`, and growing one by doubling copies every record a dozen times.
    let room = batch.len().max(deps.batch_size);
    let records = std::mem::replace(batch, Vec::with_capacity(room));
    let prepared = prepare(deps, records).await;
    let _ = work.send(Work::Batch(prepared)).await;
}
