//! Writing a batch: binary COPY straight into `logs`, or, when the batch replays stored records,
//! COPY into a staging table and `INSERT ... ON CONFLICT DO NOTHING` (see the module comment of
//! `postgres`).
//!
//! Rows are encoded by `tokio_postgres`'s `BinaryCopyInWriter` with no copy of the text:
//! strings are borrowed from the [`EnrichedLog`]s (sanitised copies only when they hold a NUL),
//! attributes go out as the JSON text the event already carries, and the tags, shared by every
//! record of a consumer, are serialised once per batch.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::Object;
use logpipe_model::EnrichedLog;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tracing::debug;

use super::{column_types, PgStore, Sql};
use crate::error::{from_postgres, StoreError};
use crate::sanitize;
use crate::types::WriteReport;

/// Name of the per-transaction staging table of the slow path.
const STAGING: &str = "logpipe_staging";

pub(super) async fn write(
    store: &PgStore,
    logs: &[EnrichedLog],
) -> Result<WriteReport, StoreError> {
    if logs.is_empty() {
        return Ok(WriteReport::default());
    }
    let mut client = store.client().await?;
    let sql = store.sql();
    match copy_into_logs(&mut client, sql, logs).await {
        Ok(inserted) => Ok(WriteReport {
            inserted,
            duplicates: 0,
        }),
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            debug!(
                records = logs.len(),
                "batch replays stored records: writing it through the de-duplicating path"
            );
            let inserted = copy_deduplicated(&mut client, sql, logs)
                .await
                .map_err(|err| from_postgres("writing a replayed batch", &err))?;
            Ok(WriteReport {
                inserted,
                duplicates: (logs.len() as u64).saturating_sub(inserted),
            })
        }
        Err(err) => Err(from_postgres("writing a batch", &err)),
    }
}

/// The fast path: one COPY into the partitioned table, in an explicit transaction.
///
/// The transaction is what makes a reported write durable. A prepared COPY runs in the extended
/// protocol, where the server sends the row count (CommandComplete, which is when
/// `tokio_postgres` reports success) before the implicit transaction commits at Sync. A
/// connection terminated in between (seen with `pg_terminate_backend` in the outage test) lost
/// rows that had been reported written, and the consumer committed their offsets. COMMIT's own
/// answer comes after the commit, so a success below means the rows are stored. It costs two
/// short round trips per batch.
async fn copy_into_logs(
    client: &mut Object,
    sql: &Sql,
    logs: &[EnrichedLog],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            sql.logs, sql.columns
        ))
        .await?;
    let tx = client.transaction().await?;
    let sink = tx.copy_in(&statement).await?;
    let inserted = encode(sink, logs).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// The slow path: COPY into a staging table, then insert what is not stored yet. `ON CONFLICT`
