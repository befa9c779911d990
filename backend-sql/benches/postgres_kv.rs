//! storekit's PostgreSQL key-value store against raw sqlx on the same server and pool settings.
//!
//! `STOREKIT_POSTGRES_URL=… cargo bench -p storekit-sql --features postgres --bench postgres_kv`
//! prints operations per second and the ratio storekit / raw for 1 KiB point reads and upserts,
//! sequential on one task and with 32 tasks on a pool of 16. The raw side runs the same
//! statements through the same kind of pool, so the ratio is what storekit's layer costs.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use storekit_core::KvStore;
use storekit_sql::{PostgresConfig, PostgresStore};

const KEYS: usize = 2_000;
const VALUE: [u8; 1024] = [7; 1024];
const ROUND: Duration = Duration::from_millis(2000);
const TASKS: usize = 32;

fn main() {
    let Ok(url) = std::env::var("STOREKIT_POSTGRES_URL") else {
        println!(
            "set STOREKIT_POSTGRES_URL (eval \"$(scripts/services.sh up)\") to run this bench"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&url));
}

async fn run(url: &str) {
    let schema = format!("bench_{}", std::process::id());
    let config = PostgresConfig::new(url)
        .unwrap()
        .schema(&schema)
        .max_connections(16);
    let store = Arc::new(PostgresStore::connect(&config).await.unwrap());
    store.migrate().await.unwrap();
    let raw = PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect(url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE \"{schema}\".raw_kv (namespace text COLLATE \"C\" NOT NULL, \
         key text COLLATE \"C\" NOT NULL, value bytea NOT NULL, expires_at bigint, \
         PRIMARY KEY (namespace, key))"
    )))
    .execute(&raw)
    .await
    .unwrap();
    let table = Arc::new(format!("\"{schema}\".raw_kv"));
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("key-{i:05}")).collect());
    for key in keys.iter() {
        raw_upsert(&raw, &table, key).await;
        store.set("bench", key, &VALUE, None).await.unwrap();
    }

    let raw_get = {
        let (raw, table, keys) = (raw.clone(), table.clone(), keys.clone());
        move |i: usize| {
            let (raw, table, keys) = (raw.clone(), table.clone(), keys.clone());
            async move { raw_select(&raw, &table, &keys[i % KEYS]).await }
        }
    };
    let kit_get = {
        let (store, keys) = (store.clone(), keys.clone());
        move |i: usize| {
            let (store, keys) = (store.clone(), keys.clone());
            async move {
                store.get("bench", &keys[i % KEYS]).await.unwrap().unwrap();
            }
        }
    };
    let raw_set = {
        let (raw, table, keys) = (raw.clone(), table.clone(), keys.clone());
        move |i: usize| {
            let (raw, table, keys) = (raw.clone(), table.clone(), keys.clone());
            async move { raw_upsert(&raw, &table, &keys[i % KEYS]).await }
        }
    };
    let kit_set = {
        let (store, keys) = (store.clone(), keys.clone());
        move |i: usize| {
            let (store, keys) = (store.clone(), keys.clone());
            async move {
                store
                    .set("bench", &keys[i % KEYS], &VALUE, None)
                    .await
                    .unwrap();
            }
        }
    };

    println!("PostgreSQL, 1 KiB values, pool of 16 without ping-on-acquire, {KEYS} keys");
    println!("| operation | raw sqlx (ops/s) | storekit (ops/s) | storekit / raw |");
    println!("|---|---:|---:|---:|");
    row(
        "point read, 1 task",
        rate(1, raw_get.clone()).await,
        rate(1, kit_get.clone()).await,
    );
    row(
        "upsert, 1 task",
        rate(1, raw_set).await,
        rate(1, kit_set).await,
    );
    row(
        &format!("point read, {TASKS} tasks"),
        rate(TASKS, raw_get).await,
        rate(TASKS, kit_get).await,
    );

    raw.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

fn row(name: &str, raw: f64, kit: f64) {
    println!("| {name} | {raw:.0} | {kit:.0} | {:.2} |", kit / raw);
}

/// Operations per second of `op` run by `tasks` concurrent tasks over one round.
async fn rate<F, Fut>(tasks: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while start.elapsed() < ROUND {
                    op(done * TASKS + t).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn raw_select(pool: &PgPool, table: &str, key: &str) {
    let sql = format!(
        "SELECT value FROM {table} WHERE namespace = $1 AND key = $2 \
         AND (expires_at IS NULL OR expires_at > $3)"
    );
    let value: Vec<u8> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind("bench")
        .bind(key)
        .bind(0i64)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(value.len(), VALUE.len());
}

async fn raw_upsert(pool: &PgPool, table: &str, key: &str) {
    let sql = format!(
        "INSERT INTO {table} (namespace, key, value, expires_at) VALUES ($1, $2, $3, NULL) \
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, \
         expires_at = excluded.expires_at"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind("bench")
        .bind(key)
        .bind(&VALUE[..])
        .execute(pool)
        .await
        .unwrap();
}
