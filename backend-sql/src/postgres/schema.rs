//! PostgreSQL tables, their migrations, and every statement the store runs, rendered once.

use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{AssertSqlSafe, Row as _, SqlSafeStr as _, SqlStr};
use storekit_core::{IdKind, Result};

use super::error::{is_missing_table, pg_error};
use crate::migrations::{self, IdColumns};
use crate::tables::Tables;

/// Migrations in order; each runs once, inside the migration transaction. `{id}` is the users
/// id column's definition and `{user_ref}` the type of columns that refer to it.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE {users} (
    id {id},
    email text NOT NULL,
    email_key text NOT NULL,
    hashed_password text NOT NULL,
    is_active boolean NOT NULL,
    is_superuser boolean NOT NULL,
    is_verified boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL,
    extra jsonb NOT NULL,
    CONSTRAINT "{prefix}users_email_key" UNIQUE (email_key)
);
CREATE TABLE {oauth} (
    provider text NOT NULL,
    account_id text NOT NULL,
    user_id {user_ref} NOT NULL REFERENCES {users} (id) ON DELETE CASCADE,
    account_email text NOT NULL,
    access_token text NOT NULL,
    expires_at timestamptz,
    refresh_token text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (provider, account_id)
);
CREATE INDEX "{prefix}oauth_accounts_user" ON {oauth} (user_id);
CREATE TABLE {tokens} (
    token_hash text PRIMARY KEY,
    user_id {user_ref} NOT NULL REFERENCES {users} (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL
);
CREATE INDEX "{prefix}access_tokens_user" ON {tokens} (user_id);
-- COLLATE "C" orders keys by their bytes, so prefix ranges match Rust's starts_with.
CREATE TABLE {kv} (
    namespace text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    expires_at bigint,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX "{prefix}kv_expiry" ON {kv} (expires_at) WHERE expires_at IS NOT NULL;
"#];

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
) -> Result<()> {
    let mut tx = pool.begin().await.map_err(pg_error)?;
    // Concurrent migrations of the same tables wait for each other instead of colliding.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("storekit {}", tables.meta))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    if let Some(schema) = schema {
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        sqlx::query(sql(create))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    let meta = tables
        .render("CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)");
    sqlx::query(sql(meta))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
    let read = sql(tables.render("SELECT value FROM {meta} WHERE name = $1"));
    let stored_kind = read_meta(&mut tx, &read, migrations::ID_KIND).await?;
    let stored_version = read_meta(&mut tx, &read, migrations::SCHEMA_VERSION).await?;
    let columns = match kind {
        IdKind::Uuid => IdColumns {
            id: "uuid PRIMARY KEY",
            user_ref: "uuid",
        },
        IdKind::Int => IdColumns {
            id: "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            user_ref: "bigint",
        },
    };
    let plan = migrations::plan(
        tables,
        MIGRATIONS,
        kind,
        columns,
        stored_kind,
        stored_version,
    )?;
    for ddl in plan.pending {
        sqlx::raw_sql(sql(ddl))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    let upsert = sql(tables.render(
        "INSERT INTO {meta} (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    ));
    for (name, value) in plan.meta {
        sqlx::query(upsert.clone())
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
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
    let names: std::result::Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(sql(format!(
        "SELECT name FROM {} ORDER BY name",
        tables.catalog
    )))
    .fetch_all(pool)
    .await;
    match names {
        Ok(names) => Ok(names
            .iter()
            .filter_map(|name| tables.declared(name))
            .collect()),
        Err(err) if is_missing_table(&err) => Ok(Vec::new()),
        Err(err) => Err(pg_error(err)),
    }
}

pub(super) async fn dump(pool: &PgPool, tables: &Tables) -> Result<String> {
    let mut out = String::new();
    let declared = declared_tables(pool, tables).await?;
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

/// Every statement, with this store's table names spliced in once.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) insert_user: SqlStr,
    pub(super) user_by_id: SqlStr,
    pub(super) user_by_email: SqlStr,
    pub(super) update_user: SqlStr,
    pub(super) delete_user: SqlStr,
    pub(super) list_users_first: SqlStr,
    pub(super) list_users_after: SqlStr,
    pub(super) insert_oauth: SqlStr,
    pub(super) oauth_one_for_update: SqlStr,
    pub(super) update_oauth: SqlStr,
    pub(super) delete_oauth: SqlStr,
    pub(super) oauth_of_user: SqlStr,
    pub(super) user_by_oauth: SqlStr,
    pub(super) insert_token: SqlStr,
    pub(super) token_by_hash: SqlStr,
    pub(super) delete_token: SqlStr,
    pub(super) delete_user_tokens: SqlStr,
    pub(super) kv_get: SqlStr,
    pub(super) kv_get_many: SqlStr,
    pub(super) kv_contains: SqlStr,
    pub(super) kv_upsert: SqlStr,
    pub(super) kv_upsert_many: SqlStr,
    pub(super) kv_insert_if_absent: SqlStr,
    pub(super) kv_swap: SqlStr,
    pub(super) kv_delete: SqlStr,
    pub(super) kv_delete_many: SqlStr,
    pub(super) kv_keys_first: SqlStr,
    pub(super) kv_keys_after: SqlStr,
    pub(super) kv_clear: SqlStr,
    pub(super) kv_purge_some: SqlStr,
    pub(super) kv_lock_counter: SqlStr,
    pub(super) kv_set_value: SqlStr,
}

const USER_COLUMNS: &str = "id, email, hashed_password, is_active, is_superuser, is_verified, \
                            created_at, updated_at, version, extra";

const OAUTH_COLUMNS: &str = "user_id, provider, account_id, account_email, access_token, \
                             expires_at, refresh_token, created_at, updated_at";

impl Statements {
    pub(super) fn new(t: &Tables, kind: IdKind) -> Self {
        let r = |text: &str| {
            sql(t
                .render(text)
                .replace("{user_columns}", USER_COLUMNS)
                .replace("{oauth_columns}", OAUTH_COLUMNS))
        };
        // Integer ids come from the identity column; UUIDs are made by storekit.
        let insert_user = match kind {
            IdKind::Uuid => r(
                "INSERT INTO {users} (id, email, email_key, hashed_password, \
                 is_active, is_superuser, is_verified, created_at, updated_at, version, extra) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9) RETURNING id",
            ),
            IdKind::Int => r("INSERT INTO {users} (email, email_key, hashed_password, \
                 is_active, is_superuser, is_verified, created_at, updated_at, version, extra) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1, $8) RETURNING id"),
        };
        Self {
            insert_user,
            user_by_id: r("SELECT {user_columns} FROM {users} WHERE id = $1"),
            user_by_email: r("SELECT {user_columns} FROM {users} WHERE email_key = $1"),
            // An email held by another user in the statement's snapshot is refused before
            // the row is touched. Inserting the key into the unique index instead would wait
            // for that user's transaction, and two users swapping emails would each wait for
            // the other: a deadlock, broken only after the server's deadlock_timeout (1 s).
            update_user: r(
                "WITH taken AS (SELECT 1 FROM {users} WHERE email_key = $4 AND id <> $1), \
                 updated AS (UPDATE {users} SET email = $3, email_key = $4, \
                 hashed_password = $5, is_active = $6, is_superuser = $7, is_verified = $8, \
                 updated_at = $9, version = $10, extra = $11 \
                 WHERE id = $1 AND version = $2 AND NOT EXISTS (SELECT 1 FROM taken) \
                 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM updated)",
            ),
            delete_user: r("DELETE FROM {users} WHERE id = $1"),
            list_users_first: r("SELECT {user_columns} FROM {users} ORDER BY id LIMIT $1"),
            list_users_after: r(
                "SELECT {user_columns} FROM {users} WHERE id > $2 ORDER BY id LIMIT $1",
            ),
            insert_oauth: r("INSERT INTO {oauth} ({oauth_columns}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            oauth_one_for_update: r("SELECT {oauth_columns} FROM {oauth} \
                 WHERE provider = $1 AND account_id = $2 AND user_id = $3 FOR UPDATE"),
            update_oauth: r("UPDATE {oauth} SET account_email = $4, access_token = $5, \
                 expires_at = $6, refresh_token = $7, updated_at = $8 \
                 WHERE provider = $1 AND account_id = $2 AND user_id = $3"),
            delete_oauth: r(
                "DELETE FROM {oauth} WHERE provider = $1 AND account_id = $2 AND user_id = $3",
            ),
            oauth_of_user: r("SELECT {oauth_columns} FROM {oauth} WHERE user_id = $1 \
                 ORDER BY provider COLLATE \"C\", account_id COLLATE \"C\""),
            user_by_oauth: r("SELECT {user_columns} FROM {users} WHERE id = \
                 (SELECT user_id FROM {oauth} WHERE provider = $1 AND account_id = $2)"),
            insert_token: r(
                "INSERT INTO {tokens} (token_hash, user_id, created_at) VALUES ($1, $2, $3)",
            ),
            token_by_hash: r("SELECT user_id, created_at FROM {tokens} WHERE token_hash = $1"),
            delete_token: r("DELETE FROM {tokens} WHERE token_hash = $1"),
            delete_user_tokens: r("DELETE FROM {tokens} WHERE user_id = $1"),
            kv_get: r("SELECT value FROM {kv} WHERE namespace = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3)"),
            // Existence only: a large value is not sent to answer yes or no.
            kv_contains: r(
                "SELECT EXISTS (SELECT 1 FROM {kv} WHERE namespace = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3))",
            ),
            kv_get_many: r("SELECT key, value FROM {kv} WHERE namespace = $1 \
                 AND key = ANY($2) AND (expires_at IS NULL OR expires_at > $3)"),
            kv_upsert: r("INSERT INTO {kv} (namespace, key, value, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at"),
            // One statement for the whole batch: all of it is written, or none.
            kv_upsert_many: r("INSERT INTO {kv} (namespace, key, value, expires_at) \
                 SELECT $1, k, v, $4 FROM UNNEST($2::text[], $3::bytea[]) AS t (k, v) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at"),
            // Replaces a row only if it has expired, so the insert succeeds exactly when no
            // live item is there, in one atomic statement.
            kv_insert_if_absent: r(
                "INSERT INTO {kv} AS old (namespace, key, value, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at \
                 WHERE old.expires_at IS NOT NULL AND old.expires_at <= $5",
            ),
            kv_swap: r("UPDATE {kv} SET value = $3, expires_at = $4 \
                 WHERE namespace = $1 AND key = $2 AND value = $5 \
                 AND (expires_at IS NULL OR expires_at > $6)"),
            kv_delete: r("DELETE FROM {kv} WHERE namespace = $1 AND key = $2 RETURNING expires_at"),
            // Rows are locked in key order, as `kv_upsert_many` writes them, whatever plan
            // finds them (a scan of a small table visits them in storage order): concurrent
            // batches over overlapping keys then wait for each other instead of deadlocking.
            kv_delete_many: r(
                "DELETE FROM {kv} WHERE (namespace, key) IN (SELECT namespace, key \
                 FROM {kv} WHERE namespace = $1 AND key = ANY($2) ORDER BY key FOR UPDATE)",
            ),
            kv_keys_first: r("SELECT key FROM {kv} WHERE namespace = $1 AND key >= $2 \
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4"),
            kv_keys_after: r("SELECT key FROM {kv} WHERE namespace = $1 AND key > $2 \
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4"),
            kv_clear: r("DELETE FROM {kv} WHERE namespace = $1"),
            // SKIP LOCKED: rows another transaction is writing are left for the next purge
            // rather than waited for.
            kv_purge_some: r("DELETE FROM {kv} WHERE (namespace, key) IN \
                 (SELECT namespace, key FROM {kv} WHERE expires_at IS NOT NULL \
                 AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"),
            // Locks the counter's row, creating it at 0 (or resetting it if expired), and
            // returns what it holds; the caller adds in Rust and writes back in the same
            // transaction, so the arithmetic and its errors are the same as on every backend.
            kv_lock_counter: r(
                "INSERT INTO {kv} AS old (namespace, key, value, expires_at) \
                 VALUES ($1, $2, '0', $3) ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = CASE WHEN old.expires_at <= $4 THEN excluded.value ELSE old.value END, \
                 expires_at = CASE WHEN old.expires_at <= $4 THEN excluded.expires_at \
                 ELSE old.expires_at END \
                 RETURNING value, expires_at",
            ),
            kv_set_value: r("UPDATE {kv} SET value = $3 WHERE namespace = $1 AND key = $2"),
        }
    }
}
