//! Conditional writes (`put_if`, `replace_if`, `delete_if`): a condition of the expression
//! language on the record as stored, decided by the database in the write, with nothing
//! written when it fails. A missing record is an empty document, as on DynamoDB:
//! `not_exists` holds on it and a comparison fails.
//!
//! Transactions ([`Transaction`]): puts, patches, deletes and checks on records of several
//! tables, all applied or none, the failed action named by its index, within DynamoDB's
//! limit of 100 actions with unique markers counted.

use serde_json::json;
use storekit_core::Error;
use storekit_core::table::{
    Condition, Document, KeyDef, KeyValue, Patch, Record, RecordKey, TableSchema, TableStore,
    Transaction,
};

use crate::Fixture;
use crate::tables::{doc, get};

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
        let lamp =
            |stock: i64, code: &str| doc(json!({"sku": "lamp", "stock": stock, "code": code}));

        // No record: a comparison fails on the empty document, and nothing is written.
        let refused = store
            .put_if(&schema, lamp(5, "L1"), &Condition::eq("stock", 1))
            .await;
        assert!(is_condition_conflict(&refused, 0), "{name}: {refused:?}");
        assert_eq!(get(store, &schema, &key).await, None, "{name}");
        let refused = store
            .replace_if(&schema, lamp(5, "L1"), &Condition::not_exists("stock"))
            .await;
        assert_matches!(refused, Err(Error::NotFound { what: "record" }), "{name}");
        assert_eq!(get(store, &schema, &key).await, None, "{name}");

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
        let stored = get(store, &schema, &key).await.expect("lamp");
        assert_eq!(
            (stored.version, &stored.document),
            (1, &lamp(5, "L1")),
            "{name}"
        );

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
        let stored = get(store, &schema, &key).await.expect("lamp");
        assert_eq!(
            (stored.version, &stored.document),
            (3, &lamp(3, "L3")),
            "{name}"
        );

        if schema.uniques().is_empty() {
            continue;
        }
        // The refused writes claimed nothing, and the allowed ones moved the value.
        let holder = async |code: &str| {
            let held = by_unique(store, &schema, "code", code).await;
            held.map(|r| r.key)
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
            .insert(
                &schema,
                doc(json!({"sku": "lamp", "stock": 2, "code": "L1"})),
            )
            .await
            .expect("insert");

        let sold_out = Condition::eq("stock", 0);
        let refused = store.delete_if(&schema, &key, &sold_out).await;
        assert!(is_condition_conflict(&refused, 1), "{name}: {refused:?}");
        let stored = get(store, &schema, &key).await.expect("kept");
        assert_eq!(stored.version, 1, "{name}");
        if !schema.uniques().is_empty() {
            let held = by_unique(store, &schema, "code", "L1").await;
            assert_eq!(held.map(|r| r.key), Some(key.clone()), "{name}");
        }

        let deleted = store
            .delete_if(&schema, &key, &Condition::between("stock", 1, 3))
            .await
            .expect("delete_if that holds");
        assert!(deleted, "{name}");
        assert_eq!(get(store, &schema, &key).await, None, "{name}");
        if !schema.uniques().is_empty() {
            // Freed with the record.
            store
                .insert(
                    &schema,
                    doc(json!({"sku": "desk", "stock": 1, "code": "L1"})),
                )
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
    let stored = get(store.as_ref(), &schema, &"hot".into())
        .await
        .expect("written");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.document["stock"], json!(winners[0].0));
}

/// `orders`: one record per `id`, with a unique `number`.
fn orders() -> TableSchema {
    TableSchema::builder("orders", KeyDef::text("id"))
        .unique("number", [KeyDef::int("number")])
        .build()
        .expect("valid schema")
}

async fn ensure_all(f: &Fixture) -> (&dyn TableStore, [TableSchema; 3]) {
    let store = f.tables().as_ref();
    let schemas = [plain(), coded(), orders()];
    for schema in &schemas {
        store.ensure_table(schema).await.expect("ensure_table");
    }
    (store, schemas)
}

/// The three tables with `lamp` in stock (2) and `old` holding code `C1`: where the
/// transactions of one order start.
async fn stocked(f: &Fixture) -> (&dyn TableStore, [TableSchema; 3]) {
    let (store, schemas) = ensure_all(f).await;
    let [stock, coded, _] = &schemas;
    store
        .insert(stock, doc(json!({"sku": "lamp", "stock": 2})))
        .await
        .expect("insert");
    store
        .insert(coded, doc(json!({"sku": "old", "code": "C1"})))
        .await
        .expect("insert");
    (store, schemas)
}

