//! The tables store: records, versions, unique and query indexes, pages, documents and
//! schemas, the same on every backend.
//!
//! Index queries right after a write go through `settled`, which waits out a backend whose
//! index reads are eventual ([`Consistency::Eventual`]): a case that assumed read-after-write
//! there would fail on the memory backend with index lag, not only on DynamoDB.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    Consistency, Document, KeyDef, KeyValue, MAX_DOCUMENT_BYTES, MAX_KEY_BYTES, MAX_PAGE, Query,
    QueryPage, Record, RecordKey, Scan, SortCondition, Table, TableSchema, TableStatus, TableStore,
    dynamodb_size, query_stream, scan_stream,
};

use crate::Fixture;

/// A JSON object as a document.
/// A JSON object literal as a document.
pub(crate) fn doc(value: Value) -> Document {
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
pub(crate) async fn settled(
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

fn store(f: &Fixture) -> Arc<dyn TableStore> {
    f.tables().clone()
}

async fn insert(store: &dyn TableStore, schema: &TableSchema, value: Value) -> Record {
    store.insert(schema, doc(value)).await.expect("insert")
}

/// `series`: partition `p` (text), sort `n` (integer).
fn series() -> TableSchema {
    TableSchema::builder("series", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .build()
        .expect("valid schema")
}

/// `words`: partition `p` (text), sort `w` (text).
fn words() -> TableSchema {
    TableSchema::builder("words", KeyDef::text("p"))
        .sort_key(KeyDef::text("w"))
        .build()
        .expect("valid schema")
}

/// The catalogue's table: a UUID-like id and the `product-name-index` on (name, updated_at).
fn products() -> TableSchema {
    TableSchema::builder("products", KeyDef::text("id"))
        .index(
            "product-name-index",
            KeyDef::text("name"),
            Some(KeyDef::float("updated_at")),
        )
        .build()
        .expect("valid schema")
}

/// The sort keys of a page of `series` or `words`, as JSON.
fn sorts(records: &[Record], field: &str) -> Vec<Value> {
    records.iter().map(|r| r.document[field].clone()).collect()
}

/// Every record a query matches, following cursors page by page.
async fn all_pages(
    store: &dyn TableStore,
    schema: &TableSchema,
    query: Query,
) -> (Vec<Record>, usize) {
    let (mut records, mut pages, mut query) = (Vec::new(), 0, query);
    loop {
        let page = store.query(schema, &query).await.expect("query");
        pages += 1;
        records.extend(page.items);
        match page.next {
            Some(cursor) => query = query.after(cursor),
            None => return (records, pages),
        }
        assert!(pages < 10_000, "the cursors never end");
    }
}

/// Insert creates only: a second insert of the key is `AlreadyExists`, and leaves the first;
/// put creates and overwrites.
pub async fn insert_is_create_only_and_put_upserts(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "a", "note": 1})).await;
    let again = store
        .insert(&schema, doc(json!({"id": "a", "note": 2})))
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { what: "record" })),
        "{again:?}"
    );
    let kept = store
        .get(&schema, &"a".into())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((kept.document["note"].clone(), kept.version), (json!(1), 1));
    let created = store
        .put(&schema, doc(json!({"id": "b"})))
        .await
        .expect("put creates");
    assert_eq!(created.version, 1);
    let over = store
        .put(&schema, doc(json!({"id": "a", "note": 3})))
        .await
        .expect("put overwrites");
    assert_eq!(over.version, 2);
    assert_eq!(store.count(&schema).await.expect("count"), 2);
}

/// 32 tasks insert one key at once: exactly one wins, the rest are `AlreadyExists`.
pub async fn concurrent_inserts_of_one_key_have_one_winner(f: &Fixture) {
    let schema = things();
    ensure(f, &schema).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, schema) = (store(f), schema.clone());
            tokio::spawn(async move {
                store
                    .insert(&schema, doc(json!({"id": "one", "by": i})))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(_) => winners.push(i),
            Err(Error::AlreadyExists { what: "record" }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one insert wins");
    let stored = f
        .tables()
        .get(&schema, &"one".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.document["by"], json!(winners[0]));
    assert_eq!(stored.version, 1);
}

/// 32 tasks race for one unique value, 20 times: one winner each round, found at once by
/// `get_by_unique`.
pub async fn racing_for_a_unique_value_has_one_winner_each_round(f: &Fixture) {
    let schema = things();
    ensure(f, &schema).await;
    for round in 0..20 {
        let sku = format!("SKU-{round}");
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (store, schema, sku) = (store(f), schema.clone(), sku.clone());
                tokio::spawn(async move {
                    store
                        .insert(
                            &schema,
                            doc(json!({"id": format!("r{round}-{i}"), "sku": sku})),
                        )
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(record) => winners.push(record),
                Err(Error::AlreadyExists {
                    what: "unique value",
                }) => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        let found = f
            .tables()
            .get_by_unique(&schema, "sku", &[KeyValue::from(sku)])
            .await
            .expect("get_by_unique")
            .expect("visible at once");
        assert_eq!(found.key, winners[0].key);
    }
    assert_eq!(
        f.tables().count(&schema).await.expect("count"),
        20,
        "losers wrote nothing"
    );
}

/// A unique value moves with an update and is free again after it, and after a delete.
pub async fn unique_values_move_and_free_on_update_and_delete(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "a", "sku": "X"})).await;
    let taken = store
        .insert(&schema, doc(json!({"id": "b", "sku": "X"})))
        .await;
    assert!(
        matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{taken:?}"
    );
    store
        .replace(&schema, doc(json!({"id": "a", "sku": "Y"})), 1)
        .await
        .expect("move X to Y");
    let by_y = store
        .get_by_unique(&schema, "sku", &["Y".into()])
        .await
        .expect("lookup");
    assert_eq!(by_y.map(|r| r.key), Some(RecordKey::new("a")));
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["X".into()])
            .await
            .expect("lookup"),
        None
    );
    insert(store, &schema, json!({"id": "b", "sku": "X"})).await;
    let moved = store
        .put(&schema, doc(json!({"id": "b", "sku": "Y"})))
        .await;
    assert!(
        matches!(
            moved,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{moved:?}"
    );
    assert!(
        store
            .delete(&schema, &"a".into(), None)
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["Y".into()])
            .await
            .expect("lookup"),
        None
    );
    store
        .put(&schema, doc(json!({"id": "b", "sku": "Y"})))
        .await
        .expect("Y is free");
    let unset = store
        .put(&schema, doc(json!({"id": "b"})))
        .await
        .expect("drop the sku");
    assert_eq!(unset.version, 3);
    insert(store, &schema, json!({"id": "c", "sku": "Y"})).await;
    insert(store, &schema, json!({"id": "d", "sku": "X"})).await;
}

