//! An [`axum-login`](https://docs.rs/axum-login) backend on storekit's user store (feature
//! `axum-login`, which includes `tower-sessions`): log in with an email and a password, keep the
//! user in a session held by [`crate::sessions::KvSessionStore`], on any backend.
//!
//! ```no_run
//! use axum_login::AuthManagerLayerBuilder;
//! use storekit::login::AuthBackend;
//! use storekit::sessions::KvSessionStore;
//! use tower_sessions::SessionManagerLayer;
//!
//! # async fn run() -> storekit::Result<()> {
//! let stores = storekit::connect("sqlite://app.db").await?;
//! stores.migrate().await?;
//! let sessions = SessionManagerLayer::new(KvSessionStore::new(stores.kv()));
//! let backend = AuthBackend::new(stores.auth());                 // argon2 by default
//! let auth = AuthManagerLayerBuilder::new(backend, sessions).build();
//! // Router::new()...layer(auth); handlers take `axum_login::AuthSession<AuthBackend>`.
//! # let _ = auth; Ok(()) }
//! ```
//!
//! What it promises:
//! - [`AuthnBackend::authenticate`] finds the user by email (case-insensitively, as
//!   [`crate::UserStore::get_user_by_email`] does) and checks the password against the stored
//!   hash with the backend's [`PasswordHasher`] ([`Argon2Hasher`] unless another is given), on
//!   the blocking pool. An unknown email costs the same check against a dummy hash, so the
//!   response time does not tell which emails have accounts. A user whose `is_active` is false
//!   never logs in.
//! - The session auth hash is a SHA-256 digest of the stored password hash: a password change
//!   (a new hash) ends every other session of the user at its next request, and the session
//!   store never holds the password hash itself. After changing the password, log the current
//!   session in again with the updated user to keep it.
//! - [`AuthnBackend::get_user`] reads the user by id; a deleted or deactivated user is logged
//!   out.
//! - Permissions ([`AuthzBackend`]), when [`AuthBackend::with_permissions_field`] names a field
//!   of `extra` holding an array of strings; superusers have no implicit permissions.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use axum_login::{AuthUser, AuthnBackend, AuthzBackend};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use storekit_core::{DynAuthStore, Error, Result, User, UserId, serde_json};

/// Hashes and checks passwords for [`AuthBackend`]. Both are CPU-heavy by design and are
/// called on Tokio's blocking pool.
pub trait PasswordHasher: std::fmt::Debug + Send + Sync + 'static {
    /// The hash to store for `password` (with its own salt and parameters, e.g. a PHC string).
    fn hash(&self, password: &str) -> Result<String>;

    /// True if `password` matches `hash`. A hash this hasher cannot read is an error.
    fn verify(&self, password: &str, hash: &str) -> Result<bool>;
}

/// Argon2id with the `argon2` crate's default parameters and a random salt, as a PHC string
/// (`$argon2id$v=19$…`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<String> {
        use argon2::password_hash::PasswordHasher as _;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::backend("argon2", e))
    }

    fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        use argon2::password_hash::{self, PasswordVerifier as _};
        match argon2::Argon2::default().verify_password(password.as_bytes(), hash) {
            Ok(()) => Ok(true),
            Err(password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(Error::backend("argon2", e)),
        }
    }
}

/// What a user logs in with. Deserializes from a form or JSON (`email`, `password`); its
/// `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// The account's email, in any letter case.
    pub email: String,
    /// The password as typed.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A logged-in user: the stored [`User`] and its session auth hash.
#[derive(Clone)]
pub struct LoginUser {
    user: User,
    /// SHA-256 of the password hash (see the module docs).
    session_auth_hash: [u8; 32],
}

impl LoginUser {
    /// The user as stored.
    #[must_use]
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The user as stored, taken out.
    #[must_use]
    pub fn into_user(self) -> User {
        self.user
    }
}

impl From<User> for LoginUser {
    fn from(user: User) -> Self {
        let session_auth_hash = Sha256::digest(user.hashed_password.as_bytes()).into();
        Self {
            user,
            session_auth_hash,
        }
    }
}

/// The user's own `Debug`, which leaves the password hash out; the digest is left out too.
impl std::fmt::Debug for LoginUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AuthUser for LoginUser {
    type Id = UserId;

