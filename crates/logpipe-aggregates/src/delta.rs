//! [`BatchDelta`]: one batch's increments, pre-aggregated in memory, together with the offset
//! range of each partition it covers. Pure data; both backends read its fields directly.

use std::collections::BTreeMap;

use logpipe_model::{EnrichedLog, Fingerprint, Level};

/// Number of levels and the minute of an event time: the model's, so the log store and the
/// aggregates count alike.
pub(crate) use logpipe_model::{minute_of, LEVELS};

/// A level's slot in a per-level array: its position in [`Level::ALL`] (least severe first).
pub(crate) fn level_index(level: Level) -> usize {
    level as usize
}

/// Offsets (after, through] of one partition. `after` = -1 means "nothing applied yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetRange {
    /// The watermark the consumer read; the store must still hold exactly this.
    pub after: i64,
    /// The watermark after this delta is applied.
    pub through: i64,
}

/// One batch's increments, pre-aggregated in memory, plus the offset range of every partition
/// it covers. Build it with [`cover`](BatchDelta::cover) then [`add`](BatchDelta::add), apply it
/// once with [`Aggregates::apply`](crate::Aggregates::apply).
///
/// Deterministic (ordered maps), so the Redis script receives its arguments in a stable order,
/// which makes a captured `MONITOR` trace readable and comparable.
#[derive(Debug, Default, Clone)]
pub struct BatchDelta {
    /// topic → partition → covered range. Nested rather than keyed by `(String, i32)` so `add`
    /// can look a record's partition up by `&str` without allocating.
    pub(crate) ranges: BTreeMap<String, BTreeMap<i32, OffsetRange>>,
    /// Records counted by `add`.
    pub(crate) records: u64,
    /// minute (epoch seconds) → service → count per level (see [`level_index`]).
    pub(crate) counts: BTreeMap<i64, BTreeMap<String, [u64; LEVELS]>>,
    /// minute → service → fingerprint → count, for records at ERROR or above only: that is all
    /// the top-errors list ranks.
    pub(crate) errors: BTreeMap<i64, BTreeMap<String, BTreeMap<Fingerprint, u64>>>,
    /// Template of every fingerprint in `errors` (the first one seen in the batch).
    pub(crate) templates: BTreeMap<Fingerprint, String>,
    /// Reconciliation requests written with the apply (field → value in `{p}:rb:requests`).
    pub(crate) requests: BTreeMap<String, String>,
}

/// What one record adds to the aggregates, without the rest of the log: kept by the consumer
/// for a record that is stored but not yet countable (its partition's commit point is behind it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    minute: i64,
    service: String,
    level: Level,
    fingerprint: Fingerprint,
    /// Only for ERROR and above (the only records whose template is shown).
    template: Option<String>,
}

impl Contribution {
    pub fn of(log: &EnrichedLog) -> Contribution {
        Contribution {
            minute: minute_of(log.event.timestamp),
            service: log.event.service.as_str().to_owned(),
            level: log.event.level,
            fingerprint: log.fingerprint,
            template: (log.event.level >= Level::Error).then(|| log.template.clone()),
        }
    }
}

