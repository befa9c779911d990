//! SQLite tables, their migrations, and every statement the store runs, rendered once.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use storekit_core::admin::{MigrationReport, SchemaDifference};
use storekit_core::{IdKind, Result};

use super::error::{is_missing_table, sqlite_error};
use super::step::first_row;
use crate::check::{self, Snapshot};
use crate::ddl;
use crate::dialect::Dialect;
use crate::export;
use crate::migrations::{self, Migrations};
use crate::statements::Renderer;
use crate::table_layout::Catalog;
use crate::tables::Tables;

/// SQLite's migrations, on the shared floor (`crate::ddl`).
const MIGRATIONS: &Migrations = &ddl::SQLITE;

pub(super) fn migrate(
    conn: &mut Connection,
    tables: &Tables,
    kind: IdKind,
) -> Result<MigrationReport> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let before = own_objects(&tx, tables)?;
    tx.execute(&tables.render(MIGRATIONS.meta), [])
        .map_err(sqlite_error)?;
    let read = tables.render("SELECT value FROM {meta} WHERE name = ?1");
    let stored = |name: &str| {
        tx.query_row(&read, [name], |row| row.get::<_, String>(0))
            .optional()
            .map_err(sqlite_error)
    };
    let plan = MIGRATIONS.plan(
        tables,
        kind,
        stored(migrations::ID_KIND)?,
        stored(migrations::SCHEMA_VERSION)?,
    )?;
    for ddl in &plan.pending {
        tx.execute_batch(ddl).map_err(sqlite_error)?;
    }
    let upsert = migrations::upsert_meta(tables, "?1", "?2");
    for (name, value) in &plan.meta {
        tx.execute(&upsert, [name, value.as_str()])
            .map_err(sqlite_error)?;
    }
    let after = own_objects(&tx, tables)?;
    tx.commit().map_err(sqlite_error)?;
    let total = MIGRATIONS.steps.len();
    Ok(migrations::report(
        &before,
        after,
        total - plan.pending.len(),
        total,
    ))
}

/// The tables and indexes of storekit's own tables, as `table "…"` and `index "…"` (the
/// indexes SQLite makes for constraints are left out: they come with their tables).
fn own_objects(conn: &Connection, tables: &Tables) -> Result<BTreeSet<String>> {
    let own = tables.own_bare();
    let mut stmt = conn
        .prepare(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') \
             AND tbl_name IN (SELECT value FROM json_each(?1)) AND name NOT LIKE 'sqlite%'",
        )
        .map_err(sqlite_error)?;
    let names =
        serde_json::to_string(&own).map_err(|e| storekit_core::Error::backend("sqlite", e))?;
    stmt.query_map([names], |row| {
        Ok(format!(
            "{} {:?}",
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?
        ))
    })
    .and_then(|rows| rows.collect())
    .map_err(sqlite_error)
}

pub(super) fn drop_all(conn: &mut Connection, tables: &Tables) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    for table in declared_tables(&tx, tables)? {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {table};"))
            .map_err(sqlite_error)?;
    }
    let sql = tables.render(
        "DROP TABLE IF EXISTS {tokens}; DROP TABLE IF EXISTS {oauth}; \
         DROP TABLE IF EXISTS {users}; DROP TABLE IF EXISTS {kv}; DROP TABLE IF EXISTS {meta};",
    );
    tx.execute_batch(&sql).map_err(sqlite_error)?;
    tx.execute_batch(&format!("DROP TABLE IF EXISTS {};", tables.catalog))
        .map_err(sqlite_error)?;
    tx.commit().map_err(sqlite_error)
}

/// The SQL tables of the tables store's declared tables, from its catalog (none if there is
/// no catalog).
fn declared_tables(conn: &Connection, tables: &Tables) -> Result<Vec<String>> {
    let mut rows = catalog_rows(conn, tables)?.unwrap_or_default();
    rows.sort();
    Ok(rows
        .iter()
        .filter_map(|(name, shape)| tables.declared(name, shape))
        .collect())
}

pub(super) fn dump(conn: &Connection, tables: &Tables) -> Result<String> {
    let mut out = String::new();
    let declared = declared_tables(conn, tables)?;
    for table in migrations::dumped(tables, &declared) {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table}"))
            .map_err(sqlite_error)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(sqlite_error)?;
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let _ = write!(out, "{table}:");
            for i in 0..columns {
                let cell = match row.get_ref(i).map_err(sqlite_error)? {
                    ValueRef::Null => "NULL".to_owned(),
                    ValueRef::Integer(n) => n.to_string(),
                    ValueRef::Real(x) => x.to_string(),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                };
                let _ = write!(out, " {cell}");
            }
            out.push('\n');
        }
    }
    Ok(out)
}

/// The statements only SQLite runs (the rest are `crate::statements`'s).
///
/// Deleting an item is two plain statements, the live item first and an expired row only
/// when none was there: a `DELETE … RETURNING`, PostgreSQL's one round trip, costs SQLite
/// an extra pass. A batch deletes key by key, inline in chunks (see `kv`), which is cheaper
/// on SQLite than PostgreSQL's one statement over an array, as no round trip is saved.
#[derive(Debug)]
pub(super) struct SqliteOnly {
    pub(super) kv_delete_live: String,
    pub(super) kv_delete_expired: String,
    pub(super) kv_delete_any: String,
}

