//! `count_cells` on both backends: stored rows counted per minute, service, level and error
//! fingerprint below each partition's cut, partitions without a cut reported, and the minute
//! exactly `minute_of` of the event time. Each test also checks the answer against a count done
//! in Rust over the rows written ([`reference`]).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{each_backend, log_at, now, sample_logs, shared_tags, PgSchema, TestStore, TOPIC};
use logpipe_model::{fingerprint, minute_of, Cells, Cut, EnrichedLog, Level};
use logpipe_store::{CellCount, CellQuery, LogStore, StoreError, StoreOptions};

const OTHER_TOPIC: &str = "audit-logs";

/// One stored event with the fields the count reads chosen by the test.
fn event(
    (topic, partition, offset): (&str, i32, i64),
    timestamp: DateTime<Utc>,
    service: &str,
    level: Level,
    template: &str,
) -> EnrichedLog {
    let mut log = log_at(offset, timestamp, &shared_tags());
    log.coordinates.topic = Arc::from(topic);
    log.coordinates.partition = partition;
    log.event.service = service.parse().expect("service");
    log.event.level = level;
    log.severity_number = level.severity_number();
    log.template = template.to_owned();
    log.fingerprint = fingerprint(service, template);
    log
}

fn cut(topic: &str, partition: i32, through: i64) -> Cut {
    Cut {
        topic: topic.to_owned(),
        partition,
        through,
    }
}

/// The count `count_cells` must give, done in Rust with `minute_of`.
fn reference(logs: &[EnrichedLog], query: &CellQuery) -> CellCount {
    let mut count = CellCount::default();
    let mut uncut: BTreeMap<(String, i32), u64> = BTreeMap::new();
    for log in logs {
        let event = &log.event;
        let at = &log.coordinates;
        if event.timestamp < query.from
            || event.timestamp >= query.until
            || query
                .service
                .as_ref()
                .is_some_and(|service| service != event.service.as_str())
        {
            continue;
        }
        let found = query
            .cuts
            .iter()
            .find(|cut| cut.topic == *at.topic && cut.partition == at.partition);
        let Some(found) = found else {
            *uncut
                .entry((at.topic.to_string(), at.partition))
                .or_default() += 1;
            continue;
        };
        if at.offset > found.through {
            continue;
        }
        let minute = minute_of(event.timestamp);
        let cells: &mut Cells = &mut count.cells;
        cells.add_count(minute, event.service.as_str(), event.level, 1);
        if event.level >= Level::Error {
            cells.add_error(minute, event.service.as_str(), log.fingerprint, 1);
            let template = cells
                .templates
                .entry(log.fingerprint)
                .or_insert_with(|| log.template.clone());
            if log.template < *template {
                *template = log.template.clone();
            }
        }
        count.rows += 1;
    }
    count.uncut = uncut
        .into_iter()
        .map(|((topic, partition), rows)| (topic, partition, rows))
        .collect();
    count
}

/// Writes `logs`, counts with `query`, checks the count against [`reference`], returns it.
async fn write_and_count(store: &LogStore, logs: &[EnrichedLog], query: &CellQuery) -> CellCount {
    let written = store.write(logs).await.expect("write");
    assert_eq!(written.inserted as usize, logs.len());
    let count = store.count_cells(query).await.expect("count_cells");
    assert_eq!(count, reference(logs, query), "{}", store.kind());
    count
}

fn everything(cuts: Vec<Cut>) -> CellQuery {
    CellQuery {
        from: Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap(),
        until: Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap(),
        service: None,
        cuts,
    }
}

#[tokio::test]
async fn cuts_exclude_higher_offsets_and_partitions_without_one_are_reported() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            let at = now();
            let mut logs = Vec::new();
            let mut add = |topic, partition, offsets: std::ops::Range<i64>| {
                for offset in offsets {
                    let position = (topic, partition, offset);
                    logs.push(event(position, at, "api", Level::Info, "served"));
                }
            };
            add(TOPIC, 0, 0..10); // cut through 4: 5 counted
            add(TOPIC, 1, 0..4); // cut through -1: nothing counted, nothing reported
            add(TOPIC, 2, 0..3); // no cut: 3 reported
            add(OTHER_TOPIC, 0, 0..2); // no cut (the same partition number of another topic)
            let query = everything(vec![
                cut(TOPIC, 0, 4),
                cut(TOPIC, 1, -1),
                cut(TOPIC, 0, 4),   // repeated as is: harmless
                cut(TOPIC, 7, 100), // a partition without rows
            ]);
            let count = write_and_count(&store, &logs, &query).await;
            assert_eq!(count.rows, 5);
            assert_eq!(count.cells.events(), 5);
            assert_eq!(
                count.uncut,
                [(TOPIC.to_owned(), 2, 3), (OTHER_TOPIC.to_owned(), 0, 2)]
            );

            // No cuts at all: every partition is reported, nothing counted.
            let none = store.count_cells(&everything(Vec::new())).await.unwrap();
            assert_eq!(none.rows, 0);
            assert_eq!(none.cells, Cells::default());
            assert_eq!(none.uncut.iter().map(|u| u.2).sum::<u64>(), 19);

            // Two different cuts for one partition: refused, not guessed.
            let conflicting = everything(vec![cut(TOPIC, 0, 4), cut(TOPIC, 0, 5)]);
            assert!(matches!(
                store.count_cells(&conflicting).await,
                Err(StoreError::InvalidQuery(_))
            ));
        },
    )
    .await;
}

