//! `verify`: compares the aggregates with the log store chunk by chunk (see [`count_chunk`] for
//! why the comparison is exact while the consumers write, with no tolerance for events in
//! flight) and collects every difference. Reads only.

use std::time::{Duration, Instant};

use logpipe_aggregates::Aggregates;
use logpipe_model::Cells;
use logpipe_store::LogStore;
use serde::Serialize;

use super::count::{count_chunk, merge_uncut};
use super::rebuild::Progress;
use super::window::Window;

/// One cell on which the two sides disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub minute: i64,
    pub service: String,
    /// The level (`ERROR`), or the error fingerprint (16 hex digits).
    pub key: String,
    pub aggregates: u64,
    pub store: u64,
}

impl Mismatch {
    pub fn diff(&self) -> i64 {
        self.store as i64 - self.aggregates as i64
    }
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub window: Window,
    pub service: Option<String>,
    pub rows: u64,
    pub rows_per_second: f64,
    /// Events the aggregates counted in the window, and the store's rows at the same cuts.
    pub live_events: u64,
    pub store_events: u64,
    /// Per (minute, service, level), then per (minute, service, fingerprint) at ERROR and above.
    pub counts: Vec<Mismatch>,
    pub errors: Vec<Mismatch>,
    pub uncut: Vec<(String, i32, u64)>,
    /// Who holds the rebuild lease, if a rebuild is running (differences are then expected).
    pub rebuilding: Option<String>,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn agrees(&self) -> bool {
        self.counts.is_empty() && self.errors.is_empty()
    }
}

pub async fn verify(
    store: &LogStore,
    aggregates: &Aggregates,
    window: Window,
    service: Option<&str>,
    chunk: Duration,
    progress: &dyn Progress,
) -> anyhow::Result<VerifyReport> {
    let started = Instant::now();
    let chunks = window.chunks(chunk);
    progress.start(chunks.len() as u64);
    let (mut counts, mut errors) = (Vec::new(), Vec::new());
    let mut uncut = Vec::new();
    let (mut rows, mut live_events, mut store_events) = (0, 0, 0);
    for (done, &range) in chunks.iter().enumerate() {
        let counted = count_chunk(store, aggregates, range, service).await?;
        rows += counted.rows;
        live_events += counted.live.events();
        store_events += counted.store.events();
        mismatches(&counted.store, &counted.live, &mut counts, &mut errors);
        merge_uncut(&mut uncut, counted.uncut);
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        progress.chunk(done as u64 + 1, rows, rows as f64 / elapsed);
    }
    progress.finish();
    let rebuilding = aggregates
        .lease_holder()
        .await
        .map_err(|e| anyhow::anyhow!("reading the rebuild lease: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(VerifyReport {
        window,
        service: service.map(str::to_owned),
        rows,
        rows_per_second: rows as f64 / seconds.max(1e-9),
        live_events,
        store_events,
        counts,
        errors,
        uncut,
        rebuilding,
        seconds,
    })
}

/// The cells where `store` and `live` differ, with both values.
fn mismatches(store: &Cells, live: &Cells, counts: &mut Vec<Mismatch>, errors: &mut Vec<Mismatch>) {
    let diff = store.diff(live);
    for (minute, service, level, delta) in diff.counts {
        let live = live
            .counts
            .get(&minute)
            .and_then(|services| services.get(&service))
            .map_or(0, |slots| slots[level as usize]);
        counts.push(Mismatch {
            minute,
            key: level.as_str().to_owned(),
            service,
            aggregates: live,
            store: (live as i64 + delta) as u64,
        });
    }
    for (minute, service, fingerprint, delta) in diff.errors {
        let live = live
            .errors
            .get(&minute)
            .and_then(|services| services.get(&service))
            .and_then(|fingerprints| fingerprints.get(&fingerprint))
            .copied()
            .unwrap_or(0);
        errors.push(Mismatch {
            minute,
            key: fingerprint.to_string(),
            service,
            aggregates: live,
            store: (live as i64 + delta) as u64,
        });
    }
}