/// Two unique indexes, one of them on two fields: each is enforced on its own, and a
/// composite value is taken only when every component matches.
pub async fn composite_and_multiple_unique_indexes(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "a", "sku": "S", "a": "x", "b": 1}),
    )
    .await;
    insert(store, &schema, json!({"id": "b", "a": "x", "b": 2})).await;
    insert(store, &schema, json!({"id": "c", "a": "y", "b": 1})).await;
    insert(store, &schema, json!({"id": "d", "a": "x"})).await;
    insert(store, &schema, json!({"id": "e", "a": "x"})).await;
    let pair = store
        .insert(&schema, doc(json!({"id": "f", "a": "x", "b": 1})))
        .await;
    assert!(
        matches!(
            pair,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{pair:?}"
    );
    let sku = store
        .insert(
            &schema,
            doc(json!({"id": "f", "sku": "S", "a": "z", "b": 9})),
        )
        .await;
    assert!(
        matches!(
            sku,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{sku:?}"
    );
    assert_eq!(
        store.get(&schema, &"f".into()).await.expect("get"),
        None,
        "nothing half-written"
    );
    let found = store
        .get_by_unique(&schema, "pair", &["x".into(), 2.into()])
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.key), Some(RecordKey::new("b")));
    let wrong = store.get_by_unique(&schema, "pair", &["x".into()]).await;
    assert!(
        matches!(wrong, Err(Error::InvalidInput { .. })),
        "{wrong:?}"
    );
    insert(
        store,
        &schema,
        json!({"id": "f", "sku": "S2", "a": "z", "b": 9}),
    )
    .await;
}

/// Replace and delete at a stale version are `Conflict` with both versions; at a missing
/// record, `NotFound`; nothing changes.
pub async fn stale_versions_are_conflicts(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "a", "n": 1})).await;
    store
        .replace(&schema, doc(json!({"id": "a", "n": 2})), 1)
        .await
        .expect("replace");
    let stale = store
        .replace(&schema, doc(json!({"id": "a", "n": 3})), 1)
        .await;
    assert!(
        matches!(
            stale,
            Err(Error::Conflict {
                what: "record",
                expected: 1,
                actual: 2
            })
        ),
        "{stale:?}"
    );
    let stale = store.delete(&schema, &"a".into(), Some(1)).await;
    assert!(
        matches!(
            stale,
            Err(Error::Conflict {
                what: "record",
                expected: 1,
                actual: 2
            })
        ),
        "{stale:?}"
    );
    let kept = store
        .get(&schema, &"a".into())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((kept.document["n"].clone(), kept.version), (json!(2), 2));
    let missing = store.replace(&schema, doc(json!({"id": "zz"})), 1).await;
    assert!(
        matches!(missing, Err(Error::NotFound { what: "record" })),
        "{missing:?}"
    );
    let missing = store.delete(&schema, &"zz".into(), Some(1)).await;
    assert!(
        matches!(missing, Err(Error::NotFound { what: "record" })),
        "{missing:?}"
    );
    assert!(
        !store
            .delete(&schema, &"zz".into(), None)
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete(&schema, &"a".into(), Some(2))
            .await
            .expect("delete at version")
    );
}

/// 16 tasks each add one to a counter through `update` ten times: nothing is lost.
pub async fn concurrent_updates_lose_nothing(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "counter", "n": 0, "by": []})).await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (store, schema) = (self::store(f), schema.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut change = |mut d: Document| {
                        let n = d["n"].as_i64().unwrap_or_default();
                        d.insert("n".into(), json!(n + 1));
                        if let Some(Value::Array(by)) = d.get_mut("by") {
                            by.push(json!(task));
                        }
                        Ok(d)
                    };
                    store
                        .update(&schema, &"counter".into(), &mut change)
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let end = store
        .get(&schema, &"counter".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(end.document["n"], json!(160));
    assert_eq!(end.document["by"].as_array().map(Vec::len), Some(160));
    assert_eq!(end.version, 161);
    let mut refuse = |_: Document| Err(Error::invalid("change", "no"));
    let refused = store.update(&schema, &"counter".into(), &mut refuse).await;
    assert!(matches!(
        refused,
        Err(Error::InvalidInput { what: "change", .. })
    ));
    let mut rekey = |mut d: Document| {
        d.insert("id".into(), json!("other"));
        Ok(d)
    };
    assert!(matches!(
        store.update(&schema, &"counter".into(), &mut rekey).await,
        Err(Error::InvalidInput { .. })
    ));
    let mut keep = Ok;
    assert!(matches!(
        store.update(&schema, &"missing".into(), &mut keep).await,
        Err(Error::NotFound { what: "record" })
    ));
    assert_eq!(
        store
            .get(&schema, &"counter".into())
            .await
            .expect("get")
            .map(|r| r.version),
        Some(161)
    );
}

/// 32 tasks put and replace three records at once, each sku moving between them: every
/// successful write bumps its record's version exactly once, a failed one changes nothing, and
/// the unique values end held by the records that hold them.
pub async fn mixed_writers_on_three_keys_account_for_every_success(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for k in 0..3 {
        insert(store, &schema, json!({"id": format!("k{k}"), "n": 0})).await;
    }
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (store, schema) = (self::store(f), schema.clone());
            tokio::spawn(async move {
                let mut successes = [0u64; 3];
                for round in 0..8usize {
                    let k = (task + round) % 3;
                    let id = format!("k{k}");
                    let sku = format!("S{}", (task + round) % 4);
                    let record = doc(json!({"id": id, "n": task, "sku": sku}));
                    let written = if round % 2 == 0 {
                        store.put(&schema, record).await
                    } else {
                        let read = store.get(&schema, &id.as_str().into()).await.expect("get");
                        let version = read.expect("never deleted").version;
                        store.replace(&schema, record, version).await
                    };
                    match written {
                        Ok(_) => successes[k] += 1,
                        Err(
                            Error::Conflict { .. }
                            | Error::AlreadyExists {
                                what: "unique value",
                            },
                        ) => {}
                        // A deadlock the server broke by rolling this write back, after the
                        // store's own retries: nothing was applied, so the count holds.
                        Err(e @ Error::Unavailable { .. }) if !e.may_have_been_applied() => {}
                        Err(e) => panic!("unexpected {}: {e}", e.kind()),
                    }
                }
                successes
            })
        })
        .collect();
    let mut successes = [0u64; 3];
    for task in tasks {
        let done = task.await.expect("task");
        for k in 0..3 {
            successes[k] += done[k];
        }
    }
    let mut holders = Vec::new();
    for (k, writes) in successes.iter().enumerate() {
        let record = store
            .get(&schema, &format!("k{k}").as_str().into())
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            record.version,
            writes + 1,
            "k{k}: one version per successful write"
        );
        if let Some(sku) = record.document.get("sku").and_then(Value::as_str) {
            holders.push((sku.to_owned(), record.key));
        }
    }
    let distinct: std::collections::HashSet<&String> = holders.iter().map(|(sku, _)| sku).collect();
    assert_eq!(
        distinct.len(),
        holders.len(),
        "a sku held twice: {holders:?}"
    );
    for (sku, key) in holders {
        let found = store
            .get_by_unique(&schema, "sku", &[sku.as_str().into()])
            .await
            .expect("lookup");
        assert_eq!(
            found.map(|r| r.key),
            Some(key),
            "{sku} points at its holder"
        );
    }
}

