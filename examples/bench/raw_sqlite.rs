//! The SQLite baseline: rusqlite with cached prepared statements, run on the calling thread.
//!
//! The layout is the fastest known for these rows. Key-value rows (1 KiB values) live in a
//! rowid table with a unique index on (namespace, key): in a `WITHOUT ROWID` table such a value
//! overflows the leaf pages and every row costs several pages. User rows (~250 bytes) are above
//! SQLite's rule of thumb for `WITHOUT ROWID` (a twentieth of a page), so they too are a rowid
//! table with its id as a unique key (measured: no faster either way). WAL with
//! synchronous=NORMAL and 2 GiB of memory-mapped I/O, as storekit sets. Concurrency is what a
//! careful application would do: one writer connection behind a mutex (SQLite has one writer
//! at a time anyway) and four read-only connections that WAL lets read while it writes.
//!
//! Products are laid out as storekit's SQLite tables backend lays out a table (one rowid table
//! with a text primary key, the JSON document as text, the version, the index's key columns
//! and a B-tree over (name, updated_at, id)), so their rows measure storekit's layer alone.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use storekit::chrono::Utc;
use storekit::uuid::Uuid;
use storekit::{BoxError, async_trait};

use crate::targets::{Kv, PASSWORD_HASH, Product, Products, Users};

const READERS: usize = 4;
/// Memory-mapped reads, as storekit's default: no system call or copy per page read.
const MMAP_SIZE: i64 = 2 << 30;

const SCHEMA: &str = "
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    UNIQUE (namespace, key)
);
CREATE TABLE users (
    id BLOB PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    hashed_password TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    is_superuser INTEGER NOT NULL,
    is_verified INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    extra TEXT NOT NULL
);
";

const CREATE_PRODUCTS: &str = "
CREATE TABLE products (
    id TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    name TEXT,
    updated_at REAL
);
CREATE INDEX products_by_name ON products (name, updated_at, id);
";
const DROP_PRODUCTS: &str = "DROP TABLE IF EXISTS products";
const INSERT_PRODUCT: &str = "INSERT INTO products (id, version, document, name, updated_at) \
                              VALUES (?1, 1, ?2, ?3, ?4)";
const GET_PRODUCT: &str = "SELECT version, document FROM products WHERE id = ?1";
const REPLACE_PRODUCT: &str = "UPDATE products SET version = version + 1, document = ?2, \
                               name = ?3, updated_at = ?4 WHERE id = ?1 AND version = ?5";
const NEWEST_PRODUCTS: &str = "SELECT version, document FROM products WHERE name = ?1 \
                               ORDER BY updated_at DESC, id DESC LIMIT ?2";
const PATCH_PRODUCT: &str = "UPDATE products SET version = version + 1, \
                             document = json_set(document, '$.price_cents', ?2, '$.updated_at', ?3), \
                             updated_at = ?3 WHERE id = ?1";
const NEWEST_PRODUCTS_FROM: &str = "SELECT version, document FROM products WHERE name = ?1 \
                                    AND json_extract(document, '$.price_cents') >= ?2 \
                                    ORDER BY updated_at DESC, id DESC LIMIT ?3";

// Every read checks the expiry, as a cache must.
const GET: &str = "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2 \
                   AND (expires_at IS NULL OR expires_at > ?3)";
const CONTAINS: &str = "SELECT 1 FROM kv WHERE namespace = ?1 AND key = ?2 \
                        AND (expires_at IS NULL OR expires_at > ?3)";
const UPSERT: &str = "INSERT INTO kv (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, NULL) \
                      ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, \
                      expires_at = excluded.expires_at";
const DELETE: &str = "DELETE FROM kv WHERE namespace = ?1 AND key = ?2";
const KEYS: &str = "SELECT key FROM kv WHERE namespace = ?1 \
                    AND (expires_at IS NULL OR expires_at > ?2)";
