//! The store's contract, run against both backends with the same test bodies: idempotent writes,
//! query filters and pagination, timestamps far from today, retention, migrations, NUL bytes.

mod common;

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use common::{
    each_backend, expected_order, log_at, now, offsets, sample_logs, shared_tags, walk, Backend,
    TestStore,
};
use logpipe_model::{EnrichedLog, Level, RawValue};
use logpipe_store::{LogQuery, StoreError, StoreOptions, WriteReport};

#[tokio::test]
async fn replayed_records_never_create_a_second_row() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let batch = sample_logs(300, 0, now(), 3);
            let first = store.write(&batch).await.expect("first write");
            assert_eq!(
                first,
                WriteReport {
                    inserted: 300,
                    duplicates: 0
                },
                "{backend:?}"
            );
            assert_eq!(store.count().await.unwrap(), 300, "{backend:?}");

            let replay = store.write(&batch).await.expect("replay");
            assert_eq!(
                replay,
                WriteReport {
                    inserted: 0,
                    duplicates: 300
                },
                "{backend:?}"
            );
            assert_eq!(store.count().await.unwrap(), 300, "{backend:?}");

            // Half stored, half new.
            let mut mixed = batch[150..].to_vec();
            mixed.extend(sample_logs(300, 300, now(), 3).into_iter().take(150));
            let report = store.write(&mixed).await.expect("mixed write");
            assert_eq!(
                report,
                WriteReport {
                    inserted: 150,
                    duplicates: 150
                },
                "{backend:?}"
            );
            assert_eq!(store.count().await.unwrap(), 450, "{backend:?}");

            // Coordinates repeated inside one batch (the consumer never does this, but the slow path
            // must still be exact).
            let fresh = sample_logs(2, 1000, now(), 1);
            let repeated = vec![fresh[0].clone(), fresh[1].clone(), fresh[0].clone()];
            let report = store.write(&repeated).await.expect("repeated write");
            assert_eq!(
                report,
                WriteReport {
                    inserted: 2,
                    duplicates: 1
                },
                "{backend:?}"
            );
            assert_eq!(store.count().await.unwrap(), 452, "{backend:?}");

            assert_eq!(store.write(&[]).await.unwrap(), WriteReport::default());
            assert!(store.ping().await, "{backend:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn every_field_reads_back() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let at = now();
            let full = log_at(42, at, &shared_tags());
            let mut minimal = log_at(43, at - Duration::seconds(1), &shared_tags());
            minimal.event.host = None;
            minimal.event.trace_id = None;
            minimal.event.span_id = None;
            minimal.event.attributes = None;
            minimal.kafka_timestamp = None;
            minimal.ingested_at = None;
            minimal.request_id = None;
            minimal.tags = Default::default();
            store.write(&[full.clone(), minimal.clone()]).await.unwrap();

            let page = store.query(&LogQuery::default()).await.unwrap();
            assert_eq!(page.logs.len(), 2, "{backend:?}");
            assert_eq!(page.next_cursor, None);
            for (stored, log) in page.logs.iter().zip([&full, &minimal]) {
                let event = &log.event;
                assert_eq!(stored.timestamp, event.timestamp, "{backend:?}");
                assert_eq!(stored.level, event.level);
                assert_eq!(stored.service, event.service.as_str());
                assert_eq!(stored.message, event.message.as_str());
                assert_eq!(
                    stored.host.as_deref(),
                    event.host.as_ref().map(|h| h.as_str())
                );
                assert_eq!(
                    stored.trace_id.as_deref(),
                    event.trace_id.as_ref().map(|t| t.as_str())
                );
                assert_eq!(
                    stored.span_id.as_deref(),
                    event.span_id.as_ref().map(|s| s.as_str())
                );
                let attributes = event
                    .attributes
                    .as_deref()
                    .map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).unwrap());
                assert_eq!(stored.attributes, attributes, "{backend:?}");
                assert_eq!(stored.severity_number, log.severity_number);
                assert_eq!(stored.fingerprint, log.fingerprint.to_string());
                assert_eq!(stored.template, log.template);
                assert_eq!(stored.kafka.topic, &*log.coordinates.topic);
                assert_eq!(stored.kafka.partition, log.coordinates.partition);
                assert_eq!(stored.kafka.offset, log.coordinates.offset);
                assert_eq!(stored.kafka.index, log.coordinates.index);
                assert_eq!(stored.kafka.timestamp, log.kafka_timestamp);
                assert_eq!(stored.ingested_at, log.ingested_at);
                assert_eq!(stored.processed_at, log.processed_at);
                assert_eq!(stored.request_id, log.request_id);
                assert_eq!(stored.tags, *log.tags, "{backend:?}");
            }
            // The fingerprint with its high bit set survives the signed column.
            assert!(
                full.fingerprint.0 > i64::MAX as u64 || minimal.fingerprint.0 > i64::MAX as u64
            );

            // The JSON the HTTP API returns.
            let json = serde_json::to_value(&page.logs[0]).unwrap();
            assert_eq!(json["level"], "TRACE", "levels serialise upper-case");
            assert_eq!(json["kafka"]["offset"], 42);
            assert_eq!(json["kafka"]["index"], 0, "always serialised, 0 included");
            assert_eq!(json["fingerprint"].as_str().map(str::len), Some(16));
        },
    )
    .await;
}

