//! Decoding a batch: each record decoded and enriched on one of `workers` lanes chosen by its key
//! (so one key's records are handled in order by one worker), then put back in fetch order. Each
//! record is read in its topic's format ([`super::formats`]). A record that cannot be decoded is
//! *poison*, kept with its reason for the dead-letter topic; a panic while decoding costs that
//! one record, not the batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use logpipe_model::{enrich, RecordMeta};

use super::formats::Formats;
use super::item::{Item, Logs, Prepared};
use super::Deps;
use crate::consumer::handoff::Fetched;

/// Decodes and enriches a batch on `workers` lanes (by key), then restores offset order.
pub(super) async fn prepare(deps: &Deps, records: Vec<Fetched>) -> Prepared {
    let now = chrono::Utc::now();
    let lanes = deps.workers.min(records.len()).max(1);
    if lanes == 1 || records.len() < 64 {
        // Fetch order is offset order within each partition.
        let items = decode_lane(records, &deps.formats, &deps.limits, &deps.tags, now);
        return Prepared { items };
    }
    let total = records.len();
    // Keys spread evenly over lanes; a quarter more than the even share means a lane's vector
    // almost never grows (growing copies every record already in it).
    let room = total.div_ceil(lanes) * 5 / 4;
    let mut split: Vec<Vec<Fetched>> = (0..lanes).map(|_| Vec::with_capacity(room)).collect();
    let mut positions: Vec<Vec<usize>> = (0..lanes).map(|_| Vec::with_capacity(room)).collect();
    for (position, record) in records.into_iter().enumerate() {
        let lane = (record.lane_hash % lanes as u64) as usize;
        split[lane].push(record);
        positions[lane].push(position);
    }
    let handles: Vec<_> = split
        .into_iter()
        .map(|lane| {
            let (formats, limits, tags) = (deps.formats.clone(), deps.limits, deps.tags.clone());
            tokio::task::spawn_blocking(move || decode_lane(lane, &formats, &limits, &tags, now))
        })
        .collect();
    // Back in fetch order: each item to its original position (one move each, no sort).
    let mut slots: Vec<Option<Item>> = Vec::with_capacity(total);
    slots.resize_with(total, || None);
    for (handle, positions) in handles.into_iter().zip(positions) {
        match handle.await {
            Ok(part) => {
                for (item, position) in part.into_iter().zip(positions) {
                    slots[position] = Some(item);
                }
            }
            // decode_lane catches panics per record; a lane cannot panic as a whole.
            Err(e) => tracing::error!(error = %e, "decode worker failed"),
        }
    }
    // Sized up front: `flatten` gives no size hint, so `collect` would grow the vector (and copy
    // every item) a dozen times per batch.
    let mut items = Vec::with_capacity(total);
    items.extend(slots.into_iter().flatten());
    Prepared { items }
}

/// One lane: decode and enrich in order. A record that cannot be decoded is poison, kept with its
/// reason for the dead-letter topic.
fn decode_lane(
    records: Vec<Fetched>,
    formats: &Formats,
    limits: &logpipe_model::Limits,
    tags: &Arc<BTreeMap<String, String>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Item> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        // A panic in decode or enrich is a bug, but it must cost one record (sent to the DLQ
        // with its reason), not the batch or the task.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            formats.decode(&record, limits, now).map(|events| {
                let mut meta = RecordMeta {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    index: 0,
                    kafka_timestamp_ms: record.raw.timestamp_ms,
                    ingest_header: record.raw.ingest_header.as_deref(),
                    request_id_header: record.raw.request_id_header.as_deref(),
                };
                let mut logs = Logs::with_capacity(events.len());
                for (index, event) in events.into_iter().enumerate() {
                    // A Kafka record is at most 2 GiB, far fewer events than u32::MAX.
                    meta.index = index as u32;
                    logs.push(enrich(event, &meta, tags, now));
                }
                logs
            })
        }));
        let (logs, poison) = match decoded {
            Ok(Ok(logs)) => (logs, None),
            Ok(Err(refusal)) => (
                Logs::new(),
                Some(Box::new((refusal.code.to_string(), refusal.message))),
            ),
            Err(_) => (
                Logs::new(),
                Some(Box::new((
                    "panic".to_string(),
                    "decoding this record panicked (a logpipe bug; please report it)".to_string(),
                ))),
            ),
        };
        let tp = record.tp();
        out.push(Item {
            tp,
            offset: record.offset,
            epoch: 0,
            key: record.raw.key.as_ref().map(|_| record.lane_hash),
            fetched_at: record.fetched_at,
            raw: record.raw,
            logs,
            poison,
            failure: None,
        });
    }
    out
}
