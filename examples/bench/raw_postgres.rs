//! The PostgreSQL baseline: an sqlx pool of 16 without a ping on every checkout, statements
//! prepared once per connection (sqlx caches them), batches as one `UNNEST` statement, in a
//! schema of its own that is dropped afterwards.
//!
//! Products are laid out as storekit's PostgreSQL tables backend lays out a table (a text
//! primary key in byte order, the document as `jsonb`, the version, the index's key columns and
//! a B-tree over (name, updated_at, id)), so their rows measure storekit's layer alone.

use std::str::FromStr as _;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use storekit::chrono::{DateTime, Utc};
use storekit::futures::TryStreamExt as _;
use storekit::uuid::Uuid;
use storekit::{BoxError, async_trait};

use crate::targets::{Kv, PASSWORD_HASH, Product, Products, Users};

const SCHEMA: [&str; 2] = [
    r#"CREATE TABLE kv (
        namespace text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        expires_at bigint,
        PRIMARY KEY (namespace, key)
    )"#,
    "CREATE TABLE users (
        id uuid PRIMARY KEY,
        email text NOT NULL,
        email_key text NOT NULL UNIQUE,
        hashed_password text NOT NULL,
        is_active boolean NOT NULL,
        is_superuser boolean NOT NULL,
        is_verified boolean NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        version bigint NOT NULL,
        extra jsonb NOT NULL
    )",
];

const CREATE_PRODUCTS: [&str; 2] = [
    r#"CREATE TABLE products (
        id text COLLATE "C" PRIMARY KEY,
        version bigint NOT NULL,
        document jsonb NOT NULL,
        name text COLLATE "C",
        updated_at double precision
    )"#,
    "CREATE INDEX products_by_name ON products (name, updated_at, id)",
];
const DROP_PRODUCTS: &str = "DROP TABLE IF EXISTS products";
const INSERT_PRODUCT: &str = "INSERT INTO products (id, version, document, name, updated_at) \
                              VALUES ($1, 1, $2, $3, $4)";
const GET_PRODUCT: &str = "SELECT version, document FROM products WHERE id = $1";
const REPLACE_PRODUCT: &str = "UPDATE products SET version = version + 1, document = $2, \
                               name = $3, updated_at = $4 WHERE id = $1 AND version = $5";
const NEWEST_PRODUCTS: &str = "SELECT version, document FROM products WHERE name = $1 \
                               ORDER BY updated_at DESC, id DESC LIMIT $2";
const PATCH_PRODUCT: &str = "UPDATE products SET version = version + 1, \
                             document = document || jsonb_build_object('price_cents', $2::bigint, 'updated_at', $3::float8), \
                             updated_at = $3 WHERE id = $1";
const NEWEST_PRODUCTS_FROM: &str = "SELECT version, document FROM products WHERE name = $1 \
                                    AND (document -> 'price_cents') >= to_jsonb($2::bigint) \
                                    ORDER BY updated_at DESC, id DESC LIMIT $3";

/// Reads of a product before an update gives up, as storekit's `update` does.
const UPDATE_ATTEMPTS: usize = 100;

// Every read checks the expiry, as a cache must.
const GET: &str = "SELECT value FROM kv WHERE namespace = $1 AND key = $2 \
                   AND (expires_at IS NULL OR expires_at > $3)";
const CONTAINS: &str = "SELECT EXISTS (SELECT 1 FROM kv WHERE namespace = $1 AND key = $2 \
                        AND (expires_at IS NULL OR expires_at > $3))";
const UPSERT: &str = "INSERT INTO kv (namespace, key, value, expires_at) VALUES ($1, $2, $3, NULL) \
                      ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, \
                      expires_at = EXCLUDED.expires_at";
const UPSERT_MANY: &str = "INSERT INTO kv (namespace, key, value, expires_at) \
                           SELECT $1, key, value, NULL FROM UNNEST($2::text[], $3::bytea[]) AS t (key, value) \
                           ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, \
                           expires_at = EXCLUDED.expires_at";
/// `--copy`'s batch: items of any namespaces, each with its deadline.
#[cfg(feature = "sqlite")]
const IMPORT_MANY: &str = "INSERT INTO kv (namespace, key, value, expires_at) \
                           SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::int8[]) \
                           ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, \
                           expires_at = EXCLUDED.expires_at";