const INSERT_USER: &str = "INSERT INTO users (id, email, email_key, hashed_password, is_active, \
                           is_superuser, is_verified, created_at, updated_at, version, extra) \
                           VALUES (?1, ?2, ?3, ?4, 1, 0, 0, ?5, ?5, 1, '{}')";
const GET_USER: &str = "SELECT id, email, email_key, hashed_password, is_active, is_superuser, \
                        is_verified, created_at, updated_at, version, extra \
                        FROM users WHERE id = ?1";

/// One writer and a few readers on one database file.
#[derive(Debug)]
pub(crate) struct RawSqlite {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl RawSqlite {
    /// Creates the tables in a new database file and opens the connections.
    pub(crate) fn create(path: &Path) -> rusqlite::Result<Self> {
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "mmap_size", MMAP_SIZE)?;
        writer.execute_batch(SCHEMA)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(path, flags)?;
                reader.pragma_update(None, "mmap_size", MMAP_SIZE)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&mut lock(&self.writer))
    }

    /// Runs `f` on the first free reader, starting from a rotating one; waits if all are busy.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..READERS {
            match self.readers[(start + i) % READERS].try_lock() {
                Ok(conn) => return f(&conn),
                Err(TryLockError::Poisoned(poisoned)) => return f(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        f(&lock(&self.readers[start % READERS]))
    }
}

// A panic in a statement leaves the connection usable, so a poisoned lock is taken over.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[async_trait]
impl Kv for RawSqlite {
    async fn get(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        let value = self.read(|conn| {
            conn.prepare_cached(GET)?
                .query_row(params![namespace, key, now_ms()], |row| {
                    row.get::<_, Vec<u8>>(0)
                })
                .optional()
        })?;
        Ok(value.is_some())
    }

    async fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), BoxError> {
        self.write(|conn| {
            conn.prepare_cached(UPSERT)?
                .execute(params![namespace, key, value])
        })?;
        Ok(())
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        Ok(self.read(|conn| {
            conn.prepare_cached(CONTAINS)?
                .exists(params![namespace, key, now_ms()])
        })?)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        let deleted = self.write(|conn| {
            conn.prepare_cached(DELETE)?
                .execute(params![namespace, key])
        })?;
        Ok(deleted > 0)
    }

    async fn set_many(&self, namespace: &str, items: &[(&str, &[u8])]) -> Result<(), BoxError> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            {
                let mut upsert = tx.prepare_cached(UPSERT)?;
                for (key, value) in items {
                    upsert.execute(params![namespace, key, value])?;
                }
            }
            tx.commit()
        })?;
        Ok(())
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<(), BoxError> {
        self.write(|conn| {
            let tx = conn.transaction()?;
            {
                let mut delete = tx.prepare_cached(DELETE)?;
                for key in keys {
                    delete.execute(params![namespace, key])?;
                }
            }
            tx.commit()
        })?;
        Ok(())
    }

    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        Ok(self.read(|conn| {
            let mut stmt = conn.prepare_cached(KEYS)?;
            let mut keys =
                stmt.query_map(params![namespace, now_ms()], |row| row.get::<_, String>(0))?;
            keys.try_fold(0, |n, key| key.map(|_| n + 1))
        })?)
    }
}

/// A user row read whole, as a service loading a user would: id, email, email key, hash,
/// active, superuser, verified, created, updated, version, extra.
type UserRow = (
    Vec<u8>,
    String,
    String,
    String,
    bool,
    bool,
    bool,
    i64,
    i64,
    i64,
    String,
);

#[async_trait]
impl Users for RawSqlite {
    type Id = Uuid;

    async fn create_user(&self, email: &str) -> Result<Uuid, BoxError> {
        let id = Uuid::now_v7();
        let email_key = email.to_lowercase();
        self.write(|conn| {
            conn.prepare_cached(INSERT_USER)?.execute(params![
                id.as_bytes(),
                email,
                email_key,
                PASSWORD_HASH,
                now_ms()
            ])
        })?;
        Ok(id)
    }

