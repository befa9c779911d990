//! The key-value store on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use rusqlite::{OptionalExtension, TransactionBehavior, named_params};
use storekit_core::kv::{counter, ordered_key_pages};
use storekit_core::time::{expiry_millis, is_live, now_millis};
use storekit_core::{KvStore, Result, validate};

use super::SqliteStore;
use super::error::sqlite_error;
use crate::purge::PurgeSchedule;

/// Keys fetched per query while listing.
const KEYS_PAGE: i64 = 500;

impl SqliteStore {
    fn upsert_all(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        expires_at: Option<i64>,
    ) -> Result<()> {
        self.inner.conns.write(|conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            {
                let mut stmt = tx
                    .prepare_cached(&self.inner.sql.kv_upsert)
                    .map_err(sqlite_error)?;
                for (key, value) in items {
                    stmt.execute(named_params! {
                        ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
                    })
                    .map_err(sqlite_error)?;
                }
            }
            tx.commit().map_err(sqlite_error)
        })
    }

    /// Deletes a batch of expired rows if this write is one that should (see `crate::purge`).
    fn purge_some_if_due(&self, writes: usize) -> Result<()> {
        if !self.inner.purge.due(writes as u64) {
            return Ok(());
        }
        self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_purge_some)
                .map_err(sqlite_error)?;
            stmt.execute(named_params! { ":now": now_millis(), ":limit": PurgeSchedule::BATCH })
                .map_err(sqlite_error)?;
            Ok(())
        })
    }

    fn keys_page(&self, namespace: &str, from: &str, first: bool) -> Result<Vec<String>> {
        let sql = &self.inner.sql;
        let sql = if first {
            &sql.kv_keys_first
        } else {
            &sql.kv_keys_after
        };
        self.inner.conns.read(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
            let params = named_params! {
                ":ns": namespace, ":from": from, ":now": now_millis(), ":limit": KEYS_PAGE,
            };
            stmt.query_map(params, |row| row.get(0))
                .and_then(|rows| rows.collect())
                .map_err(sqlite_error)
        })
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate::check_keys(namespace, &[key])?;
        self.inner.conns.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_get)
                .map_err(sqlite_error)?;
            stmt.query_row(
                named_params! { ":ns": namespace, ":key": key, ":now": now_millis() },
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error)
        })
    }

    async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        validate::check_entry(namespace, key, value)?;
        let expires_at = expiry_millis(ttl)?;
        self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_upsert)
                .map_err(sqlite_error)?;
            stmt.execute(named_params! {
                ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
            })
            .map_err(sqlite_error)?;
            Ok(())
        })?;
        self.purge_some_if_due(1)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        let removed: Option<Option<i64>> = self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_delete)
                .map_err(sqlite_error)?;
            stmt.query_row(named_params! { ":ns": namespace, ":key": key }, |row| {
                row.get(0)
            })
            .optional()
            .map_err(sqlite_error)
        })?;
        Ok(removed.is_some_and(|expires_at| is_live(expires_at, now_millis())))
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        self.inner.conns.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_contains)
                .map_err(sqlite_error)?;
            stmt.exists(named_params! { ":ns": namespace, ":key": key, ":now": now_millis() })
                .map_err(sqlite_error)
        })
    }

    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        validate::check_keys(namespace, keys)?;
        let now = now_millis();
        self.inner.conns.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_get)
                .map_err(sqlite_error)?;
            keys.iter()
                .map(|key| {
                    stmt.query_row(
                        named_params! { ":ns": namespace, ":key": key, ":now": now },
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sqlite_error)
                })
                .collect()
        })
    }

    async fn set_many(
        &self,
        namespace: &str,
        items: &[(&str, &[u8])],
        ttl: Option<Duration>,
    ) -> Result<()> {
        for (key, value) in items {
            validate::check_entry(namespace, key, value)?;
        }
        let expires_at = expiry_millis(ttl)?;
        self.upsert_all(namespace, items, expires_at)?;
        self.purge_some_if_due(items.len())
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
        validate::check_keys(namespace, keys)?;
        self.inner.conns.write(|conn| {
            let tx = conn.transaction().map_err(sqlite_error)?;
            {
                let mut stmt = tx
                    .prepare_cached(&self.inner.sql.kv_delete)
                    .map_err(sqlite_error)?;
                for key in keys {
                    let mut rows = stmt
                        .query(named_params! { ":ns": namespace, ":key": key })
                        .map_err(sqlite_error)?;
                    while rows.next().map_err(sqlite_error)?.is_some() {}
                }
            }
            tx.commit().map_err(sqlite_error)
        })
    }

    fn keys<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> BoxStream<'a, Result<String>> {
        if let Err(e) = validate::check_namespace(namespace).and(validate::check_prefix(prefix)) {
            return stream::once(async { Err(e) }).boxed();
        }
        ordered_key_pages(prefix, KEYS_PAGE as usize, move |after| async move {
            match after {
                None => self.keys_page(namespace, prefix, true),
                Some(after) => self.keys_page(namespace, &after, false),
            }
        })
    }

    async fn clear(&self, namespace: &str) -> Result<()> {
        validate::check_namespace(namespace)?;
        self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_clear)
                .map_err(sqlite_error)?;
            stmt.execute(named_params! { ":ns": namespace })
                .map_err(sqlite_error)?;
            Ok(())
        })
    }

    async fn set_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        validate::check_entry(namespace, key, value)?;
        let expires_at = expiry_millis(ttl)?;
        let stored = self.inner.conns.write(|conn| {
            let sql = &self.inner.sql.kv_insert_if_absent;
            let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
            stmt.execute(named_params! {
                ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
                ":now": now_millis(),
            })
            .map_err(sqlite_error)
        })?;
        Ok(stored == 1)
    }

    async fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let Some(expected) = expected else {
            return self.set_if_absent(namespace, key, new, ttl).await;
        };
        validate::check_entry(namespace, key, new)?;
        let expires_at = expiry_millis(ttl)?;
        let swapped = self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_swap)
                .map_err(sqlite_error)?;
            stmt.execute(named_params! {
                ":ns": namespace, ":key": key, ":value": new, ":exp": expires_at,
                ":expected": expected, ":now": now_millis(),
            })
            .map_err(sqlite_error)
        })?;
        Ok(swapped == 1)
    }

    async fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        validate::check_keys(namespace, &[key])?;
        let new_expiry = expiry_millis(ttl)?;
        self.inner.conns.write(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite_error)?;
            let current: Option<(Vec<u8>, Option<i64>)> = tx
                .prepare_cached(&self.inner.sql.kv_get_any)
                .and_then(|mut stmt| {
                    stmt.query_row(named_params! { ":ns": namespace, ":key": key }, |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
                })
                .map_err(sqlite_error)?;
            let live = current.filter(|(_, expires_at)| is_live(*expires_at, now_millis()));
            let value = counter::add(live.as_ref().map(|(v, _)| v.as_slice()), delta)?;
            let expires_at = live.map_or(new_expiry, |(_, expires_at)| expires_at);
            tx.prepare_cached(&self.inner.sql.kv_upsert)
                .and_then(|mut stmt| {
                    stmt.execute(named_params! {
                        ":ns": namespace, ":key": key, ":value": counter::encode(value),
                        ":exp": expires_at,
                    })
                })
                .map_err(sqlite_error)?;
            tx.commit().map_err(sqlite_error)?;
            Ok(value)
        })
    }

    async fn purge_expired(&self) -> Result<u64> {
        let purged = self.inner.conns.write(|conn| {
            let mut stmt = conn
                .prepare_cached(&self.inner.sql.kv_purge)
                .map_err(sqlite_error)?;
            stmt.execute(named_params! { ":now": now_millis() })
                .map_err(sqlite_error)
        })?;
        Ok(purged as u64)
    }
}
