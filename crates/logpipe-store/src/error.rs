//! [`StoreError`] and the classification of backend errors: is this an outage (the consumer
//! pauses and retries the same batch) or is it this data (the consumer isolates the record)?
//!
//! Every PostgreSQL error goes through [`classify_sqlstate`] and every SQLite error through
//! [`from_sqlite`]; call sites never decide on their own. When in doubt the answer is "outage":
//! retrying a batch that can never succeed stalls the pipeline visibly (health turns red, lag
//! grows), while calling an outage a rejection would send good records to the dead-letter queue.

use deadpool_postgres::PoolError;
use rusqlite::ErrorCode;
use tokio_postgres::error::SqlState;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or cannot work right now: connection refused, reset or
    /// terminated, pool timeout, server shutting down, too many connections, disk full,
    /// serialization failure or deadlock. Retry the same batch later; nothing was written.
    #[error("log store unavailable: {0}")]
    Unavailable(String),
    /// The store refused this data (a value it cannot hold). Retrying the same batch fails the
    /// same way; the consumer should write the records one by one to find the bad one.
    #[error("log store rejected the data: {0}")]
    Rejected(String),
    /// The query was invalid: a cursor that is not one of ours, a limit out of range.
    #[error("invalid log query: {0}")]
    InvalidQuery(String),
    /// The store is not set up as this code expects: migration failed, a table or column is
    /// missing, the store URL is unusable.
    #[error("log store schema problem: {0}")]
    Schema(String),
}

impl StoreError {
    /// Whether the failure is the store's and not the data's, so the right reaction is to pause
    /// and retry the same batch later.
    ///
    /// True for [`Unavailable`](StoreError::Unavailable) and also for
    /// [`Schema`](StoreError::Schema): a missing table (say, migrations not yet run by another
    /// instance) fails every record alike, and treating it as a record failure would flood the
    /// dead-letter queue.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Schema(_))
    }
}

/// The three ways a backend error can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// → [`StoreError::Unavailable`]
    Outage,
    /// → [`StoreError::Rejected`]
    Data,
    /// → [`StoreError::Schema`]
    Schema,
}

impl ErrorClass {
    fn into_error(self, message: String) -> StoreError {
        match self {
            ErrorClass::Outage => StoreError::Unavailable(message),
            ErrorClass::Data => StoreError::Rejected(message),
            ErrorClass::Schema => StoreError::Schema(message),
        }
    }
}

/// THE classification of PostgreSQL errors. `None` means the client got no SQLSTATE: an I/O
/// error, a closed connection, a connect timeout, a protocol error: all outages.
pub(crate) fn classify_sqlstate(code: Option<&SqlState>) -> ErrorClass {
    let Some(code) = code else {
        return ErrorClass::Outage;
    };
    let code = code.code();
    let class = code.get(..2).unwrap_or(code);
    match (class, code) {
        // Data exceptions (22: NUL in text, bad encoding, numeric out of range, invalid JSON) and
        // integrity violations (23): this data, not the store. 54 (program limit exceeded) is a
        // value too large for an index row or a row too wide: also this data.
        ("22" | "23" | "54", _) => ErrorClass::Data,
        // The server is going away or not ready: 57P01 admin_shutdown (pg_terminate_backend),
        // 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P04 database_dropped, 57014
        // query_canceled (statement_timeout).
        ("57", _) => ErrorClass::Outage,
        // Connection exceptions (08), insufficient resources (53: disk full, out of memory, too
        // many connections), transaction rollbacks (40: serialization failure, deadlock), system
        // errors (58: I/O), internal errors (XX), invalid authorization (28: credentials changed),
        // a read-only transaction (25006: we are connected to a standby after a failover), lock
        // timeouts and objects in use (55P03, 55006): the store, not the data.
        ("08" | "53" | "40" | "58" | "XX" | "28", _) => ErrorClass::Outage,
        (_, "25006" | "55P03" | "55006") => ErrorClass::Outage,
        // Syntax errors, undefined tables and columns, missing schemas (42, 3F), unsupported
        // features (0A): the schema is not what this code expects.
        ("42" | "3F" | "0A", _) => ErrorClass::Schema,
        // Anything else: the safe side (see the module comment).
        _ => ErrorClass::Outage,
    }
}

/// Converts a PostgreSQL client error; `context` says what was being done ("writing a batch").
pub(crate) fn from_postgres(context: &str, err: &tokio_postgres::Error) -> StoreError {
    let mut message = match err.as_db_error() {
        Some(db) => format!(
            "{context}: {} {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        // The display of a non-database error is its kind only (`error performing TLS
        // handshake`); the causes say what happened (`invalid peer certificate: ...`).
        None => {
            let mut message = format!("{context}: {err}");
            let mut cause = std::error::Error::source(err);
            while let Some(inner) = cause {
                let text = inner.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                cause = inner.source();
            }
            message
        }
    };
    if let Some(hint) = tls_hint(&message) {
        message.push_str(hint);
    }
    classify_sqlstate(err.code()).into_error(message)
}

/// What to do about a connection refused over TLS, in either direction.
fn tls_hint(message: &str) -> Option<&'static str> {
    if message.contains("no pg_hba.conf entry") && message.contains("no encryption") {
        // The server has `hostssl` lines for this user, no `host` line: it demands TLS.
        Some(
            "; the server requires TLS for this connection (pg_hba.conf has no entry without \
             encryption): set sslmode to require, verify-ca or verify-full (postgres.sslmode, \
             or sslmode= in the URL)",
        )
    } else if message.contains("server does not support TLS") {
        Some(
            "; the server does not accept TLS (ssl = off): turn ssl on in postgresql.conf, or \
             set sslmode to prefer or disable (postgres.sslmode, or sslmode= in the URL)",
        )
    } else {
        None
    }
}

