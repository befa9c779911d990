//! Query indexes that hold part of each record (`KEYS_ONLY`, `INCLUDE`), indexes a schema does
//! not declare, and billing and tags: the same answers on every backend (issue 23, items 2 to
//! 4).
//!
//! A query on a partial index returns what the index holds (the table's and the index's key
//! fields, and the included fields the record has) at version 0, as a DynamoDB `Query` on
//! such a global secondary index answers; [`Query::whole_records`] returns the whole records.
//! SQL and memory trim whole records to the same fields.

use serde::Deserialize;
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    Billing, Condition, IndexProjection, KeyDef, Query, QueryIndex, Record, RecordKey, Table,
    TableSchema, TableStatus, TableStore, Throughput,
};

use crate::Fixture;
use crate::tables::{doc, settled};

/// `iproj`: a text `id`; three indexes on (`kind`, `rank`): `by-kind-keys` projecting
/// `KEYS_ONLY`, `by-kind-some` including `name` and `price`, and `by-kind-all` projecting
/// `ALL`.
fn schema() -> TableSchema {
    let on_kind =
        |name: &str| QueryIndex::new(name, KeyDef::text("kind"), Some(KeyDef::int("rank")));
    TableSchema::builder("iproj", KeyDef::text("id"))
        .query_index(on_kind("by-kind-keys").keys_only())
        .query_index(on_kind("by-kind-some").include(["price", "name"]))
        .query_index(on_kind("by-kind-all"))
        .build()
        .expect("valid schema")
}

/// Three lamps (one without a price) and a chair.
async fn filled(f: &Fixture) -> (&dyn TableStore, TableSchema, Vec<Record>) {
    let (store, schema) = (f.tables().as_ref(), schema());
    store.ensure_table(&schema).await.expect("ensure_table");
    let mut records = Vec::new();
    for value in [
        json!({"id": "a", "kind": "lamp", "rank": 1, "name": "Arc", "price": 10, "notes": {"x": 1}}),
        json!({"id": "b", "kind": "lamp", "rank": 2, "name": "Bow", "notes": "n"}),
        json!({"id": "c", "kind": "lamp", "rank": 3, "name": "Cup", "price": 30, "tags": [1, 2]}),
        json!({"id": "d", "kind": "chair", "rank": 1, "name": "Dee", "price": 40}),
    ] {
        records.push(store.put(&schema, doc(value)).await.expect("put"));
    }
    (store, schema, records)
}

async fn lamps(store: &dyn TableStore, schema: &TableSchema, query: Query) -> Vec<Record> {
    settled(store, schema, &query, |page| page.items.len() == 3)
        .await
        .items
}

fn documents(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| Value::Object(r.document.clone()))
        .collect()
}

/// A `KEYS_ONLY` index returns the table's and the index's key fields; an `INCLUDE` index
/// those and the included fields the record has; both at version 0, which the index does not
/// hold. An `ALL` index returns whole records at their versions.
pub async fn a_partial_index_returns_what_it_holds(f: &Fixture) {
    let (store, schema, records) = filled(f).await;
    let keys = lamps(store, &schema, Query::index("by-kind-keys", "lamp")).await;
    assert_eq!(
        documents(&keys),
        [
            json!({"id": "a", "kind": "lamp", "rank": 1}),
            json!({"id": "b", "kind": "lamp", "rank": 2}),
            json!({"id": "c", "kind": "lamp", "rank": 3}),
        ]
    );
    assert!(keys.iter().all(|r| r.version == 0), "{keys:?}");
    assert_eq!(keys[0].key, RecordKey::new("a"));
    let some = lamps(
        store,
        &schema,
        Query::index("by-kind-some", "lamp").descending(),
    )
    .await;
    assert_eq!(
        documents(&some),
        [
            json!({"id": "c", "kind": "lamp", "rank": 3, "name": "Cup", "price": 30}),
            json!({"id": "b", "kind": "lamp", "rank": 2, "name": "Bow"}),
            json!({"id": "a", "kind": "lamp", "rank": 1, "name": "Arc", "price": 10}),
        ]
    );
    assert!(some.iter().all(|r| r.version == 0), "{some:?}");
    let all = lamps(store, &schema, Query::index("by-kind-all", "lamp")).await;
    assert_eq!(all, records[..3], "an ALL index holds whole records");

    // Selecting and filtering within what the index holds; pages and cursors as usual.
    let cheap = Query::index("by-kind-some", "lamp")
        .select(["price"])
        .filter(Condition::exists("price"))
        .limit(1);
    let first = settled(store, &schema, &cheap, |page| page.next.is_some()).await;
    assert_eq!(documents(&first.items), [json!({"id": "a", "price": 10})]);
    let cursor = first.next.clone().expect("a second page");
    let second = store
        .query(&schema, &cheap.clone().after(cursor))
        .await
        .expect("query");
    assert_eq!(documents(&second.items), [json!({"id": "c", "price": 30})]);
}