impl SqliteOnly {
    pub(super) fn new(r: &Renderer<'_, String>) -> Self {
        let ns_key_now = &["ns", "key", "now"];
        Self {
            kv_delete_live: r.named(
                "DELETE FROM {kv} WHERE namespace = :ns AND key = :key AND {live}",
                ns_key_now,
            ),
            kv_delete_expired: r.named(
                "DELETE FROM {kv} WHERE namespace = :ns AND key = :key \
                 AND expires_at IS NOT NULL AND expires_at <= :now",
                ns_key_now,
            ),
            kv_delete_any: r.named("DELETE FROM {kv} WHERE namespace = :ns AND key = :key", &[]),
        }
    }

    /// Every text, named, for the snapshot test (`crate::snapshots`).
    #[cfg(test)]
    pub(super) fn texts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("kv_delete_live", self.kv_delete_live.clone()),
            ("kv_delete_expired", self.kv_delete_expired.clone()),
            ("kv_delete_any", self.kv_delete_any.clone()),
        ]
    }
}

/// The catalog's rows (name, shape JSON); `None` when there is no catalog.
pub(super) fn catalog_rows(
    conn: &Connection,
    tables: &Tables,
) -> Result<Option<Vec<(String, String)>>> {
    let mut stmt = match conn.prepare(&Catalog::list(Dialect::Sqlite, tables)) {
        Ok(stmt) => stmt,
        Err(err) if is_missing_table(&err) => return Ok(None),
        Err(err) => return Err(sqlite_error(err)),
    };
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map(Some)
        .map_err(sqlite_error)
}

/// How the database differs from what `migrate()` creates for `kind` and from the tables its
/// catalog records (see `crate::check`).
pub(super) fn differences(
    conn: &Connection,
    tables: &Tables,
    kind: IdKind,
) -> Result<Vec<SchemaDifference>> {
    let mut found = Vec::new();
    let recorded = catalog_rows(conn, tables)?;
    let (meta, _) = tables.bare_meta_and_catalog();
    let expected = check::expected_statements(
        Dialect::Sqlite,
        tables,
        tables,
        kind,
        recorded.as_deref(),
        &mut found,
    )?;
    let scratch = Connection::open_in_memory().map_err(sqlite_error)?;
    scratch
        .execute_batch(&export::join(&expected))
        .map_err(sqlite_error)?;
    let names = table_names(&scratch)?;
    found.extend(check::differences(
        &snapshot(&scratch, &names)?,
        &snapshot(conn, &names)?,
    ));
    let read = tables.render("SELECT value FROM {meta} WHERE name = ?1");
    // A database without the meta table has had its absence reported already.
    let mut stmt = match conn.prepare_cached(&read) {
        Ok(stmt) => stmt,
        Err(err) if is_missing_table(&err) => return Ok(found),
        Err(err) => return Err(sqlite_error(err)),
    };
    let mut stored = |name: &str| {
        first_row(&mut stmt, [name], |row| row.get::<_, String>(0)).map_err(sqlite_error)
    };
    let (stored_kind, stored_version) = (
        stored(migrations::ID_KIND)?,
        stored(migrations::SCHEMA_VERSION)?,
    );
    found.extend(check::meta_differences(
        &meta,
        stored_kind,
        stored_version.as_deref(),
        kind,
        MIGRATIONS.steps.len(),
    ));
    Ok(found)
}

/// Every table of a database (SQLite's own left out).
fn table_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        .map_err(sqlite_error)?;
    stmt.query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sqlite_error)
}

/// What the catalog of the database says about the tables `names` that exist.
fn snapshot(conn: &Connection, names: &[String]) -> Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    for name in names {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error)?;
        let Some(sql) = sql else {
            continue;
        };
        let table = snapshot.table(name);
        let without_rowid = check::normalize(&sql)
            .to_ascii_uppercase()
            .ends_with("WITHOUT ROWID");
        table.storage = if without_rowid {
            "without rowids"
        } else {
            "with rowids"
        }
        .to_owned();
        let rows = |sql: &str| -> Result<Vec<(String, String)>> {
            let mut stmt = conn.prepare(sql).map_err(sqlite_error)?;
            stmt.query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(sqlite_error)
        };
        table.columns = rows(
            "SELECT name, type || CASE WHEN \"notnull\" THEN ' NOT NULL' ELSE '' END \
             || CASE WHEN pk > 0 THEN ' PRIMARY KEY ' || pk ELSE '' END \
             FROM pragma_table_info(?1)",
        )?
        .into_iter()
        .collect();
        // An index made for a constraint has no text: its columns describe it.
        table.indexes = rows(
            "SELECT il.name, COALESCE((SELECT sql FROM sqlite_master m WHERE m.type = 'index' \
             AND m.name = il.name), il.origin || ' unique index on (' || (SELECT \
             group_concat(name, ', ') FROM (SELECT name FROM pragma_index_info(il.name) \
             ORDER BY seqno)) || ')') FROM pragma_index_list(?1) il",
        )?
        .into_iter()
        .map(|(name, sql)| (name, check::normalize(&sql)))
        .collect();
        table.constraints = rows(
            "SELECT 'foreign key (' || \"from\" || ')', 'references ' || \"table\" || ' (' \
             || \"to\" || ') on delete ' || on_delete FROM pragma_foreign_key_list(?1)",
        )?
        .into_iter()
        .collect();
    }
    Ok(snapshot)
}
