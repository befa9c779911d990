//! The key-value store on PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use sqlx::Row as _;
use storekit_core::kv::{counter, ordered_key_pages};
use storekit_core::time::{expiry_millis, is_live, now_millis};
use storekit_core::{KvStore, Result, validate};

use super::PostgresStore;
use super::error::pg_error;
use crate::purge;

/// Keys fetched per query while listing.
const KEYS_PAGE: i64 = 1000;

impl PostgresStore {
    /// Starts the background purge of expired items, once (see `crate::purge`).
    fn start_purger(&self) {
        self.inner
            .purger
            .ensure_started(Arc::downgrade(&self.inner), |inner| async move {
                PostgresStore { inner }.purge_all_expired().await
            });
    }

    /// Deletes every expired item, a batch per statement so that no transaction runs long.
    async fn purge_all_expired(&self) -> Result<u64> {
        let mut purged = 0;
        loop {
            let deleted = sqlx::query(self.inner.sql.kv_purge_some.clone())
                .bind(now_millis())
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

    async fn keys_page(&self, namespace: &str, from: &str, first: bool) -> Result<Vec<String>> {
        let sql = &self.inner.sql;
        let sql = if first {
            &sql.kv_keys_first
        } else {
            &sql.kv_keys_after
        };
        sqlx::query_scalar(sql.clone())
            .bind(namespace)
            .bind(from)
            .bind(now_millis())
            .bind(KEYS_PAGE)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(pg_error)
    }
}

#[async_trait]
impl KvStore for PostgresStore {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate::check_keys(namespace, &[key])?;
        sqlx::query_scalar(self.inner.sql.kv_get.clone())
            .bind(namespace)
            .bind(key)
            .bind(now_millis())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(pg_error)
    }

    async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.start_purger();
        validate::check_entry(namespace, key, value)?;
        sqlx::query(self.inner.sql.kv_upsert.clone())
            .bind(namespace)
            .bind(key)
            .bind(value)
            .bind(expiry_millis(ttl)?)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        let removed: Option<Option<i64>> = sqlx::query_scalar(self.inner.sql.kv_delete.clone())
            .bind(namespace)
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(removed.is_some_and(|expires_at| is_live(expires_at, now_millis())))
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        sqlx::query_scalar(self.inner.sql.kv_contains.clone())
            .bind(namespace)
            .bind(key)
            .bind(now_millis())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_error)
    }

    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        validate::check_keys(namespace, keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(self.inner.sql.kv_get_many.clone())
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
    }

    async fn set_many(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.start_purger();
        for (key, value) in items {
            validate::check_entry(namespace, key, value)?;
        }
        let expires_at = expiry_millis(ttl)?;
        // One upsert cannot touch a row twice, so repeated keys keep only their last value.
        let mut last: HashMap<&str, &[u8]> = HashMap::with_capacity(items.len());
        for (key, value) in items {
            last.insert(key, value);
        }
        if last.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<&str>, Vec<&[u8]>) = last.into_iter().unzip();
        sqlx::query(self.inner.sql.kv_upsert_many.clone())
            .bind(namespace)
            .bind(keys)
            .bind(values)
            .bind(expires_at)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
        validate::check_keys(namespace, keys)?;
        sqlx::query(self.inner.sql.kv_delete_many.clone())
            .bind(namespace)
            .bind(keys)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    fn keys<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> BoxStream<'a, Result<String>> {
        if let Err(e) = validate::check_namespace(namespace).and(validate::check_prefix(prefix)) {
            return stream::once(async { Err(e) }).boxed();
        }
        ordered_key_pages(prefix, KEYS_PAGE as usize, move |after| async move {
            match after {
                None => self.keys_page(namespace, prefix, true).await,
                Some(after) => self.keys_page(namespace, &after, false).await,
            }
        })
    }

    async fn clear(&self, namespace: &str) -> Result<()> {
        validate::check_namespace(namespace)?;
        sqlx::query(self.inner.sql.kv_clear.clone())
            .bind(namespace)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.start_purger();
        validate::check_entry(namespace, key, value)?;
        let stored = sqlx::query(self.inner.sql.kv_insert_if_absent.clone())
            .bind(namespace)
            .bind(key)
            .bind(value)
            .bind(expiry_millis(ttl)?)
            .bind(now_millis())
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(stored.rows_affected() == 1)
    }

    async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.start_purger();
        let Some(expected) = expected else {
            return self.set_if_absent(namespace, key, new, ttl).await;
        };
        validate::check_entry(namespace, key, new)?;
        let swapped = sqlx::query(self.inner.sql.kv_swap.clone())
            .bind(namespace)
            .bind(key)
            .bind(new)
            .bind(expiry_millis(ttl)?)
            .bind(expected)
            .bind(now_millis())
            .execute(&self.inner.pool)
            .await
            .map_err(pg_error)?;
        Ok(swapped.rows_affected() == 1)
    }

    async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        self.start_purger();
        validate::check_keys(namespace, &[key])?;
        let new_expiry = expiry_millis(ttl)?;
        let mut tx = self.inner.pool.begin().await.map_err(pg_error)?;
        let row = sqlx::query(self.inner.sql.kv_lock_counter.clone())
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
        sqlx::query(self.inner.sql.kv_set_value.clone())
            .bind(namespace)
            .bind(key)
            .bind(counter::encode(value))
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(value)
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.purge_all_expired().await
    }
}
