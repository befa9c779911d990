//! The public store traits, implemented once for every backend: the rules, the span and the
//! error context of each call, around the backend's own method (see [`crate::backend`]).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};

use crate::backend::{
    EmailKey, Expiry, Items, Key, Keys, KvBackend, Namespace, OAuthBackend, OAuthKey, TokenBackend,
    UserBackend, UserPageRequest,
};
use crate::kv::{TimedValue, Ttl};
use crate::trace::{Call, call_span};
use crate::{
    AccessToken, AccessTokenStore, Error, IdKind, IssuedToken, KvStore, NewOAuthAccount, NewUser,
    OAuthAccount, OAuthAccountPatch, OAuthAccountStore, Page, PageRequest, Result, User, UserId,
    UserPatch, UserStore, now, token, validate,
};

const USERS: &str = "users";
const OAUTH_ACCOUNTS: &str = "oauth_accounts";
const ACCESS_TOKENS: &str = "access_tokens";

/// Opens the call's span: `call!(backend, "op", collection)`.
macro_rules! call {
    ($backend:expr, $op:literal, $collection:expr) => {{
        let system = $backend.system();
        let span = call_span!($backend.name(), system, $op, $collection);
        Call::new(span, system, $op)
    }};
}

fn about_key(namespace: &str, key: &str) -> String {
    format!("namespace {namespace:?}, key {key:?}")
}

fn about_namespace(namespace: &str) -> String {
    format!("namespace {namespace:?}")
}

fn about_user(user: UserId) -> String {
    format!("user {user}")
}

fn about_oauth(provider: &str, account_id: &str) -> String {
    format!("provider {provider:?}, account {account_id:?}")
}

fn one(found: bool) -> usize {
    usize::from(found)
}

#[async_trait]
impl<B: KvBackend> KvStore for B {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        call!(self, "get", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    KvBackend::get(self, ns, k).await
                },
                |found| Some(one(found.is_some())),
                || about_key(namespace, key),
            )
            .await
    }

    async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        call!(self, "set", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    validate::check_value(value)?;
                    KvBackend::set(self, ns, k, value, Expiry::from_ttl(ttl)?).await
                },
                |()| None,
                || about_key(namespace, key),
            )
            .await
    }

    async fn set_json_encoded(
        &self,
        namespace: &str,
        key: &str,
        json: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        call!(self, "set_json", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    validate::check_value(json)?;
                    KvBackend::set_json(self, ns, k, json, Expiry::from_ttl(ttl)?).await
                },
                |()| None,
                || about_key(namespace, key),
            )
            .await
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        call!(self, "delete", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    KvBackend::delete(self, ns, k).await
                },
                |deleted| Some(one(*deleted)),
                || about_key(namespace, key),
            )
            .await
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
        call!(self, "contains", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    KvBackend::contains(self, ns, k).await
                },
                |found| Some(one(*found)),
                || about_key(namespace, key),
            )
            .await
    }

    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        call!(self, "get_many", namespace)
            .batch(keys.len())
            .run(
                async {
                    let (ns, keys) = (Namespace::checked(namespace)?, Keys::checked(keys)?);
                    KvBackend::get_many(self, ns, keys).await
                },
                |values| Some(values.iter().flatten().count()),
                || about_namespace(namespace),
            )
            .await
    }

    async fn set_many(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        ttl: Option<Duration>,
    ) -> Result<()> {
        call!(self, "set_many", namespace)
            .batch(items.len())
            .run(
                async {
                    let (ns, items) = (Namespace::checked(namespace)?, Items::checked(items)?);
                    KvBackend::set_many(self, ns, items, Expiry::from_ttl(ttl)?).await
                },
                |()| None,
                || about_namespace(namespace),
            )
            .await
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
        call!(self, "delete_many", namespace)
            .batch(keys.len())
            .run(
                async {
                    let (ns, keys) = (Namespace::checked(namespace)?, Keys::checked(keys)?);
                    KvBackend::delete_many(self, ns, keys).await
                },
                |()| None,
                || about_namespace(namespace),
            )
            .await
    }

    fn keys(&self, namespace: &str, prefix: &str) -> BoxStream<'static, Result<String>> {
        let call = call!(self, "keys", namespace);
        let checked = Namespace::checked(namespace)
            .and_then(|ns| validate::check_prefix(prefix).map(|()| ns));
        let listing = match checked {
            Ok(ns) => KvBackend::keys(self, ns, prefix),
            Err(e) => stream::once(async { Err(e) }).boxed(),
        };
        call.stream(listing, about_namespace(namespace))
    }

    async fn clear(&self, namespace: &str) -> Result<()> {
        call!(self, "clear", namespace)
            .run(
                async { KvBackend::clear(self, Namespace::checked(namespace)?).await },
                |()| None,
                || about_namespace(namespace),
            )
            .await
    }

    async fn set_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        call!(self, "set_if_absent", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    validate::check_value(value)?;
                    KvBackend::set_if_absent(self, ns, k, value, Expiry::from_ttl(ttl)?).await
                },
                |stored| Some(one(*stored)),
                || about_key(namespace, key),
            )
            .await
    }

    async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        call!(self, "compare_and_swap", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    validate::check_value(new)?;
                    let expiry = Expiry::from_ttl(ttl)?;
                    match expected {
                        // Swapping from "absent" is storing if absent, on every backend.
                        None => KvBackend::set_if_absent(self, ns, k, new, expiry).await,
                        Some(expected) => {
                            KvBackend::compare_and_swap(self, ns, k, expected, new, expiry).await
                        }
                    }
                },
                |swapped| Some(one(*swapped)),
                || about_key(namespace, key),
            )
            .await
    }

    async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        call!(self, "increment", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    KvBackend::increment(self, ns, k, delta, Expiry::from_ttl(ttl)?).await
                },
                |_| None,
                || about_key(namespace, key),
            )
            .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        call!(self, "purge_expired", "")
            .run(
                KvBackend::purge_expired(self),
                |purged| usize::try_from(*purged).ok(),
                String::new,
            )
            .await
    }

    async fn set_ttl(&self, namespace: &str, key: &str, ttl: Option<Duration>) -> Result<bool> {
        call!(self, "set_ttl", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    KvBackend::set_expiry(self, ns, k, Expiry::from_ttl(ttl)?).await
                },
                |changed| Some(one(*changed)),
                || about_key(namespace, key),
            )
            .await
    }

    async fn get_with_ttl(&self, namespace: &str, key: &str) -> Result<Option<TimedValue>> {
        call!(self, "get_with_ttl", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    let stored = KvBackend::get_stored(self, ns, k).await?;
                    Ok(timed(stored, Duration::ZERO))
                },
                |found| Some(one(found.is_some())),
                || about_key(namespace, key),
            )
            .await
    }

    async fn get_stale(
        &self,
        namespace: &str,
        key: &str,
        max_stale: Duration,
    ) -> Result<Option<TimedValue>> {
        call!(self, "get_stale", namespace)
            .run(
                async {
                    let (ns, k) = (Namespace::checked(namespace)?, Key::checked(key)?);
                    let kept = KvBackend::keep_expired(self);
                    if max_stale > kept {
                        return Err(Error::invalid(
                            "max_stale",
                            format!(
                                "{max_stale:?} is longer than this store keeps expired items \
                                 ({kept:?}, its config's keep_expired)"
                            ),
                        ));
                    }
                    let stored = KvBackend::get_stored(self, ns, k).await?;
                    Ok(timed(stored, max_stale))
                },
                |found| Some(one(found.is_some())),
                || about_key(namespace, key),
            )
            .await
    }

    fn keep_expired(&self) -> Duration {
        KvBackend::keep_expired(self)
    }
}