/// `whole_records` returns the whole records from a partial index, at their versions, and
/// selects from them; on an `ALL` index and on the table it changes nothing.
pub async fn whole_records_come_from_the_table(f: &Fixture) {
    let (store, schema, records) = filled(f).await;
    for index in ["by-kind-keys", "by-kind-some", "by-kind-all"] {
        let whole = lamps(store, &schema, Query::index(index, "lamp").whole_records()).await;
        assert_eq!(whole, records[..3], "{index}");
    }
    let notes = lamps(
        store,
        &schema,
        Query::index("by-kind-keys", "lamp")
            .whole_records()
            .select(["notes"]),
    )
    .await;
    assert_eq!(
        documents(&notes),
        [
            json!({"id": "a", "notes": {"x": 1}}),
            json!({"id": "b", "notes": "n"}),
            json!({"id": "c"}),
        ]
    );
    assert_eq!(
        notes.iter().map(|r| r.version).collect::<Vec<_>>(),
        [1, 1, 1],
        "read from the table, with their versions"
    );
    let table = store
        .query(&schema, &Query::table("d").whole_records())
        .await
        .expect("query");
    assert_eq!(table.items, records[3..]);
}

/// A selection or a filter naming a field the partial index does not hold is
/// `InvalidInput` on every backend (DynamoDB would read it as missing, silently); with whole
/// records a selection may name any field, a filter still only what the index holds.
pub async fn paths_a_partial_index_does_not_hold_are_refused(f: &Fixture) {
    let (store, schema, _) = filled(f).await;
    let refused = |result: Result<_, Error>, what: &str| match result {
        Err(Error::InvalidInput { what: found, .. }) => assert_eq!(found, what),
        other => panic!("expected InvalidInput ({what}), got {other:?}"),
    };
    let keys = || Query::index("by-kind-keys", "lamp");
    refused(
        store.query(&schema, &keys().select(["name"])).await,
        "projection",
    );
    refused(
        store
            .query(
                &schema,
                &Query::index("by-kind-some", "lamp").select(["notes.x"]),
            )
            .await,
        "projection",
    );
    refused(
        store
            .query(&schema, &keys().filter(Condition::exists("name")))
            .await,
        "condition",
    );
    refused(
        store
            .query(
                &schema,
                &keys().whole_records().filter(Condition::exists("notes")),
            )
            .await,
        "condition",
    );
    assert!(
        store
            .query(&schema, &keys().whole_records().select(["name"]))
            .await
            .is_ok()
    );
}

#[derive(Debug, Deserialize, PartialEq)]
struct Listed {
    id: String,
    name: String,
    price: Option<i64>,
}

#[derive(Debug, serde::Serialize, Deserialize, PartialEq)]
struct Product {
    id: String,
    kind: String,
    rank: i64,
    name: String,
}

/// What a partial index holds reads as a type of those fields (`Table::query_as`).
pub async fn a_partial_index_reads_as_a_type_of_its_fields(f: &Fixture) {
    let schema = schema();
    let table: Table<Product> = Table::new(f.tables().clone(), schema);
    table.ensure().await.expect("ensure");
    for (id, rank, name) in [("a", 1, "Arc"), ("b", 2, "Bow")] {
        let product = Product {
            id: id.into(),
            kind: "lamp".into(),
            rank,
            name: name.into(),
        };
        table.put(&product).await.expect("put");
    }
    let query = Query::index("by-kind-some", "lamp");
    let store = f.tables().as_ref();
    settled(store, table.schema(), &query, |page| page.items.len() == 2).await;
    let page = table.query_as::<Listed>(query).await.expect("query_as");
    let listed: Vec<&Listed> = page.items.iter().map(|v| &v.record).collect();
    assert_eq!(
        listed,
        [
            &Listed {
                id: "a".into(),
                name: "Arc".into(),
                price: None
            },
            &Listed {
                id: "b".into(),
                name: "Bow".into(),
                price: None
            },
        ]
    );
}

