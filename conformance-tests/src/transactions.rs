//! Conditional writes (`put_if`, `replace_if`, `delete_if`): a condition of the expression
//! language on the record as stored, decided by the database in the write, with nothing
//! written when it fails. A missing record is an empty document, as on DynamoDB:
//! `not_exists` holds on it and a comparison fails.

use serde_json::{Value, json};
use storekit_core::Error;
use storekit_core::table::{Condition, Document, KeyDef, KeyValue, RecordKey, TableSchema};

use crate::Fixture;

/// `stock`: one record per `sku`, without unique indexes (so that DynamoDB can decide each
/// conditional write in one request).
fn plain() -> TableSchema {
    TableSchema::builder("stock", KeyDef::text("sku"))
        .build()
        .expect("valid schema")
}

/// `coded`: as `stock`, and `code` unique, so that a write also moves a marker on DynamoDB.
fn coded() -> TableSchema {
    TableSchema::builder("coded", KeyDef::text("sku"))
        .unique("code", [KeyDef::text("code")])
        .build()
        .expect("valid schema")
}

fn doc(value: Value) -> Document {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn is_condition_conflict(result: &Result<impl std::fmt::Debug, Error>, version: u64) -> bool {
    matches!(
        result,
        Err(Error::Conflict { what: "condition", expected, actual })
            if *expected == version && *actual == version
    )
}

/// `put_if` over a missing record answers its condition on an empty document; over a record,
/// on the record; `replace_if` never creates one. A refused write changes nothing, unique
/// values included.
pub async fn conditional_puts_write_only_when_the_condition_holds(f: &Fixture) {
    let store = f.tables().as_ref();
    for schema in [plain(), coded()] {
        store.ensure_table(&schema).await.expect("ensure_table");
        let name = schema.name().to_owned();
        let key = RecordKey::from("lamp");
        let lamp = |stock: i64, code: &str| doc(json!({"sku": "lamp", "stock": stock, "code": code}));

        // No record: a comparison fails on the empty document, and nothing is written.
        let refused = store
            .put_if(&schema, lamp(5, "L1"), &Condition::eq("stock", 1))
            .await;
        assert!(is_condition_conflict(&refused, 0), "{name}: {refused:?}");
        assert_eq!(store.get(&schema, &key).await.expect("get"), None, "{name}");
        let refused = store
            .replace_if(&schema, lamp(5, "L1"), &Condition::not_exists("stock"))
            .await;
        assert!(
            matches!(refused, Err(Error::NotFound { what: "record" })),
            "{name}: {refused:?}"
        );
        assert_eq!(store.get(&schema, &key).await.expect("get"), None, "{name}");

        // Create-only, as `not_exists` on the key.
        let created = store
            .put_if(&schema, lamp(5, "L1"), &Condition::not_exists("sku"))
            .await
            .expect("put_if on no record");
        assert_eq!(created.version, 1, "{name}");
        let again = store
            .put_if(&schema, lamp(9, "L2"), &Condition::not_exists("sku"))
            .await;
        assert!(is_condition_conflict(&again, 1), "{name}: {again:?}");

        // On the record: refused, then allowed.
        let low = Condition::lt("stock", 3);
        let refused = store.put_if(&schema, lamp(10, "L2"), &low).await;
        assert!(is_condition_conflict(&refused, 1), "{name}: {refused:?}");
        let refused = store.replace_if(&schema, lamp(10, "L2"), &low).await;
        assert!(is_condition_conflict(&refused, 1), "{name}: {refused:?}");
        let stored = store.get(&schema, &key).await.expect("get").expect("lamp");
        assert_eq!((stored.version, &stored.document), (1, &lamp(5, "L1")), "{name}");

        let put = store
            .put_if(&schema, lamp(4, "L2"), &Condition::ge("stock", 5))
            .await
            .expect("put_if that holds");
        assert_eq!(put.version, 2, "{name}");
        let replaced = store
            .replace_if(
                &schema,
                lamp(3, "L3"),
                &Condition::eq("stock", 4).and(Condition::begins_with("code", "L")),
            )
            .await
            .expect("replace_if that holds");
        assert_eq!(replaced.version, 3, "{name}");
        let stored = store.get(&schema, &key).await.expect("get").expect("lamp");
        assert_eq!((stored.version, &stored.document), (3, &lamp(3, "L3")), "{name}");

        if schema.uniques().is_empty() {
            continue;
        }
        // The refused writes claimed nothing, and the allowed ones moved the value.
        let holder = |code: &'static str| {
            let schema = schema.clone();
            async move {
                store
                    .get_by_unique(&schema, "code", &[KeyValue::from(code)])
                    .await
                    .expect("get_by_unique")
                    .map(|r| r.key)
            }
        };
        assert_eq!(holder("L1").await, None);
        assert_eq!(holder("L2").await, None);
        assert_eq!(holder("L3").await, Some(key.clone()));
        // A refused condition on a record whose write would take a held value: the condition
        // is the answer only if it fails; here it holds and the value is taken.
        store
            .put_if(
                &schema,
                doc(json!({"sku": "desk", "stock": 1, "code": "L3"})),
                &Condition::not_exists("sku"),
            )
            .await
            .map(drop)
            .expect_err("L3 is held");
        assert_eq!(holder("L3").await, Some(key.clone()));
    }
}

