//! The key-value store on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use rusqlite::{Connection, ToSql, TransactionBehavior, named_params};
use storekit_core::backend::{Expiry, Items, Key, Keys, KvBackend, Namespace};
use storekit_core::kv::{KeyPage, PageSizes, counter};
use storekit_core::time::{is_live, now_millis, purge_horizon};
use storekit_core::transfer::{KvEntry, KvPosition, KvTransferBackend};
use storekit_core::{Error, Result};

use super::error::sqlite_error;
use super::step::{any_row, first_row};
use super::{Inner, SqliteStore};
use crate::purge;

/// Keys fetched per query while listing, inline, with the runtime serving other tasks between
/// pages: from 64 (a listing of a narrow prefix reads little past it) up to 1,024, about
/// 200 µs of work (as long as a batch chunk), which makes the query's own cost (a read
/// transaction and a seek, ~5 µs) negligible. With pages of 256, a long listing ran at 0.8 of
/// one unbroken query; with 1,024, at 0.9.
const KEYS_PAGES: PageSizes = PageSizes {
    first: 64,
    max: 1024,
};

/// A batch runs inline in one transaction, a chunk of at most this many items (or
/// [`CHUNK_BYTES`]) at a time, yielding to the runtime between chunks: each chunk takes about
/// as long as one short statement, and no thread hop is paid.
const CHUNK_ITEMS: usize = 32;
/// See [`CHUNK_ITEMS`].
const CHUNK_BYTES: usize = 64 * 1024;

/// Batches larger than this (items, or value bytes) run on the blocking pool instead, where
/// they use another core and the copy and thread hop they cost (~50-100 µs measured here) are
/// small next to the work.
const BLOCKING_ITEMS: usize = 1024;
/// See [`BLOCKING_ITEMS`].
const BLOCKING_BYTES: usize = 1024 * 1024;

impl SqliteStore {
    /// Starts the background purge of expired items, once (see `crate::purge`).
    pub(super) fn start_purger(&self) {
        self.inner
            .purger
            .ensure_started(Arc::downgrade(&self.inner), |inner| async move {
                let store = SqliteStore { inner };
                let items = store.purge_all_expired().await?;
                Ok(items + store.purge_expired_records().await?)
            });
    }

    /// Deletes every expired item, a batch per transaction so that writers take turns.
    async fn purge_all_expired(&self) -> Result<u64> {
        crate::kv::purge_in_batches(|| {
            let inner = self.inner.clone();
            self.inner.conns.write_blocking(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&inner.sql.kv_purge_some)
                    .map_err(sqlite_error)?;
                let horizon = purge_horizon(now_millis(), inner.keep_expired);
                stmt.execute(named_params! { ":now": horizon, ":limit": purge::BATCH })
                    .map(|deleted| deleted as u64)
                    .map_err(sqlite_error)
            })
        })
        .await
    }

    async fn keys_page(
        &self,
        namespace: &str,
        from: &str,
        first: bool,
        limit: usize,
    ) -> Result<KeyPage> {
        if !first {
            // A long listing is many pages; the runtime serves other tasks between them even
            // if the caller never awaits anything else.
            tokio::task::yield_now().await;
        }
        let sql = match first {
            true => &self.inner.sql.kv_keys_first,
            false => &self.inner.sql.kv_keys_after,
        };
        let now = now_millis();
        self.inner
            .conns
            .read(|conn| {
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                let params = named_params! {
                    ":ns": namespace, ":from": from, ":now": now, ":limit": limit as i64,
                };
                let mut keys = KeyPage::with_capacity(limit);
                let mut rows = stmt.query(params).map_err(sqlite_error)?;
                while let Some(row) = rows.next().map_err(sqlite_error)? {
                    // Copied straight from SQLite's row into the page (see `KeyPage`).
                    let key = row.get_ref(0).map_err(sqlite_error)?;
                    keys.push(key.as_str().map_err(|e| Error::backend("sqlite", e))?);
                }
                Ok(keys)
            })
            .await
    }
}

/// Splits `items` into runs of at most `max_items` items and `max_bytes` bytes (a single
/// larger item is a run of its own).
fn chunks<I>(
    items: &[I],
    max_items: usize,
    max_bytes: usize,
    bytes: impl Fn(&I) -> usize,
) -> impl Iterator<Item = &[I]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = 0;
        let mut len = 0;
        while len < rest.len().min(max_items) {
            size += bytes(&rest[len]);
            if len > 0 && size > max_bytes {
                break;
            }
            len += 1;
        }
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

