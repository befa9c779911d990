//! SQLite through rusqlite: short statements on the calling task, long work on the blocking
//! pool, and never a runtime thread parked while waiting.
//!
//! SQLite runs in process and a point read or upsert takes a few microseconds, so handing each
//! statement to another thread (as `spawn_blocking` or sqlx's worker thread do) costs several
//! times the work itself: measured here, rusqlite on the calling thread serves ~150k reads/s,
//! through `spawn_blocking` ~28k, through sqlx ~12k. The store therefore runs point statements
//! inline, on a small set of connections: one writer (SQLite allows one writer at a time
//! anyway, and a fair async lock in the process is cheaper than `SQLITE_BUSY` retries) and a
//! few readers, which WAL lets read while the writer writes. Everything that waits, waits
//! asynchronously; everything long runs on the blocking pool (see `conn`), and so do WAL
//! checkpoints (see `checkpoint`). Every statement is stepped to its end so that the WAL's
//! growth is seen (see `step`).

mod checkpoint;
mod conn;
mod error;
mod functions;
mod kv;
mod schema;
mod step;
mod tables;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use storekit_core::admin::{MigrationReport, SchemaDifference};
use storekit_core::{IdKind, Result};

use crate::dialect::Dialect;
use crate::purge::Purger;
use crate::statements::{Renderer, Statements};
use crate::table_layout::{Catalog, Layouts};
use crate::tables::Tables;
use conn::Connections;

/// Every statement the users, OAuth, tokens and kv stores run on SQLite stays the text
/// committed in `tests/snapshots/` (see `crate::snapshots`).
#[test]
fn statements_are_unchanged() {
    let tables = Tables::new(None, "app_").expect("valid prefix");
    for kind in crate::snapshots::KINDS {
        let r = renderer(&tables);
        let mut texts = Statements::new(&r, kind).texts();
        texts.extend(schema::SqliteOnly::new(&r).texts());
        let name = format!("statements-sqlite-{}.sql", kind.as_str());
        crate::snapshots::check_statements(&name, &texts);
    }
}

/// Renders SQLite's statements for `tables`, as rusqlite takes them.
fn renderer(tables: &Tables) -> Renderer<'_, String> {
    Renderer {
        dialect: Dialect::Sqlite,
        tables,
        convert: std::convert::identity,
    }
}

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteConfig {
    /// The database file, or `None` for a private in-memory database.
    pub path: Option<PathBuf>,
    /// Prefix for every table name (ASCII letters, digits, `_`).
    pub table_prefix: String,
    /// The kind of user ids.
    pub id_kind: IdKind,
    /// Read-only connections besides the writer (file databases only). Default 4.
    pub readers: usize,
    /// How long an operation waits for another process's lock before failing with
    /// [`Error::Unavailable`](storekit_core::Error::Unavailable). It waits asynchronously,
    /// retrying with backoff. Default 5 s.
    pub busy_timeout: Duration,
    /// How often a background task deletes expired key-value items; `None` never does (then
    /// call `purge_expired` yourself). Default 60 s.
    pub purge_interval: Option<Duration>,
    /// How long expired key-value items are kept after their deadline: the purge leaves them
    /// that long, and `KvStore::get_stale` may read them. Default 0 (URL: `keep_expired=S`,
    /// in seconds).
    pub keep_expired: Duration,
    /// How much of the database file connections read through memory-mapped I/O (SQLite's
    /// `mmap_size`; 0 turns it off). Reads then come from the operating system's page cache
    /// without a system call or a copy per page, shared by all connections, which is what
    /// keeps random reads fast when the database is much larger than SQLite's own caches.
    /// Default 2 GiB (SQLite caps it at its compile-time maximum).
    pub mmap_size: u64,
}

impl SqliteConfig {
    /// A database file at `path` (created if missing), with default settings.
    pub fn file(path: impl AsRef<Path>) -> Self {
        Self {
            path: Some(path.as_ref().to_owned()),
            ..Self::memory()
        }
    }

    /// A private in-memory database, gone when the store is dropped.
    #[must_use]
    pub fn memory() -> Self {
        Self {
            path: None,
            table_prefix: String::new(),
            id_kind: IdKind::Uuid,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            purge_interval: Some(crate::purge::DEFAULT_INTERVAL),
            keep_expired: Duration::ZERO,
            mmap_size: 2 << 30,
        }
    }

