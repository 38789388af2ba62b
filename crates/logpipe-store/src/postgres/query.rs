//! Reading logs back: the query API's search, one page at a time, newest first.
//!
//! The SQL holds only the filters the query uses (no `$1 IS NULL OR ...`, which hides the
//! conditions from the planner). Paging is keyset: `(ts, kafka_topic, kafka_partition,
//! kafka_offset, kafka_index) < (cursor)`, which the unique key `logs_event_key` answers
//! directly, scanned backwards; deep pages cost the same as the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use super::PgStore;
use crate::error::{from_postgres, StoreError};
use crate::plan::QueryPlan;
use crate::types::{KafkaPosition, LogPage, LogQuery, StoredLog};

/// The columns read, in the order [`stored_log`] expects.
const SELECT_COLUMNS: &str = "ts, level, service, message, host, trace_id, span_id, attributes, \
     severity_number, fingerprint, template, kafka_topic, kafka_partition, kafka_offset, \
     kafka_ts, ingested_at, processed_at, request_id, tags, kafka_index";

pub(super) async fn query(store: &PgStore, query: &LogQuery) -> Result<LogPage, StoreError> {
    let plan = QueryPlan::new(query)?;
    let (statement, params) = build(&store.sql().logs, &plan);
    let client = store.client().await?;
    // Cached per connection: the statement text depends only on which filters are present. Text
    // searches too: preparing them afresh each time (so that every search is planned for its own
    // pattern) made a burst of worst-case searches hold ingest back to a tenth of its rate
    // (`query_burst`'s PostgreSQL test: 120 events accepted in the burst phase, 960 cached).
    let prepared = client
        .prepare_cached(&statement)
        .await
        .map_err(|err| from_postgres("preparing a log query", &err))?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| &**param as _).collect();
    let rows = client
        .query(&prepared, &refs)
        .await
        .map_err(|err| from_postgres("querying logs", &err))?;
    let logs = rows.iter().map(stored_log).collect::<Result<Vec<_>, _>>()?;
    Ok(plan.page(logs))
}

