//! One chunk of minutes counted on both sides, comparably: an atomic snapshot of the aggregates
//! (the chunk's minutes and every partition's applied-offset watermark), then the log store's
//! rows of the chunk at or below those watermarks.
//!
//! Why the two agree exactly when nothing was lost: every stored row at or below a partition's
//! watermark was committed before the watermark moved past it (the consumer counts a record only
//! after its store round returned), and an apply counts only records above the watermark it
//! moves. So the snapshot's cells count exactly the rows the store statement, which starts after
//! the snapshot, sees at or below the cuts; rows stored but not yet counted are above them.

use logpipe_aggregates::Aggregates;
use logpipe_model::Cells;
use logpipe_store::{CellQuery, LogStore};

use super::window::time_of;

/// Both sides of one chunk.
pub struct ChunkCount {
    /// The store's rows at or below the cuts.
    pub store: Cells,
    /// The aggregates' cells at the snapshot.
    pub live: Cells,
    /// Rows read from the store.
    pub rows: u64,
    /// Rows of partitions with no watermark in the aggregates (not counted on either side).
    pub uncut: Vec<(String, i32, u64)>,
}

/// Counts minutes `[from, until)`, of one service or all.
pub async fn count_chunk(
    store: &LogStore,
    aggregates: &Aggregates,
    (from, until): (i64, i64),
    service: Option<&str>,
) -> anyhow::Result<ChunkCount> {
    let snapshot = aggregates
        .snapshot(from, until)
        .await
        .map_err(|e| anyhow::anyhow!("reading the aggregates: {e}"))?;
    let live = match service {
        Some(service) => snapshot.cells.only_service(service),
        None => snapshot.cells,
    };
    let query = CellQuery {
        from: time_of(from),
        until: time_of(until),
        service: service.map(str::to_owned),
        cuts: snapshot.cuts,
    };
    let counted = store
        .count_cells(&query)
        .await
        .map_err(|e| anyhow::anyhow!("counting the log store's rows: {e}"))?;
    Ok(ChunkCount {
        store: counted.cells,
        live,
        rows: counted.rows,
        uncut: counted.uncut,
    })
}

/// Adds one chunk's rows of partitions without a watermark to a running list.
pub fn merge_uncut(total: &mut Vec<(String, i32, u64)>, chunk: Vec<(String, i32, u64)>) {
    for (topic, partition, rows) in chunk {
        match total
            .iter_mut()
            .find(|(t, p, _)| *t == topic && *p == partition)
        {
            Some(entry) => entry.2 += rows,
            None => total.push((topic, partition, rows)),
        }
    }
    total.sort();
}