    async fn get_user(&self, id: &Uuid) -> Result<bool, BoxError> {
        let user = self.read(|conn| {
            conn.prepare_cached(GET_USER)?
                .query_row([id.as_bytes()], |row| {
                    let user: UserRow = (
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                        row.get(8)?,
                        row.get(9)?,
                        row.get(10)?,
                    );
                    Ok(user)
                })
                .optional()
        })?;
        Ok(user.is_some())
    }
}

/// Reads of a product before an update gives up, as storekit's `update` does.
const UPDATE_ATTEMPTS: usize = 100;

impl RawSqlite {
    /// The product's version and document as stored, if it exists.
    fn product_row(&self, id: &str) -> rusqlite::Result<Option<(i64, String)>> {
        self.read(|conn| {
            conn.prepare_cached(GET_PRODUCT)?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
    }
}

#[async_trait]
impl Products for RawSqlite {
    async fn create_products(&self) -> Result<(), BoxError> {
        self.write(|conn| conn.execute_batch(CREATE_PRODUCTS))?;
        Ok(())
    }

    async fn drop_products(&self) -> Result<(), BoxError> {
        self.write(|conn| conn.execute(DROP_PRODUCTS, []))?;
        Ok(())
    }

    async fn insert_product(&self, product: &Product) -> Result<(), BoxError> {
        let document = serde_json::to_string(product)?;
        self.write(|conn| {
            conn.prepare_cached(INSERT_PRODUCT)?.execute(params![
                product.id,
                document,
                product.name,
                product.updated_at
            ])
        })?;
        Ok(())
    }

    async fn get_product(&self, id: &str) -> Result<Option<Product>, BoxError> {
        match self.product_row(id)? {
            Some((_version, document)) => Ok(Some(serde_json::from_str(&document)?)),
            None => Ok(None),
        }
    }

    async fn update_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let (version, document) = self.product_row(id)?.ok_or("no product to update")?;
            let mut product: Product = serde_json::from_str(&document)?;
            product.price_cents = price_cents;
            product.updated_at = updated_at;
            let document = serde_json::to_string(&product)?;
            let written = self.write(|conn| {
                conn.prepare_cached(REPLACE_PRODUCT)?.execute(params![
                    id,
                    document,
                    product.name,
                    product.updated_at,
                    version
                ])
            })?;
            if written == 1 {
                return Ok(());
            }
        }
        Err("every update of the product lost to another write".into())
    }

    async fn newest_products(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        // One more than the page, to know whether another follows, as storekit's query does.
        let fetch = i64::try_from(limit + 1)?;
        let documents = self.read(|conn| {
            let mut stmt = conn.prepare_cached(NEWEST_PRODUCTS)?;
            let rows = stmt.query_map(params![name, fetch], |row| row.get::<_, String>(1))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut page = documents
            .iter()
            .map(|document| serde_json::from_str(document))
            .collect::<Result<Vec<Product>, _>>()?;
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }

    async fn patch_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        let price = i64::try_from(price_cents)?;
        let written = self.write(|conn| {
            conn.prepare_cached(PATCH_PRODUCT)?
                .execute(params![id, price, updated_at])
        })?;
        if written == 1 {
            Ok(())
        } else {
            Err("no product to patch".into())
        }
    }

    async fn newest_products_from(
        &self,
        name: &str,
        min_price: u64,
        limit: usize,
    ) -> Result<(Vec<Product>, bool), BoxError> {
        let (min, fetch) = (i64::try_from(min_price)?, i64::try_from(limit + 1)?);
        let documents = self.read(|conn| {
            let mut stmt = conn.prepare_cached(NEWEST_PRODUCTS_FROM)?;
            let rows = stmt.query_map(params![name, min, fetch], |row| row.get::<_, String>(1))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut page = documents
            .iter()
            .map(|document| serde_json::from_str(document))
            .collect::<Result<Vec<Product>, _>>()?;
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }
}
