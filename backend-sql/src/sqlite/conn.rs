//! The writer connection and the reader connections, and how work waits for them.
//!
//! A point statement takes microseconds, so it runs inline on the calling task: a hop to
//! another thread would cost more than the statement. Waiting, on the other hand, never parks
//! a runtime thread:
//! - for the writer, through a fair (first come, first served) async mutex;
//! - for a reader, by taking any free one, or else waiting in line for one of them;
//! - for another process's lock (`SQLITE_BUSY`), through async backoff until the configured
//!   busy timeout, then [`Error::Unavailable`]. SQLite's own busy handler, which sleeps on the
//!   calling thread, is turned off.
//!
//! Work that takes longer than a short statement (large batches, clearing a namespace,
//! purging, migrations, long key listings) moves to the blocking pool together with the
//! connection it holds, so the runtime keeps serving other tasks meanwhile.

use std::collections::VecDeque;
use std::ops::DerefMut;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use storekit_core::{Error, Result};
use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};
use tokio::time::Instant;

use super::SqliteConfig;
use super::checkpoint::{self, Checkpointer};
use super::error::{is_busy, sqlite_error};

/// The WAL file is cut back to this size whenever SQLite restarts it.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;
/// The longest pause between two attempts on a busy database.
const MAX_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub(super) struct Connections {
    writer: Arc<Mutex<Connection>>,
    /// Writes waiting for the writer, run in groups (see [`Connections::write_grouped`]).
    queued: std::sync::Mutex<WriteQueue>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    busy_timeout: Duration,
    /// Copies the WAL into the database off the write path (file databases only).
    checkpointer: Option<Arc<Checkpointer>>,
}

impl Connections {
    pub(super) fn open(config: &SqliteConfig) -> Result<Self> {
        let Some(path) = &config.path else {
            // A private in-memory database exists only on its one connection, which therefore
            // both reads and writes.
            let conn = Connection::open_in_memory().map_err(sqlite_error)?;
            configure(&conn, config, true)?;
            return Ok(Self::new(conn, Vec::new(), config.busy_timeout, None));
        };
        let writer = Connection::open(path).map_err(sqlite_error)?;
        configure(&writer, config, true)?;
        checkpoint::note_wal_size(&writer);
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
        let checkpointer = Arc::new(Checkpointer::new(path.clone()));
        Ok(Self::new(
            writer,
            readers,
            config.busy_timeout,
            Some(checkpointer),
        ))
    }

    fn new(
        writer: Connection,
        readers: Vec<Connection>,
        busy_timeout: Duration,
        checkpointer: Option<Arc<Checkpointer>>,
    ) -> Self {
        Self {
            writer: Arc::new(Mutex::new(writer)),
            queued: std::sync::Mutex::new(WriteQueue::default()),
            readers: readers
                .into_iter()
                .map(|conn| Arc::new(Mutex::new(conn)))
                .collect(),
            next_reader: AtomicUsize::new(0),
            busy_timeout,
            checkpointer,
        }
    }

    /// Asks for a checkpoint if the write that just committed on this thread left the WAL
    /// due for one. Called right after each write, before any await, so on the thread the
    /// commit ran on (see [`checkpoint::wal_pages_after_commit`]).
    fn after_write(&self) {
        self.after_commit(checkpoint::wal_pages_after_commit());
    }

