//! What one live read of a group yields: its members and each partition's committed and log-end
//! offsets, and the [`Observation`] of a partition that status evaluation takes from it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::group::GroupView;
use super::status::Observation;

/// Committed and log-end offsets of one partition at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub committed: Option<i64>,
    pub end: i64,
}

/// One live read of the group: members, then committed offsets, then log-end offsets.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    /// The group, or why DescribeGroups failed.
    pub group: Result<GroupView, String>,
    /// Per (topic, partition).
    pub offsets: BTreeMap<(String, i32), PartitionOffsets>,
}

impl Snapshot {
    /// `key`'s sample in this snapshot, as [`evaluate`](super::evaluate) takes it; `None` when the
    /// snapshot did not read the partition.
    pub(super) fn observation(&self, key: &(String, i32)) -> Option<Observation> {
        let offsets = self.offsets.get(key)?;
        let owned = match &self.group {
            Ok(group) => group.owner(&key.0, key.1).map(|o| o.is_some()),
            Err(_) => None,
        };
        Some(Observation {
            committed: offsets.committed,
            end: offsets.end,
            owned,
        })
    }
}