#[tokio::test]
async fn filters_select_exactly_the_matching_rows() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let at = now();
            let logs = sample_logs(600, 0, at, 3);
            for batch in logs.chunks(250) {
                store.write(batch).await.unwrap();
            }
            let all: Vec<&EnrichedLog> = logs.iter().collect();
            let check =
                |name: &'static str, query: LogQuery, keep: &dyn Fn(&EnrichedLog) -> bool| {
                    let expected = expected_order(
                        &all.iter()
                            .copied()
                            .filter(|log| keep(log))
                            .collect::<Vec<_>>(),
                    );
                    let store = store.clone();
                    async move {
                        let found = offsets(&walk(&store, &query).await);
                        assert!(
                            !expected.is_empty(),
                            "{name}: the data should match something"
                        );
                        assert_eq!(found, expected, "{backend:?}: {name}");
                    }
                };
            let limit = 1000;
            check(
                "everything",
                LogQuery {
                    limit,
                    ..LogQuery::default()
                },
                &|_| true,
            )
            .await;
            check(
                "service",
                LogQuery {
                    service: Some("payments".into()),
                    limit,
                    ..LogQuery::default()
                },
                &|log| log.event.service.as_str() == "payments",
            )
            .await;
            check(
                "level",
                LogQuery {
                    level: Some(Level::Error),
                    limit,
                    ..LogQuery::default()
                },
                &|log| log.event.level == Level::Error,
            )
            .await;
            let since = at - Duration::days(1) - Duration::seconds(1);
            let until = at - Duration::seconds(2);
            check(
                "since/until",
                LogQuery {
                    since: Some(since),
                    until: Some(until),
                    limit,
                    ..LogQuery::default()
                },
                &|log| log.event.timestamp >= since && log.event.timestamp < until,
            )
            .await;
            check(
                "text, case-insensitive",
                LogQuery {
                    text: Some("tIMEOUT TALKING".into()),
                    limit,
                    ..LogQuery::default()
                },
                &|log| log.event.message.as_str().starts_with("Timeout talking"),
            )
            .await;
            check(
                "everything combined",
                LogQuery {
                    service: Some("checkout-api".into()),
                    level: Some(Level::Trace),
                    since: Some(at - Duration::days(2) - Duration::hours(1)),
                    text: Some("timeout".into()),
                    limit,
                    ..LogQuery::default()
                },
                &|log| {
                    log.event.service.as_str() == "checkout-api"
                        && log.event.level == Level::Trace
                        && log.event.timestamp >= at - Duration::days(2) - Duration::hours(1)
                        && log.event.message.as_str().contains("Timeout")
                },
            )
            .await;

            // `%` and `_` in the search text are literal.
            let none = store
                .query(&LogQuery {
                    text: Some("request_%".into()),
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert!(
                none.logs.is_empty(),
                "{backend:?}: wildcards must be escaped"
            );
            let none = store
                .query(&LogQuery {
                    service: Some("nobody".into()),
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert!(none.logs.is_empty() && none.next_cursor.is_none());
        },
    )
    .await;
}

#[tokio::test]
async fn pagination_walks_every_row_once_newest_first() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let at = now();
            let mut logs = sample_logs(250, 0, at, 3);
            // Twenty records sharing one timestamp: the coordinates must break the tie.
            let tags = shared_tags();
            logs.extend((250..270).map(|offset| log_at(offset, at - Duration::hours(5), &tags)));
            store.write(&logs).await.unwrap();
            let all: Vec<&EnrichedLog> = logs.iter().collect();

            for limit in [1, 7, 20, 269, 270, 1000] {
                let walked = walk(
                    &store,
                    &LogQuery {
                        limit,
                        ..LogQuery::default()
                    },
                )
                .await;
                assert_eq!(
                    offsets(&walked),
                    expected_order(&all),
                    "{backend:?}, limit {limit}"
                );
                let unique: BTreeSet<i64> = offsets(&walked).into_iter().collect();
                assert_eq!(unique.len(), 270);
            }
            // With a filter too.
            let errors: Vec<&EnrichedLog> = all
                .iter()
                .copied()
                .filter(|log| log.event.level == Level::Error)
                .collect();
            let walked = walk(
                &store,
                &LogQuery {
                    level: Some(Level::Error),
                    limit: 3,
                    ..LogQuery::default()
                },
            )
            .await;
            assert_eq!(offsets(&walked), expected_order(&errors), "{backend:?}");

            // A full last page has no cursor after it.
            let page = store
                .query(&LogQuery {
                    limit: 270,
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(page.logs.len(), 270);
            assert_eq!(page.next_cursor, None);

            for cursor in ["garbage", "", "eyJ0IjoxfQ"] {
                let err = store
                    .query(&LogQuery {
                        cursor: Some(cursor.into()),
                        ..LogQuery::default()
                    })
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, StoreError::InvalidQuery(_)),
                    "{backend:?}: {err}"
                );
                assert!(!err.is_outage());
            }
            let err = store
                .query(&LogQuery {
                    limit: 0,
                    ..LogQuery::default()
                })
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidQuery(_)));
        },
    )
    .await;
}