/// names no target: it skips a row conflicting with any unique index, which is the key alone
/// (and, while `migrate()` is moving an older database to it, also the earlier key). Also
/// correct when the batch itself repeats coordinates: `ON CONFLICT DO NOTHING` sees rows inserted
/// earlier by the same statement.
async fn copy_deduplicated(
    client: &mut Object,
    sql: &Sql,
    logs: &[EnrichedLog],
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {STAGING} (LIKE {}) ON COMMIT DROP",
        sql.logs
    ))
    .await?;
    let sink = tx
        .copy_in(&format!(
            "COPY {STAGING} ({}) FROM STDIN (FORMAT binary)",
            sql.columns
        ))
        .await?;
    encode(sink, logs).await?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO {logs} ({columns}) SELECT {columns} FROM {STAGING} \
                 ON CONFLICT DO NOTHING",
                logs = sql.logs,
                columns = sql.columns
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Binary COPY of `logs` into `table` (any table with the columns of `logs`), with the same
/// encoding as `write()`: the baseline `examples/copy_bench.rs` measures `write()` against.
pub(crate) async fn copy_raw(
    client: &tokio_postgres::Client,
    table: &str,
    logs: &[EnrichedLog],
) -> Result<u64, tokio_postgres::Error> {
    let columns = super::COLUMNS
        .iter()
        .map(|column| column.name)
        .collect::<Vec<_>>()
        .join(", ");
    let sink = client
        .copy_in(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    encode(sink, logs).await
}

/// Streams `logs` into a COPY in binary format; returns the rows the server counted.
async fn encode(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    logs: &[EnrichedLog],
) -> Result<u64, tokio_postgres::Error> {
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &column_types()));
    let mut tags = TagsCache::default();
    for log in logs {
        let event = &log.event;
        let coordinates = &log.coordinates;
        // Validated newtypes (service, host, trace and span ids) and Kafka topic names cannot
        // contain NUL; free text can.
        let message = sanitize::text(event.message.as_str());
        let template = sanitize::text(&log.template);
        let request_id = log.request_id.as_deref().map(sanitize::text);
        let attributes = event
            .attributes
            .as_deref()
            .map(|raw| sanitize::json(raw.get()));
        let attributes = attributes.as_deref().map(JsonText);
        let tags = JsonText(tags.json(&log.tags));
        let severity_number = i16::from(log.severity_number);
        let fingerprint = log.fingerprint.as_i64();
        let index = super::index_column(coordinates.index);
        let level = event.level.as_str();
        let host = event.host.as_ref().map(|host| host.as_str());
        let trace_id = event.trace_id.as_ref().map(|id| id.as_str());
        let span_id = event.span_id.as_ref().map(|id| id.as_str());
        let request_id = request_id.as_deref();
        // In the order of `COLUMNS`.
        let row: [&(dyn ToSql + Sync); 20] = [
            &event.timestamp,
            &log.processed_at,
            &log.kafka_timestamp,
            &log.ingested_at,
            &coordinates.offset,
            &fingerprint,
            &coordinates.partition,
            &index,
            &severity_number,
            &level,
            &event.service.as_str(),
            &&*coordinates.topic,
            &host,
            &trace_id,
            &span_id,
            &request_id,
            &&*message,
            &&*template,
            &attributes,
            &tags,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.as_mut().finish().await
}

/// JSON text sent as `jsonb` (or `json`) as is: the binary `jsonb` format is a version byte
/// followed by the text, so the attributes the event already holds as text need no parse and no
/// re-serialisation.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    to_sql_checked!();
}

/// The tags of the last record, serialised. Every record of a consumer shares one `Arc` of
/// tags, so a batch serialises them once.
#[derive(Default)]
struct TagsCache {
    last: Option<(Arc<BTreeMap<String, String>>, String)>,
}

impl TagsCache {
    fn json(&mut self, tags: &Arc<BTreeMap<String, String>>) -> &str {
        let hit = matches!(&self.last, Some((cached, _)) if Arc::ptr_eq(cached, tags));
        if !hit {
            // A map of strings always serialises.
            let json = serde_json::to_string(&**tags).unwrap_or_else(|_| "{}".to_owned());
            let json = sanitize::json(&json).into_owned();
            self.last = Some((Arc::clone(tags), json));
        }
        self.last.as_ref().map_or("{}", |(_, json)| json.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_version_byte_then_text() {
        let mut out = BytesMut::new();
        JsonText(r#"{"a":1}"#)
            .to_sql(&Type::JSONB, &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x01{\"a\":1}");
        let mut out = BytesMut::new();
        JsonText("[]").to_sql(&Type::JSON, &mut out).unwrap();
        assert_eq!(&out[..], b"[]");
        assert!(!<JsonText as ToSql>::accepts(&Type::TEXT));
    }

    #[test]
    fn tags_are_serialised_once_per_shared_map() {
        let mut cache = TagsCache::default();
        let tags = Arc::new(BTreeMap::from([("env".to_owned(), "prod\0".to_owned())]));
        assert_eq!(cache.json(&tags), r#"{"env":"prod\ufffd"}"#);
        let before = cache.last.as_ref().map(|(_, json)| json.as_ptr());
        let _ = cache.json(&Arc::clone(&tags));
        assert_eq!(cache.last.as_ref().map(|(_, json)| json.as_ptr()), before);
        let other = Arc::new(BTreeMap::new());
        assert_eq!(cache.json(&other), "{}");
    }
}
