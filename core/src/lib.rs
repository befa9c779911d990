//! The core of storekit: the store traits, their types, the one error type, the validation
//! rules every backend shares, and [`MemoryStore`], the in-memory reference backend.
//!
//! Applications use [`AuthStore`] (users, OAuth accounts, access tokens) and [`KvStore`]
//! (namespaced values with TTLs) as `Arc<dyn ...>`, and pick a backend at start-up. Backends
//! implement the traits using the helpers here, so that input rules, email normalisation,
//! versioning and token hashing are the same everywhere.

pub mod error;
mod forward;
pub mod kv;
pub mod memory;
pub mod time;
pub mod token;
pub mod user;
pub mod users;
pub mod validate;

pub use async_trait::async_trait;
pub use error::{BoxError, Error, Result};
pub use kv::{DynKvStore, KvStore, KvStoreExt};
pub use memory::MemoryStore;
pub use time::{now, truncate};
pub use user::{
    AccessToken, Extra, IdKind, IssuedToken, NewOAuthAccount, NewUser, OAuthAccount,
    OAuthAccountPatch, Page, PageRequest, User, UserDraft, UserId, UserPatch, check_oauth_key,
};
pub use users::{AccessTokenStore, AuthStore, DynAuthStore, OAuthAccountStore, UserStore};
pub use validate::{LIMITS, Limits, normalize_email};

/// Re-exported so backends and tests name the same versions.
pub use {chrono, futures, serde_json, uuid};