/// A table whose keys or declared index keys drifted is refused with every difference; one
/// with an index the schema no longer declares is not (issue 23 item 3: another team's index
/// is left alone).
pub async fn a_drifted_table_is_refused_and_an_undeclared_index_left_alone(f: &Fixture) {
    let store = f.tables().as_ref();
    let products = |partition: KeyDef, sort: KeyDef, indexed: bool| {
        let builder = TableSchema::builder("products", partition);
        let builder = if indexed {
            builder.index("product-name-index", KeyDef::text("name"), Some(sort))
        } else {
            builder
        };
        builder.build().expect("valid schema")
    };
    let declared = products(KeyDef::text("id"), KeyDef::float("updated_at"), true);
    store.ensure_table(&declared).await.expect("ensure");
    let drifted = products(KeyDef::int("id"), KeyDef::text("updated_at"), true);
    let refused = store.ensure_table(&drifted).await;
    let Err(Error::SchemaMismatch { table, differences }) = refused else {
        panic!("a drifted table is refused: {refused:?}");
    };
    assert_eq!(table, "products");
    assert_eq!(
        differences,
        [
            "partition key is id text, declared id int",
            "index \"product-name-index\" is on (name text, updated_at float), declared \
             (name text, updated_at text)",
        ]
    );
    let without = products(KeyDef::text("id"), KeyDef::float("updated_at"), false);
    assert_eq!(
        store.ensure_table(&without).await.expect("left alone"),
        TableStatus::UndeclaredIndexes {
            added: Vec::new(),
            undeclared: vec!["product-name-index".to_owned()],
        }
    );
    let again = store.ensure_table(&declared).await.expect("as declared");
    if f.capabilities.undeclared_indexes_stay {
        assert_eq!(again, TableStatus::Unchanged);
    } else {
        assert_eq!(
            again,
            TableStatus::IndexesAdded(vec!["product-name-index".to_owned()])
        );
    }
}

/// A live index that projects otherwise than declared is a mismatch, as its keys would be.
pub async fn a_projection_declared_otherwise_is_a_mismatch(f: &Fixture) {
    let store = f.tables().as_ref();
    let declared = |projection: IndexProjection| {
        TableSchema::builder("iproj2", KeyDef::text("id"))
            .query_index(
                QueryIndex::new("by-kind", KeyDef::text("kind"), None).projected(projection),
            )
            .build()
            .expect("valid schema")
    };
    let made = declared(IndexProjection::include(["name"]));
    assert_eq!(
        store.ensure_table(&made).await.expect("ensure"),
        TableStatus::Created
    );
    assert_eq!(
        store.ensure_table(&made).await.expect("ensure"),
        TableStatus::Unchanged
    );
    for other in [
        IndexProjection::All,
        IndexProjection::KeysOnly,
        IndexProjection::include(["name", "price"]),
    ] {
        let expected = format!("index \"by-kind\" projects INCLUDE(name), declared {other}");
        match store.ensure_table(&declared(other)).await {
            Err(Error::SchemaMismatch { differences, .. }) => {
                assert_eq!(differences, [expected]);
            }
            found => panic!("expected a mismatch, got {found:?}"),
        }
    }
}