fn value_bytes(item: &(&str, &[u8])) -> usize {
    item.0.len() + item.1.len()
}

/// True if a batch is too large to run inline (see [`BLOCKING_ITEMS`]).
fn is_large(count: usize, bytes: usize) -> bool {
    count > BLOCKING_ITEMS || bytes > BLOCKING_BYTES
}

/// Stores every item with one deadline; the caller holds a write transaction.
fn upsert_each(
    conn: &Connection,
    inner: &Inner,
    namespace: &str,
    items: &[(&str, &[u8])],
    expires_at: Option<i64>,
) -> Result<Vec<()>> {
    let mut stmt = conn
        .prepare_cached(&inner.sql.kv_upsert)
        .map_err(sqlite_error)?;
    for (key, value) in items {
        stmt.execute(named_params! {
            ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
        })
        .map_err(sqlite_error)?;
    }
    Ok(Vec::new())
}

/// Deletes every key; the caller holds a write transaction.
fn delete_each(
    conn: &Connection,
    inner: &Inner,
    namespace: &str,
    keys: &[&str],
) -> Result<Vec<()>> {
    let mut stmt = conn
        .prepare_cached(&inner.own.kv_delete_any)
        .map_err(sqlite_error)?;
    for key in keys {
        stmt.execute(named_params! { ":ns": namespace, ":key": key })
            .map_err(sqlite_error)?;
    }
    Ok(Vec::new())
}

/// The values of `keys` as of `now`; the caller holds a read transaction.
fn get_each(
    conn: &Connection,
    inner: &Inner,
    namespace: &str,
    keys: &[&str],
    now: i64,
) -> Result<Vec<Option<Vec<u8>>>> {
    let mut stmt = conn
        .prepare_cached(&inner.sql.kv_get)
        .map_err(sqlite_error)?;
    keys.iter()
        .map(|key| {
            first_row(
                &mut stmt,
                named_params! { ":ns": namespace, ":key": key, ":now": now },
                |row| row.get(0),
            )
            .map_err(sqlite_error)
        })
        .collect()
}

/// Runs `step` in one transaction of `behavior` (for work sent to the blocking pool).
fn in_one_transaction<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    step: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(behavior)
        .map_err(sqlite_error)?;
    let out = step(&tx)?;
    tx.commit().map_err(sqlite_error)?;
    Ok(out)
}

/// Owned copies of borrowed keys, to hand to the blocking pool.
/// The keys, copied a chunk at a time with yields between (see `crate::chunked`).
async fn owned_keys(keys: &[&str]) -> Vec<String> {
    crate::chunked::copied(keys, |key| (*key).to_owned()).await
}