/// The record of `schema` that holds `value` in its unique index `index`, if one does.
async fn by_unique(
    store: &dyn TableStore,
    schema: &TableSchema,
    index: &str,
    value: impl Into<KeyValue>,
) -> Option<Record> {
    let values = [value.into()];
    store
        .get_by_unique(schema, index, &values)
        .await
        .expect("get_by_unique")
}

fn order(id: &str, number: i64) -> Document {
    doc(json!({"id": id, "number": number, "sku": "lamp"}))
}

fn failed_at(result: &Result<(), Error>, at: usize) -> Option<&Error> {
    match result {
        Err(Error::TransactionFailed { index, source }) if *index == at => Some(source),
        _ => None,
    }
}

/// An order and its stock decrement, across two tables, with a check on a third record:
/// every action applied.
pub async fn a_transaction_across_tables_commits(f: &Fixture) {
    let (store, [stock, coded, orders]) = stocked(f).await;
    let transaction = Transaction::new()
        .put_if(&orders, order("o-1", 1), Condition::not_exists("id"))
        .patch_if(
            &stock,
            "lamp",
            Patch::new().add("stock", -1).set("last", "o-1"),
            Condition::ge("stock", 1),
        )
        .check(&stock, "other", Condition::not_exists("sku"))
        .delete(&coded, "old")
        .put(&coded, doc(json!({"sku": "new", "code": "C1"})));
    store.transact(&transaction).await.expect("transact");
    let lamp = get(store, &stock, &"lamp".into()).await.expect("lamp");
    assert_eq!((lamp.version, &lamp.document["stock"]), (2, &json!(1)));
    assert_eq!(lamp.document["last"], json!("o-1"));
    let written = by_unique(store, &orders, "number", 1)
        .await
        .expect("the order");
    assert_eq!((written.version, written.document), (1, order("o-1", 1)));
    // The unique value moved from the deleted record to the new one in the same transaction.
    let holder = by_unique(store, &coded, "code", "C1").await.map(|r| r.key);
    assert_eq!(holder, Some(RecordKey::from("new")));
    assert!(get(store, &coded, &"old".into()).await.is_none());
    // An empty transaction does nothing.
    store.transact(&Transaction::new()).await.expect("empty");
}

/// A transaction whose last action fails writes nothing of the others, and its error names
/// that action: a failed check, a patch of a missing record, a taken unique value.
pub async fn a_transaction_failing_on_its_last_action_leaves_nothing(f: &Fixture) {
    let (store, [stock, coded, orders]) = stocked(f).await;
    store
        .insert(&orders, order("o-0", 7))
        .await
        .expect("insert");
    let first = || {
        Transaction::new()
            .put(&orders, order("o-1", 1))
            .patch(&stock, "lamp", Patch::new().add("stock", -1))
            .delete(&coded, "old")
            .put(&coded, doc(json!({"sku": "new", "code": "C2"})))
    };
    let unchanged = || async {
        assert!(get(store, &orders, &"o-1".into()).await.is_none());
        let lamp = get(store, &stock, &"lamp".into()).await.expect("lamp");
        assert_eq!((lamp.version, &lamp.document["stock"]), (1, &json!(2)));
        let old = get(store, &coded, &"old".into()).await;
        assert_eq!(old.map(|r| r.version), Some(1));
        assert!(get(store, &coded, &"new".into()).await.is_none());
        // No unique value was claimed or released.
        for (code, holder) in [("C1", Some(RecordKey::from("old"))), ("C2", None)] {
            let held = by_unique(store, &coded, "code", code).await.map(|r| r.key);
            assert_eq!(held, holder, "{code}");
        }
        assert!(by_unique(store, &orders, "number", 1).await.is_none());
    };

    let refused = store
        .transact(&first().check(&stock, "other", Condition::exists("sku")))
        .await;
    let source = failed_at(&refused, 4);
    assert_matches!(
        source,
        Some(Error::Conflict {
            what: "condition",
            ..
        }),
        "{refused:?}"
    );
    unchanged().await;

    let refused = store
        .transact(&first().patch(&stock, "gone", Patch::new().add("stock", 1)))
        .await;
    assert_matches!(
        failed_at(&refused, 4),
        Some(Error::NotFound { what: "record" }),
        "{refused:?}"
    );
    unchanged().await;

    let refused = store.transact(&first().put(&orders, order("o-2", 7))).await;
    assert_matches!(
        failed_at(&refused, 4),
        Some(Error::AlreadyExists {
            what: "unique value"
        }),
        "{refused:?}"
    );
    unchanged().await;

    let refused = store
        .transact(&first().delete_if(&orders, "o-0", Condition::eq("number", 8)))
        .await;
    assert_matches!(
        failed_at(&refused, 4),
        Some(Error::Conflict {
            what: "condition",
            ..
        }),
        "{refused:?}"
    );
    unchanged().await;
}

