//! The in-memory reference backend (`memory://`): the model the other backends are compared
//! with. Everything is behind one mutex, so every operation is atomic; nothing is persisted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::admin::{Admin, MigrationReport, SchemaDifference};
use crate::backend::{
    Backend, EmailKey, Expiry, Items, Key, Keys, KvBackend, Namespace, OAuthBackend, OAuthKey,
    TokenBackend, TokenHash, UserBackend, UserPageRequest,
};
use crate::kv::counter;
use crate::time::{is_live, now_millis, purge_horizon};
use crate::{
    AccessToken, Error, IdKind, OAuthAccount, OAuthAccountPatch, Page, Result, User, UserDraft,
    UserId, UserPatch,
};

/// A store that keeps everything in process memory.
///
/// Its `Debug` shows how much it holds, never what: stored values and token hashes stay out
/// of logs.
#[derive(Default)]
pub struct MemoryStore {
    id_kind: IdKind,
    /// Shared, so that a big batch can be applied on the blocking pool (see [`MemoryStore::apply`]).
    state: Arc<Mutex<State>>,
    tables: Mutex<tables::Tables>,
    /// How long a write takes to reach query indexes (zero: at once).
    index_lag: std::time::Duration,
    /// How long expired kv items are kept (see [`MemoryStore::keep_expired`]).
    keep_expired: std::time::Duration,
}

mod tables;
mod transfer;

#[derive(Default)]
struct State {
    users: BTreeMap<UserId, User>,
    user_by_email: HashMap<String, UserId>,
    /// Keyed by (provider, account id), the pair that is unique across users.
    oauth: BTreeMap<(String, String), OAuthAccount>,
    tokens: HashMap<String, AccessToken>,
    last_int_id: i64,
    kv: HashMap<String, BTreeMap<String, Entry>>,
}

#[derive(Clone)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<i64>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryStore")
            .field("id_kind", &self.id_kind)
            .field("users", &state.users.len())
            .field("oauth_accounts", &state.oauth.len())
            .field("access_tokens", &state.tokens.len())
            .field(
                "kv_items",
                &state.kv.values().map(BTreeMap::len).sum::<usize>(),
            )
            .finish()
    }
}

impl MemoryStore {
    /// An empty store with UUID user ids.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with user ids of the given kind.
    #[must_use]
    pub fn with_id_kind(id_kind: IdKind) -> Self {
        Self {
            id_kind,
            ..Self::default()
        }
    }

    /// An empty store whose query indexes show each write only `lag` after it, and until then
    /// the record as it was, as DynamoDB's global secondary indexes may: so a test that
    /// assumes read-after-write on an index fails here, not only on AWS. Tables, unique
    /// indexes and table queries stay read-after-write.
    #[must_use]
    pub fn with_index_lag(lag: std::time::Duration) -> Self {
        Self {
            index_lag: lag,
            ..Self::default()
        }
    }

    /// Keeps expired kv items for `keep` after their deadline: `purge_expired` leaves them,
    /// and [`crate::KvStore::get_stale`] may read them for that long.
    #[must_use]
    pub fn keep_expired(mut self, keep: std::time::Duration) -> Self {
        self.keep_expired = keep;
        self
    }

