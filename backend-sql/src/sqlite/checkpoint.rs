//! Checkpoints off the write path.
//!
//! Policy, in one sentence: when a commit leaves more than [`CHECKPOINT_PAGES`] pages in the
//! WAL, a background task copies the WAL into the database on its own connection while
//! writers go on, then holds the writer for the few pages written meanwhile, so that the next
//! write starts the WAL from its beginning.
//!
//! SQLite's own auto-checkpoint would run that copy inside the commit that crossed the
//! threshold, on whichever runtime thread made it, holding every other writer for the
//! milliseconds it takes. Here the commit only notes the WAL's size (SQLite's WAL hook) and the
//! copy runs on the blocking pool, on another core. The pass that holds the writer is what
//! keeps the WAL bounded under a steady stream of writes: a checkpoint that never catches up
//! with the last frame never lets the WAL restart.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use storekit_core::Result;
use tokio::sync::Mutex;

use super::error::sqlite_error;
use super::step::first_row;

/// WAL pages (of 4 KiB) that trigger a checkpoint: SQLite's default auto-checkpoint size.
pub(super) const CHECKPOINT_PAGES: c_int = 1000;

thread_local! {
    /// Pages in the WAL after the last commit made on this thread by a writer connection,
    /// noted by the WAL hook and taken right after the write that committed, on the same
    /// thread (see [`wal_pages_after_commit`]).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// Installs the hook that notes the WAL's size after each commit on `writer`. It replaces
/// SQLite's auto-checkpoint, which is the same hook.
pub(super) fn note_wal_size(writer: &Connection) {
    writer.wal_hook(Some(note_pages));
}

fn note_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// The WAL's size in pages after the last commit on this thread since the last call, or 0.
pub(super) fn wal_pages_after_commit() -> c_int {
    WAL_PAGES.replace(0)
}

/// Runs checkpoints for one database file, one pass at a time.
#[derive(Debug)]
pub(super) struct Checkpointer {
    path: PathBuf,
    /// The connection the unhurried copy runs on, opened by the first pass.
    conn: Arc<SyncMutex<Option<Connection>>>,
    running: AtomicBool,
    /// Frames of the WAL the last pass left copied into the database.
    backfilled: AtomicI32,
    /// Set when a commit asked for a checkpoint while a pass was running.
    again: AtomicBool,
}

impl Checkpointer {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Arc::new(SyncMutex::new(None)),
            running: AtomicBool::new(false),
            backfilled: AtomicI32::new(0),
            again: AtomicBool::new(false),
        }
    }

    /// Called after a write with the WAL's size it left: starts a pass if the WAL is due for
    /// one and no pass runs (one that runs makes another when it ends).
    pub(super) fn after_commit(
        self: &Arc<Self>,
        wal_pages: c_int,
        writer: &Arc<Mutex<Connection>>,
    ) {
        let backfilled = self.backfilled.load(Ordering::Acquire);
        // The hook reports every frame in the WAL, copied or not; a WAL that restarted since
        // the last pass holds fewer frames than that pass copied.
        let waiting = if wal_pages >= backfilled {
            wal_pages - backfilled
        } else {
            wal_pages
        };
        if waiting < CHECKPOINT_PAGES {
            return;
        }
        self.again.store(true, Ordering::Release);
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Only async methods write, so there is a runtime; without one, the next commit
            // asks again.
            self.running.store(false, Ordering::Release);
            return;
        };
        // On the blocking pool rather than as a task: a task that writes in a loop without
        // ever waiting would keep a task from being scheduled on its thread, but not a thread.
        let (this, writer) = (self.clone(), writer.clone());
        runtime.spawn_blocking(move || this.run(&writer));
    }

    fn run(&self, writer: &Mutex<Connection>) {
        loop {
            while self.again.swap(false, Ordering::AcqRel) {
                if let Err(err) = self.pass(writer) {
                    // The WAL only grows until the next pass; reads and writes are unaffected.
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        "checkpointing the SQLite WAL failed; retrying after the next commit"
                    );
                }
            }
            self.running.store(false, Ordering::Release);
            // A commit that asked between the last look and now found the pass still running.
            if !self.again.load(Ordering::Acquire) || self.running.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Copies the WAL into the database: first without stopping writers, then, holding the
    /// writer (in line with the tasks that wait for it), whatever they added meanwhile.
    fn pass(&self, writer: &Mutex<Connection>) -> Result<()> {
        {
            let mut conn = self
                .conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let conn = match &mut *conn {
                Some(conn) => conn,
                None => conn.insert(Connection::open(&self.path).map_err(sqlite_error)?),
            };
            checkpoint(conn)?;
        }
        let writer = writer.blocking_lock();
        if let Some(backfilled) = checkpoint(&writer)? {
            self.backfilled.store(backfilled, Ordering::Release);
        }
        Ok(())
    }
}

/// A passive checkpoint: copies every page no reader still needs from the WAL, waiting for
/// nobody. Returns how many frames of the WAL are now in the database, or `None` if another
/// process was checkpointing at the same moment (not an error: it does the work).
fn checkpoint(conn: &Connection) -> Result<Option<c_int>> {
    let mut stmt = conn
        .prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")
        .map_err(sqlite_error)?;
    // One row: busy (1 if another checkpoint was running), frames in the WAL, frames copied.
    let row = first_row(&mut stmt, [], |row| {
        Ok((row.get::<_, c_int>(0)?, row.get(2)?))
    })
    .map_err(sqlite_error)?;
    Ok(row.and_then(|(busy, copied)| (busy == 0).then_some(copied)))
}
