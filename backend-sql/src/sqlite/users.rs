//! Users, OAuth accounts and access tokens on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, Row, TransactionBehavior, params};
use storekit_core::backend::{
    EmailKey, OAuthBackend, OAuthKey, TokenBackend, TokenHash, UserBackend, UserPageRequest,
};
use storekit_core::time::from_micros;
use storekit_core::transfer::{StoredToken, UserBundle, UserTransferBackend};
use storekit_core::{
    AccessToken, Error, IdKind, OAuthAccount, OAuthAccountPatch, Page, Result, User, UserDraft,
    UserId, UserPatch,
};
use uuid::Uuid;

use super::SqliteStore;
use super::error::sqlite_error;
use super::step::first_row;
use crate::rows::{OAuthRow, UserRow};
use crate::violation::{Violation, account_insert_error, on_violation};

const BACKEND: &str = "sqlite";

/// A user id as SQLite stores it: 16 bytes for UUIDs, an integer otherwise.
enum IdValue {
    Uuid([u8; 16]),
    Int(i64),
}

impl rusqlite::ToSql for IdValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Uuid(bytes) => bytes.to_sql(),
            Self::Int(n) => n.to_sql(),
        }
    }
}

impl SqliteStore {
    /// The stored form of an id (of the store's kind: the core layer checked it).
    fn id(id: UserId) -> IdValue {
        match id {
            UserId::Uuid(uuid) => IdValue::Uuid(uuid.into_bytes()),
            UserId::Int(n) => IdValue::Int(n),
        }
    }

    fn read_id(&self, row: &Row<'_>, column: usize) -> rusqlite::Result<UserId> {
        Ok(match self.inner.id_kind {
            IdKind::Uuid => UserId::Uuid(Uuid::from_bytes(row.get::<_, [u8; 16]>(column)?)),
            IdKind::Int => UserId::Int(row.get(column)?),
        })
    }

    fn query_user(
        &self,
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<User>> {
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
        let found = first_row(&mut stmt, params, |row| self.raw_user(row)).map_err(sqlite_error)?;
        found.map(into_user).transpose()
    }

    fn raw_user(&self, row: &Row<'_>) -> rusqlite::Result<RawUser> {
        Ok(UserRow {
            id: self.read_id(row, 0)?,
            email: row.get(1)?,
            hashed_password: row.get(2)?,
            is_active: row.get(3)?,
            is_superuser: row.get(4)?,
            is_verified: row.get(5)?,
            created_at: row.get(6)?,
            updated_at: row.get(7)?,
            version: row.get(8)?,
            extra: row.get(9)?,
        })
    }

    fn raw_oauth(&self, row: &Row<'_>) -> rusqlite::Result<RawOAuth> {
        Ok(OAuthRow {
            user_id: self.read_id(row, 0)?,
            provider: row.get(1)?,
            account_id: row.get(2)?,
            account_email: row.get(3)?,
            access_token: row.get(4)?,
            expires_at: row.get(5)?,
            refresh_token: row.get(6)?,
            created_at: row.get(7)?,
            updated_at: row.get(8)?,
        })
    }

    fn query_oauth(
        &self,
        conn: &Connection,
        user: &IdValue,
        provider: &str,
        account_id: &str,
    ) -> Result<Option<OAuthAccount>> {
        let mut stmt = conn
            .prepare_cached(&self.inner.sql.oauth_one)
            .map_err(sqlite_error)?;
        let found = first_row(&mut stmt, params![provider, account_id, user], |row| {
            self.raw_oauth(row)
        })
        .map_err(sqlite_error)?;
        found.map(into_account).transpose()
    }
}

/// A users row with timestamps (microseconds) and JSON (text) in their stored form.
type RawUser = UserRow<i64, String>;

/// An oauth_accounts row with timestamps in their stored form.
type RawOAuth = OAuthRow<i64>;

/// A stored user, decoded.
fn into_user(raw: RawUser) -> Result<User> {
    raw.decode(BACKEND, from_micros, |extra| extra_from_text(&extra))
}

/// A stored OAuth account, decoded.
fn into_account(raw: RawOAuth) -> Result<OAuthAccount> {
    raw.decode(from_micros)
}

/// SQLite keeps `extra` as JSON text.
fn extra_from_text(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::backend(BACKEND, e))
}

