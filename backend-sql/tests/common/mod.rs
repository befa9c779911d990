//! What the PostgreSQL tests share: the server's URL, and removing a test's schema.
#![cfg(feature = "postgres")]

use storekit_core::{Error, Result};

/// The server from `STOREKIT_POSTGRES_URL`, or `None` to skip; with `CI` set, a missing one
/// fails the test instead.
pub(crate) fn postgres_url() -> Option<String> {
    let url = std::env::var("STOREKIT_POSTGRES_URL").ok();
    assert!(
        url.is_some() || std::env::var_os("CI").is_none(),
        "STOREKIT_POSTGRES_URL is not set and CI is"
    );
    url
}

/// Drops a test's schema and everything in it, through `pool`.
#[allow(
    dead_code,
    reason = "a test with a database of its own drops no schema"
)]
pub(crate) async fn drop_schema(pool: &sqlx::PgPool, schema: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await
    .map(drop)
    .map_err(|e| Error::backend("postgres", e))
}
