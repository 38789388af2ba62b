//! Dead-lettering: the DLQ record of a record the writer gives up on (its key and value bytes
//! unchanged, the original headers carried, and the context headers described in [`crate::dlq`]),
//! and sending a round of them. A record is done only once Kafka acknowledged its DLQ copy; a
//! failed send is a DLQ outage, retried behind the DLQ's `Circuit` ([`super::circuit`]), never dropped;
//! a send the topic refuses for good goes to the parking topic instead, so one record that can
//! never pass does not pause the member's partitions.

use chrono::Utc;

use super::circuit::Circuit;
use super::item::Item;
use rdkafka::error::KafkaError;

use crate::consumer::dead_letter::{permanent_refusal, DeadLetters, Letter};
use crate::dlq::{self, DlqContext, ErrorClass};
use crate::kafka::headers;

/// Who is dead-lettering: written into every record's context headers.
pub(super) struct Origin<'a> {
    pub group: &'a str,
    pub member: &'a str,
}

/// Longest value a parked record keeps: far below any broker's default `message.max.bytes`.
const PARKED_VALUE_BYTES: usize = 64 * 1024;
/// Longest error message a parked record carries in its headers.
const PARKED_MESSAGE_CHARS: usize = 1024;

/// Where an acknowledged record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Landing {
    DeadLetters,
    /// The dead-letter topic refused it for good (the reason's code); the parking topic has it.
    Parked(&'static str),
}

/// Sends `pending` to the dead-letter topic; `acknowledged` is called for each record once Kafka
/// has its copy. A record the topic refuses for good goes to the parking topic instead; if that
/// refuses it too, it is retried behind the circuit like an outage (its partition stops, the
/// circuit metrics say so, and the log says what to fix). Returns when every record was
/// acknowledged.
pub(super) async fn send_all(
    dead_letters: &DeadLetters,
    circuit: &mut Circuit,
    origin: &Origin<'_>,
    mut pending: Vec<(Item, ErrorClass)>,
    mut acknowledged: impl FnMut(Item, ErrorClass, Landing),
) {
    while !pending.is_empty() {
        let letters: Vec<Letter> = pending
            .iter()
            .map(|(item, class)| letter(item, *class, origin))
            .collect();
        let results = dead_letters.send(&letters).await;
        let mut failed = Vec::new();
        let mut refused = Vec::new();
        let mut error = None;
        for (((item, class), letter), result) in pending.into_iter().zip(letters).zip(results) {
            match result {
                Ok(()) => acknowledged(item, class, Landing::DeadLetters),
                Err(e) => match permanent_refusal(&e) {
                    Some(reason) => {
                        tracing::warn!(topic = %item.tp.0, partition = item.tp.1, offset = item.offset, reason, error = %e, parked_topic = dead_letters.parked_topic(), "the dead-letter topic refused this record for good; parking it instead (value cut to {PARKED_VALUE_BYTES} bytes, refusal in its headers)");
                        refused.push((item, class, reason, parked(letter, reason, &e)));
                    }
                    None => {
                        error = Some(e.to_string());
                        failed.push((item, class));
                    }
                },
            }
        }
        if !refused.is_empty() {
            let letters: Vec<Letter> = refused.iter().map(|r| r.3.clone()).collect();
            let results = dead_letters.park(&letters).await;
            for ((item, class, reason, _), result) in refused.into_iter().zip(results) {
                match result {
                    Ok(()) => acknowledged(item, class, Landing::Parked(reason)),
                    Err(e) => {
                        tracing::error!(topic = %item.tp.0, partition = item.tp.1, offset = item.offset, reason, error = %e, parked_topic = dead_letters.parked_topic(), "neither the dead-letter topic nor the parking topic takes this record: its partition stops here (nothing is committed past it) until one of them does; check both topics exist and this client may write to them");
                        error = Some(e.to_string());
                        failed.push((item, class));
                    }
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

/// The parking topic's copy of a letter the dead-letter topic refused: the value cut to
/// [`PARKED_VALUE_BYTES`], the error message to [`PARKED_MESSAGE_CHARS`], and the refusal and the
/// original value length in headers.
fn parked(mut letter: Letter, reason: &str, error: &KafkaError) -> Letter {
    let length = letter.value.as_ref().map_or(0, Vec::len);
    if let Some(value) = &mut letter.value {
        value.truncate(PARKED_VALUE_BYTES);
    }
    let message = &mut letter.context.error_message;
    if let Some((cut, _)) = message.char_indices().nth(PARKED_MESSAGE_CHARS) {
        message.truncate(cut);
    }
    letter.carried.push((
        dlq::headers::REFUSED_BY_DLQ,
        format!("{reason}: {error}").into_bytes(),
    ));
    letter.carried.push((
        dlq::headers::ORIGINAL_VALUE_BYTES,
        length.to_string().into_bytes(),
    ));
    letter
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
