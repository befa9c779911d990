//! Expired rows are deleted as writes go by, without anyone calling `purge_expired`.

use std::time::Duration;

use storekit_core::KvStore;
use storekit_sql::{SqliteConfig, SqliteStore};

/// Rows of the kv table in a store's dump.
fn kv_rows(dump: &str) -> usize {
    dump.lines()
        .filter(|line| line.starts_with("\"kv\":"))
        .count()
}

#[tokio::test]
async fn writes_purge_expired_rows_on_sqlite() -> storekit_core::Result<()> {
    let store = SqliteStore::open(&SqliteConfig::memory())?;
    store.migrate()?;
    let keys: Vec<String> = (0..300).map(|i| format!("old-{i}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    store
        .set_many("cache", &items, Some(Duration::from_millis(100)))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        kv_rows(&store.dump()?),
        300,
        "expired rows stay until something deletes them"
    );

    // Two purges' worth of ordinary writes, one key each, and nothing else.
    for i in 0..256 {
        store
            .set("cache", "live", format!("{i}").as_bytes(), None)
            .await?;
    }
    assert_eq!(kv_rows(&store.dump()?), 1, "only the live row is left");
    assert_eq!(store.purge_expired().await?, 0);
    Ok(())
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn writes_purge_expired_rows_on_postgres() -> storekit_core::Result<()> {
    use storekit_sql::{PostgresConfig, PostgresStore};

    let Ok(url) = std::env::var("STOREKIT_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "STOREKIT_POSTGRES_URL is not set and CI is"
        );
        return Ok(());
    };
    let schema = format!("purge_{}", std::process::id());
    let store = PostgresStore::connect(&PostgresConfig::new(url)?.schema(&schema)).await?;
    store.migrate().await?;
    let keys: Vec<String> = (0..300).map(|i| format!("old-{i}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    store
        .set_many("cache", &items, Some(Duration::from_millis(100)))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..256 {
        store
            .set("cache", "live", format!("{i}").as_bytes(), None)
            .await?;
    }
    let rows = store
        .dump()
        .await?
        .lines()
        .filter(|line| line.contains("kv\": (cache,"))
        .count();
    store.drop_tables().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .map_err(|e| storekit_core::Error::backend("postgres", e))?;
    assert_eq!(rows, 1, "only the live row is left");
    Ok(())
}
