//! The PostgreSQL baseline: an sqlx pool of 16 without a ping on every checkout, statements
//! prepared once per connection (sqlx caches them), batches as one `UNNEST` statement, in a
//! schema of its own that is dropped afterwards.

use std::str::FromStr as _;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use storekit::chrono::{DateTime, Utc};
use storekit::futures::TryStreamExt as _;
use storekit::uuid::Uuid;
use storekit::{BoxError, async_trait};

use crate::targets::{Kv, PASSWORD_HASH, Users};

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
