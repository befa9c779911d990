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
    fn keys<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> BoxStream<'a, Result<String>>;

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

    /// Physically deletes expired items; returns how many (backends whose database expires
    /// items on its own, like DynamoDB's native TTL, may return 0).
    async fn purge_expired(&self) -> Result<u64>;
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

    /// Stores `value` as JSON.
    async fn set_json<T: Serialize + Sync>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| Error::invalid("value", e.to_string()))?;
        self.set(namespace, key, &bytes, ttl).await
    }
}

impl<T: KvStore + ?Sized> KvStoreExt for T {}

/// Streams the keys that start with `prefix`, a page at a time, for backends that can list keys
/// in order from a starting point.
///
/// `fetch(None)` returns up to `page_size` live keys `>= prefix` in ascending order, and
/// `fetch(Some(last))` those `> last`. Pages are fetched lazily as the stream is read, and the
/// listing stops at the first key past the prefix, so no connection is held between pages and
/// a large namespace is never read whole.
pub fn ordered_key_pages<'a, F, Fut>(
    prefix: &'a str,
    page_size: usize,
    fetch: F,
) -> BoxStream<'a, Result<String>>
where
    F: Fn(Option<String>) -> Fut + Send + Sync + 'a,
    Fut: Future<Output = Result<Vec<String>>> + Send + 'a,
{
    use futures::{StreamExt as _, TryStreamExt as _, stream};
    let fetch = std::sync::Arc::new(fetch);
    let pages = stream::try_unfold(Some(None::<String>), move |state| {
        let fetch = fetch.clone();
        async move {
            let Some(after) = state else { return Ok(None) };
            let mut page = fetch(after).await?;
            let fetched = page.len();
            // The page is in order, so the keys with the prefix come first: a binary search
            // finds where they end without looking at every key.
            let matching = page.partition_point(|key| key.starts_with(prefix));
            page.truncate(matching);
            // More may follow only if the page was full and still inside the prefix.
            let more = fetched == page_size && matching == fetched;
            let next = more.then(|| page.last().cloned());
            Ok(Some((stream::iter(page.into_iter().map(Ok)), next)))
        }
    });
    pages.try_flatten().boxed()
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
    pub fn encode(value: i64) -> Vec<u8> {
        value.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::TryStreamExt as _;

    use super::*;

    #[tokio::test]
    async fn ordered_key_pages_lists_every_matching_key_across_pages() -> Result<()> {
        let keys: BTreeSet<String> = (0..23)
            .map(|i| format!("p:{i:02}"))
            .chain(["a", "o", "p", "q:1", "z"].map(String::from))
            .collect();
        let fetches = AtomicUsize::new(0);
        let listed: Vec<String> = ordered_key_pages("p:", 5, |after| {
            fetches.fetch_add(1, Ordering::Relaxed);
            let page: Vec<String> = match after {
                None => keys.range("p:".to_owned()..).take(5).cloned().collect(),
                Some(after) => keys
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .take(5)
                    .cloned()
                    .collect(),
            };
            async move { Ok(page) }
        })
        .try_collect()
        .await?;
        let expected: Vec<String> = (0..23).map(|i| format!("p:{i:02}")).collect();
        assert_eq!(listed, expected);
        // 23 matching keys in pages of 5: five pages, the last one short, and no more.
        assert_eq!(fetches.load(Ordering::Relaxed), 5);
        Ok(())
    }

    #[tokio::test]
    async fn ordered_key_pages_stops_at_the_first_key_past_the_prefix() -> Result<()> {
        let fetches = AtomicUsize::new(0);
        let listed: Vec<String> = ordered_key_pages("b", 3, |_| {
            fetches.fetch_add(1, Ordering::Relaxed);
            async { Ok(vec!["b1".to_owned(), "b2".to_owned(), "c".to_owned()]) }
        })
        .try_collect()
        .await?;
        assert_eq!(listed, ["b1", "b2"]);
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        Ok(())
    }
}