#[cfg(feature = "sqlite")]
const COUNT_ROWS: &str = "SELECT count(*) FROM kv";
const DELETE: &str = "DELETE FROM kv WHERE namespace = $1 AND key = $2";
const DELETE_MANY: &str = "DELETE FROM kv WHERE namespace = $1 AND key = ANY ($2)";
const KEYS: &str = "SELECT key FROM kv WHERE namespace = $1 \
                    AND (expires_at IS NULL OR expires_at > $2)";
const INSERT_USER: &str = "INSERT INTO users (id, email, email_key, hashed_password, is_active, \
                           is_superuser, is_verified, created_at, updated_at, version, extra) \
                           VALUES ($1, $2, $3, $4, true, false, false, $5, $5, 1, '{}')";
const GET_USER: &str = "SELECT id, email, email_key, hashed_password, is_active, is_superuser, \
                        is_verified, created_at, updated_at, version, extra \
                        FROM users WHERE id = $1";

/// A user row read whole, as a service loading a user would.
type UserRow = (
    Uuid,
    String,
    String,
    String,
    bool,
    bool,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    serde_json::Value,
);

/// One kv item as `--copy`'s raw copy reads it from SQLite and writes it.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub(crate) struct CopiedItem {
    pub(crate) namespace: String,
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    /// Unix milliseconds; `None` never.
    pub(crate) expires_at: Option<i64>,
}

/// A pool whose connections work in the baseline's own schema.
#[derive(Debug)]
pub(crate) struct RawPostgres {
    pool: PgPool,
    schema: String,
}

