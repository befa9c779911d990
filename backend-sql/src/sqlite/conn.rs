//! The writer connection and the reader connections, and how work waits for them.
//!
//! A point statement takes microseconds, so it runs inline on the calling task: a hop to
//! another thread would cost more than the statement. Waiting, on the other hand, never parks
//! a runtime thread:
//! - for the writer, through a fair (first come, first served) async mutex;
//! - for a reader, through a semaphore counting the free ones;
//! - for another process's lock (`SQLITE_BUSY`), through async backoff until the configured
//!   busy timeout, then [`Error::Unavailable`]. SQLite's own busy handler, which sleeps on the
//!   calling thread, is turned off.
//!
//! Work that takes longer than a short statement (large batches, clearing a namespace,
//! purging, migrations, long key listings) moves to the blocking pool together with the
//! connection it holds, so the runtime keeps serving other tasks meanwhile.

use std::ops::DerefMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use storekit_core::{Error, Result};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};
use tokio::time::Instant;

use super::SqliteConfig;
use super::error::{is_busy, sqlite_error};

/// The WAL file is cut back to this size whenever SQLite restarts it.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;
/// The longest pause between two attempts on a busy database.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub(super) struct Connections {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    /// One permit per reader not in use, so that a reader is awaited, never spun for.
    free_readers: Semaphore,
    next_reader: AtomicUsize,
    busy_timeout: Duration,
}

impl Connections {
    pub(super) fn open(config: &SqliteConfig) -> Result<Self> {
        let Some(path) = &config.path else {
            // A private in-memory database exists only on its one connection, which therefore
            // both reads and writes.
            let conn = Connection::open_in_memory().map_err(sqlite_error)?;
            configure(&conn, config, true)?;
            return Ok(Self::new(conn, Vec::new(), config.busy_timeout));
        };
        let writer = Connection::open(path).map_err(sqlite_error)?;
        configure(&writer, config, true)?;
        let readers = (0..config.readers)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
                configure(&conn, config, false)?;
                Ok(conn)
            })
            .collect::<Result<_>>()?;
        Ok(Self::new(writer, readers, config.busy_timeout))
    }

    fn new(writer: Connection, readers: Vec<Connection>, busy_timeout: Duration) -> Self {
        Self {
            writer: Arc::new(Mutex::new(writer)),
            free_readers: Semaphore::new(readers.len()),
            readers: readers
                .into_iter()
                .map(|conn| Arc::new(Mutex::new(conn)))
                .collect(),
            next_reader: AtomicUsize::new(0),
            busy_timeout,
        }
    }

    /// Runs a short `f` inline on the writer, once the writer is free. `f` runs again if the
    /// database is locked by another process, so it must leave nothing behind when it fails
    /// (one statement, or one transaction).
    pub(super) async fn write<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock().await;
        let mut busy = Backoff::new(self.busy_timeout);
        loop {
            match f(&mut conn) {
                Err(err) if is_busy(&err) => busy.wait(err).await?,
                result => return result,
            }
        }
    }

    /// Like [`Connections::write`], for long work: `f` runs on the blocking pool.
    pub(super) async fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.writer.clone().lock_owned().await;
        run_blocking(conn, f, self.busy_timeout).await
    }

    /// Runs a short `f` inline on a free reader (the writer for an in-memory database).
    pub(super) async fn read<T>(&self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        if self.readers.is_empty() {
            return self.write(|conn| f(conn)).await;
        }
        let _permit = self.free_readers.acquire().await.map_err(closed)?;
        let mut conn = self.free_reader().await;
        let mut busy = Backoff::new(self.busy_timeout);
        loop {
            match f(&mut conn) {
                Err(err) if is_busy(&err) => busy.wait(err).await?,
                result => return result,
            }
        }
    }

    /// Like [`Connections::read`], for long work: `f` runs on the blocking pool.
    pub(super) async fn read_blocking<T, F>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if self.readers.is_empty() {
            return self.write_blocking(move |conn| f(conn)).await;
        }
        let _permit = self.free_readers.acquire().await.map_err(closed)?;
        let conn = self.free_reader().await;
        run_blocking(conn, move |conn| f(conn), self.busy_timeout).await
    }

    /// A reader nobody holds, starting the search at a different one each time. The caller
    /// holds a permit, so one is normally free; if a cancelled caller's blocking work still
    /// holds one, this waits for it.
    async fn free_reader(&self) -> OwnedMutexGuard<Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        for i in 0..count {
            if let Ok(conn) = self.readers[(start + i) % count].clone().try_lock_owned() {
                return conn;
            }
        }
        self.readers[start % count].clone().lock_owned().await
    }
}

/// Runs `f` with `conn` on the blocking pool, retrying with async backoff while the database
/// is locked by another process. If the caller stops waiting, the work still completes (or
/// fails) as a whole and the connection is released when it does.
async fn run_blocking<C, T, F>(mut conn: C, mut f: F, busy_timeout: Duration) -> Result<T>
where
    C: DerefMut<Target = Connection> + Send + 'static,
    F: FnMut(&mut Connection) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let mut busy = Backoff::new(busy_timeout);
    loop {
        let (returned_conn, returned_f, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut conn);
            (conn, f, result)
        })
        .await
        .map_err(|e| Error::backend("sqlite", e))?;
        (conn, f) = (returned_conn, returned_f);
        match result {
            Err(err) if is_busy(&err) => busy.wait(err).await?,
            result => return result,
        }
    }
}

/// Pauses between attempts on a busy database: 1 ms, doubling up to [`MAX_BACKOFF`], until the
/// busy timeout has passed since the first attempt.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            pause: Duration::from_millis(1),
        }
    }

    /// Waits before the next attempt, or returns `err` once the busy timeout has passed.
    async fn wait(&mut self, err: Error) -> Result<()> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(err);
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(MAX_BACKOFF);
        Ok(())
    }
}

fn closed(err: tokio::sync::AcquireError) -> Error {
    Error::backend("sqlite", err)
}

fn configure(conn: &Connection, config: &SqliteConfig, writer: bool) -> Result<()> {
    // Opening may meet another process's lock (switching to WAL, reading the schema); this
    // happens once, at start-up, before the store serves anything.
    conn.busy_timeout(config.busy_timeout)
        .map_err(sqlite_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    if writer {
        // WAL lets readers proceed while the writer writes; NORMAL sync is durable across
        // application crashes and loses at most the last transactions on power loss, the
        // usual trade-off for WAL.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite_error)?;
        // Checkpoint policy: SQLite's auto-checkpoint copies the WAL into the database after
        // any commit that leaves it above 1,000 pages (it runs because every statement is
        // stepped to its end), and this limit cuts the file back when the WAL restarts, so
        // the WAL stays near 4 MB plus the largest transaction.
        conn.pragma_update(None, "wal_autocheckpoint", 1000)
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(sqlite_error)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_error)?;
    // From now on a lock is waited for asynchronously (see the module docs).
    conn.busy_timeout(Duration::ZERO).map_err(sqlite_error)?;
    Ok(())
}
