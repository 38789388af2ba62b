//! How far a scan has read one DLQ partition, what it makes of each record the consumer returns,
//! and when the whole scan is over. Pure bookkeeping: the Kafka calls are in the parent module.
//!
//! On Apache Kafka the high watermark captured at the start is exact, a fetch may start at any
//! offset and every record is served once, so a partition is done when it reaches that watermark.
//! The other rules here are guards against brokers that serve a topic differently; each says
//! which behaviour it guards against. On Apache Kafka they only cost the idle wait at the end
//! ([`SCAN_IDLE_END`]) and, rarely, one re-read when a transaction marker sits at a resumed start.
//! Records a broker does not serve at all are left for a later run (nothing is committed past
//! them).

use std::time::Duration;

use serde::Serialize;

/// A scan ends once every partition reached its start-time high watermark *and* no record has
/// arrived for this long.
///
/// Guards against brokers whose ListOffsets(latest) reports a high watermark below the real end
/// (one reporting the last batch's base offset + 1): the wait lets the records past it arrive, and
/// `PartitionScan::admit` takes those that were written before the scan started. On Apache
/// Kafka the watermark alone is exact and this only adds a short wait.
pub const SCAN_IDLE_END: Duration = Duration::from_millis(1500);

/// How far a scan read one DLQ partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionProgress {
    pub partition: i32,
    /// Offset the scan started at.
    pub start_offset: i64,
    /// High watermark reported when the scan started.
    pub high_watermark_at_start: i64,
    /// One past the highest offset read (the start offset when nothing was read).
    pub end_offset: i64,
    /// Records read (repeats the broker served twice are not counted).
    pub records: u64,
}

/// What to do with a record the consumer returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Part of the scan: hand it to the caller.
    Take,
    /// At or below an offset already read: drop it.
    Repeat,
    /// Written after the scan started: this partition is done (pause it), drop the record.
    Beyond,
}

/// One partition of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartitionScan {
    pub(super) low_watermark: i64,
    pub(super) start: i64,
    pub(super) high_watermark: i64,
    /// One past the highest offset seen; records below it are repeats and are dropped.
    pub(super) next: i64,
    pub(super) records: u64,
    /// A record written after the scan started arrived: the partition is read to its end as of
    /// the start.
    pub(super) beyond: bool,
    /// The first record after a resumed start came with a gap and the partition was re-read from
    /// its low watermark: the offset of that record, until it arrives again.
    pub(super) rewound_for: Option<i64>,
}

impl PartitionScan {
    /// A partition read from `start` up to `high_watermark`, its watermarks as of the start.
    pub(super) fn new(low_watermark: i64, start: i64, high_watermark: i64) -> PartitionScan {
        PartitionScan {
            low_watermark,
            start,
            high_watermark,
            next: start,
            records: 0,
            beyond: false,
            rewound_for: None,
        }
    }

    /// Records the scan expects from this partition, from the watermarks (exact on Apache Kafka;
    /// a lower bound on a broker that under-reports the high watermark).
    pub(super) fn expected(&self) -> u64 {
        (self.high_watermark - self.start).max(0) as u64
    }

    pub(super) fn progress(&self, partition: i32) -> PartitionProgress {
        PartitionProgress {
            partition,
            start_offset: self.start,
            high_watermark_at_start: self.high_watermark,
            end_offset: self.next,
            records: self.records,
        }
    }

    /// Read up to the start-time high watermark, and not waiting for a re-read to come back.
    pub(super) fn reached_watermark(&self) -> bool {
        self.next >= self.high_watermark && self.rewound_for.is_none()
    }

    /// Takes the consumer position as read up to there: it moves past records the application
    /// never sees (transaction markers, aborted records), which would otherwise keep a partition
    /// below its high watermark forever.
    pub(super) fn catch_up(&mut self, position: i64) {
        // Not while re-reading after a gap: the position is past records still to come.
        if self.rewound_for.is_none() {
            self.next = self.next.max(position);
        }
    }

    /// Whether the record at `offset` is not a repeat, is the first after a resumed start (a
    /// committed offset above the low watermark) and lies past that start.
    ///
    /// Guards against brokers that answer a fetch starting inside a multi-record batch with the
    /// *next* batch, skipping the rest of that one: the caller then re-reads the partition from
    /// its low watermark (fetches from there are batch-aligned) and calls
    /// [`PartitionScan::rewinding`]; what comes before the start is dropped as repeats. On Apache
    /// Kafka a gap here is rare (a transaction marker) and costs one re-read.
    pub(super) fn gap_after_resumed_start(&self, offset: i64) -> bool {
        offset >= self.next
            && self.records == 0
            && self.rewound_for.is_none()
            && self.start > self.low_watermark
            && offset > self.start
    }

    /// The partition is being re-read because the record at `offset` came after a gap.
    pub(super) fn rewinding(&mut self, offset: i64) {
        self.rewound_for = Some(offset);
    }

