//! Turning rows into storekit types, the same way for both dialects.

use storekit_core::chrono::{DateTime, Utc};
use storekit_core::{Error, OAuthAccount, Result, User, UserId};

/// A users row as both dialects read it: its timestamps `Time` and extra fields `Extra` as
/// the driver decodes them (PostgreSQL's driver decodes them itself; SQLite stores
/// microseconds and JSON text, see [`UserRow::decode`]).
#[derive(Debug)]
pub(crate) struct UserRow<Time = DateTime<Utc>, Extra = serde_json::Value> {
    pub(crate) id: UserId,
    pub(crate) email: String,
    pub(crate) hashed_password: String,
    pub(crate) is_active: bool,
    pub(crate) is_superuser: bool,
    pub(crate) is_verified: bool,
    pub(crate) created_at: Time,
    pub(crate) updated_at: Time,
    pub(crate) version: i64,
    pub(crate) extra: Extra,
}

impl<Time, Extra> UserRow<Time, Extra> {
    /// The user, its timestamps and extra fields turned from their stored form by `time` and
    /// `extra`.
    pub(crate) fn decode(
        self,
        backend: &'static str,
        time: impl Fn(Time) -> Result<DateTime<Utc>>,
        extra: impl FnOnce(Extra) -> Result<serde_json::Value>,
    ) -> Result<User> {
        let serde_json::Value::Object(extra) = extra(self.extra)? else {
            return Err(Error::backend(
                backend,
                "a stored user's extra fields are not an object",
            ));
        };
        let version = u64::try_from(self.version)
            .map_err(|_| Error::backend(backend, "a stored user has a negative version"))?;
        Ok(User {
            id: self.id,
            email: self.email,
            hashed_password: self.hashed_password,
            is_active: self.is_active,
            is_superuser: self.is_superuser,
            is_verified: self.is_verified,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
            version,
            extra,
        })
    }
}

/// An oauth_accounts row, its timestamps `Time` as the driver decodes them (see
/// [`UserRow`]).
#[derive(Debug)]
pub(crate) struct OAuthRow<Time = DateTime<Utc>> {
    pub(crate) user_id: UserId,
    pub(crate) provider: String,
    pub(crate) account_id: String,
    pub(crate) account_email: String,
    pub(crate) access_token: String,
    pub(crate) expires_at: Option<Time>,
    pub(crate) refresh_token: Option<String>,
    pub(crate) created_at: Time,
    pub(crate) updated_at: Time,
}

impl<Time> OAuthRow<Time> {
    /// The account, its timestamps turned from their stored form by `time`.
    pub(crate) fn decode(
        self,
        time: impl Fn(Time) -> Result<DateTime<Utc>>,
    ) -> Result<OAuthAccount> {
        Ok(OAuthAccount {
            user_id: self.user_id,
            provider: self.provider,
            account_id: self.account_id,
            account_email: self.account_email,
            access_token: self.access_token,
            expires_at: self.expires_at.map(&time).transpose()?,
            refresh_token: self.refresh_token,
            created_at: time(self.created_at)?,
            updated_at: time(self.updated_at)?,
        })
    }
}
