//! The tables store on PostgreSQL: the layout and statements of `crate::table_layout`, each
//! operation one statement where the server decides it (a taken key or unique value, an
//! upsert's version, a versioned write), and DDL in a transaction under an advisory lock.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnection, PgRow, PgValueFormat};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row as _, SqlSafeStr as _};
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

use super::PostgresStore;
use super::error::{is_missing_table, pg_error, retry_conflicts_with, table_error};
use super::schema::sql;
use crate::continued::{query_in_chunks, scan_in_chunks};
use crate::dialect::{Dialect, Param, Statement};
use crate::table_layout::{Layout, Read, checked_shape, live_shape, shape_json};

const BACKEND: &str = "postgres";

/// The records the first chunk of a filtered read without a read budget reads at most, for a
/// page of `fetch` (see [`query_in_chunks`]): enough for a page of a filter that one record in
/// four meets, and for a short page at least 256 (one round trip more is dearer than reading a
/// few more records in order).
fn first_chunk(fetch: usize) -> u64 {
    u64::try_from(fetch).map_or(u64::MAX, |fetch| fetch.saturating_mul(4).max(256))
}

/// Records read per statement while filling new index columns.
const FILL_PAGE: usize = 500;

/// Attempts of a versioned write whose record was deleted and written again at the expected
/// version between the write and the read that learns why it changed nothing.
const VERSIONED_ATTEMPTS: usize = 3;

type PgQuery = Query<'static, Postgres, PgArguments>;

/// The statement, its values bound: each is encoded from where it is, never copied first.
fn query(statement: &Statement) -> PgQuery {
    // Safe: the text is a layout's, whose identifiers are validated and whose values are
    // all bound. The `Arc` is shared with the layout's cache of texts.
    let text = AssertSqlSafe(Arc::clone(&statement.sql)).into_sql_str();
    statement.params.iter().fold(
        sqlx::query(text).persistent(statement.recurs),
        |query, param| match param {
            Param::Text(text) | Param::Document(text) => query.bind(text.as_str()),
            Param::Int(int) => query.bind(*int),
            Param::Bytes(bytes) => query.bind(bytes.as_slice()),
            Param::Float(float) => query.bind(*float),
            Param::Null(KeyType::Text) => query.bind(None::<String>),
            Param::Null(KeyType::Int) => query.bind(None::<i64>),
            Param::Null(KeyType::Bytes) => query.bind(None::<Vec<u8>>),
            Param::Null(KeyType::Float) => query.bind(None::<f64>),
        },
    )
}

/// The record of a `SELECT version, document` row, its document left as the text it is
/// sent as; the key given (a read by key) or read from the key columns that follow
/// (`Layout::get_many`).
fn stored_of(layout: &Layout, row: &PgRow, key: Option<&RecordKey>) -> Result<StoredRecord> {
    let version: i64 = row.try_get(0).map_err(pg_error)?;
    let text = document_text(row, 1)?;
    match key {
        Some(key) => layout.stored(key.clone(), version, text),
        None => layout.paged_row(None, version, text, 2, |i, kind| nullable_key(row, i, kind)),
    }
}

/// A `jsonb` column as JSON text. Sent in binary, `jsonb` is a version byte (1) and then the
/// text, which a typed read parses straight into its type; decoding it as a
/// `serde_json::Value` would build a map of every field first.
fn document_text(row: &PgRow, column: usize) -> Result<String> {
    let value = row.try_get_raw(column).map_err(pg_error)?;
    let mut bytes = value
        .as_bytes()
        .map_err(|e| Error::backend(BACKEND, e.to_string()))?;
    if value.format() == PgValueFormat::Binary {
        match bytes.split_first() {
            Some((1, text)) => bytes = text,
            _ => {
                return Err(Error::backend(
                    BACKEND,
                    "a jsonb value of an unknown format",
                ));
            }
        }
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::backend(BACKEND, e))
}

