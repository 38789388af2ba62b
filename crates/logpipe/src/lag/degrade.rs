//! What `lag` does where a broker reports less than Apache Kafka. Apache Kafka is the reference
//! (the integration tests compare every column with `kafka-consumer-groups --describe`); every
//! allowance for a broker that tells less is made here, so the rest of `lag` reads as if each
//! answer were complete. Each one makes the report say less rather than guess:
//!
//! - **Groups DescribeGroups calls `Dead`.** DescribeGroups describes classic groups only; Apache
//!   Kafka answers it for any other group (a KIP-848 consumer group, a share or streams group) as
//!   for a group that does not exist: state `Dead`, no members, no error. Such a group is asked
//!   again with ConsumerGroupDescribe ([`described_by_describe_groups`]); one that neither call
//!   describes stays `Dead` with unknown members ([`undescribed_group`]): owners show `-`, an idle
//!   partition is STALL, never STOP, and [`undescribed_note`] says why.
//! - **Empty MemberAssignment.** A broker may list the members of a Stable group with an empty
//!   MemberAssignment and no client id or host (member ids only). Such a member's assignment is
//!   unknown ([`reported_assignment`] marks it [`ASSIGNMENT_NOT_REPORTED`]), so nobody is known to
//!   own a partition: owners show `-`, an idle partition is STALL, never STOP (STOP is still
//!   reported for an Empty group), and [`unreported_assignments_note`] lists the members.
//! - **Under-reported log end.** A broker whose ListOffsets reports a log end below a committed
//!   offset would show a negative lag; [`lag`] counts it as 0.

use super::group::{GroupView, Member};

/// `assignment_error` of a member whose MemberAssignment came back empty: normal while a group
/// rebalances; in a Stable group it means the broker does not report assignments (Apache Kafka
/// always does).
pub const ASSIGNMENT_NOT_REPORTED: &str = "not reported by the broker (empty MemberAssignment)";

/// The state DescribeGroups gives a group it does not describe, and the state of a group that
/// neither DescribeGroups nor ConsumerGroupDescribe describes.
pub(super) const UNDESCRIBED_STATE: &str = "Dead";

/// A group's lag: `end - committed`, never below 0, so a committed offset above an
/// under-reported log end counts as caught up.
pub(super) fn lag(committed: i64, end: i64) -> i64 {
    (end - committed).max(0)
}

/// Whether DescribeGroups described the group: `Dead` is its answer for a group that is not a
/// classic group (or no group at all), which ConsumerGroupDescribe is asked about instead.
pub(super) fn described_by_describe_groups(state: &str) -> bool {
    state != UNDESCRIBED_STATE
}

/// A group neither DescribeGroups nor ConsumerGroupDescribe describes: `Dead`, members unknown.
pub(super) fn undescribed_group() -> GroupView {
    GroupView {
        state: UNDESCRIBED_STATE.into(),
        protocol_type: String::new(),
        protocol: String::new(),
        members: Vec::new(),
    }
}

/// A member's MemberAssignment bytes as DescribeGroups reported them, or
/// [`ASSIGNMENT_NOT_REPORTED`] when they are empty.
pub(super) fn reported_assignment(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.is_empty() {
        Err(ASSIGNMENT_NOT_REPORTED.to_string())
    } else {
        Ok(bytes)
    }
}

/// Whether the broker left `member`'s assignment out (as opposed to one that does not parse).
pub(super) fn assignment_unreported(member: &Member) -> bool {
    member.assignment_error.as_deref() == Some(ASSIGNMENT_NOT_REPORTED)
}

/// The report's note for a group in [`UNDESCRIBED_STATE`].
pub(super) fn undescribed_note(group: &str) -> String {
    format!(
        "neither DescribeGroups nor ConsumerGroupDescribe describes group `{group}` (state Dead, no members) \
         although it has committed offsets: it is neither a classic nor a KIP-848 consumer group (a share or \
         streams group, or a broker without KIP-848). Members unknown: CONSUMER-ID, HOST and \
         CLIENT-ID show `-`, and a partition whose offset does not move is STALL, never STOP. \
         `kafka-consumer-groups --describe --group {group}` lists its members"
    )
}

/// The report's note for the members of a settled group whose assignments the broker left out;
/// `None` when it reported them all.
pub(super) fn unreported_assignments_note(members: &[Member]) -> Option<String> {
    let unreported: Vec<&str> = members
        .iter()
        .filter(|m| assignment_unreported(m))
        .map(|m| m.consumer_id.as_str())
        .collect();
    (!unreported.is_empty()).then(|| {
        format!(
            "the broker did not report the assignment of {} of {} member(s) (an empty MemberAssignment in \
             DescribeGroups; Apache Kafka reports it; this broker sent member ids only): CONSUMER-ID, \
             HOST and CLIENT-ID show `-`, and a partition whose offset does not move is STALL, never STOP. \
             Members: {}",
            unreported.len(),
            members.len(),
            unreported.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::fixtures::member;

    #[test]
    fn a_committed_offset_above_the_log_end_is_lag_0() {
        assert_eq!(lag(5, 12), 7);
        assert_eq!(lag(12, 12), 0);
        assert_eq!(lag(12, 10), 0);
    }

    #[test]
    fn dead_is_the_answer_for_a_group_describe_groups_does_not_describe() {
        assert!(!described_by_describe_groups("Dead"));
        assert!(described_by_describe_groups("Stable"));
        assert!(described_by_describe_groups("Empty"));
        let g = undescribed_group();
        assert_eq!((g.state.as_str(), g.members.len()), ("Dead", 0));
        assert_eq!(g.owner("t", 0), None);
    }

    #[test]
    fn empty_assignment_bytes_are_not_reported() {
        assert_eq!(
            reported_assignment(&[]),
            Err(ASSIGNMENT_NOT_REPORTED.into())
        );
        assert_eq!(reported_assignment(&[0, 1]), Ok(&[0u8, 1][..]));
        let mut m = member("a", None);
        assert!(!assignment_unreported(&m));
        assert_eq!(unreported_assignments_note(std::slice::from_ref(&m)), None);
        m.assignment_error = Some(ASSIGNMENT_NOT_REPORTED.into());
        assert!(assignment_unreported(&m));
        let other = member("b", Some(vec![]));
        let note = unreported_assignments_note(&[m, other]).unwrap();
        assert!(
            note.contains("assignment of 1 of 2") && note.ends_with("Members: a"),
            "{note}"
        );
    }
}
