//! A store on a pool the application already has, configured without a URL.
#![cfg(feature = "postgres")]

use storekit_core::{Error, KvStore, Result};
use storekit_sql::{PostgresConfig, PostgresStore};

#[tokio::test]
async fn a_store_on_an_existing_pool_needs_no_url() -> Result<()> {
    let Ok(url) = std::env::var("STOREKIT_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "STOREKIT_POSTGRES_URL is not set and CI is"
        );
        return Ok(());
    };
    let pool = sqlx::PgPool::connect(&url)
        .await
        .map_err(|e| Error::unavailable("postgres", e))?;
    let schema = format!("pool_{}", std::process::id());
    let store = PostgresStore::from_pool(pool, &PostgresConfig::default().schema(&schema))?;
    store.migrate().await?;
    store.set("ns", "k", b"v", None).await?;
    let read = store.get("ns", "k").await?;
    store.drop_tables().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .map_err(|e| Error::backend("postgres", e))?;
    assert_eq!(read.as_deref(), Some(&b"v"[..]));
    Ok(())
}
