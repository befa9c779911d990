//! The tables store on SQLite: the layout and statements of `crate::table_layout`, run the
//! way the rest of the store runs its statements (see `conn`): point reads and writes inline,
//! writes grouped, and long work (big pages, counts, DDL) on the blocking pool.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, ToSql, TransactionBehavior, params_from_iter};
use storekit_core::backend::TableBackend;
use storekit_core::table::patch::{condition_holds, patch_row, returned};
use storekit_core::table::transact::{Resolved, Step, failed};
use storekit_core::table::{
    Condition, Document, Fetched, IndexQuery, KeyType, KeyValue, MAX_VERSION, MissingIndexes,
    Patch, Record, RecordKey, Returning, Row, StoredRecord, TableScan, TableSchema, TableShape,
    distinct_keys, in_key_order, next_version, parse_all,
};
use storekit_core::transfer::TableTransferBackend;
use storekit_core::{Error, Result};

use super::SqliteStore;
use super::error::{is_missing_table, sqlite_error, table_error};
use super::step::{any_row, first_row};
use crate::continued::{query_in_chunks, scan_in_chunks};
use crate::dialect::{Dialect, Param, Statement};
use crate::table_layout::{Catalog, Layout, Read, checked_shape, live_shape, shape_json};
use crate::tables::Tables;

const BACKEND: &str = "sqlite";

/// Reads of up to this many records run inline; larger ones, whose documents may add up to
/// many megabytes to parse, on the blocking pool.
const INLINE_RECORDS: usize = 32;

/// The chunks a filtered read without a read budget reads inline, one statement each, the
/// runtime yielded between them, before the rest of its page goes to the blocking pool (see
/// [`query_in_chunks`]). A filter may read far more records than it returns, and the runtime
/// is never held longer than one short statement: the first chunks read as many records as
/// an unfiltered read returns inline, so that a page of a filter most records meet costs one
/// statement; later ones grow, so that a selective filter's page (a range read to its end)
/// is not many statements, nor a hop to the pool that costs, on a loaded machine, more than
/// reading a few hundred records. Only a range longer than all of them goes to the pool.
const INLINE_CHUNKS: [u64; 5] = [32, 32, 64, 128, 256];

/// Records read per statement while filling new index columns.
const FILL_PAGE: usize = 500;

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Text(text) | Self::Document(text) => ValueRef::Text(text.as_bytes()),
            Self::Int(int) => ValueRef::Integer(*int),
            Self::Bytes(bytes) => ValueRef::Blob(bytes),
            Self::Float(float) => ValueRef::Real(*float),
            Self::Null(_) => ValueRef::Null,
        }))
    }
}

/// Prepares `statement` (through the cache when its text recurs) and maps a missing table.
fn prepare<'c>(conn: &'c Connection, statement: &Statement) -> Result<CachedStatement<'c>> {
    conn.prepare_cached(&statement.sql).map_err(table_error)
}

fn execute(conn: &Connection, statement: &Statement) -> Result<usize> {
    prepare(conn, statement)?
        .execute(params_from_iter(&statement.params))
        .map_err(table_error)
}

/// The records a `SELECT version, document` statement returns.
fn records(conn: &Connection, layout: &Layout, statement: &Statement) -> Result<Vec<Record>> {
    let mut uncached;
    let mut cached;
    let stmt: &mut rusqlite::Statement<'_> = if !statement.recurs {
        uncached = conn.prepare(&statement.sql).map_err(table_error)?;
        &mut uncached
    } else {
        cached = prepare(conn, statement)?;
        &mut cached
    };
    let mut rows = stmt
        .query(params_from_iter(&statement.params))
        .map_err(table_error)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        found.push(record_of(layout, row)?);
    }
    Ok(found)
}

