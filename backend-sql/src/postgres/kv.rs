//! The key-value store on PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use sqlx::Row as _;
use storekit_core::Result;
use storekit_core::backend::{Expiry, Items, Key, Keys, KvBackend, Namespace};
use storekit_core::kv::{KeyPage, PageSizes, counter};
use storekit_core::table::KeyValue;
use storekit_core::time::{is_live, now_millis, purge_horizon};
use storekit_core::transfer::{KvEntry, KvPosition, KvTransferBackend};

use super::PostgresStore;
use super::error::{pg_error, retry_conflicts};
use super::schema::KV_DELETE_MANY_BEGIN;
use crate::purge;

/// Keys fetched per query while listing more than [`KEYS_WHOLE`] keys. Each page is one index
/// walk from the last key, in a transaction of its own (three round trips), so small pages
/// only add round trips; ten thousand keys of at most 512 bytes keep one page under 5 MB.
const KEYS_PAGE: usize = 10_000;

/// The most keys a listing reads in one unordered statement and sorts itself (see
/// [`PostgresStore::whole_listing`]); a larger one is read again in ordered pages.
const KEYS_WHOLE: usize = 10_000;

/// A listing of at most this many keys is sorted on the runtime thread (about 0.2 ms in a
/// release build, less than decoding its rows); a larger one on the blocking pool, whose hop
/// then costs little.
const SORT_INLINE: usize = 5_000;

/// The smallest string after every string that starts with `prefix` (`None`: none is), as
/// the tables store bounds a prefix.
fn prefix_end(prefix: &str) -> Option<String> {
    match crate::table_layout::prefix_end(&KeyValue::Text(prefix.to_owned())) {
        Some(KeyValue::Text(end)) => Some(end),
        _ => None,
    }
}

impl PostgresStore {
    /// Starts the background purge of expired items, once (see `crate::purge`).
    pub(super) fn start_purger(&self) {
        self.inner
            .purger
            .ensure_started(Arc::downgrade(&self.inner), |inner| async move {
                let store = PostgresStore { inner };
                let items = store.purge_all_expired().await?;
                Ok(items + store.purge_expired_records().await?)
            });
    }

    /// Deletes every expired item, a batch per statement so that no transaction runs long.
    async fn purge_all_expired(&self) -> Result<u64> {
        crate::kv::purge_in_batches(|| async {
            let deleted = sqlx::query(self.inner.sql.kv_purge_some.clone())
                .bind(purge_horizon(now_millis(), self.inner.keep_expired))
                .bind(purge::BATCH)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(deleted.rows_affected())
        })
        .await
    }

