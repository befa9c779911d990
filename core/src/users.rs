//! The user-side traits: users, their OAuth accounts and their access tokens.
//!
//! Each is a small `#[async_trait]` trait usable as `Arc<dyn ...>`; [`AuthStore`] combines
//! them for services that want one handle. What every implementation must do is written on each
//! method and checked by the `storekit-conformance` suite.
//!
//! # Implementing your own store
//!
//! Implement the traits of [`crate::backend`] ([`UserBackend`](crate::backend::UserBackend),
//! [`OAuthBackend`](crate::backend::OAuthBackend), [`TokenBackend`](crate::backend::TokenBackend))
//! and these come with them, so every backend refuses the same input the same way, hashes
//! tokens the same way and is traced the same way. Each trait's docs hold a complete backend
//! that passes the conformance suite (`examples/tiny_auth.rs`).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    AccessToken, IdKind, IssuedToken, NewOAuthAccount, NewUser, OAuthAccount, OAuthAccountPatch,
    Page, PageRequest, Result, User, UserId, UserPatch,
};

/// Users: create, read, update, delete and list.
///
/// # Implementing it
///
/// Implement the user traits of [`crate::backend`] and this trait comes with them. A complete
/// backend that passes the conformance suite (`examples/tiny_auth.rs`):
///
/// ```
#[doc = include_str!("../examples/tiny_auth.rs")]
/// ```
#[async_trait]
pub trait UserStore: Debug + Send + Sync + 'static {
    /// The kind of id this store assigns; ids of another kind are refused with
    /// [`crate::Error::InvalidInput`].
    fn id_kind(&self) -> IdKind;

    /// Creates a user.
    ///
    /// Fails with [`crate::Error::AlreadyExists`] (`what: "email"`) if another user has the same
    /// email ignoring case; the database decides atomically, so of many concurrent creates of
    /// one email exactly one succeeds.
    async fn create_user(&self, user: NewUser) -> Result<User>;

    /// The user with this id, if any.
    async fn get_user(&self, id: UserId) -> Result<Option<User>>;

    /// The user with this email, compared after [`crate::normalize_email`]; a malformed email
    /// is an error, not a miss. Reads the latest write (strongly consistent).
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>>;

    /// Applies `patch` and returns the updated user.
    ///
    /// Fails with [`crate::Error::NotFound`], with [`crate::Error::AlreadyExists`] if the new
    /// email is taken, and with [`crate::Error::Conflict`] if the patch names a version that is
    /// no longer the stored one. Without a version, concurrent patches are applied one after
    /// the other and none is lost.
    async fn update_user(&self, id: UserId, patch: UserPatch) -> Result<User>;

    /// Deletes the user, its OAuth accounts and its access tokens; [`crate::Error::NotFound`]
    /// if there is no such user.
    async fn delete_user(&self, id: UserId) -> Result<()>;

    /// One page of all users. Following `next` to the end yields every user that existed
    /// throughout the listing exactly once; the order is the backend's own.
    async fn list_users(&self, page: PageRequest) -> Result<Page<User>>;
}

/// OAuth accounts linked to users.
///
/// # Implementing it
///
/// Implement the user traits of [`crate::backend`] and this trait comes with them. A complete
/// backend that passes the conformance suite (`examples/tiny_auth.rs`):
///
/// ```
#[doc = include_str!("../examples/tiny_auth.rs")]
/// ```
#[async_trait]
pub trait OAuthAccountStore: Debug + Send + Sync + 'static {
    /// Links an account to a user. [`crate::Error::NotFound`] if the user does not exist;
    /// [`crate::Error::AlreadyExists`] (`what: "oauth account"`) if the (provider, account id)
    /// pair is linked to any user, decided atomically.
    async fn add_oauth_account(
        &self,
        user: UserId,
        account: NewOAuthAccount,
    ) -> Result<OAuthAccount>;

    /// Updates a user's link; [`crate::Error::NotFound`] if that user has no such link.
    async fn update_oauth_account(
        &self,
        user: UserId,
        provider: &str,
        account_id: &str,
        patch: OAuthAccountPatch,
    ) -> Result<OAuthAccount>;

    /// Removes a user's link; [`crate::Error::NotFound`] if that user has no such link.
    async fn remove_oauth_account(
        &self,
        user: UserId,
        provider: &str,
        account_id: &str,
    ) -> Result<()>;

    /// The user's links, ordered by provider then account id.
    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>>;

    /// The user that the (provider, account id) pair is linked to.
    async fn get_user_by_oauth_account(
        &self,
        provider: &str,
        account_id: &str,
    ) -> Result<Option<User>>;
}

/// Access tokens (login sessions). Only a hash of each token is stored.
///
/// # Implementing it
///
/// Implement the user traits of [`crate::backend`] and this trait comes with them. A complete
/// backend that passes the conformance suite (`examples/tiny_auth.rs`):
///
/// ```
#[doc = include_str!("../examples/tiny_auth.rs")]
/// ```
#[async_trait]
pub trait AccessTokenStore: Debug + Send + Sync + 'static {
    /// Issues a new token for the user; [`crate::Error::NotFound`] if there is no such user.
    async fn create_access_token(&self, user: UserId) -> Result<IssuedToken>;

    /// The token's record, if it exists and, with `max_age`, was issued less than `max_age`
    /// ago.
    async fn get_access_token(
        &self,
        token: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<AccessToken>>;

    /// Deletes a token (logout); true if it existed.
    async fn delete_access_token(&self, token: &str) -> Result<bool>;

    /// Deletes every token of the user (log out everywhere).
    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()>;
}

/// Users, OAuth accounts and access tokens in one handle, as `Arc<dyn AuthStore>`.
pub trait AuthStore: UserStore + OAuthAccountStore + AccessTokenStore {}

impl<T: UserStore + OAuthAccountStore + AccessTokenStore + ?Sized> AuthStore for T {}

/// The trait object users pass around: `Arc<DynAuthStore>`.
pub type DynAuthStore = dyn AuthStore;
