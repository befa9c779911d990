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

/// The records of a table whose records expire are purged too, by the same task: the table
/// keeps only the live ones, whoever reads it.
#[tokio::test]
async fn a_background_task_purges_expired_records_on_sqlite() -> storekit_core::Result<()> {
    use storekit_core::table::{Document, KeyDef, TableSchema, TableStore};

    let config = SqliteConfig::memory().purge_interval(Some(TICK));
    let store = SqliteStore::connect(&config).await?;
    store.migrate().await?;
    let schema = TableSchema::builder("sessions", KeyDef::text("id"))
        .ttl("expires_at")
        .build()?;
    store.ensure_table(&schema).await?;
    let doc = |id: String, expires_at: f64| -> Document {
        let mut document = Document::new();
        document.insert("id".into(), id.into());
        document.insert("expires_at".into(), expires_at.into());
        document
    };
    let now = storekit_core::time::now_seconds();
    for chunk in 0..3 {
        let batch = (0..1000)
            .map(|i| doc(format!("old-{chunk}-{i}"), now - 10.0))
            .collect();
        store.put_many(&schema, batch).await?;
    }
    store.put(&schema, doc("live".into(), now + 3600.0)).await?;
    // The records were written expired, so reads never saw them; the rows themselves go.
    let rows = || async {
        let dump = store.dump().await?;
        Ok(dump.lines().filter(|l| l.contains("old-")).count())
    };
    eventually(0, rows).await?;
    // Without the task, the same rows stay: the dump does list them.
    let kept = SqliteStore::connect(&SqliteConfig::memory().purge_interval(None)).await?;
    kept.migrate().await?;
    kept.ensure_table(&schema).await?;
    kept.put(&schema, doc("old-kept".into(), now - 10.0))
        .await?;
    tokio::time::sleep(TICK * 4).await;
    assert_eq!(
        kept.dump()
            .await?
            .lines()
            .filter(|l| l.contains("old-kept"))
            .count(),
        1
    );
    let dump = store.dump().await?;
    assert!(
        dump.lines().any(|l| l.contains("live")),
        "the dump lists the table's rows, and the live one stays"
    );
    assert_eq!(store.count(&schema).await?, 1);
    Ok(())
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_background_task_purges_expired_records_on_postgres() -> storekit_core::Result<()> {
    use storekit_core::table::{Document, KeyDef, TableSchema, TableStore};
    use storekit_sql::{PostgresConfig, PostgresStore};

    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let pg_schema = format!("purge_records_{}", std::process::id());
    let config = PostgresConfig::from_url(&url)?
        .schema(&pg_schema)
        .purge_interval(Some(TICK));
    let store = PostgresStore::connect(&config).await?;
    store.migrate().await?;
    let schema = TableSchema::builder("sessions", KeyDef::text("id"))
        .ttl("expires_at")
        .build()?;
    store.ensure_table(&schema).await?;
    let doc = |id: String, expires_at: f64| -> Document {
        let mut document = Document::new();
        document.insert("id".into(), id.into());
        document.insert("expires_at".into(), expires_at.into());
        document
    };
    let now = storekit_core::time::now_seconds();
    for chunk in 0..3 {
        let batch = (0..1000)
            .map(|i| doc(format!("old-{chunk}-{i}"), now - 10.0))
            .collect();
        store.put_many(&schema, batch).await?;
    }
    store.put(&schema, doc("live".into(), now + 3600.0)).await?;
    let purged = eventually(1, || async {
        let dump = store.dump().await?;
        Ok(dump
            .lines()
            .filter(|l| l.contains("old-") || l.contains("live"))
            .count())
    })
    .await;
    store.drop_tables().await?;
    common::drop_schema(store.pool(), &pg_schema).await?;
    purged
}
