//! Splits a correction ([`CellDiff`]) into batches of whole minutes, each applied atomically by
//! one step of a backend (one Lua script in Redis). A minute is never split across batches, so
//! no reader ever sees a minute half corrected; a batch holds at most [`BATCH_CELLS`] cells
//! unless one minute alone has more. Shared by both backends so they batch, and report, alike.

use std::collections::{BTreeMap, BTreeSet};

use logpipe_model::{CellDiff, Fingerprint, Level, LEVELS};

/// Cells per batch, about. Bounds how long one Lua script blocks Redis: a cell is one HINCRBY
/// or ZINCRBY plus a comparison, so 20k cells take some tens of milliseconds.
pub(crate) const BATCH_CELLS: usize = 20_000;

/// The corrections of one minute.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MinuteCorrection<'a> {
    pub minute: i64,
    /// (service, level, delta) for the minute's `service|LEVEL` counts.
    pub counts: Vec<(&'a str, Level, i64)>,
    /// (service, fingerprint, delta) for the minute's `service|fingerprint` errors.
    pub errors: Vec<(&'a str, Fingerprint, i64)>,
}

/// Whole minutes applied in one atomic step.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Batch<'a> {
    pub minutes: Vec<MinuteCorrection<'a>>,
    /// Templates to set if absent: those of the fingerprints whose first error cell in the
    /// correction falls in this batch (each fingerprint once, over all batches).
    pub templates: Vec<(Fingerprint, &'a str)>,
}

impl Batch<'_> {
    /// Count and error cells in the batch.
    pub fn cells(&self) -> usize {
        self.minutes
            .iter()
            .map(|minute| minute.counts.len() + minute.errors.len())
            .sum()
    }

    /// The sum of the count deltas per level ([`Level::ALL`] order): what the totals change by.
    pub fn level_totals(&self) -> [i64; LEVELS] {
        let mut totals = [0; LEVELS];
        for minute in &self.minutes {
            for &(_, level, delta) in &minute.counts {
                totals[level as usize] += delta;
            }
        }
        totals
    }
}

/// The batches of `correction`, minutes ascending; always at least one (an empty correction is
/// one empty batch, which still checks the lease). Cells keep their order within a minute, and a
/// cell listed twice stays twice (its deltas add up).
pub(crate) fn plan<'a>(
    correction: &'a CellDiff,
    templates: &'a BTreeMap<Fingerprint, String>,
    max_cells: usize,
) -> Vec<Batch<'a>> {
    let mut minutes: BTreeMap<i64, MinuteCorrection<'a>> = BTreeMap::new();
    for (at, service, level, delta) in &correction.counts {
        minutes
            .entry(*at)
            .or_insert_with(|| new_minute(*at))
            .counts
            .push((service.as_str(), *level, *delta));
    }
    for (at, service, fingerprint, delta) in &correction.errors {
        minutes
            .entry(*at)
            .or_insert_with(|| new_minute(*at))
            .errors
            .push((service.as_str(), *fingerprint, *delta));
    }

    let mut batches = vec![Batch::default()];
    let mut seen: BTreeSet<Fingerprint> = BTreeSet::new();
    for (_, minute) in minutes {
        let size = minute.counts.len() + minute.errors.len();
        let current = batches.last().expect("at least one batch");
        if !current.minutes.is_empty() && current.cells() + size > max_cells {
            batches.push(Batch::default());
        }
        let batch = batches.last_mut().expect("at least one batch");
        for &(_, fingerprint, _) in &minute.errors {
            if seen.insert(fingerprint) {
                if let Some(template) = templates.get(&fingerprint) {
                    batch.templates.push((fingerprint, template.as_str()));
                }
            }
        }
        batch.minutes.push(minute);
    }
    batches
}

fn new_minute<'a>(minute: i64) -> MinuteCorrection<'a> {
    MinuteCorrection {
        minute,
        ..MinuteCorrection::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(cells: &[(i64, &str, i64)]) -> CellDiff {
        CellDiff {
            counts: cells
                .iter()
                .map(|&(minute, service, delta)| (minute, service.to_owned(), Level::Info, delta))
                .collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn an_empty_correction_is_one_empty_batch() {
        let empty = CellDiff::default();
        let templates = BTreeMap::new();
        let batches = plan(&empty, &templates, 10);
        assert_eq!(batches, vec![Batch::default()]);
    }

    #[test]
    fn batches_hold_whole_minutes_up_to_the_limit() {
        // Minute 60 has 3 cells, 120 has 1, 180 has 5 (over the limit alone), 240 has 2.
        let mut cells = vec![(120, "a", 1), (60, "a", 1), (60, "b", -2), (60, "c", 3)];
        cells.extend((0..5).map(|_| (180, "a", 1)));
        cells.extend([(240, "a", 1), (240, "b", 1)]);
        let correction = diff(&cells);
        let templates = BTreeMap::new();
        let batches = plan(&correction, &templates, 4);
        let shape: Vec<Vec<(i64, usize)>> = batches
            .iter()
            .map(|batch| {
                batch
                    .minutes
                    .iter()
                    .map(|m| (m.minute, m.counts.len()))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![vec![(60, 3), (120, 1)], vec![(180, 5)], vec![(240, 2)]]
        );
        assert_eq!(batches[0].level_totals()[Level::Info as usize], 3);
        assert_eq!(batches.iter().map(Batch::cells).sum::<usize>(), cells.len());
    }

    #[test]
    fn each_template_goes_with_the_first_batch_touching_its_fingerprint() {
        let correction = CellDiff {
            counts: Vec::new(),
            errors: vec![
                (60, "a".to_owned(), Fingerprint(1), 1),
                (120, "a".to_owned(), Fingerprint(1), 1),
                (120, "a".to_owned(), Fingerprint(2), -1),
                (120, "a".to_owned(), Fingerprint(3), 1),
            ],
        };
        let templates: BTreeMap<Fingerprint, String> = [
            (Fingerprint(1), "one".to_owned()),
            (Fingerprint(2), "two".to_owned()),
        ]
        .into();
        let batches = plan(&correction, &templates, 1);
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].templates, vec![(Fingerprint(1), "one")]);
        assert_eq!(
            batches[1].templates,
            vec![(Fingerprint(2), "two")],
            "fingerprint 1 already set, 3 has no known template"
        );
    }
}
