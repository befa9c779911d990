//! The conformance suite on DynamoDB, against the endpoint in `STOREKIT_DYNAMODB_ENDPOINT`
//! (DynamoDB Local; `eval "$(scripts/services.sh up)"` starts one), else a container this
//! binary starts and shares between its cases (`STOREKIT_DYNAMODB_IMAGE`).
//!
//! Each case gets its own tables (prefix `ctx.prefix`), created before and dropped after it
//! (`drop_tables` also drops the tables the `tables` cases made under that prefix).
//! DynamoDB Local accepts any credentials, so fixed dummy ones are used unless the environment
//! has real ones (`AWS_ACCESS_KEY_ID`).

use std::sync::Arc;

use storekit_conformance::{Capabilities, Fixture, SetupContext, server_url};
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let endpoint = server_url("STOREKIT_DYNAMODB_ENDPOINT")?;
    let mut config = DynamoDbConfig::builder()
        .endpoint(endpoint)
        .region(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
        .table_prefix(&ctx.prefix)
        .id_kind(ctx.id_kind)
        .keep_expired(storekit_conformance::KEEP_EXPIRED);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        config = config.credentials("storekit", "storekit");
    }
    let neighbour_config = config
        .clone()
        .table_prefix(format!("{}n_", ctx.prefix))
        .build()
        .expect("config");
    let config = config.build().expect("config");
    let store = DynamoDbStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate is idempotent");
    // A second store with another prefix, for the exact-name case.
    let neighbour = DynamoDbStore::connect(&neighbour_config)
        .await
        .expect("connect");
    Some(
        Fixture::new(Arc::new(store))
            .with_neighbour(Arc::new(neighbour))
            .with_capabilities(
                Capabilities::default()
                    .database_expires_items()
                    .record_batches_not_atomic()
                    .read_counts_include_read_ahead()
                    .undeclared_indexes_stay(),
            ),
    )
}

storekit_conformance::conformance_suite!(setup);
