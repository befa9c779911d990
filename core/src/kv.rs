//! The key-value trait: namespaced byte values with TTLs, batches, atomic operations and
//! counters.
//!
//! Every implementation refuses the same inputs (see [`crate::validate`]) and never returns an
//! expired item, even before it is physically deleted.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// A key-value store. Use it as `Arc<dyn KvStore>`; typed JSON helpers are in [`KvStoreExt`].
///
/// Every method validates its namespace, keys and values with [`crate::validate`] before
/// touching the database, so a bad input fails the same way on every backend and nothing is
/// written.
///
/// # Implementing it
///
/// Implement [`crate::backend::KvBackend`] instead, and this trait comes with it: the checks,
/// the expiry computation, a span per call and the error context are done once, in this crate.
/// A complete backend that passes the conformance suite (`examples/tiny_kv.rs`):
///
/// ```
#[doc = include_str!("../examples/tiny_kv.rs")]
/// ```
#[async_trait]
pub trait KvStore: Debug + Send + Sync + 'static {
    /// The value under `key`, unless absent or expired.
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key`, replacing any value; with `ttl`, it expires after that long.
    async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()>;

    /// Stores `json`, the JSON encoding of a value, under `key` as [`KvStore::set`] does: what
    /// [`KvStoreExt::set_json`] calls. The size limit and every rule of `set` apply to these
    /// bytes, so a value is accepted or refused alike on every backend.
    ///
    /// Reads return JSON that decodes to the same value. On SQL and in memory they are these
    /// bytes. On DynamoDB, a JSON object or array is stored as a native document (`M` or `L`,
    /// fields as `S`, `N`, `BOOL`, `NULL`, `M`, `L`, as table records are), which the AWS
    /// console and other clients show as such; it reads back as compact JSON with object keys
    /// in sorted order and a float with an integral value as that integer (`2.0` → `2`), so
    /// not always byte for byte what was written. A document DynamoDB cannot hold natively
    /// (a number outside its range, nesting deeper than 30 levels, an empty or NUL-holding
    /// key or string, too large once laid out as a document), a top-level scalar whose JSON
    /// DynamoDB would not return unchanged, and anything that is not JSON are stored as bytes,
    /// as `set` stores them: the call never fails on one backend only.
    /// [`KvStore::compare_and_swap`] matches such a document against the JSON encoding of an
    /// equal value, as written or as read.
    ///
    /// The default calls [`KvStore::set`].
    async fn set_json_encoded(
        &self,
        namespace: &str,
        key: &str,
        json: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.set(namespace, key, json, ttl).await
    }

    /// Deletes `key`; true if a live item was there.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool>;

    /// True if a live item is under `key`.
    async fn contains(&self, namespace: &str, key: &str) -> Result<bool>;

    /// The values of `keys`, in the same order (`None` for absent or expired ones). A key may
    /// appear more than once.
    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Stores every item, each with `ttl`. If a key appears more than once, the last one wins.
    /// All items are validated before any is written.
    async fn set_many(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        ttl: Option<Duration>,
    ) -> Result<()>;

    /// Deletes every key in `keys`.
    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()>;

    /// The live keys of the namespace that start with `prefix` (`""` for all), in no particular
    /// order, following the database's pagination to the end.
    ///
    /// The stream borrows nothing: it can be returned from a function, sent to another task or
    /// become a response body. Pages are read as the stream is polled.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use storekit_core::futures::Stream;
    /// use storekit_core::{KvStore, Result};
    ///
    /// fn all_keys(kv: Arc<dyn KvStore>, ns: String) -> impl Stream<Item = Result<String>> + 'static {
    ///     kv.keys(&ns, "")
    /// }
    /// ```
    fn keys(&self, namespace: &str, prefix: &str) -> BoxStream<'static, Result<String>>;

    /// Deletes every item of the namespace; other namespaces are untouched.
    async fn clear(&self, namespace: &str) -> Result<()>;

    /// Stores `value` only if no live item is under `key`; true if it was stored. Atomic: of
    /// many concurrent calls, exactly one stores.
    async fn set_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool>;

    /// Replaces the value with `new` only if it is currently `expected` (`None`: absent or
    /// expired); true if it was replaced. Atomic.
    async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool>;

    /// Adds `delta` to the counter under `key` and returns the new value. An absent or
    /// expired key starts at 0 and gets `ttl`; an existing counter keeps its expiry. A counter
    /// reads back (with `get`) as its decimal ASCII digits, and a value written as such digits
    /// can be incremented; any other value fails with [`Error::InvalidInput`]. Atomic.
    async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64>;

    /// Physically deletes items that expired more than [`KvStore::keep_expired`] ago; returns
    /// how many (backends whose database expires items on its own, like DynamoDB's native TTL,
    /// may return 0).
    async fn purge_expired(&self) -> Result<u64>;

    /// Gives the live item under `key` a new TTL (`Some`) or none at all (`None`), without
    /// rewriting its value; true if it did. An absent or expired item is left as it is and
    /// the answer is false: an expired item is never brought back. A zero TTL is refused as
    /// for [`KvStore::set`]. The helpers [`KvStoreExt::expire`] and [`KvStoreExt::persist`]
    /// name the two cases. Atomic with every other write of the key.
    async fn set_ttl(&self, namespace: &str, key: &str, ttl: Option<Duration>) -> Result<bool>;

    /// The live value under `key` with its remaining time to live (never
    /// [`Ttl::Expired`]), unless absent or expired: one read, as for [`KvStore::get`].
    async fn get_with_ttl(&self, namespace: &str, key: &str) -> Result<Option<TimedValue>>;

    /// The value under `key` even if it expired, as long as it expired less than `max_stale`
    /// ago, with its time to live ([`Ttl::Expired`] for a stale one): what a cache serves when
    /// its origin fails (`stale-if-error`) or while it revalidates. Plain reads
    /// ([`KvStore::get`] and the others) never return such an item.
    ///
    /// A store keeps expired items for [`KvStore::keep_expired`] (its purge, and on DynamoDB
    /// the native TTL, delete them only after that), so `max_stale` longer than that is refused
    /// with [`Error::InvalidInput`] rather than answered by chance.
    async fn get_stale(
        &self,
        namespace: &str,
        key: &str,
        max_stale: Duration,
    ) -> Result<Option<TimedValue>>;

    /// How long after its deadline an expired item is still kept, and so readable by
    /// [`KvStore::get_stale`]: set on the backend's config (`keep_expired`), zero by default,
    /// where expired items may be deleted as soon as they expire.
    fn keep_expired(&self) -> Duration;
}