    /// Asks for a checkpoint if a commit left `wal_pages` in the WAL (see [`Checkpointer`]).
    fn after_commit(&self, wal_pages: std::ffi::c_int) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.after_commit(wal_pages, &self.writer);
        }
    }

    /// Runs a short `f` inline on the writer, once the writer is free. `f` runs again if the
    /// database is locked by another process, so it must leave nothing behind when it fails
    /// (one statement, or one transaction).
    pub(super) async fn write<T>(&self, f: impl FnMut(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().await;
        let result = retry_while_busy(&mut conn, self.busy_timeout, f).await;
        self.after_write();
        result
    }

    /// Runs a short one-statement write `f`: inline if the writer is free, as [`Connections::write`]
    /// does; otherwise queued, and run by the next task to hold the writer together with
    /// every write queued before it, in one transaction (group commit). Under contention this
    /// turns many commits into one and spares a hand-over of the writer per write, so 32
    /// writing tasks outpace one. `f` runs inside a savepoint, so a failed write (a
    /// constraint, say) leaves nothing behind and does not fail the others; a result is
    /// delivered only once the transaction has committed.
    pub(super) async fn write_grouped<T, F>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if let Ok(mut conn) = self.writer.try_lock()
            && lock_queue(&self.queued).is_empty()
        {
            let result = retry_while_busy(&mut conn, self.busy_timeout, |conn| f(conn)).await;
            self.after_write();
            return result;
        }
        let (sender, mut result) = tokio::sync::oneshot::channel();
        lock_queue(&self.queued).push_back(queued_write(f, sender));
        loop {
            tokio::select! {
                biased;
                done = &mut result => return done.map_err(abandoned)?,
                conn = self.writer.lock() => {
                    // A task that held the writer before may have run this write already;
                    // if not, it is still queued, and this task runs the next group.
                    if let Ok(done) = result.try_recv() {
                        return done;
                    }
                    self.run_group(conn).await;
                }
            }
        }
    }

    /// Runs up to [`GROUP`] queued writes, oldest first, in one transaction, then delivers
    /// their results.
    async fn run_group(&self, mut conn: MutexGuard<'_, Connection>) {
        let group: Vec<QueuedWrite> = {
            let mut queue = lock_queue(&self.queued);
            let take = queue.len().min(GROUP);
            queue.drain(..take).collect()
        };
        if group.is_empty() {
            return;
        }
        let begun = retry_while_busy(&mut conn, self.busy_timeout, |conn| {
            conn.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_error)
        })
        .await;
        let outcome = match begun {
            Err(err) => {
                let err = Arc::new(err);
                for write in group {
                    write.fail(&err);
                }
                return;
            }
            Ok(()) => {
                let mut done: Vec<Delivery> = Vec::with_capacity(group.len());
                let mut ended = None;
                for write in group {
                    // A failure that ends the whole transaction (a full disk, say) would leave
                    // the writes after it to commit one by one: they are refused instead.
                    if conn.is_autocommit() {
                        let err = ended.get_or_insert_with(|| {
                            Arc::new(Error::backend(
                                "sqlite",
                                "a write in the group ended its transaction",
                            ))
                        });
                        write.fail(err);
                    } else {
                        done.push(write.run(&conn));
                    }
                }
                let committed = match ended {
                    Some(err) => Err(err),
                    None if conn.is_autocommit() => Err(Arc::new(Error::backend(
                        "sqlite",
                        "a write in the group ended its transaction",
                    ))),
                    None => conn
                        .execute_batch("COMMIT")
                        .map_err(|err| Arc::new(sqlite_error(err))),
                };
                if committed.is_err() && !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.after_write();
                (done, committed.err())
            }
        };
        let (done, failure) = outcome;
        for deliver in done {
            deliver(failure.as_ref());
        }
    }

    /// Runs `step` inline on each chunk of `chunks`, all in one write transaction, letting
    /// the runtime serve other tasks between chunks; returns every step's rows in order. The
    /// writer stays held throughout (other writers wait their turn asynchronously); if the
    /// caller stops waiting, the transaction is rolled back.
    pub(super) async fn write_chunks<'i, I: 'i, T>(
        &self,
        chunks: impl IntoIterator<Item = &'i [I]>,
        step: impl FnMut(&Connection, &'i [I]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let conn = self.writer.lock().await;
        let result = in_transaction(conn, "BEGIN IMMEDIATE", self.busy_timeout, chunks, step).await;
        self.after_write();
        result
    }

    /// Like [`Connections::write_chunks`], on a reader: one read transaction, so every chunk
    /// sees the same snapshot.
    pub(super) async fn read_chunks<'i, I: 'i, T>(
        &self,
        chunks: impl IntoIterator<Item = &'i [I]>,
        step: impl FnMut(&Connection, &'i [I]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        if self.readers.is_empty() {
            let conn = self.writer.lock().await;
            return in_transaction(conn, "BEGIN", self.busy_timeout, chunks, step).await;
        }
        let conn = self.reader().await;
        in_transaction(conn, "BEGIN", self.busy_timeout, chunks, step).await
    }

    /// Like [`Connections::write`], for long work: `f` runs on the blocking pool.
    pub(super) async fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.writer.clone().lock_owned().await;
        let mut f = f;
        // The commit happens on the blocking thread, so the WAL's size is taken there.
        let with_wal_pages =
            move |conn: &mut Connection| f(conn).map(|v| (v, checkpoint::wal_pages_after_commit()));
        let (value, wal_pages) = run_blocking(conn, with_wal_pages, self.busy_timeout).await?;
        self.after_commit(wal_pages);
        Ok(value)
    }

    /// Runs a short `f` inline on a free reader (the writer for an in-memory database).
    pub(super) async fn read<T>(&self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        if self.readers.is_empty() {
            return self.write(|conn| f(conn)).await;
        }
        let mut conn = self.reader().await;
        retry_while_busy(&mut conn, self.busy_timeout, |conn| f(conn)).await
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
        let conn = self.owned_reader().await;
        run_blocking(conn, move |conn| f(conn), self.busy_timeout).await
    }

    /// The first reader nobody holds, or if all are in use, the next in turn once it is free
    /// (waiting asynchronously). Taking the first free one, rather than rotating, keeps the
    /// work on as few connections as the load needs: each has its own page cache, statement
    /// cache and memory map of the file, which stay warm (at 10^6 rows, spreading sequential
    /// reads over four connections faulted each page of the map in four times).
    async fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(conn) = reader.try_lock() {
                return conn;
            }
        }
        self.readers[self.next_in_turn()].lock().await
    }

    /// Like [`Connections::reader`], for work that takes the connection to the blocking pool.
    async fn owned_reader(&self) -> OwnedMutexGuard<Connection> {
        for reader in &self.readers {
            if let Ok(conn) = reader.clone().try_lock_owned() {
                return conn;
            }
        }
        self.readers[self.next_in_turn()].clone().lock_owned().await
    }

    /// The reader to wait for when all are busy: each in turn, so waiters spread over them.
    fn next_in_turn(&self) -> usize {
        self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len()
    }
}

