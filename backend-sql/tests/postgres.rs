//! The conformance suite on PostgreSQL, each case in its own schema with a table prefix, on a
//! pool of 16 connections, dropped afterwards. The server is `STOREKIT_POSTGRES_URL`, else a
//! container this binary starts and shares between its cases (`STOREKIT_POSTGRES_IMAGE`).

use std::sync::Arc;

use storekit_conformance::{Fixture, SetupContext, server_url};
use storekit_sql::{PostgresConfig, PostgresStore};

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let url = server_url("STOREKIT_POSTGRES_URL")?;
    let schema = ctx.prefix.trim_end_matches('_').to_owned();
    let config = PostgresConfig::from_url(&url)
        .expect("postgres url")
        .schema(schema.clone())
        .table_prefix("t_")
        .id_kind(ctx.id_kind)
        .keep_expired(storekit_conformance::KEEP_EXPIRED)
        .max_connections(16);
    let store = PostgresStore::connect(&config)
        .await
        .expect("connect to postgres");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate is idempotent");
    // A second store in the same schema with another prefix, for the exact-name case.
    let neighbour = PostgresStore::connect(
        &PostgresConfig::from_url(&url)
            .expect("postgres url")
            .schema(schema.clone())
            .table_prefix("n_")
            .id_kind(ctx.id_kind)
            .max_connections(4),
    )
    .await
    .expect("connect to postgres");
    let (pool, neighbour_pool) = (store.pool().clone(), neighbour.pool().clone());
    Some(
        Fixture::new(Arc::new(store))
            .with_neighbour(Arc::new(neighbour))
            .with_teardown(async move {
                neighbour_pool.close().await;
                // Without CASCADE: the schema drops only if `drop_tables` left nothing in it.
                let drop = format!("DROP SCHEMA \"{schema}\" RESTRICT");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&pool)
                    .await
                    .expect("drop_tables left something in the schema");
                pool.close().await;
            }),
    )
}

storekit_conformance::conformance_suite!(setup);