    /// Decides about the record at `offset`; `written_after_start` says its timestamp is later
    /// than the scan's start.
    ///
    /// Dropping repeats guards against brokers that serve a record twice (and drops the records
    /// before the start while re-reading after a gap). A record past the start-time watermark is
    /// still taken when it was written before the scan started: it guards against brokers that
    /// under-report the watermark (see [`SCAN_IDLE_END`]).
    pub(super) fn admit(&mut self, offset: i64, written_after_start: bool) -> Admit {
        if offset < self.next {
            return Admit::Repeat;
        }
        if self.rewound_for.is_some_and(|gap| offset >= gap) {
            self.rewound_for = None;
        }
        if offset >= self.high_watermark && written_after_start {
            self.beyond = true;
            return Admit::Beyond;
        }
        self.next = offset + 1;
        self.records += 1;
        Admit::Take
    }
}

/// Every partition reached its start-time watermark.
pub(super) fn all_reached<'a>(mut parts: impl Iterator<Item = &'a PartitionScan>) -> bool {
    parts.all(PartitionScan::reached_watermark)
}

/// The scan is over: every partition reached its watermark, and either each has seen a record
/// written after the start or nothing arrived for [`SCAN_IDLE_END`] of waiting (`idle`).
pub(super) fn scan_over<'a>(
    parts: impl Iterator<Item = &'a PartitionScan> + Clone,
    idle: Duration,
) -> bool {
    all_reached(parts.clone()) && (parts.into_iter().all(|p| p.beyond) || idle >= SCAN_IDLE_END)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_takes_records_to_its_watermark_and_drops_repeats() {
        let mut p = PartitionScan::new(0, 0, 3);
        assert_eq!(p.expected(), 3);
        assert_eq!(p.admit(0, false), Admit::Take);
        assert_eq!(p.admit(1, false), Admit::Take);
        assert_eq!(p.admit(1, false), Admit::Repeat);
        assert!(!p.reached_watermark());
        assert_eq!(p.admit(2, false), Admit::Take);
        assert!(p.reached_watermark());
        assert_eq!(
            p.progress(4),
            PartitionProgress {
                partition: 4,
                start_offset: 0,
                high_watermark_at_start: 3,
                end_offset: 3,
                records: 3,
            }
        );
    }

    #[test]
    fn past_the_watermark_only_records_older_than_the_scan_are_taken() {
        let mut p = PartitionScan::new(0, 0, 1);
        assert_eq!(p.admit(0, false), Admit::Take);
        // The broker under-reported the watermark: an old record past it still counts.
        assert_eq!(p.admit(1, false), Admit::Take);
        assert!(!p.beyond);
        assert_eq!(p.admit(2, true), Admit::Beyond);
        assert!(p.beyond);
        assert_eq!(p.next, 2);
    }

    #[test]
    fn a_gap_after_a_resumed_start_rewinds_once_and_drops_what_precedes_the_start() {
        let mut p = PartitionScan::new(0, 5, 10);
        assert!(!p.gap_after_resumed_start(5), "no gap at the start itself");
        assert!(p.gap_after_resumed_start(8));
        p.rewinding(8);
        assert!(!p.gap_after_resumed_start(8), "only once");
        let mut caught_up = PartitionScan::new(0, 5, 10);
        caught_up.catch_up(7);
        assert!(!caught_up.gap_after_resumed_start(6), "a repeat is no gap");
        // The re-read from the low watermark serves 0..5 again: repeats.
        assert_eq!(p.admit(4, false), Admit::Repeat);
        assert_eq!(p.admit(5, false), Admit::Take);
        assert_eq!(p.rewound_for, Some(8));
        assert_eq!(p.admit(8, false), Admit::Take);
        assert_eq!(p.rewound_for, None);
        // A start at the low watermark is not a resumed start.
        assert!(!PartitionScan::new(0, 0, 10).gap_after_resumed_start(3));
    }

    #[test]
    fn positions_catch_up_except_while_re_reading() {
        let mut p = PartitionScan::new(0, 0, 4);
        p.catch_up(4);
        assert!(p.reached_watermark());
        let mut p = PartitionScan::new(0, 2, 4);
        p.rewinding(3);
        p.catch_up(4);
        assert_eq!(p.next, 2);
        assert!(!p.reached_watermark());
    }

    #[test]
    fn the_scan_ends_at_the_watermarks_after_the_idle_wait_or_beyond_records() {
        let done = PartitionScan {
            next: 3,
            ..PartitionScan::new(0, 0, 3)
        };
        let behind = PartitionScan::new(0, 0, 3);
        assert!(!scan_over([&done, &behind].into_iter(), SCAN_IDLE_END));
        assert!(!scan_over([&done].into_iter(), Duration::ZERO));
        assert!(scan_over([&done].into_iter(), SCAN_IDLE_END));
        let beyond = PartitionScan {
            beyond: true,
            ..done.clone()
        };
        assert!(scan_over([&beyond].into_iter(), Duration::ZERO));
        assert!(!scan_over([&beyond, &done].into_iter(), Duration::ZERO));
    }
}
