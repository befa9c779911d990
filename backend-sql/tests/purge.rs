//! Expired rows are deleted by the store's background task, without anyone calling
//! `purge_expired` and whatever else is (or is not) written.

#[cfg(feature = "postgres")]
mod common;

use std::time::{Duration, Instant};

use storekit_core::KvStore;
use storekit_sql::{SqliteConfig, SqliteStore};

const TICK: Duration = Duration::from_millis(50);

/// Waits until `rows` reports `want`, or fails after a few seconds with the last count.
async fn eventually<F, Fut>(want: usize, mut rows: F) -> storekit_core::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = storekit_core::Result<usize>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = rows().await?;
        if now == want {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "{now} rows left, expected {want}"
        );
        tokio::time::sleep(TICK).await;
    }
}

/// Rows of the kv table in a store's dump.
fn kv_rows(dump: &str, table: &str) -> usize {
    dump.lines().filter(|line| line.starts_with(table)).count()
}

#[tokio::test]
async fn a_background_task_purges_expired_rows_on_sqlite() -> storekit_core::Result<()> {
    let config = SqliteConfig::memory().purge_interval(Some(TICK));
    let store = SqliteStore::connect(&config).await?;
    store.migrate().await?;
    // More than one purge batch, so the task must loop until none are left.
    let keys: Vec<String> = (0..2500).map(|i| format!("old-{i}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    store
        .set_many("cache", &items, Some(Duration::from_millis(100)))
        .await?;
    store.set("cache", "live", b"kept", None).await?;
    // No write from here on: the purge does not depend on them.
    eventually(1, || async { Ok(kv_rows(&store.dump().await?, "\"kv\":")) }).await?;
    assert_eq!(
        store.get("cache", "live").await?.as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(store.purge_expired().await?, 0);
    Ok(())
}

#[tokio::test]
async fn without_a_purge_interval_rows_stay_until_purge_expired() -> storekit_core::Result<()> {
    let store = SqliteStore::connect(&SqliteConfig::memory().purge_interval(None)).await?;
    store.migrate().await?;
    store
        .set("cache", "old", b"v", Some(Duration::from_millis(20)))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.get("cache", "old").await?, None, "never returned");
    assert_eq!(kv_rows(&store.dump().await?, "\"kv\":"), 1);
    assert_eq!(store.purge_expired().await?, 1);
    assert_eq!(kv_rows(&store.dump().await?, "\"kv\":"), 0);
    Ok(())
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_background_task_purges_expired_rows_on_postgres() -> storekit_core::Result<()> {
    use storekit_sql::{PostgresConfig, PostgresStore};

    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let schema = format!("purge_{}", std::process::id());
    let config = PostgresConfig::from_url(&url)?
        .schema(&schema)
        .purge_interval(Some(TICK));
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    let keys: Vec<String> = (0..2500).map(|i| format!("old-{i}")).collect();
    let items: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    store
        .set_many("cache", &items, Some(Duration::from_millis(100)))
        .await?;
    store.set("cache", "live", b"kept", None).await?;
    let purged = eventually(1, || async {
        let dump = store.dump().await?;
        Ok(dump.lines().filter(|l| l.contains("kv\": (cache,")).count())
    })
    .await;
    store.drop_tables().await?;
    common::drop_schema(store.pool(), &schema).await?;
    purged
}