    /// Everything the store holds, rendered as text, for tests that check what is stored (the
    /// SQL and DynamoDB stores have the same). Unlike `Debug`, it shows values and hashes.
    pub fn dump(&self) -> String {
        use std::fmt::Write as _;
        let state = self.state();
        let mut out = String::new();
        for user in state.users.values() {
            let _ = writeln!(
                out,
                "user {} {} {} v{} {}",
                user.id,
                user.email,
                user.hashed_password,
                user.version,
                serde_json::Value::Object(user.extra.clone())
            );
        }
        for ((provider, account_id), account) in &state.oauth {
            let _ = writeln!(
                out,
                "oauth {provider} {account_id} user {} {}",
                account.user_id, account.account_email
            );
        }
        for (hash, token) in &state.tokens {
            let _ = writeln!(out, "token {hash} user {}", token.user_id);
        }
        for (namespace, items) in &state.kv {
            for (key, entry) in items {
                let _ = writeln!(
                    out,
                    "kv {namespace} {key} {:?} expires {:?}",
                    String::from_utf8_lossy(&entry.value),
                    entry.expires_at
                );
            }
        }
        out
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Applies `change` to the state under the lock, at once, in one go; on the blocking pool
    /// when the batch behind it has more than [`INLINE_ITEMS`] items, so that the caller's
    /// runtime thread goes on with other tasks meanwhile (on another thread, the lock is held
    /// as long; a batch stays atomic).
    async fn apply(&self, items: usize, change: impl FnOnce(&mut State) + Send + 'static) {
        if items <= INLINE_ITEMS {
            change(&mut self.state());
            return;
        }
        let state = self.state.clone();
        let applied = tokio::task::spawn_blocking(move || change(&mut lock(&state))).await;
        if let Err(panicked) = applied {
            std::panic::resume_unwind(panicked.into_panic());
        }
    }
}

/// Items of a batch the memory store handles on the calling thread; a larger batch is copied a
/// chunk of this many at a time, yielding between chunks, and applied on the blocking pool
/// (a 100,000-item batch held the caller's thread for 0.2 s in a debug build).
const INLINE_ITEMS: usize = 1_000;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // matters more than losing the whole store, so a poisoned lock is simply reused.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies `items` with `copy`, [`INLINE_ITEMS`] at a time, yielding to the runtime between
/// chunks.
async fn copied<T, U>(items: &[T], copy: impl Fn(&T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(items.len());
    for (i, chunk) in items.chunks(INLINE_ITEMS).enumerate() {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        out.extend(chunk.iter().map(&copy));
    }
    out
}

impl State {
    fn live(&self, namespace: &str, key: &str, now: i64) -> Option<&Entry> {
        self.kv
            .get(namespace)?
            .get(key)
            .filter(|entry| is_live(entry.expires_at, now))
    }

    fn put(&mut self, namespace: &str, key: &str, value: &[u8], expires_at: Option<i64>) {
        let entry = Entry {
            value: value.to_vec(),
            expires_at,
        };
        self.kv
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), entry);
    }
}

impl Backend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn system(&self) -> &'static str {
        "memory"
    }
}

/// Nothing to create, compare or drop: the store lives in this process and goes with it. A
/// test that wants a fresh store makes a new one.
#[async_trait]
impl Admin for MemoryStore {
    async fn migrate_report(&self) -> Result<MigrationReport> {
        Ok(MigrationReport::default())
    }

    async fn schema_differences(&self) -> Result<Vec<SchemaDifference>> {
        Ok(Vec::new())
    }

    async fn drop_tables(&self) -> Result<()> {
        Ok(())
    }

    async fn dump(&self) -> Result<String> {
        Ok(MemoryStore::dump(self))
    }
}

#[async_trait]
impl UserBackend for MemoryStore {
    fn id_kind(&self) -> IdKind {
        self.id_kind
    }

    async fn create_user(&self, draft: UserDraft) -> Result<User> {
        let mut state = self.state();
        if state.user_by_email.contains_key(&draft.email_key) {
            return Err(Error::AlreadyExists { what: "email" });
        }
        let id = match self.id_kind {
            IdKind::Uuid => UserId::Uuid(uuid::Uuid::now_v7()),
            IdKind::Int => {
                state.last_int_id += 1;
                UserId::Int(state.last_int_id)
            }
        };
        state.user_by_email.insert(draft.email_key.clone(), id);
        let user = draft.into_user(id);
        state.users.insert(id, user.clone());
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        Ok(self.state().users.get(&id).cloned())
    }

    async fn get_user_by_email(&self, email: EmailKey<'_>) -> Result<Option<User>> {
        let state = self.state();
        Ok(state
            .user_by_email
            .get(email.as_str())
            .and_then(|id| state.users.get(id))
            .cloned())
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch) -> Result<User> {
        let mut state = self.state();
        let current = state
            .users
            .get(&id)
            .ok_or(Error::NotFound { what: "user" })?;
        let next = patch.apply(current)?;
        let (old_key, new_key) = (current.email_key()?, next.email_key()?);
        if new_key != old_key {
            if state.user_by_email.contains_key(&new_key) {
                return Err(Error::AlreadyExists { what: "email" });
            }
            state.user_by_email.remove(&old_key);
            state.user_by_email.insert(new_key, id);
        }
        state.users.insert(id, next.clone());
        Ok(next)
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut state = self.state();
        let user = state
            .users
            .remove(&id)
            .ok_or(Error::NotFound { what: "user" })?;
        state.user_by_email.remove(&user.email_key()?);
        state.oauth.retain(|_, account| account.user_id != id);
        state.tokens.retain(|_, token| token.user_id != id);
        Ok(())
    }

    async fn list_users(&self, page: UserPageRequest) -> Result<Page<User>> {
        let after = page.after;
        let state = self.state();
        let items: Vec<User> = state
            .users
            .values()
            .filter(|user| after.is_none_or(|after| user.id > after))
            .take(page.limit + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(items, page.limit, |user| {
            user.id.to_string()
        }))
    }
}

