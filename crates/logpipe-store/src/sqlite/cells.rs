//! [`count_cells`] on SQLite: the same grouped statement as PostgreSQL's (`postgres/cells.rs`),
//! on the read-only connection, so counting never holds the writer.
//!
//! The cuts travel as one JSON array of `[topic, partition, through]` (`json_each`, built into
//! the bundled SQLite). Timestamps are integer microseconds, so the minute is an integer floor:
//! `ts - ((ts % 60e6) + 60e6) % 60e6` is the start of the minute also before 1970 (`%` keeps the
//! sign of `ts`), then divided down to seconds.

use rusqlite::types::Value;

use super::connections;
use super::SqliteStore;
use crate::cells::{distinct_cuts, CellCount, CellQuery, Counted, Tally};
use crate::error::{from_sqlite, StoreError};

pub(super) async fn count_cells(
    store: &SqliteStore,
    query: &CellQuery,
) -> Result<CellCount, StoreError> {
    let cuts: Vec<serde_json::Value> = distinct_cuts(&query.cuts)?
        .into_iter()
        .map(|cut| serde_json::json!([cut.topic, cut.partition, cut.through]))
        .collect();
    let mut params = vec![
        Value::Integer(query.from.timestamp_micros()),
        Value::Integer(query.until.timestamp_micros()),
        Value::Text(serde_json::Value::Array(cuts).to_string()),
    ];
    if let Some(service) = &query.service {
        params.push(Value::Text(service.clone()));
    }
    let sql = statement(query.service.is_some());
    let reader = &store.inner.reader;
    connections::read_within(reader, store.query_timeout, move |connection| {
        let fail = |err: rusqlite::Error| from_sqlite("counting stored events per minute", &err);
        let mut statement = connection.prepare_cached(&sql).map_err(fail)?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(fail)?;
        let mut tally = Tally::default();
        while let Some(row) = rows.next().map_err(fail)? {
            let events: i64 = row.get(6).map_err(fail)?;
            if let Some(topic) = row.get::<_, Option<String>>(0).map_err(fail)? {
                tally.uncut(topic, row.get(1).map_err(fail)?, events);
                continue;
            }
            tally.counted(Counted {
                minute: row.get(2).map_err(fail)?,
                service: row.get(3).map_err(fail)?,
                level: row.get(4).map_err(fail)?,
                fingerprint: row.get(5).map_err(fail)?,
                template: row.get(7).map_err(fail)?,
                events,
            })?;
        }
        Ok(tally.finish())
    })
    .await
}

/// The counting statement; columns as in PostgreSQL's. `MATERIALIZED`: the cuts are decoded
/// once, not once per row read.
fn statement(by_service: bool) -> String {
    let service = if by_service {
        " AND l.service = ?4"
    } else {
        ""
    };
    format!(
        "WITH cuts(topic, part, through) AS MATERIALIZED \
             (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?3)) \
         SELECT CASE WHEN c.topic IS NULL THEN l.kafka_topic END, \
                CASE WHEN c.topic IS NULL THEN l.kafka_partition END, \
                CASE WHEN c.topic IS NOT NULL \
                     THEN (l.ts - ((l.ts % 60000000) + 60000000) % 60000000) / 60000000 * 60 \
                END, \
                CASE WHEN c.topic IS NOT NULL THEN l.service END, \
                CASE WHEN c.topic IS NOT NULL THEN l.level END, \
                CASE WHEN c.topic IS NOT NULL AND l.level IN ('ERROR', 'FATAL') \
                     THEN l.fingerprint END, \
                count(*), \
                min(CASE WHEN c.topic IS NOT NULL AND l.level IN ('ERROR', 'FATAL') \
                         THEN l.template END) \
         FROM logs l \
         LEFT JOIN cuts c ON c.topic = l.kafka_topic AND c.part = l.kafka_partition \
         WHERE l.ts >= ?1 AND l.ts < ?2 \
           AND (c.topic IS NULL OR l.kafka_offset <= c.through){service} \
         GROUP BY 1, 2, 3, 4, 5, 6"
    )
}
