//! The rebuild's scenarios, run against both backends with the same body: snapshots, the
//! rebuild after data loss (the store counted by hand from the records at or below the cuts),
//! a one-service correction, the lease, clamping, templates, batching and the reconciliation
//! requests.

use std::collections::BTreeMap;
use std::time::Duration;

use logpipe_model::{CellDiff, Cells, Cut, EnrichedLog, Fingerprint, Level};

use super::support::*;
use crate::{AggError, ApplyOutcome, BatchDelta, Stats};

on_both_backends!(
    rebuild:
    snapshot_is_what_the_applies_wrote,
    rebuild_after_data_loss_is_exact,
    a_service_correction_leaves_other_services,
    the_lease_is_exclusive_renewable_and_released,
    a_lost_lease_refuses_renewal_and_correction,
    corrections_clamp_at_zero,
    templates_are_set_only_where_missing,
    a_large_correction_runs_in_batches_of_whole_minutes,
    rebuild_requests_ride_on_applies_and_round_trip,
);

const LONG: Duration = Duration::from_secs(30);

/// Epoch seconds of minute `minute` after [`base_time`].
fn minute(minute: i64) -> i64 {
    base_time().timestamp() + 60 * minute
}

/// Cells without templates, as a snapshot reads them.
fn without_templates(cells: Cells) -> Cells {
    Cells {
        templates: BTreeMap::new(),
        ..cells
    }
}

async fn deliver_all(f: &Fixture, logs: &[EnrichedLog]) {
    for batch in logs.chunks(100) {
        let outcome = deliver(&f.store, batch).await;
        assert!(
            matches!(outcome, ApplyOutcome::Applied { .. }),
            "{outcome:?}"
        );
    }
}

/// The stats of every query the scenarios check: all services, then each one.
async fn all_stats(f: &Fixture, minutes: i64) -> Vec<Stats> {
    let mut stats = Vec::new();
    for service in [None].into_iter().chain(SERVICES.map(Some)) {
        stats.push(f.store.stats(&query(minutes, service, 100)).await.unwrap());
    }
    stats
}

fn all_expected(logs: &[EnrichedLog], minutes: i64) -> Vec<Stats> {
    [None]
        .into_iter()
        .chain(SERVICES.map(Some))
        .map(|service| expected(logs, &query(minutes, service, 100), 48 * 60))
        .collect()
}

pub async fn snapshot_is_what_the_applies_wrote(f: Fixture) {
    let logs = generate(300, 4, 2);
    deliver_all(&f, &logs).await;
    let other = record("search", Level::Fatal, 2, 9, "other-topic", 7, 41);
    let mut delta = BatchDelta::new();
    delta.cover("other-topic", 7, -1, 41);
    delta.add(&other);
    f.store.apply(&delta).await.unwrap();

    let snapshot = f.store.snapshot(minute(0), minute(4)).await.unwrap();
    let mut cuts = cuts_of(&logs);
    cuts.push(Cut {
        topic: "other-topic".to_owned(),
        partition: 7,
        through: 41,
    });
    cuts.sort();
    assert_eq!(snapshot.cuts, cuts);
    let mut all = logs.clone();
    all.push(other);
    assert_eq!(
        snapshot.cells,
        without_templates(cells_of(&all, &cuts)),
        "every cell the applies wrote, and nothing else"
    );
    assert_eq!(snapshot.cells.events(), 301);

    // Only the minutes asked for.
    let middle = f.store.snapshot(minute(1), minute(3)).await.unwrap();
    let in_middle: Vec<EnrichedLog> = all
        .iter()
        .filter(|log| {
            let at = log.event.timestamp.timestamp();
            at >= minute(1) && at < minute(3)
        })
        .cloned()
        .collect();
    assert_eq!(middle.cells, without_templates(cells_of(&in_middle, &cuts)));
    assert_eq!(middle.cuts, cuts);
    let none = f.store.snapshot(minute(1), minute(1)).await.unwrap();
    assert_eq!(none.cells, Cells::default());
    let err = f
        .store
        .snapshot(minute(0) + 1, minute(2))
        .await
        .unwrap_err();
    assert!(!err.is_outage(), "{err}");
}