#[async_trait]
impl OAuthBackend for MemoryStore {
    async fn add_oauth_account(&self, account: OAuthAccount) -> Result<OAuthAccount> {
        let mut state = self.state();
        if !state.users.contains_key(&account.user_id) {
            return Err(Error::NotFound { what: "user" });
        }
        let key = (account.provider.clone(), account.account_id.clone());
        if state.oauth.contains_key(&key) {
            return Err(Error::AlreadyExists {
                what: "oauth account",
            });
        }
        state.oauth.insert(key, account.clone());
        Ok(account)
    }

    async fn update_oauth_account(
        &self,
        user: UserId,
        key: OAuthKey<'_>,
        patch: &OAuthAccountPatch,
    ) -> Result<OAuthAccount> {
        let mut state = self.state();
        let key = (key.provider().to_owned(), key.account_id().to_owned());
        let current = state
            .oauth
            .get(&key)
            .filter(|account| account.user_id == user)
            .ok_or(Error::NotFound {
                what: "oauth account",
            })?;
        let next = patch.apply(current)?;
        state.oauth.insert(key, next.clone());
        Ok(next)
    }

    async fn remove_oauth_account(&self, user: UserId, key: OAuthKey<'_>) -> Result<()> {
        let mut state = self.state();
        let key = (key.provider().to_owned(), key.account_id().to_owned());
        match state.oauth.get(&key) {
            Some(account) if account.user_id == user => {
                state.oauth.remove(&key);
                Ok(())
            }
            _ => Err(Error::NotFound {
                what: "oauth account",
            }),
        }
    }

    async fn oauth_accounts(&self, user: UserId) -> Result<Vec<OAuthAccount>> {
        let state = self.state();
        Ok(state
            .oauth
            .values()
            .filter(|account| account.user_id == user)
            .cloned()
            .collect())
    }

    async fn get_user_by_oauth_account(&self, key: OAuthKey<'_>) -> Result<Option<User>> {
        let state = self.state();
        let key = (key.provider().to_owned(), key.account_id().to_owned());
        Ok(state
            .oauth
            .get(&key)
            .and_then(|account| state.users.get(&account.user_id))
            .cloned())
    }
}

#[async_trait]
impl TokenBackend for MemoryStore {
    async fn insert_access_token(&self, hash: TokenHash<'_>, token: &AccessToken) -> Result<()> {
        let mut state = self.state();
        if !state.users.contains_key(&token.user_id) {
            return Err(Error::NotFound { what: "user" });
        }
        state.tokens.insert(hash.to_string(), token.clone());
        Ok(())
    }

    async fn get_access_token(&self, hash: TokenHash<'_>) -> Result<Option<AccessToken>> {
        Ok(self.state().tokens.get(hash.as_str()).cloned())
    }

    async fn delete_access_token(&self, hash: TokenHash<'_>) -> Result<bool> {
        Ok(self.state().tokens.remove(hash.as_str()).is_some())
    }

    async fn delete_access_tokens_for_user(&self, user: UserId) -> Result<()> {
        self.state().tokens.retain(|_, info| info.user_id != user);
        Ok(())
    }
}

