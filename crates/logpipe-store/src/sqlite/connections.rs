//! The SQLite store's two connections to one database file, and the time budget of a search.
//!
//! The writer takes the consumer's batches, migrations and retention; the reader takes the query
//! API's searches. The file is in WAL mode, so a search reads a snapshot while the writer goes on
//! committing: a slow search never delays a batch (and so never delays an offset commit). The
//! reader is opened read-only, so a bug in a read path cannot write.
//!
//! The writer sits behind a `std::sync::Mutex` (taken only on blocking threads, never held across
//! an `.await`). The reader sits behind a `tokio::sync::Mutex`: searches queue for it in order,
//! and the wait counts towards the search's budget, so a queue of slow searches answers "store
//! unavailable" in time instead of piling up behind each other.
//!
//! A budget is enforced inside SQLite with a progress handler: every [`PROGRESS_STEPS`] virtual
//! machine instructions it checks the deadline, and past it the statement stops with
//! `SQLITE_INTERRUPT`, which becomes [`StoreError::Unavailable`] (an outage: the query API
//! answers 503 `store_unavailable`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::blocking;
use crate::error::{from_sqlite, StoreError};

/// How long a statement waits for another connection (or process) holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Virtual machine instructions between two deadline checks: about a microsecond of work, so a
/// search stops within a millisecond of its deadline and the check itself costs nothing.
const PROGRESS_STEPS: i32 = 1_000;

/// The reader, shared by every clone of the store.
pub(super) type Reader = Arc<tokio::sync::Mutex<Connection>>;

/// How the writer makes a commit durable.
#[derive(Debug, Clone, Copy)]
pub(super) enum Durability {
    /// `synchronous = FULL`: a committed batch survives a power cut, which the consumer relies
    /// on when it commits offsets.
    Full,
    /// `synchronous = OFF`: for the temporary database, which nothing reads after a restart.
    None,
}

/// Opens (creating if missing) the writer of the database at `path`, in WAL mode.
pub(super) fn open_writer(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    let context = "opening the SQLite database";
    let fail = |err: rusqlite::Error| from_sqlite(context, &err);
    let connection = Connection::open(path).map_err(fail)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    connection
        .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(fail)?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::None => "OFF",
    };
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(fail)?;
    Ok(connection)
}

/// Opens the read-only reader of the database at `path`; call after [`open_writer`] (which
/// creates the file and puts it in WAL mode).
pub(super) fn open_reader(path: &Path) -> Result<Reader, StoreError> {
    let context = "opening the SQLite database for queries";
    let fail = |err: rusqlite::Error| from_sqlite(context, &err);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(fail)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    Ok(Arc::new(tokio::sync::Mutex::new(connection)))
}

/// Runs `work` on the reader, on the blocking thread pool, within `budget` (waiting for the
/// reader included). None: no bound.
pub(super) async fn read_within<T, F>(
    reader: &Reader,
    budget: Option<Duration>,
    work: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let Some(budget) = budget else {
        let connection = Arc::clone(reader).lock_owned().await;
        return blocking(move || work(&connection)).await;
    };
    let deadline = Instant::now() + budget;
    let connection = tokio::time::timeout(budget, Arc::clone(reader).lock_owned())
        .await
        .map_err(|_| over_budget(budget))?;
    blocking(move || {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        connection.progress_handler(
            PROGRESS_STEPS,
            Some(move || {
                let late = Instant::now() >= deadline;
                if late {
                    flag.store(true, Ordering::Relaxed);
                }
                late
            }),
        );
        let result = work(&connection);
        connection.progress_handler(0, None::<fn() -> bool>);
        match result {
            Err(_) if fired.load(Ordering::Relaxed) => Err(over_budget(budget)),
            other => other,
        }
    })
    .await
}

/// The error of a search stopped at its budget: an outage, so the client is told to retry (503).
fn over_budget(budget: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "querying logs: the search ran longer than its budget of {budget:?} and was stopped; \
         narrow it (since/until, service, level)"
    ))
}