    async fn keys_page(
        &self,
        namespace: &str,
        from: &str,
        first: bool,
        page: usize,
    ) -> Result<KeyPage> {
        let sql = &self.inner.sql;
        let sql = if first {
            &sql.kv_keys_first
        } else {
            &sql.kv_keys_after
        };
        // The primary key's index yields keys in order, so a page is an index walk that stops
        // after `page` keys. Without statistics (a new table), or when a page would cover most
        // of the namespace, the planner instead reads every remaining key and sorts them, on
        // every page: measured 1.9x the time of an unordered scan, against 1.1x for the walk.
        // Sorting is therefore switched off for this one statement's transaction.
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN READ ONLY; SET LOCAL enable_sort = off")
            .await
            .map_err(pg_error)?;
        let keys: Vec<String> = sqlx::query_scalar(sql.clone())
            .bind(namespace)
            .bind(from)
            .bind(now_millis())
            .bind(i64::try_from(page).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(KeyPage::from_iter(keys))
    }

    /// The live keys of `namespace` that start with `prefix`, in key order, read by one
    /// statement in no order and sorted here; `None` if there are more than `most`.
    ///
    /// Most listings are of a few thousand keys at most, and then one unordered statement is
    /// the cheapest way to all of them: one round trip, and whatever scan the planner finds
    /// cheapest. In key order the server would have to walk the primary key's index, visiting
    /// the table for each key's deadline (measured 1.5x the time of the scan for 6,500 keys),
    /// or sort (2x), and without `SET LOCAL enable_sort = off` in a transaction (two more
    /// round trips) the planner picks the sort whenever the page covers the namespace. Sorting
    /// here costs a fraction of either. A larger listing pays for this statement once and is
    /// read again in ordered pages (see [`PostgresStore::keys_in_pages`]): at most a page's
    /// worth of extra reading, a small part of a listing that large.
    async fn whole_listing(
        &self,
        namespace: &str,
        prefix: &str,
        most: usize,
    ) -> Result<Option<Vec<String>>> {
        let own = &self.inner.own;
        let end = prefix_end(prefix);
        let sql = match end {
            Some(_) => &own.kv_keys_unordered_below,
            None => &own.kv_keys_unordered,
        };
        let mut query = sqlx::query_scalar(sql.clone())
            .bind(namespace)
            .bind(prefix)
            .bind(now_millis())
            .bind(i64::try_from(most).map_or(i64::MAX, |most| most.saturating_add(1)));
        if let Some(end) = &end {
            query = query.bind(end);
        }
        let mut keys: Vec<String> = query.fetch_all(&self.inner.pool).await.map_err(pg_error)?;
        if keys.len() > most {
            return Ok(None);
        }
        if keys.len() <= SORT_INLINE {
            keys.sort_unstable();
            return Ok(Some(keys));
        }
        tokio::task::spawn_blocking(move || {
            keys.sort_unstable();
            Some(keys)
        })
        .await
        .map_err(|e| storekit_core::Error::backend("postgres", e))
    }

    /// `keys`: the whole listing in one statement when it holds at most `most` keys, else
    /// in ordered pages of `page` keys (parameters so that tests reach both cheaply).
    fn listing(
        &self,
        namespace: &str,
        prefix: &str,
        most: usize,
        page: usize,
    ) -> BoxStream<'static, Result<String>> {
        let (store, namespace, prefix) = (self.clone(), namespace.to_owned(), prefix.to_owned());
        stream::once(async move {
            match store.whole_listing(&namespace, &prefix, most).await {
                Ok(Some(keys)) => stream::iter(keys.into_iter().map(Ok)).boxed(),
                Ok(None) => store.keys_in_pages(&namespace, &prefix, page),
                Err(err) => stream::iter([Err(err)]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// `keys`, in pages of `page` keys (a parameter so that tests can cross pages cheaply).
    fn keys_in_pages(
        &self,
        namespace: &str,
        prefix: &str,
        page: usize,
    ) -> BoxStream<'static, Result<String>> {
        crate::kv::key_pages(
            self.clone(),
            namespace,
            prefix,
            PageSizes::fixed(page),
            |store, namespace, from, first, limit| {
                Box::pin(store.keys_page(namespace, from, first, limit))
            },
        )
    }
}

/// The most items of a batch written by one statement. A batch up to this size is one
/// statement, its arrays encoded inline: a few milliseconds of the runtime thread at most,
/// in a debug build. A larger one is sorted off the runtime ([`key_order`]) and written by
/// statements of this many items in one transaction, each encoded while the one before it is
/// not holding the thread, so that no call holds the runtime for long whatever its size (a
/// 100,000-item batch encoded at once held it for 40 to 80 ms).
const STATEMENT_ITEMS: usize = 5_000;

/// The positions of `keys` in key order (bytes, as `COLLATE "C"` orders them), each key once,
/// at its last position (the last value of a repeated key wins). The keys are copied a chunk
/// at a time, yielding between chunks (`crate::chunked`), and sorted on the blocking pool: a
/// sort of 100,000 keys takes tens of milliseconds, more in a debug build.
async fn key_order<T>(batch: &[T], key: impl Fn(&T) -> &str) -> Result<Vec<usize>> {
    let owned: Vec<Box<str>> = crate::chunked::copied(batch, |item| key(item).into()).await;
    tokio::task::spawn_blocking(move || {
        let mut order: Vec<usize> = (0..owned.len()).collect();
        // Equal keys with the last position first, so that dedup keeps it.
        order.sort_unstable_by(|&a, &b| owned[a].cmp(&owned[b]).then(b.cmp(&a)));
        order.dedup_by(|later, first| owned[*later] == owned[*first]);
        order
    })
    .await
    .map_err(|e| storekit_core::Error::backend("postgres", e))
}

impl PostgresStore {
    /// Runs `statement` on each chunk of [`STATEMENT_ITEMS`] positions of `order`, in order,
    /// in one transaction begun with `begin`: the batch is written whole or not at all, and its rows are locked
    /// in key order across statements as within one, so that concurrent batches wait for each
    /// other instead of deadlocking. Run again, whole, when the server rolls it back to break a
    /// deadlock or a serialization conflict.
    async fn in_statements<F>(
        &self,
        begin: &'static str,
        order: &[usize],
        statement: F,
    ) -> Result<()>
    where
        F: for<'t> Fn(
            &'t mut sqlx::Transaction<'static, sqlx::Postgres>,
            &'t [usize],
        ) -> BoxFuture<'t, sqlx::Result<sqlx::postgres::PgQueryResult>>,
    {
        let statement = &statement;
        retry_conflicts(|| async move {
            let mut tx = self.inner.pool.begin_with(begin).await?;
            for chunk in order.chunks(STATEMENT_ITEMS) {
                statement(&mut tx, chunk).await?;
            }
            tx.commit().await
        })
        .await
    }
}

#[async_trait]
impl KvBackend for PostgresStore {
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            sqlx::query_scalar(self.inner.sql.kv_get.clone())
                .bind(namespace)
                .bind(key)
                .bind(now_millis())
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_error)
        })
        .await
    }

    async fn set(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            self.start_purger();
            sqlx::query(self.inner.sql.kv_upsert.clone())
                .bind(namespace)
                .bind(key)
                .bind(value)
                .bind(expiry.millis())
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            let removed: Option<Option<i64>> = sqlx::query_scalar(self.inner.own.kv_delete.clone())
                .bind(namespace)
                .bind(key)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(removed.is_some_and(|expires_at| is_live(expires_at, now_millis())))
        })
        .await
    }

    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            sqlx::query_scalar(self.inner.sql.kv_contains.clone())
                .bind(namespace)
                .bind(key)
                .bind(now_millis())
                .fetch_one(&self.inner.pool)
                .await
                .map_err(pg_error)
        })
        .await
    }

    async fn get_many(
        &self,
        namespace: Namespace<'_>,
        keys: Keys<'_>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let (namespace, keys) = (namespace.as_str(), keys.as_slice());
        self.within_deadline(async {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(self.inner.own.kv_get_many.clone())
                .bind(namespace)
                .bind(keys)
                .bind(now_millis())
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in rows {
                let key: String = row.try_get(0).map_err(pg_error)?;
                let value: Vec<u8> = row.try_get(1).map_err(pg_error)?;
                found.insert(key, value);
            }
            Ok(keys.iter().map(|key| found.get(*key).cloned()).collect())
        })
        .await
    }

    async fn set_many(
        &self,
        namespace: Namespace<'_>,
        items: Items<'_>,
        expiry: Expiry,
    ) -> Result<()> {
        let (namespace, items) = (namespace.as_str(), items.as_slice());
        self.within_deadline(async {
            self.start_purger();
            let expires_at = expiry.millis();
            if items.len() > STATEMENT_ITEMS {
                let order = key_order(items, |(key, _)| key).await?;
                return self
                    .in_statements("BEGIN", &order, |tx, chunk| {
                        let (keys, values): (Vec<&str>, Vec<&[u8]>) =
                            chunk.iter().map(|&i| items[i]).unzip();
                        let query = sqlx::query(self.inner.own.kv_upsert_many.clone())
                            .bind(namespace)
                            .bind(keys)
                            .bind(values)
                            .bind(expires_at);
                        Box::pin(query.execute(&mut **tx))
                    })
                    .await;
            }
            // One upsert cannot touch a row twice, so repeated keys keep only their last value.
            // Rows are written, and locked, in key order: concurrent batches over overlapping keys
            // then wait for each other instead of deadlocking, and the index is walked in order.
            let mut last: BTreeMap<&str, &[u8]> = BTreeMap::new();
            for (key, value) in items {
                last.insert(key, value);
            }
            if last.is_empty() {
                return Ok(());
            }
            let (keys, values): (Vec<&str>, Vec<&[u8]>) = last.into_iter().unzip();
            retry_conflicts(|| {
                sqlx::query(self.inner.own.kv_upsert_many.clone())
                    .bind(namespace)
                    .bind(&keys)
                    .bind(&values)
                    .bind(expires_at)
                    .execute(&self.inner.pool)
            })
            .await?;
            Ok(())
        })
        .await
    }

    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()> {
        let (namespace, keys) = (namespace.as_str(), keys.as_slice());
        self.within_deadline(async {
            if keys.is_empty() {
                return Ok(());
            }
            if keys.len() > STATEMENT_ITEMS {
                let order = key_order(keys, |key| key).await?;
                return self
                    .in_statements(KV_DELETE_MANY_BEGIN, &order, |tx, chunk| {
                        let keys: Vec<&str> = chunk.iter().map(|&i| keys[i]).collect();
                        let query = sqlx::query(self.inner.own.kv_delete_many.clone())
                            .bind(namespace)
                            .bind(keys);
                        Box::pin(query.execute(&mut **tx))
                    })
                    .await;
            }
            retry_conflicts(|| async move {
                let mut tx = self.inner.pool.begin_with(KV_DELETE_MANY_BEGIN).await?;
                sqlx::query(self.inner.own.kv_delete_many.clone())
                    .bind(namespace)
                    .bind(keys)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
            .await
        })
        .await
    }

    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>> {
        self.listing(&namespace, prefix, KEYS_WHOLE, KEYS_PAGE)
    }

    async fn clear(&self, namespace: Namespace<'_>) -> Result<()> {
        sqlx::query(self.inner.sql.kv_clear.clone())
            .bind(namespace.as_str())
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            self.start_purger();
            let stored = sqlx::query(self.inner.sql.kv_insert_if_absent.clone())
                .bind(namespace)
                .bind(key)
                .bind(value)
                .bind(expiry.millis())
                .bind(now_millis())
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(stored.rows_affected() == 1)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            self.start_purger();
            let swapped = sqlx::query(self.inner.sql.kv_swap.clone())
                .bind(namespace)
                .bind(key)
                .bind(new)
                .bind(expiry.millis())
                .bind(expected)
                .bind(now_millis())
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(swapped.rows_affected() == 1)
        })
        .await
    }

    async fn increment(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            self.start_purger();
            let new_expiry = expiry.millis();
            let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
            let row = sqlx::query(self.inner.own.kv_lock_counter.clone())
                .bind(namespace)
                .bind(key)
                .bind(new_expiry)
                .bind(now_millis())
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_error)?;
            let current: Vec<u8> = row.try_get(0).map_err(pg_error)?;
            // On a non-counter value or an overflow the transaction is dropped, which rolls back
            // and leaves the stored value as it was.
            let value = counter::add(Some(&current), delta)?;
            sqlx::query(self.inner.own.kv_set_value.clone())
                .bind(namespace)
                .bind(key)
                .bind(counter::encode(value))
                .execute(&mut *tx)
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok(value)
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.purge_all_expired().await
    }

    async fn set_expiry(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expiry: Expiry,
    ) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            self.start_purger();
            let changed = sqlx::query(self.inner.sql.kv_set_expiry.clone())
                .bind(namespace)
                .bind(key)
                .bind(expiry.millis())
                .bind(now_millis())
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?;
            Ok(changed.rows_affected() == 1)
        })
        .await
    }

    async fn get_stored(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.within_deadline(async {
            sqlx::query_as(self.inner.sql.kv_get_any.clone())
                .bind(namespace)
                .bind(key)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_error)
        })
        .await
    }

    fn keep_expired(&self) -> std::time::Duration {
        self.inner.keep_expired
    }
}

