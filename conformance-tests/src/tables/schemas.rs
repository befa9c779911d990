//! Tables and their schemas: the rules a schema must keep, concurrent creation, drift,
//! indexes added to a populated table, and a dropped table.

use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{
    KeyDef, KeyValue, MAX_PAGE, Query, RecordKey, Scan, SortCondition, TableSchema, TableStatus,
};

use super::{doc, ensure, insert, products, settled, store, things};
use crate::Fixture;

/// Schemas break no backend's rules: bad names, types declared twice, too many indexes;
/// queries name declared indexes only.
pub async fn schema_rules_are_checked(f: &Fixture) {
    let refused = [
        TableSchema::builder("ab", KeyDef::text("id")).build(),
        TableSchema::builder("with space", KeyDef::text("id")).build(),
        TableSchema::builder("t".repeat(41), KeyDef::text("id")).build(),
        TableSchema::builder("table", KeyDef::text("id"))
            .index("ix1", KeyDef::int("id"), None)
            .build(),
        TableSchema::builder("table", KeyDef::text("id"))
            .sort_key(KeyDef::text("id"))
            .build(),
        TableSchema::builder("table", KeyDef::text("id"))
            .unique("uq1", [KeyDef::text("a"), KeyDef::text("a")])
            .build(),
        TableSchema::builder("table", KeyDef::text("id"))
            .unique("u5", (0..5).map(|i| KeyDef::text(format!("f{i}"))))
            .build(),
    ];
    for schema in refused {
        assert_matches!(schema, Err(Error::InvalidInput { what: "schema", .. }));
    }
    let schema = things();
    let store = ensure(f, &schema).await;
    let unknown = store
        .query(&schema, &Query::index("no-such-index", "x"))
        .await;
    assert_matches!(unknown, Err(Error::InvalidInput { .. }));
    let unknown = store
        .get_by_unique(&schema, "no-such-index", &["x".into()])
        .await;
    assert_matches!(unknown, Err(Error::InvalidInput { .. }));
    let on_int = store.query(&schema, &Query::index("by-group", 1)).await;
    assert_matches!(on_int, Err(Error::InvalidInput { .. }));
    let no_sort = store
        .query(
            &schema,
            &Query::index("by-name", "n").sort(SortCondition::Eq("x".into())),
        )
        .await;
    assert_matches!(no_sort, Err(Error::InvalidInput { .. }));
}

/// Eight tasks ensure one new table at once: all succeed, and it is usable and unchanged.
pub async fn concurrent_ensure_table_creates_it_once(f: &Fixture) {
    let schema = products();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, schema) = (store(f), schema.clone());
            tokio::spawn(async move { store.ensure_table(&schema).await })
        })
        .collect();
    for task in tasks {
        let status = task.await.expect("task").expect("ensure_table");
        assert_matches!(status, TableStatus::Created | TableStatus::Unchanged);
    }
    let store = f.tables().as_ref();
    assert_eq!(
        store.ensure_table(&schema).await.expect("again"),
        TableStatus::Unchanged
    );
    insert(
        store,
        &schema,
        json!({"id": "p", "name": "n", "updated_at": 1}),
    )
    .await;
    assert_eq!(store.count(&schema).await.expect("count"), 1);
}

/// A query index and a unique index declared on a table of 500 records are added and filled
/// from them.
pub async fn adding_indexes_to_a_populated_table_backfills_them(f: &Fixture) {
    let before = TableSchema::builder("grown", KeyDef::text("id"))
        .build()
        .expect("valid");
    let store = ensure(f, &before).await;
    // 32 writers at a time: enough to fill it quickly, few enough for a local server.
    futures::stream::iter(0..500)
        .map(|i| {
            let color = ["red", "green", "blue", "grey", "black"][i % 5];
            let record = doc(json!({"id": format!("g{i:03}"), "color": color, "code": i}));
            store.insert(&before, record)
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("insert");
    let after = TableSchema::builder("grown", KeyDef::text("id"))
        .index("by-color", KeyDef::text("color"), Some(KeyDef::int("code")))
        .unique("code", [KeyDef::int("code")])
        .build()
        .expect("valid");
    let status = store.ensure_table(&after).await.expect("add indexes");
    assert_eq!(
        status,
        TableStatus::IndexesAdded(vec!["by-color".to_owned(), "code".to_owned()])
    );
    let query = Query::index("by-color", "blue").limit(MAX_PAGE);
    let blue = settled(store, &after, &query, |p| p.items.len() == 100).await;
    assert_eq!(blue.items.len(), 100);
    let codes: Vec<i64> = blue
        .items
        .iter()
        .map(|r| r.document["code"].as_i64().expect("code"))
        .collect();
    assert_eq!(codes, (0..500).filter(|i| i % 5 == 2).collect::<Vec<i64>>());
    let found = store
        .get_by_unique(&after, "code", &[KeyValue::from(321)])
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.key), Some(RecordKey::new("g321")));
    let taken = store
        .insert(&after, doc(json!({"id": "new", "code": 321})))
        .await;
    assert_matches!(
        taken,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    assert_eq!(
        store.ensure_table(&after).await.expect("again"),
        TableStatus::Unchanged
    );
}

/// Once a table is dropped, every call on it answers `NotFound { what: "table" }`, reads
/// included: an empty answer would hide the mistake (a miss of a unique value, on DynamoDB,
/// reads only the marker table, which outlives the record table).
pub async fn every_call_on_a_dropped_table_is_not_found(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "t1", "sku": "S1", "group": "g", "rank": 1}),
    )
    .await;
    assert!(store.drop_table(&schema).await.expect("drop"));
    let key = RecordKey::new("t1");
    let not_found = |what: &str, result: Result<(), Error>| {
        assert_matches!(result, Err(Error::NotFound { what: "table" }), "{what}");
    };
    for sku in ["S1", "S2"] {
        not_found(
            &format!("get_by_unique {sku}"),
            store
                .get_by_unique(&schema, "sku", &[KeyValue::from(sku)])
                .await
                .map(drop),
        );
    }
    not_found("get", store.get(&schema, &key).await.map(drop));
    not_found(
        "get_many",
        store
            .get_many(&schema, std::slice::from_ref(&key))
            .await
            .map(drop),
    );
    not_found("contains", store.contains(&schema, &key).await.map(drop));
    not_found(
        "query",
        store.query(&schema, &Query::table("t1")).await.map(drop),
    );
    not_found(
        "index query",
        store
            .query(&schema, &Query::index("by-group", "g"))
            .await
            .map(drop),
    );
    not_found(
        "scan",
        store.scan(&schema, &Scan::new().limit(10)).await.map(drop),
    );
    not_found("count", store.count(&schema).await.map(drop));
    not_found(
        "insert",
        store
            .insert(&schema, doc(json!({"id": "t2"})))
            .await
            .map(drop),
    );
    not_found("delete", store.delete(&schema, &key, None).await.map(drop));
}
