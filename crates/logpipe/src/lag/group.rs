//! A consumer group as the brokers describe it (state, assignor, members and their assignments),
//! and who owns a partition. Pure: [`GroupView`] is filled in by the reader.

use serde::Serialize;

use super::assignment::TopicAssignment;

/// A group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub consumer_id: String,
    /// `None` when the broker reports none (an empty string).
    pub client_id: Option<String>,
    /// As the broker reports it (Kafka: `/10.1.2.3`); `None` when empty.
    pub host: Option<String>,
    /// The member's assignment (every topic, not only the ones shown); `None` when the broker
    /// did not report one or it could not be parsed (see `assignment_error`).
    pub assignment: Option<Vec<TopicAssignment>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignment_error: Option<String>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Dead` (unknown group).
    pub state: String,
    /// `consumer` for Kafka consumers; assignments are parsed only then.
    pub protocol_type: String,
    /// The assignor: `cooperative-sticky`, `range`, `roundrobin`...
    pub protocol: String,
    pub members: Vec<Member>,
}

impl GroupView {
    /// Who owns `topic`/`partition`: `Some(Some(member))`, `Some(None)` (nobody, known for
    /// sure), or `None` (unknown: mid-rebalance, an assignment that does not parse, or a `Dead`
    /// group: DescribeGroups answers so for a group it does not describe, see `degrade`).
    pub fn owner(&self, topic: &str, partition: i32) -> Option<Option<&Member>> {
        match self.state.as_str() {
            "Empty" => return Some(None),
            "Stable" => {}
            _ => return None,
        }
        let mut complete = true;
        for member in &self.members {
            match &member.assignment {
                Some(topics) => {
                    if topics
                        .iter()
                        .any(|t| t.topic == topic && t.partitions.contains(&partition))
                    {
                        return Some(Some(member));
                    }
                }
                None => complete = false,
            }
        }
        complete.then_some(None)
    }
}

#[cfg(test)]
mod tests {
    use crate::lag::fixtures::{member, ta, view};

    #[test]
    fn owner_is_known_only_when_the_group_is_settled() {
        let stable = view(
            "Stable",
            vec![
                member("a", Some(vec![ta("t", &[0, 1])])),
                member("b", Some(vec![ta("t", &[2])])),
            ],
        );
        assert_eq!(stable.owner("t", 2).unwrap().unwrap().consumer_id, "b");
        assert_eq!(stable.owner("t", 3), Some(None));
        assert_eq!(stable.owner("other", 0), Some(None));
        assert_eq!(view("Empty", vec![]).owner("t", 0), Some(None));
        // Not described (a KIP-848 group on Apache Kafka): nobody can be said to own anything.
        assert_eq!(view("Dead", vec![]).owner("t", 0), None);
        let rebalancing = view("PreparingRebalance", vec![member("a", Some(vec![]))]);
        assert_eq!(rebalancing.owner("t", 0), None);
        let unreadable = view("Stable", vec![member("a", None)]);
        assert_eq!(unreadable.owner("t", 0), None);
    }
}
