//! Writes that move unique values between records never wait on each other in a circle.
//!
//! Two puts that swap a unique value between two records each hold their own row while the
//! unique index makes them wait for the other's; PostgreSQL breaks such a circle only after
//! `deadlock_timeout` (a second), and 32 writers on three records ran past the operation
//! timeout that way. The store claims unique values in one order first; this test makes the
//! swaps happen and reads the server's own deadlock count, in a database of its own so that
//! no other test's deadlocks are counted.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Executor};
use storekit_core::table::{Document, KeyDef, TableSchema, TableStore};
use storekit_core::{Error, Result};
use storekit_sql::{PostgresConfig, PostgresStore};
use tokio::sync::Barrier;

const ROUNDS: usize = 12;

fn db_error(e: sqlx::Error) -> Error {
    Error::backend("postgres", e)
}

fn product(id: &str, sku: &str) -> Document {
    let mut document = Document::new();
    document.insert("id".into(), id.into());
    document.insert("sku".into(), sku.into());
    document
}

/// The server's count of deadlocks in `database`, once the statistics of every session
/// that ended have been flushed.
async fn deadlocks(admin: &mut sqlx::PgConnection, database: &str) -> Result<i64> {
    // A session's statistics reach the shared counters when it ends or idles; the pool's
    // sessions are closed by now, and this waits for the last of them to be counted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    admin
        .execute("SELECT pg_stat_clear_snapshot()")
        .await
        .map_err(db_error)?;
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
        .bind(database)
        .fetch_one(admin)
        .await
        .map_err(db_error)
}

/// `url` with its database replaced by `database`.
fn on_database(url: &str, database: &str) -> String {
    let (address, options) = url.split_once('?').unwrap_or((url, ""));
    let server = address
        .rsplit_once('/')
        .map_or(address, |(server, _)| server);
    match options {
        "" => format!("{server}/{database}"),
        options => format!("{server}/{database}?{options}"),
    }
}

#[tokio::test]
async fn puts_swapping_unique_values_never_deadlock() -> Result<()> {
    let Some(url) = common::postgres_url() else {
        return Ok(());
    };
    let database = format!("storekit_claims_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&url).await.map_err(db_error)?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{database}\""
        )))
        .await
        .map_err(db_error)?;
    let store = Arc::new(
        PostgresStore::connect(&PostgresConfig::from_url(&on_database(&url, &database))?).await?,
    );
    let schema = TableSchema::builder("products", KeyDef::text("id"))
        .unique("sku", [KeyDef::text("sku")])
        .build()?;
    store.ensure_table(&schema).await?;
    store.put(&schema, product("a", "A")).await?;
    store.put(&schema, product("b", "B")).await?;
    let before = deadlocks(&mut admin, &database).await?;

    // Each round, two writers at once ask for the other record's value: each must fail with
    // the value taken, and neither may wait a deadlock out.
    let barrier = Arc::new(Barrier::new(2));
    let writers = [("a", "B"), ("b", "A")].map(|(id, sku)| {
        let (store, schema, barrier) = (Arc::clone(&store), schema.clone(), Arc::clone(&barrier));
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..ROUNDS {
                barrier.wait().await;
                outcomes.push(store.put(&schema, product(id, sku)).await);
            }
            outcomes
        })
    });
    for writer in writers {
        for outcome in writer.await.expect("writer") {
            match outcome {
                Err(Error::AlreadyExists {
                    what: "unique value",
                }) => {}
                other => panic!("a swap ended {other:?}, not as a taken unique value"),
            }
        }
    }
    store.pool().close().await;
    drop(store);
    let after = deadlocks(&mut admin, &database).await?;

    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{database}\" WITH (FORCE)"
        )))
        .await
        .map_err(db_error)?;
    assert_eq!(
        after - before,
        0,
        "the server broke {} deadlocks among {ROUNDS} rounds of swaps",
        after - before
    );
    Ok(())
}
