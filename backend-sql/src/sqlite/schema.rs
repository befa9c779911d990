//! SQLite tables, their migrations, and every statement the store runs, rendered once.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use storekit_core::{IdKind, Result};

use super::error::{is_missing_table, sqlite_error};
use crate::migrations::{self, IdColumns};
use crate::tables::Tables;

/// Migrations in order; each runs once, inside the migration transaction. `{id}` is the users
/// id column's type and `{user_ref}` the type of columns that refer to it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE {users} (
    id {id},
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    hashed_password TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    is_superuser INTEGER NOT NULL,
    is_verified INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    extra TEXT NOT NULL,
    CONSTRAINT "{prefix}users_email_key" UNIQUE (email_key)
);
CREATE TABLE {oauth} (
    provider TEXT NOT NULL,
    account_id TEXT NOT NULL,
    user_id {user_ref} NOT NULL REFERENCES {users} (id) ON DELETE CASCADE,
    account_email TEXT NOT NULL,
    access_token TEXT NOT NULL,
    expires_at INTEGER,
    refresh_token TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, account_id)
);
CREATE INDEX "{prefix}oauth_accounts_user" ON "{prefix}oauth_accounts" (user_id);
CREATE TABLE {tokens} (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id {user_ref} NOT NULL REFERENCES {users} (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX "{prefix}access_tokens_user" ON "{prefix}access_tokens" (user_id);
CREATE TABLE {kv} (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX "{prefix}kv_expiry" ON "{prefix}kv" (expires_at) WHERE expires_at IS NOT NULL;
"#,
    // The kv table moves from WITHOUT ROWID to a rowid table with a unique index: with values of
    // a kilobyte or more, a WITHOUT ROWID row overflows its leaf page (about 4.7 KB of file per
    // 1 KiB item), while a rowid table keeps values up to ~4 KB inline; measured here, reads and
    // upserts ran 2-2.6x faster (see docs/benchmarks.md). Every row is copied, TTL included.
    r#"
CREATE TABLE "{prefix}kv_rowid" (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER
);
INSERT INTO "{prefix}kv_rowid" (namespace, key, value, expires_at)
    SELECT namespace, key, value, expires_at FROM {kv} ORDER BY namespace, key;
DROP TABLE {kv};
ALTER TABLE "{prefix}kv_rowid" RENAME TO "{prefix}kv";
CREATE UNIQUE INDEX "{prefix}kv_key" ON "{prefix}kv" (namespace, key);
CREATE INDEX "{prefix}kv_expiry" ON "{prefix}kv" (expires_at) WHERE expires_at IS NOT NULL;
"#,
];

pub(super) fn migrate(conn: &mut Connection, tables: &Tables, kind: IdKind) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    let meta = tables.render(
        "CREATE TABLE IF NOT EXISTS {meta} (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    );
    tx.execute(&meta, []).map_err(sqlite_error)?;
    let read = tables.render("SELECT value FROM {meta} WHERE name = ?1");
    let stored = |name: &str| {
        tx.query_row(&read, [name], |row| row.get::<_, String>(0))
            .optional()
            .map_err(sqlite_error)
    };
    let columns = match kind {
        IdKind::Uuid => IdColumns {
            id: "BLOB PRIMARY KEY NOT NULL",
            user_ref: "BLOB",
        },
        IdKind::Int => IdColumns {
            id: "INTEGER PRIMARY KEY AUTOINCREMENT",
            user_ref: "INTEGER",
        },
    };
    let plan = migrations::plan(
        tables,
        MIGRATIONS,
        kind,
        columns,
        stored(migrations::ID_KIND)?,
        stored(migrations::SCHEMA_VERSION)?,
    )?;
    for ddl in &plan.pending {
        tx.execute_batch(ddl).map_err(sqlite_error)?;
    }
    let upsert = tables.render(
        "INSERT INTO {meta} (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    );
    for (name, value) in &plan.meta {
        tx.execute(&upsert, [name, value.as_str()])
            .map_err(sqlite_error)?;
    }
    tx.commit().map_err(sqlite_error)
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
    let mut stmt = match conn.prepare(&format!(
        "SELECT name FROM {} ORDER BY name",
        tables.catalog
    )) {
        Ok(stmt) => stmt,
        Err(err) if is_missing_table(&err) => return Ok(Vec::new()),
        Err(err) => return Err(sqlite_error(err)),
    };
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(sqlite_error)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sqlite_error)?;
    Ok(names
        .iter()
        .filter_map(|name| tables.declared(name))
        .collect())
}

pub(super) fn dump(conn: &Connection, tables: &Tables) -> Result<String> {
    let mut out = String::new();
    let declared = declared_tables(conn, tables)?;
    let catalog = (!declared.is_empty()).then_some(&tables.catalog);
    for table in [
        &tables.users,
        &tables.oauth,
        &tables.tokens,
        &tables.kv,
        &tables.meta,
    ]
    .into_iter()
    .chain(catalog)
    .chain(&declared)
    {
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

/// Every statement, with this store's table names spliced in once.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) insert_user: String,
    pub(super) user_by_id: String,
    pub(super) user_by_email: String,
    pub(super) update_user: String,
    pub(super) delete_user: String,
    pub(super) list_users_first: String,
    pub(super) list_users_after: String,
    pub(super) insert_oauth: String,
    pub(super) oauth_one: String,
    pub(super) update_oauth: String,
    pub(super) delete_oauth: String,
    pub(super) oauth_of_user: String,
    pub(super) user_by_oauth: String,
    pub(super) insert_token: String,
    pub(super) token_by_hash: String,
    pub(super) delete_token: String,
    pub(super) delete_user_tokens: String,
    pub(super) kv_get: String,
    pub(super) kv_get_any: String,
    pub(super) kv_contains: String,
    pub(super) kv_upsert: String,
    pub(super) kv_insert_if_absent: String,
    pub(super) kv_swap: String,
    pub(super) kv_delete_live: String,
    pub(super) kv_delete_expired: String,
    pub(super) kv_delete_any: String,
    pub(super) kv_keys_first: String,
    pub(super) kv_keys_after: String,
    pub(super) kv_clear: String,
    pub(super) kv_purge_some: String,
}

const USER_COLUMNS: &str = "id, email, hashed_password, is_active, is_superuser, is_verified, \
                            created_at, updated_at, version, extra";

const OAUTH_COLUMNS: &str = "user_id, provider, account_id, account_email, access_token, \
                             expires_at, refresh_token, created_at, updated_at";

/// A live item: no deadline, or a deadline after `?now`.
const LIVE: &str = "(expires_at IS NULL OR expires_at > :now)";

impl Statements {
    pub(super) fn new(t: &Tables) -> Self {
        let r = |sql: &str| {
            t.render(sql)
                .replace("{user_columns}", USER_COLUMNS)
                .replace("{oauth_columns}", OAUTH_COLUMNS)
                .replace("{live}", LIVE)
        };
        Self {
            insert_user: r(
                "INSERT INTO {users} (id, email, email_key, hashed_password, is_active, \
                 is_superuser, is_verified, created_at, updated_at, version, extra) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, ?9)",
            ),
            user_by_id: r("SELECT {user_columns} FROM {users} WHERE id = ?1"),
            user_by_email: r("SELECT {user_columns} FROM {users} WHERE email_key = ?1"),
            update_user: r(
                "UPDATE {users} SET email = ?3, email_key = ?4, hashed_password = ?5, \
                 is_active = ?6, is_superuser = ?7, is_verified = ?8, updated_at = ?9, \
                 version = ?10, extra = ?11 WHERE id = ?1 AND version = ?2",
            ),
            delete_user: r("DELETE FROM {users} WHERE id = ?1"),
            list_users_first: r("SELECT {user_columns} FROM {users} ORDER BY id LIMIT ?1"),
            list_users_after: r(
                "SELECT {user_columns} FROM {users} WHERE id > ?2 ORDER BY id LIMIT ?1",
            ),
            insert_oauth: r("INSERT INTO {oauth} ({oauth_columns}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            oauth_one: r("SELECT {oauth_columns} FROM {oauth} \
                 WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3"),
            update_oauth: r("UPDATE {oauth} SET account_email = ?4, access_token = ?5, \
                 expires_at = ?6, refresh_token = ?7, updated_at = ?8 \
                 WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3"),
            delete_oauth: r(
                "DELETE FROM {oauth} WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3",
            ),
            oauth_of_user: r("SELECT {oauth_columns} FROM {oauth} WHERE user_id = ?1 \
                 ORDER BY provider, account_id"),
            user_by_oauth: r("SELECT {user_columns} FROM {users} WHERE id = \
                 (SELECT user_id FROM {oauth} WHERE provider = ?1 AND account_id = ?2)"),
            insert_token: r(
                "INSERT INTO {tokens} (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            ),
            token_by_hash: r("SELECT user_id, created_at FROM {tokens} WHERE token_hash = ?1"),
            delete_token: r("DELETE FROM {tokens} WHERE token_hash = ?1"),
            delete_user_tokens: r("DELETE FROM {tokens} WHERE user_id = ?1"),
            kv_get: r("SELECT value FROM {kv} WHERE namespace = :ns AND key = :key AND {live}"),
            // Existence only: a large value is not read to answer yes or no.
            kv_contains: r("SELECT 1 FROM {kv} WHERE namespace = :ns AND key = :key AND {live}"),
            kv_get_any: r(
                "SELECT value, expires_at FROM {kv} WHERE namespace = :ns AND key = :key",
            ),
            kv_upsert: r("INSERT INTO {kv} (namespace, key, value, expires_at) \
                 VALUES (:ns, :key, :value, :exp) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at"),
            // Replaces a row only if it has expired, so the insert succeeds exactly when no
            // live item is there, in one atomic statement.
            kv_insert_if_absent: r("INSERT INTO {kv} (namespace, key, value, expires_at) \
                 VALUES (:ns, :key, :value, :exp) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at \
                 WHERE expires_at IS NOT NULL AND expires_at <= :now"),
            kv_swap: r("UPDATE {kv} SET value = :value, expires_at = :exp \
                 WHERE namespace = :ns AND key = :key AND value = :expected AND {live}"),
            kv_delete_live: r("DELETE FROM {kv} WHERE namespace = :ns AND key = :key AND {live}"),
            kv_delete_expired: r("DELETE FROM {kv} WHERE namespace = :ns AND key = :key \
                 AND expires_at IS NOT NULL AND expires_at <= :now"),
            kv_delete_any: r("DELETE FROM {kv} WHERE namespace = :ns AND key = :key"),
            // Keys come in pages, each continuing after the last; `key >= :prefix` on the first
            // and `key > :after` on the next let the primary key index find the start.
            kv_keys_first: r(
                "SELECT key FROM {kv} WHERE namespace = :ns AND key >= :from \
                 AND {live} ORDER BY key LIMIT :limit",
            ),
            kv_keys_after: r(
                "SELECT key FROM {kv} WHERE namespace = :ns AND key > :from \
                 AND {live} ORDER BY key LIMIT :limit",
            ),
            kv_clear: r("DELETE FROM {kv} WHERE namespace = :ns"),
            kv_purge_some: r("DELETE FROM {kv} WHERE id IN (SELECT id FROM {kv} \
                 WHERE expires_at IS NOT NULL AND expires_at <= :now LIMIT :limit)"),
        }
    }
}
