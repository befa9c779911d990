//! The transfer store (`storekit copy`) on DynamoDB Local, against the endpoint in
//! `STOREKIT_DYNAMODB_ENDPOINT`: the conformance suite's transfer cases, then what is
//! particular to DynamoDB (exports resuming from a position across shards, imports larger
//! than a batch, versions and id counters as stored).
//!
//! Without the variable the tests say loudly that they skipped; with `CI` set they fail.

mod common;
#[path = "common/suite.rs"]
mod suite;

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::FutureExt as _;
use serde_json::json;
use storekit_conformance::SetupContext;
use storekit_core::table::{KeyDef, Record, TableSchema, TableStore};
use storekit_core::transfer::{Imported, KvEntry, KvPosition, TransferStore, UserBundle};
use storekit_core::{Error, IdKind, KvStore, NewUser, UserId, UserStore, now};
use storekit_dynamodb::DynamoDbStore;

/// A store with migrated tables on a fresh prefix, dropped after `test` whatever happens.
async fn with_store<F, Fut>(id_kind: IdKind, test: F)
where
    F: FnOnce(DynamoDbStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(endpoint) = common::endpoint() else {
        return;
    };
    let prefix = format!("tr{}_", uuid_like());
    let store = suite::store(&endpoint, &prefix, id_kind);
    store.migrate().await.expect("migrate");
    let outcome = AssertUnwindSafe(test(store.clone())).catch_unwind().await;
    store.drop_tables().await.expect("drop_tables");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_transfer_cases() {
    if common::endpoint().is_none() {
        return;
    }
    let setup = |ctx: SetupContext| async move {
        let endpoint = common::endpoint()?;
        let store = suite::store(&endpoint, &ctx.prefix, ctx.id_kind);
        store.migrate().await.expect("migrate");
        Some(suite::fixture(store))
    };
    suite::run_groups(&["transfer_uuid", "transfer_int"], 4, setup).await;
}

fn entry(namespace: &str, key: &str, expires_at: Option<i64>) -> KvEntry {
    KvEntry {
        namespace: namespace.into(),
        key: key.into(),
        value: key.as_bytes().to_vec(),
        expires_at,
    }
}

/// Every page after the first resumes from the last item of the one before; returns the
/// (namespace, key) of every item, checking none comes twice.
async fn export_everything(
    store: &DynamoDbStore,
    namespace: Option<&str>,
    limit: usize,
) -> Vec<KvEntry> {
    let mut all = Vec::new();
    let mut seen = BTreeSet::new();
    let mut after: Option<KvPosition> = None;
    loop {
        let page = TransferStore::export_kv(store, namespace, after.as_ref(), limit)
            .await
            .expect("export");
        for entry in &page {
            assert!(
                seen.insert((entry.namespace.clone(), entry.key.clone())),
                "{entry:?} twice"
            );
        }
        all.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == limit => after = Some(last.position()),
            _ => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_pages_resume_without_repeats_and_skip_expired_items() {
    with_store(IdKind::Uuid, async |store| {
        let now = now().timestamp_millis();
        // 2,000 items over two calls (the most one call takes is 1,000): 25 per request,
        // every one landing.
        let items: Vec<KvEntry> = (0..2_000)
            .map(|i| {
                let namespace = if i % 2 == 0 { "a#x" } else { "a" };
                let deadline = (i % 3 == 0).then_some(now + 3_600_000 + i);
                entry(namespace, &format!("k{i:04}"), deadline)
            })
            .collect();
        for chunk in items.chunks(1_000) {
            assert_eq!(
                TransferStore::import_kv(&store, chunk)
                    .await
                    .expect("import"),
                1_000
            );
        }
        // Items already past their deadline but not yet deleted by native TTL: written
        // directly, as `import_kv` skips them.
        KvStore::set(
            &store,
            "a",
            "soon",
            b"v",
            Some(std::time::Duration::from_millis(50)),
        )
        .await
        .expect("set");
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;

        let everything = export_everything(&store, None, 333).await;
        assert_eq!(
            everything.len(),
            2_000,
            "every live item once, none expired"
        );
        let mut sorted = everything.clone();
        sorted.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        let mut expected = items.clone();
        expected.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        assert_eq!(sorted, expected, "values and deadlines to the millisecond");

        // One namespace: `a#x` is not `a`, though its partitions start with `a#`.
        let only_a = export_everything(&store, Some("a"), 97).await;
        assert_eq!(only_a.len(), 1_000);
        assert!(only_a.iter().all(|e| e.namespace == "a"));
        // Resuming from the middle gives exactly the rest, in the same order.
        let resumed =
            TransferStore::export_kv(&store, Some("a"), Some(&only_a[499].position()), 1_000)
                .await
                .expect("export");
        assert_eq!(resumed, only_a[500..]);
    })
    .await;
}

fn new_user(email: &str) -> NewUser {
    NewUser::new(email, "hash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_import_at_their_id_and_move_the_counter_and_the_email() {
    with_store(IdKind::Int, async |store| {
        let taken = UserStore::create_user(&store, new_user("taken@example.com"))
            .await
            .expect("create");
        let mut user = taken.clone();
        user.id = UserId::Int(1_000);
        user.email = "imported@example.com".into();
        user.version = 7;
        let bundle = UserBundle {
            user: user.clone(),
            oauth_accounts: Vec::new(),
            access_tokens: Vec::new(),
        };
        assert_eq!(
            TransferStore::import_user(&store, &bundle)
                .await
                .expect("import"),
            Imported::Created
        );
        assert_eq!(
            TransferStore::export_user(&store, user.id)
                .await
                .expect("export"),
            Some(bundle.clone())
        );
        assert_eq!(
            TransferStore::import_user(&store, &bundle)
                .await
                .expect("again"),
            Imported::Unchanged
        );
        // Later ids come after the imported one.
        let next = UserStore::create_user(&store, new_user("next@example.com"))
            .await
            .expect("create");
        assert!(
            matches!(next.id, UserId::Int(n) if n > 1_000),
            "{}",
            next.id
        );

        // Another user's email is refused, and nothing of the import is written.
        let mut thief = bundle.clone();
        thief.user.id = UserId::Int(2_000);
        thief.user.email = "TAKEN@example.com".into();
        assert!(matches!(
            TransferStore::import_user(&store, &thief).await,
            Err(Error::AlreadyExists { what: "email" })
        ));
        assert_eq!(
            UserStore::get_user(&store, thief.user.id)
                .await
                .expect("get"),
            None
        );

        // An email change releases the old email for anyone.
        let mut moved = bundle.clone();
        moved.user.email = "moved@example.com".into();
        assert_eq!(
            TransferStore::import_user(&store, &moved)
                .await
                .expect("import"),
            Imported::Updated
        );
        UserStore::create_user(&store, new_user("imported@example.com"))
            .await
            .expect("the old email is free");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_import_at_their_version_and_refuse_a_taken_unique_value() {
    with_store(IdKind::Uuid, async |store| {
        let schema = TableSchema::builder("items", KeyDef::text("id"))
            .unique("sku", [KeyDef::text("sku")])
            .build()
            .expect("schema");
        TableStore::ensure_table(&store, &schema)
            .await
            .expect("ensure");
        let record = |id: &str, sku: &str, version: u64| {
            let document = json!({"id": id, "sku": sku})
                .as_object()
                .cloned()
                .expect("object");
            Record {
                key: schema.key_of(&document).expect("key"),
                version,
                document,
            }
        };
        let first = record("a", "s1", 7);
        TransferStore::import_records(&store, &schema, &[first.clone(), record("b", "s2", 1)])
            .await
            .expect("import");
        let stored = store
            .client()
            .get_item()
            .table_name(format!("{}items", store.config().table_prefix()))
            .key("id", AttributeValue::S("a".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get")
            .item
            .expect("stored");
        assert_eq!(
            stored.get("_storekit_version"),
            Some(&AttributeValue::N("7".into()))
        );
        // Moving `a` to another sku releases s1.
        TransferStore::import_records(&store, &schema, &[record("a", "s3", 8)])
            .await
            .expect("replace");
        TransferStore::import_records(&store, &schema, &[record("c", "s1", 1)])
            .await
            .expect("s1 is free");
        // `d` taking b's sku is refused, and neither `d` nor a marker of it is written.
        let thief = record("d", "s2", 3);
        assert!(matches!(
            TransferStore::import_records(&store, &schema, std::slice::from_ref(&thief)).await,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ));
        assert_eq!(
            TableStore::get(&store, &schema, &thief.key)
                .await
                .expect("get"),
            None
        );
        let by_sku = TableStore::get_by_unique(
            &store,
            &schema,
            "sku",
            &[storekit_core::table::KeyValue::Text("s2".into())],
        )
        .await
        .expect("by unique")
        .expect("held");
        assert_eq!(by_sku.document["id"], json!("b"));
    })
    .await;
}
