//! The tables store at the edges of its schemas: table names that collide, names a backend
//! reserves, and indexes added to a table whose records do not all fit them. Each rule is
//! written once in `storekit_core::table` and answered the same on every backend.

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{KeyDef, KeyValue, Query, RecordKey, TableSchema, TableStatus};

use crate::Fixture;
use crate::tables::{doc, ensure, get, insert};

fn plain(name: &str) -> TableSchema {
    TableSchema::builder(name, KeyDef::text("id"))
        .build()
        .expect("valid schema")
}

/// Table names that differ only in ASCII letter case are one name on every backend (SQLite
/// cannot tell them apart): the second is refused when ensured, calls through it find no
/// table and never reach the first, and names a backend reserves for itself are refused when
/// the schema is built.
pub async fn table_names_that_differ_only_in_case_are_one_name(f: &Fixture) {
    let lower = plain("things");
    let store = ensure(f, &lower).await;
    insert(store, &lower, json!({"id": "a"})).await;
    let upper = plain("Things");
    let refused = store.ensure_table(&upper).await;
    assert_matches!(
        refused,
        Err(Error::InvalidInput {
            what: "table name",
            ..
        })
    );
    let through = store.insert(&upper, doc(json!({"id": "b"}))).await;
    assert_matches!(through, Err(Error::NotFound { what: "table" }));
    let read = store.get(&upper, &RecordKey::new("a")).await;
    assert_matches!(read, Err(Error::NotFound { what: "table" }));
    assert!(!store.drop_table(&upper).await.expect("drop the other name"));
    assert_eq!(store.count(&lower).await.expect("count"), 1);
    assert!(get(store, &lower, &RecordKey::new("a")).await.is_some());
    assert_eq!(
        store.ensure_table(&lower).await.expect("again"),
        TableStatus::Unchanged
    );
    for reserved in [
        "sqlite_things",
        "SQLite_Things",
        "Storekit_Tables",
        "Kv_Rowid",
    ] {
        let built = TableSchema::builder(reserved, KeyDef::text("id")).build();
        assert_matches!(
            built,
            Err(Error::InvalidInput { what: "schema", .. }),
            "{reserved}"
        );
    }
}

/// An index added to a populated table: a record lacking one of its fields is left out of it,
/// as a write would leave it out; one holding `null` there is left out too, and rewritten
/// without the `null` (as a write under the new schema stores it); a record holding a value
/// of another type refuses the whole addition before anything is created or changed, with an
/// error naming the index and the record.
pub async fn adding_an_index_over_records_that_do_not_fit_it(f: &Fixture) {
    let before = plain("grown");
    let store = ensure(f, &before).await;
    insert(
        store,
        &before,
        json!({"id": "red1", "color": "red", "code": 1}),
    )
    .await;
    insert(
        store,
        &before,
        json!({"id": "null2", "color": null, "code": null}),
    )
    .await;
    insert(store, &before, json!({"id": "none3"})).await;
    insert(
        store,
        &before,
        json!({"id": "wrong4", "color": 4, "code": 4}),
    )
    .await;
    let after = TableSchema::builder("grown", KeyDef::text("id"))
        .index("by-color", KeyDef::text("color"), None)
        .unique("code", [KeyDef::int("code")])
        .build()
        .expect("valid schema");
    let refused = store.ensure_table(&after).await;
    let Err(Error::SchemaMismatch { differences, .. }) = &refused else {
        panic!("a record of another type refuses the index: {refused:?}");
    };
    assert!(
        differences
            .iter()
            .any(|d| d.contains("by-color") && d.contains("wrong4")),
        "{differences:?}"
    );
    // Nothing was added: the table is still the one `before` declares.
    assert_eq!(
        store.ensure_table(&before).await.expect("as it was"),
        TableStatus::Unchanged
    );
    store
        .put(
            &before,
            doc(json!({"id": "wrong4", "color": "blue", "code": 4})),
        )
        .await
        .expect("mend the record");
    assert_eq!(
        store.ensure_table(&after).await.expect("add indexes"),
        TableStatus::IndexesAdded(vec!["by-color".to_owned(), "code".to_owned()])
    );
    for (color, want) in [("red", "red1"), ("blue", "wrong4")] {
        let query = Query::index("by-color", color);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let page = loop {
            let page = store.query(&after, &query).await.expect("query");
            if !page.items.is_empty() || tokio::time::Instant::now() > deadline {
                break page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let ids: Vec<_> = page.items.iter().map(|r| r.key.clone()).collect();
        assert_eq!(ids, vec![RecordKey::new(want)], "{color}");
    }
    let code = store
        .get_by_unique(&after, "code", &[KeyValue::from(4)])
        .await
        .expect("lookup");
    assert_eq!(code.map(|r| r.key), Some(RecordKey::new("wrong4")));
    // The record with nulls is in neither index, and reads back as a write under the new
    // schema stores it: without the nulls of its index fields, one version up.
    let nulls = get(store, &after, &RecordKey::new("null2"))
        .await
        .expect("still there");
    assert_eq!(nulls.document, doc(json!({"id": "null2"})));
    assert_eq!(nulls.version, 2);
    insert(store, &after, json!({"id": "new5", "code": 5})).await;
}

/// A unique index added over records that already hold one value twice is refused with
/// `AlreadyExists` and leaves nothing behind: the table is as it was, and once the duplicate
/// is gone the index is added and every value nobody holds is free.
pub async fn a_refused_unique_index_leaves_nothing_behind(f: &Fixture) {
    let before = plain("skus");
    let store = ensure(f, &before).await;
    insert(store, &before, json!({"id": "a", "sku": "x"})).await;
    insert(store, &before, json!({"id": "b", "sku": "x"})).await;
    insert(store, &before, json!({"id": "c", "sku": "y"})).await;
    insert(store, &before, json!({"id": "d", "sku": "z"})).await;
    let after = TableSchema::builder("skus", KeyDef::text("id"))
        .unique("sku", [KeyDef::text("sku")])
        .build()
        .expect("valid schema");
    let refused = store.ensure_table(&after).await;
    assert_matches!(
        refused,
        Err(Error::AlreadyExists {
            what: "unique value"
        })
    );
    assert_eq!(
        store.ensure_table(&before).await.expect("as it was"),
        TableStatus::Unchanged
    );
    // Through the schema without the index, as the application still runs: values move.
    assert!(
        store
            .delete(&before, &"c".into(), None)
            .await
            .expect("delete")
    );
    store
        .put(&before, doc(json!({"id": "b", "sku": "w"})))
        .await
        .expect("put");
    store
        .put(&before, doc(json!({"id": "d", "sku": "v"})))
        .await
        .expect("put");
    assert_eq!(
        store.ensure_table(&after).await.expect("add the index"),
        TableStatus::IndexesAdded(vec!["sku".to_owned()])
    );
    for (id, sku) in [("e", "y"), ("f", "z")] {
        store
            .insert(&after, doc(json!({"id": id, "sku": sku})))
            .await
            .unwrap_or_else(|e| panic!("{sku} is held by nobody: {e}"));
    }
    for sku in ["x", "w", "v", "y", "z"] {
        let taken = store
            .insert(&after, doc(json!({"id": format!("new-{sku}"), "sku": sku})))
            .await;
        assert_matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            }),
            "{sku}"
        );
    }
}

