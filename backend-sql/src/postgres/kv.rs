//! The key-value store on PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::Row as _;
use storekit_core::Result;
use storekit_core::backend::{Expiry, Items, Key, Keys, KvBackend, Namespace};
use storekit_core::kv::{KeyPage, PageSizes, counter, ordered_key_pages};
use storekit_core::time::{is_live, now_millis, purge_horizon};
use storekit_core::transfer::{KvEntry, KvPosition, KvTransferBackend};

use super::PostgresStore;
use super::error::{pg_error, retry_conflicts};
use super::schema::KV_DELETE_MANY_BEGIN;
use crate::purge;

/// Keys fetched per query while listing. Each page is one index walk from the last key, in a
/// transaction of its own (three round trips), so small pages only add round trips; ten
/// thousand keys of at most 512 bytes keep one page under 5 MB.
const KEYS_PAGE: i64 = 10_000;

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
        let mut purged = 0;
        loop {
            let deleted = sqlx::query(self.inner.sql.kv_purge_some.clone())
                .bind(purge_horizon(now_millis(), self.inner.keep_expired))
                .bind(purge::BATCH)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_error)?
                .rows_affected();
            purged += deleted;
            if deleted < purge::BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    async fn keys_page(
        &self,
        namespace: &str,
        from: &str,
        first: bool,
        page: i64,
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
            .bind(page)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(KeyPage::from_iter(keys))
    }

    /// `keys`, in pages of `page` keys (a parameter so that tests can cross pages cheaply).
    fn keys_in_pages(
        &self,
        namespace: &str,
        prefix: &str,
        page: i64,
    ) -> BoxStream<'static, Result<String>> {
        let size = usize::try_from(page).unwrap_or(usize::MAX);
        // Owned once per listing and shared by its pages: a page costs a reference count.
        let listing = Arc::new((self.clone(), namespace.to_owned(), prefix.to_owned()));
        ordered_key_pages(
            prefix.to_owned(),
            PageSizes::fixed(size),
            move |after, _| {
                let listing = listing.clone();
                async move {
                    let (store, namespace, prefix) = &*listing;
                    match after {
                        None => store.keys_page(namespace, prefix, true, page).await,
                        Some(after) => store.keys_page(namespace, &after, false, page).await,
                    }
                }
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
        self.keys_in_pages(&namespace, prefix, KEYS_PAGE)
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
    /// page, with a prefix, past expired rows: the conformance suite's namespaces fit in one of
    /// the store's real pages, so the statement that continues a listing is checked here.
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
            let mut all: Vec<String> = prefixed
                .iter()
                .cloned()
                .chain(["a", "o", "p", "q:1", "z"].map(String::from))
                .collect();
            all.sort();
            let items: Vec<(&str, &[u8])> = all.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
            store.set_many("paged", &items, None).await?;
            let expired: Vec<(&str, &[u8])> = vec![("p:00x", b"v"), ("p:99", b"v"), ("b", b"v")];
            store
                .set_many("paged", &expired, Some(Duration::from_millis(1)))
                .await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let by_prefix: Vec<String> =
                store.keys_in_pages("paged", "p:", 4).try_collect().await?;
            let whole: Vec<String> = store.keys_in_pages("paged", "", 5).try_collect().await?;
            Ok::<_, storekit_core::Error>((by_prefix == prefixed, whole == all))
        }
        .await;
        store.drop_tables().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\"")))
            .execute(store.pool())
            .await
            .map_err(super::pg_error)?;
        assert_eq!(listed?, (true, true), "every live key once, in key order");
        Ok(())
    }
}