/// What `storekit copy` reads and writes of the key-value store.
#[async_trait]
impl KvTransferBackend for PostgresStore {
    /// One page of live items after `after`, in (namespace, key) order.
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let namespace = namespace.map(|n| n.as_str());
        self.within_deadline(async {
            let sql = self
                .inner
                .sql
                .kv_export(namespace.is_some(), after.is_some());
            let mut query = sqlx::query(sql.clone())
                .bind(now_millis())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX));
            if let Some(namespace) = namespace {
                query = query.bind(namespace);
            }
            if let Some(after) = after {
                query = query.bind(&after.namespace).bind(&after.key);
            }
            // As for `keys_page`: an index walk from the last position, never a sort of
            // everything after it on every page, even before the table has statistics.
            let mut tx = self
                .inner
                .pool
                .begin_with("BEGIN READ ONLY; SET LOCAL enable_sort = off")
                .await
                .map_err(pg_error)?;
            let rows = query.fetch_all(&mut *tx).await.map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            rows.iter()
                .map(|row| {
                    Ok(KvEntry {
                        namespace: row.try_get(0).map_err(pg_error)?,
                        key: row.try_get(1).map_err(pg_error)?,
                        value: row.try_get(2).map_err(pg_error)?,
                        expires_at: row.try_get(3).map_err(pg_error)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Writes every item with its own deadline in one statement.
    async fn import_kv(&self, items: &[KvEntry]) -> Result<()> {
        self.within_deadline(async {
            self.start_purger();
            // In key order, as `set_many` writes, so that concurrent batches over the same
            // keys wait for each other instead of deadlocking.
            let mut sorted: Vec<&KvEntry> = items.iter().collect();
            sorted.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
            let namespaces: Vec<&str> = sorted.iter().map(|e| e.namespace.as_str()).collect();
            let keys: Vec<&str> = sorted.iter().map(|e| e.key.as_str()).collect();
            let values: Vec<&[u8]> = sorted.iter().map(|e| e.value.as_slice()).collect();
            let deadlines: Vec<Option<i64>> = sorted.iter().map(|e| e.expires_at).collect();
            retry_conflicts(|| {
                sqlx::query(self.inner.own.kv_import.clone())
                    .bind(&namespaces)
                    .bind(&keys)
                    .bind(&values)
                    .bind(&deadlines)
                    .execute(&self.inner.pool)
            })
            .await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::TryStreamExt as _;
    use storekit_core::{KvStore as _, Result};

    use crate::postgres::{PostgresConfig, PostgresStore};

    /// Listings that cross many pages, ending on a short page and on an exact multiple of the
    /// page, with a prefix (one ending in `char::MAX` too), past expired rows, read whole and
    /// read whole first then in pages: the conformance suite's namespaces fit in one of the
    /// store's real listings, so the statement that continues a listing is checked here.
    #[tokio::test]
    async fn listings_cross_pages() -> Result<()> {
        let Ok(url) = std::env::var("STOREKIT_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "STOREKIT_POSTGRES_URL is not set and CI is"
            );
            return Ok(());
        };
        let schema = format!("kv_pages_{}", std::process::id());
        let store =
            PostgresStore::connect(&PostgresConfig::from_url(&url)?.schema(&schema)).await?;
        store.migrate().await?;
        let listed = async {
            let prefixed: Vec<String> = (0..25).map(|i| format!("p:{i:02}")).collect();
            let last_char: Vec<String> = vec!["r\u{10FFFF}".into(), "r\u{10FFFF}a".into()];
            let mut all: Vec<String> = prefixed
                .iter()
                .chain(&last_char)
                .cloned()
                .chain(["a", "o", "p", "q:1", "s", "z"].map(String::from))
                .collect();
            all.sort();
            let items: Vec<(&str, &[u8])> = all.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
            store.set_many("paged", &items, None).await?;
            let expired: Vec<(&str, &[u8])> = vec![("p:00x", b"v"), ("p:99", b"v"), ("b", b"v")];
            store
                .set_many("paged", &expired, Some(Duration::from_millis(1)))
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut wrong = Vec::new();
            // In pages only, then whole (at most 1,000 keys), then whole first and in pages
            // after it (at most 10 keys at once).
            for (prefix, want) in [("p:", &prefixed), ("", &all), ("r\u{10FFFF}", &last_char)] {
                let paged: Vec<String> = store
                    .keys_in_pages("paged", prefix, 4)
                    .try_collect()
                    .await?;
                let whole: Vec<String> = store
                    .listing("paged", prefix, 1000, 4)
                    .try_collect()
                    .await?;
                let past: Vec<String> = store.listing("paged", prefix, 10, 5).try_collect().await?;
                for (how, listed) in [("paged", paged), ("whole", whole), ("past", past)] {
                    if listed != *want {
                        wrong.push(format!("{prefix:?} {how}: {listed:?}"));
                    }
                }
            }
            Ok::<_, storekit_core::Error>(wrong)
        }
        .await;
        store.drop_tables().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\"")))
            .execute(store.pool())
            .await
            .map_err(super::pg_error)?;
        assert_eq!(
            listed?,
            Vec::<String>::new(),
            "every live key once, in key order"
        );
        Ok(())
    }
}