impl BatchDelta {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares that this delta covers offsets (after, through] of `topic`/`partition`. `after`
    /// is the watermark the consumer read (-1 = nothing applied yet); `through` is the highest
    /// offset the batch consumed for the partition, counted or not (records skipped as
    /// undecodable still move the watermark). `through == after` is allowed and makes the apply
    /// a pure fence: it checks the watermark and changes nothing.
    ///
    /// Calling it again for the same partition extends the range, and the ranges must chain:
    /// the new `after` must be the previous `through`.
    ///
    /// # Panics
    /// If `after < -1`, `through < after`, or a second range does not chain onto the first. These
    /// are bugs in the caller that would break the no-double-count promise, so they panic in
    /// release builds too.
    pub fn cover(&mut self, topic: &str, partition: i32, after: i64, through: i64) {
        assert!(
            after >= -1 && through >= after,
            "BatchDelta::cover({topic}/{partition}): need -1 <= after <= through, got ({after}, {through}]"
        );
        let partitions = match self.ranges.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.ranges.entry(topic.to_owned()).or_default(),
        };
        match partitions.get_mut(&partition) {
            Some(range) => {
                assert!(
                    range.through == after,
                    "BatchDelta::cover({topic}/{partition}): ({after}, {through}] does not chain onto the covered ({}, {}]",
                    range.after,
                    range.through
                );
                range.through = through;
            }
            None => {
                partitions.insert(partition, OffsetRange { after, through });
            }
        }
    }

    /// Counts one record. It must lie inside a range declared with [`cover`](Self::cover) (and be
    /// added once): only covered records are protected against replays. A record outside every
    /// covered range is a caller bug: it panics in debug builds; release builds log an error and
    /// leave the record out (an undercount, never a double count).
    pub fn add(&mut self, log: &EnrichedLog) {
        let c = &log.coordinates;
        self.add_parts(
            &c.topic,
            c.partition,
            c.offset,
            minute_of(log.event.timestamp),
            log.event.service.as_str(),
            log.event.level,
            log.fingerprint,
            &log.template,
        );
    }

    /// [`add`](Self::add) for a record kept as a [`Contribution`] (its log no longer in memory).
    pub fn add_contribution(&mut self, topic: &str, partition: i32, offset: i64, c: &Contribution) {
        self.add_parts(
            topic,
            partition,
            offset,
            c.minute,
            &c.service,
            c.level,
            c.fingerprint,
            c.template.as_deref().unwrap_or_default(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn add_parts(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        minute: i64,
        service: &str,
        level: Level,
        fingerprint: Fingerprint,
        template: &str,
    ) {
        let covered = self
            .ranges
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .is_some_and(|range| range.after < offset && offset <= range.through);
        if !covered {
            debug_assert!(
                false,
                "BatchDelta::add: {topic}/{partition}@{offset} is outside every covered range"
            );
            tracing::error!(
                %topic,
                partition,
                offset,
                "BatchDelta::add: record outside every covered range, not counted (consumer bug)"
            );
            return;
        }

        let by_service = self.counts.entry(minute).or_default();
        let slots = match by_service.get_mut(service) {
            Some(slots) => slots,
            None => by_service.entry(service.to_owned()).or_default(),
        };
        slots[level_index(level)] += 1;

        if level >= Level::Error {
            let by_service = self.errors.entry(minute).or_default();
            let by_fingerprint = match by_service.get_mut(service) {
                Some(by_fingerprint) => by_fingerprint,
                None => by_service.entry(service.to_owned()).or_default(),
            };
            *by_fingerprint.entry(fingerprint).or_default() += 1;
            self.templates
                .entry(fingerprint)
                .or_insert_with(|| template.to_owned());
        }
        self.records += 1;
    }

    /// Asks for a rebuild, atomically with this delta's apply: `field` → `value` is written to
    /// the reconciliation requests ([`Aggregates::rebuild_requests`]) only if the apply is
    /// applied, so a consumer that restores a lost watermark records why in the same step. The
    /// same field again replaces the value. Makes the delta non-empty on its own.
    ///
    /// [`Aggregates::rebuild_requests`]: crate::Aggregates::rebuild_requests
    pub fn request_rebuild(&mut self, field: String, value: String) {
        self.requests.insert(field, value);
    }

    /// True when no partition is covered and no rebuild is requested: applying it is a no-op.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.requests.is_empty()
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The covered ranges as (topic, partition, after, through), ordered by topic and partition.
    pub fn ranges(&self) -> impl Iterator<Item = (&str, i32, i64, i64)> + '_ {
        self.ranges.iter().flat_map(|(topic, partitions)| {
            partitions.iter().map(move |(&partition, range)| {
                (topic.as_str(), partition, range.after, range.through)
            })
        })
    }

    /// Records per level over the whole delta, for the all-time totals.
    pub(crate) fn level_totals(&self) -> [u64; LEVELS] {
        let mut totals = [0; LEVELS];
        for slots in self.counts.values().flat_map(BTreeMap::values) {
            for (total, count) in totals.iter_mut().zip(slots) {
                *total += count;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::support::record;

    #[test]
    fn level_index_matches_level_all() {
        for (index, level) in Level::ALL.into_iter().enumerate() {
            assert_eq!(level_index(level), index);
        }
    }

    #[test]
    fn minute_of_rounds_down_before_and_after_1970() {
        use chrono::DateTime;
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap();
        assert_eq!(minute_of(at(119)), 60);
        assert_eq!(minute_of(at(120)), 120);
        assert_eq!(minute_of(at(-1)), -60);
    }

    #[test]
    fn cover_chains_ranges() {
        let mut delta = BatchDelta::new();
        assert!(delta.is_empty());
        delta.cover("t", 0, -1, 9);
        delta.cover("t", 0, 9, 19);
        delta.cover("t", 1, 5, 5);
        assert!(!delta.is_empty());
        let ranges: Vec<_> = delta.ranges().collect();
        assert_eq!(ranges, vec![("t", 0, -1, 19), ("t", 1, 5, 5)]);
    }

    #[test]
    #[should_panic(expected = "does not chain")]
    fn cover_rejects_a_gap() {
        let mut delta = BatchDelta::new();
        delta.cover("t", 0, -1, 9);
        delta.cover("t", 0, 10, 19);
    }

    #[test]
    #[should_panic(expected = "need -1 <= after <= through")]
    fn cover_rejects_a_backwards_range() {
        BatchDelta::new().cover("t", 0, 10, 9);
    }

    #[test]
    fn add_aggregates_by_minute_service_level_and_error_fingerprint() {
        let mut delta = BatchDelta::new();
        delta.cover("t", 0, -1, 3);
        delta.add(&record("a", Level::Info, 0, 7, "t", 0, 0));
        delta.add(&record("a", Level::Info, 0, 7, "t", 0, 1));
        delta.add(&record("a", Level::Error, 0, 7, "t", 0, 2));
        delta.add(&record("b", Level::Fatal, 1, 8, "t", 0, 3));
        assert_eq!(delta.records(), 4);
        let totals = delta.level_totals();
        assert_eq!(totals[level_index(Level::Info)], 2);
        assert_eq!(totals[level_index(Level::Error)], 1);
        assert_eq!(totals[level_index(Level::Fatal)], 1);
        // Only ERROR and above are ranked, and only their templates are kept.
        let error_counts: u64 = delta
            .errors
            .values()
            .flat_map(BTreeMap::values)
            .flat_map(BTreeMap::values)
            .sum();
        assert_eq!(error_counts, 2);
        assert_eq!(delta.templates.len(), 2);
        assert_eq!(delta.counts.len(), 2, "two minutes");
    }

    #[test]
    fn a_contribution_counts_exactly_like_its_log() {
        let logs = [
            record("a", Level::Info, 0, 7, "t", 0, 0),
            record("a", Level::Error, 0, 7, "t", 0, 1),
            record("b", Level::Fatal, 1, 8, "t", 0, 2),
        ];
        let (mut direct, mut kept) = (BatchDelta::new(), BatchDelta::new());
        direct.cover("t", 0, -1, 2);
        kept.cover("t", 0, -1, 2);
        for log in &logs {
            direct.add(log);
            let c = &log.coordinates;
            kept.add_contribution(&c.topic, c.partition, c.offset, &Contribution::of(log));
        }
        assert_eq!(direct.counts, kept.counts);
        assert_eq!(direct.errors, kept.errors);
        assert_eq!(direct.templates, kept.templates);
        assert_eq!(direct.records(), kept.records());
        assert!(
            Contribution::of(&logs[0]).template.is_none(),
            "below ERROR no template is kept"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "outside every covered range")]
    fn add_outside_the_covered_range_panics_in_debug() {
        let mut delta = BatchDelta::new();
        delta.cover("t", 0, 4, 9);
        delta.add(&record("a", Level::Info, 0, 1, "t", 0, 4));
    }
}