/// What a read found, the documents left as text: each row a record for a plain read; for a
/// counted one, rows tallied until the page is full (see [`Layout::counted`]).
fn fetched(conn: &Connection, layout: &Layout, read: &Read) -> Result<Fetched<StoredRecord>> {
    let (statement, index) = match read {
        Read::Plain(statement, index)
        | Read::Windowed(statement, _, index)
        | Read::Stepped(statement, _, index) => (statement, *index),
    };
    // A filter's text recurs (its shape is the service's code, its values are bound), so it
    // is kept with the connection's prepared statements.
    let mut uncached;
    let mut cached;
    let stmt: &mut rusqlite::Statement<'_> = if statement.recurs {
        cached = prepare(conn, statement)?;
        &mut cached
    } else {
        uncached = conn.prepare(&statement.sql).map_err(table_error)?;
        &mut uncached
    };
    let mut rows = stmt
        .query(params_from_iter(&statement.params))
        .map_err(table_error)?;
    // The record of a row whose key columns start at `at`.
    let record = |row: &rusqlite::Row<'_>, at| {
        let version = row.get(0).map_err(sqlite_error)?;
        let text = row.get(1).map_err(sqlite_error)?;
        let column = |i, kind| nullable_key(row, i, kind);
        layout.paged_row(index, version, text, at, column)
    };
    let counted = |row: &rusqlite::Row<'_>, i| -> Result<i64> { row.get(i).map_err(sqlite_error) };
    match read {
        Read::Plain(..) => {
            let mut found = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                found.push(record(row, 2)?);
            }
            Ok(Fetched::unfiltered(found))
        }
        Read::Stepped(_, window, _) => {
            let mut tally = layout.tally(*window);
            let mut n = 0;
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                n += 1;
                if tally.row(n, counted(row, 2)? == 1, || record(row, 3))? {
                    return Ok(tally.finish());
                }
            }
            tally.ended(n);
            Ok(tally.finish())
        }
        // Layout::counted gives SQLite stepped reads only.
        Read::Windowed(..) => Err(Error::backend(BACKEND, "a windowed read on SQLite")),
    }
}

/// Whether a read is read in chunks (see [`INLINE_CHUNKS`]): a filtered one without a read
/// budget, for a page that an unfiltered read would read inline.
fn in_chunks(filter: Option<&Condition>, budget: Option<u64>, fetch: usize) -> bool {
    filter.is_some() && budget.is_none() && fetch <= INLINE_RECORDS
}

fn record_of(layout: &Layout, row: &rusqlite::Row<'_>) -> Result<Record> {
    let version: i64 = row.get(0).map_err(sqlite_error)?;
    let text = row.get_ref(1).map_err(sqlite_error)?;
    let text = text.as_str().map_err(|e| Error::backend(BACKEND, e))?;
    let document = serde_json::from_str(text).map_err(|e| Error::backend(BACKEND, e))?;
    layout.record(version, document)
}

/// The one record a statement returns, if any.
fn one_record(conn: &Connection, layout: &Layout, statement: &Statement) -> Result<Option<Record>> {
    let mut stmt = prepare(conn, statement)?;
    let found = first_row(&mut stmt, params_from_iter(&statement.params), |row| {
        let version: i64 = row.get(0)?;
        let document: String = row.get(1)?;
        Ok((version, document))
    })
    .map_err(table_error)?;
    found
        .map(|(version, document)| {
            let document =
                serde_json::from_str(&document).map_err(|e| Error::backend(BACKEND, e))?;
            layout.record(version, document)
        })
        .transpose()
}

/// The one record a `SELECT version, document` by `key` returns, its document left as text.
fn one_stored(
    conn: &Connection,
    layout: &Layout,
    statement: &Statement,
    key: &RecordKey,
) -> Result<Option<StoredRecord>> {
    let mut stmt = prepare(conn, statement)?;
    let found = first_row(&mut stmt, params_from_iter(&statement.params), |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })
    .map_err(table_error)?;
    found
        .map(|(version, text)| layout.stored(key.clone(), version, text))
        .transpose()
}

/// The records [`Layout::get_many`] returns, each keyed by its key columns, their documents
/// left as text.
fn keyed_stored(
    conn: &Connection,
    layout: &Layout,
    statement: &Statement,
) -> Result<Vec<StoredRecord>> {
    let mut stmt = conn.prepare(&statement.sql).map_err(table_error)?;
    let mut rows = stmt
        .query(params_from_iter(&statement.params))
        .map_err(table_error)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let version: i64 = row.get(0).map_err(sqlite_error)?;
        let text = row.get(1).map_err(sqlite_error)?;
        let column = |i, kind| nullable_key(row, i, kind);
        found.push(layout.paged_row(None, version, text, 2, column)?);
    }
    Ok(found)
}

/// A key column that may be NULL (an index's sort column).
fn nullable_key(row: &rusqlite::Row<'_>, column: usize, kind: KeyType) -> Result<Option<KeyValue>> {
    if row.get_ref(column).map_err(sqlite_error)? == ValueRef::Null {
        return Ok(None);
    }
    key_value(row, column, kind).map(Some)
}

