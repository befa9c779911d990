//! `Arc<S>` is a store whenever `S` is, so code generic over a store accepts a shared one
//! (including `Arc<dyn KvStore>`).
//!
//! `Box<S>` is not: every backend gets the public traits from a blanket implementation over
//! the traits of [`crate::backend`], and a downstream crate may implement those for a
//! `Box<TheirType>`, which would give it two implementations. Share a store with `Arc`.
//!
//! The impls come from one macro that denies `clippy::missing_trait_methods`, so a method added
//! to a trait cannot be forgotten here, where a default would silently shadow the real one.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;

use crate::kv::TimedValue;

use crate::{
    AccessToken, AccessTokenStore, IdKind, IssuedToken, KvStore, NewOAuthAccount, NewUser,
    OAuthAccount, OAuthAccountPatch, OAuthAccountStore, Page, PageRequest, Result, User, UserId,
    UserPatch, UserStore,
};

macro_rules! forward {
    ($($wrapper:ident),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: UserStore + ?Sized> UserStore for $wrapper<S> {
            fn id_kind(&self) -> IdKind {
                (**self).id_kind()
            }
            async fn create_user(&self, user: NewUser) -> Result<User> {
                (**self).create_user(user).await
            }
            async fn get_user(&self, id: UserId) -> Result<Option<User>> {
                (**self).get_user(id).await
            }
            async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
                (**self).get_user_by_email(email).await
            }
            async fn update_user(&self, id: UserId, patch: UserPatch) -> Result<User> {
                (**self).update_user(id, patch).await
            }
            async fn delete_user(&self, id: UserId) -> Result<()> {
                (**self).delete_user(id).await
            }
            async fn list_users(&self, page: PageRequest) -> Result<Page<User>> {
                (**self).list_users(page).await
            }
        }

        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: OAuthAccountStore + ?Sized> OAuthAccountStore for $wrapper<S> {
            async fn add_oauth_account(
                &self,
                user: UserId,
                account: NewOAuthAccount,
            ) -> Result<OAuthAccount> {
                (**self).add_oauth_account(user, account).await
            }
            async fn update_oauth_account(
                &self,
                user: UserId,
                provider: &str,
                account_id: &str,
                patch: OAuthAccountPatch,
            ) -> Result<OAuthAccount> {
                (**self).update_oauth_account(user, provider, account_id, patch).await
            }
            async fn remove_oauth_account(
                &self,
                user: UserId,
                provider: &str,
                account_id: &str,
            ) -> Result<()> {
                (**self).remove_oauth_account(user, provider, account_id).await
            }
            async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
                (**self).oauth_accounts(user).await
            }
            async fn get_user_by_oauth_account(
                &self,
                provider: &str,
                account_id: &str,
            ) -> Result<Option<User>> {
                (**self).get_user_by_oauth_account(provider, account_id).await
            }
        }

        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: AccessTokenStore + ?Sized> AccessTokenStore for $wrapper<S> {
            async fn create_access_token(&self, user: UserId) -> Result<IssuedToken> {
                (**self).create_access_token(user).await
            }
            async fn get_access_token(
                &self,
                token: &str,
                max_age: Option<Duration>,
            ) -> Result<Option<AccessToken>> {
                (**self).get_access_token(token, max_age).await
            }
            async fn delete_access_token(&self, token: &str) -> Result<bool> {
                (**self).delete_access_token(token).await
            }
            async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
                (**self).delete_access_tokens_for_user(user).await
            }
        }

        #[deny(clippy::missing_trait_methods)]
        #[async_trait::async_trait]
        impl<S: KvStore + ?Sized> KvStore for $wrapper<S> {
            async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
                (**self).get(namespace, key).await
            }
            async fn set(
                &self,
                namespace: &str,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
            ) -> Result<()> {
                (**self).set(namespace, key, value, ttl).await
            }
            async fn set_json_encoded(
                &self,
                namespace: &str,
                key: &str,
                json: &[u8],
                ttl: Option<Duration>,
            ) -> Result<()> {
                (**self).set_json_encoded(namespace, key, json, ttl).await
            }
            async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
                (**self).delete(namespace, key).await
            }
            async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
                (**self).contains(namespace, key).await
            }
            async fn get_many(
                &self,
                namespace: &str,
                keys: &[&str],
            ) -> Result<Vec<Option<Vec<u8>>>> {
                (**self).get_many(namespace, keys).await
            }
            async fn set_many(
                &self,
                namespace: &str,
                items: &[(&str, &[u8])],
                ttl: Option<Duration>,
            ) -> Result<()> {
                (**self).set_many(namespace, items, ttl).await
            }
            async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
                (**self).delete_many(namespace, keys).await
            }
            fn keys(&self, namespace: &str, prefix: &str) -> BoxStream<'static, Result<String>> {
                (**self).keys(namespace, prefix)
            }
            async fn clear(&self, namespace: &str) -> Result<()> {
                (**self).clear(namespace).await
            }
            async fn set_if_absent(
                &self,
                namespace: &str,
                key: &str,
                value: &[u8],
                ttl: Option<Duration>,
            ) -> Result<bool> {
                (**self).set_if_absent(namespace, key, value, ttl).await
            }
            async fn compare_and_swap(
                &self,
                namespace: &str,
                key: &str,
                expected: Option<&[u8]>,
                new: &[u8],
                ttl: Option<Duration>,
            ) -> Result<bool> {
                (**self).compare_and_swap(namespace, key, expected, new, ttl).await
            }
            async fn increment(
                &self,
                namespace: &str,
                key: &str,
                delta: i64,
                ttl: Option<Duration>,
            ) -> Result<i64> {
                (**self).increment(namespace, key, delta, ttl).await
            }
            async fn purge_expired(&self) -> Result<u64> {
                (**self).purge_expired().await
            }
            async fn set_ttl(
                &self,
                namespace: &str,
                key: &str,
                ttl: Option<Duration>,
            ) -> Result<bool> {
                (**self).set_ttl(namespace, key, ttl).await
            }
            async fn get_with_ttl(
                &self,
                namespace: &str,
                key: &str,
            ) -> Result<Option<TimedValue>> {
                (**self).get_with_ttl(namespace, key).await
            }
            async fn get_stale(
                &self,
                namespace: &str,
                key: &str,
                max_stale: Duration,
            ) -> Result<Option<TimedValue>> {
                (**self).get_stale(namespace, key, max_stale).await
            }
            fn keep_expired(&self) -> Duration {
                (**self).keep_expired()
            }
        }
    )*};
}

forward!(Arc);
