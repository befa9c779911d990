//! storekit's own tables (users, OAuth accounts, access tokens, kv and the meta table) in both
//! dialects: each dialect's migrations as data, which `migrate()` runs,
//! `schema_differences()` compares with and the export renders (see `crate::migrations`).
//!
//! The two dialects' texts differ in types (SQLite's dynamic `INTEGER`, `TEXT`, `BLOB`;
//! PostgreSQL's `bigint`, `timestamptz`, `jsonb`, `bytea`, `COLLATE "C"`), in how an
//! integer id is made, and in SQLite's second migration, which PostgreSQL does not need.

use storekit_core::IdKind;

use crate::dialect::Dialect;
use crate::migrations::{IdColumns, Migrations};

/// The migrations of `dialect`.
pub(crate) fn migrations(dialect: Dialect) -> &'static Migrations {
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// SQLite's meta table and migrations.
pub(crate) const SQLITE: Migrations = Migrations {
    meta: "CREATE TABLE IF NOT EXISTS {meta} (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    steps: SQLITE_STEPS,
    id_columns: sqlite_id_columns,
};

fn sqlite_id_columns(kind: IdKind) -> IdColumns {
    match kind {
        IdKind::Uuid => IdColumns {
            id: "BLOB PRIMARY KEY NOT NULL",
            user_ref: "BLOB",
        },
        // AUTOINCREMENT records the highest id ever used in sqlite_sequence, which an insert
        // with an explicit larger id (a copied user) raises too: ids are never reused.
        IdKind::Int => IdColumns {
            id: "INTEGER PRIMARY KEY AUTOINCREMENT",
            user_ref: "INTEGER",
        },
    }
}

/// Migrations in order; each runs once, inside the migration transaction. `{id}` is the users
/// id column's type and `{user_ref}` the type of columns that refer to it.
const SQLITE_STEPS: &[&str] = &[
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

/// PostgreSQL's meta table and migrations.
pub(crate) const POSTGRES: Migrations = Migrations {
    meta: "CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)",
    steps: POSTGRES_STEPS,
    id_columns: postgres_id_columns,
};

fn postgres_id_columns(kind: IdKind) -> IdColumns {
    match kind {
        IdKind::Uuid => IdColumns {
            id: "uuid PRIMARY KEY",
            user_ref: "uuid",
        },
        IdKind::Int => IdColumns {
            id: "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            user_ref: "bigint",
        },
    }
}

/// Migrations in order; each runs once, inside the migration transaction. `{id}` is the users
/// id column's definition and `{user_ref}` the type of columns that refer to it.
const POSTGRES_STEPS: &[&str] = &[r#"
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