fn key_value(row: &rusqlite::Row<'_>, column: usize, kind: KeyType) -> Result<KeyValue> {
    let value = match kind {
        KeyType::Text => row.get(column).map(KeyValue::Text),
        KeyType::Int => row.get(column).map(KeyValue::Int),
        KeyType::Bytes => row.get(column).map(KeyValue::Bytes),
        KeyType::Float => row.get(column).map(KeyValue::Float),
    };
    value.map_err(sqlite_error)
}

/// The version of the record `key`, after a conditional write changed nothing: the writer is
/// still held, so this is why the write changed nothing.
fn refused_write(conn: &Connection, layout: &Layout, key: &RecordKey, expected: u64) -> Error {
    let statement = layout.version(key);
    let actual = prepare(conn, &statement).and_then(|mut stmt| {
        first_row(&mut stmt, params_from_iter(&statement.params), |row| {
            row.get::<_, i64>(0)
        })
        .map_err(table_error)
    });
    match actual {
        Err(err) => err,
        Ok(None) => Error::NotFound { what: "record" },
        Ok(Some(actual)) => Error::Conflict {
            what: "record",
            expected,
            actual: u64::try_from(actual).unwrap_or_default(),
        },
    }
}

/// The shape the catalog holds for `name`; `None` when it holds none, or does not exist.
fn read_shape(conn: &Connection, catalog: &Catalog, name: &str) -> Result<Option<TableShape>> {
    let found = read_catalog(conn, catalog, name, |row| Ok((row.get(0)?, row.get(1)?)))?;
    checked_shape(name, found, BACKEND)
}

/// The catalog's row for `name`, as `read` reads it; `None` when it has none, or does not
/// exist (which a statement cached while it existed finds only when it runs).
fn read_catalog<T>(
    conn: &Connection,
    catalog: &Catalog,
    name: &str,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    let found = conn
        .prepare_cached(&catalog.read)
        .and_then(|mut stmt| first_row(&mut stmt, [name], read));
    match found {
        Ok(found) => Ok(found),
        Err(err) if is_missing_table(&err) => Ok(None),
        Err(err) => Err(sqlite_error(err)),
    }
}

/// The shape of table `name` as the database holds it: the catalog's, less the indexes whose
/// SQL index is gone (see [`live_shape`]).
fn read_live_shape(
    conn: &Connection,
    catalog: &Catalog,
    tables: &Tables,
    name: &str,
) -> Result<Option<TableShape>> {
    let Some(recorded) = read_shape(conn, catalog, name)? else {
        return Ok(None);
    };
    let bare = crate::table_layout::stored_bare(tables, name, &recorded);
    let indexes = names(conn, "SELECT name FROM pragma_index_list(?1)", &bare)?;
    Ok(Some(live_shape(tables, name, recorded, &indexes)))
}

/// The first column of every row of `sql`, run with `arg`.
fn names(conn: &Connection, sql: &str, arg: &str) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
    stmt.query_map([arg], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sqlite_error)
}

/// The name the catalog records for table `name`, compared without case as SQLite compares
/// table names; `None` when it records none, or does not exist.
fn cataloged_name(conn: &Connection, catalog: &Catalog, name: &str) -> Result<Option<String>> {
    read_catalog(conn, catalog, name, |row| row.get(0))
}

fn create_table(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &Tables,
    layout: &Layout,
    name: &str,
    shape: &str,
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    tx.execute(&catalog.create, []).map_err(sqlite_error)?;
    // The write lock is held: a table another call created meanwhile is in the catalog now.
    if read_shape(&tx, catalog, name)?.is_none() {
        // `CREATE TABLE IF NOT EXISTS` would take a table that is not ours as it is.
        let taken = !names(
            &tx,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            &layout.bare,
        )?
        .is_empty();
        if taken {
            // Only an exact-named table another store shares is adopted (recorded as the
            // database holds it; `ensure_table` then adds what it lacks).
            let columns = names(&tx, "SELECT name FROM pragma_table_info(?1)", &layout.bare)?;
            let indexes = names(&tx, "SELECT name FROM pragma_index_list(?1)", &layout.bare)?;
            let adopted = layout.adopted_shape(tables, &columns, &indexes)?;
            tx.execute(&catalog.insert, [name, adopted.as_str()])
                .map_err(sqlite_error)?;
            return tx.commit().map_err(sqlite_error);
        }
        for ddl in layout.create() {
            tx.execute(&ddl, []).map_err(sqlite_error)?;
        }
        tx.execute(&catalog.insert, [name, shape])
            .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)
}

