//! `logpipe dlq show`: the most recent DLQ records matching a filter. [`Latest`] keeps the `limit`
//! most recent (pure); [`show`] feeds it the records of a [`DlqScan`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

use super::filter::Filter;
use super::record::{DlqRecord, Unreadable};
use super::scan::{require_brokers, DlqScan};
use crate::config::Config;

/// What `logpipe dlq show` found.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Matching records kept (the most recent `limit` by last failure), oldest first.
    pub records: Vec<DlqRecord>,
    /// Matching records in the whole topic.
    pub matched: u64,
    /// Records read.
    pub scanned: u64,
    pub unreadable: Vec<Unreadable>,
}

/// Reads the whole DLQ topic (as of now) and keeps the `limit` most recent records matching
/// `filter` (0 = all).
pub async fn show(config: &Config, filter: &Filter, limit: usize) -> anyhow::Result<Shown> {
    let brokers = require_brokers(config)?;
    let mut scan = DlqScan::open(config, &brokers, None, true).await?;
    let mut kept = Latest::new(limit);
    let (mut matched, mut scanned) = (0, 0);
    let mut unreadable = Vec::new();
    while let Some(message) = scan.next().await? {
        scanned += 1;
        match DlqRecord::parse(&message) {
            Ok(record) if filter.matches(&record.context) => {
                matched += 1;
                kept.push(record);
            }
            Ok(_) => {}
            Err(bad) => unreadable.push(bad),
        }
    }
    Ok(Shown {
        records: kept.into_sorted(),
        matched,
        scanned,
        unreadable,
    })
}

/// The `limit` most recent records by last failure (all when `limit` is 0), ties broken by DLQ
/// position (the later one is the more recent).
pub(super) struct Latest {
    limit: usize,
    kept: BinaryHeap<Newest>,
}

impl Latest {
    pub(super) fn new(limit: usize) -> Latest {
        Latest {
            limit,
            kept: BinaryHeap::new(),
        }
    }

    pub(super) fn push(&mut self, record: DlqRecord) {
        self.kept.push(Newest(record));
        if self.limit > 0 && self.kept.len() > self.limit {
            self.kept.pop();
        }
    }

    /// The records kept, oldest first.
    pub(super) fn into_sorted(self) -> Vec<DlqRecord> {
        let mut records: Vec<DlqRecord> = self.kept.into_iter().map(|n| n.0).collect();
        records.sort_by_key(|r| (r.context.last_failure, r.dlq_partition, r.dlq_offset));
        records
    }
}

/// A heap entry ordering records so the *oldest* is on top (evicted first).
struct Newest(DlqRecord);

impl Newest {
    fn order_key(&self) -> (Reverse<DateTime<Utc>>, Reverse<(i32, i64)>) {
        (
            Reverse(self.0.context.last_failure),
            Reverse((self.0.dlq_partition, self.0.dlq_offset)),
        )
    }
}
impl PartialEq for Newest {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}
impl Eq for Newest {}
impl PartialOrd for Newest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Newest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::test_support::context;

    fn record(offset: i64, secs: i64) -> DlqRecord {
        let mut context = context();
        context.last_failure += chrono::Duration::seconds(secs);
        DlqRecord {
            dlq_partition: 0,
            dlq_offset: offset,
            dlq_timestamp_ms: None,
            context,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn offsets(latest: Latest) -> Vec<i64> {
        latest.into_sorted().iter().map(|r| r.dlq_offset).collect()
    }

    #[test]
    fn keeps_the_most_recent_by_last_failure_oldest_first() {
        let mut latest = Latest::new(2);
        for (offset, secs) in [(0, 30), (1, 10), (2, 20), (3, 5)] {
            latest.push(record(offset, secs));
        }
        assert_eq!(offsets(latest), vec![2, 0]);
        // Equal times: the later DLQ position is the more recent.
        let mut latest = Latest::new(2);
        for offset in 0..4 {
            latest.push(record(offset, 0));
        }
        assert_eq!(offsets(latest), vec![2, 3]);
    }

    #[test]
    fn a_zero_limit_keeps_everything() {
        let mut latest = Latest::new(0);
        for (offset, secs) in [(0, 3), (1, 1), (2, 2)] {
            latest.push(record(offset, secs));
        }
        assert_eq!(offsets(latest), vec![1, 2, 0]);
    }
}