/// The method end to end: applies, data loss, applies that restore the watermarks, a snapshot,
/// the store counted at the cuts, more applies, then the correction: the counts are exact.
pub async fn rebuild_after_data_loss_is_exact(f: Fixture) {
    let logs = generate(1200, 6, 2);
    deliver_all(&f, &logs[..400]).await;
    lose_everything(&f).await;
    assert_eq!(f.store.stats(&query(6, None, 10)).await.unwrap().total, 0);

    // The consumer finds its watermarks gone, counts its current batches from -1 on and asks
    // for a rebuild in the same apply.
    let mut first = build_delta(&f.store, &logs[400..500]).await;
    first.request_rebuild(format!("{TOPIC}:0"), "watermark lost".to_owned());
    assert!(matches!(
        f.store.apply(&first).await.unwrap(),
        ApplyOutcome::Applied { records: 100 }
    ));
    deliver_all(&f, &logs[500..700]).await;

    let lease = f.store.lease("rebuild test", LONG).await.unwrap();
    let snapshot = f.store.snapshot(minute(0), minute(6)).await.unwrap();
    assert_eq!(snapshot.cuts, cuts_of(&logs[..700]));
    assert_eq!(
        snapshot.cells,
        without_templates(cells_of(&logs[400..700], &snapshot.cuts)),
        "what was applied since the loss"
    );
    let store = cells_of(&logs, &snapshot.cuts);
    assert_eq!(
        store.events(),
        700,
        "the store holds every row up to the cuts"
    );

    // Applies go on between the snapshot and the correction.
    deliver_all(&f, &logs[700..1000]).await;
    let correction = store.diff(&snapshot.cells);
    let report = f
        .store
        .correct(&lease, &correction, &store.templates, true)
        .await
        .unwrap();
    assert_eq!(report.batches, 1);
    assert_eq!(
        report.cells,
        correction.counts.len() + correction.errors.len()
    );
    assert_eq!(report.clamped, 0);
    assert_eq!(report.totals, correction.level_totals());
    assert_eq!(all_stats(&f, 6).await, all_expected(&logs[..1000], 6));

    // And counting goes on exactly afterwards.
    deliver_all(&f, &logs[1000..]).await;
    assert_eq!(all_stats(&f, 6).await, all_expected(&logs, 6));
    f.store.release(&lease).await.unwrap();
    assert_eq!(f.store.lease_holder().await.unwrap(), None);
    let requests = f.store.rebuild_requests().await.unwrap();
    assert_eq!(
        requests.get(&format!("{TOPIC}:0")).unwrap(),
        "watermark lost"
    );
}

pub async fn a_service_correction_leaves_other_services(f: Fixture) {
    let logs = generate(900, 5, 2);
    deliver_all(&f, &logs[..300]).await;
    lose_everything(&f).await;
    deliver_all(&f, &logs[300..600]).await;

    let lease = f.store.lease("one service", LONG).await.unwrap();
    let snapshot = f.store.snapshot(minute(0), minute(5)).await.unwrap();
    let store = cells_of(&logs, &snapshot.cuts).only_service("checkout");
    deliver_all(&f, &logs[600..]).await;
    let correction = store.diff(&snapshot.cells.only_service("checkout"));
    assert!(correction.counts.iter().all(|cell| cell.1 == "checkout"));
    f.store
        .correct(&lease, &correction, &store.templates, true)
        .await
        .unwrap();

    // The truth for checkout; the others keep what was lost; the totals gain checkout's part.
    let mut truth: Vec<EnrichedLog> = logs[300..].to_vec();
    truth.extend(
        logs[..300]
            .iter()
            .filter(|log| log.event.service.as_str() == "checkout")
            .cloned(),
    );
    assert_eq!(all_stats(&f, 5).await, all_expected(&truth, 5));
}

pub async fn the_lease_is_exclusive_renewable_and_released(f: Fixture) {
    assert_eq!(f.store.lease_holder().await.unwrap(), None);
    let a = f.store.lease("rebuild a on host-1", LONG).await.unwrap();
    assert_eq!(a.holder(), "rebuild a on host-1");
    assert_eq!(a.ttl(), LONG);

    let busy = f.store.lease("rebuild b", LONG).await.unwrap_err();
    assert!(matches!(busy, AggError::Busy(_)), "{busy}");
    assert!(!busy.is_outage());
    let text = busy.to_string();
    assert!(text.contains("\"rebuild a on host-1\" since "), "{text}");
    assert!(text.contains("s left"), "{text}");
    let holder = f.store.lease_holder().await.unwrap().unwrap();
    assert!(holder.contains("rebuild a on host-1"), "{holder}");

    f.store.renew(&a).await.unwrap();
    f.store.release(&a).await.unwrap();
    assert_eq!(f.store.lease_holder().await.unwrap(), None);

    let b = f.store.lease("rebuild b", LONG).await.unwrap();
    f.store.release(&a).await.unwrap();
    let holder = f.store.lease_holder().await.unwrap().unwrap();
    assert!(
        holder.contains("rebuild b"),
        "a stale release leaves b's lease: {holder}"
    );
    let lost = f.store.renew(&a).await.unwrap_err();
    assert!(matches!(lost, AggError::LeaseLost(_)), "{lost}");
    assert!(lost.to_string().contains("rebuild b"), "{lost}");
    assert!(!lost.is_outage());
    f.store.release(&b).await.unwrap();
    assert_eq!(f.store.lease_holder().await.unwrap(), None);
}