#[tokio::test]
async fn timestamps_far_from_today_are_stored_and_found() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let tags = shared_tags();
            let old = Utc.with_ymd_and_hms(2001, 9, 9, 1, 46, 40).unwrap();
            let future = Utc.with_ymd_and_hms(2090, 1, 1, 0, 0, 0).unwrap();
            let logs = vec![
                log_at(1, old, &tags),
                log_at(2, future, &tags),
                log_at(3, now(), &tags),
            ];
            assert_eq!(store.write(&logs).await.unwrap().inserted, 3);
            // Replays of those are recognised too (in the default partition for PostgreSQL).
            assert_eq!(store.write(&logs).await.unwrap().duplicates, 3);

            let page = store.query(&LogQuery::default()).await.unwrap();
            assert_eq!(offsets(&page.logs), [2, 3, 1], "{backend:?}");
            let found = store
                .query(&LogQuery {
                    since: Some(Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).unwrap()),
                    until: Some(Utc.with_ymd_and_hms(2002, 1, 1, 0, 0, 0).unwrap()),
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(offsets(&found.logs), [1]);
            assert_eq!(found.logs[0].timestamp, old);
            let found = store
                .query(&LogQuery {
                    since: Some(Utc.with_ymd_and_hms(2089, 1, 1, 0, 0, 0).unwrap()),
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(offsets(&found.logs), [2]);
            assert_eq!(found.logs[0].timestamp, future);
        },
    )
    .await;
}