/// Every sort condition on an integer sort key, both orders, against a plain filter.
pub async fn every_sort_condition_on_integer_keys(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let values: Vec<i64> = vec![-5, -1, 0, 1, 2, 3, 10, 11, 100];
    for n in &values {
        insert(store, &schema, json!({"p": "a", "n": n})).await;
    }
    insert(store, &schema, json!({"p": "b", "n": 1})).await;
    let conditions = [
        (SortCondition::Eq(2.into()), 2, 2),
        (SortCondition::Lt(1.into()), i64::MIN, 0),
        (SortCondition::Le(1.into()), i64::MIN, 1),
        (SortCondition::Gt(3.into()), 4, i64::MAX),
        (SortCondition::Ge(3.into()), 3, i64::MAX),
        (SortCondition::Between((-1).into(), 10.into()), -1, 10),
    ];
    for (condition, low, high) in conditions {
        let expected: Vec<Value> = values
            .iter()
            .filter(|n| (low..=high).contains(*n))
            .map(|n| json!(n))
            .collect();
        let query = Query::table("a").sort(condition.clone());
        let up = store.query(&schema, &query).await.expect("query");
        assert_eq!(sorts(&up.items, "n"), expected, "{condition:?} ascending");
        let down = store
            .query(&schema, &query.descending())
            .await
            .expect("query");
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(
            sorts(&down.items, "n"),
            reversed,
            "{condition:?} descending"
        );
    }
    let begins = store
        .query(
            &schema,
            &Query::table("a").sort(SortCondition::BeginsWith(1.into())),
        )
        .await;
    assert!(
        matches!(begins, Err(Error::InvalidInput { .. })),
        "begins_with needs text or bytes"
    );
    let wrong = store
        .query(
            &schema,
            &Query::table("a").sort(SortCondition::Eq("2".into())),
        )
        .await;
    assert!(
        matches!(wrong, Err(Error::InvalidInput { .. })),
        "a text value for an int key"
    );
}

/// Every sort condition on a text sort key, both orders, byte order throughout.
pub async fn every_sort_condition_on_text_keys(f: &Fixture) {
    let schema = words();
    let store = ensure(f, &schema).await;
    let values = ["A", "B", "a", "ab", "abc", "abd", "b", "z", "é", "ü"];
    for w in values {
        insert(store, &schema, json!({"p": "a", "w": w})).await;
    }
    let all: Vec<Value> = values.iter().map(|w| json!(w)).collect();
    let pick = |keep: &dyn Fn(&str) -> bool| -> Vec<Value> {
        values
            .iter()
            .filter(|w| keep(w))
            .map(|w| json!(w))
            .collect()
    };
    let conditions: Vec<(SortCondition, Vec<Value>)> = vec![
        (SortCondition::Eq("ab".into()), pick(&|w| w == "ab")),
        (SortCondition::Lt("a".into()), pick(&|w| w < "a")),
        (SortCondition::Le("a".into()), pick(&|w| w <= "a")),
        (SortCondition::Gt("b".into()), pick(&|w| w > "b")),
        (SortCondition::Ge("b".into()), pick(&|w| w >= "b")),
        (
            SortCondition::Between("B".into(), "abd".into()),
            pick(&|w| ("B"..="abd").contains(&w)),
        ),
        (
            SortCondition::BeginsWith("ab".into()),
            pick(&|w| w.starts_with("ab")),
        ),
    ];
    assert_eq!(
        sorts(
            &store
                .query(&schema, &Query::table("a"))
                .await
                .expect("query")
                .items,
            "w"
        ),
        all
    );
    for (condition, expected) in conditions {
        let query = Query::table("a").sort(condition.clone());
        let up = store.query(&schema, &query).await.expect("query");
        assert_eq!(sorts(&up.items, "w"), expected, "{condition:?} ascending");
        let down = store
            .query(&schema, &query.descending())
            .await
            .expect("query");
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(
            sorts(&down.items, "w"),
            reversed,
            "{condition:?} descending"
        );
    }
}

/// Integer keys sort numerically from `i64::MIN` to `i64::MAX`, not as text.
pub async fn integer_order_spans_the_whole_range(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let mut values = vec![
        i64::MIN,
        i64::MIN + 1,
        -1_000_000_000_000,
        -10,
        -9,
        -1,
        0,
        1,
        9,
        10,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX - 1,
        i64::MAX,
    ];
    for n in values.iter().rev() {
        insert(store, &schema, json!({"p": "x", "n": n})).await;
    }
    let page = store
        .query(&schema, &Query::table("x"))
        .await
        .expect("query");
    let read: Vec<i64> = page
        .items
        .iter()
        .map(|r| r.document["n"].as_i64().expect("int"))
        .collect();
    assert_eq!(read, values);
    values.reverse();
    let page = store
        .query(&schema, &Query::table("x").descending())
        .await
        .expect("query");
    let read: Vec<i64> = page
        .items
        .iter()
        .map(|r| r.document["n"].as_i64().expect("int"))
        .collect();
    assert_eq!(read, values);
    let got = store
        .get(&schema, &RecordKey::with_sort("x", i64::MIN))
        .await
        .expect("get");
    assert!(got.is_some(), "i64::MIN is a key like any other");
}