fn add_indexes(
    conn: &mut Connection,
    catalog: &Catalog,
    tables: &Tables,
    layout: &Layout,
    schema: &TableSchema,
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    // Compared again under the write lock: a concurrent call may have added them already.
    let live = read_live_shape(&tx, catalog, tables, schema.name())?
        .ok_or(Error::NotFound { what: "table" })?;
    let missing = live.compare(schema)?;
    if missing.is_empty() {
        return Ok(());
    }
    let existing = names(&tx, "SELECT name FROM pragma_table_info(?1)", &layout.bare)?;
    let (columns, indexes) = layout.add(&missing, &existing);
    for ddl in columns {
        tx.execute(&ddl, []).map_err(sqlite_error)?;
    }
    fill(&tx, layout, &missing)?;
    for ddl in indexes {
        // A value taken twice fails the unique index, and the transaction rolls back.
        tx.execute(&ddl, []).map_err(table_error)?;
    }
    let shape = shape_json(Dialect::Sqlite, schema)?;
    tx.execute(&catalog.update, [schema.name(), shape.as_str()])
        .map_err(sqlite_error)?;
    tx.commit().map_err(sqlite_error)
}

/// Forgets the recorded query indexes `undeclared` (see `Layout::clear_index_columns`).
fn forget_indexes(
    conn: &mut Connection,
    catalog: &Catalog,
    layout: &Layout,
    name: &str,
    undeclared: &[String],
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let Some(mut recorded) = read_shape(&tx, catalog, name)? else {
        return Ok(());
    };
    for statement in layout.clear_index_columns(&recorded, undeclared) {
        tx.execute(&statement, []).map_err(sqlite_error)?;
    }
    recorded
        .indexes
        .retain(|index| !undeclared.contains(&index.name));
    let shape =
        serde_json::to_string(&recorded).map_err(|e| Error::backend(Dialect::Sqlite.name(), e))?;
    tx.execute(&catalog.update, [name, shape.as_str()])
        .map_err(sqlite_error)?;
    tx.commit().map_err(sqlite_error)
}

