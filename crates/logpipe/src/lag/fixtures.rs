//! Groups, members and windows of snapshots the unit tests of `lag` build reports from.

use std::collections::BTreeMap;

use chrono::DateTime;

use super::assignment::TopicAssignment;
use super::group::{GroupView, Member};
use super::snapshot::{PartitionOffsets, Snapshot};

/// `topic` with `partitions`, as one entry of a member's assignment.
pub(super) fn ta(topic: &str, partitions: &[i32]) -> TopicAssignment {
    TopicAssignment {
        topic: topic.into(),
        partitions: partitions.to_vec(),
    }
}

/// A member with a client id and host, and `assignment`.
pub(super) fn member(id: &str, assignment: Option<Vec<TopicAssignment>>) -> Member {
    Member {
        consumer_id: id.into(),
        client_id: Some(format!("client-{id}")),
        host: Some("/10.0.0.1".into()),
        assignment,
        assignment_error: None,
    }
}

/// A consumer-protocol group in `state` with `members`.
pub(super) fn view(state: &str, members: Vec<Member>) -> GroupView {
    GroupView {
        state: state.into(),
        protocol_type: "consumer".into(),
        protocol: "cooperative-sticky".into(),
        members,
    }
}

/// A snapshot taken `at_ms` after a fixed instant, offsets as (topic, partition, committed, end).
pub(super) fn snapshot(
    at_ms: i64,
    group: Result<GroupView, String>,
    offsets: &[(&str, i32, Option<i64>, i64)],
) -> Snapshot {
    Snapshot {
        taken_at: DateTime::from_timestamp_millis(1_700_000_000_000 + at_ms).unwrap(),
        group,
        offsets: offsets
            .iter()
            .map(|&(t, p, committed, end)| {
                ((t.to_string(), p), PartitionOffsets { committed, end })
            })
            .collect(),
    }
}

/// Two samples 2s apart of a Stable group whose one member owns t/0 and t/1: t/0 lags and does
/// not move (STALL), t/1 is caught up, t/2 lags with no owner (STOP), t/3 was never committed to.
pub(super) fn busy_window() -> Vec<Snapshot> {
    let g = || {
        Ok(view(
            "Stable",
            vec![member("m1", Some(vec![ta("t", &[0, 1])]))],
        ))
    };
    vec![
        snapshot(
            0,
            g(),
            &[
                ("t", 0, Some(5), 10),
                ("t", 1, Some(7), 7),
                ("t", 2, Some(1), 4),
                ("t", 3, None, 9),
            ],
        ),
        snapshot(
            2000,
            g(),
            &[
                ("t", 0, Some(5), 12),
                ("t", 1, Some(7), 7),
                ("t", 2, Some(1), 4),
                ("t", 3, None, 9),
            ],
        ),
    ]
}

/// Lag in seconds for [`busy_window`]: measured for t/0 only.
pub(super) fn busy_lag_seconds() -> BTreeMap<(String, i32), f64> {
    BTreeMap::from([(("t".to_string(), 0), 42.5)])
}

/// Two samples of a group DescribeGroups could not describe.
pub(super) fn members_unknown_window() -> Vec<Snapshot> {
    vec![
        snapshot(
            0,
            Err("DescribeGroups failed: nope".into()),
            &[("t", 2, Some(1), 4)],
        ),
        snapshot(
            1000,
            Err("DescribeGroups failed: nope".into()),
            &[("t", 2, Some(1), 4)],
        ),
    ]
}
