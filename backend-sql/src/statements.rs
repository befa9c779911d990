//! Every statement the users, OAuth, tokens and kv stores run, written once for both
//! dialects.
//!
//! A text is written with SQLite's placeholders (`?N`, and `:name` where SQLite binds by
//! name) and rendered for a dialect by [`Dialect::placeholders`]; where the dialects really
//! differ, the text holds a `match` on the dialect, with a comment saying why. The few
//! statements only one dialect runs live beside its driver (`SqliteOnly`, `PostgresOnly`).

use storekit_core::IdKind;

use crate::dialect::Dialect;
use crate::tables::Tables;

/// The columns of a user, in the order the drivers read them.
pub(crate) const USER_COLUMNS: &str = "id, email, hashed_password, is_active, is_superuser, \
                                       is_verified, created_at, updated_at, version, extra";

/// The columns of an OAuth account, in the order the drivers read them.
pub(crate) const OAUTH_COLUMNS: &str = "user_id, provider, account_id, account_email, \
                                        access_token, expires_at, refresh_token, created_at, \
                                        updated_at";

/// A live item: no deadline, or a deadline after `:now`.
const LIVE: &str = "(expires_at IS NULL OR expires_at > :now)";

/// Renders statement texts for one store: placeholders for its dialect, its table names, and
/// the shared pieces (`{user_columns}`, `{oauth_columns}`, `{live}`), then `convert` (the
/// driver's own text type).
#[derive(Debug)]
pub(crate) struct Renderer<'a, S> {
    pub(crate) dialect: Dialect,
    pub(crate) tables: &'a Tables,
    pub(crate) convert: fn(String) -> S,
}

impl<S> Renderer<'_, S> {
    /// `text`, whose named placeholders PostgreSQL numbers in the order of `names`.
    pub(crate) fn named(&self, text: &str, names: &[&str]) -> S {
        let text = text
            .replace("{user_columns}", USER_COLUMNS)
            .replace("{oauth_columns}", OAUTH_COLUMNS)
            .replace("{live}", LIVE);
        let text = self.dialect.placeholders(&text, names);
        (self.convert)(self.tables.render(&text))
    }

    /// `text`, with numbered placeholders only.
    pub(crate) fn numbered(&self, text: &str) -> S {
        self.named(text, &[])
    }
}

/// Every shared statement, with one store's table names spliced in once, as the driver's text
/// type `S` (a `String` for rusqlite, an `SqlStr` for sqlx).
#[derive(Debug)]
pub(crate) struct Statements<S> {
    pub(crate) insert_user: S,
    pub(crate) user_by_id: S,
    pub(crate) user_by_email: S,
    pub(crate) update_user: S,
    pub(crate) delete_user: S,
    pub(crate) list_users_first: S,
    pub(crate) list_users_after: S,
    pub(crate) insert_oauth: S,
    pub(crate) oauth_one: S,
    pub(crate) update_oauth: S,
    pub(crate) delete_oauth: S,
    pub(crate) oauth_of_user: S,
    pub(crate) user_by_oauth: S,
    pub(crate) insert_token: S,
    pub(crate) token_by_hash: S,
    pub(crate) delete_token: S,
    pub(crate) delete_user_tokens: S,
    pub(crate) kv_get: S,
    pub(crate) kv_get_any: S,
    pub(crate) kv_contains: S,
    pub(crate) kv_upsert: S,
    pub(crate) kv_insert_if_absent: S,
    pub(crate) kv_swap: S,
    pub(crate) kv_set_expiry: S,
    pub(crate) kv_keys_first: S,
    pub(crate) kv_keys_after: S,
    pub(crate) kv_clear: S,
    pub(crate) kv_purge_some: S,
    /// [`Statements::kv_export`]'s four texts.
    kv_export: [S; 4],
    pub(crate) import_user: S,
    pub(crate) delete_user_oauth: S,
    pub(crate) import_token: S,
    pub(crate) tokens_of_user: S,
}