#[tokio::test]
async fn minutes_are_floored_like_minute_of() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            let boundary = Utc.with_ymd_and_hms(2026, 3, 10, 15, 4, 0).unwrap();
            let epoch = Utc.timestamp_opt(0, 0).unwrap();
            let micro = Duration::microseconds(1);
            let times = [
                boundary - micro,
                boundary,
                boundary + Duration::seconds(60) - micro,
                epoch - micro,                 // 1969-12-31T23:59:59.999999: minute -60
                epoch - Duration::seconds(60), // exactly on a minute before 1970
                epoch - Duration::seconds(61),
                Utc.with_ymd_and_hms(1901, 7, 4, 12, 0, 30).unwrap(),
            ];
            let logs: Vec<EnrichedLog> = times
                .iter()
                .enumerate()
                .map(|(offset, at)| event((TOPIC, 0, offset as i64), *at, "api", Level::Warn, "w"))
                .collect();
            let count = write_and_count(&store, &logs, &everything(vec![cut(TOPIC, 0, 100)])).await;
            let minutes: Vec<i64> = count.cells.counts.keys().copied().collect();
            let mut expected: Vec<i64> = times.iter().map(|at| minute_of(*at)).collect();
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(minutes, expected, "{}", store.kind());
            assert!(minutes.contains(&-60) && minutes.contains(&-120));
            let at_boundary = &count.cells.counts[&boundary.timestamp()]["api"];
            assert_eq!(at_boundary[Level::Warn as usize], 2);
            assert_eq!(count.cells.counts[&-60]["api"][Level::Warn as usize], 2);
        },
    )
    .await;
}

#[tokio::test]
async fn only_error_and_fatal_have_fingerprints_and_templates() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            let at = now();
            let mut logs: Vec<EnrichedLog> = Level::ALL
                .iter()
                .enumerate()
                .map(|(offset, level)| {
                    let template = format!("{} happened", level.as_str());
                    event((TOPIC, 0, offset as i64), at, "api", *level, &template)
                })
                .collect();
            // Two templates stored under one fingerprint (a drift between releases): the
            // smallest is kept.
            let mut drifted = event((TOPIC, 0, 10), at, "api", Level::Error, "ERROR happened");
            drifted.template = "AAA drifted".into();
            logs.push(drifted);
            let count = write_and_count(&store, &logs, &everything(vec![cut(TOPIC, 0, 100)])).await;
            assert_eq!(count.rows, 7);
            let minute = minute_of(at);
            let error = fingerprint("api", "ERROR happened");
            let fatal = fingerprint("api", "FATAL happened");
            let errors = &count.cells.errors[&minute]["api"];
            assert_eq!(errors.len(), 2, "{}", store.kind());
            assert_eq!(errors[&error], 2);
            assert_eq!(errors[&fatal], 1);
            assert_eq!(count.cells.templates.len(), 2);
            assert_eq!(count.cells.templates[&error], "AAA drifted");
            assert_eq!(count.cells.templates[&fatal], "FATAL happened");
            let slots = count.cells.counts[&minute]["api"];
            assert_eq!(slots, [1, 1, 1, 1, 2, 1]);
        },
    )
    .await;
}

#[tokio::test]
async fn the_service_filter_applies_to_counts_and_uncut_partitions() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            let at = now();
            let logs = vec![
                event((TOPIC, 0, 0), at, "api", Level::Error, "e"),
                event((TOPIC, 0, 1), at, "web", Level::Error, "e"),
                event((TOPIC, 0, 2), at, "web", Level::Info, "i"),
                event((TOPIC, 1, 0), at, "api", Level::Info, "i"),
                event((TOPIC, 1, 1), at, "web", Level::Info, "i"),
                event((TOPIC, 1, 2), at, "web", Level::Info, "i"),
            ];
            let query = CellQuery {
                service: Some("web".into()),
                ..everything(vec![cut(TOPIC, 0, 100)])
            };
            let count = write_and_count(&store, &logs, &query).await;
            assert_eq!(count.rows, 2);
            let services: Vec<&String> = count.cells.counts[&minute_of(at)].keys().collect();
            assert_eq!(services, ["web"]);
            assert_eq!(count.uncut, [(TOPIC.to_owned(), 1, 2)]);
            let unknown = CellQuery {
                service: Some("nobody".into()),
                ..query
            };
            assert_eq!(
                store.count_cells(&unknown).await.unwrap(),
                CellCount::default()
            );
        },
    )
    .await;
}

