//! Which offset each partition may commit. A record is *tracked* when it enters the pipeline and
//! *done* when it is durable in every store; the commit point of a partition is the lowest offset
//! still in flight, or one past the highest done. So the committed offset never passes an
//! unfinished record, even when records finish out of order (other keys, retries).

use std::collections::BTreeSet;
use std::sync::Arc;

/// A topic-partition.
pub type Tp = (Arc<str>, i32);

/// A map keyed by topic-partition (or by one and a key hash). Looked up several times per record
/// on the hot path: foldhash instead of the default SipHash, which cost about 300 instructions a
/// lookup. Its keys are the consumer's own partitions, not input an attacker chooses, so SipHash's
/// resistance to collision flooding buys nothing here.
pub type TpMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Progress of one partition.
#[derive(Debug, Default, Clone)]
struct Progress {
    in_flight: BTreeSet<i64>,
    /// Highest offset ever tracked, or -1.
    highest: i64,
    /// Last offset handed out for commit (the "next offset to read" convention), or -1.
    committed: i64,
}

/// Commit points of every partition a member owns.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: TpMap<Tp, Progress>,
}

impl OffsetTracker {
    /// A record entered the pipeline.
    pub fn track(&mut self, tp: &Tp, offset: i64) {
        let p = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| Progress {
                highest: -1,
                committed: -1,
                ..Default::default()
            });
        p.in_flight.insert(offset);
        p.highest = p.highest.max(offset);
    }

    /// A record is durable (or was deliberately skipped).
    pub fn done(&mut self, tp: &Tp, offset: i64) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.in_flight.remove(&offset);
        }
    }

    /// The offset to commit for `tp` (next to read), if any record was tracked.
    pub fn commit_point(&self, tp: &Tp) -> Option<i64> {
        let p = self.partitions.get(tp)?;
        if p.highest < 0 {
            return None;
        }
        Some(p.in_flight.first().copied().unwrap_or(p.highest + 1))
    }

    /// Commit points that moved since the last call, marking them handed out.
    pub fn take_commits(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, p) in self.partitions.iter_mut() {
            if p.highest < 0 {
                continue;
            }
            let point = p.in_flight.first().copied().unwrap_or(p.highest + 1);
            if point > p.committed {
                p.committed = point;
                out.push((tp.clone(), point));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Marks commit points from [`take_commits`](Self::take_commits) as not sent after all, so
    /// the next call hands them out again.
    pub fn unsend(&mut self, points: &[(Tp, i64)]) {
        for (tp, point) in points {
            if let Some(p) = self.partitions.get_mut(tp) {
                if p.committed == *point {
                    p.committed = -1;
                }
            }
        }
    }

    /// Forgets partitions (revoked), returning their final commit points.
    pub fn release(&mut self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        tps.iter()
            .filter_map(|tp| {
                let point = self.commit_point(tp);
                self.partitions.remove(tp);
                point.map(|o| (tp.clone(), o))
            })
            .collect()
    }

    /// Records tracked and not yet done, over every partition.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }

    /// Every tracked partition.
    pub fn partitions(&self) -> Vec<Tp> {
        let mut out: Vec<Tp> = self.partitions.keys().cloned().collect();
        out.sort();
        out
    }

    /// Every partition's commit point (shutdown).
    pub fn all(&self) -> Vec<(Tp, i64)> {
        let mut out: Vec<_> = self
            .partitions
            .keys()
            .filter_map(|tp| self.commit_point(tp).map(|o| (tp.clone(), o)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        (Arc::from("t"), p)
    }

    #[test]
    fn commit_point_never_passes_an_unfinished_record() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.track(&tp(0), o);
        }
        assert_eq!(t.commit_point(&tp(0)), Some(10));
        t.done(&tp(0), 11);
        t.done(&tp(0), 12);
        assert_eq!(t.commit_point(&tp(0)), Some(10), "10 is still in flight");
        t.done(&tp(0), 10);
        assert_eq!(t.commit_point(&tp(0)), Some(13));
        t.done(&tp(0), 13);
        t.done(&tp(0), 14);
        assert_eq!(t.commit_point(&tp(0)), Some(15));
    }

    #[test]
    fn take_commits_reports_only_moves() {
        let mut t = OffsetTracker::default();
        t.track(&tp(0), 0);
        t.track(&tp(1), 5);
        assert_eq!(t.take_commits(), vec![(tp(0), 0), (tp(1), 5)]);
        assert!(t.take_commits().is_empty());
        t.done(&tp(1), 5);
        assert_eq!(t.take_commits(), vec![(tp(1), 6)]);
    }

    #[test]
    fn unsent_points_are_handed_out_again() {
        let mut t = OffsetTracker::default();
        t.track(&tp(0), 4);
        t.done(&tp(0), 4);
        let points = t.take_commits();
        assert_eq!(points, vec![(tp(0), 5)]);
        assert!(t.take_commits().is_empty());
        t.unsend(&points);
        assert_eq!(t.take_commits(), vec![(tp(0), 5)]);
    }

    #[test]
    fn release_returns_final_points_and_forgets() {
        let mut t = OffsetTracker::default();
        t.track(&tp(0), 7);
        t.done(&tp(0), 7);
        t.track(&tp(1), 3);
        assert_eq!(
            t.release(&[tp(0), tp(1), tp(2)]),
            vec![(tp(0), 8), (tp(1), 3)]
        );
        assert!(t.all().is_empty());
        assert_eq!(t.commit_point(&tp(0)), None);
    }
}