/// Writes the new index columns of every record, a page of records at a time.
fn fill(conn: &Connection, layout: &Layout, missing: &MissingIndexes) -> Result<()> {
    let mut after: Option<RecordKey> = None;
    loop {
        let page = records(conn, layout, &layout.scan(after.as_ref(), FILL_PAGE))?;
        for record in &page {
            if let Some(update) = layout.fill(missing, record)? {
                execute(conn, &update)?;
            }
        }
        match page.last() {
            Some(last) if page.len() == FILL_PAGE => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

fn drop_table(
    conn: &mut Connection,
    catalog: &Catalog,
    layout: &Layout,
    name: &str,
) -> Result<bool> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    // Only a table the catalog records under this very name is dropped: not one whose name
    // differs only in case (SQLite would drop it for this one), nor another store's.
    if cataloged_name(&tx, catalog, name)?.as_deref() != Some(name) {
        return Ok(false);
    }
    let existed = tx.execute(&catalog.delete, [name]).map_err(sqlite_error)? > 0;
    tx.execute(&layout.drop_table(), []).map_err(sqlite_error)?;
    tx.commit().map_err(sqlite_error)?;
    Ok(existed)
}

impl SqliteStore {
    /// The layout of `schema`, built once per shape. Before one is kept, the catalog is asked
    /// whether it records this very name: SQLite takes `Things` for `things`, and a call
    /// through a name that differs from a table's only in case would otherwise run on that
    /// table. It finds no table instead, as on every backend. A layout of a table that does
    /// not exist yet is not kept, so the next call asks again.
    async fn layout(&self, schema: &TableSchema) -> Result<Arc<Layout>> {
        if let Some(layout) = self.inner.layouts.cached(schema) {
            return Ok(layout);
        }
        let catalog = &self.inner.catalog;
        let found = self
            .inner
            .conns
            .read(|conn| cataloged_name(conn, catalog, schema.name()))
            .await?;
        match found {
            Some(found) if found == schema.name() => {
                self.inner.layouts.get(&self.inner.tables, schema)
            }
            Some(_) => Err(Error::NotFound { what: "table" }),
            None => Layout::new(Dialect::Sqlite, &self.inner.tables, schema).map(Arc::new),
        }
    }

    /// Deletes every expired record of every table whose records expire (the catalog says
    /// which), a batch per transaction so that writers take turns: the background purge's
    /// part for tables.
    pub(super) async fn purge_expired_records(&self) -> Result<u64> {
        let tables = &self.inner.tables;
        let rows = self
            .inner
            .conns
            .read(|conn| super::schema::catalog_rows(conn, tables))
            .await?
            .unwrap_or_default();
        let mut purged = 0;
        for (name, shape) in rows {
            let shape: TableShape =
                serde_json::from_str(&shape).map_err(|e| Error::backend(BACKEND, e))?;
            if shape.ttl.is_none() {
                continue;
            }
            let layout = self
                .layout(&TableSchema::from_shape(&name, &shape)?)
                .await?;
            loop {
                let now = storekit_core::time::now_seconds();
                let Some(statement) = layout.purge_expired(now, crate::purge::BATCH)? else {
                    break;
                };
                let deleted = self
                    .inner
                    .conns
                    .write_grouped(move |conn| execute(conn, &statement))
                    .await?;
                purged += deleted as u64;
                if (deleted as i64) < crate::purge::BATCH {
                    break;
                }
            }
        }
        Ok(purged)
    }

    /// Starts the background purge for a table whose records expire.
    fn purge_later(&self, schema: &TableSchema) {
        if schema.ttl().is_some() {
            self.start_purger();
        }
    }

    /// Runs a chunk of a read in chunks (see [`INLINE_CHUNKS`]): inline, then yielding, when
    /// bounded; the rest on the blocking pool.
    async fn read_chunk(&self, layout: &Arc<Layout>, read: Read) -> Result<Fetched<StoredRecord>> {
        if read.budget().is_none() {
            let layout = Arc::clone(layout);
            return (self.inner.conns)
                .read_blocking(move |conn| fetched(conn, &layout, &read))
                .await;
        }
        let fetched = self
            .inner
            .conns
            .read(|conn| fetched(conn, layout, &read))
            .await;
        tokio::task::yield_now().await;
        fetched
    }

    /// Runs a read of a query or a scan: inline when it returns and reads few records, on the
    /// blocking pool otherwise (a filter may read far more records than it returns).
    async fn read_fetched(
        &self,
        layout: Arc<Layout>,
        read: Read,
        fetch: usize,
    ) -> Result<Fetched<StoredRecord>> {
        let small = fetch <= INLINE_RECORDS
            && match &read {
                Read::Plain(..) => true,
                Read::Windowed(..) | Read::Stepped(..) => {
                    read.budget().is_some_and(|b| b <= INLINE_RECORDS as u64)
                }
            };
        if small {
            return self
                .inner
                .conns
                .read(|conn| fetched(conn, &layout, &read))
                .await;
        }
        self.inner
            .conns
            .read_blocking(move |conn| fetched(conn, &layout, &read))
            .await
    }

    /// The records of a [`Layout::get_many`] statement for `rows` keys: inline for a few,
    /// on the blocking pool for more.
    async fn read_keyed(
        &self,
        layout: Arc<Layout>,
        statement: Statement,
        rows: usize,
    ) -> Result<Vec<StoredRecord>> {
        if rows <= INLINE_RECORDS {
            return self
                .inner
                .conns
                .read(|conn| keyed_stored(conn, &layout, &statement))
                .await;
        }
        self.inner
            .conns
            .read_blocking(move |conn| keyed_stored(conn, &layout, &statement))
            .await
    }
}

#[async_trait]
impl TableBackend for SqliteStore {
    async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        let (catalog, tables) = (&self.inner.catalog, &self.inner.tables);
        self.inner
            .conns
            .read(|conn| read_live_shape(conn, catalog, tables, schema.name()))
            .await
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        let tables = &self.inner.tables;
        let rows = self
            .inner
            .conns
            .read(|conn| super::schema::catalog_rows(conn, tables))
            .await?;
        Ok(rows
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        let layout = self.layout(schema).await?;
        let (inner, name, shape) = (
            self.inner.clone(),
            schema.name().to_owned(),
            shape_json(Dialect::Sqlite, schema)?,
        );
        self.inner
            .conns
            .write_blocking(move |conn| {
                create_table(conn, &inner.catalog, &inner.tables, &layout, &name, &shape)
            })
            .await
    }

    async fn add_indexes(&self, schema: &TableSchema, _missing: &MissingIndexes) -> Result<()> {
        let layout = self.layout(schema).await?;
        let (inner, schema) = (self.inner.clone(), schema.clone());
        self.inner
            .conns
            .write_blocking(move |conn| {
                add_indexes(conn, &inner.catalog, &inner.tables, &layout, &schema)
            })
            .await
    }

    async fn forget_indexes(&self, schema: &TableSchema, undeclared: &[String]) -> Result<()> {
        let layout = self.layout(schema).await?;
        let (inner, name, undeclared) = (
            self.inner.clone(),
            schema.name().to_owned(),
            undeclared.to_vec(),
        );
        self.inner
            .conns
            .write_blocking(move |conn| {
                forget_indexes(conn, &inner.catalog, &layout, &name, &undeclared)
            })
            .await
    }

    async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
        let layout = match self.layout(schema).await {
            // A name that differs from a table's only in case: that table is not this one.
            Err(Error::NotFound { what: "table" }) => return Ok(false),
            found => found?,
        };
        self.inner.layouts.forget(schema.name());
        let (inner, name) = (self.inner.clone(), schema.name().to_owned());
        self.inner
            .conns
            .write_blocking(move |conn| drop_table(conn, &inner.catalog, &layout, &name))
            .await
    }

    async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()> {
        self.purge_later(schema);
        let statement = self.layout(schema).await?.insert(row, false)?;
        self.inner
            .conns
            .write_grouped(move |conn| execute(conn, &statement).map(drop))
            .await
    }

    async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64> {
        self.purge_later(schema);
        let statement = self.layout(schema).await?.insert(row, true)?;
        self.inner
            .conns
            .write_grouped(move |conn| {
                let mut stmt = prepare(conn, &statement)?;
                let version = first_row(&mut stmt, params_from_iter(&statement.params), |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(table_error)?;
                match version {
                    Some(version) => u64::try_from(version).map_err(|_| {
                        Error::backend(BACKEND, "an upsert returned a negative version")
                    }),
                    // The upsert leaves a record at the last version alone.
                    None => next_version(MAX_VERSION),
                }
            })
            .await
    }

    // Batches (issue 21, item 6).

    async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
        self.purge_later(schema);
        let layout = self.layout(schema).await?;
        let statements = rows
            .iter()
            .map(|row| layout.insert(row, true))
            .collect::<Result<Vec<_>>>()?;
        // One transaction, on the blocking pool (up to 1,000 statements): every upsert or none.
        self.inner
            .conns
            .write_blocking(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let versions = statements
                    .iter()
                    .map(|statement| {
                        let mut stmt = prepare(&tx, statement)?;
                        let version =
                            first_row(&mut stmt, params_from_iter(&statement.params), |row| {
                                row.get::<_, i64>(0)
                            })
                            .map_err(table_error)?;
                        match version {
                            Some(version) => u64::try_from(version).map_err(|_| {
                                Error::backend(BACKEND, "an upsert returned a negative version")
                            }),
                            None => next_version(MAX_VERSION),
                        }
                    })
                    .collect::<Result<Vec<u64>>>()?;
                tx.commit().map_err(sqlite_error)?;
                Ok(versions)
            })
            .await
    }

    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
        let layout = self.layout(schema).await?;
        let statements: Vec<_> = keys.iter().map(|key| layout.delete(key, None)).collect();
        self.inner
            .conns
            .write_blocking(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                for statement in &statements {
                    execute(&tx, statement)?;
                }
                tx.commit().map_err(sqlite_error)
            })
            .await
    }

    async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()> {
        let layout = self.layout(schema).await?;
        let statement = layout.replace(row, expected)?;
        let key = row.key().clone();
        self.inner
            .conns
            .write_grouped(move |conn| match execute(conn, &statement)? {
                0 => Err(refused_write(conn, &layout, &key, expected)),
                _ => Ok(()),
            })
            .await
    }

    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool> {
        let layout = self.layout(schema).await?;
        let statement = layout.delete(key, expected);
        let key = key.clone();
        self.inner
            .conns
            .write_grouped(move |conn| match (execute(conn, &statement)?, expected) {
                (0, None) => Ok(false),
                (0, Some(expected)) => Err(refused_write(conn, &layout, &key, expected)),
                _ => Ok(true),
            })
            .await
    }

    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        let layout = self.layout(schema).await?;
        let read = layout.get(key);
        let (schema, patch, condition) = (schema.clone(), patch.clone(), condition.cloned());
        // Read and written on the one writer, in one savepoint: nothing can come between.
        self.inner
            .conns
            .write_grouped(move |conn| {
                let current =
                    one_record(conn, &layout, &read)?.ok_or(Error::NotFound { what: "record" })?;
                let row = patch_row(&schema, &current, &patch, condition.as_ref())?;
                let write = layout.replace(&row, current.version)?;
                if execute(conn, &write)? == 0 {
                    return Err(Error::backend(BACKEND, "a patch changed no row"));
                }
                let version = next_version(current.version)?;
                Ok((
                    version,
                    returned(&patch, returning, Some(&current.document), row.document()),
                ))
            })
            .await
    }

    async fn get(&self, schema: &TableSchema, key: &RecordKey) -> Result<Option<Record>> {
        let found = self.get_stored(schema, key).await?;
        found.map(|stored| stored.into_record(BACKEND)).transpose()
    }

    async fn get_many(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<Record>>> {
        parse_all(self.get_many_stored(schema, keys).await?, BACKEND)
    }

    async fn get_stored(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
    ) -> Result<Option<StoredRecord>> {
        let layout = self.layout(schema).await?;
        let statement = layout.get(key);
        self.inner
            .conns
            .read(|conn| one_stored(conn, &layout, &statement, key))
            .await
    }

    async fn get_many_stored(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<StoredRecord>>> {
        let layout = self.layout(schema).await?;
        let distinct = distinct_keys(keys);
        let statement = layout.get_many(&distinct);
        let found = self.read_keyed(layout, statement, distinct.len()).await?;
        Ok(in_key_order(keys, found))
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        let statement = self.layout(schema).await?.contains(key);
        self.inner
            .conns
            .read(|conn| {
                let mut stmt = prepare(conn, &statement)?;
                any_row(&mut stmt, params_from_iter(&statement.params)).map_err(table_error)
            })
            .await
    }

    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        let layout = self.layout(schema).await?;
        let statement = layout.by_unique(index, values);
        self.inner
            .conns
            .read(|conn| one_record(conn, &layout, &statement))
            .await
    }

    async fn query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<Fetched> {
        let fetched = self.query_stored(schema, query).await?;
        fetched.try_map(|record| record.into_record(BACKEND))
    }

    async fn query_stored(
        &self,
        schema: &TableSchema,
        query: &IndexQuery<'_>,
    ) -> Result<Fetched<StoredRecord>> {
        let layout = self.layout(schema).await?;
        if in_chunks(query.filter, query.budget, query.fetch) {
            let run = |read| self.read_chunk(&layout, read);
            return query_in_chunks(&layout, schema, BACKEND, query, &INLINE_CHUNKS, run).await;
        }
        let read = layout.query(query)?;
        self.read_fetched(layout, read, query.fetch).await
    }

    async fn scan(&self, schema: &TableSchema, scan: &TableScan<'_>) -> Result<Fetched> {
        let fetched = self.scan_stored(schema, scan).await?;
        fetched.try_map(|record| record.into_record(BACKEND))
    }

    async fn scan_stored(
        &self,
        schema: &TableSchema,
        scan: &TableScan<'_>,
    ) -> Result<Fetched<StoredRecord>> {
        let layout = self.layout(schema).await?;
        if in_chunks(scan.filter, scan.budget, scan.fetch) {
            let run = |read| self.read_chunk(&layout, read);
            return scan_in_chunks(&layout, schema, scan, &INLINE_CHUNKS, run).await;
        }
        let read = layout.scan_read(scan)?;
        self.read_fetched(layout, read, scan.fetch).await
    }

    async fn count_query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<u64> {
        let statement = self.layout(schema).await?.count_query(query)?;
        // Counting reads the whole range: off the runtime's threads.
        self.inner
            .conns
            .read_blocking(move |conn| {
                let mut stmt = prepare(conn, &statement)?;
                let count = first_row(&mut stmt, params_from_iter(&statement.params), |row| {
                    row.get::<_, i64>(0)
                })
                .map_err(table_error)?;
                Ok(count
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or_default())
            })
            .await
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        let statement = self.layout(schema).await?.count();
        // Counting reads the whole table.
        self.inner
            .conns
            .read_blocking(move |conn| {
                let mut stmt = prepare(conn, &statement)?;
                let count =
                    first_row(&mut stmt, [], |row| row.get::<_, i64>(0)).map_err(table_error)?;
                Ok(count
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or_default())
            })
            .await
    }
    // Conditional writes (issue 21, item 5): read, checked and written on the one writer in
    // one savepoint, so nothing can come between the check and the write.

    async fn put_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        condition: &Condition,
        existing: bool,
    ) -> Result<u64> {
        let layout = self.layout(schema).await?;
        let read = layout.get(row.key());
        let (schema, row, condition) = (schema.clone(), row.clone(), condition.clone());
        self.inner
            .conns
            .write_grouped(move |conn| {
                let current = one_record(conn, &layout, &read)?;
                if existing && current.is_none() {
                    return Err(Error::NotFound { what: "record" });
                }
                condition_holds(&schema, current.as_ref(), &condition)?;
                let (write, version) = match &current {
                    None => (layout.insert(&row, false)?, 1),
                    Some(current) => (
                        layout.replace(&row, current.version)?,
                        next_version(current.version)?,
                    ),
                };
                if execute(conn, &write)? == 0 {
                    return Err(Error::backend(
                        BACKEND,
                        "a conditional write changed no row",
                    ));
                }
                Ok(version)
            })
            .await
    }

    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool> {
        let layout = self.layout(schema).await?;
        let read = layout.get(key);
        let key = key.clone();
        let (schema, condition) = (schema.clone(), condition.clone());
        self.inner
            .conns
            .write_grouped(move |conn| {
                let current = one_record(conn, &layout, &read)?;
                condition_holds(&schema, current.as_ref(), &condition)?;
                let Some(current) = current else {
                    return Ok(false);
                };
                let delete = layout.delete(&key, Some(current.version));
                Ok(execute(conn, &delete)? > 0)
            })
            .await
    }
    // Transactions (issue 21, item 7): every step read, resolved and written on the one
    // writer in one savepoint, which a failed step rolls back whole.

    async fn transact(&self, steps: &[Step]) -> Result<()> {
        let mut planned = Vec::with_capacity(steps.len());
        for step in steps {
            planned.push((step.clone(), self.layout(&step.schema).await?));
        }
        self.inner
            .conns
            .write_grouped(move |conn| {
                // A savepoint of its own: the writer may run this inline, outside the group's
                // savepoint, and a step may fail after others have written.
                conn.execute_batch("SAVEPOINT storekit_transact")
                    .map_err(sqlite_error)?;
                let applied = planned
                    .iter()
                    .enumerate()
                    .try_for_each(|(index, (step, layout))| {
                        apply_step(conn, layout, step).map_err(|e| failed(index, e))
                    });
                let end = match applied {
                    Ok(()) => "RELEASE storekit_transact",
                    Err(_) => "ROLLBACK TO storekit_transact; RELEASE storekit_transact",
                };
                conn.execute_batch(end).map_err(sqlite_error)?;
                applied
            })
            .await
    }
}

