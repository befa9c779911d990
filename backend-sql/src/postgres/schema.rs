//! PostgreSQL tables, their migrations, and every statement the store runs, rendered once.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{AssertSqlSafe, Row as _, SqlSafeStr as _, SqlStr};
use storekit_core::admin::{MigrationReport, SchemaDifference};
use storekit_core::{IdKind, Result};

use super::error::{is_missing_table, pg_error};
use crate::check::{self, Snapshot};
use crate::ddl;
use crate::dialect::Dialect;
use crate::export;
use crate::migrations::{self, Migrations};
use crate::statements::Renderer;
use crate::table_layout::Catalog;
use crate::tables::Tables;

/// PostgreSQL's migrations, on the shared floor (`crate::ddl`).
const MIGRATIONS: &Migrations = &ddl::POSTGRES;

pub(super) fn sql(text: String) -> SqlStr {
    // Safe: the only spliced parts are table names, validated by `Tables::new`; values are
    // always bound. An `Arc` makes each later clone free.
    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
}

pub(super) async fn migrate(
    pool: &PgPool,
    tables: &Tables,
    schema: Option<&str>,
    kind: IdKind,
) -> Result<MigrationReport> {
    let mut tx = pool.begin().await.map_err(pg_error)?;
    // Concurrent migrations of the same tables wait for each other instead of colliding.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("storekit {}", tables.meta))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    let live = live_schema(&mut tx, schema).await?;
    let before = own_objects(&mut tx, tables, &live, schema.is_some()).await?;
    if let Some(schema) = schema {
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        sqlx::query(sql(create))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    sqlx::query(sql(tables.render(MIGRATIONS.meta)))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    let read = sql(tables.render("SELECT value FROM {meta} WHERE name = $1"));
    let stored_kind = read_meta(&mut tx, &read, migrations::ID_KIND).await?;
    let stored_version = read_meta(&mut tx, &read, migrations::SCHEMA_VERSION).await?;
    let plan = MIGRATIONS.plan(tables, kind, stored_kind, stored_version)?;
    let total = MIGRATIONS.steps.len();
    let done = total - plan.pending.len();
    for ddl in plan.pending {
        sqlx::raw_sql(sql(ddl))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    let upsert = sql(migrations::upsert_meta(tables, "$1", "$2"));
    for (name, value) in plan.meta {
        sqlx::query(upsert.clone())
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    let after = own_objects(&mut tx, tables, &live, schema.is_some()).await?;
    tx.commit().await.map_err(pg_error)?;
    Ok(migrations::report(&before, after, done, total))
}

/// The schema the store's tables are in: its own, or the connection's default.
async fn live_schema(conn: &mut PgConnection, schema: Option<&str>) -> Result<String> {
    match schema {
        Some(schema) => Ok(schema.to_owned()),
        None => sqlx::query_scalar("SELECT COALESCE(current_schema(), 'public')::text")
            .fetch_one(conn)
            .await
            .map_err(pg_error),
    }
}

/// The tables and indexes of storekit's own tables in `schema`, as `table "…"` and
/// `index "…"`, and the schema itself (`schema "…"`) when the store has one of its own.
async fn own_objects(
    conn: &mut PgConnection,
    tables: &Tables,
    schema: &str,
    own_schema: bool,
) -> Result<BTreeSet<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'table', tablename::text FROM pg_tables \
         WHERE schemaname = $1 AND tablename = ANY($2) \
         UNION ALL SELECT 'index', indexname::text FROM pg_indexes \
         WHERE schemaname = $1 AND tablename = ANY($2) \
         UNION ALL SELECT 'schema', nspname::text FROM pg_namespace WHERE $3 AND nspname = $1",
    )
    .bind(schema)
    .bind(tables.own_bare())
    .bind(own_schema)
    .fetch_all(conn)
    .await
    .map_err(pg_error)?;
    Ok(rows
        .into_iter()
        .map(|(kind, name)| format!("{kind} {name:?}"))
        .collect())
}

async fn read_meta(conn: &mut PgConnection, read: &SqlStr, name: &str) -> Result<Option<String>> {
    sqlx::query_scalar(read.clone())
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(pg_error)
}

pub(super) async fn drop_all(pool: &PgPool, tables: &Tables) -> Result<()> {
    let mut drop = tables.render("DROP TABLE IF EXISTS {tokens}, {oauth}, {users}, {kv}, {meta}");
    for table in declared_tables(pool, tables).await? {
        let _ = write!(drop, ", {table}");
    }
    let _ = write!(drop, ", {}", tables.catalog);
    sqlx::query(sql(drop))
        .execute(pool)
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The SQL tables of the tables store's declared tables, from its catalog (none if there is
/// no catalog).
async fn declared_tables(pool: &PgPool, tables: &Tables) -> Result<Vec<String>> {
    let rows: std::result::Result<Vec<(String, String)>, sqlx::Error> =
        sqlx::query_as(sql(format!(
            "SELECT name, shape::text FROM {} ORDER BY name",
            tables.catalog
        )))
        .fetch_all(pool)
        .await;
    match rows {
        Ok(rows) => Ok(rows
            .iter()
            .filter_map(|(name, shape)| tables.declared(name, shape))
            .collect()),
        Err(err) if is_missing_table(&err) => Ok(Vec::new()),
        Err(err) => Err(pg_error(err)),
    }
}

pub(super) async fn dump(pool: &PgPool, tables: &Tables) -> Result<String> {
    let mut out = String::new();
    let declared = declared_tables(pool, tables).await?;
    for table in migrations::dumped(tables, &declared) {
        let rows = sqlx::query(sql(format!("SELECT t::text FROM {table} t")))
            .fetch_all(pool)
            .await
            .map_err(pg_error)?;
        for row in rows {
            let text: String = row.try_get(0).map_err(pg_error)?;
            let _ = writeln!(out, "{table}: {text}");
        }
    }
    Ok(out)
}

/// Begins the transaction `kv_delete_many` runs in: with sequential and bitmap scans off for
/// it, the delete walks the primary key's index, in key order (see `kv_delete_many`). One
/// round trip, as `BEGIN` alone would be.
pub(super) const KV_DELETE_MANY_BEGIN: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// The statements only PostgreSQL runs (the rest are `crate::statements`'s), written in its
/// own placeholders.
///
/// Batches are one statement over arrays (`ANY`, `UNNEST`): one round trip, all or nothing.
/// SQLite has no arrays and no round trip to save; it runs the same batches inline, a chunk
/// of single-row statements at a time, which measured faster there than any one statement
/// (see `sqlite::kv`), so each dialect keeps its own algorithm. A delete answers with
/// `RETURNING` in the same round trip; a counter is locked, read and written back in one
/// transaction among concurrent writers (SQLite's writer is alone already); an imported
/// integer id moves the identity's sequence, which SQLite's AUTOINCREMENT does by itself.
#[derive(Debug)]
pub(super) struct PostgresOnly<S> {
    pub(super) kv_get_many: S,
    pub(super) kv_upsert_many: S,
    pub(super) kv_delete: S,
    pub(super) kv_delete_many: S,
    pub(super) kv_lock_counter: S,
    pub(super) kv_set_value: S,
    pub(super) kv_import: S,
    pub(super) raise_ids: S,
    pub(super) kv_keys_unordered: S,
    pub(super) kv_keys_unordered_below: S,
}

impl<S> PostgresOnly<S> {
    pub(super) fn new(r: &Renderer<'_, S>) -> Self {
        Self {
            kv_get_many: r.numbered(
                "SELECT key, value FROM {kv} WHERE namespace = $1 \
                 AND key = ANY($2) AND (expires_at IS NULL OR expires_at > $3)",
            ),
            // One statement for the whole batch: all of it is written, or none.
            kv_upsert_many: r.numbered(
                "INSERT INTO {kv} (namespace, key, value, expires_at) \
                 SELECT $1, k, v, $4 FROM UNNEST($2::text[], $3::bytea[]) AS t (k, v) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at",
            ),
            kv_delete: r.numbered(
                "DELETE FROM {kv} WHERE namespace = $1 AND key = $2 RETURNING expires_at",
            ),
            // Run after `KV_DELETE_MANY_BEGIN`, which leaves the planner only the primary key's
            // index: its walk over `= ANY` visits the keys in order (the array is sorted by the
            // index), so rows are locked in key order, as `kv_upsert_many` writes them, and
            // concurrent batches over overlapping keys wait for each other instead of
            // deadlocking. A scan of a small table, or a bitmap scan, would visit them in storage
            // order. Locking them first with `SELECT ... ORDER BY key FOR UPDATE` in the same
            // statement gave the same order but read and locked every row twice: 0.5 of the
            // plain statement's rate.
            kv_delete_many: r.numbered("DELETE FROM {kv} WHERE namespace = $1 AND key = ANY($2)"),
            // Locks the counter's row, creating it at 0 (or resetting it if expired), and
            // returns what it holds; the caller adds in Rust and writes back in the same
            // transaction, so the arithmetic and its errors are the same as on every backend.
            kv_lock_counter: r.numbered(
                "INSERT INTO {kv} AS old (namespace, key, value, expires_at) \
                 VALUES ($1, $2, '0', $3) ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = CASE WHEN old.expires_at <= $4 THEN excluded.value ELSE old.value END, \
                 expires_at = CASE WHEN old.expires_at <= $4 THEN excluded.expires_at \
                 ELSE old.expires_at END \
                 RETURNING value, expires_at",
            ),
            kv_set_value: r
                .numbered("UPDATE {kv} SET value = $3 WHERE namespace = $1 AND key = $2"),
            // One statement for the whole batch, whatever its size: four arrays, never
            // near the limit of 65,535 parameters.
            kv_import: r.numbered(
                "INSERT INTO {kv} (namespace, key, value, expires_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bigint[]) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at",
            ),
            // Moves the identity's sequence past an imported id (never back), so that
            // `create_user` never hands it out again.
            raise_ids: r.numbered(
                "SELECT setval(s, GREATEST($1, COALESCE(pg_sequence_last_value(s), 1))) \
                 FROM (SELECT pg_get_serial_sequence($2, 'id')::regclass AS s) AS identity",
            ),
            // A whole listing in one statement, in no order: the planner takes its cheapest
            // scan, and the caller sorts. An ORDER BY would make it walk the primary key's
            // index (1.5-2x the time of a scan) or sort (2x), see `kv::KEYS_WHOLE`. `$5` bounds
            // a prefix's range from above, so that a narrow prefix reads only its own keys.
            kv_keys_unordered: r.numbered(
                "SELECT key FROM {kv} WHERE namespace = $1 AND key >= $2 \
                 AND (expires_at IS NULL OR expires_at > $3) LIMIT $4",
            ),
            kv_keys_unordered_below: r.numbered(
                "SELECT key FROM {kv} WHERE namespace = $1 AND key >= $2 AND key < $5 \
                 AND (expires_at IS NULL OR expires_at > $3) LIMIT $4",
            ),
        }
    }
}

#[cfg(test)]
impl PostgresOnly<String> {
    /// Every text, named, for the snapshot test (`crate::snapshots`).
    pub(super) fn texts(&self) -> Vec<(&'static str, String)> {
        let texts = [
            ("kv_get_many", &self.kv_get_many),
            ("kv_upsert_many", &self.kv_upsert_many),
            ("kv_delete", &self.kv_delete),
            ("kv_delete_many", &self.kv_delete_many),
            ("kv_lock_counter", &self.kv_lock_counter),
            ("kv_set_value", &self.kv_set_value),
            ("kv_import", &self.kv_import),
            ("raise_ids", &self.raise_ids),
            ("kv_keys_unordered", &self.kv_keys_unordered),
            ("kv_keys_unordered_below", &self.kv_keys_unordered_below),
        ];
        texts.map(|(name, text)| (name, text.clone())).to_vec()
    }
}

/// True if the table `qualified` (quoted, as `Tables` names it) exists; asked first, since a
/// statement on a missing table would abort the transaction it runs in.
pub(super) async fn exists(conn: &mut PgConnection, qualified: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(qualified)
        .fetch_one(conn)
        .await
        .map_err(pg_error)
}

/// The catalog's rows (name, shape JSON); `None` when there is no catalog.
pub(super) async fn catalog_rows(
    conn: &mut PgConnection,
    tables: &Tables,
) -> Result<Option<Vec<(String, String)>>> {
    if !exists(conn, &tables.catalog).await? {
        return Ok(None);
    }
    sqlx::query_as(sql(Catalog::list(Dialect::Postgres, tables)))
        .fetch_all(conn)
        .await
        .map(Some)
        .map_err(pg_error)
}

/// How the database differs from what `migrate()` creates for `kind` and from the tables its
/// catalog records: the same statements are run in a scratch schema, in a transaction that is
/// rolled back, and the two schemas' catalogs compared (see `crate::check`).
pub(super) async fn differences(
    pool: &PgPool,
    tables: &Tables,
    schema: Option<&str>,
    kind: IdKind,
) -> Result<Vec<SchemaDifference>> {
    let mut tx = pool.begin().await.map_err(pg_error)?;
    let live = live_schema(&mut tx, schema).await?;
    let mut found = Vec::new();
    let recorded = catalog_rows(&mut tx, tables).await?;
    let (meta, _) = tables.bare_meta_and_catalog();
    // Unqualified names, created in the scratch schema by the search path.
    let plain = Tables::new(None, &tables.prefix)?;
    let expected = check::expected_statements(
        Dialect::Postgres,
        tables,
        &plain,
        kind,
        recorded.as_deref(),
        &mut found,
    )?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.subsec_nanos());
    let scratch = format!("storekit_check_{}_{nanos}", std::process::id());
    let setup = format!("CREATE SCHEMA \"{scratch}\"; SET LOCAL search_path TO \"{scratch}\"");
    sqlx::raw_sql(sql(setup))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    sqlx::raw_sql(sql(export::join(&expected)))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(&scratch)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_error)?;
    let want = snapshot(&mut tx, &scratch, &names).await?;
    let have = snapshot(&mut tx, &live, &names).await?;
    found.extend(check::differences(&want, &have));
    if exists(&mut tx, &tables.meta).await? {
        let read = sql(tables.render("SELECT value FROM {meta} WHERE name = $1"));
        let stored_kind = read_meta(&mut tx, &read, migrations::ID_KIND).await?;
        let stored_version = read_meta(&mut tx, &read, migrations::SCHEMA_VERSION).await?;
        found.extend(check::meta_differences(
            &meta,
            stored_kind,
            stored_version.as_deref(),
            kind,
            MIGRATIONS.steps.len(),
        ));
    }
    // The scratch schema goes with the transaction.
    tx.rollback().await.map_err(pg_error)?;
    Ok(found)
}

