//! The tables cases on the in-memory backend with index lag: query indexes show each write
//! 50 ms late, as DynamoDB's global secondary indexes may, so a case that assumes
//! read-after-write on an index fails here on a laptop.

use std::sync::Arc;
use std::time::Duration;

use storekit_conformance::{Fixture, SetupContext, Suite, run_suite};
use storekit_core::MemoryStore;

async fn setup(_ctx: SetupContext) -> Option<Fixture> {
    let store = MemoryStore::with_index_lag(Duration::from_millis(50));
    Some(Fixture::new(Arc::new(store)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tables_cases_pass_with_index_lag() {
    run_suite(Suite::Tables, setup).await;
}