/// One step of a transaction, on the writer: the record read, the step resolved on it, its
/// write made.
fn apply_step(conn: &Connection, layout: &Layout, step: &Step) -> Result<()> {
    let current = one_record(conn, layout, &layout.get(step.key()))?;
    let write = match step.resolve(current.as_ref())? {
        Resolved::Insert(row) => layout.insert(&row, false)?,
        Resolved::Replace(row, version) => layout.replace(&row, version)?,
        Resolved::Delete(key, version) => layout.delete(&key, Some(version)),
        _ => return Ok(()),
    };
    if execute(conn, &write)? == 0 {
        return Err(Error::backend(
            BACKEND,
            "a transaction's write changed no row",
        ));
    }
    Ok(())
}

/// What `storekit copy` reads and writes of the tables store.
#[async_trait]
impl TableTransferBackend for SqliteStore {
    /// Every table the catalog records, with its shape, ordered by name.
    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>> {
        let tables = &self.inner.tables;
        let rows = self
            .inner
            .conns
            .read(|conn| super::schema::catalog_rows(conn, tables))
            .await?;
        crate::check::shapes(rows.unwrap_or_default(), BACKEND)
    }

    /// Writes each row at its version in one transaction, a chunk of rows at a time.
    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()> {
        let layout = self.layout(schema).await?;
        let statements = rows
            .iter()
            .map(|(row, version)| layout.import(row, *version))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .conns
            .write_chunks(statements.chunks(INLINE_RECORDS), |conn, chunk| {
                for statement in chunk {
                    execute(conn, statement)?;
                }
                Ok(Vec::<()>::new())
            })
            .await?;
        Ok(())
    }
}