/// Runs a short `f` inline on `conn`, again with async backoff while the database is locked by
/// another process, until the busy timeout has passed since the first attempt.
async fn retry_while_busy<T>(
    conn: &mut Connection,
    busy_timeout: Duration,
    mut f: impl FnMut(&mut Connection) -> Result<T>,
) -> Result<T> {
    let mut busy = Backoff::new(busy_timeout);
    loop {
        match f(conn) {
            Err(err) if is_busy(&err) => busy.wait(err).await?,
            result => return result,
        }
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

/// Begins a transaction with `begin` (retrying while another process holds the lock), runs
/// `step` on each chunk with a yield to the runtime in between, and commits. Dropping the
/// future midway rolls the transaction back (see [`OpenTransaction`]).
async fn in_transaction<'i, C, I: 'i, T>(
    mut conn: C,
    begin: &str,
    busy_timeout: Duration,
    chunks: impl IntoIterator<Item = &'i [I]>,
    mut step: impl FnMut(&Connection, &'i [I]) -> Result<Vec<T>>,
) -> Result<Vec<T>>
where
    C: DerefMut<Target = Connection>,
{
    retry_while_busy(&mut conn, busy_timeout, |conn| {
        conn.execute_batch(begin).map_err(sqlite_error)
    })
    .await?;
    let tx = OpenTransaction {
        conn,
        committed: false,
    };
    let mut rows = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        rows.extend(step(&tx.conn, chunk)?);
    }
    tx.commit()?;
    Ok(rows)
}

/// A transaction begun by hand, so that it can stay open across awaits (rusqlite's
/// `Transaction` borrows the connection and cannot). Rolled back on drop unless committed,
/// so an error or a cancelled caller never leaves it open on a shared connection.
struct OpenTransaction<C: DerefMut<Target = Connection>> {
    conn: C,
    committed: bool,
}

impl<C: DerefMut<Target = Connection>> OpenTransaction<C> {
    fn commit(mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_error)?;
        self.committed = true;
        Ok(())
    }
}

impl<C: DerefMut<Target = Connection>> Drop for OpenTransaction<C> {
    fn drop(&mut self) {
        if !self.committed
            && !self.conn.is_autocommit()
            && let Err(err) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "rolling back an abandoned transaction failed"
            );
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

/// Most queued writes one transaction takes: together about as long as one batch chunk.
const GROUP: usize = 16;

/// A write waiting in the queue, for whichever task holds the writer next.
type QueuedWrite = Box<dyn Queued>;

/// Hands a queued write's result to its caller once its transaction has ended: as it was if
/// the transaction committed (`None`), else the reason it did not.
type Delivery = Box<dyn FnOnce(Option<&Arc<Error>>) + Send>;

trait Queued: Send {
    /// Runs the write in the current transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Delivery;
    /// Reports that the write could not run.
    fn fail(self: Box<Self>, err: &Arc<Error>);
}

struct Write<F, T> {
    f: F,
    caller: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> Queued for Write<F, T>
where
    F: FnMut(&Connection) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn run(mut self: Box<Self>, conn: &Connection) -> Delivery {
        let result = in_savepoint(conn, &mut self.f);
        let caller = self.caller;
        Box::new(move |failure| {
            // The caller may have stopped waiting; its write stands all the same.
            let _ = caller.send(match failure {
                None => result,
                Some(err) => Err(shared(err)),
            });
        })
    }

    fn fail(self: Box<Self>, err: &Arc<Error>) {
        let _ = self.caller.send(Err(shared(err)));
    }
}

fn queued_write<T, F>(f: F, caller: tokio::sync::oneshot::Sender<Result<T>>) -> QueuedWrite
where
    F: FnMut(&Connection) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    Box::new(Write { f, caller })
}

/// Runs `f` so that, if it fails, whatever it did is undone and the transaction goes on.
fn in_savepoint<T>(conn: &Connection, f: &mut impl FnMut(&Connection) -> Result<T>) -> Result<T> {
    let step = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map_err(sqlite_error)
    };
    step("SAVEPOINT grouped_write")?;
    match f(conn) {
        Ok(value) => step("RELEASE grouped_write").map(|_| value),
        Err(err) => {
            step("ROLLBACK TO grouped_write")?;
            step("RELEASE grouped_write")?;
            Err(err)
        }
    }
}

