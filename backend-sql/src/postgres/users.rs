//! Users, OAuth accounts and access tokens on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row as _};
use storekit_core::backend::{
    EmailKey, OAuthBackend, OAuthKey, TokenBackend, TokenHash, UserBackend, UserPageRequest,
};
use storekit_core::transfer::{StoredToken, UserBundle, UserTransferBackend};
use storekit_core::{
    AccessToken, Error, IdKind, OAuthAccount, OAuthAccountPatch, Page, Result, User, UserDraft,
    UserId, UserPatch,
};
use uuid::Uuid;

use super::PostgresStore;
use super::error::{is_deadlock, pg_error};
use crate::rows::{OAuthRow, UserRow};
use crate::violation::{Violation, account_insert_error, on_violation};

const BACKEND: &str = "postgres";

/// How often an unconditional update retries after losing a race to another writer before
/// reporting the conflict: each retry means another update landed, so this only runs out
/// under extreme contention on one user.
const UPDATE_ATTEMPTS: usize = 64;

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn bind_id(query: PgQuery<'_>, id: UserId) -> PgQuery<'_> {
    match id {
        UserId::Uuid(uuid) => query.bind(uuid),
        UserId::Int(n) => query.bind(n),
    }
}

impl PostgresStore {
    fn read_id(&self, row: &PgRow, column: usize) -> Result<UserId> {
        match self.inner.id_kind {
            IdKind::Uuid => row.try_get::<Uuid, _>(column).map(UserId::Uuid),
            IdKind::Int => row.try_get::<i64, _>(column).map(UserId::Int),
        }
        .map_err(pg_error)
    }

    fn user_from(&self, row: &PgRow) -> Result<User> {
        let get = |e| pg_error(e);
        UserRow {
            id: self.read_id(row, 0)?,
            email: row.try_get(1).map_err(get)?,
            hashed_password: row.try_get(2).map_err(get)?,
            is_active: row.try_get(3).map_err(get)?,
            is_superuser: row.try_get(4).map_err(get)?,
            is_verified: row.try_get(5).map_err(get)?,
            created_at: row.try_get(6).map_err(get)?,
            updated_at: row.try_get(7).map_err(get)?,
            version: row.try_get(8).map_err(get)?,
            extra: row.try_get(9).map_err(get)?,
        }
        .decode(BACKEND, Ok, Ok)
    }

    fn oauth_from(&self, row: &PgRow) -> Result<OAuthAccount> {
        let get = |e| pg_error(e);
        OAuthRow {
            user_id: self.read_id(row, 0)?,
            provider: row.try_get(1).map_err(get)?,
            account_id: row.try_get(2).map_err(get)?,
            account_email: row.try_get(3).map_err(get)?,
            access_token: row.try_get(4).map_err(get)?,
            expires_at: row.try_get(5).map_err(get)?,
            refresh_token: row.try_get(6).map_err(get)?,
            created_at: row.try_get(7).map_err(get)?,
            updated_at: row.try_get(8).map_err(get)?,
        }
        .decode(Ok)
    }

    async fn fetch_user(&self, query: PgQuery<'_>) -> Result<Option<User>> {
        let row = query
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        row.map(|row| self.user_from(&row)).transpose()
    }

    /// One attempt at an update: `Ok(None)` if another writer got there first.
    async fn try_update(&self, id: UserId, patch: &UserPatch) -> Result<Option<User>> {
        let query = bind_id(sqlx::query(self.inner.sql.user_by_id.clone()), id);
        let current = self
            .fetch_user(query)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let next = patch.apply(&current)?;
        let query = bind_id(sqlx::query(self.inner.sql.update_user.clone()), id)
            .bind(current.version as i64)
            .bind(&next.email)
            .bind(next.email_key()?)
            .bind(&next.hashed_password)
            .bind(next.is_active)
            .bind(next.is_superuser)
            .bind(next.is_verified)
            .bind(next.updated_at)
            .bind(next.version as i64)
            .bind(serde_json::Value::Object(next.extra.clone()));
        // A unique violation remains possible when two users claim the same free email at
        // once: the second waits for the first, then is refused.
        let (taken, updated): (bool, bool) = match query.fetch_one(&self.inner.pool).await {
            Ok(row) => (
                row.try_get(0).map_err(pg_error)?,
                row.try_get(1).map_err(pg_error)?,
            ),
            // Rolled back whole: read again and retry, like a lost race.
            Err(err) if is_deadlock(&err) => return Ok(None),
            Err(err) => {
                return Err(on_violation(
                    Violation::Unique,
                    Error::AlreadyExists { what: "email" },
                )(err));
            }
        };
        if taken {
            return Err(Error::AlreadyExists { what: "email" });
        }
        Ok(updated.then_some(next))
    }
}

#[async_trait]
impl UserBackend for PostgresStore {
    fn id_kind(&self) -> IdKind {
        self.inner.id_kind
    }

    async fn create_user(&self, draft: UserDraft) -> Result<User> {
        self.within_deadline(async {
            let email_key = draft.email_key.clone();
            let user = draft.into_user(UserId::Uuid(Uuid::now_v7()));
            let query = sqlx::query(self.inner.sql.insert_user.clone());
            let query = match self.inner.id_kind {
                IdKind::Uuid => bind_id(query, user.id),
                // The identity column assigns integer ids.
                IdKind::Int => query,
            };
            let query = query
                .bind(&user.email)
                .bind(email_key)
                .bind(&user.hashed_password)
                .bind(user.is_active)
                .bind(user.is_superuser)
                .bind(user.is_verified)
                .bind(user.created_at)
                .bind(serde_json::Value::Object(user.extra.clone()));
            let row = query
                .fetch_one(&self.inner.pool)
                .await
                .map_err(on_violation(
                    Violation::Unique,
                    Error::AlreadyExists { what: "email" },
                ))?;
            let id = self.read_id(&row, 0)?;
            Ok(User { id, ..user })
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.within_deadline(async {
            self.fetch_user(bind_id(sqlx::query(self.inner.sql.user_by_id.clone()), id))
                .await
        })
        .await
    }

    async fn get_user_by_email(&self, email: EmailKey<'_>) -> Result<Option<User>> {
        self.within_deadline(async {
            let key = email.as_str();
            self.fetch_user(sqlx::query(self.inner.sql.user_by_email.clone()).bind(key))
                .await
        })
        .await
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User> {
        self.within_deadline(async {
            // Optimistic: read, apply, write only if the version is unchanged. A lost race means
            // another update landed; a conditional patch then fails with Conflict in `apply`, an
            // unconditional one is applied again on top of the newer user.
            for _ in 0..UPDATE_ATTEMPTS {
                if let Some(user) = self.try_update(id, patch).await? {
                    return Ok(user);
                }
            }
            Err(Error::unavailable(
                BACKEND,
                "a user kept changing while being updated",
            ))
        })
        .await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        self.within_deadline(async {
            // ON DELETE CASCADE removes the user's OAuth accounts and tokens in the same statement.
            let deleted = bind_id(sqlx::query(self.inner.sql.delete_user.clone()), id)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            if deleted.rows_affected() == 0 {
                return Err(Error::NotFound { what: "user" });
            }
            Ok(())
        })
        .await
    }

    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>> {
        self.within_deadline(async {
            let after = page.after;
            let limit = page.limit as i64 + 1;
            let query = match after {
                Some(after) => bind_id(
                    sqlx::query(self.inner.sql.list_users_after.clone()).bind(limit),
                    after,
                ),
                None => sqlx::query(self.inner.sql.list_users_first.clone()).bind(limit),
            };
            let rows = query.fetch_all(&self.inner.pool).await.map_err(pg_error)?;
            let users = rows
                .iter()
                .map(|row| self.user_from(row))
                .collect::<Result<Vec<_>>>()?;
            Ok(Page::from_overfetch(users, page.limit, |u| {
                u.id.to_string()
            }))
        })
        .await
    }
}

#[async_trait]
impl OAuthBackend for PostgresStore {
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount> {
        self.within_deadline(async {
            let user = account.user_id;
            let query = bind_id(sqlx::query(self.inner.sql.insert_oauth.clone()), user)
                .bind(&account.provider)
                .bind(&account.account_id)
                .bind(&account.account_email)
                .bind(&account.access_token)
                .bind(account.expires_at)
                .bind(&account.refresh_token)
                .bind(account.created_at)
                .bind(account.updated_at);
            query
                .execute(&self.inner.pool)
                .await
                .map_err(account_insert_error)?;
            Ok(account)
        })
        .await
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        let (provider, account_id) = (key.provider(), key.account_id());
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            let select = sqlx::query(self.inner.sql.oauth_one.clone())
                .bind(provider)
                .bind(account_id);
            let row = bind_id(select, user)
                .fetch_optional(&mut *tx)
                .await
                .map_err(pg_error)?;
            let current = self.oauth_from(&row.ok_or(Error::NotFound {
                what: "oauth account",
            })?)?;
            let next = patch.apply(&current)?;
            let update = sqlx::query(self.inner.sql.update_oauth.clone())
                .bind(provider)
                .bind(account_id);
            bind_id(update, user)
                .bind(&next.account_email)
                .bind(&next.access_token)
                .bind(next.expires_at)
                .bind(&next.refresh_token)
                .bind(next.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(next)
        })
        .await
    }

    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()> {
        let (provider, account_id) = (key.provider(), key.account_id());
        self.within_deadline(async {
            let delete = sqlx::query(self.inner.sql.delete_oauth.clone())
                .bind(provider)
                .bind(account_id);
            let removed = bind_id(delete, user)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            if removed.rows_affected() == 0 {
                return Err(Error::NotFound {
                    what: "oauth account",
                });
            }
            Ok(())
        })
        .await
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        self.within_deadline(async {
            let rows = bind_id(sqlx::query(self.inner.sql.oauth_of_user.clone()), user)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            rows.iter().map(|row| self.oauth_from(row)).collect()
        })
        .await
    }

    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>> {
        let (provider, account_id) = (key.provider(), key.account_id());
        self.within_deadline(async {
            let query = sqlx::query(self.inner.sql.user_by_oauth.clone())
                .bind(provider)
                .bind(account_id);
            self.fetch_user(query).await
        })
        .await
    }
}

#[async_trait]
impl TokenBackend for PostgresStore {
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()> {
        self.within_deadline(async {
            let insert = sqlx::query(self.inner.sql.insert_token.clone()).bind(hash.as_str());
            bind_id(insert, token.user_id)
                .bind(token.created_at)
                .execute(&self.inner.pool)
                .await
                .map_err(on_violation(
                    Violation::ForeignKey,
                    Error::NotFound { what: "user" },
                ))?;
            Ok(())
        })
        .await
    }

    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>> {
        self.within_deadline(async {
            let row = sqlx::query(self.inner.sql.token_by_hash.clone())
                .bind(hash.as_str())
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            row.map(|row| {
                let user = self.read_id(&row, 0)?;
                Ok(AccessToken::new(user, row.try_get(1).map_err(pg_error)?))
            })
            .transpose()
        })
        .await
    }

    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool> {
        self.within_deadline(async {
            let deleted = sqlx::query(self.inner.sql.delete_token.clone())
                .bind(hash.as_str())
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(deleted.rows_affected() > 0)
        })
        .await
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        self.within_deadline(async {
            bind_id(sqlx::query(self.inner.sql.delete_user_tokens.clone()), user)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(())
        })
        .await
    }
}

/// What `storekit copy` reads and writes of users.
#[async_trait]
impl UserTransferBackend for PostgresStore {
    /// The hashes and records of `user`'s access tokens.
    async fn access_tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        self.within_deadline(async {
            let rows = bind_id(sqlx::query(self.inner.sql.tokens_of_user.clone()), user)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            rows.iter()
                .map(|row| {
                    Ok(StoredToken {
                        hash: row.try_get(0).map_err(pg_error)?,
                        token: AccessToken::new(user, row.try_get(1).map_err(pg_error)?),
                    })
                })
                .collect()
        })
        .await
    }

    /// Makes the stored user equal `bundle`, in one transaction.
    async fn import_user(&self, bundle: &UserBundle) -> Result<()> {
        let user = &bundle.user;
        let email_key = user.email_key()?;
        let sql = &self.inner.sql;
        self.within_deadline(async {
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            bind_id(sqlx::query(sql.import_user.clone()), user.id)
                .bind(&user.email)
                .bind(&email_key)
                .bind(&user.hashed_password)
                .bind(user.is_active)
                .bind(user.is_superuser)
                .bind(user.is_verified)
                .bind(user.created_at)
                .bind(user.updated_at)
                .bind(i64::try_from(user.version).unwrap_or(i64::MAX))
                .bind(serde_json::Value::Object(user.extra.clone()))
                .execute(&mut *tx)
                .await
                .map_err(on_violation(
                    Violation::Unique,
                    Error::AlreadyExists { what: "email" },
                ))?;
            // The user's accounts are replaced by the bundle's; one another user holds then
            // fails its insert, as in `add_oauth_account`.
            bind_id(sqlx::query(sql.delete_user_oauth.clone()), user.id)
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
            for account in &bundle.oauth_accounts {
                bind_id(sqlx::query(sql.insert_oauth.clone()), user.id)
                    .bind(&account.provider)
                    .bind(&account.account_id)
                    .bind(&account.account_email)
                    .bind(&account.access_token)
                    .bind(account.expires_at)
                    .bind(&account.refresh_token)
                    .bind(account.created_at)
                    .bind(account.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(on_violation(
                        Violation::Unique,
                        Error::AlreadyExists {
                            what: "oauth account",
                        },
                    ))?;
            }
            for token in &bundle.access_tokens {
                let insert = sqlx::query(sql.import_token.clone()).bind(&token.hash);
                bind_id(insert, user.id)
                    .bind(token.token.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
            if let UserId::Int(id) = user.id {
                sqlx::query(self.inner.own.raise_ids.clone())
                    .bind(id)
                    .bind(&self.inner.tables.users)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)
        })
        .await
    }
}