#[tokio::test]
async fn maintain_removes_rows_past_the_retention() {
    let options = StoreOptions {
        retention_days: 2,
        ..StoreOptions::default()
    };
    each_backend(
        options,
        |TestStore {
             store,
             backend,
             schema,
         }| async move {
            let at = now();
            let today = at.date_naive();
            // As if the store had been running for days: partitions exist for the old days too.
            let earlier = store.maintain(at - Duration::days(4)).await.unwrap();
            if backend == Backend::Postgres {
                assert!(earlier
                    .created
                    .contains(&partition(today - chrono::Days::new(4))));
            }
            // Five days of rows: today and the four days before.
            let logs = sample_logs(500, 0, at, 5);
            store.write(&logs).await.unwrap();
            let first_kept = today - chrono::Days::new(2);
            let kept = logs
                .iter()
                .filter(|log| log.event.timestamp.date_naive() >= first_kept)
                .count();
            assert!(kept < 500 && kept > 0);

            let report = store.maintain(at).await.unwrap();
            assert_eq!(store.count().await.unwrap(), kept as u64, "{backend:?}");
            let oldest = walk(
                &store,
                &LogQuery {
                    limit: 1000,
                    ..LogQuery::default()
                },
            )
            .await
            .iter()
            .map(|log| log.timestamp.date_naive())
            .min();
            assert_eq!(oldest, Some(first_kept), "{backend:?}");

            if let Some(schema) = schema {
                let dropped: BTreeSet<String> = report.dropped.into_iter().collect();
                let expected: BTreeSet<String> = [3, 4]
                    .map(|days| partition(today - chrono::Days::new(days)))
                    .into();
                assert_eq!(dropped, expected);
                let existing = common_partitions(&schema).await;
                for days in 0..=3 {
                    let day = today + chrono::Days::new(days);
                    assert!(
                        existing.contains(&partition(day)),
                        "{} missing",
                        partition(day)
                    );
                }
                for days in [3, 4] {
                    assert!(!existing.contains(&partition(today - chrono::Days::new(days))));
                }
                assert!(existing.contains("logs_default"));
            } else {
                assert!(report.created.is_empty() && report.dropped.is_empty());
                assert_eq!(report.expired_rows, (500 - kept) as u64);
            }
            // Idempotent: nothing left to do.
            let again = store.maintain(at).await.unwrap();
            assert!(
                again.created.is_empty() && again.dropped.is_empty() && again.expired_rows == 0
            );
        },
    )
    .await;
}

fn partition(day: chrono::NaiveDate) -> String {
    format!("logs_{}", day.format("%Y%m%d"))
}

/// The partitions of the `logs` table in `schema`.
async fn common_partitions(schema: &str) -> BTreeSet<String> {
    let admin = common::pg_admin().await;
    admin
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace \
             WHERE n.nspname = $1 AND p.relname = 'logs'",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn migrate_is_idempotent_and_safe_concurrently() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            store.write(&sample_logs(10, 0, now(), 1)).await.unwrap();
            store.migrate().await.expect("second migrate");
            let other = store.clone();
            let (a, b) = tokio::join!(store.migrate(), other.migrate());
            a.and(b)
                .unwrap_or_else(|err| panic!("{backend:?}: concurrent migrate: {err}"));
            assert_eq!(store.count().await.unwrap(), 10, "migrations keep the data");
        },
    )
    .await;
}

#[tokio::test]
async fn nul_bytes_are_stored_as_replacement_characters() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let mut log = log_at(7, now(), &shared_tags());
            log.event.message = "before\0after".parse().unwrap();
            log.template = "before\0after".into();
            log.request_id = Some("req\0".into());
            log.event.attributes = Some(
                RawValue::from_string(r#"{"k":"x\u0000y","\u0000":"\ud800"}"#.into()).unwrap(),
            );
            let report = store
                .write(&[log.clone()])
                .await
                .expect("a NUL must not fail the batch");
            assert_eq!(report.inserted, 1, "{backend:?}");
            // And the replay of it is recognised.
            assert_eq!(store.write(&[log]).await.unwrap().duplicates, 1);

            let page = store
                .query(&LogQuery {
                    text: Some("\0".into()),
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            assert_eq!(
                page.logs.len(),
                1,
                "{backend:?}: searching for NUL finds the replacement"
            );
            let stored = &page.logs[0];
            assert_eq!(stored.message, "before\u{FFFD}after");
            assert_eq!(stored.template, "before\u{FFFD}after");
            assert_eq!(stored.request_id.as_deref(), Some("req\u{FFFD}"));
            let attributes = stored.attributes.as_ref().unwrap();
            assert_eq!(attributes["k"], "x\u{FFFD}y", "{backend:?}");
            assert_eq!(attributes["\u{FFFD}"], "\u{FFFD}");
        },
    )
    .await;
}
