//! The conformance suite on SQLite: a fresh database file per case, in the system temp dir,
//! removed after it.

use std::sync::Arc;

use storekit_conformance::{Fixture, SetupContext};
use storekit_sql::{SqliteConfig, SqliteStore};

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let path = std::env::temp_dir().join(format!("storekit-{}.db", ctx.prefix));
    // The prefix is used too, so table names with a prefix are what the suite exercises.
    let config = SqliteConfig::file(&path)
        .table_prefix(ctx.prefix.clone())
        .id_kind(ctx.id_kind)
        .keep_expired(storekit_conformance::KEEP_EXPIRED);
    let store = SqliteStore::connect(&config).await.expect("open sqlite");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate is idempotent");
    // A second store on the same file with another prefix, for the exact-name case.
    let neighbour = SqliteStore::connect(
        &SqliteConfig::file(&path)
            .table_prefix(format!("{}n_", ctx.prefix))
            .id_kind(ctx.id_kind),
    )
    .await
    .expect("open sqlite with another prefix");
    Some(
        Fixture::new(Arc::new(store))
            .with_neighbour(Arc::new(neighbour))
            .with_teardown(async move {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }),
    )
}

storekit_conformance::conformance_suite!(setup);