fn borrowed(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

#[async_trait]
impl KvBackend for SqliteStore {
    async fn get(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
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
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        let expires_at = expiry.millis();
        self.start_purger();
        let (inner, namespace, key, value) = (
            self.inner.clone(),
            namespace.to_string(),
            key.to_string(),
            value.to_vec(),
        );
        self.inner
            .conns
            .write_grouped(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&inner.sql.kv_upsert)
                    .map_err(sqlite_error)?;
                stmt.execute(named_params! {
                    ":ns": namespace, ":key": key, ":value": value, ":exp": expires_at,
                })
                .map_err(sqlite_error)?;
                Ok(())
            })
            .await
    }

    async fn delete(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let (inner, namespace, key) = (self.inner.clone(), namespace.to_string(), key.to_string());
        self.inner
            .conns
            .write_grouped(move |conn| {
                // Deleting a live item is one plain statement (no RETURNING, which costs an
                // extra pass); only when none was there is an expired row removed as well.
                let params = named_params! { ":ns": namespace, ":key": key, ":now": now_millis() };
                let mut live = conn
                    .prepare_cached(&inner.own.kv_delete_live)
                    .map_err(sqlite_error)?;
                if live.execute(params).map_err(sqlite_error)? == 1 {
                    return Ok(true);
                }
                let mut expired = conn
                    .prepare_cached(&inner.own.kv_delete_expired)
                    .map_err(sqlite_error)?;
                expired.execute(params).map_err(sqlite_error)?;
                Ok(false)
            })
            .await
    }

    async fn contains(&self, namespace: Namespace<'_>, key: Key<'_>) -> Result<bool> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
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

    async fn get_many(
        &self,
        namespace: Namespace<'_>,
        keys: Keys<'_>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let (namespace, keys) = (namespace.as_str(), keys.as_slice());
        let (conns, now) = (&self.inner.conns, now_millis());
        if !is_large(keys.len(), 0) {
            return conns
                .read_chunks(keys.chunks(CHUNK_ITEMS), |conn, keys| {
                    get_each(conn, &self.inner, namespace, keys, now)
                })
                .await;
        }
        let (inner, namespace, keys) = (
            self.inner.clone(),
            namespace.to_string(),
            owned_keys(keys).await,
        );
        conns
            .read_blocking(move |conn| {
                let tx = conn.unchecked_transaction().map_err(sqlite_error)?;
                let values = get_each(&tx, &inner, &namespace, &borrowed(&keys), now)?;
                tx.commit().map_err(sqlite_error)?;
                Ok(values)
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
        let expires_at = expiry.millis();
        self.start_purger();
        let conns = &self.inner.conns;
        let bytes = items.iter().map(value_bytes).sum();
        if !is_large(items.len(), bytes) {
            let parts = chunks(items, CHUNK_ITEMS, CHUNK_BYTES, value_bytes);
            conns
                .write_chunks(parts, |conn, items| {
                    upsert_each(conn, &self.inner, namespace, items, expires_at)
                })
                .await?;
            return Ok(());
        }
        let inner = self.inner.clone();
        let namespace = namespace.to_string();
        let owned: Vec<(String, Vec<u8>)> =
            crate::chunked::copied(items, |(key, value)| ((*key).to_owned(), value.to_vec())).await;
        conns
            .write_blocking(move |conn| {
                let items: Vec<(&str, &[u8])> = owned
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_slice()))
                    .collect();
                in_one_transaction(conn, TransactionBehavior::Immediate, |tx| {
                    upsert_each(tx, &inner, &namespace, &items, expires_at)
                })
            })
            .await?;
        Ok(())
    }

    async fn delete_many(&self, namespace: Namespace<'_>, keys: Keys<'_>) -> Result<()> {
        let (namespace, keys) = (namespace.as_str(), keys.as_slice());
        let conns = &self.inner.conns;
        if !is_large(keys.len(), 0) {
            conns
                .write_chunks(keys.chunks(CHUNK_ITEMS), |conn, keys| {
                    delete_each(conn, &self.inner, namespace, keys)
                })
                .await?;
            return Ok(());
        }
        let (inner, namespace, keys) = (
            self.inner.clone(),
            namespace.to_string(),
            owned_keys(keys).await,
        );
        conns
            .write_blocking(move |conn| {
                in_one_transaction(conn, TransactionBehavior::Immediate, |tx| {
                    delete_each(tx, &inner, &namespace, &borrowed(&keys))
                })
            })
            .await?;
        Ok(())
    }

    fn keys(&self, namespace: Namespace<'_>, prefix: &str) -> BoxStream<'static, Result<String>> {
        crate::kv::key_pages(
            self.clone(),
            &namespace,
            prefix,
            KEYS_PAGES,
            |store, namespace, from, first, limit| {
                Box::pin(store.keys_page(namespace, from, first, limit))
            },
        )
    }

    async fn clear(&self, namespace: Namespace<'_>) -> Result<()> {
        let (inner, namespace) = (self.inner.clone(), namespace.to_string());
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
        namespace: Namespace<'_>,
        key: Key<'_>,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let expires_at = expiry.millis();
        self.start_purger();
        let (inner, namespace, key, value) = (
            self.inner.clone(),
            namespace.to_string(),
            key.to_string(),
            value.to_vec(),
        );
        let stored = self
            .inner
            .conns
            .write_grouped(move |conn| {
                let sql = &inner.sql.kv_insert_if_absent;
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
        namespace: Namespace<'_>,
        key: Key<'_>,
        expected: &[u8],
        new: &[u8],
        expiry: Expiry,
    ) -> Result<bool> {
        let expires_at = expiry.millis();
        self.start_purger();
        let (inner, namespace, key, new, expected) = (
            self.inner.clone(),
            namespace.to_string(),
            key.to_string(),
            new.to_vec(),
            expected.to_vec(),
        );
        let swapped = self
            .inner
            .conns
            .write_grouped(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&inner.sql.kv_swap)
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
        namespace: Namespace<'_>,
        key: Key<'_>,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        let new_expiry = expiry.millis();
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

    async fn set_expiry(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
        expiry: Expiry,
    ) -> Result<bool> {
        let expires_at = expiry.millis();
        self.start_purger();
        let (inner, namespace, key) = (self.inner.clone(), namespace.to_string(), key.to_string());
        let changed = self
            .inner
            .conns
            .write_grouped(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&inner.sql.kv_set_expiry)
                    .map_err(sqlite_error)?;
                stmt.execute(named_params! {
                    ":ns": namespace, ":key": key, ":exp": expires_at, ":now": now_millis(),
                })
                .map_err(sqlite_error)
            })
            .await?;
        Ok(changed == 1)
    }

    async fn get_stored(
        &self,
        namespace: Namespace<'_>,
        key: Key<'_>,
    ) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        let (namespace, key) = (namespace.as_str(), key.as_str());
        self.inner
            .conns
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached(&self.inner.sql.kv_get_any)
                    .map_err(sqlite_error)?;
                first_row(
                    &mut stmt,
                    named_params! { ":ns": namespace, ":key": key },
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sqlite_error)
            })
            .await
    }

    fn keep_expired(&self) -> std::time::Duration {
        self.inner.keep_expired
    }
}