fn extra_to_text(extra: &storekit_core::Extra) -> String {
    serde_json::Value::Object(extra.clone()).to_string()
}

fn micros(at: storekit_core::chrono::DateTime<storekit_core::chrono::Utc>) -> i64 {
    at.timestamp_micros()
}

#[async_trait]
impl UserBackend for SqliteStore {
    fn id_kind(&self) -> IdKind {
        self.inner.id_kind
    }

    async fn create_user(&self, draft: UserDraft) -> Result<User> {
        let email_key = draft.email_key.clone();
        let uuid = Uuid::now_v7();
        let user = draft.into_user(UserId::Uuid(uuid));
        // A NULL id lets AUTOINCREMENT assign an integer one.
        let id_param = (self.inner.id_kind == IdKind::Uuid).then(|| uuid.into_bytes());
        let store = self.clone();
        let (email, hashed_password) = (user.email.clone(), user.hashed_password.clone());
        let flags = (user.is_active, user.is_superuser, user.is_verified);
        let (created_at, extra) = (micros(user.created_at), extra_to_text(&user.extra));
        let id = self
            .inner
            .conns
            .write_grouped(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&store.inner.sql.insert_user)
                    .map_err(sqlite_error)?;
                let params = params![
                    id_param,
                    email,
                    email_key,
                    hashed_password,
                    flags.0,
                    flags.1,
                    flags.2,
                    created_at,
                    extra,
                ];
                stmt.execute(params).map_err(on_violation(
                    Violation::Unique,
                    Error::AlreadyExists { what: "email" },
                ))?;
                // No RETURNING (it buffers the row in a temporary table): a UUID is known
                // already, and an integer id is the row id SQLite just assigned on this
                // connection.
                Ok(match id_param {
                    Some(_) => UserId::Uuid(uuid),
                    None => UserId::Int(conn.last_insert_rowid()),
                })
            })
            .await?;
        Ok(User { id, ..user })
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        let id = Self::id(id);
        self.inner
            .conns
            .read(|conn| self.query_user(conn, &self.inner.sql.user_by_id, [&id]))
            .await
    }

    async fn get_user_by_email(&self, email: EmailKey<'_>) -> Result<Option<User>> {
        let key = email.as_str();
        self.inner
            .conns
            .read(|conn| self.query_user(conn, &self.inner.sql.user_by_email, [key]))
            .await
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User> {
        let id_value = Self::id(id);
        self.inner
            .conns
            .write(|conn| {
                // The writer lock serialises this process; IMMEDIATE serialises other processes
                // sharing the file, so the read and the write below see the same row.
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let current = self
                    .query_user(&tx, &self.inner.sql.user_by_id, [&id_value])?
                    .ok_or(Error::NotFound { what: "user" })?;
                let next = patch.apply(&current)?;
                let email_key = next.email_key()?;
                let changed = tx
                    .prepare_cached(&self.inner.sql.update_user)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            id_value,
                            current.version as i64,
                            next.email,
                            email_key,
                            next.hashed_password,
                            next.is_active,
                            next.is_superuser,
                            next.is_verified,
                            micros(next.updated_at),
                            next.version as i64,
                            extra_to_text(&next.extra),
                        ])
                    })
                    .map_err(on_violation(
                        Violation::Unique,
                        Error::AlreadyExists { what: "email" },
                    ))?;
                if changed != 1 {
                    return Err(Error::backend(
                        BACKEND,
                        "a user changed inside a write transaction",
                    ));
                }
                tx.commit().map_err(sqlite_error)?;
                Ok(next)
            })
            .await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let id = Self::id(id);
        // ON DELETE CASCADE removes the user's OAuth accounts and tokens in the same statement.
        let inner = self.inner.clone();
        let deleted = self
            .inner
            .conns
            .write_grouped(move |conn| {
                conn.prepare_cached(&inner.sql.delete_user)
                    .and_then(|mut stmt| stmt.execute([&id]))
                    .map_err(sqlite_error)
            })
            .await?;
        if deleted == 0 {
            return Err(Error::NotFound { what: "user" });
        }
        Ok(())
    }

    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>> {
        let after = page.after.map(Self::id);
        let limit = page.limit as i64 + 1;
        let users = self
            .inner
            .conns
            .read(|conn| {
                let sql = &self.inner.sql;
                let (sql, after) = match &after {
                    Some(after) => (&sql.list_users_after, Some(after)),
                    None => (&sql.list_users_first, None),
                };
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                let raw_user = |row: &Row<'_>| self.raw_user(row);
                let rows = match after {
                    Some(after) => stmt.query_map(params![limit, after], raw_user),
                    None => stmt.query_map(params![limit], raw_user),
                };
                rows.and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(sqlite_error)
            })
            .await?
            .into_iter()
            .map(into_user)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(users, page.limit, |u| {
            u.id.to_string()
        }))
    }
}