/// A stored item as [`KvStore::get_stale`] returns it: live, or expired less than
/// `max_stale` ago (zero: live only).
fn timed(stored: Option<(Vec<u8>, Option<i64>)>, max_stale: Duration) -> Option<TimedValue> {
    let (value, expires_at) = stored?;
    let ttl = Ttl::at(expires_at, crate::time::now_millis());
    match ttl {
        Ttl::Expired(ago) if ago >= max_stale => None,
        _ => Some(TimedValue::new(value, ttl)),
    }
}

/// Fails unless `id` is of the store's kind, so a mixed-up id is an error, not a miss.
fn own_kind<B: UserBackend + ?Sized>(backend: &B, id: UserId) -> Result<UserId> {
    id.expect_kind(UserBackend::id_kind(backend))?;
    Ok(id)
}

#[async_trait]
impl<B: UserBackend> UserStore for B {
    fn id_kind(&self) -> IdKind {
        UserBackend::id_kind(self)
    }

    async fn create_user(&self, user: NewUser) -> Result<User> {
        call!(self, "create_user", USERS)
            .run(
                async { UserBackend::create_user(self, user.into_draft()?).await },
                |_| Some(1),
                String::new,
            )
            .await
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        call!(self, "get_user", USERS)
            .run(
                async { UserBackend::get_user(self, own_kind(self, id)?).await },
                |found| Some(one(found.is_some())),
                || about_user(id),
            )
            .await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        call!(self, "get_user_by_email", USERS)
            .run(
                async {
                    let key = validate::normalize_email(email)?;
                    UserBackend::get_user_by_email(self, EmailKey::new(&key)).await
                },
                |found| Some(one(found.is_some())),
                // Never the email: it is personal data, and errors end up in logs.
                String::new,
            )
            .await
    }