/// Text and bytes sort in unsigned byte order: no locale, no case folding, no Unicode
/// normalisation (`é` precomposed and decomposed are two keys).
pub async fn text_and_bytes_sort_in_byte_order(f: &Fixture) {
    let schema = words();
    let store = ensure(f, &schema).await;
    let texts = ["Z", "a", "e\u{301}", "z", "\u{e9}", "\u{ff}", "\u{1F600}"];
    for w in texts.iter().rev() {
        insert(store, &schema, json!({"p": "t", "w": w})).await;
    }
    let page = store
        .query(&schema, &Query::table("t"))
        .await
        .expect("query");
    let mut expected: Vec<&str> = texts.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(
        sorts(&page.items, "w"),
        expected.iter().map(|w| json!(w)).collect::<Vec<_>>()
    );
    assert_eq!(page.items.len(), texts.len(), "é twice: two keys");

    let blobs = TableSchema::builder("blobs", KeyDef::text("p"))
        .sort_key(KeyDef::bytes("b"))
        .build()
        .expect("valid");
    store.ensure_table(&blobs).await.expect("ensure");
    let keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01],
        vec![0x7f],
        vec![0x80],
        vec![0xff],
        vec![0xff, 0x00],
    ];
    for key in keys.iter().rev() {
        let b64 = KeyValue::from(key.clone()).to_json();
        insert(store, &blobs, json!({"p": "b", "b": b64})).await;
    }
    let page = store
        .query(&blobs, &Query::table("b"))
        .await
        .expect("query");
    let read: Vec<KeyValue> = page
        .items
        .iter()
        .map(|r| r.key.sort.clone().expect("sort key"))
        .collect();
    assert_eq!(
        read,
        keys.iter().cloned().map(KeyValue::from).collect::<Vec<_>>()
    );
    let prefixed = store
        .query(
            &blobs,
            &Query::table("b").sort(SortCondition::BeginsWith(vec![0xff].into())),
        )
        .await
        .expect("query");
    assert_eq!(prefixed.items.len(), 2);
}

/// At limits 1, 7 and 100, every page but the last is full, and every record comes once.
pub async fn pages_are_full_and_each_record_comes_once(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..50 {
        insert(store, &schema, json!({"p": "p", "n": n})).await;
    }
    for limit in [1, 7, 100] {
        for descending in [false, true] {
            let mut query = Query::table("p").limit(limit);
            if descending {
                query = query.descending();
            }
            let (mut pages, mut seen, mut query) = (0, Vec::new(), query);
            loop {
                let page = store.query(&schema, &query).await.expect("query");
                pages += 1;
                if page.next.is_some() {
                    assert_eq!(
                        page.items.len(),
                        limit,
                        "a page that is not the last is full"
                    );
                }
                seen.extend(
                    page.items
                        .iter()
                        .map(|r| r.document["n"].as_i64().expect("int")),
                );
                match page.next {
                    Some(cursor) => query = query.after(cursor),
                    None => break,
                }
            }
            let mut expected: Vec<i64> = (0..50).collect();
            if descending {
                expected.reverse();
            }
            assert_eq!(seen, expected, "limit {limit}");
            assert_eq!(
                pages,
                50usize.div_ceil(limit),
                "limit {limit}: no empty last page"
            );
        }
    }
    let empty = store
        .query(&schema, &Query::table("none"))
        .await
        .expect("query");
    assert!(empty.items.is_empty() && empty.next.is_none());
    for limit in [0, MAX_PAGE + 1] {
        let refused = store.query(&schema, &Query::table("p").limit(limit)).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput { what: "limit", .. })),
            "{refused:?}"
        );
    }
}

/// 40 records of ~300 KB in one partition, 12 MB in all: one query returns them all, following
/// DynamoDB's 1 MB pages underneath.
pub async fn a_query_past_one_megabyte_fills_its_page(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let big = "x".repeat(300_000);
    for n in 0..40 {
        insert(store, &schema, json!({"p": "big", "n": n, "blob": big})).await;
    }
    let page = store
        .query(&schema, &Query::table("big").limit(100))
        .await
        .expect("query");
    assert_eq!(page.items.len(), 40);
    assert!(page.next.is_none());
    let page = store
        .query(&schema, &Query::table("big").limit(10).descending())
        .await
        .expect("query");
    assert_eq!(
        sorts(&page.items, "n"),
        (30..40).rev().map(|n| json!(n)).collect::<Vec<_>>()
    );
    assert!(page.next.is_some());
}

/// The catalogue's query: products of one name, newest first, a page at a time.
pub async fn products_by_name_newest_first(f: &Fixture) {
    let schema = products();
    let store = ensure(f, &schema).await;
    let times = [
        1_700_000_000.25,
        1_700_000_003.5,
        1_700_000_001.0,
        1_700_000_002.75,
        1_600_000_000.0,
    ];
    for (i, at) in times.iter().enumerate() {
        insert(
            store,
            &schema,
            json!({"id": format!("lamp-{i}"), "name": "lamp", "updated_at": at, "price": i}),
        )
        .await;
    }
    insert(
        store,
        &schema,
        json!({"id": "desk-0", "name": "desk", "updated_at": 1_800_000_000.0}),
    )
    .await;
    let query = Query::index("product-name-index", "lamp")
        .descending()
        .limit(2);
    settled(
        store,
        &schema,
        &Query::index("product-name-index", "lamp"),
        |p| p.items.len() == 5,
    )
    .await;
    let (records, pages) = all_pages(store, &schema, query).await;
    assert_eq!(
        ids(&records),
        ["lamp-1", "lamp-3", "lamp-2", "lamp-0", "lamp-4"]
    );
    assert_eq!(pages, 3);
    assert_eq!(
        records[2].document["updated_at"],
        json!(1_700_000_001),
        "an integral float reads back as an integer"
    );
    let recent = store
        .query(
            &schema,
            &Query::index("product-name-index", "lamp")
                .sort(SortCondition::Gt(1_700_000_001.0.into())),
        )
        .await
        .expect("query");
    assert_eq!(ids(&recent.items), ["lamp-3", "lamp-1"]);
    let nan = store
        .query(
            &schema,
            &Query::index("product-name-index", "lamp").sort(SortCondition::Gt(f64::NAN.into())),
        )
        .await;
    assert!(matches!(nan, Err(Error::InvalidInput { .. })), "{nan:?}");
}