#[async_trait]
impl OAuthBackend for SqliteStore {
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount> {
        let id = Self::id(account.user_id);
        self.inner
            .conns
            .write(|conn| {
                conn.prepare_cached(&self.inner.sql.insert_oauth)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            id,
                            account.provider,
                            account.account_id,
                            account.account_email,
                            account.access_token,
                            account.expires_at.map(micros),
                            account.refresh_token,
                            micros(account.created_at),
                            micros(account.updated_at),
                        ])
                    })
                    .map_err(account_insert_error)
            })
            .await?;
        Ok(account)
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        let id = Self::id(user);
        let (provider, account_id) = (key.provider(), key.account_id());
        self.inner
            .conns
            .write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let current =
                    self.query_oauth(&tx, &id, provider, account_id)?
                        .ok_or(Error::NotFound {
                            what: "oauth account",
                        })?;
                let next = patch.apply(&current)?;
                tx.prepare_cached(&self.inner.sql.update_oauth)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            provider,
                            account_id,
                            id,
                            next.account_email,
                            next.access_token,
                            next.expires_at.map(micros),
                            next.refresh_token,
                            micros(next.updated_at),
                        ])
                    })
                    .map_err(sqlite_error)?;
                tx.commit().map_err(sqlite_error)?;
                Ok(next)
            })
            .await
    }

    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()> {
        let id = Self::id(user);
        let (provider, account_id) = (key.provider(), key.account_id());
        let removed = self
            .inner
            .conns
            .write(|conn| {
                conn.prepare_cached(&self.inner.sql.delete_oauth)
                    .and_then(|mut stmt| stmt.execute(params![provider, account_id, id]))
                    .map_err(sqlite_error)
            })
            .await?;
        if removed == 0 {
            return Err(Error::NotFound {
                what: "oauth account",
            });
        }
        Ok(())
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        let id = Self::id(user);
        let rows = self
            .inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.oauth_of_user)
                    .map_err(sqlite_error)?;
                stmt.query_map([&id], |row| self.raw_oauth(row))
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(sqlite_error)
            })
            .await?;
        rows.into_iter().map(into_account).collect()
    }

    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>> {
        let (provider, account_id) = (key.provider(), key.account_id());
        self.inner
            .conns
            .read(|conn| {
                self.query_user(
                    conn,
                    &self.inner.sql.user_by_oauth,
                    params![provider, account_id],
                )
            })
            .await
    }
}

