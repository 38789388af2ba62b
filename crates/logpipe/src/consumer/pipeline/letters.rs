//! Dead-lettering: the DLQ record of a record the writer gives up on (its key and value bytes
//! unchanged, the original headers carried, and the context headers described in [`crate::dlq`]),
//! and sending a round of them. A record is done only once Kafka acknowledged its DLQ copy; a
//! failed send is a DLQ outage, retried behind the DLQ's `Circuit` ([`super::circuit`]), never dropped.

use chrono::Utc;

use super::circuit::Circuit;
use super::item::Item;
use crate::consumer::dead_letter::{DeadLetters, Letter};
use crate::dlq::{DlqContext, ErrorClass};
use crate::kafka::headers;

/// Who is dead-lettering: written into every record's context headers.
pub(super) struct Origin<'a> {
    pub group: &'a str,
    pub member: &'a str,
}

/// Sends `pending` to the dead-letter topic; `acknowledged` is called for each record once Kafka
/// has its copy. Returns when every record was acknowledged.
pub(super) async fn send_all(
    dead_letters: &DeadLetters,
    circuit: &mut Circuit,
    origin: &Origin<'_>,
    mut pending: Vec<(Item, ErrorClass)>,
    mut acknowledged: impl FnMut(Item, ErrorClass),
) {
    while !pending.is_empty() {
        let letters: Vec<Letter> = pending
            .iter()
            .map(|(item, class)| letter(item, *class, origin))
            .collect();
        let results = dead_letters.send(&letters).await;
        let mut failed = Vec::new();
        let mut error = None;
        for ((item, class), result) in pending.into_iter().zip(results) {
            match result {
                Ok(()) => acknowledged(item, class),
                Err(e) => {
                    error = Some(e.to_string());
                    failed.push((item, class));
                }
            }
        }
        match error {
            Some(error) => circuit.trip(&error).await,
            None => circuit.succeeded(),
        }
        pending = failed;
    }
}

/// The DLQ record of `item`.
fn letter(item: &Item, class: ErrorClass, origin: &Origin<'_>) -> Letter {
    let now = Utc::now();
    let (error_type, message) = item.error();
    let (attempts, first, last) = item
        .failure
        .as_ref()
        .map_or((1, now, now), |f| (f.attempts.max(1), f.first, f.last));
    let mut carried = Vec::new();
    if let Some(v) = &item.raw.ingest_header {
        carried.push((headers::INGEST_TIME_MS, v.clone()));
    }
    if let Some(v) = &item.raw.request_id_header {
        carried.push((headers::REQUEST_ID, v.clone()));
    }
    Letter {
        key: item.raw.key.clone(),
        value: item.raw.payload.clone(),
        context: DlqContext {
            original_topic: item.tp.0.to_string(),
            original_partition: item.tp.1,
            original_offset: item.offset,
            original_timestamp_ms: item.raw.timestamp_ms,
            consumer_group: origin.group.to_owned(),
            instance_id: origin.member.to_owned(),
            class,
            error_type: error_type.to_owned(),
            error_message: message.to_owned(),
            attempts,
            first_failure: first,
            last_failure: last,
            version: env!("CARGO_PKG_VERSION").to_string(),
            replay_count: item.raw.replay_count,
        },
        carried,
    }
}
