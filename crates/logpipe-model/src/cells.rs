//! [`Cells`]: events counted the way the aggregates count them (per event minute, per service,
//! per level, and per error fingerprint at ERROR and above), whoever did the counting. The log
//! store counts its rows into `Cells`, the aggregates store reads its minutes into `Cells`, and
//! [`Cells::diff`] says where they disagree. [`Cut`] names which rows of a partition count: those
//! at or below an offset, the aggregates' applied-offset watermark at one instant.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{Fingerprint, Level};

/// Number of levels: counts per service are one array slot per level, in [`Level::ALL`] order.
pub const LEVELS: usize = Level::ALL.len();

/// The minute bucket of an event time: epoch seconds floored to the minute, in UTC. Euclidean
/// division, so times before 1970 also round down.
pub fn minute_of(timestamp: DateTime<Utc>) -> i64 {
    timestamp.timestamp().div_euclid(60) * 60
}

/// The rows of one partition that count: offsets at or below `through` (`-1`: none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cut {
    pub topic: String,
    pub partition: i32,
    pub through: i64,
}

/// Event counts per minute, service and level, and per minute, service and fingerprint for
/// events at ERROR and above, with the templates of those fingerprints where known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cells {
    /// minute (epoch seconds) → service → count per level ([`Level::ALL`] order).
    pub counts: BTreeMap<i64, BTreeMap<String, [u64; LEVELS]>>,
    /// minute → service → fingerprint → count, ERROR and above only.
    pub errors: BTreeMap<i64, BTreeMap<String, BTreeMap<Fingerprint, u64>>>,
    /// Template of each fingerprint in `errors`, where the counter knows it (the log store does;
    /// a snapshot of the aggregates leaves this empty).
    pub templates: BTreeMap<Fingerprint, String>,
}

/// Where two [`Cells`] disagree: `left − right` for every cell that differs, in minute order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellDiff {
    /// (minute, service, level, left − right), nonzero only.
    pub counts: Vec<(i64, String, Level, i64)>,
    /// (minute, service, fingerprint, left − right), nonzero only.
    pub errors: Vec<(i64, String, Fingerprint, i64)>,
}

impl Cells {
    /// Adds `events` to one (minute, service, level) cell.
    pub fn add_count(&mut self, minute: i64, service: &str, level: Level, events: u64) {
        let services = self.counts.entry(minute).or_default();
        let slots = match services.get_mut(service) {
            Some(slots) => slots,
            None => services.entry(service.to_owned()).or_default(),
        };
        slots[level as usize] += events;
    }

    /// Adds `events` to one (minute, service, fingerprint) error cell.
    pub fn add_error(&mut self, minute: i64, service: &str, fingerprint: Fingerprint, events: u64) {
        let services = self.errors.entry(minute).or_default();
        let fingerprints = match services.get_mut(service) {
            Some(fingerprints) => fingerprints,
            None => services.entry(service.to_owned()).or_default(),
        };
        *fingerprints.entry(fingerprint).or_default() += events;
    }

    /// Every event counted, all levels.
    pub fn events(&self) -> u64 {
        self.counts
            .values()
            .flat_map(BTreeMap::values)
            .flat_map(|slots| slots.iter())
            .sum()
    }

    /// Events per level ([`Level::ALL`] order).
    pub fn level_totals(&self) -> [u64; LEVELS] {
        let mut totals = [0; LEVELS];
        for slots in self.counts.values().flat_map(BTreeMap::values) {
            for (total, count) in totals.iter_mut().zip(slots) {
                *total += count;
            }
        }
        totals
    }

    /// Only the cells of `service`.
    pub fn only_service(mut self, service: &str) -> Cells {
        for services in self.counts.values_mut() {
            services.retain(|name, _| name == service);
        }
        self.counts.retain(|_, services| !services.is_empty());
        for services in self.errors.values_mut() {
            services.retain(|name, _| name == service);
        }
        self.errors.retain(|_, services| !services.is_empty());
        self
    }