#[async_trait]
impl TokenBackend for SqliteStore {
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()> {
        let id = Self::id(token.user_id);
        let (inner, hash, created_at) = (self.inner.clone(), hash.to_string(), token.created_at);
        self.inner
            .conns
            .write_grouped(move |conn| {
                conn.prepare_cached(&inner.sql.insert_token)
                    .and_then(|mut stmt| stmt.execute(params![hash, id, micros(created_at)]))
                    .map_err(on_violation(
                        Violation::ForeignKey,
                        Error::NotFound { what: "user" },
                    ))
            })
            .await?;
        Ok(())
    }

    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>> {
        let hash = hash.as_str();
        let found = self
            .inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.token_by_hash)
                    .map_err(sqlite_error)?;
                first_row(&mut stmt, [hash], |row| {
                    Ok((self.read_id(row, 0)?, row.get::<_, i64>(1)?))
                })
                .map_err(sqlite_error)
            })
            .await?;
        found
            .map(|(user, created)| Ok(AccessToken::new(user, from_micros(created)?)))
            .transpose()
    }

    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool> {
        let (inner, hash) = (self.inner.clone(), hash.to_string());
        let deleted = self
            .inner
            .conns
            .write_grouped(move |conn| {
                conn.prepare_cached(&inner.sql.delete_token)
                    .and_then(|mut stmt| stmt.execute([&hash]))
                    .map_err(sqlite_error)
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        let id = Self::id(user);
        self.inner
            .conns
            .write(|conn| {
                conn.prepare_cached(&self.inner.sql.delete_user_tokens)
                    .and_then(|mut stmt| stmt.execute([&id]))
                    .map_err(sqlite_error)
            })
            .await?;
        Ok(())
    }
}

/// What `storekit copy` reads and writes of users.
#[async_trait]
impl UserTransferBackend for SqliteStore {
    /// The hashes and records of `user`'s access tokens.
    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        let id = Self::id(user);
        let rows: Vec<(String, i64)> = self
            .inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.tokens_of_user)
                    .map_err(sqlite_error)?;
                stmt.query_map([&id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(|rows| rows.collect())
                    .map_err(sqlite_error)
            })
            .await?;
        rows.into_iter()
            .map(|(hash, created)| {
                Ok(StoredToken {
                    hash,
                    token: AccessToken::new(user, from_micros(created)?),
                })
            })
            .collect()
    }

    /// Makes the stored user equal `bundle`, in one transaction.
    async fn import_user(&self, bundle: &UserBundle) -> Result<()> {
        let user = &bundle.user;
        let id = Self::id(user.id);
        let email_key = user.email_key()?;
        self.inner
            .conns
            .write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let sql = &self.inner.sql;
                tx.prepare_cached(&sql.import_user)
                    .and_then(|mut stmt| {
                        stmt.execute(params![
                            id,
                            user.email,
                            email_key,
                            user.hashed_password,
                            user.is_active,
                            user.is_superuser,
                            user.is_verified,
                            micros(user.created_at),
                            micros(user.updated_at),
                            i64::try_from(user.version).unwrap_or(i64::MAX),
                            extra_to_text(&user.extra),
                        ])
                    })
                    .map_err(on_violation(
                        Violation::Unique,
                        Error::AlreadyExists { what: "email" },
                    ))?;
                // The user's accounts are replaced by the bundle's; one another user holds
                // then fails its insert, as in `add_oauth_account`.
                tx.prepare_cached(&sql.delete_user_oauth)
                    .and_then(|mut stmt| stmt.execute([&id]))
                    .map_err(sqlite_error)?;
                let mut insert = tx.prepare_cached(&sql.insert_oauth).map_err(sqlite_error)?;
                for account in &bundle.oauth_accounts {
                    insert
                        .execute(params![
                            id,
                            account.provider,
                            account.account_id,
                            account.account_email,
                            account.access_token,
                            account.expires_at.map(micros),
                            account.refresh_token,
                            micros(account.created_at),
                            micros(account.updated_at),
                        ])
                        .map_err(on_violation(
                            Violation::Unique,
                            Error::AlreadyExists {
                                what: "oauth account",
                            },
                        ))?;
                }
                drop(insert);
                let mut insert = tx.prepare_cached(&sql.import_token).map_err(sqlite_error)?;
                for token in &bundle.access_tokens {
                    insert
                        .execute(params![token.hash, id, micros(token.token.created_at)])
                        .map_err(sqlite_error)?;
                }
                drop(insert);
                tx.commit().map_err(sqlite_error)
            })
            .await
    }
}