impl RawPostgres {
    /// Creates `schema` (which must not exist) and the tables in it.
    pub(crate) async fn create(url: &str, schema: &str) -> Result<Self, BoxError> {
        // search_path keeps the statements constant text, so each is prepared once per
        // connection; the schema is created below, before any table is.
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        // The schema's name is the bench's own `bench_<pid>_raw`, never outside input.
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&pool)
            .await?;
        for ddl in SCHEMA {
            sqlx::query(ddl).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// Drops the baseline's schema and closes the pool.
    pub(crate) async fn remove(&self) -> Result<(), BoxError> {
        drop_schema(&self.pool, &self.schema).await?;
        self.pool.close().await;
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
impl RawPostgres {
    /// Writes every item with its deadline in one statement, replacing items of the same key:
    /// the raw side of `--copy`.
    pub(crate) async fn import_kv(&self, items: &[CopiedItem]) -> Result<(), BoxError> {
        let namespaces: Vec<&str> = items.iter().map(|item| item.namespace.as_str()).collect();
        let keys: Vec<&str> = items.iter().map(|item| item.key.as_str()).collect();
        let values: Vec<&[u8]> = items.iter().map(|item| item.value.as_slice()).collect();
        let deadlines: Vec<Option<i64>> = items.iter().map(|item| item.expires_at).collect();
        sqlx::query(IMPORT_MANY)
            .bind(namespaces)
            .bind(keys)
            .bind(values)
            .bind(deadlines)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every row of the kv table, expired or not.
    pub(crate) async fn count_kv_rows(&self) -> Result<u64, BoxError> {
        let count: i64 = sqlx::query_scalar(COUNT_ROWS).fetch_one(&self.pool).await?;
        Ok(u64::try_from(count)?)
    }
}

/// Drops a schema that storekit's `migrate` made for a run: `Stores` has no way to drop what
/// it created, so it goes with plain SQL.
pub(crate) async fn drop_storekit_schema(url: &str, schema: &str) -> Result<(), BoxError> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    drop_schema(&pool, schema).await?;
    pool.close().await;
    Ok(())
}

/// Drops a schema the bench made (`bench_<pid>…`, as above) and everything in it.
async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), BoxError> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await?;
    Ok(())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[async_trait]
impl Kv for RawPostgres {
    async fn get(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        let value: Option<Vec<u8>> = sqlx::query_scalar(GET)
            .bind(namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.is_some())
    }

    async fn set(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), BoxError> {
        sqlx::query(UPSERT)
            .bind(namespace)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn contains(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        Ok(sqlx::query_scalar(CONTAINS)
            .bind(namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, BoxError> {
        let done = sqlx::query(DELETE)
            .bind(namespace)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_many(&self, namespace: &str, items: &[(&str, &[u8])]) -> Result<(), BoxError> {
        let (keys, values): (Vec<&str>, Vec<&[u8]>) = items.iter().copied().unzip();
        sqlx::query(UPSERT_MANY)
            .bind(namespace)
            .bind(keys)
            .bind(values)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_many(&self, namespace: &str, keys: &[&str]) -> Result<(), BoxError> {
        sqlx::query(DELETE_MANY)
            .bind(namespace)
            .bind(keys)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn count_keys(&self, namespace: &str) -> Result<u64, BoxError> {
        let keys = sqlx::query_scalar::<_, String>(KEYS)
            .bind(namespace)
            .bind(now_ms())
            .fetch(&self.pool);
        Ok(keys.try_fold(0, |n, _key| async move { Ok(n + 1) }).await?)
    }
}

#[async_trait]
impl Users for RawPostgres {
    type Id = Uuid;

    async fn create_user(&self, email: &str) -> Result<Uuid, BoxError> {
        let id = Uuid::now_v7();
        sqlx::query(INSERT_USER)
            .bind(id)
            .bind(email)
            .bind(email.to_lowercase())
            .bind(PASSWORD_HASH)
            .bind(Utc::now())
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    async fn get_user(&self, id: &Uuid) -> Result<bool, BoxError> {
        let user: Option<UserRow> = sqlx::query_as(GET_USER)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(user.is_some())
    }
}

impl RawPostgres {
    /// The product's version and document, if it exists.
    async fn product_row(&self, id: &str) -> Result<Option<(i64, Json<Product>)>, BoxError> {
        Ok(sqlx::query_as(GET_PRODUCT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

#[async_trait]
impl Products for RawPostgres {
    async fn create_products(&self) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await?;
        for ddl in CREATE_PRODUCTS {
            sqlx::query(ddl).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn drop_products(&self) -> Result<(), BoxError> {
        sqlx::query(DROP_PRODUCTS).execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_product(&self, product: &Product) -> Result<(), BoxError> {
        sqlx::query(INSERT_PRODUCT)
            .bind(&product.id)
            .bind(Json(product))
            .bind(&product.name)
            .bind(product.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_product(&self, id: &str) -> Result<Option<Product>, BoxError> {
        Ok(self.product_row(id).await?.map(|(_version, Json(p))| p))
    }

    async fn update_product(
        &self,
        id: &str,
        price_cents: u64,
        updated_at: f64,
    ) -> Result<(), BoxError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let (version, Json(mut product)) =
                self.product_row(id).await?.ok_or("no product to update")?;
            product.price_cents = price_cents;
            product.updated_at = updated_at;
            let written = sqlx::query(REPLACE_PRODUCT)
                .bind(id)
                .bind(Json(&product))
                .bind(&product.name)
                .bind(product.updated_at)
                .bind(version)
                .execute(&self.pool)
                .await?;
            if written.rows_affected() == 1 {
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
        let rows: Vec<(i64, Json<Product>)> = sqlx::query_as(NEWEST_PRODUCTS)
            .bind(name)
            .bind(i64::try_from(limit + 1)?)
            .fetch_all(&self.pool)
            .await?;
        let mut page: Vec<Product> = rows.into_iter().map(|(_version, Json(p))| p).collect();
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
        let written = sqlx::query(PATCH_PRODUCT)
            .bind(id)
            .bind(i64::try_from(price_cents)?)
            .bind(updated_at)
            .execute(&self.pool)
            .await?;
        if written.rows_affected() == 1 {
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
        let rows: Vec<(i64, Json<Product>)> = sqlx::query_as(NEWEST_PRODUCTS_FROM)
            .bind(name)
            .bind(i64::try_from(min_price)?)
            .bind(i64::try_from(limit + 1)?)
            .fetch_all(&self.pool)
            .await?;
        let mut page: Vec<Product> = rows.into_iter().map(|(_version, Json(p))| p).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }
}