/// `delete_if` deletes only when its condition holds; on a missing record it deletes nothing,
/// holding (`false`) or refused like any other. A refused delete keeps the record and its
/// unique values.
pub async fn conditional_deletes_delete_only_when_the_condition_holds(f: &Fixture) {
    let store = f.tables().as_ref();
    for schema in [plain(), coded()] {
        store.ensure_table(&schema).await.expect("ensure_table");
        let name = schema.name().to_owned();
        let key = RecordKey::from("lamp");
        store
            .insert(&schema, doc(json!({"sku": "lamp", "stock": 2, "code": "L1"})))
            .await
            .expect("insert");

        let sold_out = Condition::eq("stock", 0);
        let refused = store.delete_if(&schema, &key, &sold_out).await;
        assert!(is_condition_conflict(&refused, 1), "{name}: {refused:?}");
        let stored = store.get(&schema, &key).await.expect("get").expect("kept");
        assert_eq!(stored.version, 1, "{name}");
        if !schema.uniques().is_empty() {
            let held = store
                .get_by_unique(&schema, "code", &[KeyValue::from("L1")])
                .await
                .expect("get_by_unique");
            assert_eq!(held.map(|r| r.key), Some(key.clone()), "{name}");
        }

        let deleted = store
            .delete_if(&schema, &key, &Condition::between("stock", 1, 3))
            .await
            .expect("delete_if that holds");
        assert!(deleted, "{name}");
        assert_eq!(store.get(&schema, &key).await.expect("get"), None, "{name}");
        if !schema.uniques().is_empty() {
            // Freed with the record.
            store
                .insert(&schema, doc(json!({"sku": "desk", "stock": 1, "code": "L1"})))
                .await
                .expect("L1 is free again");
        }

        // No record: `not_exists` holds and nothing is deleted; a comparison fails.
        let nothing = store
            .delete_if(&schema, &key, &Condition::not_exists("stock"))
            .await
            .expect("delete_if on no record");
        assert!(!nothing, "{name}");
        let refused = store.delete_if(&schema, &key, &sold_out).await;
        assert!(is_condition_conflict(&refused, 0), "{name}: {refused:?}");
    }
}

/// 32 tasks `put_if(not_exists)` one key at once: exactly one writes it, every other one is a
/// condition conflict, and the record is the winner's.
pub async fn concurrent_conditional_creates_have_one_winner(f: &Fixture) {
    let schema = plain();
    let store = f.tables().clone();
    store.ensure_table(&schema).await.expect("ensure_table");
    let tasks = (0..32_i64).map(|task| {
        let (store, schema) = (store.clone(), schema.clone());
        tokio::spawn(async move {
            let document = doc(json!({"sku": "hot", "stock": task}));
            match store
                .put_if(&schema, document, &Condition::not_exists("sku"))
                .await
            {
                Ok(record) => Some((task, record.version)),
                Err(Error::Conflict {
                    what: "condition", ..
                }) => None,
                Err(other) => panic!("task {task}: {other:?}"),
            }
        })
    });
    let winners: Vec<(i64, u64)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(|joined| joined.expect("task"))
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = store
        .get(&schema, &RecordKey::from("hot"))
        .await
        .expect("get")
        .expect("written");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.document["stock"], json!(winners[0].0));
}