/// DynamoDB's 100 actions, unique markers counted, on every backend; and one action per
/// record.
pub async fn transactions_over_the_limit_are_refused(f: &Fixture) {
    let (store, [stock, coded, _]) = ensure_all(f).await;
    let checks = |n: usize| {
        (0..n).fold(Transaction::new(), |t, i| {
            t.check(
                &stock,
                format!("s{i}").as_str(),
                Condition::not_exists("sku"),
            )
        })
    };
    store.transact(&checks(100)).await.expect("100 checks");
    let refused = store.transact(&checks(101)).await;
    assert_matches!(
        refused,
        Err(Error::InvalidInput {
            what: "transaction",
            ..
        })
    );
    // A put on a table with one unique index counts 3: 33 fit, 34 do not.
    let puts = |n: usize| {
        (0..n).fold(Transaction::new(), |t, i| {
            t.put(
                &coded,
                doc(json!({"sku": format!("c{i}"), "code": format!("code-{i}")})),
            )
        })
    };
    let refused = store.transact(&puts(34)).await;
    assert_matches!(
        refused,
        Err(Error::InvalidInput {
            what: "transaction",
            ..
        })
    );
    assert_eq!(store.count(&coded).await.expect("count"), 0);
    store.transact(&puts(33)).await.expect("33 puts");
    assert_eq!(store.count(&coded).await.expect("count"), 33);
    // Two actions on one record.
    let twice = Transaction::new()
        .check(&stock, "a", Condition::not_exists("sku"))
        .delete(&stock, "a");
    let refused = store.transact(&twice).await;
    assert_matches!(
        failed_at(&refused, 1),
        Some(Error::InvalidInput {
            what: "transaction",
            ..
        }),
        "{refused:?}"
    );
}

/// 32 transactions at once, each an order and a decrement of one stock of 20 under
/// `stock >= 1`: exactly 20 commit, the others fail on the decrement, and the stock ends at 0
/// with exactly the committed orders written.
pub async fn concurrent_transactions_sell_exactly_the_stock(f: &Fixture) {
    let (_, [stock, _, orders]) = ensure_all(f).await;
    let store = f.tables().clone();
    store
        .insert(&stock, doc(json!({"sku": "lamp", "stock": 20})))
        .await
        .expect("insert");
    let tasks = (0..32_i64).map(|i| {
        let (store, stock, orders) = (store.clone(), stock.clone(), orders.clone());
        tokio::spawn(async move {
            let buy = Transaction::new()
                .put_if(
                    &orders,
                    order(&format!("o-{i}"), i),
                    Condition::not_exists("id"),
                )
                .patch_if(
                    &stock,
                    "lamp",
                    Patch::new().add("stock", -1),
                    Condition::ge("stock", 1),
                );
            match store.transact(&buy).await {
                Ok(()) => true,
                Err(Error::TransactionFailed { index: 1, source })
                    if matches!(
                        *source,
                        Error::Conflict {
                            what: "condition",
                            ..
                        }
                    ) =>
                {
                    false
                }
                Err(other) => panic!("order {i}: {other:?}"),
            }
        })
    });
    let sold = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|done| *done.as_ref().expect("task"))
        .count();
    assert_eq!(sold, 20);
    let lamp = get(store.as_ref(), &stock, &"lamp".into())
        .await
        .expect("lamp");
    assert_eq!((lamp.version, &lamp.document["stock"]), (21, &json!(0)));
    assert_eq!(store.count(&orders).await.expect("count"), 20);
}
