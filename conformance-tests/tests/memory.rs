//! The conformance suite on the in-memory reference backend.

use std::sync::Arc;

use storekit_conformance::{Fixture, SetupContext};
use storekit_core::MemoryStore;

async fn setup(ctx: SetupContext) -> Option<Fixture> {
    let store =
        MemoryStore::with_id_kind(ctx.id_kind).keep_expired(storekit_conformance::KEEP_EXPIRED);
    Some(Fixture::memory(Arc::new(store)))
}

storekit_conformance::conformance_suite!(setup);
