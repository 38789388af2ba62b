//! Scenarios run against both backends with the same body (`on_both_backends!` in `mod.rs`).
//! Expected values come from `support::expected`, computed straight from the records.

use std::time::Duration;

use logpipe_model::Level;

use super::support::*;
use crate::{AggOptions, ApplyOutcome, BatchDelta};

const DEFAULT_TTL_MINUTES: i64 = 48 * 60;

fn applied(records: usize) -> ApplyOutcome {
    ApplyOutcome::Applied {
        records: records as u64,
    }
}

fn conflict(partitions: &[(i32, i64)]) -> ApplyOutcome {
    ApplyOutcome::Conflict {
        partitions: partitions
            .iter()
            .map(|&(partition, actual)| (TOPIC.to_owned(), partition, actual))
            .collect(),
    }
}

pub async fn exact_counts(f: Fixture) {
    let logs = generate(600, 6, 2);
    for batch in logs.chunks(100) {
        assert_eq!(deliver(&f.store, batch).await, applied(batch.len()));
    }
    for top_n in [3, 100] {
        let q = query(6, None, top_n);
        let stats = f.store.stats(&q).await.unwrap();
        assert_eq!(
            stats,
            expected(&logs, &q, DEFAULT_TTL_MINUTES),
            "top_n {top_n}"
        );
        // The data exercises every dimension.
        assert_eq!(stats.total, 600);
        assert_eq!(stats.by_level.len(), 6);
        assert_eq!(stats.by_service.len(), 3);
        assert_eq!(stats.per_minute.len(), 6);
        assert_eq!(stats.top_errors.len(), top_n.min(12));
    }
}

pub async fn replay_is_refused(f: Fixture) {
    let logs = generate(50, 3, 1);
    let delta = delta_for(0, -1, 49, &logs);
    assert_eq!(f.store.apply(&delta).await.unwrap(), applied(50));
    let q = query(3, None, 10);
    let before = f.store.stats(&q).await.unwrap();
    assert_eq!(before, expected(&logs, &q, DEFAULT_TTL_MINUTES));

    assert_eq!(f.store.apply(&delta).await.unwrap(), conflict(&[(0, 49)]));
    assert_eq!(
        f.store.stats(&q).await.unwrap(),
        before,
        "replay changed nothing"
    );
}

pub async fn stale_watermark_conflicts_then_rebuild_is_exact(f: Fixture) {
    let logs = generate(150, 3, 1);
    let first = delta_for(0, -1, 99, &logs[..100]);
    assert_eq!(f.store.apply(&first).await.unwrap(), applied(100));

    // A consumer that still believes nothing was applied.
    let stale = delta_for(0, -1, 149, &logs);
    assert_eq!(f.store.apply(&stale).await.unwrap(), conflict(&[(0, 99)]));
    let q = query(3, None, 10);
    assert_eq!(
        f.store.stats(&q).await.unwrap(),
        expected(&logs[..100], &q, DEFAULT_TTL_MINUTES)
    );

    // It re-reads the watermark and applies only the remainder.
    assert_eq!(
        f.store.watermarks(TOPIC, &[0]).await.unwrap(),
        vec![(0, 99)]
    );
    assert_eq!(deliver(&f.store, &logs).await, applied(50));
    assert_eq!(
        f.store.stats(&q).await.unwrap(),
        expected(&logs, &q, DEFAULT_TTL_MINUTES)
    );
}

pub async fn one_conflicting_partition_blocks_the_whole_delta(f: Fixture) {
    let logs = generate(40, 2, 2);
    let (p0, p1): (Vec<_>, Vec<_>) = logs
        .iter()
        .cloned()
        .partition(|log| log.coordinates.partition == 0);
    let last = |logs: &[logpipe_model::EnrichedLog]| logs.last().unwrap().coordinates.offset;
    assert_eq!(
        f.store
            .apply(&delta_for(1, -1, last(&p1), &p1))
            .await
            .unwrap(),
        applied(p1.len())
    );
    let q = query(2, None, 10);
    let before = f.store.stats(&q).await.unwrap();

    let mut both = BatchDelta::new();
    both.cover(TOPIC, 0, -1, last(&p0));
    both.cover(TOPIC, 1, -1, last(&p1)); // stale: partition 1 is already at last(&p1)
    for log in &logs {
        both.add(log);
    }
    assert_eq!(
        f.store.apply(&both).await.unwrap(),
        conflict(&[(1, last(&p1))])
    );
    assert_eq!(
        f.store.watermarks(TOPIC, &[0, 1]).await.unwrap(),
        vec![(0, -1), (1, last(&p1))],
        "partition 0 did not move either"
    );
    let after = f.store.stats(&q).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after, expected(&p1, &q, DEFAULT_TTL_MINUTES));
}

