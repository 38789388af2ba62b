//! Sampling a window: [`measure`] takes the snapshots a report is built from, and
//! [`check_group_known`] stops early when the group looks misspelled.

use std::collections::BTreeSet;
use std::time::Duration;

use super::probe::LAG_SECONDS_BUDGET;
use super::reader::LagReader;
use super::report::{build_report, LagReport};
use super::snapshot::Snapshot;

/// Characters two names share from their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Fails when `snapshot` shows neither members nor committed offsets: the group is most likely
/// misspelled, so say so and list the groups the cluster knows.
pub async fn check_group_known(reader: &LagReader, snapshot: &Snapshot) -> anyhow::Result<()> {
    let has_members = snapshot.group.as_ref().is_ok_and(|g| !g.members.is_empty());
    let has_commits = snapshot.offsets.values().any(|o| o.committed.is_some());
    if has_members || has_commits {
        return Ok(());
    }
    let topics: BTreeSet<&str> = snapshot.offsets.keys().map(|(t, _)| t.as_str()).collect();
    let topics: Vec<&str> = topics.into_iter().collect();
    let known = match reader.known_groups().await {
        Ok(groups) if groups.is_empty() => "the cluster lists no consumer groups".to_string(),
        Ok(mut groups) => {
            // The likeliest meant (longest common prefix with the name given) first.
            groups.sort_by_key(|g| std::cmp::Reverse(common_prefix(g, reader.group())));
            let shown: Vec<&str> = groups.iter().take(30).map(String::as_str).collect();
            let more = groups.len().saturating_sub(shown.len());
            format!(
                "groups on the cluster, closest names first: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            )
        }
        Err(e) => format!("listing the cluster's groups failed: {e:#}"),
    };
    anyhow::bail!(
        "consumer group `{}` is unknown: it has no members and no committed offsets on {}. \
         Pass the group with --group (default: consumer.group_id) and its topics with --topic; {known}",
        reader.group(),
        topics.join(", ")
    )
}

/// Takes `samples` snapshots `interval` apart, measures lag in seconds on the last one, and
/// evaluates the statuses. Fails when the group is unknown.
pub async fn measure(
    reader: &LagReader,
    samples: usize,
    interval: Duration,
) -> anyhow::Result<LagReport> {
    let mut window = Vec::with_capacity(samples.max(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..samples.max(1) {
        ticker.tick().await;
        let snapshot = reader.snapshot().await?;
        if i == 0 {
            check_group_known(reader, &snapshot).await?;
        }
        window.push(snapshot);
    }
    let last = window.last().expect("one sample at least");
    let seconds = reader.lag_seconds(last, LAG_SECONDS_BUDGET).await;
    Ok(build_report(reader.group(), &window, &seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_ranks_the_likeliest_group_first() {
        let mut groups = vec!["it-group-1", "log-processor-grp", "log-processor-group"];
        groups.sort_by_key(|g| std::cmp::Reverse(common_prefix(g, "log-processor-groups")));
        assert_eq!(
            groups,
            ["log-processor-group", "log-processor-grp", "it-group-1"]
        );
    }
}
