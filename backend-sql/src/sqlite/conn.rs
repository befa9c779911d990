//! The writer connection and the reader connections, each behind its own lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use rusqlite::{Connection, OpenFlags};
use storekit_core::Result;

use super::SqliteConfig;
use super::error::sqlite_error;

#[derive(Debug)]
pub(super) struct Connections {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Connections {
    pub(super) fn open(config: &SqliteConfig) -> Result<Self> {
        let Some(path) = &config.path else {
            // A private in-memory database exists only on its one connection, which therefore
            // both reads and writes.
            let conn = Connection::open_in_memory().map_err(sqlite_error)?;
            configure(&conn, config, false)?;
            return Ok(Self {
                writer: Mutex::new(conn),
                readers: Vec::new(),
                next_reader: AtomicUsize::new(0),
            });
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
                Ok(Mutex::new(conn))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the writer connection.
    pub(super) fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut lock(&self.writer))
    }

    /// Runs `f` on a free reader connection (waiting for one if all are busy).
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.readers.is_empty() {
            return f(&lock(&self.writer));
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        for i in 0..count {
            match self.readers[(start + i) % count].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        f(&lock(&self.readers[start % count]))
    }
}

// A panic inside a statement leaves the connection usable (SQLite rolls back an unfinished
// transaction when the next one begins), so a poisoned lock is taken over rather than failing
// every later call.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn configure(conn: &Connection, config: &SqliteConfig, writer: bool) -> Result<()> {
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
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_error)?;
    Ok(())
}