pub async fn service_filter(f: Fixture) {
    let logs = generate(300, 4, 2);
    for batch in logs.chunks(64) {
        deliver(&f.store, batch).await;
    }
    for service in SERVICES.into_iter().chain(["absent"]) {
        let q = query(4, Some(service), 5);
        let stats = f.store.stats(&q).await.unwrap();
        assert_eq!(stats, expected(&logs, &q, DEFAULT_TTL_MINUTES), "{service}");
        assert!(stats.top_errors.iter().all(|e| e.service == service));
        assert_eq!(
            stats.all_time.total, 300,
            "all-time totals are not filtered"
        );
    }
    let absent = f.store.stats(&query(4, Some("absent"), 5)).await.unwrap();
    assert_eq!(absent.total, 0);
    assert!(absent.per_minute.is_empty() && absent.by_service.is_empty());
}

pub async fn range_is_clamped_and_minute_aligned(f: Fixture) {
    let short = f
        .reopen(AggOptions {
            minute_ttl: Duration::from_secs(30 * 60),
            ..AggOptions::default()
        })
        .await;
    let logs: Vec<_> = (0..90)
        .map(|m| {
            let level = if m % 2 == 0 {
                Level::Info
            } else {
                Level::Error
            };
            record("checkout", level, m, 1, TOPIC, 0, m)
        })
        .collect();
    assert_eq!(deliver(&short, &logs).await, applied(90));
    let at = |minutes: i64, seconds: i64| {
        base_time() + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(seconds)
    };

    // A day-long request on a 30-minute store reads the last 30 minutes only.
    let mut q = query(90, None, 5);
    q.since = base_time() - chrono::Duration::days(1);
    let stats = short.stats(&q).await.unwrap();
    assert_eq!(stats.since, at(60, 0));
    assert_eq!(stats.total, 30);
    assert_eq!(stats.per_minute.len(), 30);
    assert_eq!(stats, expected(&logs, &q, 30));

    // With the default TTL (48 h), the cap is 24 h of minutes: all 90 are in.
    let stats = f.store.stats(&q).await.unwrap();
    assert_eq!(stats.since, q.until - chrono::Duration::days(1));
    assert_eq!(stats, expected(&logs, &q, DEFAULT_TTL_MINUTES));
    assert_eq!(stats.total, 90);

    // `since` rounds down to its minute; `until` is exclusive at a minute boundary.
    q.since = at(10, 30);
    q.until = at(20, 0);
    let stats = short.stats(&q).await.unwrap();
    assert_eq!(stats.since, at(10, 0));
    assert_eq!(stats.total, 10);
    assert_eq!(stats, expected(&logs, &q, 30));
    // ... and inclusive of a minute it falls inside.
    q.until = at(20, 1);
    assert_eq!(short.stats(&q).await.unwrap().total, 11);

    // An inverted range counts nothing.
    q.since = at(20, 0);
    q.until = at(10, 0);
    let stats = short.stats(&q).await.unwrap();
    assert_eq!(
        (stats.total, stats.per_minute.len(), stats.top_errors.len()),
        (0, 0, 0)
    );
    assert_eq!(stats.all_time.total, 90);
}

pub async fn top_n_ranks_errors(f: Fixture) {
    let specs: &[(&str, Level, u64, usize)] = &[
        ("a", Level::Error, 7, 5),
        ("a", Level::Fatal, 8, 3),
        ("b", Level::Error, 8, 3),
        ("b", Level::Warn, 9, 9), // not an error: never ranked
        ("c", Level::Error, 6, 1),
    ];
    let mut logs = Vec::new();
    for &(service, level, fingerprint, count) in specs {
        for _ in 0..count {
            let offset = logs.len() as i64;
            logs.push(record(
                service,
                level,
                offset % 3,
                fingerprint,
                TOPIC,
                0,
                offset,
            ));
        }
    }
    assert_eq!(deliver(&f.store, &logs).await, applied(logs.len()));
    let ranked = |stats: crate::Stats| -> Vec<(String, String, u64)> {
        stats
            .top_errors
            .into_iter()
            .map(|e| (e.fingerprint, e.service, e.count))
            .collect()
    };
    let fp = |n: u64| format!("{n:016x}");
    let stats = f.store.stats(&query(3, None, 2)).await.unwrap();
    assert_eq!(stats.top_errors[0].template, template_of(7));
    assert_eq!(
        ranked(stats),
        vec![(fp(7), "a".into(), 5), (fp(8), "a".into(), 3)]
    );
    let stats = f.store.stats(&query(3, None, 3)).await.unwrap();
    assert_eq!(
        ranked(stats)[2],
        (fp(8), "b".into(), 3),
        "ties: by fingerprint, then service"
    );
    assert!(f
        .store
        .stats(&query(3, None, 0))
        .await
        .unwrap()
        .top_errors
        .is_empty());
    let q = query(3, None, 10);
    let stats = f.store.stats(&q).await.unwrap();
    assert_eq!(stats.top_errors.len(), 4, "WARN is never ranked");
    assert_eq!(stats, expected(&logs, &q, DEFAULT_TTL_MINUTES));
}