    async fn update_user(&self, id: UserId, patch: UserPatch) -> Result<User> {
        call!(self, "update_user", USERS)
            .run(
                async {
                    patch.check()?;
                    UserBackend::update_user(self, own_kind(self, id)?, &patch).await
                },
                |_| Some(1),
                || about_user(id),
            )
            .await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        call!(self, "delete_user", USERS)
            .run(
                async { UserBackend::delete_user(self, own_kind(self, id)?).await },
                |()| None,
                || about_user(id),
            )
            .await
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>> {
        call!(self, "list_users", USERS)
            .run(
                async {
                    page.check()?;
                    let after = page.user_cursor(UserBackend::id_kind(self))?;
                    let request = UserPageRequest {
                        limit: page.limit,
                        after,
                    };
                    UserBackend::list_users(self, request).await
                },
                |page| Some(page.items.len()),
                String::new,
            )
            .await
    }
}

#[async_trait]
impl<B: OAuthBackend> OAuthAccountStore for B {
    async fn add_oauth_account(
        &self,
        user: UserId,
        account: NewOAuthAccount,
    ) -> Result<OAuthAccount> {
        call!(self, "add_oauth_account", OAUTH_ACCOUNTS)
            .run(
                async {
                    let account = account.into_account(own_kind(self, user)?)?;
                    match OAuthBackend::add_oauth_account(self, account).await {
                        // The rule when both are wrong: a missing user is reported before a
                        // taken account, on every backend, whichever the database checks first.
                        Err(Error::AlreadyExists { .. })
                            if UserBackend::get_user(self, user).await?.is_none() =>
                        {
                            Err(Error::NotFound { what: "user" })
                        }
                        linked => linked,
                    }
                },
                |_| Some(1),
                || about_user(user),
            )
            .await
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        provider: &str,
        account_id: &str,
        patch: OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        call!(self, "update_oauth_account", OAUTH_ACCOUNTS)
            .run(
                async {
                    let user = own_kind(self, user)?;
                    let key = OAuthKey::checked(provider, account_id)?;
                    patch.check()?;
                    OAuthBackend::update_oauth_account(self, user, key, &patch).await
                },
                |_| Some(1),
                || about_oauth(provider, account_id),
            )
            .await
    }

    async fn remove_oauth_account(
        &self,
        user: UserId,
        provider: &str,
        account_id: &str,
    ) -> Result<()> {
        call!(self, "remove_oauth_account", OAUTH_ACCOUNTS)
            .run(
                async {
                    let user = own_kind(self, user)?;
                    let key = OAuthKey::checked(provider, account_id)?;
                    OAuthBackend::remove_oauth_account(self, user, key).await
                },
                |()| None,
                || about_oauth(provider, account_id),
            )
            .await
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        call!(self, "oauth_accounts", OAUTH_ACCOUNTS)
            .run(
                async { OAuthBackend::oauth_accounts(self, own_kind(self, user)?).await },
                |accounts| Some(accounts.len()),
                || about_user(user),
            )
            .await
    }

    async fn get_user_by_oauth_account(
        &self,
        provider: &str,
        account_id: &str,
    ) -> Result<Option<User>> {
        call!(self, "get_user_by_oauth_account", OAUTH_ACCOUNTS)
            .run(
                async {
                    let key = OAuthKey::checked(provider, account_id)?;
                    OAuthBackend::get_user_by_oauth_account(self, key).await
                },
                |found| Some(one(found.is_some())),
                || about_oauth(provider, account_id),
            )
            .await
    }
}

#[async_trait]
impl<B: TokenBackend> AccessTokenStore for B {
    async fn create_access_token(&self, user: UserId) -> Result<IssuedToken> {
        call!(self, "create_access_token", ACCESS_TOKENS)
            .run(
                async {
                    let info = AccessToken::new(own_kind(self, user)?, now());
                    let secret = token::generate()?;
                    let hash = token::hash(&secret);
                    TokenBackend::insert_access_token(
                        self,
                        crate::backend::TokenHash::new(&hash),
                        &info,
                    )
                    .await?;
                    Ok(IssuedToken::new(secret, info))
                },
                |_| Some(1),
                || about_user(user),
            )
            .await
    }

    async fn get_access_token(
        &self,
        token: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<AccessToken>> {
        call!(self, "get_access_token", ACCESS_TOKENS)
            .run(
                async {
                    let hash = token::hash(token);
                    let found =
                        TokenBackend::get_access_token(self, crate::backend::TokenHash::new(&hash))
                            .await?;
                    Ok(found.filter(|info| crate::time::is_younger_than(info.created_at, max_age)))
                },
                |found| Some(one(found.is_some())),
                // Never the token, nor its hash.
                String::new,
            )
            .await
    }

    async fn delete_access_token(&self, token: &str) -> Result<bool> {
        call!(self, "delete_access_token", ACCESS_TOKENS)
            .run(
                async {
                    let hash = token::hash(token);
                    TokenBackend::delete_access_token(self, crate::backend::TokenHash::new(&hash))
                        .await
                },
                |deleted| Some(one(*deleted)),
                String::new,
            )
            .await
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        call!(self, "delete_access_tokens_for_user", ACCESS_TOKENS)
            .run(
                async {
                    TokenBackend::delete_access_tokens_for_user(self, own_kind(self, user)?).await
                },
                |()| None,
                || about_user(user),
            )
            .await
    }
}