/// Converts an error from the connection pool.
pub(crate) fn from_pool(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(err) => from_postgres("connecting to PostgreSQL", &err),
        // Timeouts, a closed pool, a failing hook: no connection to work with.
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

/// THE classification of SQLite errors.
pub(crate) fn classify_sqlite(err: &rusqlite::Error) -> ErrorClass {
    match err {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            // Another process holds the file, the disk is full or failing, the file cannot be
            // opened or is damaged: the store, not the data.
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::NotADatabase
            | ErrorCode::PermissionDenied
            | ErrorCode::OperationInterrupted => ErrorClass::Outage,
            // A constraint other than the de-duplicating one, a value too big, a type mismatch.
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                ErrorClass::Data
            }
            // SQLITE_ERROR and the rest: "no such table", SQL errors: the schema.
            _ => ErrorClass::Schema,
        },
        // A stored value of an unexpected type, a statement that does not match its columns.
        _ => ErrorClass::Schema,
    }
}

/// Converts a SQLite error; `context` says what was being done.
pub(crate) fn from_sqlite(context: &str, err: &rusqlite::Error) -> StoreError {
    classify_sqlite(err).into_error(format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_error_classes() {
        let table: &[(SqlState, ErrorClass)] = &[
            // Outages.
            (SqlState::CONNECTION_EXCEPTION, ErrorClass::Outage),
            (SqlState::CONNECTION_FAILURE, ErrorClass::Outage),
            (
                SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                ErrorClass::Outage,
            ),
            (SqlState::ADMIN_SHUTDOWN, ErrorClass::Outage),
            (SqlState::CRASH_SHUTDOWN, ErrorClass::Outage),
            (SqlState::CANNOT_CONNECT_NOW, ErrorClass::Outage),
            (SqlState::QUERY_CANCELED, ErrorClass::Outage),
            (SqlState::TOO_MANY_CONNECTIONS, ErrorClass::Outage),
            (SqlState::DISK_FULL, ErrorClass::Outage),
            (SqlState::OUT_OF_MEMORY, ErrorClass::Outage),
            (SqlState::T_R_SERIALIZATION_FAILURE, ErrorClass::Outage),
            (SqlState::T_R_DEADLOCK_DETECTED, ErrorClass::Outage),
            (SqlState::IO_ERROR, ErrorClass::Outage),
            (SqlState::INTERNAL_ERROR, ErrorClass::Outage),
            (SqlState::INVALID_PASSWORD, ErrorClass::Outage),
            (SqlState::READ_ONLY_SQL_TRANSACTION, ErrorClass::Outage),
            (SqlState::LOCK_NOT_AVAILABLE, ErrorClass::Outage),
            // This data.
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, ErrorClass::Data), // NUL in text
            (SqlState::UNTRANSLATABLE_CHARACTER, ErrorClass::Data),    // \u0000 in jsonb
            (SqlState::INVALID_TEXT_REPRESENTATION, ErrorClass::Data),
            (SqlState::NUMERIC_VALUE_OUT_OF_RANGE, ErrorClass::Data),
            (SqlState::UNIQUE_VIOLATION, ErrorClass::Data),
            (SqlState::NOT_NULL_VIOLATION, ErrorClass::Data),
            (SqlState::CHECK_VIOLATION, ErrorClass::Data),
            (SqlState::PROGRAM_LIMIT_EXCEEDED, ErrorClass::Data),
            // The schema.
            (SqlState::UNDEFINED_TABLE, ErrorClass::Schema),
            (SqlState::UNDEFINED_COLUMN, ErrorClass::Schema),
            (SqlState::SYNTAX_ERROR, ErrorClass::Schema),
            (SqlState::INVALID_SCHEMA_NAME, ErrorClass::Schema),
            (SqlState::FEATURE_NOT_SUPPORTED, ErrorClass::Schema),
            // Unknown: the safe side.
            (SqlState::from_code("ZZ999"), ErrorClass::Outage),
        ];
        for (code, expected) in table {
            assert_eq!(
                classify_sqlstate(Some(code)),
                *expected,
                "SQLSTATE {}",
                code.code()
            );
        }
        assert_eq!(classify_sqlstate(None), ErrorClass::Outage);
    }

    #[test]
    fn sqlite_error_classes() {
        let failure = |code: i32| {
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("x".into()))
        };
        let table = [
            (rusqlite::ffi::SQLITE_BUSY, ErrorClass::Outage),
            (rusqlite::ffi::SQLITE_LOCKED, ErrorClass::Outage),
            (rusqlite::ffi::SQLITE_FULL, ErrorClass::Outage),
            (rusqlite::ffi::SQLITE_IOERR, ErrorClass::Outage),
            (rusqlite::ffi::SQLITE_CANTOPEN, ErrorClass::Outage),
            (rusqlite::ffi::SQLITE_CONSTRAINT, ErrorClass::Data),
            (rusqlite::ffi::SQLITE_TOOBIG, ErrorClass::Data),
            (rusqlite::ffi::SQLITE_ERROR, ErrorClass::Schema),
        ];
        for (code, expected) in table {
            assert_eq!(
                classify_sqlite(&failure(code)),
                expected,
                "SQLite code {code}"
            );
        }
        assert_eq!(
            classify_sqlite(&rusqlite::Error::InvalidColumnIndex(3)),
            ErrorClass::Schema
        );
    }

    #[test]
    fn outage_means_retry_later() {
        assert!(StoreError::Unavailable("x".into()).is_outage());
        assert!(StoreError::Schema("x".into()).is_outage());
        assert!(!StoreError::Rejected("x".into()).is_outage());
        assert!(!StoreError::InvalidQuery("x".into()).is_outage());
    }
}