/// A record without an index's field (or with `null` there) is not in that index, and is
/// still in the others.
pub async fn sparse_indexes_leave_out_records_without_the_field(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "both", "group": "g", "rank": 1, "name": "n"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "no-rank", "group": "g", "name": "n"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "null-group", "group": null, "rank": 2, "name": "n"}),
    )
    .await;
    let null = store
        .get(&schema, &"null-group".into())
        .await
        .expect("get")
        .expect("stored");
    assert!(
        !null.document.contains_key("group"),
        "a null index key is dropped, as DynamoDB needs"
    );
    let by_name = settled(store, &schema, &Query::index("by-name", "n"), |p| {
        p.items.len() == 3
    })
    .await;
    assert_eq!(by_name.items.len(), 3);
    let by_group = settled(store, &schema, &Query::index("by-group", "g"), |p| {
        p.items.len() == 1
    })
    .await;
    assert_eq!(
        ids(&by_group.items),
        ["both"],
        "only records with both index keys"
    );
    let wrong = store
        .insert(
            &schema,
            doc(json!({"id": "bad", "group": "g", "rank": "one"})),
        )
        .await;
    assert!(
        matches!(wrong, Err(Error::InvalidInput { .. })),
        "{wrong:?}"
    );
}

/// An update moves a record from one index partition to another; a delete takes it out of
/// every index.
pub async fn updates_move_and_deletes_leave_every_index(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(
        store,
        &schema,
        json!({"id": "m", "group": "old", "rank": 1, "name": "x", "sku": "M"}),
    )
    .await;
    insert(
        store,
        &schema,
        json!({"id": "stay", "group": "old", "rank": 2}),
    )
    .await;
    let mut mv = |mut d: Document| {
        d.insert("group".into(), json!("new"));
        d.insert("rank".into(), json!(5));
        Ok(d)
    };
    store
        .update(&schema, &"m".into(), &mut mv)
        .await
        .expect("update");
    let old = settled(store, &schema, &Query::index("by-group", "old"), |p| {
        ids(&p.items) == ["stay"]
    })
    .await;
    assert_eq!(ids(&old.items), ["stay"]);
    let new = settled(store, &schema, &Query::index("by-group", "new"), |p| {
        p.items.len() == 1
    })
    .await;
    assert_eq!(
        (ids(&new.items), new.items[0].document["rank"].clone()),
        (vec!["m".to_owned()], json!(5))
    );
    assert!(
        store
            .delete(&schema, &"m".into(), None)
            .await
            .expect("delete")
    );
    let new = settled(store, &schema, &Query::index("by-group", "new"), |p| {
        p.items.is_empty()
    })
    .await;
    assert!(new.items.is_empty());
    let by_name = settled(store, &schema, &Query::index("by-name", "x"), |p| {
        p.items.is_empty()
    })
    .await;
    assert!(by_name.items.is_empty());
    assert_eq!(
        store
            .get_by_unique(&schema, "sku", &["M".into()])
            .await
            .expect("lookup"),
        None
    );
}

/// Records that tie on an index's sort key come once each, across pages.
pub async fn ties_on_the_index_sort_key_come_once_each(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for i in 0..23 {
        insert(
            store,
            &schema,
            json!({"id": format!("t{i:02}"), "group": "tie", "rank": i % 3}),
        )
        .await;
    }
    settled(
        store,
        &schema,
        &Query::index("by-group", "tie").limit(100),
        |p| p.items.len() == 23,
    )
    .await;
    for descending in [false, true] {
        let mut query = Query::index("by-group", "tie").limit(4);
        if descending {
            query = query.descending();
        }
        let (records, _) = all_pages(store, &schema, query).await;
        let mut seen = ids(&records);
        let ranks: Vec<i64> = records
            .iter()
            .map(|r| r.document["rank"].as_i64().expect("rank"))
            .collect();
        let mut sorted = ranks.clone();
        sorted.sort_unstable();
        if descending {
            sorted.reverse();
        }
        assert_eq!(ranks, sorted, "in index order");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 23, "each record once");
    }
}

/// Keys: the declared type, present, not empty, at most 1,024 bytes, no NUL; lookups with a
/// wrong key are `InvalidInput` before the database sees them.
pub async fn key_limits_are_enforced(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    let long = "k".repeat(MAX_KEY_BYTES);
    insert(store, &schema, json!({"p": long, "n": i64::MAX})).await;
    assert!(
        store
            .contains(&schema, &RecordKey::with_sort(long.as_str(), i64::MAX))
            .await
            .expect("contains")
    );
    let refused = [
        json!({"p": format!("{long}k"), "n": 1}),
        json!({"p": "", "n": 1}),
        json!({"p": "a\u{0}b", "n": 1}),
        json!({"p": "a"}),
        json!({"n": 1}),
        json!({"p": 1, "n": 1}),
        json!({"p": "a", "n": 1.5}),
        json!({"p": "a", "n": "1"}),
        json!({"p": "a", "n": u64::MAX}),
    ];
    for bad in refused {
        let result = store.insert(&schema, doc(bad.clone())).await;
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{bad}: {result:?}"
        );
    }
    for key in [
        RecordKey::new("a"),
        RecordKey::with_sort(1, 1),
        RecordKey::with_sort("", 1),
    ] {
        let result = store.get(&schema, &key).await;
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{key:?}: {result:?}"
        );
    }
    assert_eq!(store.count(&schema).await.expect("count"), 1);
}

/// Documents: DynamoDB's item size (400 KB, by its rule), no NUL, no reserved field, numbers
/// in range, bounded nesting; the largest allowed document round-trips.
pub async fn document_limits_are_enforced(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let mut largest = doc(json!({"id": "big", "blob": ""}));
    let room = MAX_DOCUMENT_BYTES - dynamodb_size(&largest);
    largest.insert("blob".into(), json!("é".repeat(room / 2)));
    let stored = store
        .insert(&schema, largest.clone())
        .await
        .expect("the largest document");
    assert_eq!(stored.document, largest);
    assert_eq!(
        store
            .get(&schema, &"big".into())
            .await
            .expect("get")
            .map(|r| r.document),
        Some(largest)
    );
    let over = store
        .insert(
            &schema,
            doc(json!({"id": "over", "blob": "x".repeat(MAX_DOCUMENT_BYTES)})),
        )
        .await;
    assert!(
        matches!(
            over,
            Err(Error::ValueTooLarge {
                what: "document",
                ..
            })
        ),
        "{over:?}"
    );
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    for bad in [
        json!({"id": "x", "s": "nul\u{0}"}),
        json!({"id": "x", "_storekit_version": 7}),
        json!({"id": "x", "n": 1e200}),
        json!({"id": "x", "n": -1e-200}),
        json!({"id": "x", "m": {"": 1}}),
        json!({"id": "x", "deep": deep}),
    ] {
        let result = store.insert(&schema, doc(bad.clone())).await;
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{result:?}"
        );
    }
    assert_eq!(store.count(&schema).await.expect("count"), 1);
}