/// One failure reported to every write of a group, as the same kind of error.
fn shared(err: &Arc<Error>) -> Error {
    match **err {
        Error::Unavailable { .. } => Error::unavailable("sqlite", err.clone()),
        _ => Error::backend("sqlite", err.clone()),
    }
}

/// The task that took this write from the queue was dropped while waiting for another
/// process's lock, before running it: nothing was written, and the write may be retried.
fn abandoned(err: tokio::sync::oneshot::error::RecvError) -> Error {
    Error::unavailable("sqlite", err)
}

/// The queue of writes; its `Debug` shows only how many wait.
#[derive(Default)]
struct WriteQueue(VecDeque<QueuedWrite>);

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} queued writes", self.0.len())
    }
}

impl std::ops::Deref for WriteQueue {
    type Target = VecDeque<QueuedWrite>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for WriteQueue {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn lock_queue(queue: &std::sync::Mutex<WriteQueue>) -> std::sync::MutexGuard<'_, WriteQueue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn configure(conn: &Connection, config: &SqliteConfig, writer: bool) -> Result<()> {
    // Opening may meet another process's lock (switching to WAL, reading the schema); this
    // happens once, at start-up, before the store serves anything.
    conn.busy_timeout(config.busy_timeout)
        .map_err(sqlite_error)?;
    // The user and key-value stores run about 30 statements; every table of the tables store
    // adds a dozen or more (one per query shape), which a smaller cache would keep evicting.
    conn.set_prepared_statement_cache_capacity(256);
    // SQLite built with STAT4 (as the bundled one is) recompiles a cached statement each time
    // new values are bound to parameters that meet an index, in case they change the best
    // plan: listing keys paid a parse and a plan per page. Our statements have one right plan
    // whatever the values, and the planner stability guarantee keeps it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(sqlite_error)?;
    if writer {
        // WAL lets readers proceed while the writer writes; NORMAL sync is durable across
        // application crashes and loses at most the last transactions on power loss, the
        // usual trade-off for WAL.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite_error)?;
        // Checkpoints run in the background (see `checkpoint`), and this limit cuts the file
        // back when the WAL restarts, so the WAL stays near 4 MB plus the largest transaction.
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(sqlite_error)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite_error)?;
    conn.pragma_update(
        None,
        "mmap_size",
        i64::try_from(config.mmap_size).unwrap_or(i64::MAX),
    )
    .map_err(sqlite_error)?;
    super::functions::register(conn)?;
    // From now on a lock is waited for asynchronously (see the module docs).
    conn.busy_timeout(Duration::ZERO).map_err(sqlite_error)?;
    Ok(())
}