fn one_cell(at: i64) -> CellDiff {
    CellDiff {
        counts: vec![(at, "svc".to_owned(), Level::Info, 3)],
        errors: Vec::new(),
    }
}

pub async fn a_lost_lease_refuses_renewal_and_correction(f: Fixture) {
    let no_templates = BTreeMap::new();
    let short = f
        .store
        .lease("short", Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.store.lease_holder().await.unwrap(), None, "expired");
    let err = f.store.renew(&short).await.unwrap_err();
    assert!(matches!(err, AggError::LeaseLost(_)), "{err}");
    let err = f
        .store
        .correct(&short, &one_cell(minute(0)), &no_templates, true)
        .await
        .unwrap_err();
    assert!(matches!(err, AggError::LeaseLost(_)), "{err}");
    let stats = f.store.stats(&query(1, None, 10)).await.unwrap();
    assert_eq!(
        (stats.total, stats.all_time.total),
        (0, 0),
        "nothing written"
    );

    // Data lost between the snapshot and the correction takes the lease with it.
    let lease = f.store.lease("before the flush", LONG).await.unwrap();
    deliver_all(&f, &generate(50, 1, 1)).await;
    lose_everything(&f).await;
    let err = f
        .store
        .correct(&lease, &one_cell(minute(0)), &no_templates, true)
        .await
        .unwrap_err();
    assert!(matches!(err, AggError::LeaseLost(_)), "{err}");
    assert!(err.to_string().contains("batch 1 of 1"), "{err}");
    let stats = f.store.stats(&query(1, None, 10)).await.unwrap();
    assert_eq!(
        (stats.total, stats.all_time.total),
        (0, 0),
        "nothing written"
    );
    assert!(f
        .store
        .snapshot(minute(0), minute(1))
        .await
        .unwrap()
        .cuts
        .is_empty());
}