/// Numbers DynamoDB would change read back the same on every backend: as the write returned.
pub async fn numbers_read_back_equal_everywhere(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let written = insert(
        store,
        &schema,
        json!({"id": "n", "v": [2.0, -0.0, 0.5, 1e19, u64::MAX, i64::MIN, null, 1e20, 0.1, 1e125, -1e-129],
               "m": {"a": {"b": 1.0, "c": [true, "é"]}, "e": {}}, "l": []}),
    )
    .await;
    let expected = json!({"id": "n", "v": [2, 0, 0.5, 10_000_000_000_000_000_000_u64, u64::MAX, i64::MIN, null, 1e20, 0.1, 1e125, -1e-129],
                          "m": {"a": {"b": 1, "c": [true, "é"]}, "e": {}}, "l": []});
    assert_eq!(Value::Object(written.document.clone()), expected);
    let read = store
        .get(&schema, &"n".into())
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read.document, written.document);
    let scanned = store
        .scan(&schema, &Scan::new().limit(10))
        .await
        .expect("scan");
    assert_eq!(scanned.items[0].document, written.document);
}

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
        assert!(
            matches!(schema, Err(Error::InvalidInput { what: "schema", .. })),
            "{schema:?}"
        );
    }
    let schema = things();
    let store = ensure(f, &schema).await;
    let unknown = store
        .query(&schema, &Query::index("no-such-index", "x"))
        .await;
    assert!(
        matches!(unknown, Err(Error::InvalidInput { .. })),
        "{unknown:?}"
    );
    let unknown = store
        .get_by_unique(&schema, "no-such-index", &["x".into()])
        .await;
    assert!(
        matches!(unknown, Err(Error::InvalidInput { .. })),
        "{unknown:?}"
    );
    let on_int = store.query(&schema, &Query::index("by-group", 1)).await;
    assert!(
        matches!(on_int, Err(Error::InvalidInput { .. })),
        "{on_int:?}"
    );
    let no_sort = store
        .query(
            &schema,
            &Query::index("by-name", "n").sort(SortCondition::Eq("x".into())),
        )
        .await;
    assert!(
        matches!(no_sort, Err(Error::InvalidInput { .. })),
        "{no_sort:?}"
    );
}

/// Everything but an index query sees a write at once: get, get_many, contains, unique
/// lookups, table queries, scan and count; and a delete at once too.
pub async fn reads_after_writes_see_them_except_index_queries(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    let records = TableSchema::builder("keyed", KeyDef::text("group"))
        .sort_key(KeyDef::text("id"))
        .build()
        .expect("valid");
    store.ensure_table(&records).await.expect("ensure");
    for round in 0..5 {
        let id = format!("raw{round}");
        insert(store, &schema, json!({"id": id, "sku": id})).await;
        insert(store, &records, json!({"group": "g", "id": id})).await;
        assert!(
            store
                .get(&schema, &id.as_str().into())
                .await
                .expect("get")
                .is_some()
        );
        assert!(
            store
                .contains(&schema, &id.as_str().into())
                .await
                .expect("contains")
        );
        assert!(
            store
                .get_many(&schema, &[id.as_str().into()])
                .await
                .expect("get_many")[0]
                .is_some()
        );
        assert!(
            store
                .get_by_unique(&schema, "sku", &[id.as_str().into()])
                .await
                .expect("lookup")
                .is_some()
        );
        let in_partition = store
            .query(&records, &Query::table("g"))
            .await
            .expect("query");
        assert_eq!(in_partition.items.len(), round + 1);
        assert_eq!(store.count(&schema).await.expect("count"), round as u64 + 1);
        assert_eq!(
            store
                .scan(&schema, &Scan::new().limit(100))
                .await
                .expect("scan")
                .items
                .len(),
            round + 1
        );
        assert!(
            store
                .delete(&records, &RecordKey::with_sort("g", id.as_str()), None)
                .await
                .expect("delete")
        );
        assert_eq!(
            store
                .query(&records, &Query::table("g"))
                .await
                .expect("query")
                .items
                .len(),
            round
        );
        insert(store, &records, json!({"group": "g", "id": id})).await;
    }
}

/// A scan of `limit` records a page, continuing from `cursor` if there is one.
pub(crate) fn scan_page(limit: usize, cursor: Option<&str>) -> Scan {
    let scan = Scan::new().limit(limit);
    match cursor {
        Some(cursor) => scan.after(cursor),
        None => scan,
    }
}