    /// Parses `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:`, with optional query
    /// parameters `prefix=`, `id=uuid|int` and `keep_expired=SECONDS`.
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| storekit_core::Error::invalid("url", "expected sqlite://PATH"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = match path {
            ":memory:" => Self::memory(),
            // An empty path would open a temporary database whose writes vanish on reconnect.
            "" => {
                return Err(storekit_core::Error::invalid(
                    "url",
                    "sqlite:// needs a file path (or sqlite::memory: for a private in-memory \
                     database)",
                ));
            }
            path => Self::file(path),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("prefix", prefix)) => config.table_prefix = prefix.to_owned(),
                Some(("id", kind)) => config.id_kind = IdKind::parse(kind)?,
                Some(("keep_expired", secs)) => {
                    config.keep_expired = storekit_core::time::parse_seconds("keep_expired", secs)?;
                }
                _ => {
                    return Err(storekit_core::Error::invalid(
                        "url",
                        format!(
                            "unknown parameter {pair:?} (expected prefix=, id=uuid|int or \
                             keep_expired=SECONDS)"
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Settings from the URL in `DATABASE_URL` (see [`SqliteConfig::from_url`]).
    pub fn from_env() -> Result<Self> {
        Self::from_url(&storekit_core::database_url_from_env()?)
    }

    crate::config::shared_setters!();

    /// Sets the number of reader connections.
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets how long an operation waits for another process's lock.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how much of the file is read through memory-mapped I/O (0: none).
    #[must_use]
    pub fn mmap_size(mut self, bytes: u64) -> Self {
        self.mmap_size = bytes;
        self
    }
}

/// A storekit store on SQLite. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conns: Connections,
    sql: Statements<String>,
    own: schema::SqliteOnly,
    id_kind: IdKind,
    tables: Tables,
    catalog: Catalog,
    layouts: Layouts,
    purger: Purger,
    keep_expired: Duration,
}

impl storekit_core::backend::Backend for SqliteStore {
    fn name(&self) -> &'static str {
        Dialect::Sqlite.name()
    }

    fn system(&self) -> &'static str {
        Dialect::Sqlite.system()
    }
}

impl SqliteStore {
    /// Opens the database (on the blocking pool: it opens files and prepares connections).
    /// Run [`SqliteStore::migrate`] before first use.
    pub async fn connect(config: &SqliteConfig) -> Result<Self> {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Self::open(&config))
            .await
            .map_err(|e| storekit_core::Error::backend("sqlite", e))?
    }

    fn open(config: &SqliteConfig) -> Result<Self> {
        let tables = Tables::new(None, &config.table_prefix)?;
        let conns = Connections::open(config)?;
        let r = renderer(&tables);
        let (sql, own) = (
            Statements::new(&r, config.id_kind),
            schema::SqliteOnly::new(&r),
        );
        let catalog = Catalog::new(Dialect::Sqlite, &tables);
        Ok(Self {
            inner: Arc::new(Inner {
                conns,
                sql,
                own,
                id_kind: config.id_kind,
                tables,
                catalog,
                layouts: Layouts::new(Dialect::Sqlite),
                purger: Purger::new(config.purge_interval),
                keep_expired: config.keep_expired,
            }),
        })
    }

    /// Creates or upgrades the tables; safe to run every start and from several processes.
    /// Fails if the tables exist for another id kind. An existing database is upgraded in
    /// place, keeping every row.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_report().await.map(drop)
    }

    /// What [`SqliteStore::migrate`] does, reporting each table and index of storekit's own
    /// tables and each migration as created by this run or already present.
    pub async fn migrate_report(&self) -> Result<MigrationReport> {
        let inner = self.inner.clone();
        self.inner
            .conns
            .write_blocking(move |conn| schema::migrate(conn, &inner.tables, inner.id_kind))
            .await
    }

    /// How the database differs from what this code expects: storekit's own tables (their
    /// columns, indexes and foreign keys, and the migrations recorded) and every table the
    /// tables store's catalog records, compared with the same statements applied to a scratch
    /// database in memory. Empty when they agree; a database never migrated lists its
    /// missing tables.
    pub async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        let inner = self.inner.clone();
        self.inner
            .conns
            .read_blocking(move |conn| schema::differences(conn, &inner.tables, inner.id_kind))
            .await
    }

    /// Drops every table of this store (its prefix only), the tables store's included, e.g.
    /// after a test.
    pub async fn drop_tables(&self) -> Result<()> {
        let inner = self.inner.clone();
        self.inner
            .conns
            .write_blocking(move |conn| schema::drop_all(conn, &inner.tables))
            .await
    }

    /// Every row of every table, the tables store's included, rendered as text, for tests
    /// that check what is stored.
    pub async fn dump(&self) -> Result<String> {
        let inner = self.inner.clone();
        self.inner
            .conns
            .read_blocking(move |conn| schema::dump(conn, &inner.tables))
            .await
    }
}

crate::config::admin_through_inherent!(SqliteStore);