pub async fn corrections_clamp_at_zero(f: Fixture) {
    let logs = [
        record("a", Level::Info, 0, 1, TOPIC, 0, 0),
        record("a", Level::Info, 0, 1, TOPIC, 0, 1),
        record("a", Level::Error, 0, 7, TOPIC, 0, 2),
    ];
    f.store.apply(&delta_for(0, -1, 2, &logs)).await.unwrap();
    let lease = f.store.lease("clamp", LONG).await.unwrap();
    let correction = CellDiff {
        counts: vec![
            (minute(0), "a".to_owned(), Level::Info, -5), // 2 → clamped
            (minute(0), "a".to_owned(), Level::Error, -1), // 1 → 0, removed
            (minute(1), "b".to_owned(), Level::Warn, -2), // absent → clamped
        ],
        errors: vec![(minute(0), "a".to_owned(), Fingerprint(7), -3)], // 1 → clamped
    };
    let report = f
        .store
        .correct(&lease, &correction, &BTreeMap::new(), true)
        .await
        .unwrap();
    assert_eq!(report.cells, 4);
    // Three cells, and the INFO and WARN totals (2 − 5 and 0 − 2).
    assert_eq!(report.clamped, 5);
    let mut totals = [0; logpipe_model::LEVELS];
    totals[Level::Info as usize] = -2;
    totals[Level::Error as usize] = -1;
    assert_eq!(report.totals, totals);

    let stats = f.store.stats(&query(2, None, 10)).await.unwrap();
    assert_eq!(stats.total, 0);
    assert!(stats.per_minute.is_empty() && stats.top_errors.is_empty());
    assert_eq!(stats.all_time.total, 0);
    assert!(stats.all_time.by_level.is_empty(), "{:?}", stats.all_time);
    let snapshot = f.store.snapshot(minute(0), minute(2)).await.unwrap();
    assert_eq!(
        snapshot.cells,
        Cells::default(),
        "emptied cells are removed"
    );

    // Without totals the all-time counts stay as they are.
    let add = one_cell(minute(0));
    let report = f
        .store
        .correct(&lease, &add, &BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!((report.cells, report.clamped), (1, 0));
    assert_eq!(report.totals, [0; logpipe_model::LEVELS]);
    let stats = f.store.stats(&query(1, None, 10)).await.unwrap();
    assert_eq!((stats.total, stats.all_time.total), (3, 0));
}

pub async fn templates_are_set_only_where_missing(f: Fixture) {
    let logs = [record("a", Level::Error, 0, 5, TOPIC, 0, 0)];
    f.store.apply(&delta_for(0, -1, 0, &logs)).await.unwrap();
    let lease = f.store.lease("templates", LONG).await.unwrap();
    let correction = CellDiff {
        counts: vec![(minute(0), "a".to_owned(), Level::Error, 2)],
        errors: vec![
            (minute(0), "a".to_owned(), Fingerprint(5), 1),
            (minute(0), "a".to_owned(), Fingerprint(6), 1),
        ],
    };
    let templates: BTreeMap<Fingerprint, String> = [
        (Fingerprint(5), "a different text".to_owned()),
        (Fingerprint(6), "six".to_owned()),
        (Fingerprint(8), "not in the correction".to_owned()),
    ]
    .into();
    f.store
        .correct(&lease, &correction, &templates, true)
        .await
        .unwrap();
    let stats = f.store.stats(&query(1, None, 10)).await.unwrap();
    let shown: Vec<(&str, u64, &str)> = stats
        .top_errors
        .iter()
        .map(|e| (e.fingerprint.as_str(), e.count, e.template.as_str()))
        .collect();
    let five = template_of(5);
    assert_eq!(
        shown,
        vec![
            ("0000000000000005", 2, five.as_str()),
            ("0000000000000006", 1, "six")
        ]
    );
    assert_eq!(stats.all_time.total, 3);
}

pub async fn a_large_correction_runs_in_batches_of_whole_minutes(f: Fixture) {
    // 50 minutes × 500 services = 25,000 cells: 40 minutes fill the first batch exactly.
    let mut correction = CellDiff::default();
    for m in 0..50 {
        for s in 0..500 {
            correction
                .counts
                .push((minute(m), format!("s{s:03}"), Level::Debug, 1));
        }
    }
    let lease = f.store.lease("large", LONG).await.unwrap();
    let report = f
        .store
        .correct(&lease, &correction, &BTreeMap::new(), true)
        .await
        .unwrap();
    assert_eq!(
        (report.batches, report.cells, report.clamped),
        (2, 25_000, 0)
    );
    assert_eq!(report.totals[Level::Debug as usize], 25_000);
    let stats = f.store.stats(&query(50, None, 1)).await.unwrap();
    assert_eq!((stats.total, stats.all_time.total), (25_000, 25_000));
    assert_eq!(stats.per_minute.len(), 50);
    assert!(stats.per_minute.iter().all(|m| m.count == 500));
    let evicted = f.store.evicted_keys().await.unwrap();
    if !f.is_redis() {
        assert_eq!(evicted, 0);
    }
}

pub async fn rebuild_requests_ride_on_applies_and_round_trip(f: Fixture) {
    let request = |field: &str, value: &str| (field.to_owned(), value.to_owned());
    assert!(f.store.rebuild_requests().await.unwrap().is_empty());

    let mut alone = BatchDelta::new();
    alone.request_rebuild("t:0".to_owned(), "lost".to_owned());
    assert!(!alone.is_empty(), "a request alone is something to apply");
    assert_eq!(
        f.store.apply(&alone).await.unwrap(),
        ApplyOutcome::Applied { records: 0 }
    );
    let logs = [record("a", Level::Info, 0, 1, TOPIC, 1, 0)];
    let mut with_records = delta_for(1, -1, 0, &logs);
    with_records.request_rebuild("t:1".to_owned(), "lost too".to_owned());
    f.store.apply(&with_records).await.unwrap();
    // A refused apply writes no request either.
    let mut refused = delta_for(1, -1, 0, &logs);
    refused.request_rebuild("t:2".to_owned(), "never".to_owned());
    assert!(matches!(
        f.store.apply(&refused).await.unwrap(),
        ApplyOutcome::Conflict { .. }
    ));
    let both: BTreeMap<String, String> =
        [request("t:0", "lost"), request("t:1", "lost too")].into();
    assert_eq!(f.store.rebuild_requests().await.unwrap(), both);

    let taken = f.store.take_rebuild_requests().await.unwrap();
    assert_eq!(taken, both);
    assert!(f.store.rebuild_requests().await.unwrap().is_empty());
    assert!(f.store.take_rebuild_requests().await.unwrap().is_empty());

    // Asked again while the rebuild ran, then the rebuild failed and hands its requests back:
    // the newer value stays.
    let mut again = BatchDelta::new();
    again.request_rebuild("t:0".to_owned(), "newer".to_owned());
    f.store.apply(&again).await.unwrap();
    f.store.put_rebuild_requests(&taken).await.unwrap();
    f.store
        .put_rebuild_requests(&BTreeMap::new())
        .await
        .unwrap();
    let merged: BTreeMap<String, String> =
        [request("t:0", "newer"), request("t:1", "lost too")].into();
    assert_eq!(f.store.rebuild_requests().await.unwrap(), merged);
}
