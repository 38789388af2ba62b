//! Counting stored rows the way the aggregates count events: [`CellQuery`] says which rows
//! (event-time range, service, and a [`Cut`] per Kafka partition), [`CellCount`] holds the
//! [`Cells`] and the rows no cut covered. Both backends run one grouped statement per call and
//! fold its rows here ([`Tally`]), so they build the answer the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use logpipe_model::{Cells, Cut, Fingerprint, Level};

use crate::error::StoreError;

/// Which stored rows [`LogStore::count_cells`](crate::LogStore::count_cells) counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellQuery {
    /// First event time counted (inclusive).
    pub from: DateTime<Utc>,
    /// End of the event-time range (exclusive).
    pub until: DateTime<Utc>,
    /// Only this service's rows, if given.
    pub service: Option<String>,
    /// The rows that count, per (topic, partition): offsets at or below `through`. A partition
    /// named twice must have the same `through` both times.
    pub cuts: Vec<Cut>,
}

/// What [`LogStore::count_cells`](crate::LogStore::count_cells) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellCount {
    /// The rows counted, per minute, service and level, and per error fingerprint (ERROR and
    /// FATAL), with one stored template of each fingerprint (the smallest).
    pub cells: Cells,
    /// How many rows were counted: the sum of every count in `cells`.
    pub rows: u64,
    /// (topic, partition, rows) for each partition with rows in the range (and service) but no
    /// cut in the query, in (topic, partition) order. These rows are not in `cells`: nothing
    /// says which of them the aggregates have applied. Rows of a cut partition above its cut
    /// are neither counted nor reported here.
    pub uncut: Vec<(String, i32, u64)>,
}

/// The cuts of `query`, one per partition. Identical repeats are dropped; two different cuts
/// for one partition are refused, as either choice would count rows the caller did not mean.
pub(crate) fn distinct_cuts(cuts: &[Cut]) -> Result<Vec<&Cut>, StoreError> {
    let mut by_partition: BTreeMap<(&str, i32), &Cut> = BTreeMap::new();
    for cut in cuts {
        let key = (cut.topic.as_str(), cut.partition);
        match by_partition.get(&key) {
            Some(seen) if seen.through != cut.through => {
                return Err(StoreError::InvalidQuery(format!(
                    "two cuts for {} partition {}: through {} and through {}",
                    cut.topic, cut.partition, seen.through, cut.through
                )));
            }
            Some(_) => {}
            None => {
                by_partition.insert(key, cut);
            }
        }
    }
    Ok(by_partition.into_values().collect())
}

/// The rows of a counting statement folded into a [`CellCount`].
#[derive(Debug, Default)]
pub(crate) struct Tally {
    count: CellCount,
    uncut: BTreeMap<(String, i32), u64>,
}

/// One group of counted rows, as the statements return it.
pub(crate) struct Counted {
    pub minute: i64,
    pub service: String,
    /// The level as stored (upper-case name).
    pub level: String,
    /// Set for ERROR and FATAL groups only.
    pub fingerprint: Option<i64>,
    /// Set for ERROR and FATAL groups only.
    pub template: Option<String>,
    pub events: i64,
}

impl Tally {
    /// Adds a group of counted rows.
    pub fn counted(&mut self, group: Counted) -> Result<(), StoreError> {
        let level: Level = group.level.parse().map_err(|_| {
            StoreError::Schema(format!(
                "counting stored events: `{}` is not a log level",
                group.level
            ))
        })?;
        let events = group.events.max(0) as u64;
        // ERROR and FATAL groups carry a fingerprint, the others none: anything else is a
        // statement bug, refused before anything is added.
        let fingerprint = match (level >= Level::Error, group.fingerprint) {
            (true, Some(fingerprint)) => Some(Fingerprint::from_i64(fingerprint)),
            (false, _) => None,
            (true, None) => {
                return Err(StoreError::Schema(
                    "counting stored events: an error group has no fingerprint".into(),
                ))
            }
        };
        let cells = &mut self.count.cells;
        cells.add_count(group.minute, &group.service, level, events);
        if let Some(fingerprint) = fingerprint {
            cells.add_error(group.minute, &group.service, fingerprint, events);
            if let Some(template) = group.template {
                // The smallest across groups too, so the answer does not depend on row order.
                match cells.templates.get_mut(&fingerprint) {
                    Some(kept) if *kept <= template => {}
                    Some(kept) => *kept = template,
                    None => {
                        cells.templates.insert(fingerprint, template);
                    }
                }
            }
        }
        self.count.rows += events;
        Ok(())
    }

    /// Adds rows of a partition that has no cut.
    pub fn uncut(&mut self, topic: String, partition: i32, events: i64) {
        *self.uncut.entry((topic, partition)).or_default() += events.max(0) as u64;
    }

    pub fn finish(mut self) -> CellCount {
        self.count.uncut = self
            .uncut
            .into_iter()
            .map(|((topic, partition), events)| (topic, partition, events))
            .collect();
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(topic: &str, partition: i32, through: i64) -> Cut {
        Cut {
            topic: topic.to_owned(),
            partition,
            through,
        }
    }

    #[test]
    fn repeated_cuts_are_merged_and_conflicting_ones_refused() {
        let cuts = [cut("b", 0, 5), cut("a", 1, 7), cut("b", 0, 5)];
        let distinct = distinct_cuts(&cuts).unwrap();
        assert_eq!(distinct, [&cuts[1], &cuts[0]]);
        let conflicting = [cut("a", 1, 7), cut("a", 1, 8)];
        assert!(matches!(
            distinct_cuts(&conflicting),
            Err(StoreError::InvalidQuery(_))
        ));
    }

    #[test]
    fn groups_fold_into_cells() {
        let mut tally = Tally::default();
        let group = |level: &str, fingerprint: Option<i64>, template: Option<&str>| Counted {
            minute: 60,
            service: "api".into(),
            level: level.into(),
            fingerprint,
            template: template.map(str::to_owned),
            events: 2,
        };
        tally.counted(group("INFO", None, None)).unwrap();
        tally.counted(group("ERROR", Some(-1), Some("b"))).unwrap();
        tally.counted(group("FATAL", Some(-1), Some("a"))).unwrap();
        tally.uncut("t".into(), 3, 4);
        tally.uncut("t".into(), 3, 1);
        assert!(tally.counted(group("ERROR", None, None)).is_err());
        assert!(tally.counted(group("LOUD", None, None)).is_err());
        let count = tally.finish();
        assert_eq!(count.rows, 6);
        assert_eq!(count.cells.events(), 6);
        let fingerprint = Fingerprint::from_i64(-1);
        assert_eq!(count.cells.errors[&60]["api"][&fingerprint], 4);
        assert_eq!(count.cells.templates[&fingerprint], "a");
        assert_eq!(count.uncut, [("t".to_owned(), 3, 5)]);
    }
}