/// How long a value has to live, as [`KvStore::get_with_ttl`] and [`KvStore::get_stale`] say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// It never expires.
    Never,
    /// It expires after this long (more than zero).
    Remaining(Duration),
    /// It expired this long ago; only [`KvStore::get_stale`] returns such a value.
    Expired(Duration),
}

impl Ttl {
    /// The TTL of an item with deadline `expires_at` (Unix ms) at `now` (Unix ms).
    #[must_use]
    pub fn at(expires_at: Option<i64>, now: i64) -> Self {
        let millis = |ms: i64| Duration::from_millis(ms.unsigned_abs());
        match expires_at {
            None => Self::Never,
            Some(at) if at > now => Self::Remaining(millis(at - now)),
            Some(at) => Self::Expired(millis(now - at)),
        }
    }

    /// True unless the value has expired.
    #[must_use]
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Expired(_))
    }
}

/// A value with its time to live.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimedValue {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// How long it has to live, or how long ago it expired.
    pub ttl: Ttl,
}

impl TimedValue {
    /// A value with its TTL.
    #[must_use]
    pub fn new(value: Vec<u8>, ttl: Ttl) -> Self {
        Self { value, ttl }
    }
}

/// Never the value: stored values stay out of logs.
impl Debug for TimedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedValue")
            .field("bytes", &self.value.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The trait object users pass around: `Arc<DynKvStore>`.
pub type DynKvStore = dyn KvStore;

/// Typed JSON helpers for any [`KvStore`], `dyn` included.
#[async_trait]
pub trait KvStoreExt: KvStore {
    /// The value under `key`, decoded from JSON.
    async fn get_json<T: DeserializeOwned>(&self, namespace: &str, key: &str) -> Result<Option<T>> {
        match self.get(namespace, key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::invalid("value", format!("is not the expected JSON: {e}"))),
            None => Ok(None),
        }
    }

    /// Stores `value` as JSON, through [`KvStore::set_json_encoded`]: on DynamoDB, a struct,
    /// map or sequence becomes a native document.
    async fn set_json<T: Serialize + Sync>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::invalid("value", e.to_string()))?;
        self.set_json_encoded(namespace, key, &bytes, ttl).await
    }

    /// Gives the live item under `key` a new TTL without rewriting it; false if it is absent
    /// or expired (see [`KvStore::set_ttl`]).
    async fn expire(&self, namespace: &str, key: &str, ttl: Duration) -> Result<bool> {
        self.set_ttl(namespace, key, Some(ttl)).await
    }

    /// Makes the live item under `key` never expire, without rewriting it; false if it is
    /// absent or expired (see [`KvStore::set_ttl`]).
    async fn persist(&self, namespace: &str, key: &str) -> Result<bool> {
        self.set_ttl(namespace, key, None).await
    }
}

