//! The report `logpipe lag` prints: one row per partition, totals, and notes on what could not be
//! read; and which partitions reach a `--fail-on` threshold. Pure: built from snapshots already
//! taken.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use serde::Serialize;

use super::degrade;
use super::group::Member;
use super::probe::LAG_SECONDS_BUDGET;
use super::snapshot::Snapshot;
use super::status::{evaluate, Observation, Status};

/// One row of the table: a partition of the group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `None`: the group never committed to this partition.
    pub current_offset: Option<i64>,
    pub log_end_offset: i64,
    pub lag: Option<i64>,
    /// Age of the record at the committed offset; 0 without lag; `None` when not measured.
    pub lag_seconds: Option<f64>,
    pub status: Option<Status>,
    pub consumer_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
}

/// Totals over the partitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub partitions: usize,
    pub total_lag: i64,
    pub max_lag: i64,
    /// `topic/partition` of the largest lag (the first, on ties); `None` without lag.
    pub max_lag_partition: Option<String>,
    pub max_lag_seconds: Option<f64>,
    pub worst_status: Option<Status>,
    pub status_counts: BTreeMap<Status, usize>,
    /// Partitions the group never committed to.
    pub without_commit: usize,
}

/// The window the statuses were evaluated over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowInfo {
    pub samples: usize,
    /// From the first sample to the last.
    pub seconds: f64,
}

/// What `logpipe lag` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LagReport {
    pub group: String,
    /// The group's state (`Stable`, `Empty`...); `None` when the broker did not describe it.
    pub state: Option<String>,
    /// The assignor (`cooperative-sticky`, `range`...).
    pub protocol: Option<String>,
    pub members: Vec<Member>,
    /// When the last sample was taken.
    pub taken_at: String,
    pub window: WindowInfo,
    pub partitions: Vec<PartitionLag>,
    pub summary: Summary,
    /// What could not be read, and what `-` means where it appears.
    pub notes: Vec<String>,
}

/// Builds the report from a window of snapshots (oldest first, at least one) and the lag in
/// seconds of the last one.
pub fn build_report(
    group: &str,
    window: &[Snapshot],
    lag_seconds: &BTreeMap<(String, i32), f64>,
) -> LagReport {
    let last = window.last().expect("a window has at least one snapshot");
    let mut notes = Vec::new();
    let view = last.group.as_ref().ok();
    if let Err(why) = &last.group {
        notes.push(format!(
            "members unknown: {why}. CONSUMER-ID, HOST and CLIENT-ID show `-`, and a partition whose offset \
             does not move is STALL (STOP needs to know that nobody owns it)"
        ));
    }
    if let Some(view) = view {
        let settled = matches!(
            view.state.as_str(),
            "Stable" | "Empty" | degrade::UNDESCRIBED_STATE
        );
        if view.state == degrade::UNDESCRIBED_STATE {
            notes.push(degrade::undescribed_note(group));
        }
        if !settled {
            notes.push(format!(
                "the group is rebalancing ({}): owners show `-` until it is Stable",
                view.state
            ));
        }
        if settled {
            notes.extend(degrade::unreported_assignments_note(&view.members));
        }
        for m in &view.members {
            match &m.assignment_error {
                Some(e) if !degrade::assignment_unreported(m) => notes.push(format!(
                    "assignment of member {} not readable: {e}",
                    m.consumer_id
                )),
                _ => {}
            }
        }
    }
    let mut partitions = Vec::new();
    for (key, offsets) in &last.offsets {
        let observations: Vec<Observation> =
            window.iter().filter_map(|s| s.observation(key)).collect();
        let owner = view.and_then(|v| v.owner(&key.0, key.1)).flatten();
        let lag = offsets.committed.map(|c| degrade::lag(c, offsets.end));
        partitions.push(PartitionLag {
            group: group.to_string(),
            topic: key.0.clone(),
            partition: key.1,
            current_offset: offsets.committed,
            log_end_offset: offsets.end,
            lag,
            lag_seconds: match lag {
                Some(0) => Some(0.0),
                Some(_) => lag_seconds.get(key).copied(),
                None => None,
            },
            status: evaluate(&observations),
            consumer_id: owner.map(|m| m.consumer_id.clone()),
            host: owner.and_then(|m| m.host.clone()),
            client_id: owner.and_then(|m| m.client_id.clone()),
        });
    }
    let mut summary = Summary {
        partitions: partitions.len(),
        total_lag: 0,
        max_lag: 0,
        max_lag_partition: None,
        max_lag_seconds: None,
        worst_status: None,
        status_counts: BTreeMap::new(),
        without_commit: 0,
    };
    for p in &partitions {
        match p.lag {
            Some(lag) => {
                summary.total_lag += lag;
                if lag > summary.max_lag {
                    summary.max_lag = lag;
                    summary.max_lag_partition = Some(format!("{}/{}", p.topic, p.partition));
                }
            }
            None => summary.without_commit += 1,
        }
        if let Some(s) = p.lag_seconds {
            summary.max_lag_seconds = Some(summary.max_lag_seconds.map_or(s, |m: f64| m.max(s)));
        }
        if let Some(status) = p.status {
            *summary.status_counts.entry(status).or_default() += 1;
            summary.worst_status = summary.worst_status.max(Some(status));
        }
    }
    if summary.without_commit > 0 {
        notes.push(format!(
            "{} partition(s) have no committed offset (CURRENT-OFFSET `-`): the group has not consumed them yet; \
             a logpipe consumer starts them at the earliest offset",
            summary.without_commit
        ));
    }
    let unmeasured = partitions
        .iter()
        .filter(|p| p.lag.is_some_and(|l| l > 0) && p.lag_seconds.is_none())
        .count();
    if unmeasured > 0 {
        notes.push(format!(
            "lag in seconds not measured for {unmeasured} partition(s): the record at the committed offset did not \
             arrive within {}",
            humantime::format_duration(LAG_SECONDS_BUDGET)
        ));
    }
    if window.len() < 2 {
        notes.push(
            "one sample so far: a status needs two (`-` until then) unless the lag is 0".into(),
        );
    }
    let seconds = (last.taken_at - window[0].taken_at)
        .num_milliseconds()
        .max(0) as f64
        / 1000.0;
    LagReport {
        group: group.to_string(),
        state: view.map(|v| v.state.clone()),
        protocol: view.map(|v| v.protocol.clone()).filter(|p| !p.is_empty()),
        members: view.map(|v| v.members.clone()).unwrap_or_default(),
        taken_at: last.taken_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        window: WindowInfo {
            samples: window.len(),
            seconds,
        },
        partitions,
        summary,
        notes,
    }
}