/// A live query index the schema does not declare is left alone and listed by
/// `ensure_table`, never a mismatch; a declared index the table lacks is still added and
/// filled. On DynamoDB the left-alone index is the database's and stays listed; SQL and
/// memory forget it (their writes no longer keep it) and rebuild it when it is declared
/// again: the query on it answers the same everywhere.
pub async fn undeclared_indexes_are_left_alone_and_listed(f: &Fixture) {
    let store = f.tables().as_ref();
    let with = |indexes: &[&str]| {
        let mut builder = TableSchema::builder("iproj3", KeyDef::text("id"));
        for name in indexes {
            let field = name.trim_start_matches("by-");
            builder = builder.index(*name, KeyDef::text(field), None);
        }
        builder.build().expect("valid schema")
    };
    let both = with(&["by-color", "by-size"]);
    store.ensure_table(&both).await.expect("ensure");
    for (id, color, size) in [("1", "red", "s"), ("2", "blue", "s"), ("3", "red", "m")] {
        let value = json!({"id": id, "color": color, "size": size});
        store.put(&both, doc(value)).await.expect("put");
    }
    let colors = with(&["by-color"]);
    assert_eq!(
        store.ensure_table(&colors).await.expect("ensure"),
        TableStatus::UndeclaredIndexes {
            added: Vec::new(),
            undeclared: vec!["by-size".to_owned()],
        }
    );
    // Written while `by-size` is not declared: 3 leaves size `m`, 4 is new.
    let moved = json!({"id": "3", "color": "red", "size": "s"});
    store.put(&colors, doc(moved)).await.expect("put");
    let new = json!({"id": "4", "color": "red", "size": "m"});
    store.put(&colors, doc(new)).await.expect("put");
    let red = Query::index("by-color", "red");
    let page = settled(store, &colors, &red, |page| page.items.len() == 3).await;
    assert_eq!(page.items.len(), 3);

    let status = store
        .ensure_table(&with(&["by-color", "by-kind"]))
        .await
        .expect("ensure");
    assert_eq!(status.added_indexes(), ["by-kind"]);
    let kept: &[&str] = if f.capabilities.undeclared_indexes_stay {
        &["by-size"]
    } else {
        &[]
    };
    assert_eq!(status.undeclared_indexes(), kept);

    let all = with(&["by-color", "by-kind", "by-size"]);
    let status = store.ensure_table(&all).await.expect("ensure");
    if f.capabilities.undeclared_indexes_stay {
        assert_eq!(status, TableStatus::Unchanged);
    } else {
        assert_eq!(
            status,
            TableStatus::IndexesAdded(vec!["by-size".to_owned()])
        );
    }
    let medium = Query::index("by-size", "m");
    let page = settled(store, &all, &medium, |page| page.items.len() == 1).await;
    let ids: Vec<&Value> = page.items.iter().map(|r| &r.document["id"]).collect();
    assert_eq!(
        ids,
        [&json!("4")],
        "the index answers for the records as they are"
    );
}

/// Billing, index throughput and tags are part of a schema on every backend: DynamoDB makes
/// the table so (and finds it unchanged after), SQL and memory accept them and ignore them.
pub async fn billing_and_tags_are_accepted_everywhere(f: &Fixture) {
    let store = f.tables().as_ref();
    let schema = TableSchema::builder("iproj4", KeyDef::text("id"))
        .query_index(
            QueryIndex::new("by-name", KeyDef::text("name"), None)
                .include(["price"])
                .throughput(Throughput::new(2, 1)),
        )
        .index("by-kind", KeyDef::text("kind"), None)
        .billing(Billing::Provisioned(Throughput::new(3, 2)))
        .tag("team", "catalogue")
        .build()
        .expect("valid schema");
    assert_eq!(schema.index_throughput(1), Some(Throughput::new(3, 2)));
    assert_eq!(
        store.ensure_table(&schema).await.expect("ensure"),
        TableStatus::Created
    );
    assert_eq!(
        store.ensure_table(&schema).await.expect("ensure"),
        TableStatus::Unchanged
    );
    let value = json!({"id": "p1", "name": "lamp", "kind": "light", "price": 5});
    let written = store.put(&schema, doc(value)).await.expect("put");
    let read = store
        .get(&schema, &RecordKey::new("p1"))
        .await
        .expect("get");
    assert_eq!(read, Some(written));
    let bad = TableSchema::builder("iproj5", KeyDef::text("id"))
        .query_index(
            QueryIndex::new("by-name", KeyDef::text("name"), None)
                .throughput(Throughput::new(1, 1)),
        )
        .build();
    assert!(
        matches!(bad, Err(Error::InvalidInput { what: "schema", .. })),
        "an index throughput on an on-demand table: {bad:?}"
    );
}