/// An exact-named table (`TableSchemaBuilder::exact_name`) is the database's table of that
/// very name in every store: two stores with different prefixes reach one table, each
/// reading what the other wrote. Its name is still checked (storekit's own names, SQLite's
/// `sqlite_`, the length), a unique index on it is refused (stores would keep its values
/// apart), and a store holds one table of a name, exact or prefixed.
pub async fn an_exact_named_table_is_one_table_for_every_prefix(f: &Fixture) {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("randomness");
    // Not under either store's prefix, so no store's own tables come near it.
    let name = format!(
        "exact-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let exact = |name: &str| {
        TableSchema::builder(name, KeyDef::text("id"))
            .index("by-name", KeyDef::text("name"), None)
            .exact_name()
    };
    let schema = exact(&name).build().expect("valid schema");
    assert!(schema.is_exact_name());

    for refused in [
        exact("storekit_unique").build(),
        exact("KV").build(),
        exact("sqlite_things").build(),
        exact(&"t".repeat(41)).build(),
        exact("ab").build(),
        exact(&name).unique("by-sku", [KeyDef::text("sku")]).build(),
    ] {
        assert_matches!(refused, Err(Error::InvalidInput { .. }));
    }

    let (one, two) = (f.tables().as_ref(), f.neighbour_tables().as_ref());
    assert_eq!(
        one.ensure_table(&schema).await.expect("ensure_table"),
        TableStatus::Created
    );
    insert(one, &schema, json!({"id": "p1", "name": "Widget"})).await;
    // The second store finds the table (SQL stores adopt it into their own catalog).
    two.ensure_table(&schema)
        .await
        .expect("ensure_table from the other prefix");
    let read = two
        .get(&schema, &"p1".into())
        .await
        .expect("get")
        .expect("written by the other store");
    assert_eq!(
        Value::Object(read.document),
        json!({"id": "p1", "name": "Widget"})
    );
    insert(two, &schema, json!({"id": "p2", "name": "Gadget"})).await;
    assert_eq!(one.count(&schema).await.expect("count"), 2);
    assert_eq!(two.count(&schema).await.expect("count"), 2);
    assert_eq!(
        two.ensure_table(&schema).await.expect("ensure again"),
        TableStatus::Unchanged
    );

    // The same name with the prefix is another declaration of one name: refused, and the
    // exact table keeps its records.
    let prefixed = TableSchema::builder(&name, KeyDef::text("id"))
        .index("by-name", KeyDef::text("name"), None)
        .build()
        .expect("valid schema");
    let other = one.ensure_table(&prefixed).await;
    assert_matches!(other, Err(Error::SchemaMismatch { .. }));
    assert_eq!(one.count(&schema).await.expect("count"), 2);

    assert!(one.drop_table(&schema).await.expect("drop"));
    let gone = two.get(&schema, &"p1".into()).await;
    assert_matches!(gone, Err(Error::NotFound { .. }));
    // The other store's catalog still names it; dropping there finds nothing more to drop.
    let _ = two
        .drop_table(&schema)
        .await
        .expect("drop from the other store");
}
