//! A store on a pool the application already has, configured without a URL.
#![cfg(feature = "postgres")]

mod common;

use storekit_core::{Error, KvStore, Result};
use storekit_sql::{PostgresConfig, PostgresStore};

#[tokio::test]
async fn a_store_on_an_existing_pool_needs_no_url() -> Result<()> {
    let Some(url) = common::postgres_url() else {
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
    common::drop_schema(store.pool(), &schema).await?;
    assert_eq!(read.as_deref(), Some(&b"v"[..]));
    Ok(())
}