/// A key column that may be NULL (an index's sort column).
fn nullable_key(row: &PgRow, column: usize, kind: KeyType) -> Result<Option<KeyValue>> {
    let value = match kind {
        KeyType::Text => row
            .try_get::<Option<String>, _>(column)
            .map(|v| v.map(KeyValue::Text)),
        KeyType::Int => row
            .try_get::<Option<i64>, _>(column)
            .map(|v| v.map(KeyValue::Int)),
        KeyType::Bytes => row
            .try_get::<Option<Vec<u8>>, _>(column)
            .map(|v| v.map(KeyValue::Bytes)),
        KeyType::Float => row
            .try_get::<Option<f64>, _>(column)
            .map(|v| v.map(KeyValue::Float)),
    };
    value.map_err(pg_error)
}

fn record_of(layout: &Layout, row: &PgRow) -> Result<Record> {
    let version: i64 = row.try_get(0).map_err(pg_error)?;
    let document: serde_json::Value = row.try_get(1).map_err(pg_error)?;
    layout.record(version, document)
}

/// The first column of `row`, a version or a count, which is never negative.
fn first_number(row: &PgRow) -> Result<u64> {
    let number: i64 = row.try_get(0).map_err(pg_error)?;
    u64::try_from(number).map_err(|_| Error::backend(BACKEND, "a version or count is negative"))
}

/// Takes the lock that orders DDL on this store's tables, until the transaction ends: tables
/// are created, grown and dropped one at a time, and concurrent `CREATE TABLE IF NOT EXISTS`
/// never collide in the system catalogs.
async fn lock_tables(conn: &mut PgConnection, catalog_table: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("storekit tables {catalog_table}"))
        .execute(conn)
        .await
        .map_err(pg_error)
        .map(drop)
}

async fn ddl(conn: &mut PgConnection, text: String) -> Result<()> {
    sqlx::raw_sql(sql(text))
        .execute(conn)
        .await
        .map_err(pg_error)
        .map(drop)
}

impl PostgresStore {
    fn layout(&self, schema: &TableSchema) -> Result<Arc<Layout>> {
        self.inner.layouts.get(&self.inner.tables, schema)
    }

