//! Records holding several events (an OTLP export request): each event is stored once, told
//! apart by its index within the record, on both backends; pages split between the events of one
//! record; cursors written before the index existed still page correctly.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use common::{
    each_backend, event_at, expected_order, now, positions, shared_tags, walk, TestStore,
};
use logpipe_model::EnrichedLog;
use logpipe_store::{LogQuery, StoreOptions, WriteReport};

/// `indexes` events in each of the records at `offsets`, all at `at` and in one
/// partition, so only the offset and the index order them.
fn records(at: DateTime<Utc>, offsets: std::ops::Range<i64>, indexes: u32) -> Vec<EnrichedLog> {
    let tags = shared_tags();
    offsets
        .flat_map(|offset| {
            let tags = tags.clone();
            (0..indexes).map(move |index| {
                let mut log = event_at(offset, index, at, &tags);
                log.coordinates.partition = 0;
                log
            })
        })
        .collect()
}

#[tokio::test]
async fn events_of_one_record_are_each_stored_once() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let at = now();
            let record = records(at, 7..8, 2);
            let first = store.write(&record).await.unwrap();
            assert_eq!(
                first,
                WriteReport {
                    inserted: 2,
                    duplicates: 0
                },
                "{backend:?}"
            );
            let replay = store.write(&record).await.unwrap();
            assert_eq!(
                replay,
                WriteReport {
                    inserted: 0,
                    duplicates: 2
                },
                "{backend:?}"
            );
            assert_eq!(store.count().await.unwrap(), 2, "{backend:?}");
            let page = store.query(&LogQuery::default()).await.unwrap();
            assert_eq!(positions(&page.logs), [(7, 1), (7, 0)], "{backend:?}");
            assert_eq!(page.logs[0].message, "event 1 of record 7");
            assert_eq!(page.logs[1].message, "event 0 of record 7");

            // A replay of the record with one more event stores only the new one.
            let longer = records(at, 7..8, 3);
            let report = store.write(&longer).await.unwrap();
            assert_eq!(
                report,
                WriteReport {
                    inserted: 1,
                    duplicates: 2
                },
                "{backend:?}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn pages_split_between_events_of_one_record_without_repeating_or_skipping() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            let logs = records(now(), 100..105, 3);
            store.write(&logs).await.unwrap();
            let expected: Vec<(i64, u32)> = {
                let refs: Vec<&EnrichedLog> = logs.iter().collect();
                let mut sorted = refs.clone();
                sorted.sort_by(|a, b| b.coordinates.cmp(&a.coordinates));
                assert_eq!(
                    sorted
                        .iter()
                        .map(|log| log.coordinates.offset)
                        .collect::<Vec<_>>(),
                    expected_order(&refs)
                );
                sorted
                    .iter()
                    .map(|log| (log.coordinates.offset, log.coordinates.index))
                    .collect()
            };
            // Pages of 2 over records of 3: most page boundaries fall inside a record.
            for limit in [1, 2, 4] {
                let all = walk(
                    &store,
                    &LogQuery {
                        limit,
                        ..LogQuery::default()
                    },
                )
                .await;
                assert_eq!(positions(&all), expected, "{backend:?}, limit {limit}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_cursor_from_before_the_index_still_pages() {
    each_backend(
        StoreOptions::default(),
        |TestStore { store, backend, .. }| async move {
            // Rows as stored before records held several events: index 0 each.
            let logs = records(now(), 200..210, 1);
            store.write(&logs).await.unwrap();
            let first = store
                .query(&LogQuery {
                    limit: 4,
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            let last = first.logs.last().unwrap();
            // The version-1 cursor an earlier release handed out after the same row.
            let version_1 = URL_SAFE_NO_PAD.encode(
                serde_json::to_vec(&(
                    1,
                    last.timestamp.timestamp_micros(),
                    &last.kafka.topic,
                    last.kafka.partition,
                    last.kafka.offset,
                ))
                .unwrap(),
            );
            assert_ne!(first.next_cursor.as_deref(), Some(version_1.as_str()));
            let resumed = |cursor: String| {
                let store = store.clone();
                async move {
                    walk(
                        &store,
                        &LogQuery {
                            limit: 4,
                            cursor: Some(cursor),
                            ..LogQuery::default()
                        },
                    )
                    .await
                }
            };
            let from_old = resumed(version_1).await;
            let from_new = resumed(first.next_cursor.clone().unwrap()).await;
            assert_eq!(positions(&from_old), positions(&from_new), "{backend:?}");
            assert_eq!(from_old.len(), 6, "{backend:?}");
        },
    )
    .await;
}
