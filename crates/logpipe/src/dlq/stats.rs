//! `logpipe dlq stats`: counts of the whole DLQ topic by class, error type and original topic,
//! and the unreadable records by reason. [`Tally`] does the counting (pure); [`stats`] feeds it
//! the records of a [`DlqScan`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::record::{DlqRecord, Unreadable};
use super::scan::{require_brokers, DlqScan, PartitionProgress};
use super::{DlqContext, ErrorClass};
use crate::config::Config;

/// What `logpipe dlq stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStats {
    pub topic: String,
    /// Records read: readable plus unreadable.
    pub total: u64,
    pub readable: u64,
    pub unreadable: u64,
    pub by_class: Vec<ClassStats>,
    pub by_type: Vec<TypeStats>,
    pub by_original_topic: Vec<TopicCount>,
    /// Unreadable records grouped by reason.
    pub unreadable_reasons: Vec<UnreadableReason>,
    pub partitions: Vec<PartitionProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    pub class: ErrorClass,
    pub count: u64,
    pub oldest_last_failure: DateTime<Utc>,
    pub newest_last_failure: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeStats {
    pub class: ErrorClass,
    pub error_type: String,
    pub count: u64,
    pub oldest_last_failure: DateTime<Utc>,
    pub newest_last_failure: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicCount {
    pub topic: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableReason {
    pub reason: String,
    pub count: u64,
    /// Where the first one is.
    pub first_partition: i32,
    pub first_offset: i64,
}

/// Reads the whole DLQ topic (as of now) and counts its records.
pub async fn stats(config: &Config) -> anyhow::Result<DlqStats> {
    let brokers = require_brokers(config)?;
    let mut scan = DlqScan::open(config, &brokers, None, true).await?;
    let mut tally = Tally::default();
    while let Some(message) = scan.next().await? {
        match DlqRecord::parse(&message) {
            Ok(record) => tally.readable(&record.context),
            Err(bad) => tally.unreadable(bad),
        }
    }
    Ok(tally.finish(config.kafka.dlq_topic.clone(), scan.progress()))
}

/// The counts of `stats`, taken one record at a time.
#[derive(Default)]
pub(super) struct Tally {
    classes: BTreeMap<ErrorClass, Span>,
    types: BTreeMap<(ErrorClass, String), Span>,
    topics: BTreeMap<String, u64>,
    reasons: BTreeMap<String, UnreadableReason>,
    readable: u64,
    unreadable: u64,
}

/// How many, and the oldest and newest last failure among them.
#[derive(Default)]
struct Span {
    count: u64,
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

impl Span {
    fn add(&mut self, t: DateTime<Utc>) {
        self.count += 1;
        self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
    }

    fn times(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.oldest.unwrap_or_default(),
            self.newest.unwrap_or_default(),
        )
    }
}

impl Tally {
    pub(super) fn readable(&mut self, c: &DlqContext) {
        self.readable += 1;
        self.classes.entry(c.class).or_default().add(c.last_failure);
        self.types
            .entry((c.class, c.error_type.clone()))
            .or_default()
            .add(c.last_failure);
        *self.topics.entry(c.original_topic.clone()).or_default() += 1;
    }

    pub(super) fn unreadable(&mut self, bad: Unreadable) {
        self.unreadable += 1;
        self.reasons
            .entry(bad.reason.clone())
            .or_insert(UnreadableReason {
                reason: bad.reason,
                count: 0,
                first_partition: bad.dlq_partition,
                first_offset: bad.dlq_offset,
            })
            .count += 1;
    }

    /// The report: classes in class order; types by class, then most frequent first; topics and
    /// unreadable reasons most frequent first (ties by name).
    pub(super) fn finish(self, topic: String, partitions: Vec<PartitionProgress>) -> DlqStats {
        let by_class = self
            .classes
            .iter()
            .map(|(&class, s)| {
                let (oldest, newest) = s.times();
                ClassStats {
                    class,
                    count: s.count,
                    oldest_last_failure: oldest,
                    newest_last_failure: newest,
                }
            })
            .collect();
        let mut by_type: Vec<TypeStats> = self
            .types
            .iter()
            .map(|((class, error_type), s)| {
                let (oldest, newest) = s.times();
                TypeStats {
                    class: *class,
                    error_type: error_type.clone(),
                    count: s.count,
                    oldest_last_failure: oldest,
                    newest_last_failure: newest,
                }
            })
            .collect();
        by_type.sort_by(|a, b| {
            (a.class, std::cmp::Reverse(a.count), &a.error_type).cmp(&(
                b.class,
                std::cmp::Reverse(b.count),
                &b.error_type,
            ))
        });
        let mut by_original_topic: Vec<TopicCount> = self
            .topics
            .into_iter()
            .map(|(topic, count)| TopicCount { topic, count })
            .collect();
        by_original_topic.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
        let mut unreadable_reasons: Vec<UnreadableReason> = self.reasons.into_values().collect();
        unreadable_reasons
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        DlqStats {
            topic,
            total: self.readable + self.unreadable,
            readable: self.readable,
            unreadable: self.unreadable,
            by_class,
            by_type,
            by_original_topic,
            unreadable_reasons,
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::test_support::context;

    #[test]
    fn tally_counts_by_class_type_topic_and_unreadable_reason() {
        let base = context();
        let at = |secs| base.last_failure + chrono::Duration::seconds(secs);
        let mut t = Tally::default();
        for (class, error_type, topic, secs) in [
            (ErrorClass::Exhausted, "step:enrich", "a", 0),
            (ErrorClass::Exhausted, "store_rejected", "b", 5),
            (ErrorClass::Exhausted, "store_rejected", "b", -5),
            (ErrorClass::Poison, "invalid_json", "b", 1),
        ] {
            t.readable(&DlqContext {
                class,
                error_type: error_type.into(),
                original_topic: topic.into(),
                last_failure: at(secs),
                ..base.clone()
            });
        }
        let bad = |offset, reason: &str| Unreadable {
            dlq_partition: 2,
            dlq_offset: offset,
            reason: reason.into(),
        };
        t.unreadable(bad(7, "no headers"));
        t.unreadable(bad(9, "no headers"));
        t.unreadable(bad(3, "header `x` missing"));
        let s = t.finish("dlq".into(), Vec::new());
        assert_eq!((s.total, s.readable, s.unreadable), (7, 4, 3));
        assert_eq!(
            s.by_class,
            vec![
                ClassStats {
                    class: ErrorClass::Poison,
                    count: 1,
                    oldest_last_failure: at(1),
                    newest_last_failure: at(1),
                },
                ClassStats {
                    class: ErrorClass::Exhausted,
                    count: 3,
                    oldest_last_failure: at(-5),
                    newest_last_failure: at(5),
                },
            ]
        );
        let types: Vec<(&str, u64)> = s
            .by_type
            .iter()
            .map(|t| (t.error_type.as_str(), t.count))
            .collect();
        assert_eq!(
            types,
            vec![
                ("invalid_json", 1),
                ("store_rejected", 2),
                ("step:enrich", 1)
            ]
        );
        assert_eq!(
            s.by_original_topic,
            vec![
                TopicCount {
                    topic: "b".into(),
                    count: 3
                },
                TopicCount {
                    topic: "a".into(),
                    count: 1
                },
            ]
        );
        assert_eq!(
            s.unreadable_reasons[0],
            UnreadableReason {
                reason: "no headers".into(),
                count: 2,
                first_partition: 2,
                first_offset: 7,
            }
        );
        assert_eq!(s.unreadable_reasons[1].reason, "header `x` missing");
    }
}