    /// Deletes every expired record of every table whose records expire (the catalog says
    /// which), a batch per statement so that no transaction runs long: the background
    /// purge's part for tables.
    pub(super) async fn purge_expired_records(&self) -> Result<u64> {
        let rows = {
            let mut conn = self.inner.pool.acquire().await.map_err(pg_error)?;
            super::schema::catalog_rows(&mut conn, &self.inner.tables)
                .await?
                .unwrap_or_default()
        };
        let mut purged = 0;
        for (name, shape) in rows {
            let shape: TableShape =
                serde_json::from_str(&shape).map_err(|e| Error::backend(BACKEND, e))?;
            if shape.ttl.is_none() {
                continue;
            }
            let layout = self.layout(&TableSchema::from_shape(&name, &shape)?)?;
            loop {
                let now = storekit_core::time::now_seconds();
                let Some(statement) = layout.purge_expired(now, crate::purge::BATCH)? else {
                    break;
                };
                let done = self
                    .run(&layout, || query(&statement).execute(&self.inner.pool))
                    .await?;
                purged += done.rows_affected();
                if done.rows_affected() < crate::purge::BATCH as u64 {
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

    /// The shape the catalog holds for `name` (the catalog must exist).
    async fn read_shape(&self, conn: &mut PgConnection, name: &str) -> Result<Option<TableShape>> {
        let found = sqlx::query_as(sql(self.inner.catalog.read.clone()))
            .bind(name)
            .fetch_optional(conn)
            .await
            .map_err(pg_error)?;
        checked_shape(name, found, BACKEND)
    }

    /// The shape of table `name` as the database holds it: the catalog's, less the indexes
    /// whose SQL index is gone (see [`live_shape`]).
    async fn read_live_shape(
        &self,
        conn: &mut PgConnection,
        name: &str,
    ) -> Result<Option<TableShape>> {
        let Some(recorded) = self.read_shape(&mut *conn, name).await? else {
            return Ok(None);
        };
        let bare = crate::table_layout::stored_bare(&self.inner.tables, name, &recorded);
        let indexes = self
            .names(
                conn,
                "SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = COALESCE($1, current_schema()) AND tablename = $2",
                &bare,
            )
            .await?;
        Ok(Some(live_shape(
            &self.inner.tables,
            name,
            recorded,
            &indexes,
        )))
    }

    /// The first column of every row of `query`, run with the store's schema (or none, for
    /// the connection's) and `table`.
    async fn names(
        &self,
        conn: &mut PgConnection,
        query: &'static str,
        table: &str,
    ) -> Result<HashSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar(query)
            .bind(self.inner.schema.as_deref())
            .bind(table)
            .fetch_all(conn)
            .await
            .map_err(pg_error)?;
        Ok(rows.into_iter().collect())
    }

    /// Runs an idempotent statement (again if the server rolled it back to break a deadlock),
    /// within the operation timeout, mapping its errors for `layout`.
    async fn run<T, F, Fut>(&self, layout: &Layout, statement: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        self.within_deadline(retry_conflicts_with(statement, |err| {
            table_error(err, &layout.primary_key)
        }))
        .await
    }

    /// What a read found, the documents left as text: each row a record for a plain read, or
    /// for a windowed one its hits, its cut and its count, tallied (see [`Layout::windowed`]).
    async fn fetched(&self, layout: &Layout, read: &Read) -> Result<Fetched<StoredRecord>> {
        let (statement, window, index) = match read {
            Read::Plain(statement, index) => (statement, None, *index),
            Read::Windowed(statement, window, index) => (statement, Some(*window), *index),
            // Layout::counted gives PostgreSQL windowed reads only.
            Read::Stepped(..) => {
                return Err(Error::backend(BACKEND, "a stepped read on PostgreSQL"));
            }
        };
        let rows = self
            .run(layout, || query(statement).fetch_all(&self.inner.pool))
            .await?;
        // The record of a row of `version` whose key columns start at `at`.
        let record = |row: &PgRow, version, at| {
            let column = |i, kind| nullable_key(row, i, kind);
            layout.paged_row(index, version, document_text(row, 1)?, at, column)
        };
        let Some(window) = window else {
            let records = rows.iter().map(|row| {
                let version = row.try_get(0).map_err(pg_error)?;
                record(row, version, 2)
            });
            return Ok(Fetched::unfiltered(records.collect::<Result<_>>()?));
        };
        let mut tally = layout.tally(window);
        for row in &rows {
            let [hit, n]: [i64; 2] = [
                row.try_get(2).map_err(pg_error)?,
                row.try_get(3).map_err(pg_error)?,
            ];
            let n = u64::try_from(n).unwrap_or_default();
            // The count row, which holds no record: the range ended.
            let Some(version) = row.try_get(0).map_err(pg_error)? else {
                tally.ended(n);
                break;
            };
            if tally.row(n, hit == 1, || record(row, version, 4))? {
                break;
            }
        }
        Ok(tally.finish())
    }

    async fn one_record(&self, layout: &Layout, statement: &Statement) -> Result<Option<Record>> {
        let row = self
            .run(layout, || query(statement).fetch_optional(&self.inner.pool))
            .await?;
        row.map(|row| record_of(layout, &row)).transpose()
    }

    /// Runs a write at `expected` that changed no row when the record is missing or at
    /// another version, and says which: the record's version is read after the write, and
    /// if the record is at `expected` again by then (deleted and written anew), the write is
    /// tried again.
    async fn versioned(
        &self,
        layout: &Layout,
        write: &Statement,
        key: &RecordKey,
        expected: u64,
    ) -> Result<()> {
        let read = layout.version(key);
        for _ in 0..VERSIONED_ATTEMPTS {
            let done = self
                .run(layout, || query(write).execute(&self.inner.pool))
                .await?;
            if done.rows_affected() > 0 {
                return Ok(());
            }
            let actual = self
                .run(layout, || query(&read).fetch_optional(&self.inner.pool))
                .await?;
            match actual.as_ref().map(first_number).transpose()? {
                None => return Err(Error::NotFound { what: "record" }),
                Some(actual) if actual != expected => {
                    return Err(Error::Conflict {
                        what: "record",
                        expected,
                        actual,
                    });
                }
                Some(_) => {}
            }
        }
        Err(Error::unavailable(
            BACKEND,
            "the record kept being deleted and written again at the expected version",
        ))
    }

    async fn fill(
        &self,
        conn: &mut PgConnection,
        layout: &Layout,
        missing: &MissingIndexes,
    ) -> Result<()> {
        let mut after: Option<RecordKey> = None;
        loop {
            let rows = query(&layout.scan(after.as_ref(), FILL_PAGE))
                .fetch_all(&mut *conn)
                .await
                .map_err(pg_error)?;
            let page = rows
                .iter()
                .map(|row| record_of(layout, row))
                .collect::<Result<Vec<_>>>()?;
            for record in &page {
                if let Some(update) = layout.fill(missing, record)? {
                    query(&update)
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| table_error(e, &layout.primary_key))?;
                }
            }
            match page.last() {
                Some(last) if page.len() == FILL_PAGE => after = Some(last.key.clone()),
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl TableBackend for PostgresStore {
    async fn describe_table(&self, schema: &TableSchema) -> Result<Option<TableShape>> {
        self.within_deadline(async {
            let mut conn = self.inner.pool.acquire().await.map_err(pg_error)?;
            // No catalog yet: no table either.
            if !super::schema::exists(&mut conn, &self.inner.tables.catalog).await? {
                return Ok(None);
            }
            self.read_live_shape(&mut conn, schema.name()).await
        })
        .await
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        self.within_deadline(async {
            let mut conn = self.inner.pool.acquire().await.map_err(pg_error)?;
            let rows = super::schema::catalog_rows(&mut conn, &self.inner.tables).await?;
            Ok(rows
                .unwrap_or_default()
                .into_iter()
                .map(|(name, _)| name)
                .collect())
        })
        .await
    }

    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        let layout = self.layout(schema)?;
        let shape = shape_json(Dialect::Postgres, schema)?;
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            lock_tables(&mut tx, &self.inner.tables.catalog).await?;
            if let Some(schema) = &self.inner.schema {
                ddl(&mut tx, format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await?;
            }
            ddl(&mut tx, self.inner.catalog.create.clone()).await?;
            // Under the lock: a table another call created meanwhile is in the catalog now.
            if self.read_shape(&mut tx, schema.name()).await?.is_none() {
                // Asked again under the lock, where no other store call can create one.
                let recorded = super::schema::catalog_rows(&mut tx, &self.inner.tables).await?;
                if let Some((twin, _)) = recorded.unwrap_or_default().into_iter().find(|(n, _)| {
                    n != schema.name() && storekit_core::table::same_table_name(n, schema.name())
                }) {
                    return Err(Error::invalid(
                        "table name",
                        format!(
                            "{:?} and the existing table {twin:?} differ only in letter case, \
                             and are one name on every backend",
                            schema.name()
                        ),
                    ));
                }
                // `CREATE TABLE IF NOT EXISTS` would take a table that is not ours as it is.
                if super::schema::exists(&mut tx, &layout.table).await? {
                    // Only an exact-named table another store shares is adopted (recorded
                    // as the database holds it; `ensure_table` then adds what it lacks).
                    let columns = self
                        .names(
                            &mut tx,
                            "SELECT column_name::text FROM information_schema.columns \
                             WHERE table_schema = COALESCE($1, current_schema()) \
                             AND table_name = $2",
                            &layout.bare,
                        )
                        .await?;
                    let indexes = self
                        .names(
                            &mut tx,
                            "SELECT indexname::text FROM pg_indexes \
                             WHERE schemaname = COALESCE($1, current_schema()) AND tablename = $2",
                            &layout.bare,
                        )
                        .await?;
                    let adopted = layout.adopted_shape(&self.inner.tables, &columns, &indexes)?;
                    sqlx::query(sql(self.inner.catalog.insert.clone()))
                        .bind(schema.name())
                        .bind(&adopted)
                        .execute(&mut *tx)
                        .await
                        .map_err(pg_error)?;
                    return tx.commit().await.map_err(pg_error);
                }
                for statement in layout.create() {
                    ddl(&mut tx, statement).await?;
                }
                sqlx::query(sql(self.inner.catalog.insert.clone()))
                    .bind(schema.name())
                    .bind(&shape)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    /// Not bounded by the operation timeout: filling the columns takes as long as the table
    /// is large (the statement timeout still applies to each statement).
    async fn add_indexes(&self, schema: &TableSchema, _missing: &MissingIndexes) -> Result<()> {
        let layout = self.layout(schema)?;
        let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
        lock_tables(&mut tx, &self.inner.tables.catalog).await?;
        // Compared again under the lock: a concurrent call may have added them already.
        let live = self
            .read_live_shape(&mut tx, schema.name())
            .await?
            .ok_or(Error::NotFound { what: "table" })?;
        let missing = live.compare(schema)?;
        if missing.is_empty() {
            return Ok(());
        }
        let existing = self
            .names(
                &mut tx,
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = COALESCE($1, current_schema()) AND table_name = $2",
                &layout.bare,
            )
            .await?;
        let (columns, indexes) = layout.add(&missing, &existing);
        for statement in columns {
            ddl(&mut tx, statement).await?;
        }
        self.fill(&mut tx, &layout, &missing).await?;
        for statement in indexes {
            // A value taken twice fails the unique index, and the transaction rolls back.
            sqlx::raw_sql(sql(statement))
                .execute(&mut *tx)
                .await
                .map_err(|e| table_error(e, &layout.primary_key))?;
        }
        sqlx::query(sql(self.inner.catalog.update.clone()))
            .bind(schema.name())
            .bind(shape_json(Dialect::Postgres, schema)?)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    /// Forgets the recorded query indexes `undeclared` (see `Layout::clear_index_columns`).
    async fn forget_indexes(&self, schema: &TableSchema, undeclared: &[String]) -> Result<()> {
        let layout = self.layout(schema)?;
        let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
        lock_tables(&mut tx, &self.inner.tables.catalog).await?;
        let Some(mut recorded) = self.read_shape(&mut tx, schema.name()).await? else {
            return Ok(());
        };
        for statement in layout.clear_index_columns(&recorded, undeclared) {
            ddl(&mut tx, statement).await?;
        }
        recorded
            .indexes
            .retain(|index| !undeclared.contains(&index.name));
        let shape = serde_json::to_string(&recorded)
            .map_err(|e| Error::backend(Dialect::Postgres.name(), e))?;
        sqlx::query(sql(self.inner.catalog.update.clone()))
            .bind(schema.name())
            .bind(shape)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    async fn drop_table(&self, schema: &TableSchema) -> Result<bool> {
        let layout = self.layout(schema)?;
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            lock_tables(&mut tx, &self.inner.tables.catalog).await?;
            // A missing catalog fails the statement; the savepoint keeps the transaction.
            ddl(&mut tx, "SAVEPOINT catalog".to_owned()).await?;
            let deleted = sqlx::query(sql(self.inner.catalog.delete.clone()))
                .bind(schema.name())
                .execute(&mut *tx)
                .await;
            let existed = match deleted {
                Ok(done) => done.rows_affected() > 0,
                Err(err) if is_missing_table(&err) => {
                    ddl(&mut tx, "ROLLBACK TO SAVEPOINT catalog".to_owned()).await?;
                    false
                }
                Err(err) => return Err(pg_error(err)),
            };
            // Only a table the catalog records is dropped, never another store's.
            if existed {
                ddl(&mut tx, layout.drop_table()).await?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(existed)
        })
        .await
    }

    async fn insert(&self, schema: &TableSchema, row: &Row) -> Result<()> {
        self.purge_later(schema);
        let layout = self.layout(schema)?;
        let statement = layout.insert(row, false)?;
        self.run(&layout, || query(&statement).execute(&self.inner.pool))
            .await
            .map(drop)
    }

    async fn put(&self, schema: &TableSchema, row: &Row) -> Result<u64> {
        self.purge_later(schema);
        let layout = self.layout(schema)?;
        let statement = layout.insert(row, true)?;
        let row = self
            .run(&layout, || {
                query(&statement).fetch_optional(&self.inner.pool)
            })
            .await?;
        match row {
            Some(row) => first_number(&row),
            // The upsert leaves a record at the last version alone.
            None => next_version(MAX_VERSION),
        }
    }

    // Batches (issue 21, item 6).

    async fn put_many(&self, schema: &TableSchema, rows: &[Row]) -> Result<Vec<u64>> {
        self.purge_later(schema);
        let layout = self.layout(schema)?;
        let statements = rows
            .iter()
            .map(|row| layout.insert(row, true))
            .collect::<Result<Vec<_>>>()?;
        let fail = |err| table_error(err, &layout.primary_key);
        // Rows are locked in key order, whatever the caller's order: two batches over
        // overlapping keys then queue on the first key they share instead of deadlocking
        // (32 such batches at once waited on each other past the operation timeout).
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| rows[a].key().cmp(rows[b].key()));
        // One transaction: every upsert or none.
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            let mut versions = vec![0; statements.len()];
            for &i in &order {
                let row = query(&statements[i])
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
                versions[i] = match row {
                    Some(row) => first_number(&row)?,
                    None => next_version(MAX_VERSION)?,
                };
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(versions)
        })
        .await
    }

    async fn delete_many(&self, schema: &TableSchema, keys: &[RecordKey]) -> Result<()> {
        let layout = self.layout(schema)?;
        let fail = |err| table_error(err, &layout.primary_key);
        // In key order, as `put_many` locks them, so that batches never deadlock.
        let mut sorted: Vec<&RecordKey> = keys.iter().collect();
        sorted.sort();
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            for key in sorted {
                query(&layout.delete(key, None))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    async fn replace(&self, schema: &TableSchema, row: &Row, expected: u64) -> Result<()> {
        let layout = self.layout(schema)?;
        let statement = layout.replace(row, expected)?;
        self.versioned(&layout, &statement, row.key(), expected)
            .await
    }

    async fn delete(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        expected: Option<u64>,
    ) -> Result<bool> {
        let layout = self.layout(schema)?;
        let statement = layout.delete(key, expected);
        match expected {
            Some(expected) => self
                .versioned(&layout, &statement, key, expected)
                .await
                .map(|()| true),
            None => {
                let done = self
                    .run(&layout, || query(&statement).execute(&self.inner.pool))
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    }

    async fn patch(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        patch: &Patch,
        condition: Option<&Condition>,
        returning: Returning,
    ) -> Result<(u64, Option<Document>)> {
        let layout = self.layout(schema)?;
        // One `UPDATE … RETURNING` when the patch can be said exactly in jsonb; when it
        // changes nothing, the locked path below answers exactly.
        if let Some(statement) = layout.patch_in_place(key, patch, condition, returning)? {
            let row = self
                .run(&layout, || {
                    query(&statement).fetch_optional(&self.inner.pool)
                })
                .await?;
            if let Some(row) = row {
                let new = record_of(&layout, &row)?;
                // Never `Returning::Old`, which takes the locked path: the record before is not read.
                let document = returned(patch, returning, None, &new.document);
                return Ok((new.version, document));
            }
        }
        let mut read = layout.get(key);
        // The row stays locked until the transaction ends: concurrent patches of one record
        // queue on it, none retries and none is lost.
        read.sql = format!("{} FOR UPDATE", read.sql).into();
        let fail = |err| table_error(err, &layout.primary_key);
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            let found = query(&read).fetch_optional(&mut *tx).await.map_err(fail)?;
            let current = found
                .map(|row| record_of(&layout, &row))
                .transpose()?
                .ok_or(Error::NotFound { what: "record" })?;
            let row = patch_row(schema, &current, patch, condition)?;
            let write = layout.replace(&row, current.version)?;
            let done = query(&write).execute(&mut *tx).await.map_err(fail)?;
            if done.rows_affected() == 0 {
                return Err(Error::backend(BACKEND, "a patch changed no row"));
            }
            tx.commit().await.map_err(pg_error)?;
            let version = next_version(current.version)?;
            Ok((
                version,
                returned(patch, returning, Some(&current.document), row.document()),
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
        let layout = self.layout(schema)?;
        let statement = layout.get(key);
        let row = self
            .run(&layout, || {
                query(&statement).fetch_optional(&self.inner.pool)
            })
            .await?;
        row.map(|row| stored_of(&layout, &row, Some(key)))
            .transpose()
    }

    async fn get_many_stored(
        &self,
        schema: &TableSchema,
        keys: &[RecordKey],
    ) -> Result<Vec<Option<StoredRecord>>> {
        let layout = self.layout(schema)?;
        let statement = layout.get_many(&distinct_keys(keys));
        let rows = self
            .run(&layout, || query(&statement).fetch_all(&self.inner.pool))
            .await?;
        let found = rows
            .iter()
            .map(|row| stored_of(&layout, row, None))
            .collect::<Result<_>>()?;
        Ok(in_key_order(keys, found))
    }

    async fn contains(&self, schema: &TableSchema, key: &RecordKey) -> Result<bool> {
        let layout = self.layout(schema)?;
        let statement = layout.contains(key);
        let row = self
            .run(&layout, || {
                query(&statement).fetch_optional(&self.inner.pool)
            })
            .await?;
        Ok(row.is_some())
    }

    async fn get_by_unique(
        &self,
        schema: &TableSchema,
        index: usize,
        values: &[KeyValue],
    ) -> Result<Option<Record>> {
        let layout = self.layout(schema)?;
        self.one_record(&layout, &layout.by_unique(index, values))
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
        let layout = self.layout(schema)?;
        if query.filter.is_some() && query.budget.is_none() {
            let (layout, first) = (&layout, [first_chunk(query.fetch)]);
            let run = move |read| async move { self.fetched(layout, &read).await };
            return query_in_chunks(layout, schema, BACKEND, query, &first, run).await;
        }
        let read = layout.query(query)?;
        self.fetched(&layout, &read).await
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
        let layout = self.layout(schema)?;
        if scan.filter.is_some() && scan.budget.is_none() {
            let (layout, first) = (&layout, [first_chunk(scan.fetch)]);
            let run = move |read| async move { self.fetched(layout, &read).await };
            return scan_in_chunks(layout, schema, scan, &first, run).await;
        }
        let read = layout.scan_read(scan)?;
        self.fetched(&layout, &read).await
    }

    async fn count_query(&self, schema: &TableSchema, query: &IndexQuery<'_>) -> Result<u64> {
        let layout = self.layout(schema)?;
        let statement = layout.count_query(query)?;
        let row = self
            .run(&layout, || {
                self::query(&statement).fetch_one(&self.inner.pool)
            })
            .await?;
        first_number(&row)
    }

    async fn count(&self, schema: &TableSchema) -> Result<u64> {
        let layout = self.layout(schema)?;
        let statement = layout.count();
        let row = self
            .run(&layout, || {
                query(&statement).fetch_optional(&self.inner.pool)
            })
            .await?;
        match row {
            Some(row) => first_number(&row),
            // The upsert leaves a record at the last version alone.
            None => next_version(MAX_VERSION),
        }
    }

    // Conditional writes (issue 21, item 5): the record read `FOR UPDATE` in the write's
    // transaction, so nothing can change it between the check and the write.

    async fn put_if(
        &self,
        schema: &TableSchema,
        row: &Row,
        condition: &Condition,
        existing: bool,
    ) -> Result<u64> {
        let layout = self.layout(schema)?;
        let read = locked_read(&layout, row.key());
        let fail = |err| table_error(err, &layout.primary_key);
        for _ in 0..VERSIONED_ATTEMPTS {
            let written = self
                .within_deadline(async {
                    let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
                    let found = query(&read).fetch_optional(&mut *tx).await.map_err(fail)?;
                    let current = found.map(|r| record_of(&layout, &r)).transpose()?;
                    if existing && current.is_none() {
                        return Err(Error::NotFound { what: "record" });
                    }
                    condition_holds(schema, current.as_ref(), condition)?;
                    let (write, version) = match &current {
                        None => (layout.insert(row, false)?, 1),
                        Some(current) => (
                            layout.replace(row, current.version)?,
                            next_version(current.version)?,
                        ),
                    };
                    let done = query(&write).execute(&mut *tx).await.map_err(fail)?;
                    if done.rows_affected() == 0 {
                        return Err(Error::backend(
                            BACKEND,
                            "a conditional write changed no row",
                        ));
                    }
                    tx.commit().await.map_err(pg_error)?;
                    Ok(version)
                })
                .await;
            match written {
                // Only the insert over no record can meet this: there was no row to lock,
                // and another transaction inserted one first. Check the condition on it.
                Err(Error::AlreadyExists { what: "record" }) => {}
                other => return other,
            }
        }
        Err(Error::unavailable(
            BACKEND,
            "the record kept being inserted and deleted during a conditional write",
        ))
    }

    async fn delete_if(
        &self,
        schema: &TableSchema,
        key: &RecordKey,
        condition: &Condition,
    ) -> Result<bool> {
        let layout = self.layout(schema)?;
        let read = locked_read(&layout, key);
        let fail = |err| table_error(err, &layout.primary_key);
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            let found = query(&read).fetch_optional(&mut *tx).await.map_err(fail)?;
            let current = found.map(|r| record_of(&layout, &r)).transpose()?;
            condition_holds(schema, current.as_ref(), condition)?;
            let Some(current) = current else {
                return Ok(false);
            };
            let delete = layout.delete(key, Some(current.version));
            let done = query(&delete).execute(&mut *tx).await.map_err(fail)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    // Transactions (issue 21, item 7): one database transaction, each record read `FOR
    // UPDATE` before its step is resolved and written; a failed step rolls it all back.

    async fn transact(&self, steps: &[Step]) -> Result<()> {
        let planned = steps
            .iter()
            .map(|step| Ok((step, self.layout(&step.schema)?)))
            .collect::<Result<Vec<_>>>()?;
        for _ in 0..VERSIONED_ATTEMPTS {
            let done = self
                .within_deadline(async {
                    let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
                    for (index, (step, layout)) in planned.iter().enumerate() {
                        apply_step(&mut tx, layout, step)
                            .await
                            .map_err(|e| failed(index, e))?;
                    }
                    tx.commit().await.map_err(pg_error)
                })
                .await;
            match done {
                // An insert over no record met one another transaction inserted since: there
                // was no row to lock. Resolve every step again.
                Err(Error::TransactionFailed { source, .. })
                    if matches!(*source, Error::AlreadyExists { what: "record" }) => {}
                other => return other,
            }
        }
        Err(Error::unavailable(
            BACKEND,
            "records kept being inserted during a transaction",
        ))
    }
}

/// What `storekit copy` reads and writes of the tables store.
#[async_trait]
impl TableTransferBackend for PostgresStore {
    /// Every table the catalog records, with its shape, ordered by name.
    async fn list_tables(&self) -> Result<Vec<(String, TableShape)>> {
        self.within_deadline(async {
            let mut conn = self.inner.pool.acquire().await.map_err(pg_error)?;
            let rows = super::schema::catalog_rows(&mut conn, &self.inner.tables).await?;
            crate::check::shapes(rows.unwrap_or_default(), BACKEND)
        })
        .await
    }

    /// Writes each row at its version, all in one transaction.
    async fn import_records(&self, schema: &TableSchema, rows: &[(Row, u64)]) -> Result<()> {
        let layout = self.layout(schema)?;
        let statements = rows
            .iter()
            .map(|(row, version)| layout.import(row, *version))
            .collect::<Result<Vec<_>>>()?;
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            for statement in &statements {
                query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| table_error(e, &layout.primary_key))?;
            }
            tx.commit().await.map_err(pg_error)
        })
        .await
    }
}

/// The read of the record at `key` that locks its row until the transaction ends.
fn locked_read(layout: &Layout, key: &RecordKey) -> Statement {
    let mut read = layout.get(key);
    read.sql = format!("{} FOR UPDATE", read.sql).into();
    read
}

/// One step of a transaction: the record read and locked, the step resolved on it, its write
/// made.
async fn apply_step(conn: &mut PgConnection, layout: &Layout, step: &Step) -> Result<()> {
    let fail = |err| table_error(err, &layout.primary_key);
    let found = query(&locked_read(layout, step.key()))
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
    let current = found.map(|r| record_of(layout, &r)).transpose()?;
    let write = match step.resolve(current.as_ref())? {
        Resolved::Insert(row) => layout.insert(&row, false)?,
        Resolved::Replace(row, version) => layout.replace(&row, version)?,
        Resolved::Delete(key, version) => layout.delete(&key, Some(version)),
        _ => return Ok(()),
    };
    let done = query(&write).execute(&mut *conn).await.map_err(fail)?;
    if done.rows_affected() == 0 {
        return Err(Error::backend(
            BACKEND,
            "a transaction's write changed no row",
        ));
    }
    Ok(())
}