/// What `storekit copy` reads and writes of the key-value store.
#[async_trait]
impl KvTransferBackend for SqliteStore {
    /// One page of live items after `after`, in (namespace, key) order (on the blocking pool:
    /// a page of a thousand values may be large).
    async fn export_kv(
        &self,
        namespace: Option<Namespace<'_>>,
        after: Option<&KvPosition>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let inner = self.inner.clone();
        let (namespace, after) = (namespace.map(|n| n.as_str().to_owned()), after.cloned());
        let (now, limit) = (now_millis(), i64::try_from(limit).unwrap_or(i64::MAX));
        self.inner
            .conns
            .read_blocking(move |conn| {
                let sql = inner.sql.kv_export(namespace.is_some(), after.is_some());
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                let mut params: Vec<(&str, &dyn ToSql)> = vec![(":now", &now), (":limit", &limit)];
                if let Some(namespace) = &namespace {
                    params.push((":only", namespace));
                }
                if let Some(after) = &after {
                    params.extend([
                        (":ns", &after.namespace as &dyn ToSql),
                        (":key", &after.key),
                    ]);
                }
                stmt.query_map(params.as_slice(), |row| {
                    Ok(KvEntry {
                        namespace: row.get(0)?,
                        key: row.get(1)?,
                        value: row.get(2)?,
                        expires_at: row.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(sqlite_error)
            })
            .await
    }

    /// Writes every item with its own deadline in one transaction, as `set_many` writes.
    async fn import_kv(&self, items: &[KvEntry]) -> Result<()> {
        self.start_purger();
        let conns = &self.inner.conns;
        let bytes = items.iter().map(entry_bytes).sum();
        if !is_large(items.len(), bytes) {
            let parts = chunks(items, CHUNK_ITEMS, CHUNK_BYTES, entry_bytes);
            conns
                .write_chunks(parts, |conn, items| {
                    upsert_entries(conn, &self.inner, items)
                })
                .await?;
            return Ok(());
        }
        let (inner, items) = (self.inner.clone(), items.to_vec());
        conns
            .write_blocking(move |conn| {
                in_one_transaction(conn, TransactionBehavior::Immediate, |tx| {
                    upsert_entries(tx, &inner, &items)
                })
            })
            .await?;
        Ok(())
    }
}

fn entry_bytes(entry: &KvEntry) -> usize {
    entry.namespace.len() + entry.key.len() + entry.value.len()
}

/// Stores every entry with its deadline; the caller holds a write transaction.
fn upsert_entries(conn: &Connection, inner: &Inner, entries: &[KvEntry]) -> Result<Vec<()>> {
    let mut stmt = conn
        .prepare_cached(&inner.sql.kv_upsert)
        .map_err(sqlite_error)?;
    for entry in entries {
        stmt.execute(named_params! {
            ":ns": entry.namespace, ":key": entry.key, ":value": entry.value,
            ":exp": entry.expires_at,
        })
        .map_err(sqlite_error)?;
    }
    Ok(Vec::new())
}