/// A cursor works only for the query that returned it: garbled, edited or another query's
/// cursors are `InvalidInput`.
pub async fn garbled_and_foreign_cursors_are_invalid_input(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..5 {
        insert(store, &schema, json!({"p": "a", "n": n})).await;
        insert(store, &schema, json!({"p": "b", "n": n})).await;
    }
    let page = store
        .query(&schema, &Query::table("a").limit(2))
        .await
        .expect("query");
    let cursor = page.next.expect("more");
    let scanned = store
        .scan(&schema, &Scan::new().limit(2))
        .await
        .expect("scan")
        .next
        .expect("more");
    let mut edited = cursor.clone();
    edited.insert(3, 'x');
    let foreign = [
        (Query::table("a").limit(2).after("garbage!"), "garbage"),
        (Query::table("a").limit(2).after(""), "empty"),
        (Query::table("a").limit(2).after(edited.as_str()), "edited"),
        (
            Query::table("b").limit(2).after(cursor.as_str()),
            "another partition",
        ),
        (
            Query::table("a")
                .limit(2)
                .descending()
                .after(cursor.as_str()),
            "another order",
        ),
        (
            Query::table("a")
                .limit(2)
                .sort(SortCondition::Ge(0.into()))
                .after(cursor.as_str()),
            "another condition",
        ),
        (
            Query::table("a").limit(2).after(scanned.as_str()),
            "a scan's cursor",
        ),
    ];
    for (query, what) in foreign {
        let result = store.query(&schema, &query).await;
        assert!(
            matches!(result, Err(Error::InvalidInput { what: "cursor", .. })),
            "{what}: {result:?}"
        );
    }
    let scan = store
        .scan(&schema, &Scan::new().limit(2).after(cursor.as_str()))
        .await;
    assert!(
        matches!(scan, Err(Error::InvalidInput { what: "cursor", .. })),
        "{scan:?}"
    );
    let other_table = store
        .query(&words(), &Query::table("a").after(cursor.as_str()))
        .await;
    assert!(
        matches!(
            other_table,
            Err(Error::InvalidInput { .. }) | Err(Error::NotFound { .. })
        ),
        "{other_table:?}"
    );
    let next = store
        .query(&schema, &Query::table("a").limit(2).after(cursor))
        .await
        .expect("the real cursor works");
    assert_eq!(sorts(&next.items, "n"), [json!(2), json!(3)]);
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
        assert!(
            matches!(status, TableStatus::Created | TableStatus::Unchanged),
            "{status:?}"
        );
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

/// A live table whose keys or indexes differ from the schema is refused, listing every
/// difference; nothing is changed.
pub async fn a_table_that_drifted_is_refused_with_its_differences(f: &Fixture) {
    let store = ensure(f, &products()).await;
    let drifted = TableSchema::builder("products", KeyDef::int("id"))
        .index(
            "product-name-index",
            KeyDef::text("name"),
            Some(KeyDef::text("updated_at")),
        )
        .build()
        .expect("valid");
    let refused = store.ensure_table(&drifted).await;
    let Err(Error::SchemaMismatch { table, differences }) = refused else {
        panic!("a drifted table is refused: {refused:?}");
    };
    assert_eq!(table, "products");
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences[0].contains("partition key"), "{differences:?}");
    assert!(
        differences[1].contains("product-name-index"),
        "{differences:?}"
    );
    let dropped = TableSchema::builder("products", KeyDef::text("id"))
        .build()
        .expect("valid");
    let refused = store.ensure_table(&dropped).await;
    assert!(
        matches!(refused, Err(Error::SchemaMismatch { .. })),
        "an index no longer declared: {refused:?}"
    );
    assert_eq!(
        store.ensure_table(&products()).await.expect("as declared"),
        TableStatus::Unchanged
    );
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
    assert!(
        matches!(
            taken,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "{taken:?}"
    );
    assert_eq!(
        store.ensure_table(&after).await.expect("again"),
        TableStatus::Unchanged
    );
}

/// `get_many` answers in the order asked, repeats and misses included, past 100 keys.
pub async fn get_many_keeps_order_repeats_and_misses(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for i in 0..150 {
        insert(store, &schema, json!({"id": format!("k{i:03}"), "i": i})).await;
    }
    let mut keys: Vec<RecordKey> = (0..250)
        .rev()
        .map(|i| RecordKey::new(format!("k{i:03}")))
        .collect();
    keys.push("k007".into());
    let found = store.get_many(&schema, &keys).await.expect("get_many");
    assert_eq!(found.len(), 251);
    for (key, record) in keys.iter().zip(&found) {
        let want = key
            .partition
            .as_text()
            .and_then(|k| k[1..].parse::<i64>().ok())
            .filter(|i| *i < 150);
        assert_eq!(
            record.as_ref().map(|r| r.document["i"].as_i64()),
            want.map(Some),
            "{key:?}"
        );
    }
    assert!(
        store
            .get_many(&schema, &[])
            .await
            .expect("no keys")
            .is_empty()
    );
    let too_many: Vec<RecordKey> = (0..1001).map(|i| RecordKey::new(format!("k{i}"))).collect();
    assert!(matches!(
        store.get_many(&schema, &too_many).await,
        Err(Error::InvalidInput { .. })
    ));
}

/// Scan pages through every record once; count is exact; a table that does not exist is
/// `NotFound` and dropping it twice says so.
pub async fn scan_and_count_see_every_record_once(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..57 {
        insert(store, &schema, json!({"p": format!("p{}", n % 4), "n": n})).await;
    }
    assert_eq!(store.count(&schema).await.expect("count"), 57);
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = store
            .scan(&schema, &scan_page(10, cursor.as_deref()))
            .await
            .expect("scan");
        pages += 1;
        if page.next.is_some() {
            assert_eq!(page.items.len(), 10);
        }
        seen.extend(
            page.items
                .iter()
                .map(|r| r.document["n"].as_i64().expect("n")),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..57).collect::<Vec<i64>>());
    assert_eq!(pages, 6);
    let streamed: Vec<Record> = scan_stream(self::store(f), schema.clone(), Scan::new())
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(streamed.len(), 57);
    assert!(store.drop_table(&schema).await.expect("drop"));
    assert!(!store.drop_table(&schema).await.expect("drop again"));
    let gone = store.get(&schema, &RecordKey::with_sort("p0", 0)).await;
    assert!(
        matches!(gone, Err(Error::NotFound { what: "table" })),
        "{gone:?}"
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
        assert!(
            matches!(result, Err(Error::NotFound { what: "table" })),
            "{what}: {result:?}"
        );
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

/// A verified index query drops hits whose record no longer matches, and returns records as
/// they are now, whether or not the backend's indexes lag.
pub async fn verified_queries_drop_stale_hits(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    for i in 0..6 {
        insert(
            store,
            &schema,
            json!({"id": format!("v{i}"), "group": "a", "rank": i}),
        )
        .await;
    }
    settled(store, &schema, &Query::index("by-group", "a"), |p| {
        p.items.len() == 6
    })
    .await;
    for i in [1, 3] {
        let mut leave = |mut d: Document| {
            d.insert("group".into(), json!("b"));
            Ok(d)
        };
        store
            .update(&schema, &format!("v{i}").as_str().into(), &mut leave)
            .await
            .expect("update");
    }
    let mut bump = |mut d: Document| {
        d.insert("note".into(), json!("changed"));
        Ok(d)
    };
    store
        .update(&schema, &"v4".into(), &mut bump)
        .await
        .expect("update");
    store
        .delete(&schema, &"v5".into(), None)
        .await
        .expect("delete");
    let verified = store
        .query(&schema, &Query::index("by-group", "a").limit(2).verified())
        .await
        .expect("query");
    assert_eq!(
        ids(&verified.items),
        ["v0", "v2"],
        "a full page of records that still match"
    );
    let rest = store
        .query(
            &schema,
            &Query::index("by-group", "a")
                .limit(2)
                .verified()
                .after(verified.next.expect("more")),
        )
        .await
        .expect("query");
    assert_eq!(ids(&rest.items), ["v4"]);
    assert_eq!(
        rest.items[0].document["note"],
        json!("changed"),
        "as it is now"
    );
    assert_eq!(rest.items[0].version, 2);
}

/// The stream over a query follows every cursor.
pub async fn query_streams_follow_every_page(f: &Fixture) {
    let schema = series();
    let store = ensure(f, &schema).await;
    for n in 0..230 {
        insert(store, &schema, json!({"p": "s", "n": n})).await;
    }
    let all: Vec<Record> = query_stream(
        self::store(f),
        schema.clone(),
        Query::table("s").limit(50).descending(),
    )
    .try_collect()
    .await
    .expect("stream");
    assert_eq!(
        sorts(&all, "n"),
        (0..230).rev().map(|n| json!(n)).collect::<Vec<_>>()
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: String,
    name: String,
    updated_at: f64,
    status: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// The typed table: serde records in and out, `update` through a closure, unique lookups and
/// a record that would not read back refused before anything is written.
pub async fn typed_tables_read_and_write_serde_records(f: &Fixture) {
    let schema = TableSchema::builder("typed", KeyDef::text("id"))
        .index(
            "product-name-index",
            KeyDef::text("name"),
            Some(KeyDef::float("updated_at")),
        )
        .unique(
            "folded-name",
            [KeyDef::text("name_folded")
                .computed(|d| Some(d.get("name")?.as_str()?.to_lowercase().into()))],
        )
        .build()
        .expect("valid");
    let table: Table<Product> = Table::new(f.tables().clone(), schema);
    table.ensure().await.expect("ensure");
    let lamp = Product {
        id: "p1".into(),
        name: "Lamp".into(),
        updated_at: 1.5,
        status: "new".into(),
        tags: vec![],
    };
    let written = table.insert(&lamp).await.expect("insert");
    assert_eq!((written.record.clone(), written.version), (lamp.clone(), 1));
    let clash = table
        .insert(&Product {
            id: "p2".into(),
            name: "LAMP".into(),
            ..lamp.clone()
        })
        .await;
    assert!(
        matches!(
            clash,
            Err(Error::AlreadyExists {
                what: "unique value"
            })
        ),
        "a computed unique key"
    );
    let found = table
        .get_by_unique("folded-name", &["lamp".into()])
        .await
        .expect("lookup");
    assert_eq!(found.map(|v| v.record), Some(lamp.clone()));
    let updated = table
        .update::<Error>("p1", |p| {
            p.status = "sold".into();
            p.updated_at = 2.0;
            Ok(())
        })
        .await
        .expect("update");
    assert_eq!(
        (
            updated.record.status.as_str(),
            updated.record.updated_at,
            updated.version
        ),
        ("sold", 2.0, 2)
    );
    let bad = table
        .update::<Error>("p1", |p| {
            p.updated_at = f64::NAN;
            Ok(())
        })
        .await;
    assert!(
        matches!(bad, Err(Error::InvalidInput { .. })),
        "NaN would not read back: {bad:?}"
    );
    assert_eq!(
        table.get("p1").await.expect("get").map(|v| v.version),
        Some(2),
        "nothing written"
    );
    // The closure fails with the caller's own error type: it comes back as it was, and
    // nothing is written.
    #[derive(Debug, PartialEq)]
    enum Refusal {
        AlreadySold,
        Store(String),
    }
    impl From<Error> for Refusal {
        fn from(e: Error) -> Self {
            Self::Store(e.to_string())
        }
    }
    let refused = table
        .update("p1", |p| {
            if p.status == "sold" {
                return Err(Refusal::AlreadySold);
            }
            p.status = "resold".into();
            Ok(())
        })
        .await;
    assert_eq!(refused.map(|v| v.version), Err(Refusal::AlreadySold));
    let missing = table
        .update("p-none", |_| Err(Refusal::AlreadySold))
        .await
        .map(|v| v.version);
    assert!(
        matches!(&missing, Err(Refusal::Store(e)) if e.contains("not found")),
        "a storekit error converts into the caller's: {missing:?}"
    );
    let stale = table.replace(&lamp, 1).await;
    assert!(matches!(stale, Err(Error::Conflict { .. })), "{stale:?}");
    assert!(table.contains("p1").await.expect("contains"));
    let newest = table.query_all(Query::index("product-name-index", "Lamp").descending());
    let newest: Vec<_> = newest.try_collect().await.expect("query");
    let newest_ok = newest.is_empty()
        || newest[0].record.status == "sold"
        || table.store().index_consistency() == Consistency::Eventual;
    assert!(newest_ok, "{newest:?}");
    assert_eq!(table.count().await.expect("count"), 1);
    assert!(table.delete_at("p1", 2).await.expect("delete"));
    assert!(
        table
            .get_by_unique("folded-name", &["lamp".into()])
            .await
            .expect("lookup")
            .is_none()
    );
}

/// A float sort key orders numerically, negative and fractional values included, and `-0.0`
/// is `0`.
pub async fn float_keys_sort_numerically(f: &Fixture) {
    let schema = TableSchema::builder("floats", KeyDef::text("p"))
        .sort_key(KeyDef::float("x"))
        .build()
        .expect("valid");
    let store = ensure(f, &schema).await;
    let values = [
        -1e100, -2.5, -1.0, -1e-100, 0.0, 1e-100, 0.1, 0.5, 1.0, 2.0, 10.0, 1e20, 1.5e125,
    ];
    for x in values.iter().rev() {
        insert(store, &schema, json!({"p": "f", "x": x})).await;
    }
    let zero = store
        .insert(&schema, doc(json!({"p": "f", "x": -0.0})))
        .await;
    assert!(
        matches!(zero, Err(Error::AlreadyExists { what: "record" })),
        "-0.0 is 0: {zero:?}"
    );
    let page = store
        .query(&schema, &Query::table("f"))
        .await
        .expect("query");
    let read: Vec<f64> = page
        .items
        .iter()
        .map(|r| r.document["x"].as_f64().expect("number"))
        .collect();
    assert_eq!(read, values);
    let between = store
        .query(
            &schema,
            &Query::table("f").sort(SortCondition::Between((-1.0).into(), 0.5.into())),
        )
        .await
        .expect("query");
    assert_eq!(between.items.len(), 6);
}
