//! The key-value store on SQLite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use futures::stream::{self, BoxStream};
use rusqlite::{Connection, TransactionBehavior, named_params};
use storekit_core::kv::{counter, ordered_key_pages};
use storekit_core::time::{expiry_millis, is_live, now_millis};
use storekit_core::{KvStore, Result, validate};

use super::error::sqlite_error;
use super::step::{any_row, first_row};
use super::{Inner, SqliteStore};
use crate::purge;

/// Keys fetched per query while listing; each page is read on the blocking pool.
const KEYS_PAGE: usize = 2000;

/// Batches up to this many items run inline; larger ones on the blocking pool. At a few
/// microseconds per row this keeps an inline batch within a short statement's time, while a
/// thread hop (~20 µs) stays small next to a batch that is sent away.
const INLINE_BATCH: usize = 32;

impl SqliteStore {
    /// Starts the background purge of expired items, once (see `crate::purge`).
    fn start_purger(&self) {
        self.inner
            .purger
            .ensure_started(Arc::downgrade(&self.inner), |inner| async move {
                SqliteStore { inner }.purge_all_expired().await
            });
    }

    /// Deletes every expired item, a batch per transaction so that writers take turns.
    async fn purge_all_expired(&self) -> Result<u64> {
        let mut purged = 0;
        loop {
            let inner = self.inner.clone();
            let deleted = self
                .inner
                .conns
                .write_blocking(move |conn| {
                    let mut stmt = conn
                        .prepare_cached(&inner.sql.kv_purge_some)
                        .map_err(sqlite_error)?;
                    stmt.execute(named_params! { ":now": now_millis(), ":limit": purge::BATCH })
                        .map_err(sqlite_error)
                })
                .await?;
            purged += deleted as u64;
            if (deleted as i64) < purge::BATCH {
                return Ok(purged);
            }
        }
    }

    fn keys_page(
        &self,
        namespace: &str,
        from: &str,
        first: bool,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + use<> {
        let store = self.inner.clone();
        let (namespace, from) = (namespace.to_owned(), from.to_owned());
        async move {
            let inner = store.clone();
            store
                .conns
                .read_blocking(move |conn| {
                    let sql = match first {
                        true => &inner.sql.kv_keys_first,
                        false => &inner.sql.kv_keys_after,
                    };
                    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                    let params = named_params! {
                        ":ns": namespace, ":from": from, ":now": now_millis(),
                        ":limit": KEYS_PAGE as i64,
                    };
                    stmt.query_map(params, |row| row.get(0))
                        .and_then(|rows| rows.collect())
                        .map_err(sqlite_error)
                })
                .await
        }
    }
}

/// Stores every item with one deadline, in one transaction.
fn upsert_all(
    conn: &mut Connection,
    inner: &Inner,
    namespace: &str,
    items: &[(&str, &[u8])],
    expires_at: Option<i64>,
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    {
        let mut stmt = tx
            .prepare_cached(&inner.sql.kv_upsert)
            .map_err(sqlite_error)?;
        for (key, value) in items {
            stmt.execute(named_params! {
                ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
            })
            .map_err(sqlite_error)?;
        }
    }
    tx.commit().map_err(sqlite_error)
}

/// Deletes every key, in one transaction.
fn delete_all(conn: &mut Connection, inner: &Inner, namespace: &str, keys: &[&str]) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error)?;
    {
        let mut stmt = tx
            .prepare_cached(&inner.sql.kv_delete)
            .map_err(sqlite_error)?;
        for key in keys {
            first_row(
                &mut stmt,
                named_params! { ":ns": namespace, ":key": key },
                |_| Ok(()),
            )
            .map_err(sqlite_error)?;
        }
    }
    tx.commit().map_err(sqlite_error)
}

/// The values of `keys` as of one moment: one read transaction.
fn get_all(
    conn: &Connection,
    inner: &Inner,
    namespace: &str,
    keys: &[&str],
) -> Result<Vec<Option<Vec<u8>>>> {
    let tx = conn.unchecked_transaction().map_err(sqlite_error)?;
    let now = now_millis();
    let values = {
        let mut stmt = tx.prepare_cached(&inner.sql.kv_get).map_err(sqlite_error)?;
        keys.iter()
            .map(|key| {
                first_row(
                    &mut stmt,
                    named_params! { ":ns": namespace, ":key": key, ":now": now },
                    |row| row.get(0),
                )
                .map_err(sqlite_error)
            })
            .collect::<Result<_>>()?
    };
    tx.commit().map_err(sqlite_error)?;
    Ok(values)
}

/// Owned copies of borrowed keys, to hand to the blocking pool.
fn owned_keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| (*key).to_owned()).collect()
}

