//! The core of storekit: the store traits, their types, the one error type, the validation
//! rules every backend shares, and [`MemoryStore`], the in-memory reference backend.
//!
//! Applications use [`AuthStore`] (users, OAuth accounts, access tokens), [`KvStore`]
//! (namespaced values with TTLs) and [`TableStore`] (tables of records) as `Arc<dyn ...>`, and
//! pick a backend at start-up; [`Store`] is all of them at once, with [`admin::Admin`]. Backends
//! implement the narrower traits of [`backend`], and get the public ones from this crate, which
//! applies the input rules, email normalisation, expiry and token hashing once for all of them,
//! and opens one `tracing` span per call (see [`trace`]).

pub mod admin;
pub mod backend;
pub mod error;
mod forward;
pub mod kv;
mod layer;
pub mod memory;
pub mod store;
pub mod table;
pub mod time;
pub mod token;
pub mod trace;
pub mod transfer;
pub mod user;
pub mod users;
pub mod validate;

pub use async_trait::async_trait;
pub use error::{BoxError, Context, Error, Result};
pub use kv::{DynKvStore, KvStore, KvStoreExt, TimedValue, Ttl};
pub use memory::MemoryStore;
pub use store::{DynStore, Store};
pub use table::{DynTableStore, Table, TableSchema, TableStore};
pub use time::{now, truncate};
pub use transfer::TransferStore;
pub use user::{
    AccessToken, Extra, IdKind, IssuedToken, NewOAuthAccount, NewUser, OAuthAccount,
    OAuthAccountPatch, Page, PageRequest, User, UserDraft, UserId, UserPatch, check_oauth_key,
};
pub use users::{AccessTokenStore, AuthStore, DynAuthStore, OAuthAccountStore, UserStore};
pub use validate::{LIMITS, Limits, normalize_email};

/// The environment variable every backend's `from_env` reads its URL from.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// The URL in [`DATABASE_URL`], for the backends' `from_env` constructors.
pub fn database_url_from_env() -> Result<String> {
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Err(Error::invalid("url", format!("{DATABASE_URL} is not set"))),
    }
}

/// Re-exported so backends and tests name the same versions.
pub use {chrono, futures, serde_json, uuid};