pub async fn racing_applies_one_wins(f: Fixture) {
    let rounds = 10;
    let mut wins = [0_u64; 2];
    for _ in 0..rounds {
        let after = f.store.watermarks(TOPIC, &[0]).await.unwrap()[0].1;
        let racers = ["a", "b"].map(|service| {
            let logs: Vec<_> = (after + 1..=after + 5)
                .map(|offset| record(service, Level::Info, 0, 1, TOPIC, 0, offset))
                .collect();
            let delta = delta_for(0, after, after + 5, &logs);
            let store = f.store.clone();
            tokio::spawn(async move { store.apply(&delta).await.unwrap() })
        });
        let [a, b] = racers;
        let outcomes = [a.await.unwrap(), b.await.unwrap()];
        let winners: Vec<usize> = (0..2).filter(|&i| outcomes[i] == applied(5)).collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        let loser = 1 - winners[0];
        assert_eq!(outcomes[loser], conflict(&[(0, after + 5)]));
        wins[winners[0]] += 1;
    }
    let stats = f.store.stats(&query(1, None, 1)).await.unwrap();
    assert_eq!(stats.total, 5 * rounds);
    for (i, service) in ["a", "b"].into_iter().enumerate() {
        let counted = stats
            .by_service
            .get(service)
            .map_or(0, |levels| levels["INFO"]);
        assert_eq!(counted, 5 * wins[i], "{service}");
    }
}

pub async fn watermarks_start_at_minus_one_and_follow_applies(f: Fixture) {
    assert_eq!(
        f.store.watermarks(TOPIC, &[0, 5, 11]).await.unwrap(),
        vec![(0, -1), (5, -1), (11, -1)]
    );
    assert!(f.store.watermarks(TOPIC, &[]).await.unwrap().is_empty());
    let logs = [record("svc", Level::Info, 0, 1, TOPIC, 5, 41)];
    assert_eq!(
        f.store.apply(&delta_for(5, -1, 41, &logs)).await.unwrap(),
        applied(1)
    );
    assert_eq!(
        f.store.watermarks(TOPIC, &[0, 5, 11]).await.unwrap(),
        vec![(0, -1), (5, 41), (11, -1)]
    );
    assert_eq!(
        f.store.watermarks("other-topic", &[5]).await.unwrap(),
        vec![(5, -1)]
    );
}

pub async fn empty_and_fence_deltas(f: Fixture) {
    assert_eq!(f.store.apply(&BatchDelta::new()).await.unwrap(), applied(0));
    // A pure fence: checks the watermark, changes nothing.
    assert_eq!(
        f.store.apply(&delta_for(0, -1, -1, &[])).await.unwrap(),
        applied(0)
    );
    assert_eq!(
        f.store.watermarks(TOPIC, &[0]).await.unwrap(),
        vec![(0, -1)]
    );
    // A range with no countable records (all undecodable, say) still moves the watermark.
    assert_eq!(
        f.store.apply(&delta_for(0, -1, 5, &[])).await.unwrap(),
        applied(0)
    );
    assert_eq!(f.store.watermarks(TOPIC, &[0]).await.unwrap(), vec![(0, 5)]);
    assert_eq!(
        f.store.apply(&delta_for(0, -1, -1, &[])).await.unwrap(),
        conflict(&[(0, 5)])
    );
    let stats = f.store.stats(&query(5, None, 5)).await.unwrap();
    assert_eq!((stats.total, stats.all_time.total), (0, 0));
    assert!(f.store.ping().await);
    assert_eq!(
        f.store.kind(),
        if f.is_redis() { "redis" } else { "memory" }
    );
}