impl<T: KvStore + ?Sized> KvStoreExt for T {}

/// One page of a key listing, in order, with the keys back to back in one buffer.
///
/// A listing hands its reader one `String` per key. Kept as one buffer, a page costs two
/// allocations, and each key's `String` is allocated only as it is handed over, usually right
/// after the reader dropped the one before: the allocator's fastest path. A `Vec<String>` page
/// instead allocates a page's worth of small strings at once and frees them all at once,
/// which measured a quarter slower when listing keys of SQLite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    text: String,
    ends: Vec<usize>,
}

impl KeyPage {
    /// An empty page with room for `keys` keys.
    #[must_use]
    pub fn with_capacity(keys: usize) -> Self {
        Self {
            text: String::with_capacity(keys * 16),
            ends: Vec::with_capacity(keys),
        }
    }

    /// Appends `key`, which must sort after every key already in the page.
    pub fn push(&mut self, key: &str) {
        self.text.push_str(key);
        self.ends.push(self.text.len());
    }

    /// How many keys the page holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if the page holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th key.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        Some(&self.text[start..end])
    }

    /// The last key.
    #[must_use]
    pub fn last(&self) -> Option<&str> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// How many keys at the start of the page begin with `prefix`: the page is in order, so
    /// they come first, and a binary search finds where they end.
    fn count_prefixed(&self, prefix: &str) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.get(mid).is_some_and(|key| key.starts_with(prefix)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Keeps the first `len` keys.
    fn truncate(&mut self, len: usize) {
        self.ends.truncate(len);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// The keys as owned strings, each allocated as it is taken.
    fn into_keys(self) -> impl Iterator<Item = String> {
        (0..self.len()).map(move |i| self.get(i).unwrap_or_default().to_owned())
    }
}

impl<S: AsRef<str>> FromIterator<S> for KeyPage {
    fn from_iter<I: IntoIterator<Item = S>>(keys: I) -> Self {
        let mut page = Self::default();
        for key in keys {
            page.push(key.as_ref());
        }
        page
    }
}

/// Streams the keys that start with `prefix`, a page at a time, for backends that can list keys
/// in order from a starting point.
///
/// `fetch(None, n)` returns up to `n` live keys `>= prefix` in ascending order, and
/// `fetch(Some(last), n)` those `> last`. Pages are fetched lazily as the stream is read, and
/// the listing stops at the first key past the prefix, so no connection is held between pages
/// and a large namespace is never read whole. Pages grow fourfold from `pages.first` keys to
/// `pages.max`: a short listing reads little past its prefix, and a long one pays a query's
/// fixed cost once per `pages.max` keys.
pub fn ordered_key_pages<F, Fut>(
    prefix: String,
    pages: PageSizes,
    fetch: F,
) -> BoxStream<'static, Result<String>>
where
    F: Fn(Option<String>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<KeyPage>> + Send + 'static,
{
    use futures::{StreamExt as _, TryStreamExt as _, stream};
    let shared = std::sync::Arc::new((fetch, prefix));
    let first = Some((None::<String>, pages.first.max(1)));
    let listing = stream::try_unfold(first, move |state| {
        let shared = shared.clone();
        async move {
            let Some((after, size)) = state else {
                return Ok(None);
            };
            let (fetch, prefix) = &*shared;
            let mut page = fetch(after, size).await?;
            let fetched = page.len();
            let matching = page.count_prefixed(prefix);
            page.truncate(matching);
            // More may follow only if the page was full and still inside the prefix.
            let more = fetched == size && matching == fetched;
            let next_size = size.saturating_mul(4).min(pages.max).max(size);
            let next = more.then(|| (page.last().map(str::to_owned), next_size));
            Ok(Some((stream::iter(page.into_keys().map(Ok)), next)))
        }
    });
    listing.try_flatten().boxed()
}

/// How many keys [`ordered_key_pages`] asks for per page: `first`, then four times as many
/// each page up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    /// Keys asked for by the first page.
    pub first: usize,
    /// Most keys asked for by any page.
    pub max: usize,
}

impl PageSizes {
    /// Every page the same size.
    #[must_use]
    pub fn fixed(size: usize) -> Self {
        Self {
            first: size,
            max: size,
        }
    }
}

/// Counter arithmetic shared by every backend that cannot add in the database itself.
pub mod counter {
    use crate::{Error, Result};

    /// Parses a stored counter: decimal ASCII digits with an optional leading `-`.
    pub fn parse(value: &[u8]) -> Result<i64> {
        std::str::from_utf8(value)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| Error::invalid("value", "is not an integer counter"))
    }

    /// The counter after adding `delta` to `current` (`None`: a new counter at 0).
    pub fn add(current: Option<&[u8]>, delta: i64) -> Result<i64> {
        let base = current.map(parse).transpose()?.unwrap_or(0);
        base.checked_add(delta)
            .ok_or_else(|| Error::invalid("delta", "the counter would overflow a 64-bit integer"))
    }

    /// The stored form of a counter.
    #[must_use]
    pub fn encode(value: i64) -> Vec<u8> {
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use futures::TryStreamExt as _;

    use super::*;

    /// Serves pages of `keys` as a backend would, counting the sizes asked for.
    fn serve(
        keys: BTreeSet<String>,
        asked: Arc<Mutex<Vec<usize>>>,
    ) -> impl Fn(Option<String>, usize) -> std::future::Ready<Result<KeyPage>> + Send + Sync {
        move |after, size| {
            asked.lock().expect("not poisoned").push(size);
            let page: KeyPage = match after {
                None => keys.iter().take(size).collect(),
                Some(after) => keys
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .take(size)
                    .collect(),
            };
            std::future::ready(Ok(page))
        }
    }

    #[tokio::test]
    async fn ordered_key_pages_lists_every_matching_key_across_pages() -> Result<()> {
        let keys: BTreeSet<String> = (0..23)
            .map(|i| format!("p:{i:02}"))
            .chain(["p", "q:1", "z"].map(String::from))
            .collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fetch = serve(keys, asked.clone());
        let listed: Vec<String> =
            ordered_key_pages("p:".to_owned(), PageSizes::fixed(5), move |after, size| {
                // The first page starts at the prefix, as a backend's query does.
                fetch(Some(after.unwrap_or_else(|| "p".to_owned())), size)
            })
            .try_collect()
            .await?;
        let expected: Vec<String> = (0..23).map(|i| format!("p:{i:02}")).collect();
        assert_eq!(listed, expected);
        // 23 matching keys in pages of 5: five pages, the last one short, and no more.
        assert_eq!(asked.lock().expect("not poisoned").len(), 5);
        Ok(())
    }

    #[tokio::test]
    async fn ordered_key_pages_grow_fourfold_up_to_the_largest_size() -> Result<()> {
        let keys: BTreeSet<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let pages = PageSizes { first: 2, max: 16 };
        let listed: Vec<String> =
            ordered_key_pages(String::new(), pages, serve(keys.clone(), asked.clone()))
                .try_collect()
                .await?;
        assert_eq!(listed, keys.into_iter().collect::<Vec<_>>());
        // 2 + 8 + 16 + 16 = 42 >= 40: the fourth page is short, and the listing ends there.
        assert_eq!(*asked.lock().expect("not poisoned"), [2, 8, 16, 16]);
        Ok(())
    }

    #[test]
    fn key_page_keeps_keys_in_order_and_counts_a_prefix() {
        let mut page = KeyPage::with_capacity(1);
        for key in ["a", "ab", "abc", "b", "é"] {
            page.push(key);
        }
        assert_eq!(page.len(), 5);
        assert_eq!(page.get(1), Some("ab"));
        assert_eq!(page.get(5), None);
        assert_eq!(page.last(), Some("é"));
        assert_eq!(page.count_prefixed("a"), 3);
        assert_eq!(page.count_prefixed(""), 5);
        assert_eq!(page.count_prefixed("c"), 0);
        page.truncate(2);
        assert_eq!(page.iter().collect::<Vec<_>>(), ["a", "ab"]);
        assert_eq!(page.into_keys().collect::<Vec<_>>(), ["a", "ab"]);
    }

    #[tokio::test]
    async fn ordered_key_pages_stops_at_the_first_key_past_the_prefix() -> Result<()> {
        let keys: BTreeSet<String> = ["b1", "b2", "c", "c1", "c2"].map(String::from).into();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let fetch = serve(keys, asked.clone());
        let listed: Vec<String> = ordered_key_pages("b".to_owned(), PageSizes::fixed(3), fetch)
            .try_collect()
            .await?;
        assert_eq!(listed, ["b1", "b2"]);
        assert_eq!(asked.lock().expect("not poisoned").len(), 1);
        Ok(())
    }
}
