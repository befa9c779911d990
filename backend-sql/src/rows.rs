//! Turning rows into storekit types, the same way for both dialects.

use storekit_core::chrono::{DateTime, Utc};
use storekit_core::{Error, OAuthAccount, Result, User, UserId};

/// A users row as both dialects read it.
#[derive(Debug)]
pub(crate) struct UserRow {
    pub(crate) id: UserId,
    pub(crate) email: String,
    pub(crate) hashed_password: String,
    pub(crate) is_active: bool,
    pub(crate) is_superuser: bool,
    pub(crate) is_verified: bool,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) version: i64,
    pub(crate) extra: serde_json::Value,
}

impl UserRow {
    pub(crate) fn into_user(self, backend: &'static str) -> Result<User> {
        let serde_json::Value::Object(extra) = self.extra else {
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
            created_at: self.created_at,
            updated_at: self.updated_at,
            version,
            extra,
        })
    }
}

/// An oauth_accounts row.
#[derive(Debug)]
pub(crate) struct OAuthRow {
    pub(crate) user_id: UserId,
    pub(crate) provider: String,
    pub(crate) account_id: String,
    pub(crate) account_email: String,
    pub(crate) access_token: String,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) refresh_token: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl OAuthRow {
    pub(crate) fn into_account(self) -> OAuthAccount {
        OAuthAccount {
            user_id: self.user_id,
            provider: self.provider,
            account_id: self.account_id,
            account_email: self.account_email,
            access_token: self.access_token,
            expires_at: self.expires_at,
            refresh_token: self.refresh_token,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}
