//! The SQLite schema, and `migrate()`: creating it, or bringing a file written by an earlier
//! version up to date.
//!
//! The unique key is `(kafka_topic, kafka_partition, kafka_offset, kafka_index)`: a Kafka record
//! may hold several events, told apart by `kafka_index` (their position in the record, 0 for a
//! one-event record). Files written before had no `kafka_index` and the key on the first three
//! columns. SQLite cannot change a table's constraints, so such a file is migrated by rebuilding
//! the table (its rows copied with index 0, which is exact: every row written then came from a
//! one-event record), the old table dropped and the new one renamed, in one transaction: an
//! interrupted migration leaves the old table as it was, and the next `migrate()` starts again.
//! The rebuild holds the write lock for as long as it copies; the embedded store is small.

use rusqlite::{Connection, TransactionBehavior};
use tracing::info;

use crate::error::StoreError;

/// The columns and the unique key of `logs`.
const TABLE: &str = "(
    ts              INTEGER NOT NULL, -- event time, microseconds since the Unix epoch (UTC)
    processed_at    INTEGER NOT NULL,
    kafka_ts        INTEGER,
    ingested_at     INTEGER,
    kafka_offset    INTEGER NOT NULL,
    fingerprint     INTEGER NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_index     INTEGER NOT NULL DEFAULT 0, -- the event's position within its record
    severity_number INTEGER NOT NULL,
    level           TEXT NOT NULL,
    service         TEXT NOT NULL,
    kafka_topic     TEXT NOT NULL,
    host            TEXT,
    trace_id        TEXT,
    span_id         TEXT,
    request_id      TEXT,
    message         TEXT NOT NULL,
    template        TEXT NOT NULL,
    attributes      TEXT,             -- JSON object
    tags            TEXT NOT NULL,    -- JSON object
    UNIQUE (kafka_topic, kafka_partition, kafka_offset, kafka_index)
) STRICT";

/// The indexes of `logs`.
const INDEXES: &str = "
-- The page order and its keyset comparison.
CREATE INDEX IF NOT EXISTS logs_position_idx
    ON logs (ts, kafka_topic, kafka_partition, kafka_offset, kafka_index);
CREATE INDEX IF NOT EXISTS logs_service_ts_idx ON logs (service, ts);
CREATE INDEX IF NOT EXISTS logs_level_ts_idx ON logs (level, ts);
";

/// The columns a file written before `kafka_index` has, all kept by the rebuild.
const EARLIER_COLUMNS: &str = "ts, processed_at, kafka_ts, ingested_at, kafka_offset, \
     fingerprint, kafka_partition, severity_number, level, service, kafka_topic, host, trace_id, \
     span_id, request_id, message, template, attributes, tags";

/// The shape of the `logs` table found in a file.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Missing,
    /// Written before `kafka_index` existed.
    Earlier,
    Current,
}

/// Creates the schema, or rebuilds a table of the earlier shape; a no-op on a current file.
pub(super) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let failed =
        |err: rusqlite::Error| StoreError::Schema(format!("migrating the SQLite schema: {err}"));
    // IMMEDIATE: the shape is read under the write lock, so two processes migrating one file
    // cannot both rebuild.
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    match found(&tx).map_err(failed)? {
        Found::Missing => {
            tx.execute_batch(&format!("CREATE TABLE logs {TABLE};"))
                .map_err(failed)?;
        }
        Found::Earlier => {
            let rows = tx
                .execute_batch(&format!(
                    "CREATE TABLE logs_rebuild {TABLE};
                     INSERT INTO logs_rebuild ({EARLIER_COLUMNS}) SELECT {EARLIER_COLUMNS} FROM logs;
                     DROP TABLE logs;
                     ALTER TABLE logs_rebuild RENAME TO logs;"
                ))
                .and_then(|()| tx.query_row("SELECT count(*) FROM logs", [], |row| row.get::<_, i64>(0)))
                .map_err(failed)?;
            info!(
                rows,
                "rebuilt the SQLite logs table with kafka_index in its unique key"
            );
        }
        Found::Current => {}
    }
    tx.execute_batch(INDEXES).map_err(failed)?;
    tx.commit().map_err(failed)
}

fn found(connection: &Connection) -> rusqlite::Result<Found> {
    let columns: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('logs')")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if columns.is_empty() {
        Found::Missing
    } else if columns.iter().any(|column| column == "kafka_index") {
        Found::Current
    } else {
        Found::Earlier
    })
}