impl<S> Statements<S> {
    pub(crate) fn new(r: &Renderer<'_, S>, kind: IdKind) -> Self {
        let dialect = r.dialect;
        // Integer ids are made by the database. PostgreSQL's identity column refuses an id
        // unless told otherwise, so none is given and the one made is returned; SQLite's
        // AUTOINCREMENT column makes one when the id bound is NULL.
        let insert_user = match (dialect, kind) {
            (Dialect::Postgres, IdKind::Int) => r.numbered(
                "INSERT INTO {users} (email, email_key, hashed_password, \
                 is_active, is_superuser, is_verified, created_at, updated_at, version, extra) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1, ?8) RETURNING id",
            ),
            _ => r.numbered(&format!(
                "INSERT INTO {{users}} (id, email, email_key, hashed_password, is_active, \
                 is_superuser, is_verified, created_at, updated_at, version, extra) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, ?9){}",
                match dialect {
                    Dialect::Sqlite => "",
                    Dialect::Postgres => " RETURNING id",
                }
            )),
        };
        let update_user = match dialect {
            // SQLite has one writer at a time: the unique index's answer is the whole story.
            Dialect::Sqlite => r.numbered(
                "UPDATE {users} SET email = ?3, email_key = ?4, hashed_password = ?5, \
                 is_active = ?6, is_superuser = ?7, is_verified = ?8, updated_at = ?9, \
                 version = ?10, extra = ?11 WHERE id = ?1 AND version = ?2",
            ),
            // An email held by another user in the statement's snapshot is refused before
            // the row is touched. Inserting the key into the unique index instead would wait
            // for that user's transaction, and two users swapping emails would each wait for
            // the other: a deadlock, broken only after the server's deadlock_timeout (1 s).
            Dialect::Postgres => r.numbered(
                "WITH taken AS (SELECT 1 FROM {users} WHERE email_key = ?4 AND id <> ?1), \
                 updated AS (UPDATE {users} SET email = ?3, email_key = ?4, \
                 hashed_password = ?5, is_active = ?6, is_superuser = ?7, is_verified = ?8, \
                 updated_at = ?9, version = ?10, extra = ?11 \
                 WHERE id = ?1 AND version = ?2 AND NOT EXISTS (SELECT 1 FROM taken) \
                 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM updated)",
            ),
        };
        // PostgreSQL's update of an account reads it and writes it in one transaction among
        // others, so the read locks the row; SQLite's write transaction excludes every other.
        let for_update = match dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        // PostgreSQL's text columns order by the database's collation; SQLite's BINARY
        // collation is byte order already, as every backend lists accounts.
        let oauth_order = match dialect {
            Dialect::Sqlite => "provider, account_id",
            Dialect::Postgres => "provider COLLATE \"C\", account_id COLLATE \"C\"",
        };
        // Existence only: a large value is not read to answer yes or no. rusqlite asks whether
        // a row came back; sqlx reads one boolean that is always there.
        let kv_contains = match dialect {
            Dialect::Sqlite => "SELECT 1 FROM {kv} WHERE namespace = :ns AND key = :key AND {live}",
            Dialect::Postgres => {
                "SELECT EXISTS (SELECT 1 FROM {kv} WHERE namespace = :ns AND key = :key \
                 AND {live})"
            }
        };
        // In PostgreSQL's DO UPDATE a bare column is ambiguous between the row and
        // `excluded`, so the table is named; SQLite takes the bare column as the row's.
        let (old, old_expires) = match dialect {
            Dialect::Sqlite => ("", "expires_at"),
            Dialect::Postgres => (" AS old", "old.expires_at"),
        };
        let kv_purge_some = match dialect {
            // By rowid, SQLite's cheapest way to a row.
            Dialect::Sqlite => {
                "DELETE FROM {kv} WHERE id IN (SELECT id FROM {kv} \
                 WHERE expires_at IS NOT NULL AND expires_at <= :now LIMIT :limit)"
            }
            // SKIP LOCKED: rows another transaction is writing are left for the next purge
            // rather than waited for (SQLite has a single writer, so nothing to skip).
            Dialect::Postgres => {
                "DELETE FROM {kv} WHERE (namespace, key) IN \
                 (SELECT namespace, key FROM {kv} WHERE expires_at IS NOT NULL \
                 AND expires_at <= :now LIMIT :limit FOR UPDATE SKIP LOCKED)"
            }
        };
        // An integer id is given as it was: PostgreSQL's identity column must be told to take
        // it; SQLite's AUTOINCREMENT takes it and remembers the highest.
        let overriding = match (dialect, kind) {
            (Dialect::Postgres, IdKind::Int) => " OVERRIDING SYSTEM VALUE",
            _ => "",
        };
        const NS_KEY: &[&str] = &["ns", "key"];
        const NS_KEY_NOW: &[&str] = &["ns", "key", "now"];
        const KEYS_PAGE: &[&str] = &["ns", "from", "now", "limit"];
        Self {
            insert_user,
            user_by_id: r.numbered("SELECT {user_columns} FROM {users} WHERE id = ?1"),
            user_by_email: r.numbered("SELECT {user_columns} FROM {users} WHERE email_key = ?1"),
            update_user,
            delete_user: r.numbered("DELETE FROM {users} WHERE id = ?1"),
            list_users_first: r.numbered("SELECT {user_columns} FROM {users} ORDER BY id LIMIT ?1"),
            list_users_after: r
                .numbered("SELECT {user_columns} FROM {users} WHERE id > ?2 ORDER BY id LIMIT ?1"),
            insert_oauth: r.numbered(
                "INSERT INTO {oauth} ({oauth_columns}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            ),
            oauth_one: r.numbered(&format!(
                "SELECT {{oauth_columns}} FROM {{oauth}} \
                 WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3{for_update}"
            )),
            update_oauth: r.numbered(
                "UPDATE {oauth} SET account_email = ?4, access_token = ?5, \
                 expires_at = ?6, refresh_token = ?7, updated_at = ?8 \
                 WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3",
            ),
            delete_oauth: r.numbered(
                "DELETE FROM {oauth} WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3",
            ),
            oauth_of_user: r.numbered(&format!(
                "SELECT {{oauth_columns}} FROM {{oauth}} WHERE user_id = ?1 ORDER BY {oauth_order}"
            )),
            user_by_oauth: r.numbered(
                "SELECT {user_columns} FROM {users} WHERE id = \
                 (SELECT user_id FROM {oauth} WHERE provider = ?1 AND account_id = ?2)",
            ),
            insert_token: r.numbered(
                "INSERT INTO {tokens} (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            ),
            token_by_hash: r
                .numbered("SELECT user_id, created_at FROM {tokens} WHERE token_hash = ?1"),
            delete_token: r.numbered("DELETE FROM {tokens} WHERE token_hash = ?1"),
            delete_user_tokens: r.numbered("DELETE FROM {tokens} WHERE user_id = ?1"),
            kv_get: r.named(
                "SELECT value FROM {kv} WHERE namespace = :ns AND key = :key AND {live}",
                NS_KEY_NOW,
            ),
            kv_contains: r.named(kv_contains, NS_KEY_NOW),
            kv_get_any: r.named(
                "SELECT value, expires_at FROM {kv} WHERE namespace = :ns AND key = :key",
                NS_KEY,
            ),
            kv_upsert: r.named(
                "INSERT INTO {kv} (namespace, key, value, expires_at) \
                 VALUES (:ns, :key, :value, :exp) \
                 ON CONFLICT (namespace, key) DO UPDATE \
                 SET value = excluded.value, expires_at = excluded.expires_at",
                &["ns", "key", "value", "exp"],
            ),
            // Replaces a row only if it has expired, so the insert succeeds exactly when no
            // live item is there, in one atomic statement.
            kv_insert_if_absent: r.named(
                &format!(
                    "INSERT INTO {{kv}}{old} (namespace, key, value, expires_at) \
                     VALUES (:ns, :key, :value, :exp) \
                     ON CONFLICT (namespace, key) DO UPDATE \
                     SET value = excluded.value, expires_at = excluded.expires_at \
                     WHERE {old_expires} IS NOT NULL AND {old_expires} <= :now"
                ),
                &["ns", "key", "value", "exp", "now"],
            ),
            kv_swap: r.named(
                "UPDATE {kv} SET value = :value, expires_at = :exp \
                 WHERE namespace = :ns AND key = :key AND value = :expected AND {live}",
                &["ns", "key", "value", "exp", "expected", "now"],
            ),
            kv_set_expiry: r.named(
                "UPDATE {kv} SET expires_at = :exp \
                 WHERE namespace = :ns AND key = :key AND {live}",
                &["ns", "key", "exp", "now"],
            ),
            // Keys come in pages, each continuing after the last; `key >= :from` on the first
            // and `key > :from` on the next let the primary key index find the start.
            kv_keys_first: r.named(
                "SELECT key FROM {kv} WHERE namespace = :ns AND key >= :from \
                 AND {live} ORDER BY key LIMIT :limit",
                KEYS_PAGE,
            ),
            kv_keys_after: r.named(
                "SELECT key FROM {kv} WHERE namespace = :ns AND key > :from \
                 AND {live} ORDER BY key LIMIT :limit",
                KEYS_PAGE,
            ),
            kv_clear: r.named("DELETE FROM {kv} WHERE namespace = :ns", &["ns"]),
            kv_purge_some: r.named(kv_purge_some, &["now", "limit"]),
            kv_export: [(false, false), (false, true), (true, false), (true, true)]
                .map(|(only, after)| kv_export(r, only, after)),
            import_user: r.numbered(&format!(
                "INSERT INTO {{users}} (id, email, email_key, hashed_password, is_active, \
                 is_superuser, is_verified, created_at, updated_at, version, extra){overriding} \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (id) DO UPDATE SET email = excluded.email, \
                 email_key = excluded.email_key, hashed_password = excluded.hashed_password, \
                 is_active = excluded.is_active, is_superuser = excluded.is_superuser, \
                 is_verified = excluded.is_verified, created_at = excluded.created_at, \
                 updated_at = excluded.updated_at, version = excluded.version, \
                 extra = excluded.extra",
            )),
            delete_user_oauth: r.numbered("DELETE FROM {oauth} WHERE user_id = ?1"),
            import_token: r.numbered(
                "INSERT INTO {tokens} (token_hash, user_id, created_at) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (token_hash) DO NOTHING",
            ),
            tokens_of_user: r
                .numbered("SELECT token_hash, created_at FROM {tokens} WHERE user_id = ?1"),
        }
    }

    /// The text of one page of live kv items (`:now`, at most `:limit`) of namespace `:only`
    /// when `only`, after (`:ns`, `:key`) when `after`, in (namespace, key) order: the
    /// (namespace, key) index finds the start and yields the order.
    pub(crate) fn kv_export(&self, only: bool, after: bool) -> &S {
        &self.kv_export[usize::from(only) * 2 + usize::from(after)]
    }
}

fn kv_export<S>(r: &Renderer<'_, S>, only: bool, after: bool) -> S {
    let mut names = vec!["now", "limit"];
    let mut text = "SELECT namespace, key, value, expires_at FROM {kv} WHERE {live}".to_owned();
    if only {
        text.push_str(" AND namespace = :only");
        names.push("only");
    }
    if after {
        text.push_str(" AND (namespace, key) > (:ns, :key)");
        names.extend(["ns", "key"]);
    }
    text.push_str(" ORDER BY namespace, key LIMIT :limit");
    r.named(&text, &names)
}

#[cfg(test)]
impl Statements<String> {
    /// Every text, named, for the snapshot test (`crate::snapshots`).
    pub(crate) fn texts(&self) -> Vec<(&'static str, String)> {
        let texts = [
            ("insert_user", &self.insert_user),
            ("user_by_id", &self.user_by_id),
            ("user_by_email", &self.user_by_email),
            ("update_user", &self.update_user),
            ("delete_user", &self.delete_user),
            ("list_users_first", &self.list_users_first),
            ("list_users_after", &self.list_users_after),
            ("insert_oauth", &self.insert_oauth),
            ("oauth_one", &self.oauth_one),
            ("update_oauth", &self.update_oauth),
            ("delete_oauth", &self.delete_oauth),
            ("oauth_of_user", &self.oauth_of_user),
            ("user_by_oauth", &self.user_by_oauth),
            ("insert_token", &self.insert_token),
            ("token_by_hash", &self.token_by_hash),
            ("delete_token", &self.delete_token),
            ("delete_user_tokens", &self.delete_user_tokens),
            ("kv_get", &self.kv_get),
            ("kv_get_any", &self.kv_get_any),
            ("kv_contains", &self.kv_contains),
            ("kv_upsert", &self.kv_upsert),
            ("kv_insert_if_absent", &self.kv_insert_if_absent),
            ("kv_swap", &self.kv_swap),
            ("kv_set_expiry", &self.kv_set_expiry),
            ("kv_keys_first", &self.kv_keys_first),
            ("kv_keys_after", &self.kv_keys_after),
            ("kv_clear", &self.kv_clear),
            ("kv_purge_some", &self.kv_purge_some),
            ("import_user", &self.import_user),
            ("delete_user_oauth", &self.delete_user_oauth),
            ("import_token", &self.import_token),
            ("tokens_of_user", &self.tokens_of_user),
            ("kv_export(false, false)", self.kv_export(false, false)),
            ("kv_export(false, true)", self.kv_export(false, true)),
            ("kv_export(true, false)", self.kv_export(true, false)),
            ("kv_export(true, true)", self.kv_export(true, true)),
        ];
        texts.map(|(name, text)| (name, text.clone())).to_vec()
    }
}
