//! Rows in and out of the SQLite `logs` table: [`OwnedRow`], one record owned and sanitised for
//! the writer's blocking thread, and [`stored_log`], one row read back as a [`StoredLog`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::DateTime;
use logpipe_model::{EnrichedLog, Fingerprint};
use rusqlite::params;

use crate::error::{from_sqlite, StoreError};
use crate::sanitize;
use crate::types::{KafkaPosition, StoredLog};

/// One record, owned and sanitised, ready to bind.
pub(super) struct OwnedRow {
    ts: i64,
    processed_at: i64,
    kafka_ts: Option<i64>,
    ingested_at: Option<i64>,
    kafka_offset: i64,
    fingerprint: i64,
    kafka_partition: i32,
    kafka_index: u32,
    severity_number: u8,
    level: &'static str,
    service: String,
    kafka_topic: Arc<str>,
    host: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    request_id: Option<String>,
    message: String,
    template: String,
    attributes: Option<String>,
    tags: String,
}

impl OwnedRow {
    pub(super) fn new(log: &EnrichedLog) -> OwnedRow {
        let event = &log.event;
        // Same sanitising as PostgreSQL, so both stores hold the same text.
        let tags = serde_json::to_string(&*log.tags).unwrap_or_else(|_| "{}".to_owned());
        OwnedRow {
            ts: event.timestamp.timestamp_micros(),
            processed_at: log.processed_at.timestamp_micros(),
            kafka_ts: log.kafka_timestamp.map(|at| at.timestamp_micros()),
            ingested_at: log.ingested_at.map(|at| at.timestamp_micros()),
            kafka_offset: log.coordinates.offset,
            fingerprint: log.fingerprint.as_i64(),
            kafka_partition: log.coordinates.partition,
            kafka_index: log.coordinates.index,
            severity_number: log.severity_number,
            level: event.level.as_str(),
            service: event.service.as_str().to_owned(),
            kafka_topic: Arc::clone(&log.coordinates.topic),
            host: event.host.as_ref().map(|host| host.as_str().to_owned()),
            trace_id: event.trace_id.as_ref().map(|id| id.as_str().to_owned()),
            span_id: event.span_id.as_ref().map(|id| id.as_str().to_owned()),
            request_id: log
                .request_id
                .as_deref()
                .map(|id| sanitize::text(id).into_owned()),
            message: sanitize::text(event.message.as_str()).into_owned(),
            template: sanitize::text(&log.template).into_owned(),
            attributes: event
                .attributes
                .as_deref()
                .map(|raw| sanitize::json(raw.get()).into_owned()),
            tags: sanitize::json(&tags).into_owned(),
        }
    }

    /// Runs the prepared [`INSERT`] for this row; returns 1 if inserted, 0 if a duplicate.
    pub(super) fn insert(
        &self,
        statement: &mut rusqlite::CachedStatement<'_>,
    ) -> rusqlite::Result<usize> {
        statement.execute(params![
            self.ts,
            self.processed_at,
            self.kafka_ts,
            self.ingested_at,
            self.kafka_offset,
            self.fingerprint,
            self.kafka_partition,
            self.severity_number,
            self.level,
            self.service,
            &*self.kafka_topic,
            self.host,
            self.trace_id,
            self.span_id,
            self.request_id,
            self.message,
            self.template,
            self.attributes,
            self.tags,
            self.kafka_index,
        ])
    }
}

/// One row of [`SELECT_COLUMNS`](super::SELECT_COLUMNS) as a [`StoredLog`].
pub(super) fn stored_log(row: &rusqlite::Row<'_>) -> Result<StoredLog, StoreError> {
    let get_err = |err: rusqlite::Error| from_sqlite("reading a stored log", &err);
    let bad = |what: &str| StoreError::Schema(format!("reading a stored log: {what}"));
    let instant = |micros: i64| {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| bad("timestamp out of range"))
    };
    let optional_instant = |micros: Option<i64>| micros.map(instant).transpose();
    let level: String = row.get(1).map_err(get_err)?;
    let attributes: Option<String> = row.get(7).map_err(get_err)?;
    let tags: String = row.get(18).map_err(get_err)?;
    Ok(StoredLog {
        timestamp: instant(row.get(0).map_err(get_err)?)?,
        level: level
            .parse()
            .map_err(|_| bad(&format!("`{level}` is not a log level")))?,
        service: row.get(2).map_err(get_err)?,
        message: row.get(3).map_err(get_err)?,
        host: row.get(4).map_err(get_err)?,
        trace_id: row.get(5).map_err(get_err)?,
        span_id: row.get(6).map_err(get_err)?,
        attributes: attributes
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|_| bad("attributes are not JSON"))?,
        severity_number: row.get(8).map_err(get_err)?,
        fingerprint: Fingerprint::from_i64(row.get(9).map_err(get_err)?).to_string(),
        template: row.get(10).map_err(get_err)?,
        kafka: KafkaPosition {
            topic: row.get(11).map_err(get_err)?,
            partition: row.get(12).map_err(get_err)?,
            offset: row.get(13).map_err(get_err)?,
            index: row.get(19).map_err(get_err)?,
            timestamp: optional_instant(row.get(14).map_err(get_err)?)?,
        },
        ingested_at: optional_instant(row.get(15).map_err(get_err)?)?,
        processed_at: instant(row.get(16).map_err(get_err)?)?,
        request_id: row.get(17).map_err(get_err)?,
        tags: serde_json::from_str::<BTreeMap<String, String>>(&tags)
            .map_err(|_| bad("tags are not a JSON object of strings"))?,
    })
}
