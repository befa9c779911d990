//! Records one at a time: insert, get, put, replace and delete with their versions,
//! reads right after writes, `get_many`, and the typed table over serde records.

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{
    Condition, Consistency, KeyDef, KeyValue, Query, RecordKey, Scan, Table, TableSchema,
    TableStatus,
};

use super::{doc, ensure, get, insert, settled, things};
use crate::Fixture;

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
    let read = get(store, &schema, &"t1".into()).await.expect("stored");
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
    assert_eq!(get(store, &schema, &"t2".into()).await, None);

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
    let read = get(store, &schema, &"t1".into()).await.expect("stored");
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

/// Insert creates only: a second insert of the key is `AlreadyExists`, and leaves the first;
/// put creates and overwrites.
pub async fn insert_is_create_only_and_put_upserts(f: &Fixture) {
    let schema = things();
    let store = ensure(f, &schema).await;
    insert(store, &schema, json!({"id": "a", "note": 1})).await;
    let again = store
        .insert(&schema, doc(json!({"id": "a", "note": 2})))
        .await;
    assert_matches!(again, Err(Error::AlreadyExists { what: "record" }));
    let kept = get(store, &schema, &"a".into()).await.expect("kept");
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
    assert_matches!(
        stale,
        Err(Error::Conflict {
            what: "record",
            expected: 1,
            actual: 2
        })
    );
    let stale = store.delete(&schema, &"a".into(), Some(1)).await;
    assert_matches!(
        stale,
        Err(Error::Conflict {
            what: "record",
            expected: 1,
            actual: 2
        })
    );
    let kept = get(store, &schema, &"a".into()).await.expect("kept");
    assert_eq!((kept.document["n"].clone(), kept.version), (json!(2), 2));
    let missing = store.replace(&schema, doc(json!({"id": "zz"})), 1).await;
    assert_matches!(missing, Err(Error::NotFound { what: "record" }));
    let missing = store.delete(&schema, &"zz".into(), Some(1)).await;
    assert_matches!(missing, Err(Error::NotFound { what: "record" }));
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
        assert!(get(store, &schema, &id.as_str().into()).await.is_some());
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
    assert_matches!(
        store.get_many(&schema, &too_many).await,
        Err(Error::InvalidInput { .. })
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
    assert_matches!(
        clash,
        Err(Error::AlreadyExists {
            what: "unique value"
        }),
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
    assert_matches!(
        bad,
        Err(Error::InvalidInput { .. }),
        "NaN would not read back"
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
    assert_matches!(
        &missing,
        Err(Refusal::Store(e)) if e.contains("not found"),
        "a storekit error converts into the caller's"
    );
    let stale = table.replace(&lamp, 1).await;
    assert_matches!(stale, Err(Error::Conflict { .. }));
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

/// A record of any shape, read through the typed table: what `Table::get` parses the stored
/// document into, straight from the text on SQL.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
struct Any(serde_json::Map<String, Value>);

/// Typed reads (`Table::get`, `Table::get_many`) find what untyped reads find, for keys of
/// every type (the SQL backends read each row's key from its key columns), in the order
/// asked, repeats and misses included; and never an expired record.
pub async fn typed_reads_find_what_untyped_reads_find(f: &Fixture) {
    let bytes = |b: &[u8]| KeyValue::from(b.to_vec()).to_json();
    let cases = [
        (
            TableSchema::builder("typed_int_float", KeyDef::int("p"))
                .sort_key(KeyDef::float("s"))
                .build(),
            vec![
                json!({"p": -7, "s": 0.5}),
                json!({"p": 9_007_199_254_740_993_i64, "s": -2.25}),
            ],
            json!({"p": 3, "s": 1.0}),
        ),
        (
            TableSchema::builder("typed_bytes_text", KeyDef::bytes("p"))
                .sort_key(KeyDef::text("s"))
                .build(),
            vec![
                json!({"p": bytes(&[0, 255]), "s": "é"}),
                json!({"p": bytes(&[1]), "s": "a"}),
            ],
            json!({"p": bytes(&[2]), "s": "x"}),
        ),
        (
            TableSchema::builder("typed_text_ttl", KeyDef::text("p"))
                .ttl("expires_at")
                .build(),
            vec![
                json!({"p": "live", "expires_at": 4_000_000_000_u64}),
                json!({"p": "forever"}),
            ],
            json!({"p": "gone", "expires_at": 1}),
        ),
    ];
    for (schema, stored, missing) in cases {
        let schema = schema.expect("valid schema");
        let name = schema.name().to_owned();
        let store = ensure(f, &schema).await;
        let mut keys = Vec::new();
        for value in &stored {
            let record = insert(store, &schema, value.clone()).await;
            keys.push(record.key);
        }
        // Never written, or (on the table with a ttl) written expired: stored, and hidden
        // only by its expiry.
        let missing_key = schema.key_of(&doc(missing.clone())).expect("key");
        if schema.ttl().is_some() {
            store.put(&schema, doc(missing)).await.expect("put expired");
        }
        let asked = vec![
            keys[1].clone(),
            missing_key.clone(),
            keys[0].clone(),
            keys[1].clone(),
        ];
        let table: Table<Any> = Table::new(f.tables().clone(), schema.clone());
        let typed = table.get_many(&asked).await.expect("typed get_many");
        let untyped = store.get_many(&schema, &asked).await.expect("get_many");
        let as_any = |record: &storekit_core::table::Record| Any(record.document.clone());
        assert_eq!(
            typed
                .iter()
                .map(|found| found.as_ref().map(|v| (v.version, v.record.clone())))
                .collect::<Vec<_>>(),
            untyped
                .iter()
                .map(|found| found.as_ref().map(|r| (r.version, as_any(r))))
                .collect::<Vec<_>>(),
            "{name}"
        );
        let found: Vec<bool> = typed.iter().map(Option::is_some).collect();
        assert_eq!(found, [true, false, true, true], "{name}");
        for (key, value) in keys.iter().zip(&stored) {
            let one = table.get(key.clone()).await.expect("typed get");
            assert_eq!(
                one.map(|v| (v.version, Value::Object(v.record.0))),
                Some((1, value.clone())),
                "{name}"
            );
        }
        assert!(
            table.get(missing_key).await.expect("typed get").is_none(),
            "{name}"
        );
    }
}

/// Typed queries and scans (`Table::query`, `Table::scan`, which SQL answers with the
/// documents as stored text) page exactly as untyped ones: the same records, versions,
/// cursors and read counts, on the table and on an index with a float sort key, forwards and
/// backwards, with and without a filter or a read budget.
pub async fn typed_queries_and_scans_page_as_untyped_ones_do(f: &Fixture) {
    let schema = TableSchema::builder("typed_pages", KeyDef::text("p"))
        .sort_key(KeyDef::int("n"))
        .index("by-shelf", KeyDef::text("shelf"), Some(KeyDef::float("at")))
        .build()
        .expect("valid schema");
    let store = ensure(f, &schema).await;
    for n in 0..40_i64 {
        let at = (n % 13) as f64 * 0.5 - 2.0;
        let document = json!({"p": "p", "n": n, "shelf": "s", "at": at, "odd": n % 2 == 1,
            "name": format!("item \"{n}\" é")});
        insert(store, &schema, document).await;
    }
    // Index reads may lag (DynamoDB, memory with lag): wait until the index holds them all.
    let all = Query::index("by-shelf", "s").limit(100);
    settled(store, &schema, &all, |page| page.items.len() == 40).await;
    let table: Table<Any> = Table::new(f.tables().clone(), schema.clone());
    let queries = [
        Query::table("p").limit(7),
        Query::table("p").limit(6).descending(),
        Query::index("by-shelf", "s").limit(5),
        Query::index("by-shelf", "s").limit(9).descending(),
        Query::index("by-shelf", "s")
            .limit(4)
            .filter(Condition::eq("odd", true)),
        Query::table("p")
            .limit(3)
            .filter(Condition::eq("odd", false))
            .read_budget(5),
    ];
    for query in queries {
        let at = |cursor: Option<String>| match cursor {
            Some(cursor) => query.clone().after(cursor),
            None => query.clone(),
        };
        let typed = every_page(async |cursor| {
            let page = table.query(at(cursor)).await.expect("typed query");
            (typed_items(&page.items), page.next, page.read)
        })
        .await;
        let untyped = every_page(async |cursor| {
            let page = store.query(&schema, &at(cursor)).await.expect("query");
            (untyped_items(&page.items), page.next, page.read)
        })
        .await;
        assert_eq!(typed, untyped, "{query:?}");
        assert!(
            typed.len() > 1,
            "{query:?} fits one page: the case proves nothing"
        );
    }
    for scan in [
        Scan::new().limit(9),
        Scan::new().limit(4).filter(Condition::eq("odd", true)),
    ] {
        let at = |cursor: Option<String>| match cursor {
            Some(cursor) => scan.clone().after(cursor),
            None => scan.clone(),
        };
        let typed = every_page(async |cursor| {
            let page = table.scan(at(cursor)).await.expect("typed scan");
            (typed_items(&page.items), page.next, page.read)
        })
        .await;
        let untyped = every_page(async |cursor| {
            let page = store.scan(&schema, &at(cursor)).await.expect("scan");
            (untyped_items(&page.items), page.next, page.read)
        })
        .await;
        assert_eq!(typed, untyped, "{scan:?}");
        assert!(
            typed.len() > 1,
            "{scan:?} fits one page: the case proves nothing"
        );
    }
}

/// A page as the paging case compares them: versions and documents, cursor, records read.
type Page = (Vec<(u64, Value)>, Option<String>, u64);

/// Every page `page` returns, from the first (no cursor) to the last (no next cursor).
async fn every_page(mut page: impl AsyncFnMut(Option<String>) -> Page) -> Vec<Page> {
    let (mut pages, mut cursor) = (Vec::new(), None);
    loop {
        let found = page(cursor).await;
        cursor = found.1.clone();
        pages.push(found);
        assert!(pages.len() < 60, "paging never ends");
        if cursor.is_none() {
            return pages;
        }
    }
}

fn typed_items(items: &[storekit_core::table::Versioned<Any>]) -> Vec<(u64, Value)> {
    items
        .iter()
        .map(|v| (v.version, Value::Object(v.record.0.clone())))
        .collect()
}

fn untyped_items(items: &[storekit_core::table::Record]) -> Vec<(u64, Value)> {
    items
        .iter()
        .map(|r| (r.version, Value::Object(r.document.clone())))
        .collect()
}