/// What the catalogs say about the tables `names` of `schema` that exist, with `schema`'s
/// name taken out of definitions so that two schemas compare.
async fn snapshot(conn: &mut PgConnection, schema: &str, names: &[String]) -> Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)",
    )
    .bind(schema)
    .bind(names)
    .fetch_all(&mut *conn)
    .await
    .map_err(pg_error)?;
    for name in &existing {
        snapshot.table(name);
    }
    let described = [
        (
            "SELECT table_name::text, column_name::text, data_type::text \
             || COALESCE(' COLLATE ' || collation_name::text, '') \
             || CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END \
             || CASE WHEN is_identity = 'YES' \
             THEN ' GENERATED ' || identity_generation::text || ' AS IDENTITY' ELSE '' END \
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = ANY($2)",
            Part::Columns,
        ),
        (
            "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes \
             WHERE schemaname = $1 AND tablename = ANY($2)",
            Part::Indexes,
        ),
        (
            "SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid) \
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = ANY($2)",
            Part::Constraints,
        ),
    ];
    for (query, part) in described {
        let rows: Vec<(String, String, String)> = sqlx::query_as(query)
            .bind(schema)
            .bind(&existing)
            .fetch_all(&mut *conn)
            .await
            .map_err(pg_error)?;
        for (table, name, definition) in rows {
            let definition = unqualified(&definition, schema);
            let table = snapshot.table(&table);
            match part {
                Part::Columns => table.columns.insert(name, definition),
                Part::Indexes => table.indexes.insert(name, definition),
                Part::Constraints => table.constraints.insert(name, definition),
            };
        }
    }
    Ok(snapshot)
}

/// Which part of a table a catalog query describes.
#[derive(Debug, Clone, Copy)]
enum Part {
    Columns,
    Indexes,
    Constraints,
}

/// `definition` without `schema.` before the names in it (quoted or not, as PostgreSQL
/// prints the schema).
fn unqualified(definition: &str, schema: &str) -> String {
    check::normalize(
        &definition
            .replace(&format!(" \"{schema}\"."), " ")
            .replace(&format!(" {schema}."), " "),
    )
}