    fn id(&self) -> UserId {
        self.user.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.session_auth_hash
    }
}

/// The `axum-login` backend on an [`crate::AuthStore`]. Cheap to clone.
#[derive(Clone)]
pub struct AuthBackend {
    users: Arc<DynAuthStore>,
    hasher: Arc<dyn PasswordHasher>,
    permissions_field: Option<Arc<str>>,
    /// A hash of no one's password, made once by `hasher`, checked for unknown emails.
    dummy_hash: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for AuthBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthBackend")
            .field("users", &self.users)
            .field("hasher", &self.hasher)
            .field("permissions_field", &self.permissions_field)
            .finish_non_exhaustive()
    }
}

impl AuthBackend {
    /// Users of `users`, passwords checked with [`Argon2Hasher`].
    #[must_use]
    pub fn new(users: Arc<DynAuthStore>) -> Self {
        Self::with_hasher(users, Argon2Hasher)
    }

    /// Users of `users`, passwords hashed and checked with `hasher`.
    #[must_use]
    pub fn with_hasher(users: Arc<DynAuthStore>, hasher: impl PasswordHasher) -> Self {
        Self {
            users,
            hasher: Arc::new(hasher),
            permissions_field: None,
            dummy_hash: Arc::new(OnceLock::new()),
        }
    }

    /// Reads each user's permissions from `extra[field]`, an array of strings (absent: none).
    #[must_use]
    pub fn with_permissions_field(mut self, field: impl Into<String>) -> Self {
        self.permissions_field = Some(field.into().into());
        self
    }

    /// The user store.
    #[must_use]
    pub fn users(&self) -> &Arc<DynAuthStore> {
        &self.users
    }

    /// Hashes `password` with the backend's hasher on the blocking pool, for
    /// [`crate::NewUser::new`] or [`crate::UserPatch::hashed_password`].
    pub async fn hash_password(&self, password: &str) -> Result<String> {
        let (hasher, password) = (self.hasher.clone(), password.to_owned());
        blocking(move || hasher.hash(&password)).await
    }

    /// True if `password` matches `hash`; without a hash (unknown email), a dummy hash is
    /// checked instead and the answer is false.
    async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        let (hasher, dummy) = (self.hasher.clone(), self.dummy_hash.clone());
        blocking(move || match hash {
            Some(hash) => hasher.verify(&password, &hash),
            None => {
                // Made with the hasher's own parameters, so it costs what a real check costs.
                // Should hashing fail, the check below fails fast; the answer is false anyway.
                let dummy =
                    dummy.get_or_init(|| hasher.hash("not anyone's password").unwrap_or_default());
                let _ = hasher.verify(&password, dummy);
                Ok(false)
            }
        })
        .await
    }
}

/// Runs CPU-heavy work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::backend("password hashing", e))?
}

impl AuthnBackend for AuthBackend {
    type User = LoginUser;
    type Credentials = Credentials;
    type Error = Error;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<LoginUser>> {
        let user = match self.users.get_user_by_email(&creds.email).await {
            Ok(user) => user,
            // Not an email at all: no such account, as far as the caller is told.
            Err(Error::InvalidInput { .. } | Error::ValueTooLarge { .. }) => None,
            Err(e) => return Err(e),
        };
        let hash = user.as_ref().map(|user| user.hashed_password.clone());
        let matches = self.verify(creds.password, hash).await?;
        Ok(user
            .filter(|user| matches && user.is_active)
            .map(LoginUser::from))
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<LoginUser>> {
        let user = self.users.get_user(*id).await?;
        Ok(user.filter(|user| user.is_active).map(LoginUser::from))
    }
}

impl AuthzBackend for AuthBackend {
    type Permission = String;

    async fn get_user_permissions(&self, user: &LoginUser) -> Result<HashSet<String>> {
        let Some(field) = &self.permissions_field else {
            return Ok(HashSet::new());
        };
        let Some(value) = user.user.extra.get(&**field) else {
            return Ok(HashSet::new());
        };
        let names: Vec<String> = serde_json::from_value(value.clone()).map_err(|e| {
            Error::invalid(
                "extra",
                format!("{field:?} is not an array of strings: {e}"),
            )
        })?;
        Ok(names.into_iter().collect())
    }
}
