//! One round of log-store writes: the ready records in one COPY, or, for a round of a backlog (at
//! least two batches), in `store_streams` concurrent COPYs, each its own transaction. An outage is
//! retried behind the store's `Circuit` ([`super::circuit`]) until the write succeeds; a write the store refuses is
//! split in halves until the refused rows are found, so one bad row costs one record, not the
//! round.

use logpipe_model::EnrichedLog;
use logpipe_store::{LogStore, StoreError, WriteReport};

use super::circuit::Circuit;

/// What a round came to.
#[derive(Default, Debug, PartialEq)]
pub(super) struct StoreOutcome {
    pub inserted: u64,
    pub duplicates: u64,
    /// Index in the round and the store's error, for each refused record.
    pub refused: Vec<(usize, String)>,
}

/// Writes `logs`. A round of at least two batches is written as concurrent parts: the server
/// copies one part while the next is encoded and sent.
pub(super) async fn write_round(
    store: &LogStore,
    circuit: &mut Circuit,
    logs: &[EnrichedLog],
    batch_size: usize,
    streams: usize,
) -> StoreOutcome {
    let mut outcome = StoreOutcome::default();
    let part = part_size(logs.len(), batch_size, streams);
    let results = futures::future::join_all(logs.chunks(part).map(|p| store.write(p))).await;
    for (index, (logs, result)) in logs.chunks(part).zip(results).enumerate() {
        settle(store, circuit, result, logs, index * part, &mut outcome).await;
    }
    outcome
}

/// Records per store write in a round of `records`: the round is split into up to `streams`
/// concurrent parts of at least `batch_size` records each (one part below two batches).
fn part_size(records: usize, batch_size: usize, streams: usize) -> usize {
    let parts = streams.min(records / batch_size.max(1)).max(1);
    records.div_ceil(parts).max(1)
}

/// Writes `logs` (starting at index `base` of the round) and settles the result.
async fn write_logs(
    store: &LogStore,
    circuit: &mut Circuit,
    logs: &[EnrichedLog],
    base: usize,
    out: &mut StoreOutcome,
) {
    if logs.is_empty() {
        return;
    }
    let first = store.write(logs).await;
    settle(store, circuit, first, logs, base, out).await;
}

/// Settles one write of `logs`: counts it; or retries an outage behind the store's circuit until
/// the write succeeds; or splits a write the store refused to find the refused rows.
async fn settle(
    store: &LogStore,
    circuit: &mut Circuit,
    mut result: Result<WriteReport, StoreError>,
    logs: &[EnrichedLog],
    base: usize,
    out: &mut StoreOutcome,
) {
    loop {
        match result {
            Ok(report) => {
                circuit.succeeded();
                out.inserted += report.inserted;
                out.duplicates += report.duplicates;
                return;
            }
            Err(e) if e.is_outage() => circuit.trip(&e.to_string()).await,
            Err(e) => {
                circuit.succeeded();
                if logs.len() == 1 {
                    out.refused.push((base, e.to_string()));
                    return;
                }
                let (left, right) = logs.split_at(logs.len() / 2);
                Box::pin(write_logs(store, circuit, left, base, out)).await;
                Box::pin(write_logs(store, circuit, right, base + left.len(), out)).await;
                return;
            }
        }
        result = store.write(logs).await;
    }
}

#[cfg(test)]
mod tests {
    use super::part_size;

    #[test]
    fn a_round_is_split_only_when_it_holds_two_batches() {
        // (records, batch_size, streams) -> records per part
        let cases = [
            (499, 500, 2, 499),   // below one batch: one write
            (999, 500, 2, 999),   // below two batches: one write
            (1000, 500, 2, 500),  // two batches: two parts
            (5000, 500, 2, 2500), // a backlog round: two parts
            (5001, 500, 2, 2501), // uneven: the last part is one short
            (5000, 500, 1, 5000), // one stream (SQLite, or configured): never split
            (5000, 500, 4, 1250), // more streams, more parts
            (1500, 500, 4, 500),  // no part below batch_size
            (7, 1, 2, 4),         // the test setting: any round of two or more is split
            (1, 1, 2, 1),
        ];
        for (records, batch_size, streams, expected) in cases {
            assert_eq!(
                part_size(records, batch_size, streams),
                expected,
                "{records} records, batch_size {batch_size}, {streams} streams"
            );
        }
    }
}
