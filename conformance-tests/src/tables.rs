//! The tables store: records, versions, unique and query indexes, pages, documents and
//! schemas, the same on every backend.
//!
//! Index queries right after a write go through [`settled`], which waits out a backend whose
//! index reads are eventual ([`Consistency::Eventual`]): a case that assumed read-after-write
//! there would fail on the memory backend with index lag, not only on DynamoDB.

use std::time::Duration;

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    Consistency, Document, KeyDef, KeyValue, Query, QueryPage, Record, RecordKey, TableSchema,
    TableStatus, TableStore,
};

use crate::Fixture;

/// A JSON object as a document.
fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// `things`: a text id, a query index on (group, rank), a sparse index on name alone, a
/// unique sku and a unique (a, b) pair.
fn things() -> TableSchema {
    TableSchema::builder("things", KeyDef::text("id"))
        .index("by-group", KeyDef::text("group"), Some(KeyDef::int("rank")))
        .index("by-name", KeyDef::text("name"), None)
        .unique("sku", [KeyDef::text("sku")])
        .unique("pair", [KeyDef::text("a"), KeyDef::int("b")])
        .build()
        .expect("valid schema")
}

async fn ensure<'a>(f: &'a Fixture, schema: &TableSchema) -> &'a dyn TableStore {
    let store = f.tables().as_ref();
    store.ensure_table(schema).await.expect("ensure_table");
    store
}

/// Runs an index query until `done` accepts its page (at once where index reads are
/// read-after-write; within 10 s where they are eventual).
async fn settled(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: &Query,
    done: impl Fn(&QueryPage) -> bool,
) -> QueryPage {
    let patient = store.index_consistency() == Consistency::Eventual;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = store.query(schema, query).await.expect("query");
        if done(&page) || !patient || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.document["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Insert, get, put and replace: every write bumps the version and reads back as written.
pub async fn round_trip_and_versions(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let inserted = store
        .insert(
            &schema,
            doc(json!({"id": "t1", "group": "g", "rank": 1, "sku": "S1", "note": "first"})),
        )
        .await
        .expect("insert");
    assert_eq!(inserted.version, 1);
    assert_eq!(inserted.key, RecordKey::new("t1"));
    let read = store
        .get(&schema, &"t1".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read, inserted);
    assert!(
        store
            .contains(&schema, &"t1".into())
            .await
            .expect("contains")
    );
    assert!(
        !store
            .contains(&schema, &"t2".into())
            .await
            .expect("contains")
    );
    assert_eq!(store.get(&schema, &"t2".into()).await.expect("get"), None);

    let replaced = store
        .replace(
            &schema,
            doc(json!({"id": "t1", "group": "g", "rank": 2, "note": "second"})),
            1,
        )
        .await
        .expect("replace");
    assert_eq!(replaced.version, 2);
    let put = store
        .put(&schema, doc(json!({"id": "t1", "note": "third"})))
        .await
        .expect("put");
    assert_eq!(put.version, 3);
    let read = store
        .get(&schema, &"t1".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        Value::Object(read.document),
        json!({"id": "t1", "note": "third"})
    );
    assert_eq!(read.version, 3);
    assert_eq!(store.count(&schema).await.expect("count"), 1);
    assert_eq!(
        store.ensure_table(&schema).await.expect("ensure again"),
        TableStatus::Unchanged
    );
}