/// `EXPLAIN` of the statement [`query`] runs, with the same parameters (see `PgStore::explain`).
pub(super) async fn explain(store: &PgStore, query: &LogQuery) -> Result<String, StoreError> {
    let plan = QueryPlan::new(query)?;
    let (statement, params) = build(&store.sql().logs, &plan);
    let client = store.client().await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| &**param as _).collect();
    let rows = client
        .query(&format!("EXPLAIN {statement}"), &refs)
        .await
        .map_err(|err| from_postgres("explaining a log query", &err))?;
    Ok(rows
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The statement and its parameters for `plan`.
fn build(logs_table: &str, plan: &QueryPlan) -> (String, Vec<Param>) {
    let mut sql = format!("SELECT {SELECT_COLUMNS} FROM {logs_table} WHERE true");
    let mut params: Vec<Param> = Vec::new();
    // Appends a parameter, returning its placeholder (`$3`).
    let mut bind = |value: Param| {
        params.push(value);
        format!("${}", params.len())
    };
    // `write!` to a String cannot fail.
    if let Some(service) = &plan.service {
        let _ = write!(sql, " AND service = {}", bind(Box::new(service.clone())));
    }
    if let Some(level) = plan.level {
        // A literal, not a parameter: the planner must see the value to use the partial level
        // index (`schema::INDEXED_LEVELS`). Safe: one of six fixed upper-case words.
        let _ = write!(sql, " AND level = '{}'", level.as_str());
    }
    if let Some(since) = plan.since {
        let _ = write!(sql, " AND ts >= {}", bind(Box::new(since)));
    }
    if let Some(until) = plan.until {
        let _ = write!(sql, " AND ts < {}", bind(Box::new(until)));
    }
    if let Some(pattern) = &plan.like_pattern {
        let _ = write!(
            sql,
            " AND message ILIKE {} ESCAPE '\\'",
            bind(Box::new(pattern.clone()))
        );
    }
    if let Some(after) = &plan.after {
        let ts = bind(Box::new(after.timestamp));
        let topic = bind(Box::new(after.topic.clone()));
        let partition = bind(Box::new(after.partition));
        let offset = bind(Box::new(after.offset));
        let index = bind(Box::new(super::index_column(after.index)));
        // `ts <= ...` repeats the first term on its own: the (service, ts) and (level, ts)
        // indexes can use it, the row comparison only the position key can.
        let _ = write!(
            sql,
            " AND ts <= {ts} AND (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index) < \
             ({ts}, {topic}, {partition}, {offset}, {index})"
        );
    }
    let limit = bind(Box::new(plan.fetch()));
    let _ = write!(
        sql,
        " ORDER BY ts DESC, kafka_topic DESC, kafka_partition DESC, kafka_offset DESC, \
         kafka_index DESC LIMIT {limit}"
    );
    (sql, params)
}

/// One row of [`SELECT_COLUMNS`] as a [`StoredLog`].
fn stored_log(row: &Row) -> Result<StoredLog, StoreError> {
    let unexpected = |err: tokio_postgres::Error| {
        StoreError::Schema(format!(
            "reading a stored log: unexpected column value: {err}"
        ))
    };
    let level: &str = row.try_get(1).map_err(unexpected)?;
    let level = level.parse().map_err(|_| {
        StoreError::Schema(format!(
            "reading a stored log: `{level}` is not a log level"
        ))
    })?;
    let severity_number: i16 = row.try_get(8).map_err(unexpected)?;
    let fingerprint: i64 = row.try_get(9).map_err(unexpected)?;
    let tags: Json<BTreeMap<String, String>> = row.try_get(18).map_err(unexpected)?;
    let index: i32 = row.try_get(19).map_err(unexpected)?;
    let index = u32::try_from(index).map_err(|_| {
        StoreError::Schema(format!(
            "reading a stored log: kafka_index {index} is negative"
        ))
    })?;
    Ok(StoredLog {
        timestamp: row.try_get::<_, DateTime<Utc>>(0).map_err(unexpected)?,
        level,
        service: row.try_get(2).map_err(unexpected)?,
        message: row.try_get(3).map_err(unexpected)?,
        host: row.try_get(4).map_err(unexpected)?,
        trace_id: row.try_get(5).map_err(unexpected)?,
        span_id: row.try_get(6).map_err(unexpected)?,
        attributes: row.try_get(7).map_err(unexpected)?,
        severity_number: u8::try_from(severity_number).unwrap_or(0),
        fingerprint: logpipe_model::Fingerprint::from_i64(fingerprint).to_string(),
        template: row.try_get(10).map_err(unexpected)?,
        kafka: KafkaPosition {
            topic: row.try_get(11).map_err(unexpected)?,
            partition: row.try_get(12).map_err(unexpected)?,
            offset: row.try_get(13).map_err(unexpected)?,
            index,
            timestamp: row.try_get(14).map_err(unexpected)?,
        },
        ingested_at: row.try_get(15).map_err(unexpected)?,
        processed_at: row.try_get(16).map_err(unexpected)?,
        request_id: row.try_get(17).map_err(unexpected)?,
        tags: tags.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogQuery;
    use logpipe_model::Level;

    #[test]
    fn only_present_filters_appear() {
        let plan = QueryPlan::new(&LogQuery::default()).unwrap();
        let (sql, params) = build("\"s\".\"logs\"", &plan);
        assert!(sql.ends_with(
            "FROM \"s\".\"logs\" WHERE true ORDER BY ts DESC, kafka_topic DESC, \
             kafka_partition DESC, kafka_offset DESC, kafka_index DESC LIMIT $1"
        ));
        assert_eq!(params.len(), 1);

        let plan = QueryPlan::new(&LogQuery {
            service: Some("api".into()),
            level: Some(Level::Error),
            text: Some("Time".into()),
            ..LogQuery::default()
        })
        .unwrap();
        let (sql, params) = build("logs", &plan);
        assert!(sql.contains(
            "WHERE true AND service = $1 AND level = 'ERROR' AND message ILIKE $2 ESCAPE '\\' \
             ORDER BY"
        ));
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn the_keyset_compares_the_whole_key() {
        let after = crate::cursor::Cursor {
            timestamp: chrono::Utc::now(),
            topic: "t".into(),
            partition: 1,
            offset: 2,
            index: 3,
        };
        let plan = QueryPlan::new(&LogQuery {
            cursor: Some(after.encode()),
            ..LogQuery::default()
        })
        .unwrap();
        let (sql, params) = build("logs", &plan);
        assert!(
            sql.contains(
                "AND ts <= $1 AND (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index) < \
                 ($1, $2, $3, $4, $5) ORDER BY"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 6);
    }
}