fn borrowed(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate::check_keys(namespace, &[key])?;
        let now = now_millis();
        self.inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_get)
                    .map_err(sqlite_error)?;
                first_row(
                    &mut stmt,
                    named_params! { ":ns": namespace, ":key": key, ":now": now },
                    |row| row.get(0),
                )
                .map_err(sqlite_error)
            })
            .await
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
        self.start_purger();
        self.inner
            .conns
            .write(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_upsert)
                    .map_err(sqlite_error)?;
                stmt.execute(named_params! {
                    ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
                })
                .map_err(sqlite_error)?;
                Ok(())
            })
            .await
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        let removed: Option<Option<i64>> = self
            .inner
            .conns
            .write(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_delete)
                    .map_err(sqlite_error)?;
                first_row(
                    &mut stmt,
                    named_params! { ":ns": namespace, ":key": key },
                    |row| row.get(0),
                )
                .map_err(sqlite_error)
            })
            .await?;
        Ok(removed.is_some_and(|expires_at| is_live(expires_at, now_millis())))
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool> {
        validate::check_keys(namespace, &[key])?;
        let now = now_millis();
        self.inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_contains)
                    .map_err(sqlite_error)?;
                any_row(
                    &mut stmt,
                    named_params! { ":ns": namespace, ":key": key, ":now": now },
                )
                .map_err(sqlite_error)
            })
            .await
    }

    async fn get_many(&self, namespace: &str, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        validate::check_keys(namespace, keys)?;
        let conns = &self.inner.conns;
        if keys.len() <= INLINE_BATCH {
            return conns
                .read(|conn| get_all(conn, &self.inner, namespace, keys))
                .await;
        }
        let (inner, namespace, keys) = (self.inner.clone(), namespace.to_owned(), owned_keys(keys));
        conns
            .read_blocking(move |conn| get_all(conn, &inner, &namespace, &borrowed(&keys)))
            .await
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
        self.start_purger();
        let conns = &self.inner.conns;
        if items.len() <= INLINE_BATCH {
            return conns
                .write(|conn| upsert_all(conn, &self.inner, namespace, items, expires_at))
                .await;
        }
        let inner = self.inner.clone();
        let namespace = namespace.to_owned();
        let owned: Vec<(String, Vec<u8>)> = items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
            .collect();
        conns
            .write_blocking(move |conn| {
                let items: Vec<(&str, &[u8])> = owned
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_slice()))
                    .collect();
                upsert_all(conn, &inner, &namespace, &items, expires_at)
            })
            .await
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<()> {
        validate::check_keys(namespace, keys)?;
        let conns = &self.inner.conns;
        if keys.len() <= INLINE_BATCH {
            return conns
                .write(|conn| delete_all(conn, &self.inner, namespace, keys))
                .await;
        }
        let (inner, namespace, keys) = (self.inner.clone(), namespace.to_owned(), owned_keys(keys));
        conns
            .write_blocking(move |conn| delete_all(conn, &inner, &namespace, &borrowed(&keys)))
            .await
    }

    fn keys<'a>(&'a self, namespace: &'a str, prefix: &'a str) -> BoxStream<'a, Result<String>> {
        if let Err(e) = validate::check_namespace(namespace).and(validate::check_prefix(prefix)) {
            return stream::once(async { Err(e) }).boxed();
        }
        ordered_key_pages(prefix, KEYS_PAGE, move |after| match after {
            None => self.keys_page(namespace, prefix, true),
            Some(after) => self.keys_page(namespace, &after, false),
        })
    }

    async fn clear(&self, namespace: &str) -> Result<()> {
        validate::check_namespace(namespace)?;
        let (inner, namespace) = (self.inner.clone(), namespace.to_owned());
        self.inner
            .conns
            .write_blocking(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&inner.sql.kv_clear)
                    .map_err(sqlite_error)?;
                stmt.execute(named_params! { ":ns": namespace })
                    .map_err(sqlite_error)?;
                Ok(())
            })
            .await
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
        self.start_purger();
        let stored = self
            .inner
            .conns
            .write(|conn| {
                let sql = &self.inner.sql.kv_insert_if_absent;
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                stmt.execute(named_params! {
                    ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
                    ":now": now_millis(),
                })
                .map_err(sqlite_error)
            })
            .await?;
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
        self.start_purger();
        let swapped = self
            .inner
            .conns
            .write(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_swap)
                    .map_err(sqlite_error)?;
                stmt.execute(named_params! {
                    ":ns": namespace, ":key": key, ":value": new, ":exp": expires_at,
                    ":expected": expected, ":now": now_millis(),
                })
                .map_err(sqlite_error)
            })
            .await?;
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
        self.start_purger();
        let sql = &self.inner.sql;
        self.inner
            .conns
            .write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite_error)?;
                let current: Option<(Vec<u8>, Option<i64>)> = tx
                    .prepare_cached(&sql.kv_get_any)
                    .and_then(|mut stmt| {
                        first_row(
                            &mut stmt,
                            named_params! { ":ns": namespace, ":key": key },
                            |row| Ok((row.get(0)?, row.get(1)?)),
                        )
                    })
                    .map_err(sqlite_error)?;
                let live = current.filter(|(_, expires_at)| is_live(*expires_at, now_millis()));
                let value = counter::add(live.as_ref().map(|(v, _)| v.as_slice()), delta)?;
                let expires_at = live.map_or(new_expiry, |(_, expires_at)| expires_at);
                tx.prepare_cached(&sql.kv_upsert)
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
            .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.purge_all_expired().await
    }
}
