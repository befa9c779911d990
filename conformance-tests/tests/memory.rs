//! The conformance suite on the in-memory reference backend.

use std::sync::Arc;

use futures::FutureExt as _;
use storekit_conformance::{Fixture, SetupContext};
use storekit_core::MemoryStore;

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let store = Arc::new(MemoryStore::with_id_kind(ctx.id_kind));
    let dumped = store.clone();
    Some(
        Fixture::new(
            store.clone(),
            store.clone(),
            Box::new(move || {
                let text = dumped.dump();
                async move { text }.boxed()
            }),
            Box::new(|| async {}.boxed()),
        )
        .with_tables(store),
    )
}

storekit_conformance::conformance_suite!(setup);