#[tokio::test]
async fn the_range_includes_from_and_excludes_until() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            let from = now() - Duration::hours(2);
            let until = from + Duration::hours(1);
            let micro = Duration::microseconds(1);
            let logs = vec![
                event((TOPIC, 0, 0), from - micro, "api", Level::Info, "i"),
                event((TOPIC, 0, 1), from, "api", Level::Info, "i"),
                event((TOPIC, 0, 2), until - micro, "api", Level::Info, "i"),
                event((TOPIC, 0, 3), until, "api", Level::Info, "i"),
                event((TOPIC, 1, 0), from - micro, "api", Level::Info, "i"),
                event((TOPIC, 1, 1), until - micro, "api", Level::Info, "i"),
                event((TOPIC, 1, 2), until, "api", Level::Info, "i"),
            ];
            let query = CellQuery {
                from,
                until,
                service: None,
                cuts: vec![cut(TOPIC, 0, 100)],
            };
            let count = write_and_count(&store, &logs, &query).await;
            assert_eq!(count.rows, 2);
            assert_eq!(count.uncut, [(TOPIC.to_owned(), 1, 1)]);
            let empty = CellQuery {
                until: from,
                ..query
            };
            assert_eq!(
                store.count_cells(&empty).await.unwrap(),
                CellCount::default()
            );
        },
    )
    .await;
}

#[tokio::test]
async fn many_rows_match_a_count_done_in_rust() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, .. }| async move {
            // 3 partitions, every level, 3 services, 2 templates, 3 days of event times.
            let at = now();
            let logs = sample_logs(3_000, 0, at, 3);
            let query = CellQuery {
                from: at - Duration::days(2) - Duration::hours(1),
                until: at,
                service: None,
                cuts: vec![cut(TOPIC, 0, 1_500), cut(TOPIC, 1, 2_900)],
            };
            let count = write_and_count(&store, &logs, &query).await;
            assert!(count.rows > 1_000, "{}", count.rows);
            assert!(!count.cells.errors.is_empty());
            assert_eq!(count.uncut.len(), 1);
            let one = CellQuery {
                service: Some(common::SERVICES[1].to_owned()),
                ..query
            };
            let count = store.count_cells(&one).await.unwrap();
            assert_eq!(count, reference(&logs, &one));
        },
    )
    .await;
}

#[tokio::test]
async fn the_retention_cutoff_is_the_first_day_kept() {
    let options = StoreOptions {
        retention_days: 2,
        ..StoreOptions::default()
    };
    each_backend(options, |TestStore { store, .. }| async move {
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 15, 4, 5).unwrap();
        let cutoff = Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap();
        assert_eq!(store.retention_cutoff(at), cutoff, "{}", store.kind());
    })
    .await;
}

/// PostgreSQL only: the minute does not depend on the session's TimeZone. Paris was 9 min 21 s
/// ahead of UTC until 1911, so a minute taken in local time would be off the UTC minute.
#[tokio::test]
async fn the_minute_ignores_the_session_time_zone() {
    let schema = PgSchema::new();
    let options = schema.options(&StoreOptions::default());
    let url = format!("{}&options=-c%20TimeZone%3DEurope%2FParis", schema.url());
    let store = LogStore::open(&url, &options).await.expect("open");
    store.migrate().await.expect("migrate");
    let LogStore::Postgres(pg) = &store else {
        panic!("not PostgreSQL")
    };
    let client = pg.pool().get().await.expect("connection");
    let zone: String = client.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(zone, "Europe/Paris");
    let times = [
        Utc.with_ymd_and_hms(1900, 6, 1, 12, 0, 30).unwrap(),
        Utc.with_ymd_and_hms(1900, 6, 1, 12, 0, 50).unwrap(),
    ];
    let logs: Vec<EnrichedLog> = times
        .iter()
        .enumerate()
        .map(|(offset, at)| event((TOPIC, 0, offset as i64), *at, "api", Level::Info, "i"))
        .collect();
    let count = write_and_count(&store, &logs, &everything(vec![cut(TOPIC, 0, 10)])).await;
    let minutes: Vec<i64> = count.cells.counts.keys().copied().collect();
    assert_eq!(minutes, [minute_of(times[0])]);
}