/// Returned by [`run`](super::run) when `--fail-on` is reached; `main` turns it into exit status 3.
#[derive(Debug, thiserror::Error)]
#[error("lag: {count} partition(s) at or worse than {threshold} (worst: {worst})")]
pub struct ThresholdReached {
    pub threshold: Status,
    pub worst: Status,
    pub count: usize,
}

/// The partitions at or worse than `threshold`, if any.
pub fn threshold_reached(report: &LagReport, threshold: Status) -> Option<ThresholdReached> {
    let count = report
        .partitions
        .iter()
        .filter(|p| p.status.is_some_and(|s| s >= threshold))
        .count();
    (count > 0).then(|| ThresholdReached {
        threshold,
        worst: report.summary.worst_status.unwrap_or(threshold),
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::degrade::ASSIGNMENT_NOT_REPORTED;
    use crate::lag::fixtures::{
        busy_lag_seconds, busy_window, member, members_unknown_window, snapshot, view,
    };

    #[test]
    fn report_rows_summary_and_notes() {
        let report = build_report("grp", &busy_window(), &busy_lag_seconds());
        let rows: Vec<_> = report
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition,
                    p.current_offset,
                    p.log_end_offset,
                    p.lag,
                    p.lag_seconds,
                    p.status,
                    p.consumer_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    0,
                    Some(5),
                    12,
                    Some(7),
                    Some(42.5),
                    Some(Status::Stall),
                    Some("m1")
                ),
                (
                    1,
                    Some(7),
                    7,
                    Some(0),
                    Some(0.0),
                    Some(Status::Ok),
                    Some("m1")
                ),
                (2, Some(1), 4, Some(3), None, Some(Status::Stop), None),
                (3, None, 9, None, None, None, None),
            ]
        );
        let s = &report.summary;
        assert_eq!((s.total_lag, s.max_lag, s.without_commit), (10, 7, 1));
        assert_eq!(s.max_lag_partition.as_deref(), Some("t/0"));
        assert_eq!(s.max_lag_seconds, Some(42.5));
        assert_eq!(s.worst_status, Some(Status::Stall));
        assert_eq!(
            report.window,
            WindowInfo {
                samples: 2,
                seconds: 2.0
            }
        );
        assert_eq!(report.state.as_deref(), Some("Stable"));
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("no committed offset")));
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("not measured for 1")));

        assert_eq!(
            threshold_reached(&report, Status::Stop).map(|t| t.count),
            Some(2)
        );
        assert_eq!(
            threshold_reached(&report, Status::Stall).map(|t| t.count),
            Some(1)
        );
        assert!(threshold_reached(&report, Status::Rewind).is_none());

        // Members unknown: dashes, STALL instead of STOP, and a note saying why.
        let report = build_report("grp", &members_unknown_window(), &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert_eq!(report.partitions[0].consumer_id, None);
        assert_eq!(report.state, None);
        assert!(report.notes[0].contains("members unknown: DescribeGroups failed"));

        // A Dead group with commits (described by neither DescribeGroups nor
        // ConsumerGroupDescribe): owners unknown, STALL rather than STOP, and a note saying why.
        let dead = || Ok(view("Dead", vec![]));
        let window = vec![
            snapshot(0, dead(), &[("t", 0, Some(1), 4)]),
            snapshot(1000, dead(), &[("t", 0, Some(1), 4)]),
        ];
        let report = build_report("grp", &window, &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("neither a classic nor a KIP-848")
                    && n.contains("kafka-consumer-groups --describe --group grp")),
            "{:?}",
            report.notes
        );

        // A Stable group whose members come with empty assignments (a broker that does not report
        // them, member ids only): owners unknown, STALL rather than STOP, member ids in a note.
        let ids_only = || {
            let mut m = member("logpipe-consumer-x-1", None);
            m.client_id = None;
            m.host = None;
            m.assignment_error = Some(ASSIGNMENT_NOT_REPORTED.into());
            Ok(view("Stable", vec![m]))
        };
        let window = vec![
            snapshot(0, ids_only(), &[("t", 0, Some(1), 4)]),
            snapshot(1000, ids_only(), &[("t", 0, Some(1), 4)]),
        ];
        let report = build_report("grp", &window, &BTreeMap::new());
        assert_eq!(report.partitions[0].status, Some(Status::Stall));
        assert_eq!(report.partitions[0].consumer_id, None);
        assert_eq!(report.members.len(), 1);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("did not report the assignment of 1 of 1")
                    && n.contains("logpipe-consumer-x-1")),
            "{:?}",
            report.notes
        );
    }
}
