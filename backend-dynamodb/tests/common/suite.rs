//! Conformance cases run from this crate's tests, on stores whose tables the test prepared
//! (the export tests make them from the rendered templates), with the transfer store too.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use futures::{FutureExt as _, StreamExt as _};
use storekit_conformance::{Capabilities, Fixture, SetupContext, cases, run_case};
use storekit_core::IdKind;
use storekit_dynamodb::{DynamoDbConfig, DynamoDbStore};

/// A client of DynamoDB Local.
pub(crate) fn client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("storekit", "storekit", None, None, "test"))
        .build();
    Client::from_conf(config)
}

/// A store on `prefix`, without creating anything.
pub(crate) fn store(endpoint: &str, prefix: &str, id_kind: IdKind) -> DynamoDbStore {
    let config = DynamoDbConfig::builder()
        .table_prefix(prefix)
        .id_kind(id_kind)
        .build()
        .expect("config");
    DynamoDbStore::from_client(client(endpoint), &config)
}

/// The fixture of a store whose tables exist: every store, transfer included; the harness
/// drops the prefix's tables after the case.
pub(crate) fn fixture(store: DynamoDbStore) -> Fixture {
    Fixture::new(Arc::new(store))
        .with_capabilities(Capabilities::default().database_expires_items())
}

/// Runs every case of these groups, `parallel` at a time, each on a fixture from `setup`;
/// fails naming every case that failed.
pub(crate) async fn run_groups<S, SF>(groups: &[&str], parallel: usize, setup: S)
where
    S: Fn(SetupContext) -> SF + Clone,
    SF: Future<Output = Option<Fixture>>,
{
    let chosen: Vec<_> = cases()
        .into_iter()
        .filter(|case| groups.contains(&case.group))
        .collect();
    assert!(!chosen.is_empty(), "no conformance case in {groups:?}");
    let runs = chosen.into_iter().map(|case| {
        let setup = setup.clone();
        async move {
            let ran =
                std::panic::AssertUnwindSafe(run_case(case.name, case.id_kind, setup, case.run))
                    .catch_unwind()
                    .await;
            ran.err().map(|_| format!("{}::{}", case.group, case.name))
        }
    });
    let failed: Vec<String> = futures::stream::iter(runs)
        .buffer_unordered(parallel)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
}