#[async_trait]
impl KvBackend for MemoryStore {
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        let state = self.state();
        Ok(state
            .live(&namespace, &key, now_millis())
            .map(|entry| entry.value.clone()))
    }

    async fn set(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        self.state().put(&namespace, &key, value, expiry.millis());
        Ok(())
    }

    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let mut state = self.state();
        let removed = state
            .kv
            .get_mut(namespace.as_str())
            .and_then(|items| items.remove(key.as_str()));
        Ok(removed.is_some_and(|entry| is_live(entry.expires_at, now_millis())))
    }

    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        Ok(self.state().live(&namespace, &key, now_millis()).is_some())
    }

    async fn get_many(
        &self,
        namespace: Namespace<'_>,
        keys: Keys<'_>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let state = self.state();
        let now = now_millis();
        Ok(keys
            .iter()
            .map(|key| state.live(&namespace, key, now).map(|e| e.value.clone()))
            .collect())
    }

    async fn set_many(
        &self,
        namespace: Namespace<'_>,
        items: Items<'_>,
        expiry: Expiry,
    ) -> Result<()> {
        let expires_at = expiry.millis();
        let entries = copied(&items, |(key, value)| {
            let value = value.to_vec();
            ((*key).to_owned(), Entry { value, expires_at })
        })
        .await;
        let namespace = namespace.as_str().to_owned();
        self.apply(entries.len(), move |state| {
            // In order, so that the last value of a repeated key wins.
            state.kv.entry(namespace).or_default().extend(entries);
        })
        .await;
        Ok(())
    }

    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()> {
        let keys = copied(&keys, |key| (*key).to_owned()).await;
        let namespace = namespace.as_str().to_owned();
        self.apply(keys.len(), move |state| {
            if let Some(items) = state.kv.get_mut(&namespace) {
                for key in &keys {
                    items.remove(key);
                }
            }
        })
        .await;
        Ok(())
    }

    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>> {
        // Everything is in memory: the listing is taken at once, under the lock.
        let state = self.state();
        let now = now_millis();
        let keys: Vec<Result<String>> =
            state
                .kv
                .get(namespace.as_str())
                .map_or_else(Vec::new, |items| {
                    items
                        .range(prefix.to_owned()..)
                        .take_while(|(key, _)| key.starts_with(prefix))
                        .filter(|(_, entry)| is_live(entry.expires_at, now))
                        .map(|(key, _)| Ok(key.clone()))
                        .collect()
                });
        stream::iter(keys).boxed()
    }

    async fn clear(&self, namespace: Namespace<'_>) -> Result<()> {
        self.state().kv.remove(namespace.as_str());
        Ok(())
    }

    async fn set_if_absent(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let mut state = self.state();
        if state.live(&namespace, &key, now_millis()).is_some() {
            return Ok(false);
        }
        state.put(&namespace, &key, value, expiry.millis());
        Ok(true)
    }

    async fn compare_and_swap(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let mut state = self.state();
        let current = state
            .live(&namespace, &key, now_millis())
            .map(|e| e.value.as_slice());
        if current != Some(expected) {
            return Ok(false);
        }
        state.put(&namespace, &key, new, expiry.millis());
        Ok(true)
    }

    async fn increment(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        let mut state = self.state();
        let current = state.live(&namespace, &key, now_millis()).cloned();
        let value = counter::add(current.as_ref().map(|e| e.value.as_slice()), delta)?;
        let expires_at = current.map_or(expiry.millis(), |e| e.expires_at);
        state.put(&namespace, &key, &counter::encode(value), expires_at);
        Ok(value)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let horizon = purge_horizon(now_millis(), self.keep_expired);
        let mut purged = 0;
        for items in self.state().kv.values_mut() {
            let before = items.len();
            items.retain(|_, entry| is_live(entry.expires_at, horizon));
            purged += (before - items.len()) as u64;
        }
        Ok(purged)
    }

    async fn set_expiry(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expiry: Expiry,
    ) -> Result<bool> {
        let mut state = self.state();
        let now = now_millis();
        let live = state
            .kv
            .get_mut(namespace.as_str())
            .and_then(|items| items.get_mut(key.as_str()))
            .filter(|entry| is_live(entry.expires_at, now));
        Ok(live
            .map(|entry| entry.expires_at = expiry.millis())
            .is_some())
    }

    async fn get_stored(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        let state = self.state();
        let entry = state
            .kv
            .get(namespace.as_str())
            .and_then(|items| items.get(key.as_str()));
        Ok(entry.map(|entry| (entry.value.clone(), entry.expires_at)))
    }

    fn keep_expired(&self) -> std::time::Duration {
        self.keep_expired
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryStore;
    use crate::{KvStore, Result};

    async fn round_trip(kv: impl KvStore) -> Result<Option<Vec<u8>>> {
        kv.set("ns", "k", b"v", None).await?;
        kv.get("ns", "k").await
    }

    #[tokio::test]
    async fn shared_stores_are_stores() -> Result<()> {
        let shared: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        assert_eq!(round_trip(shared.clone()).await?, Some(b"v".to_vec()));
        assert_eq!(shared.get("ns", "k").await?, Some(b"v".to_vec()));
        let typed: Arc<MemoryStore> = Arc::new(MemoryStore::new());
        assert_eq!(round_trip(typed).await?, Some(b"v".to_vec()));
        Ok(())
    }

    #[tokio::test]
    async fn debug_shows_counts_never_values_or_secrets() -> Result<()> {
        use crate::{AccessTokenStore as _, NewUser, UserStore as _};
        let store = MemoryStore::new();
        store.set("ns", "k", b"stored-value", None).await?;
        let user = store
            .create_user(NewUser::new("a@example.com", "hash-secret"))
            .await?;
        let token = store.create_access_token(user.id).await?;
        let debug = format!("{store:?}");
        for hidden in ["stored-value", "hash-secret", token.token.as_str()] {
            assert!(!debug.contains(hidden), "{hidden} in {debug}");
        }
        assert!(debug.contains("kv_items: 1"), "{debug}");
        Ok(())
    }
}