    /// `self − other`, cell by cell; a cell missing on one side counts as 0 there.
    pub fn diff(&self, other: &Cells) -> CellDiff {
        let mut diff = CellDiff::default();
        let zero = [0u64; LEVELS];
        let empty = BTreeMap::new();
        for minute in union(self.counts.keys(), other.counts.keys()) {
            let left = self.counts.get(&minute).unwrap_or(&empty);
            let right = other.counts.get(&minute).unwrap_or(&empty);
            for service in union(left.keys(), right.keys()) {
                let l = left.get(&service).unwrap_or(&zero);
                let r = right.get(&service).unwrap_or(&zero);
                for (i, level) in Level::ALL.iter().enumerate() {
                    let delta = l[i] as i64 - r[i] as i64;
                    if delta != 0 {
                        diff.counts.push((minute, service.clone(), *level, delta));
                    }
                }
            }
        }
        let empty = BTreeMap::new();
        let none = BTreeMap::new();
        for minute in union(self.errors.keys(), other.errors.keys()) {
            let left = self.errors.get(&minute).unwrap_or(&empty);
            let right = other.errors.get(&minute).unwrap_or(&empty);
            for service in union(left.keys(), right.keys()) {
                let l = left.get(&service).unwrap_or(&none);
                let r = right.get(&service).unwrap_or(&none);
                for fingerprint in union(l.keys(), r.keys()) {
                    let lc = l.get(&fingerprint).copied().unwrap_or(0);
                    let rc = r.get(&fingerprint).copied().unwrap_or(0);
                    let delta = lc as i64 - rc as i64;
                    if delta != 0 {
                        diff.errors
                            .push((minute, service.clone(), fingerprint, delta));
                    }
                }
            }
        }
        diff
    }
}

impl CellDiff {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.errors.is_empty()
    }

    /// The sum of the count differences per level ([`Level::ALL`] order).
    pub fn level_totals(&self) -> [i64; LEVELS] {
        let mut totals = [0; LEVELS];
        for (_, _, level, delta) in &self.counts {
            totals[*level as usize] += delta;
        }
        totals
    }

    /// The minutes any cell of this diff falls in, ascending.
    pub fn minutes(&self) -> Vec<i64> {
        let mut minutes: Vec<i64> = self
            .counts
            .iter()
            .map(|cell| cell.0)
            .chain(self.errors.iter().map(|cell| cell.0))
            .collect();
        minutes.sort_unstable();
        minutes.dedup();
        minutes
    }
}

/// The sorted union of two sorted key sets, cloned.
fn union<'a, K: Ord + Clone + 'a>(
    left: impl Iterator<Item = &'a K>,
    right: impl Iterator<Item = &'a K>,
) -> Vec<K> {
    let mut keys: Vec<K> = left.chain(right).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn minute_of_floors_before_and_after_1970() {
        let t = Utc.with_ymd_and_hms(2026, 3, 10, 15, 4, 59).unwrap();
        assert_eq!(minute_of(t), t.timestamp() - 59);
        let before = Utc.timestamp_opt(-1, 0).unwrap();
        assert_eq!(minute_of(before), -60);
    }

    #[test]
    fn diff_reports_every_differing_cell_with_its_sign() {
        let mut store = Cells::default();
        store.add_count(60, "api", Level::Info, 5);
        store.add_count(60, "api", Level::Error, 2);
        store.add_error(60, "api", Fingerprint(7), 2);
        store.add_count(120, "web", Level::Warn, 1);
        let mut live = Cells::default();
        live.add_count(60, "api", Level::Info, 5);
        live.add_count(60, "api", Level::Error, 1);
        live.add_error(60, "api", Fingerprint(7), 1);
        live.add_count(180, "db", Level::Debug, 3);

        let diff = store.diff(&live);
        assert_eq!(
            diff.counts,
            vec![
                (60, "api".to_owned(), Level::Error, 1),
                (120, "web".to_owned(), Level::Warn, 1),
                (180, "db".to_owned(), Level::Debug, -3),
            ]
        );
        assert_eq!(diff.errors, vec![(60, "api".to_owned(), Fingerprint(7), 1)]);
        assert_eq!(diff.minutes(), vec![60, 120, 180]);
        let totals = diff.level_totals();
        assert_eq!(totals[Level::Error as usize], 1);
        assert_eq!(totals[Level::Debug as usize], -3);
        assert!(store.diff(&store).is_empty());
        assert_eq!(store.events(), 8);
    }

    #[test]
    fn only_service_keeps_that_service() {
        let mut cells = Cells::default();
        cells.add_count(60, "api", Level::Info, 5);
        cells.add_count(60, "web", Level::Info, 2);
        cells.add_error(120, "web", Fingerprint(1), 1);
        let api = cells.only_service("api");
        assert_eq!(api.events(), 5);
        assert!(api.errors.is_empty());
    }
}
